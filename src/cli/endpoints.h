// Which lockd nodes lockctl talks to: --endpoints, else $LOCKD_ENDPOINTS, else the local default.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace lockd::cli {

inline constexpr const char* kDefaultEndpoints = "127.0.0.1:7401";

/// Splits "a:1,b:2" into addresses, checking each is host:port. An empty flag falls back to the
/// environment variable, then to the default.
Result<std::vector<std::string>> ResolveEndpoints(const std::string& flag_value);

}  // namespace lockd::cli
