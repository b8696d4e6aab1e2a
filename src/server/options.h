// NodeOptions: everything a lockd node is configured with, from flags or the TOML file, and the
// validation that turns a bad setting into a clear error at start rather than a surprise later.
#pragma once

#include <cstdint>
#include <string>

#include "base/host_port.h"
#include "base/status.h"

namespace lockd::server {

struct NodeOptions {
  uint64_t node_id = 1;
  std::string client_addr = "127.0.0.1:7401";  ///< LockService, ClusterService, health, reflection
  std::string peer_addr = "127.0.0.1:7501";    ///< Raft traffic between members
  std::string http_addr = "127.0.0.1:7601";    ///< /metrics and /healthz
  std::string data_dir = "./lockd-data";
  std::string log_level = "info";
};

/// Checks every field; the message names the setting and what a valid value looks like.
Status Validate(const NodeOptions& options);

}  // namespace lockd::server
