// faults_worker: a client process of the fault workload (worker.h has the roles).
//
//   faults_worker --mode worker --endpoints 127.0.0.1:7401,127.0.0.1:7402 --locks 3
//                 --resource 127.0.0.1:9000 --history w1.jsonl --process-id w1 --seed 7
//                 --duration-ms 30000 --ttl-ms 3000
#include <CLI/CLI.hpp>
#include <cstdio>
#include <sstream>

#include "faults/workload/worker.h"

int main(int argc, char** argv) {
  CLI::App app{"faults_worker: records a client's operations against a lockd cluster"};
  lockd::faults::WorkerOptions o;
  std::string mode = "worker", endpoints, prefix = "faults/hot/";
  int locks = 3;
  int64_t duration_ms = 10'000, ttl_ms = 3'000;
  app.add_option("--mode", mode, "worker | watcher | cleanup | keeper")
      ->check(CLI::IsMember({"worker", "watcher", "cleanup", "keeper"}));
  app.add_option("--endpoints", endpoints, "comma-separated host:port client addresses")
      ->required();
  app.add_option("--locks", locks, "how many hot locks (named <prefix>0 …)")
      ->check(CLI::Range(1, 64));
  app.add_option("--lock-prefix", prefix, "the hot locks' name prefix (the watcher watches it)");
  app.add_option("--resource", o.resource, "127.0.0.1:port of faults_resource (worker mode)");
  app.add_option("--history", o.history, "JSON-lines file the ops are appended to")->required();
  app.add_option("--seed", o.seed, "seed of this process's choices");
  app.add_option("--duration-ms", duration_ms, "stop after this long")
      ->check(CLI::Range(int64_t{1}, int64_t{24} * 3600 * 1000));
  app.add_option("--ttl-ms", ttl_ms, "lease TTL (worker and keeper modes)")
      ->check(CLI::Range(int64_t{1}, int64_t{3600} * 1000));  // worker and keeper modes
  app.add_option("--process-id", o.process_id, "this process's name in the history")->required();
  app.add_option("--stop-file", o.stop_file,
                 "stop as at the deadline once this file exists (worker, watcher, keeper modes)");
  int64_t phase_ms = 0, hold_ms = 0;
  app.add_option("--phase-ms", phase_ms, "keeper: wait this long before the first grant")
      ->check(CLI::Range(int64_t{0}, int64_t{3600} * 1000));
  app.add_option("--hold-ms", hold_ms,
                 "worker: the long hold of one cycle in eight (0: random, up to a TTL)")
      ->check(CLI::Range(int64_t{0}, int64_t{3600} * 1000));
  CLI11_PARSE(app, argc, argv);

  std::stringstream in(endpoints);
  for (std::string e; std::getline(in, e, ',');) {
    if (!e.empty()) o.endpoints.push_back(e);
  }
  if (o.endpoints.empty()) {
    std::fprintf(stderr, "faults_worker: --endpoints names no endpoint\n");
    return 2;
  }
  if (mode == "worker" && o.resource.empty()) {
    std::fprintf(stderr, "faults_worker: worker mode needs --resource\n");
    return 2;
  }
  for (int i = 0; i < locks; ++i) o.locks.push_back(prefix + std::to_string(i));
  o.prefix = prefix;
  o.duration = std::chrono::milliseconds(duration_ms);
  o.ttl = std::chrono::milliseconds(ttl_ms);
  o.phase = std::chrono::milliseconds(phase_ms);
  o.hold = std::chrono::milliseconds(hold_ms);
  if (mode == "watcher") return lockd::faults::RunWatcher(o);
  if (mode == "cleanup") return lockd::faults::RunCleanup(o);
  if (mode == "keeper") return lockd::faults::RunKeeper(o);
  return lockd::faults::RunWorker(o);
}
