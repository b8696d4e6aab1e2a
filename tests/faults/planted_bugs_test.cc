// The planted-bug knobs (lockd --testing-unsafe-fault, base/unsafe_faults.h) do break what they
// say, visibly, on a real cluster — so a checker that stays green under one has missed a real
// violation, not a knob that did nothing (issue 17, "What it must show"). Each test is the
// counterpart of a test that holds without the knob:
// - skip-token-increment: two grants in a row share a token (guarantee 2; tokens are checked
//   strictly increasing throughout the e2e suite);
// - skip-new-leader-rule: a lease with most of its TTL left is expired at a failover
//   (e2e ClientLease: leases survive a leader kill -9 without the knob);
// - stall-rule-old-order: a leader whose syncs take 0.8 x TTL refuses renewals (faults
//   SlowDisk.ALeaderWhoseSyncs... refuses none without the knob).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "e2e/cluster_harness.h"

namespace lockd::e2e {
namespace {

// lockd refuses a planted bug unless its environment arms it (src/daemon/main.cc); the harness's
// nodes inherit this process's environment. Set before any test starts a thread.
class ArmPlantedBugs : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_EQ(setenv("LOCKD_TESTING_UNSAFE_FAULTS", "1", 1), 0); }
};
const auto* const kArm = ::testing::AddGlobalTestEnvironment(new ArmPlantedBugs);

ClusterOptions WithFault(const std::string& name) {
  ClusterOptions o;
  o.extra_flags = {"--testing-unsafe-fault=" + name};
  return o;
}

TEST(PlantedBugs, SkipTokenIncrementHandsTheSameTokenToTwoGrantsInARow) {
  Cluster cluster(WithFault("skip-token-increment"));
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  EXPECT_NE(cluster.LogTail(0, 1000).find("TESTING ONLY"), std::string::npos)
      << "no loud warning at start";
  Client client(cluster);
  const uint64_t lease = client.MustGrantLease(30'000, "planted");
  v1::AcquireResponse first, second;
  ASSERT_TRUE(client.Acquire("bug/token", lease, v1::EXCLUSIVE, 0, &first).status.ok());
  ASSERT_TRUE(first.acquired());
  ASSERT_TRUE(client.Release("bug/token", lease, first.token()).status.ok());
  ASSERT_TRUE(client.Acquire("bug/token", lease, v1::EXCLUSIVE, 0, &second).status.ok());
  ASSERT_TRUE(second.acquired());
  EXPECT_EQ(second.token(), first.token()) << "the knob did not reuse the token";
}

TEST(PlantedBugs, SkipNewLeaderRuleExpiresALeaseWithMostOfItsTtlLeftAtAFailover) {
  Cluster cluster(WithFault("skip-new-leader-rule"));
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  Client client(cluster);
  const uint64_t lease = client.MustGrantLease(60'000, "planted");
  const auto granted = Clock::now();
  cluster.Kill(leader);
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  // Nobody renews; the new leader must still give the lease a full minute. With the knob it is
  // gone within seconds.
  const bool expired = testing::WaitFor(
      [&] {
        v1::GetLeaseResponse g;
        return client.GetLease(lease, &g).status.error_code() == grpc::StatusCode::NOT_FOUND;
      },
      20s);
  EXPECT_TRUE(expired) << "the lease survived the failover: the knob did nothing";
  EXPECT_LT(Clock::now() - granted, 40s);
}

TEST(PlantedBugs, StallRuleOldOrderRefusesRenewalsOfALeaderWithASlowDisk) {
  testing::TempDir slow_dir;
  EXPECT_EQ(setenv("LD_PRELOAD", LOCKD_SLOW_SYNC_LIB, 1), 0);
  EXPECT_EQ(setenv("LOCKD_SLOW_SYNC_DIR", slow_dir.path().c_str(), 1), 0);
  ClusterOptions o = WithFault("stall-rule-old-order");
  o.tick_ms = 100;
  o.election_min_ms = 5000;  // the stalls must test the lease rules, not cause a failover
  Cluster cluster(o);
  unsetenv("LD_PRELOAD");
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  Client client(cluster);
  constexpr uint64_t kTtl = 3000;
  std::vector<uint64_t> leases;
  for (int i = 0; i < 3; ++i) leases.push_back(client.MustGrantLease(kTtl, "stalled"));
  const uint64_t writer_lease = client.MustGrantLease(kTtl, "writer");
  Renewer renewer(client, leases, 1000ms, 5000ms);
  Renewer writer_renewer(client, {writer_lease}, 1000ms, 5000ms);
  const std::string knob = slow_dir.path() + "/" + std::to_string(cluster.pid(leader));
  std::ofstream(knob) << kTtl * 8 / 10 << "\n";
  std::atomic<bool> stop{false};
  std::thread writer([&] {  // keeps the leader syncing
    while (!stop) {
      v1::AcquireResponse a;
      CallOptions co;
      co.deadline = 15s;
      co.attempt = 10s;
      if (client.Acquire("bug/stall", writer_lease, v1::EXCLUSIVE, 0, &a, co).status.ok() &&
          a.acquired()) {
        client.Release("bug/stall", writer_lease, a.token(), co);
      }
      std::this_thread::sleep_for(200ms);
    }
  });
  // Up to 9 s of stalls; the first refused renewal is the knob's effect, so stop there.
  for (const auto until = Clock::now() + 9s;
       Clock::now() < until && renewer.Failures().empty() && writer_renewer.Failures().empty();) {
    std::this_thread::sleep_for(200ms);
  }
  std::remove(knob.c_str());
  stop = true;
  writer.join();
  renewer.Stop();
  writer_renewer.Stop();
  auto failures = renewer.Failures();
  const auto more = writer_renewer.Failures();
  failures.insert(failures.end(), more.begin(), more.end());
  std::cout << failures.size() << " renewals refused under stall-rule-old-order\n";
  EXPECT_FALSE(failures.empty()) << "no renewal was refused: the knob did nothing";
  EXPECT_NE(cluster.LogTail(leader, 100000).find("loop stalled"), std::string::npos);
}

}  // namespace
}  // namespace lockd::e2e
