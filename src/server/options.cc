#include "server/options.h"

#include <charconv>
#include <set>
#include <sstream>

namespace lockd::server {

Result<std::vector<MemberSpec>> ParseInitialCluster(const std::string& spec) {
  std::vector<MemberSpec> out;
  std::set<uint64_t> ids;
  std::set<std::string> addrs;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    const auto slash = item.find('/');
    if (eq == std::string::npos || slash == std::string::npos || slash < eq) {
      return InvalidArgument("--initial-cluster: '" + item +
                             "' is not of the form id=peer_host:port/client_host:port");
    }
    MemberSpec m;
    const std::string id = item.substr(0, eq);
    auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), m.id);
    if (ec != std::errc() || end != id.data() + id.size() || m.id == 0) {
      return InvalidArgument("--initial-cluster: member id '" + id + "' is not a positive integer");
    }
    m.peer_addr = item.substr(eq + 1, slash - eq - 1);
    m.client_addr = item.substr(slash + 1);
    for (const auto& addr : {m.peer_addr, m.client_addr}) {
      if (auto hp = ParseHostPort(addr); !hp.ok()) {
        return InvalidArgument("--initial-cluster: member " + id + ": " + hp.status().message());
      }
      if (!addrs.insert(addr).second) {
        return InvalidArgument("--initial-cluster: address " + addr + " is used twice");
      }
    }
    if (!ids.insert(m.id).second) {
      return InvalidArgument("--initial-cluster: member id " + id + " appears twice");
    }
    out.push_back(std::move(m));
  }
  if (out.empty()) return InvalidArgument("--initial-cluster names no member");
  return out;
}

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
