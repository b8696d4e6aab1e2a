// Fuzz target: lockd's configuration as the daemon reads it: a TOML file (CLI11's config parser,
// `lockd --config`) or a command line, into NodeOptions, then Validate and the parsers it relies
// on (ParseInitialCluster, SplitJoinAddrs, ParseHostPort). The first byte picks TOML or a command
// line (arguments separated by NUL or newline). Properties: bad input is an error with a message
// (CLI11's exception, caught as the daemon's CLI11_PARSE does, or a Status), never a crash; options
// that validate name only addresses that parse, an initial cluster that names this node with
// unique ids and addresses, and a member list that formats back to itself.
//
// The option table mirrors src/daemon/main.cc (every NodeOptions key, same names and types);
// a key added there belongs here too.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "base/host_port.h"
#include "fuzz_check.h"
#include "server/options.h"

namespace {

using lockd::server::NodeOptions;

void AddOptions(CLI::App& app, NodeOptions& o) {
  app.add_option("--id", o.node_id);
  app.add_option("--client-addr", o.client_addr);
  app.add_option("--peer-addr", o.peer_addr);
  app.add_option("--http-addr", o.http_addr);
  app.add_option("--data-dir", o.data_dir);
  app.add_option("--log-level", o.log_level);
  app.add_option("--log-format", o.log_format);
  app.add_option("--initial-cluster", o.initial_cluster);
  app.add_option("--cluster-token", o.cluster_token);
  app.add_option("--join", o.join);
  app.add_option("--tls-cert", o.tls_cert);
  app.add_option("--tls-key", o.tls_key);
  app.add_option("--tls-client-ca", o.tls_client_ca);
  app.add_option("--peer-ca", o.peer_ca);
  app.add_flag("--plaintext", o.plaintext);
  app.add_option("--access-file", o.access_file);
  app.add_option("--max-promotion-lag", o.max_promotion_lag);
  app.add_option("--member-add-timeout-ms", o.member_add_timeout_ms);
  app.add_option("--tick-ms", o.tick_ms);
  app.add_option("--election-min-ms", o.election_min_ms);
  app.add_option("--drift", o.drift);
  app.add_option("--forward-timeout-ms", o.forward_timeout_ms);
  app.add_option("--min-ttl-ms", o.min_ttl_ms);
  app.add_option("--max-ttl-ms", o.max_ttl_ms);
  app.add_option("--max-wait-ms", o.max_wait_ms);
  app.add_option("--max-name-bytes", o.max_name_bytes);
  app.add_option("--max-label-bytes", o.max_label_bytes);
  app.add_option("--max-locks", o.max_locks);
  app.add_option("--max-leases", o.max_leases);
  app.add_option("--max-waiters-per-lock", o.max_waiters_per_lock);
  app.add_option("--max-leases-per-label", o.max_leases_per_label);
  app.add_option("--outcome-retention-ms", o.outcome_retention_ms);
  app.add_option("--max-outcomes-per-client", o.max_outcomes_per_client);
  app.add_option("--max-outcomes", o.max_outcomes);
  app.add_option("--max-request-bytes", o.max_request_bytes);
  app.add_option("--max-page-size", o.max_page_size);
  app.add_option("--watch-history", o.watch_history);
  app.add_option("--health-max-apply-lag", o.health_max_apply_lag);
  app.add_option("--snapshot-entries", o.snapshot_entries);
  app.add_option("--max-snapshot-bytes", o.max_snapshot_bytes);
  app.add_option("--backup-stall-timeout-ms", o.backup_stall_timeout_ms);
}

std::vector<std::string> SplitArgs(std::string_view s) {
  std::vector<std::string> args;
  std::string cur;
  for (char c : s) {
    if (c == '\0' || c == '\n') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) args.push_back(cur);
  return args;
}

void CheckValid(const NodeOptions& o) {
  for (const std::string* addr : {&o.client_addr, &o.peer_addr, &o.http_addr}) {
    FUZZ_CHECK(lockd::ParseHostPort(*addr).ok(), "a valid config's addresses parse");
  }
  FUZZ_CHECK(o.node_id != 0, "a valid config has a node id");
  if (!o.join.empty()) {
    for (const auto& a : lockd::server::SplitJoinAddrs(o.join)) {
      FUZZ_CHECK(!a.empty() && a.find(',') == std::string::npos, "join addresses split");
      FUZZ_CHECK(lockd::ParseHostPort(a).ok(), "a valid config's join addresses parse");
    }
  }
  if (o.initial_cluster.empty()) return;
  auto members = lockd::server::ParseInitialCluster(o.initial_cluster);
  FUZZ_CHECK(members.ok(), "a valid config's initial cluster parses");
  std::set<uint64_t> ids;
  std::set<std::string> addrs;
  bool self = false;
  std::string spec;
  for (const auto& m : *members) {
    FUZZ_CHECK(m.id != 0 && ids.insert(m.id).second, "member ids positive and unique");
    FUZZ_CHECK(addrs.insert(m.peer_addr).second && addrs.insert(m.client_addr).second,
               "member addresses unique");
    self = self || m.id == o.node_id;
    spec +=
        (spec.empty() ? "" : ",") + std::to_string(m.id) + "=" + m.peer_addr + "/" + m.client_addr;
  }
  FUZZ_CHECK(self, "the initial cluster names this node");
  auto again = lockd::server::ParseInitialCluster(spec);
  FUZZ_CHECK(again.ok() && *again == *members, "the member list formats back to itself");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 8192) return 0;  // a config file is small; bound the work per input
  const std::string_view body = lockd::fuzz::AsView(data + 1, size - 1);
  NodeOptions o;
  CLI::App app{"lockd"};
  AddOptions(app, o);
  try {
    if (data[0] & 1) {
      std::vector<std::string> args = SplitArgs(body);
      std::reverse(args.begin(), args.end());  // CLI11 takes them last first
      app.parse(args);
    } else {
      std::istringstream in{std::string(body)};
      app.parse_from_stream(in);
    }
  } catch (const CLI::Error& e) {
    FUZZ_CHECK(e.get_exit_code() != 0 || e.get_name() == "CallForHelp" ||
                   e.get_name() == "CallForAllHelp" || e.get_name() == "CallForVersion",
               "a parse error has an exit code");
    return 0;
  }
  const lockd::Status s = lockd::server::Validate(o);
  if (!s.ok()) {
    FUZZ_CHECK(!s.message().empty(), "a refusal says why");
    return 0;
  }
  CheckValid(o);
  FUZZ_CHECK(lockd::server::Validate(o).ok(), "Validate is a function of the options");
  return 0;
}
