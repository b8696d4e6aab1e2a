// Snapshots on real processes (issues 4 and 7): nodes run with a small --snapshot-entries, so the
// leader compacts its log while a follower is down; the follower comes back behind the compacted
// log and must catch up from the leader's snapshot, streamed in chunks over the peer transport;
// then its state must carry the cluster on its own (the other nodes are taken away in turn). And
// a whole cluster restarted after several snapshots recovers every lock, lease and the token
// counter from snapshot + log.
#include <gtest/gtest.h>

#include <thread>

#include "e2e/cluster_harness.h"

namespace lockd::e2e {
namespace {

constexpr v1::LockMode kEx = v1::EXCLUSIVE;

ClusterOptions Snapshotting(uint64_t every) {
  ClusterOptions o;
  o.extra_flags = {"--snapshot-entries=" + std::to_string(every)};
  return o;
}

uint64_t SnapshotIndex(Cluster& cluster, int i) {
  v1::StatusResponse s;
  return cluster.Status(i, &s).ok() ? s.snapshot_index() : 0;
}

/// Every lock, as one string per lock, read from node `i` alone (a stale read).
std::vector<std::string> LocalLocks(Cluster& cluster, int i) {
  std::vector<std::string> out;
  std::string token;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    v1::ListLocksRequest req;
    req.set_stale(true);
    req.set_page_token(token);
    v1::ListLocksResponse resp;
    if (grpc::Status s = cluster.lock(i).ListLocks(&ctx, req, &resp); !s.ok()) {
      ADD_FAILURE() << "stale ListLocks on node " << cluster.id(i) << ": " << Describe(s);
      return out;
    }
    for (const auto& l : resp.locks()) out.push_back(ToString(l));
    token = resp.next_page_token();
  } while (!token.empty());
  return out;
}

std::vector<std::string> AllLocks(Client& client) {
  std::vector<v1::LockInfo> locks;
  EXPECT_TRUE(client.ListAllLocks("", &locks).status.ok());
  std::vector<std::string> out;
  for (const auto& l : locks) out.push_back(ToString(l));
  return out;
}

/// `n` acquires of distinct names under `prefix`, every other one released again.
void Churn(Client& client, uint64_t lease, const std::string& prefix, int n) {
  for (int i = 0; i < n; ++i) {
    v1::AcquireResponse r;
    const std::string name = prefix + std::to_string(i);
    ASSERT_TRUE(client.Acquire(name, lease, kEx, 0, &r).status.ok()) << name;
    ASSERT_TRUE(r.acquired()) << name;
    if (i % 2 == 1) {
      ASSERT_TRUE(client.Release(name, lease, r.token()).status.ok()) << name;
    }
  }
}

TEST(Snapshot, AFollowerBehindTheCompactedLogCatchesUpFromTheLeadersSnapshot) {
  Cluster cluster(Snapshotting(25));
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  const int f = cluster.OtherLiveNode(leader);
  const int g = 3 - leader - f;  // the third node
  ASSERT_TRUE(cluster.Stop(f).has_value());

  Client client(cluster);
  const uint64_t lease = client.MustGrantLease(120'000, "snap");
  Churn(client, lease, "snap/a", 60);  // ~90 entries: several snapshots while f is away
  ASSERT_TRUE(testing::WaitFor([&] { return SnapshotIndex(cluster, leader) > 30; }, 20s))
      << "the leader never compacted its log\n"
      << cluster.StatusSummary();
  v1::StatusResponse before;
  ASSERT_TRUE(cluster.Status(leader, &before).ok());
  const std::vector<std::string> expected = AllLocks(client);
  ASSERT_EQ(expected.size(), 30u);

  cluster.Start(f);
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        v1::StatusResponse s;
        return cluster.Status(f, &s).ok() && s.applied_index() >= before.commit_index() &&
               s.snapshot_index() > 0;
      },
      30s))
      << "node " << cluster.id(f) << " did not catch up\n"
      << cluster.StatusSummary() << cluster.LogTail(f);
  EXPECT_NE(cluster.LogTail(f, 400).find("installed the leader's snapshot"), std::string::npos)
      << "it caught up without a snapshot: the test did not test that\n"
      << cluster.LogTail(f, 400);
  EXPECT_EQ(LocalLocks(cluster, f), expected) << "the installed state differs from the leader's";

  // f's state now carries the cluster: with g away, every commit needs f's log to continue the
  // snapshot correctly.
  ASSERT_TRUE(cluster.Stop(g).has_value());
  Churn(client, lease, "snap/b", 10);
  const std::vector<std::string> with_b = AllLocks(client);
  ASSERT_EQ(with_b.size(), 35u);
  // Then the leader goes and g (which missed "snap/b") comes back: f is the only node that has
  // everything, so f must lead, and nothing acknowledged may be missing.
  cluster.Kill(leader);
  cluster.Start(g);
  const int new_leader = cluster.WaitForReady(40s);
  ASSERT_EQ(new_leader, f) << cluster.StatusSummary();
  EXPECT_EQ(AllLocks(client), with_b);
  v1::AcquireResponse r;
  ASSERT_TRUE(client.Acquire("snap/after", lease, kEx, 0, &r).status.ok());
  EXPECT_GT(r.token(), before.token_counter());
}

TEST(Snapshot, AWholeClusterRestartsFromItsSnapshotsAndLogs) {
  Cluster cluster(Snapshotting(20));
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  Client client(cluster);
  const uint64_t a = client.MustGrantLease(60'000, "a");
  const uint64_t b = client.MustGrantLease(60'000, "b");
  Churn(client, a, "rs/a", 30);
  Churn(client, b, "rs/b", 15);  // the last entries are after the newest snapshot
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        for (int i = 0; i < cluster.size(); ++i) {
          if (SnapshotIndex(cluster, i) == 0) return false;
        }
        return true;
      },
      20s))
      << cluster.StatusSummary();
  const std::vector<std::string> locks_before = AllLocks(client);
  std::vector<v1::LeaseInfo> leases_before;
  ASSERT_TRUE(client.ListAllLeases(&leases_before).status.ok());
  v1::StatusResponse st;
  ASSERT_TRUE(cluster.Status(0, &st).ok());
  const uint64_t tokens_before = st.token_counter();

  ASSERT_TRUE(cluster.StopAll());
  cluster.StartAll();
  ASSERT_GE(cluster.WaitForReady(40s), 0) << cluster.StatusSummary();
  EXPECT_EQ(AllLocks(client), locks_before);
  std::vector<v1::LeaseInfo> leases_after;
  ASSERT_TRUE(client.ListAllLeases(&leases_after).status.ok());
  ASSERT_EQ(leases_after.size(), leases_before.size());
  for (size_t i = 0; i < leases_after.size(); ++i) {
    EXPECT_EQ(leases_after[i].lease_id(), leases_before[i].lease_id());
    EXPECT_EQ(leases_after[i].label(), leases_before[i].label());
  }
  for (int i = 0; i < cluster.size(); ++i) {
    EXPECT_GT(SnapshotIndex(cluster, i), 0u) << "node " << cluster.id(i) << " lost its snapshot";
  }
  v1::AcquireResponse r;
  ASSERT_TRUE(client.Acquire("rs/new", b, kEx, 0, &r).status.ok());
  EXPECT_GT(r.token(), tokens_before) << "the token counter went back";
}

}  // namespace
}  // namespace lockd::e2e
