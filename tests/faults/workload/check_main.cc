// faults_check: reads a fault run's histories, the resource's log and the fault events, runs every
// checker (faults/history/checkers.h), prints the reports and the availability figures, and exits
// 1 if any checker found a violation, 2 on unreadable input, and 3 if a checker could not decide
// (UNKNOWN: the linearizability search ran out of budget), unless --allow-unknown: a run that was
// never fully checked must not read as "no violation".
//
//   faults_check --history w1.jsonl,w2.jsonl,watch.jsonl,cleanup.jsonl --resource-log res.jsonl
//                --faults faults.jsonl --cleanup-bound-ms 10000
#include <pthread.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <sstream>

#include "faults/history/checkers.h"
#include "faults/history/linearizability.h"

namespace {

int Check(int argc, char** argv) {
  using namespace lockd::faults;
  CLI::App app{"faults_check: checks a recorded fault run"};
  std::string histories, resource_log, faults_path;
  int64_t cleanup_bound_ms = 10'000;
  uint64_t budget = LinearizabilityOptions{}.budget;
  app.add_option("--history", histories, "comma-separated JSON-lines op files")->required();
  app.add_option("--resource-log", resource_log, "faults_resource's log")->required();
  app.add_option("--faults", faults_path, "the nemeses' fault-event file (optional)");
  app.add_option("--cleanup-bound-ms", cleanup_bound_ms,
                 "every lock free within this long after the faults and workload stop")
      ->check(CLI::PositiveNumber);
  int64_t watch_tail_ms = LinearizabilityOptions{}.watch_tail.count();
  app.add_option("--watch-tail-ms", watch_tail_ms,
                 "linearizability: how long after a lock's last op the watcher must have run "
                 "for a grant it did not see to count as not made")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--search-budget", budget,
                 "linearizability: states per piece of a lock's history before UNKNOWN")
      ->check(CLI::PositiveNumber);
  int64_t renewal_slack_ms = 1'000;
  auto* slack = app.add_option("--renewal-slack-ms", renewal_slack_ms,
                               "run lease-kept, allowing a keeper's renewal this long to reach "
                               "the leader (only where that holds: checkers.h)")
                    ->check(CLI::NonNegativeNumber);
  CoverageOptions coverage;
  app.add_option("--min-grants-per-lock", coverage.min_grants_per_lock,
                 "coverage: acknowledged grants every lock must have")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-gaps", coverage.max_gaps, "coverage: gaps the Watch history may have");
  app.add_flag("--expect-fence-rejection", coverage.expect_fence_rejection,
               "coverage: the resource must have refused at least one fence");
  bool allow_unknown = false;
  app.add_flag("--allow-unknown", allow_unknown,
               "exit 0 when a checker could not decide (UNKNOWN) and none failed");
  CLI11_PARSE(app, argc, argv);

  auto print_warnings = [](const std::vector<std::string>& ws) {
    for (const std::string& w : ws) std::printf("warning: %s\n", w.c_str());
  };
  std::vector<Op> ops;
  std::stringstream in(histories);
  for (std::string path; std::getline(in, path, ',');) {
    if (path.empty()) continue;
    auto loaded = ReadOps(path);
    if (!loaded.error.empty()) {
      std::fprintf(stderr, "faults_check: %s\n", loaded.error.c_str());
      return 2;
    }
    print_warnings(loaded.warnings);
    ops.insert(ops.end(), loaded.records.begin(), loaded.records.end());
  }
  auto log = ReadResourceLog(resource_log);
  if (!log.error.empty()) {
    std::fprintf(stderr, "faults_check: %s\n", log.error.c_str());
    return 2;
  }
  print_warnings(log.warnings);
  std::vector<FaultEvent> faults;
  if (!faults_path.empty()) {
    auto loaded = ReadFaultEvents(faults_path);
    if (!loaded.error.empty()) {
      std::fprintf(stderr, "faults_check: %s\n", loaded.error.c_str());
      return 2;
    }
    print_warnings(loaded.warnings);
    faults = std::move(loaded.records);
  }

  std::vector<Report> reports = {
      CheckCoverage(ops, log.records, coverage),
      CheckFencing(log.records),
      CheckNoLostUpdate(log.records, ops),
      CheckLeaseSafety(ops),
      CheckMutualExclusion(ops),
      CheckLinearizability(
          ops, {.budget = budget, .watch_tail = std::chrono::milliseconds(watch_tail_ms)}),
      CheckNoLostAck(ops),
      CheckCleanup(ops, faults, cleanup_bound_ms * 1'000'000),
  };
  if (slack->count() > 0) reports.push_back(CheckLeaseKept(ops, renewal_slack_ms * 1'000'000));
  reports.push_back(Availability(ops, faults));
  bool failed = false, unknown = false;
  for (const Report& r : reports) {
    std::printf("%s", r.Format().c_str());
    failed |= r.failed();
    unknown |= r.verdict == Verdict::kUnknown;
  }
  if (failed) {
    std::printf("faults_check: VIOLATIONS FOUND\n");
    return 1;
  }
  if (unknown && !allow_unknown) {
    std::printf("faults_check: NOT FULLY CHECKED (a checker answered UNKNOWN)\n");
    return 3;
  }
  std::printf("faults_check: no violation%s\n", unknown ? " found (some UNKNOWN)" : "");
  return 0;
}

struct Args {
  int argc;
  char** argv;
  int code = 0;
};

}  // namespace

// The linearizability search recurses once per operation it places in a piece of a lock's
// history. Pieces are short when the Watch history resolves every indeterminate acquire, but one
// it cannot resolve joins everything after it into one piece, and an hour's soak (80,000 ops on
// a lock) then overflows the main thread's 8 MiB stack (seen: SIGSEGV). The checks run on a
// thread with a 2 GiB stack (address space reserved, touched only as deep as the search goes).
int main(int argc, char** argv) {
  Args args{argc, argv};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, size_t{2} << 30);
  pthread_t thread;
  auto run = [](void* p) -> void* {
    auto* a = static_cast<Args*>(p);
    a->code = Check(a->argc, a->argv);
    return nullptr;
  };
  if (pthread_create(&thread, &attr, run, &args) != 0) {
    std::fprintf(stderr, "faults_check: cannot start the checking thread\n");
    return 2;
  }
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
  return args.code;
}
