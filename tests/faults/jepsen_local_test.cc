// The fault workload (workload/run.h) against a real 3-node cluster on 127.0.0.1 with process
// nemeses (issue 17): kill -9 of a random node and of the leader (then a restart), SIGSTOP/SIGCONT
// of a node past the election timeout, SIGSTOP of a worker past its lease's TTL, and a leader
// whose fsyncs are slow (the slow-sync shim). Then faults_check runs every checker.
//
// - CheckersPassUnderProcessFaults: every checker passes. One fault at a time, each healed
//   before the next, so a majority is always up. The schedule comes from a seed printed before
//   it runs (LOCKD_FAULTS_SEED replays it); quick by default (16 s of workload),
//   LOCKD_FAULTS_SOAK_SECONDS sets the workload's length.
// - ALeaderWithASlowDiskKeepsEveryLeaseThatIsRenewed: syncs at 0.8 x TTL; keepers renew through
//   the stalls and every renewal is honoured (lease-kept), every checker passes.
// - Planted*: with one knob of base/unsafe_faults.h switched on, the checker that should catch
//   it reports the violation by name (each knob's direct effect: planted_bugs_test.cc).
//
// A run's records (histories, logs, fault events) are kept under
// $TMPDIR/lockd-faults-<test>-<seed> when a test fails or LOCKD_FAULTS_KEEP is set.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "e2e/cluster_harness.h"
#include "faults/history/history.h"
#include "faults/workload/run.h"

namespace lockd::faults {
namespace {

using namespace std::chrono_literals;
using e2e::Cluster;
using e2e::ClusterOptions;
using Ms = std::chrono::milliseconds;

constexpr int kWorkers = 5;
constexpr int kLocks = 3;
constexpr Ms kTtl = 3000ms;
constexpr Ms kElectionMin = 500ms;
/// The quick mode's workload: two or three faults; LOCKD_FAULTS_SOAK_SECONDS for long runs.
constexpr uint64_t kQuickWorkloadSeconds = 16;
/// The quick mode's fixed seed: CI replays the same schedule every run.
constexpr uint64_t kQuickSeed = 20261206;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

/// The process faults ProcessNemesis draws from.
enum Fault {
  kKillRandom,
  kKillLeader,
  kPauseNode,
  kPauseWorker,
  kSlowLeaderDisk,     ///< every sync of the leader `slow_sync` late for 4–7 s
  kKillLeaderInAHold,  ///< kill the leader while a worker holds a lock after its write
};

/// Applies process faults from a seed, one at a time, and appends each to the fault-event file.
class ProcessNemesis {
 public:
  /// `slow_dir`: the directory the nodes' slow-sync shim watches (kSlowLeaderDisk).
  ProcessNemesis(Cluster& cluster, WorkloadRun& run, uint64_t seed, std::vector<Fault> kinds,
                 std::string slow_dir, Ms slow_sync)
      : cluster_(cluster),
        run_(run),
        rng_(seed),
        events_(run.events_path()),
        kinds_(std::move(kinds)),
        slow_dir_(std::move(slow_dir)),
        slow_sync_(slow_sync) {}

  /// Runs faults until `until`, then heals everything.
  void Run(std::chrono::steady_clock::time_point until) {
    while (std::chrono::steady_clock::now() + 6s < until) {
      Sleep(1000 + rng_() % 2000);
      switch (kinds_[rng_() % kinds_.size()]) {
        case kKillRandom:
          KillAndRestart(static_cast<int>(rng_() % cluster_.size()), "random node");
          break;
        case kKillLeader: {
          const int leader = cluster_.WaitForLeader(5s);
          if (leader >= 0) KillAndRestart(leader, "leader");
          break;
        }
        case kPauseNode:
          PauseNode(static_cast<int>(rng_() % cluster_.size()));
          break;
        case kPauseWorker:
          PauseWorker(static_cast<int>(rng_() % static_cast<uint64_t>(run_.workers())));
          break;
        case kSlowLeaderDisk: {
          const int leader = cluster_.WaitForLeader(5s);
          if (leader >= 0) SlowDisk(leader);
          break;
        }
        case kKillLeaderInAHold: {
          const int w = run_.WaitUntilAnyHolds(10s, 200ms);
          const int leader = cluster_.WaitForLeader(5s);
          if (w >= 0 && leader >= 0) {
            KillAndRestart(leader, "leader, while " + WorkloadRun::WorkerName(w) + " holds a lock");
          }
          break;
        }
      }
      // Before the next fault, the cluster must have a leader again (one fault at a time).
      cluster_.WaitForReady(30s);
    }
  }
  /// Faults injected (not counting their heals).
  int faults() const { return faults_; }

