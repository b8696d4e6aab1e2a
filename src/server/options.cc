#include "server/options.h"

namespace lockd::server {

Status Validate(const NodeOptions& o) {
  if (o.node_id == 0) return InvalidArgument("--id must be a positive integer (0 means 'none')");
  for (const auto& [flag, addr] :
       {std::pair<const char*, const std::string&>{"--client-addr", o.client_addr},
        {"--peer-addr", o.peer_addr},
        {"--http-addr", o.http_addr}}) {
    auto hp = ParseHostPort(addr);
    if (!hp.ok()) return InvalidArgument(std::string(flag) + ": " + hp.status().message());
  }
  if (o.client_addr == o.peer_addr || o.client_addr == o.http_addr || o.peer_addr == o.http_addr) {
    return InvalidArgument("--client-addr, --peer-addr and --http-addr must all differ");
  }
  if (o.data_dir.empty()) return InvalidArgument("--data-dir must not be empty");
  static constexpr const char* kLevels[] = {"trace", "debug",    "info", "warn",
                                            "error", "critical", "off"};
  for (const char* level : kLevels) {
    if (o.log_level == level) return Status::Ok();
  }
  return InvalidArgument("--log-level '" + o.log_level +
                         "' is not one of trace, debug, info, warn, error, critical, off");
}

}  // namespace lockd::server
