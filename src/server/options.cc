#include "server/options.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <sstream>

#include "server/logging.h"

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

std::vector<std::string> SplitJoinAddrs(const std::string& join) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= join.size()) {
    size_t comma = join.find(',', start);
    if (comma == std::string::npos) comma = join.size();
    if (comma > start) out.push_back(join.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

bool UsesTls(const NodeOptions& o) {
  return !o.tls_cert.empty() || !o.tls_key.empty() || !o.tls_client_ca.empty() ||
         !o.peer_ca.empty();
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
  if (!o.initial_cluster.empty()) {
    auto members = ParseInitialCluster(o.initial_cluster);
    if (!members.ok()) return members.status();
    bool self = false;
    for (const auto& m : *members) {
      if (m.id != o.node_id) continue;
      self = true;
      if (m.peer_addr != o.peer_addr || m.client_addr != o.client_addr) {
        return InvalidArgument("--initial-cluster: member " + std::to_string(m.id) + " is " +
                               m.peer_addr + "/" + m.client_addr +
                               " but this node's --peer-addr/--client-addr are " + o.peer_addr +
                               "/" + o.client_addr);
      }
    }
    if (!self) {
      return InvalidArgument("--initial-cluster does not name this node (--id " +
                             std::to_string(o.node_id) + ")");
    }
  }
  if (o.cluster_token.empty()) return InvalidArgument("--cluster-token must not be empty");
  if (!o.join.empty()) {
    if (SplitJoinAddrs(o.join).empty()) {
      return InvalidArgument("--join names no address: give the client addresses of some members");
    }
    if (!o.initial_cluster.empty()) {
      return InvalidArgument(
          "--join and --initial-cluster exclude each other: a joining node learns the members "
          "from the cluster");
    }
    for (const auto& addr : SplitJoinAddrs(o.join)) {
      auto hp = ParseHostPort(addr);
      if (!hp.ok()) return InvalidArgument("--join: " + hp.status().message());
    }
  }
  if (UsesTls(o)) {
    if (o.plaintext) {
      return InvalidArgument(
          "--plaintext excludes --tls-cert, --tls-key, --tls-client-ca and "
          "--peer-ca");
    }
    for (const auto& [flag, file] :
         {std::pair<const char*, const std::string&>{"--tls-cert", o.tls_cert},
          {"--tls-key", o.tls_key},
          {"--peer-ca", o.peer_ca}}) {
      if (file.empty()) {
        return InvalidArgument(std::string(flag) +
                               " is required with TLS (--tls-cert, --tls-key and --peer-ca "
                               "together; --tls-client-ca optional), or run with --plaintext");
      }
    }
  }
  if (o.backup_stall_timeout_ms < 100) {
    return InvalidArgument("--backup-stall-timeout-ms must be >= 100");
  }
  if (o.member_add_timeout_ms < 100) {
    return InvalidArgument("--member-add-timeout-ms must be >= 100");
  }
  if (o.tick_ms < 1 || o.tick_ms > 10'000) {
    return InvalidArgument("--tick-ms must be in [1, 10000], not " + std::to_string(o.tick_ms));
  }
  if (o.election_min_ms < 3 * o.tick_ms || o.election_min_ms > 600'000) {
    return InvalidArgument("--election-min-ms must be at least 3 x --tick-ms (" +
                           std::to_string(3 * o.tick_ms) + ") and at most 600000, not " +
                           std::to_string(o.election_min_ms));
  }
  // The core counts E_min in whole ticks while the leader lease reasons with E_min itself: they
  // must be the same span.
  if (o.election_min_ms % o.tick_ms != 0) {
    return InvalidArgument("--election-min-ms (" + std::to_string(o.election_min_ms) +
                           ") must be a multiple of --tick-ms (" + std::to_string(o.tick_ms) + ")");
  }
  if (!(o.drift >= 0.0 && o.drift < 0.25)) {
    return InvalidArgument("--drift must be in [0, 0.25) (a fraction: 0.01 is 1%)");
  }
  if (o.forward_timeout_ms < 100) return InvalidArgument("--forward-timeout-ms must be >= 100");
  if (o.commit_flush_us > 100'000) {
    return InvalidArgument("--commit-flush-us must be in [0, 100000] (0: no deferral), not " +
                           std::to_string(o.commit_flush_us));
  }
  // A retry may be proposed up to F_fwd after a node received it: its record must outlive that.
  if (o.outcome_retention_ms < o.forward_timeout_ms) {
    return InvalidArgument("--outcome-retention-ms (" + std::to_string(o.outcome_retention_ms) +
                           ") must be >= --forward-timeout-ms (" +
                           std::to_string(o.forward_timeout_ms) + ")");
  }
  if (o.max_outcomes < 2) return InvalidArgument("--max-outcomes must be >= 2");
  if (o.min_ttl_ms == 0 || o.min_ttl_ms > o.max_ttl_ms) {
    return InvalidArgument("--min-ttl-ms must be > 0 and <= --max-ttl-ms");
  }
  for (const auto& [flag, v] :
       {std::pair<const char*, uint64_t>{"--max-name-bytes", o.max_name_bytes},
        {"--max-locks", o.max_locks},
        {"--max-leases", o.max_leases},
        {"--max-waiters-per-lock", o.max_waiters_per_lock},
        {"--max-leases-per-label", o.max_leases_per_label},
        {"--max-outcomes-per-client", o.max_outcomes_per_client},
        {"--max-page-size", o.max_page_size},
        {"--watch-history", o.watch_history}}) {
    if (v == 0) return InvalidArgument(std::string(flag) + " must be > 0");
  }
  if (o.max_request_bytes < 1024) return InvalidArgument("--max-request-bytes must be >= 1024");
  if (o.max_snapshot_bytes < (1 << 20)) {
    return InvalidArgument("--max-snapshot-bytes must be >= 1048576 (1 MiB)");
  }
  if (Status s = ValidateLogFormat(o.log_format); !s.ok()) return s;
  static constexpr const char* kLevels[] = {"trace", "debug",    "info", "warn",
                                            "error", "critical", "off"};
  if (std::none_of(std::begin(kLevels), std::end(kLevels),
                   [&o](const char* level) { return o.log_level == level; })) {
    return InvalidArgument("--log-level '" + o.log_level +
                           "' is not one of trace, debug, info, warn, error, critical, off");
  }
  // Last, so that any other mistake is named first. Plaintext is never what a node falls into
  // for want of a flag: anyone who reaches a plaintext client port can force-release any lock.
  if (!UsesTls(o) && !o.plaintext) {
    return InvalidArgument(
        "no TLS: give --tls-cert, --tls-key and --peer-ca (docs/security.md says how to make "
        "them), or --plaintext to serve both ports without TLS (development only)");
  }
  return Status::Ok();
}

}  // namespace lockd::server