 private:
  void Sleep(uint64_t ms) { std::this_thread::sleep_for(Ms(ms)); }
  void Event(const std::string& kind, const std::string& target, const std::string& detail,
             bool is_fault = true) {
    events_.Write(ToJson(FaultEvent{BootNow(), kind, target, detail}));
    std::printf("nemesis: %s %s (%s)\n", kind.c_str(), target.c_str(), detail.c_str());
    std::fflush(stdout);
    faults_ += is_fault;
  }
  void KillAndRestart(int i, const std::string& which) {
    Event("kill", "node" + std::to_string(cluster_.id(i)), which);
    cluster_.Kill(i);
    Sleep(500 + rng_() % 2000);
    cluster_.Start(i);
  }
  void PauseNode(int i) {
    // Past the election timeout: the others elect a leader without it (if it led).
    const uint64_t ms = 2 * kElectionMin.count() + rng_() % 1500;
    Event("stop", "node" + std::to_string(cluster_.id(i)), std::to_string(ms) + " ms");
    cluster_.Pause(i);
    Sleep(ms);
    cluster_.Resume(i);
    Event("cont", "node" + std::to_string(cluster_.id(i)), "", false);
  }
  void PauseWorker(int w) {
    // Past its lease's TTL, caught between its fenced read and its write where possible: its
    // lease expires, another worker takes the lock, and the late write must be refused by the
    // fence.
    const uint64_t ms = kTtl.count() + 2000 + rng_() % 1000;
    const bool mid_work = run_.WaitUntilMidWork(w, 3s);
    Event("client_stop", WorkloadRun::WorkerName(w),
          std::to_string(ms) + " ms" + (mid_work ? ", between its read and its write" : ""));
    run_.PauseWorker(w);
    Sleep(ms);
    run_.ResumeWorker(w);
    Event("client_cont", WorkloadRun::WorkerName(w), "", false);
  }
  void SlowDisk(int i) {
    const std::string knob = slow_dir_ + "/" + std::to_string(cluster_.pid(i));
    const uint64_t ms = 4000 + rng_() % 3000;
    Event("slow_disk", "node" + std::to_string(cluster_.id(i)),
          std::to_string(slow_sync_.count()) + " ms per sync for " + std::to_string(ms) + " ms");
    {  // written whole then renamed: the shim never reads half a number
      std::ofstream(knob + ".tmp") << slow_sync_.count() << "\n";
      std::rename((knob + ".tmp").c_str(), knob.c_str());
    }
    Sleep(ms);
    std::remove(knob.c_str());
    Event("heal", "node" + std::to_string(cluster_.id(i)), "disk at full speed", false);
  }

