// lockd: the lock server daemon. Parses flags and the TOML config, starts a Node, and runs until
// SIGTERM or SIGINT, then shuts down cleanly and exits 0. SIGHUP reloads the TLS certificates.
#include <absl/synchronization/mutex.h>
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "base/unsafe_faults.h"
#include "server/logging.h"
#include "server/node.h"
#include "server/restore.h"
#include "storage/inspect.h"

namespace {

constexpr const char* kUnsafeFaultsEnv = "LOCKD_TESTING_UNSAFE_FAULTS";

int Run(const lockd::server::NodeOptions& options, const std::vector<std::string>& unsafe_faults) {
  // Block the stop signals in every thread (gRPC's included) and take them here with sigwait, so
  // no handler runs in an arbitrary thread.
  // A shell starts background jobs with SIGINT ignored, and an ignored signal is discarded before
  // sigwait could see it: restore the default disposition first.
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  sigset_t stop_signals;  // and SIGHUP: reload the TLS certificates
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  spdlog::set_level(spdlog::level::from_str(options.log_level));
  lockd::server::ConfigureLogging(options.node_id, options.log_format);
  for (std::string_view fault : unsafe_faults) {
    spdlog::critical(
        "TESTING ONLY: --testing-unsafe-fault={} is set: this node breaks a safety guarantee on "
        "purpose (fault tests). Never run it with data you care about.",
        fault);
  }
  lockd::server::Node node(options);
  if (lockd::Status s = node.Start(); !s.ok()) {
    spdlog::error("cannot start: {}", s.ToString());
    return 1;
  }
  spdlog::info("node {} ready", options.node_id);

  int sig = 0;
  for (;;) {
    sigwait(&stop_signals, &sig);
    if (sig != SIGHUP) break;
    if (!node.options().plaintext) {
      if (lockd::Status s = node.ReloadCertificates(); !s.ok()) {
        spdlog::error("SIGHUP: certificates not reloaded, the old ones stay: {}", s.ToString());
      }
    }
    if (!node.options().access_file.empty()) {
      if (lockd::Status s = node.ReloadAccessPolicy(); !s.ok()) {
        spdlog::error("SIGHUP: access policy not reloaded, the one in force stays: {}",
                      s.ToString());
      }
    }
  }
  spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  node.Shutdown();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's abseil is built with assertions on, which turns on absl::Mutex's deadlock detection:
  // a global cycle graph updated on every lock gRPC takes (~1.5% of the leader's CPU under load,
  // issue 18's profile). Our locks are not absl's; gRPC's are tested upstream.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed in
  // one is not given back while any of it is in use: with 1,000,000 locks a node held 1.1-1.3 GiB
  // resident, against 0.73-0.85 GiB with two arenas, at the same throughput and CPU per op
  // (bench/scale.sh, docs/benchmarks.md). Before any thread starts; MALLOC_ARENA_MAX, when set,
  // decides instead.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
  lockd::server::NodeOptions o;
  CLI::App app{"lockd: a distributed lock server with fencing tokens"};
  app.set_config("--config", "", "TOML config file; its keys are the long flag names");
  app.add_option("--id", o.node_id, "This node's id, unique in the cluster (> 0)")
      ->capture_default_str();
  app.add_option("--client-addr", o.client_addr, "Listen address for clients (gRPC)")
      ->capture_default_str();
  app.add_option("--peer-addr", o.peer_addr, "Listen address for Raft peers (gRPC)")
      ->capture_default_str();
  app.add_option("--http-addr", o.http_addr,
                 "Listen address for /metrics, /healthz and /readyz (HTTP)")
      ->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "Directory for the Raft log and snapshots")
      ->capture_default_str();
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  app.add_option("--log-format", o.log_format,
                 "text, or json: one JSON object per line (ts, level, node, term, msg)")
      ->capture_default_str();
  app.add_option("--tls-cert", o.tls_cert,
                 "This member's certificate (PEM, with intermediates); its URI SAN "
                 "urn:lockd:member:<id> names it. TLS on both ports (docs/security.md)");
  app.add_option("--tls-key", o.tls_key, "The certificate's private key (PEM, unencrypted)");
  app.add_option("--tls-client-ca", o.tls_client_ca,
                 "Clients must present a certificate this CA signed (mutual TLS on the client "
                 "port); unset: clients are not asked for one");
  app.add_option("--peer-ca", o.peer_ca,
                 "The cluster CA, which signs every member's certificate (mutual TLS on the peer "
                 "port)");
  app.add_option("--access-file", o.access_file,
                 "Access policy (TOML): identities by client certificate or bearer token, roles "
                 "granting lock/read/admin per name prefix, quotas; reloaded on SIGHUP. Unset: "
                 "no access control (docs/security.md)");
  app.add_flag("--plaintext", o.plaintext,
               "Serve both ports without TLS (development only). Without it a node needs "
               "--tls-cert, --tls-key and --peer-ca");
  app.add_option("--initial-cluster", o.initial_cluster,
                 "Members of a new cluster: id=peer_host:port/client_host:port,... (used only "
                 "when the data dir is empty; empty: a one-node cluster)")
      ->capture_default_str();
  app.add_option(
         "--cluster-token", o.cluster_token,
         "A label for a new cluster: with the member list it makes the bootstrap id by which "
         "members of one bootstrap recognise each other (the cluster id itself is random)")
      ->capture_default_str();
  app.add_option("--join", o.join,
                 "Join a running cluster: client addresses of some of its members "
                 "(host:port,...). The data dir must be empty (or of that cluster); the node "
                 "never bootstraps and waits to be added (lockctl member add)");
  app.add_option("--max-promotion-lag", o.max_promotion_lag,
                 "A new member becomes a voter once its log is within this many entries of the "
                 "leader's")
      ->capture_default_str();
  app.add_option("--member-add-timeout-ms", o.member_add_timeout_ms,
                 "How long AddMember waits for the new node to catch up")
      ->capture_default_str();
  app.add_option("--commit-flush-us", o.commit_flush_us,
                 "A leader sends an advanced commit index alone only after this many microseconds "
                 "(the next append usually carries it sooner; 0: at once)")
      ->capture_default_str();
  app.add_option("--tick-ms", o.tick_ms, "T_tick: heartbeat interval (same on every member)")
      ->capture_default_str();
  app.add_option("--election-min-ms", o.election_min_ms,
                 "E_min: minimum election timeout; timeouts are random in [E_min, 2 E_min) "
                 "(same on every member)")
      ->capture_default_str();
  app.add_option("--drift", o.drift,
                 "rho: assumed bound on clock-rate drift between nodes, as a fraction (same on "
                 "every member)")
      ->capture_default_str();
  app.add_option("--forward-timeout-ms", o.forward_timeout_ms,
                 "F_fwd: nothing is forwarded or proposed later than this after a node received "
                 "it")
      ->capture_default_str();
  app.add_option("--min-ttl-ms", o.min_ttl_ms, "Shortest lease TTL granted")->capture_default_str();
  app.add_option("--max-ttl-ms", o.max_ttl_ms, "Longest lease TTL granted")->capture_default_str();
  app.add_option("--max-wait-ms", o.max_wait_ms, "Longest wait_ms of an Acquire")
      ->capture_default_str();
  app.add_option("--max-name-bytes", o.max_name_bytes, "Longest lock name, in bytes")
      ->capture_default_str();
  app.add_option("--max-label-bytes", o.max_label_bytes, "Longest lease label, in bytes")
      ->capture_default_str();
  app.add_option("--max-locks", o.max_locks, "Most locks held or waited for at once")
      ->capture_default_str();
  app.add_option("--max-leases", o.max_leases, "Most leases at once")->capture_default_str();
  app.add_option("--max-waiters-per-lock", o.max_waiters_per_lock, "Longest queue of one lock")
      ->capture_default_str();
  app.add_option("--max-leases-per-label", o.max_leases_per_label, "Most leases sharing one label")
      ->capture_default_str();
  app.add_option("--outcome-retention-ms", o.outcome_retention_ms,
                 "W: every exactly-once record (a request's outcome, a client's watermark, a "
                 "Cancel in advance) is retired once this old; a retry within it is answered "
                 "from its record (>= --forward-timeout-ms; same on every member)")
      ->capture_default_str();
  app.add_option("--max-outcomes-per-client", o.max_outcomes_per_client,
                 "Most exactly-once records one client id may have at once; a new request past "
                 "it is RESOURCE_EXHAUSTED (same on every member)")
      ->capture_default_str();
  app.add_option("--max-outcomes", o.max_outcomes,
                 "Most exactly-once records kept at once (outcomes plus one per client); a new "
                 "request past it is RESOURCE_EXHAUSTED (same on every member)")
      ->capture_default_str();
  app.add_option("--max-request-bytes", o.max_request_bytes,
                 "Largest client message; larger ones are RESOURCE_EXHAUSTED")
      ->capture_default_str();
  app.add_option("--max-page-size", o.max_page_size, "Most items in one List page")
      ->capture_default_str();
  app.add_option("--watch-history", o.watch_history,
                 "Entries with events kept for resuming watches")
      ->capture_default_str();
  app.add_option("--health-max-apply-lag", o.health_max_apply_lag,
                 "Health is SERVING only while applied is within this many entries of commit")
      ->capture_default_str();
  app.add_option("--snapshot-entries", o.snapshot_entries,
                 "Take a snapshot and compact the log every this many applied entries (0: never)")
      ->capture_default_str();
  app.add_option("--max-snapshot-bytes", o.max_snapshot_bytes,
                 "Largest snapshot accepted from a leader")
      ->capture_default_str();
  app.add_option("--backup-stall-timeout-ms", o.backup_stall_timeout_ms,
                 "End a Backup stream whose client took no chunk for this long (frees its slot)")
      ->capture_default_str();
  lockd::server::RestoreOptions ro;
  auto* restore = app.add_subcommand(
      "restore",
      "Make a new member's data dir from a backup file (lockctl backup), then exit. Run it for "
      "every member of the new cluster, from the same file, then start them as usual: the new "
      "cluster gets a new cluster id, no leases and no locks, and counters above every token the "
      "old cluster issued (docs/operations.md)");
  restore->add_option("--from", ro.backup_path, "The backup file")->required();
  restore->add_option("--data-dir", ro.data_dir, "The new data dir (missing or empty)")->required();
  restore->add_option("--id", ro.node_id, "This member's id in the new cluster")->required();
  restore
      ->add_option("--initial-cluster", ro.initial_cluster,
                   "Members of the new cluster: id=peer_host:port/client_host:port,... (the same "
                   "on every member)")
      ->required();
  restore
      ->add_option("--cluster-token", ro.cluster_token,
                   "A label for the new cluster (the same on every member)")
      ->capture_default_str();
  restore
      ->add_option("--token-floor", ro.token_floor,
                   "The token and lease-id counters start at least here (e.g. above the largest "
                   "fence a protected resource has seen); a start above 2^62 is refused")
      ->capture_default_str();
  // Hidden (no group): planted bugs for the fault tests, base/unsafe_faults.h. Not configurable:
  // a key in a deployed TOML file must never switch a planted bug on (CLI11 refuses the key).
  std::vector<std::string> unsafe_faults;
  app.add_option("--testing-unsafe-fault", unsafe_faults,
                 "TESTING ONLY: switch on a planted bug (breaks a guarantee on purpose)")
      ->group("")
      ->configurable(false);
  std::string inspect;
  app.add_option("--inspect-data-dir", inspect,
                 "Print a data dir's log range, hard state, members and snapshot, then exit "
                 "(safe while a node runs on it)");
  CLI11_PARSE(app, argc, argv);

