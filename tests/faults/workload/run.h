// One fault run's workload, from start to verdict (issue 17): faults_resource, the watcher, the
// worker processes, then the clean-up inspection and faults_check over everything they recorded.
// The drivers (jepsen_local_test: a loopback cluster and process faults; jepsen_netns_test: a
// cluster in network namespaces and every nemesis) own the cluster and the faults; this owns the
// client side, so both run the same workload and the same checkers.
//
//   WorkloadRunOptions o;  o.dir = d;  o.endpoints = e;  o.seed = s;
//   auto run = WorkloadRun::Start(o, &err);
//   ... inject faults, record them in run->events_path() (FaultEvent lines) ...
//   WorkloadRun::Verdict v = run->Finish();   // v.check_exit == 0: every checker passed
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "faults/history/history.h"
#include "support/process.h"

namespace lockd::faults {

struct WorkloadRunOptions {
  std::string dir;        ///< histories, logs and the resource's log go here
  std::string endpoints;  ///< comma-separated client addresses every client process uses
  /// How long the workers run at most: Finish() stops them earlier (a driver whose faults take
  /// an unknown time gives a generous bound and calls Finish() when they are healed).
  std::chrono::milliseconds workload{16'000};
  uint64_t seed = 1;  ///< the workers' and the watcher's choices
  int workers = 5;
  /// Keepers (keeper.cc: a lease renewed over the raw API, for the lease-kept checker), named
  /// k0, k1, …; only where a renewal reaches a node within faults_check's --renewal-slack-ms.
  int keepers = 0;
  int locks = 3;
  std::chrono::milliseconds ttl{3'000};
  /// After the workload, every lock must be seen free within this long (checker 7).
  std::chrono::milliseconds cleanup_bound{15'000};
  /// The fault-event file faults_check reads; "" = <dir>/faults.jsonl (created empty).
  std::string events_path;
  /// > 0: the long hold of one worker cycle in eight lasts this long (worker.h); 0: random.
  std::chrono::milliseconds hold{0};
  /// Coverage (faults_check): acknowledged grants every lock must have, and the Watch gaps
  /// allowed (-1: any). So no checker passes on a run that did nothing.
  int min_grants_per_lock = 5;
  int max_gaps = -1;
};

/// Every checker a full run must see PASS (faults_check's report names), lease-kept aside (it
/// runs only with keepers).
inline const std::vector<std::string> kEveryChecker = {
    "coverage",         "fencing",         "no-lost-update", "lease-safety",
    "mutual-exclusion", "linearizability", "no-lost-ack",    "clean-up"};

class WorkloadRun {
 public:
  /// Starts the resource and the watcher (and waits until the watch is open, so its history
  /// begins before the first grant), then the workers. nullptr and `error` if one cannot start.
  static std::unique_ptr<WorkloadRun> Start(WorkloadRunOptions options, std::string* error);
  ~WorkloadRun();
  WorkloadRun(const WorkloadRun&) = delete;
  WorkloadRun& operator=(const WorkloadRun&) = delete;

  const std::string& events_path() const { return o_.events_path; }
  int workers() const { return static_cast<int>(workers_.size()); }
  /// "w<k>", as the worker's history and leases name it.
  static std::string WorkerName(int w) { return "w" + std::to_string(w); }

  /// Waits up to `within` for worker w to be between an acknowledged EXCLUSIVE read and its
  /// write (its history's last line), so a pause there makes a late write the fence must refuse.
  /// Whether it caught that moment (the pause goes ahead either way).
  bool WaitUntilMidWork(int w, std::chrono::milliseconds within);
  /// Waits up to `within` for any worker to hold an EXCLUSIVE lock after its write (its history's
  /// last line an acknowledged increment, at least `for_at_least` old); that worker, or -1.
  int WaitUntilAnyHolds(std::chrono::milliseconds within, std::chrono::milliseconds for_at_least);
  void PauseWorker(int w);   ///< SIGSTOP
  void ResumeWorker(int w);  ///< SIGCONT

  struct Verdict {
    int check_exit = -1;                ///< faults_check's exit code (0: no violation, all decided)
    std::string check_output;           ///< its reports
    std::vector<std::string> problems;  ///< client processes that did not end cleanly
    /// The named checker's line says PASS / FAIL.
    bool Passed(const std::string& checker) const;
    bool Failed(const std::string& checker) const;
    /// Those of `checkers` whose line does not say PASS.
    std::vector<std::string> NotPassed(const std::vector<std::string>& checkers) const;
  };
  /// Stops the workers (each finishes the op in hand; --stop-file), runs the clean-up inspection
  /// at once, stops the watcher and the resource, and runs faults_check. Call once, after
  /// healing. Bounded: about 5 minutes at most beyond the workers' last op.
  Verdict Finish();

  /// Copies the run's records (histories, logs, fault events) and `extra` files to `dest`.
  void KeepRecords(const std::string& dest, const std::vector<std::string>& extra = {}) const;

 private:
  explicit WorkloadRun(WorkloadRunOptions o) : o_(std::move(o)) {}
  std::vector<std::string> Argv(const std::string& mode, const std::string& id,
                                std::chrono::milliseconds duration, uint64_t seed) const;
  std::string History(const std::string& id) const { return o_.dir + "/" + id + ".jsonl"; }
  /// Worker w's last recorded op, if its history's last line holds one.
  std::optional<Op> LastOp(int w) const;

  WorkloadRunOptions o_;
  std::string resource_addr_;
  std::unique_ptr<testing::Process> resource_, watcher_;
  std::vector<std::unique_ptr<testing::Process>> workers_, keepers_;
  std::vector<bool> paused_;
  bool finished_ = false;
};

}  // namespace lockd::faults
