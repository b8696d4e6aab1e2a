// A seeded mixed-nemesis run (issue 17): kills, pauses, partitions, loss, slow disks, member
// replacements and leadership transfers drawn from one seed, against a 3-node cluster in namespaces
// with a small client load, then healing: the cluster must serve again. The seed and the schedule
// are printed first. LOCKD_FAULTS_SEED replays a run; LOCKD_FAULTS_SOAK_SECONDS makes it a soak
// (default: 14 s of faults from a fixed seed, about 25 s in all); the fault events land in
// $LOCKD_FAULTS_EVENTS (default: the test's temp dir) for the history checkers.
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "faults/faults_support.h"
#include "faults/nemesis/schedule.h"

namespace lockd::faults {
namespace {

using namespace std::chrono_literals;

// The quick mode's fixed seed, so CI replays one schedule (soak runs draw a seed; the schedule is
// printed before it runs).
constexpr uint64_t kQuickSeed = 17;

TEST(MixedNemesis, ASeededScheduleOfFaultsLeavesAClusterThatServesAfterHealing) {
  LOCKD_REQUIRE_NETNS();
  const uint64_t seed = SeedFromEnv(kQuickSeed);
  // Quick: ~14 s of faults (two or three steps: CI's time);
  // LOCKD_FAULTS_SOAK_SECONDS for long runs.
  const Ms duration = DurationFromEnv(14s);
  const Schedule schedule = MakeSchedule(
      seed, duration, 3,
      {FaultKind::kKillRandom, FaultKind::kKillLeader, FaultKind::kPauseRandom,
       FaultKind::kIsolateLeader, FaultKind::kMinority, FaultKind::kBridge, FaultKind::kOneWay,
       FaultKind::kLoss, FaultKind::kSlowDisk, FaultKind::kTransfer, FaultKind::kReplaceFollower});
  std::cout << schedule.Describe() << std::flush;
  RecordProperty("seed", std::to_string(seed));

  testing::TempDir dir;
  const char* events_env = std::getenv("LOCKD_FAULTS_EVENTS");
  EventLog log(events_env && *events_env ? events_env : dir.path() + "/events.jsonl");
  std::string error;
  auto c = NetnsCluster::Create({}, &error);
  ASSERT_NE(c, nullptr) << error;
  ASSERT_GE(c->WaitForLeader(30s), 0) << c->StatusSummary();
  Nemesis nemesis(*c, log);

  // A small, bounded load through the client library: attempts and successes.
  std::atomic<bool> stop{false};
  std::atomic<int> attempted{0}, succeeded{0};
  std::thread load([&] {
    auto client = ConnectTo(c->endpoints(), 2s, 3);
    while (!stop && client) {
      ++attempted;
      if (CommitOnce(*client, "mixed").ok()) ++succeeded;
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto problems = RunSchedule(schedule, *c, nemesis, stop);
  stop = true;
  load.join();

  std::cout << "mixed nemesis: seed " << seed << ", " << schedule.steps.size() << " faults, "
            << succeeded.load() << "/" << attempted.load() << " writes succeeded, events in "
            << log.path() << "\n";
  for (const Problem& p : problems) {
    std::cout << "  note: " << p.text << "\n";
    if (p.serious) ADD_FAILURE() << p.text;
  }
  EXPECT_GT(succeeded.load(), 0) << "nothing was committed during the whole run";
  // After healing: one leader, and writes commit through every node.
  ASSERT_GE(c->WaitForLeader(30s), 0) << "seed=" << seed << "\n" << c->StatusSummary();
  for (int i = 0; i < c->size(); ++i) {
    auto client = ConnectTo(c->client_addr(i), 3s, 4);
    EXPECT_TRUE(CommitWithin(*client, 30s).has_value())
        << "node " << c->id(i) << " does not serve after healing; seed=" << seed << "\n"
        << c->StatusSummary();
  }
  EXPECT_GE(log.Lines().size(), schedule.steps.size()) << "faults were not all logged";
}

}  // namespace
}  // namespace lockd::faults
