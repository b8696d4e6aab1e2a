// "host:port" addresses, as flags and config files write them.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace lockd {

/// A host and a port parsed from "host:port" ("[::1]:7401" for IPv6).
struct HostPort {
  std::string host;
  uint16_t port = 0;
};

/// INVALID_ARGUMENT naming the address when it is not host:port with a port in 1..65535.
Result<HostPort> ParseHostPort(const std::string& addr);

}  // namespace lockd