  if (restore->parsed()) {
    auto report = lockd::server::RestoreDataDir(ro);
    if (!report.ok()) {
      std::fprintf(stderr, "lockd restore: %s\n", report.status().ToString().c_str());
      return 1;
    }
    std::fputs(lockd::server::FormatRestoreReport(ro, *report).c_str(), stdout);
    return 0;
  }

  if (!inspect.empty()) {
    auto report = lockd::storage::InspectDataDir(inspect);
    if (!report.ok()) {
      std::fprintf(stderr, "lockd: %s\n", report.status().ToString().c_str());
      return 1;
    }
    std::fputs(lockd::storage::FormatReport(*report).c_str(), stdout);
    return 0;
  }

  // An empty --join (a script's empty variable) must not read as "no --join" and bootstrap a
  // cluster of one next to the one it was meant to join.
  if (app.count("--join") > 0 && lockd::server::SplitJoinAddrs(o.join).empty()) {
    std::fprintf(stderr,
                 "lockd: --join names no address: give the client addresses of some members "
                 "(host:port,...)\n");
    return 2;
  }
  if (lockd::Status s = lockd::server::Validate(o); !s.ok()) {
    std::fprintf(stderr, "lockd: %s\n", s.message().c_str());
    return 2;
  }
  // A second, separate switch: the flag alone (a copied command line, a wrapper script) does not
  // plant a bug; the fault suite's harness also sets the environment variable.
  if (!unsafe_faults.empty()) {
    const char* armed = std::getenv(kUnsafeFaultsEnv);
    if (armed == nullptr || std::string_view(armed) != "1") {
      std::fprintf(stderr,
                   "lockd: --testing-unsafe-fault is refused unless the environment also sets "
                   "%s=1 (planted bugs for the fault tests only)\n",
                   kUnsafeFaultsEnv);
      return 2;
    }
  }
  for (const auto& fault : unsafe_faults) {
    if (lockd::Status s = lockd::unsafe::Enable(fault); !s.ok()) {
      std::fprintf(stderr, "lockd: %s\n", s.message().c_str());
      return 2;
    }
  }
  return Run(o, unsafe_faults);
}
