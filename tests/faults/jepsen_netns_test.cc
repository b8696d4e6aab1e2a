// The whole fault run (issue 17): a 3-node cluster in network namespaces, a seeded schedule of
// every nemesis — kill -9 of a random node and of the leader, SIGSTOP of a node past the election
// timeout, the leader isolated, a minority cut off, a bridge, a one-way drop, packet loss, a slow
// disk, a full disk (the node on a small tmpfs fails stop), a wiped disk (refused, then replaced
// through the membership path), a follower replaced, leadership transfers, and client processes
// SIGSTOPped past their lease's TTL — while the fault workload (workload/run.h: fenced workers, a
// watcher, a resource) records its history; then every checker of faults_check must pass.
//
// One fault at a time, each healed before the next, so a majority is up between faults. The seed
// and the schedule are printed first. Quick by default (CI: every kind once, in an order drawn
// from a fixed seed, about 90 s); LOCKD_FAULTS_SOAK_SECONDS=3600 makes it a soak of kinds drawn at
// random with a random seed, LOCKD_FAULTS_SEED replays one. A second run puts every peer link
// through the harness's proxy for delay and reordering, with the faults that work through it
// (partitions and loss match node addresses and would not reach proxied links). The run's records
// (histories, fault events, node logs) are kept under $TMPDIR/lockd-faults-netns-<seed> when it
// fails or when LOCKD_FAULTS_KEEP is set.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "faults/faults_support.h"
#include "faults/nemesis/schedule.h"
#include "faults/workload/run.h"

