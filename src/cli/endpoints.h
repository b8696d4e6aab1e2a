// Which lockd nodes lockctl talks to: --endpoints, else $LOCKD_ENDPOINTS, else the local default;
// and which of them are this machine (a bearer token sent there in plaintext stays on it).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace lockd::cli {

inline constexpr const char* kDefaultEndpoints = "127.0.0.1:7401";

/// Splits "a:1,b:2" into addresses, checking each is host:port. An empty flag falls back to the
/// environment variable, then to the default.
Result<std::vector<std::string>> ResolveEndpoints(const std::string& flag_value);

/// True for an address whose traffic stays on this machine: localhost, 127.0.0.0/8, ::1 (and
/// ::ffff:127.x). A plaintext bearer token sent anywhere else can be read on the way.
bool IsLoopback(const std::string& endpoint);

}  // namespace lockd::cli
