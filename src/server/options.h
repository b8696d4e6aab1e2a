// NodeOptions: everything a lockd node is configured with, from flags or the TOML file, and the
// validation that turns a bad setting into a clear error at start rather than a surprise later.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

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

/// One member of the initial cluster, as `--initial-cluster` names it.
struct MemberSpec {
  uint64_t id = 0;
  std::string peer_addr;    ///< where the other members reach its PeerService
  std::string client_addr;  ///< what `lockd-leader` tells clients when it leads

  bool operator==(const MemberSpec&) const = default;
};

/// Parses "1=10.0.0.1:7501/10.0.0.1:7401,2=..." (id=peer/client, comma-separated): ids unique and
/// positive, every address host:port, no address used twice.
Result<std::vector<MemberSpec>> ParseInitialCluster(const std::string& spec);

/// Checks every field; the message names the setting and what a valid value looks like.
Status Validate(const NodeOptions& options);

}  // namespace lockd::server