  Cluster& cluster_;
  WorkloadRun& run_;
  std::mt19937_64 rng_;
  JsonLinesWriter events_;
  std::vector<Fault> kinds_;
  std::string slow_dir_;
  Ms slow_sync_;
  int faults_ = 0;
};

// lockd accepts a planted bug only when its environment arms it (src/daemon/main.cc); only the
// planted-bug runs pass the knob itself.
constexpr const char* kArmPlantedBugs = "LOCKD_TESTING_UNSAFE_FAULTS=1";

struct LocalRun {
  uint64_t seed = kQuickSeed;
  Ms workload = Ms(1000 * kQuickWorkloadSeconds);
  std::string planted_bug;  ///< --testing-unsafe-fault, "" for none
  std::vector<Fault> kinds{kKillRandom, kKillLeader, kPauseNode, kPauseWorker};
  Ms ttl = kTtl;
  Ms hold{0};  ///< the workers' long holds (WorkloadRunOptions::hold)
  /// > 0: every node carries the slow-sync shim and kSlowLeaderDisk makes the leader's syncs this
  /// slow; the cluster then ticks every 100 ms with E_min 5 s, so the stalls test the lease rules
  /// rather than cause failovers.
  Ms slow_sync{0};
  int keepers = 0;
  int min_grants_per_lock = 5;
};

struct LocalResult;
/// What the test asserts on a run's result, run before the records are kept or thrown away.
using Expectations = std::function<void(const LocalResult&)>;

/// What a run leaves for the test to look at beyond the verdict.
struct LocalResult {
  WorkloadRun::Verdict verdict;
  std::string node_logs;           ///< every node's log tail
  std::vector<FaultEvent> faults;  ///< the fault events
  std::vector<Op> keeper_ops;      ///< the keepers' renewals
};

/// One run of the workload against a fresh loopback cluster under process faults. Failed
/// assertions inside (the cluster did not start, …) are reported to the calling test.
LocalResult RunLocal(const LocalRun& r, const Expectations& expect) {
  const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::printf("seed=%llu replay with LOCKD_FAULTS_SEED=%llu (workload %lld s)%s%s\n",
              static_cast<unsigned long long>(r.seed), static_cast<unsigned long long>(r.seed),
              static_cast<long long>(r.workload.count() / 1000),
              r.planted_bug.empty() ? "" : ", planted bug ", r.planted_bug.c_str());
  std::fflush(stdout);
  LocalResult result;
  ClusterOptions co;
  co.election_min_ms = kElectionMin.count();
  co.env = {kArmPlantedBugs};
  if (!r.planted_bug.empty()) co.extra_flags = {"--testing-unsafe-fault=" + r.planted_bug};
  testing::TempDir slow_dir;
  if (r.slow_sync > Ms(0)) {
    co.tick_ms = 100;
    co.election_min_ms = 5000;
    // Every start of every node, restarts included, carries the shim (ClusterOptions::env).
    co.env.push_back(std::string("LD_PRELOAD=") + LOCKD_SLOW_SYNC_LIB);
    co.env.push_back("LOCKD_SLOW_SYNC_DIR=" + slow_dir.path());
  }
  Cluster cluster(co);
  if (cluster.WaitForReady(30s) < 0) {
    ADD_FAILURE() << "no leader: " << cluster.StatusSummary();
    return result;
  }
  std::string endpoints;
  for (int i = 0; i < cluster.size(); ++i) {
    endpoints += (i ? "," : "") + cluster.client_addr(i);
  }
  WorkloadRunOptions wo;
  wo.dir = cluster.dir();
  wo.endpoints = endpoints;
  wo.workload = r.workload;
  wo.seed = r.seed;
  wo.workers = kWorkers;
  wo.keepers = r.keepers;
  wo.locks = kLocks;
  wo.ttl = r.ttl;
  wo.hold = r.hold;
  // A dead holder's lease (TTL) plus an election and the checks' own pace.
  wo.cleanup_bound = r.ttl + 12s;
  wo.min_grants_per_lock = r.min_grants_per_lock;
  std::string error;
  auto run = WorkloadRun::Start(wo, &error);
  if (!run) {
    ADD_FAILURE() << error;
    return result;
  }
  ProcessNemesis nemesis(cluster, *run, r.seed, r.kinds, slow_dir.path(), r.slow_sync);
  nemesis.Run(std::chrono::steady_clock::now() + r.workload);
  for (int i = 0; i < cluster.size(); ++i) {
    if (!cluster.running(i)) cluster.Start(i);
    if (cluster.paused(i)) cluster.Resume(i);
  }
  EXPECT_GE(cluster.WaitForReady(30s), 0) << cluster.StatusSummary();
  result.faults = ReadFaultEvents(run->events_path()).records;
  result.verdict = run->Finish();
  for (const std::string& p : result.verdict.problems) ADD_FAILURE() << p;
  std::printf("%d faults; faults_check:\n%s", nemesis.faults(),
              result.verdict.check_output.c_str());
  EXPECT_GT(nemesis.faults(), 0);
  for (int i = 0; i < cluster.size(); ++i) result.node_logs += cluster.LogTail(i, 100000);
  for (int k = 0; k < r.keepers; ++k) {
    auto ops = ReadOps(cluster.dir() + "/k" + std::to_string(k) + ".jsonl");
    result.keeper_ops.insert(result.keeper_ops.end(), ops.records.begin(), ops.records.end());
  }
  expect(result);
  if (::testing::Test::HasFailure() || std::getenv("LOCKD_FAULTS_KEEP")) {
    const std::string keep = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                             "/lockd-faults-" + test + "-" + std::to_string(r.seed);
    run->KeepRecords(keep);
    std::printf("records kept in %s\n", keep.c_str());
  }
  return result;
}

void ExpectEveryCheckerPassed(const WorkloadRun::Verdict& v, uint64_t seed,
                              std::vector<std::string> also = {}) {
  EXPECT_EQ(v.check_exit, 0) << "seed=" << seed << " replay with LOCKD_FAULTS_SEED=" << seed;
  std::vector<std::string> checkers = kEveryChecker;
  checkers.insert(checkers.end(), also.begin(), also.end());
  for (const std::string& c : v.NotPassed(checkers)) ADD_FAILURE() << c << " did not PASS";
}

TEST(JepsenLocal, CheckersPassUnderProcessFaults) {
  // Quick mode (CI) replays a fixed seed; a soak draws one unless LOCKD_FAULTS_SEED names it.
  const bool soak = std::getenv("LOCKD_FAULTS_SOAK_SECONDS") != nullptr;
  LocalRun r;
  r.seed = EnvOr("LOCKD_FAULTS_SEED", soak ? std::random_device{}() : kQuickSeed);
  r.workload = Ms(1000 * EnvOr("LOCKD_FAULTS_SOAK_SECONDS", kQuickWorkloadSeconds));
  RunLocal(r, [&](const LocalResult& res) { ExpectEveryCheckerPassed(res.verdict, r.seed); });
}

// The stall rule: a leader whose every sync takes 0.8 x TTL stalls its loop; renewals that arrive
// during a stall must be honoured. Keepers renew on schedule over the raw API and record every
// answer (the client library gives a lease up at its own valid_until, which under such a stall
// always comes before the cluster's answer, so only raw renewals show what the cluster did).
LocalRun StallRun(const std::string& planted_bug) {
  LocalRun r;
  r.workload = 14s;
  r.seed = kQuickSeed;
  r.planted_bug = planted_bug;
  r.kinds = {kSlowLeaderDisk};
  r.slow_sync = kTtl * 8 / 10;
  r.keepers = 3;
  r.min_grants_per_lock = 1;  // every write waits out a 2.4 s sync
  return r;
}

void ExpectStallsAndKeptLeases(const LocalResult& res) {
  ExpectEveryCheckerPassed(res.verdict, kQuickSeed, {"lease-kept"});
  EXPECT_NE(res.node_logs.find("loop stalled"), std::string::npos)
      << "no stall was logged: the slow-sync shim did not take effect";
  // Each keeper had renewals sent during a slow-disk episode answered OK: the leases lived
  // through the stalls, not merely around them.
  std::vector<std::pair<BootNs, BootNs>> slow;
  for (const FaultEvent& e : res.faults) {
    if (e.kind == "slow_disk") slow.push_back({e.t_ns, e.t_ns});
    if (e.kind == "heal" && !slow.empty()) slow.back().second = e.t_ns;
  }
  ASSERT_FALSE(slow.empty()) << "no slow-disk episode";
  std::map<std::string, int> renewed_in_a_stall;
  for (const Op& op : res.keeper_ops) {
    if (op.kind != OpKind::kRenew || op.event == "grant" || op.outcome != Outcome::kOk) continue;
    for (auto [from, to] : slow) {
      if (op.invoke_ns > from && op.invoke_ns < to) ++renewed_in_a_stall[op.process];
    }
  }
  for (const char* k : {"k0", "k1", "k2"}) {
    EXPECT_GT(renewed_in_a_stall[k], 0) << k << " had no renewal answered OK during a stall";
  }
}

TEST(JepsenLocal, ALeaderWithASlowDiskKeepsEveryLeaseThatIsRenewed) {
  // The counterpart of the planted run below, without the knob.
  RunLocal(StallRun(""), ExpectStallsAndKeptLeases);
}

TEST(JepsenLocal, PlantedStallRuleOldOrderIsCaughtByLeaseKept) {
  RunLocal(StallRun("stall-rule-old-order"), [](const LocalResult& res) {
    EXPECT_NE(res.node_logs.find("loop stalled"), std::string::npos)
        << "no stall was logged: the slow-sync shim did not take effect";
    EXPECT_EQ(res.verdict.check_exit, 1) << "faults_check did not report a violation";
    EXPECT_TRUE(res.verdict.Failed("lease-kept")) << "lease-kept did not fail";
  });
}

TEST(JepsenLocal, PlantedSkipNewLeaderRuleIsCaughtByLeaseSafety) {
  // The leader is killed while a worker is in a long hold after its write (5 s, almost all of it
  // left) with a 10 s TTL: the holder's valid_until lies seconds past the failover. A new leader
  // that expires leases at once (instead of giving each a full TTL) hands the lock to another
  // worker (free: seven cycles in eight are short) within that time, so two holds overlap.
  LocalRun r;
  r.planted_bug = "skip-new-leader-rule";
  r.kinds = {kKillLeaderInAHold};
  r.workload = 30s;  // four or five kills: a holder may still save its lease by a renewal that
                     // lands in the new leader's first pass
  r.ttl = 10s;
  r.hold = 5s;
  RunLocal(r, [](const LocalResult& res) {
    EXPECT_EQ(res.verdict.check_exit, 1) << "faults_check did not report a violation";
    EXPECT_TRUE(res.verdict.Failed("lease-safety")) << "lease-safety did not fail";
  });
}

TEST(JepsenLocal, PlantedSkipTokenIncrementIsCaughtByTheTokenCheckers) {
  // No special fault needed: every grant reuses the last token.
  LocalRun r;
  r.planted_bug = "skip-token-increment";
  RunLocal(r, [](const LocalResult& res) {
    EXPECT_EQ(res.verdict.check_exit, 1) << "faults_check did not report a violation";
    EXPECT_TRUE(res.verdict.Failed("no-lost-ack") || res.verdict.Failed("fencing"))
        << "neither no-lost-ack nor fencing failed";
  });
}

}  // namespace
}  // namespace lockd::faults