namespace lockd::faults {
namespace {

using namespace std::chrono_literals;

/// The quick mode's fixed seed: its schedule covers (nearly) every kind; CI replays it.
/// The quick mode's fixed seeds (the order of the kinds; CI replays them).
constexpr uint64_t kQuickSeed = 20261207;
constexpr uint64_t kQuickSeedProxy = 20261208;
constexpr Ms kTtl = 3000ms;
/// A dead holder's lease (TTL) plus an election and the checks' own pace.
constexpr Ms kCleanupBound = 15000ms;

const std::vector<FaultKind> kEveryKind = {
    FaultKind::kKillRandom,    FaultKind::kKillLeader, FaultKind::kPauseRandom,
    FaultKind::kIsolateLeader, FaultKind::kMinority,   FaultKind::kBridge,
    FaultKind::kOneWay,        FaultKind::kLoss,       FaultKind::kSlowDisk,
    FaultKind::kDiskFull,      FaultKind::kWipe,       FaultKind::kReplaceFollower,
    FaultKind::kTransfer,      FaultKind::kPauseClient};

struct NetnsRun {
  uint64_t quick_seed = kQuickSeed;
  std::vector<FaultKind> kinds = kEveryKind;
  bool peer_proxy = false;
};

void RunNetns(const NetnsRun& r) {
  // Quick: every kind once, in an order drawn from the fixed seed. Soak: kinds drawn at random
  // until the duration is filled.
  const bool soak = std::getenv("LOCKD_FAULTS_SOAK_SECONDS") != nullptr;
  const uint64_t seed = SeedFromEnv(r.quick_seed);
  const Ms faults = DurationFromEnv(Ms(0));
  const Schedule schedule =
      soak ? MakeSchedule(seed, faults, 3, r.kinds) : MakeCoveringSchedule(seed, 3, r.kinds);
  Ms planned{0};
  for (const Step& st : schedule.steps) planned += st.hold + 2s;
  std::cout << schedule.Describe() << std::flush;
  ::testing::Test::RecordProperty("seed", std::to_string(seed));

  std::string error;
  NetnsClusterOptions co;
  co.peer_proxy = r.peer_proxy;
  co.tmpfs_mb = {{0, 256}};  // slot 0's node can be filled (the disk-full nemesis)
  auto c = NetnsCluster::Create(co, &error);
  ASSERT_NE(c, nullptr) << error;
  ASSERT_GE(c->WaitForLeader(30s), 0) << c->StatusSummary();

  testing::TempDir dir;
  const std::string events_path = dir.path() + "/faults.jsonl";
  EventLog log(events_path);
  // A bound for the workers: the schedule's steps take longer than their holds (elections,
  // replacements), and Finish() stops the workers once the schedule is done and healed.
  const Ms workload = 3 * planned + 120s;
  WorkloadRunOptions wo;
  wo.dir = dir.path();
  wo.endpoints = c->slot_endpoints();
  wo.workload = workload;
  wo.seed = seed;
  wo.ttl = kTtl;
  wo.cleanup_bound = kCleanupBound;
  wo.events_path = events_path;
  auto run = WorkloadRun::Start(wo, &error);
  ASSERT_NE(run, nullptr) << error;

  Nemesis nemesis(*c, log);
  int paused = -1;
  ScheduleHooks hooks;
  hooks.pause_client = [&](int which) {
    const int w = which % run->workers();
    const bool mid_work = run->WaitUntilMidWork(w, 3s);
    log.Record("client_stop", WorkloadRun::WorkerName(w),
               mid_work ? "client, between its read and its write" : "client");
    run->PauseWorker(w);
    paused = w;
    return WorkloadRun::WorkerName(w);
  };
  hooks.resume_client = [&] {
    run->ResumeWorker(paused);
    log.Record("client_cont", WorkloadRun::WorkerName(paused), "client");
  };
  std::atomic<bool> stop{false};
  const auto problems = RunSchedule(schedule, *c, nemesis, stop, hooks);
  for (const auto& p : problems) std::cout << "  note: " << p << "\n";
  ASSERT_GE(c->WaitForLeader(60s), 0) << "no leader after healing; seed=" << seed << "\n"
                                      << c->StatusSummary();
  // A few seconds of service after the last heal, so the workload is seen served again.
  std::this_thread::sleep_for(5s);

  const WorkloadRun::Verdict v = run->Finish();
  for (const std::string& p : v.problems) ADD_FAILURE() << p;
  std::cout << "jepsen netns: seed " << seed << ", " << schedule.steps.size() << " faults, "
            << log.Lines().size() << " fault events; faults_check:\n"
            << v.check_output << std::flush;
  EXPECT_EQ(v.check_exit, 0) << "seed=" << seed << " replay with LOCKD_FAULTS_SEED=" << seed;
  for (const char* checker : {"fencing", "no-lost-update", "lease-safety", "mutual-exclusion",
                              "linearizability", "no-lost-ack", "clean-up", "availability"}) {
    EXPECT_TRUE(v.Passed(checker)) << checker << " did not PASS; seed=" << seed;
  }
  if (::testing::Test::HasFailure() || std::getenv("LOCKD_FAULTS_KEEP")) {
    const std::string keep = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                             "/lockd-faults-netns-" + std::to_string(seed);
    testing::RunCommand({"/bin/rm", "-rf", keep}, 60s);
    testing::RunCommand({"/bin/cp", "-r", dir.path(), keep}, 60s);
    for (int i = 0; i < c->size(); ++i) {
      testing::RunCommand({"/bin/cp", c->log_path(i), keep + "/"}, 60s);
    }
    std::cout << "records kept in " << keep << "\n";
  }
}

TEST(JepsenNetns, EveryCheckerPassesUnderEveryNemesis) {
  LOCKD_REQUIRE_NETNS();
  RunNetns(NetnsRun{});
}

// Delay and reordering act on the proxied peer links, where the partition rules do not reach
// (netns_cluster.h), so they get a run of their own with the faults that work through the proxy.
TEST(JepsenNetns, EveryCheckerPassesWithDelayedAndReorderedPeerLinks) {
  LOCKD_REQUIRE_NETNS();
  NetnsRun r;
  r.quick_seed = kQuickSeedProxy;
  r.kinds = {FaultKind::kDelay,       FaultKind::kDelay,    FaultKind::kKillLeader,
             FaultKind::kPauseRandom, FaultKind::kSlowDisk, FaultKind::kTransfer,
             FaultKind::kPauseClient};
  r.peer_proxy = true;
  RunNetns(r);
}

}  // namespace
}  // namespace lockd::faults
