// lockd: the lock server daemon. Parses flags and the TOML config, starts a Node, and runs until
// SIGTERM or SIGINT, then shuts down cleanly and exits 0.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "server/node.h"
#include "storage/inspect.h"

namespace {

int Run(const lockd::server::NodeOptions& options) {
  // Block the stop signals in every thread (gRPC's included) and take them here with sigwait, so
  // no handler runs in an arbitrary thread.
  // A shell starts background jobs with SIGINT ignored, and an ignored signal is discarded before
  // sigwait could see it: restore the default disposition first.
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  spdlog::set_level(spdlog::level::from_str(options.log_level));
  lockd::server::Node node(options);
  if (lockd::Status s = node.Start(); !s.ok()) {
    spdlog::error("cannot start: {}", s.ToString());
    return 1;
  }
  spdlog::info("node {} ready", options.node_id);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  node.Shutdown();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  lockd::server::NodeOptions o;
  CLI::App app{"lockd: a distributed lock server with fencing tokens"};
  app.set_config("--config", "", "TOML config file; its keys are the long flag names");
  app.add_option("--id", o.node_id, "This node's id, unique in the cluster (> 0)")
      ->capture_default_str();
  app.add_option("--client-addr", o.client_addr, "Listen address for clients (gRPC)")
      ->capture_default_str();
  app.add_option("--peer-addr", o.peer_addr, "Listen address for Raft peers (gRPC)")
      ->capture_default_str();
  app.add_option("--http-addr", o.http_addr, "Listen address for /metrics and /healthz (HTTP)")
      ->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "Directory for the Raft log and snapshots")
      ->capture_default_str();
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  std::string inspect;
  app.add_option("--inspect-data-dir", inspect,
                 "Print a data dir's log range, hard state, members and snapshot, then exit "
                 "(safe while a node runs on it)");
  CLI11_PARSE(app, argc, argv);

  if (!inspect.empty()) {
    auto report = lockd::storage::InspectDataDir(inspect);
    if (!report.ok()) {
      std::fprintf(stderr, "lockd: %s\n", report.status().ToString().c_str());
      return 1;
    }
    std::fputs(lockd::storage::FormatReport(*report).c_str(), stdout);
    return 0;
  }

  if (lockd::Status s = lockd::server::Validate(o); !s.ok()) {
    std::fprintf(stderr, "lockd: %s\n", s.message().c_str());
    return 2;
  }
  return Run(o);
}
