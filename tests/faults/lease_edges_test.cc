// Lease edges that need a slow disk (issue 13), made with the LD_PRELOAD shim of
// tests/support/slow_sync.cc, which delays fsync/fdatasync of chosen nodes.
//
// - Defect 2: a leader whose every sync takes 0.8 x TTL, while clients renew over KeepAlive
//   streams every TTL/3 and another client keeps writing (so the leader keeps syncing). Its loop
//   stalls in every sync; the stall rule must keep every lease: not one renewal answered
//   NOT_FOUND, no lease expired. Before the fix, renewals that arrived during a stall were judged
//   against the deadline the stall had let pass, and were refused.
//   LOCKD_SLOW_DISK_SECONDS sets how long the disk stays slow (default 12 s, four TTLs).
// - Defect 8: a grant proposed before its lease's deadline and committed after the leader decided
//   the lease expired (the followers' disks are slow) is answered NOT_FOUND, not acquired; and a
//   retry of a grant whose lease has ended is NOT_FOUND too.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "e2e/cluster_harness.h"

namespace lockd::e2e {
namespace {

constexpr uint64_t kTtlMs = 3000;
constexpr uint64_t kSyncDelayMs = kTtlMs * 8 / 10;

/// Renews a set of leases over one KeepAlive stream every `period`, reopening the stream on the
/// next node when it breaks. Records every answer that refused a renewal (any code but OK and
/// UNAVAILABLE).
class KeepAliveClient {
 public:
  KeepAliveClient(Cluster& cluster, int first_node, std::vector<uint64_t> leases, Ms period)
      : cluster_(cluster), leases_(std::move(leases)), period_(period), node_(first_node) {
    thread_ = std::thread([this] { Run(); });
  }
  ~KeepAliveClient() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::string> Refusals() {
    std::lock_guard lock(mu_);
    return refusals_;
  }
  uint64_t acknowledged() const { return acknowledged_.load(); }

 private:
  void Run() {
    uint64_t seq = 0;
    while (!stop_) {
      grpc::ClientContext ctx;
      auto stream = cluster_.lock(node_).KeepAlive(&ctx);
      std::thread reader([&] {
        v1::RenewResponse resp;
        while (stream->Read(&resp)) {
          if (resp.code() == 0) {
            ++acknowledged_;
          } else if (resp.code() != grpc::StatusCode::UNAVAILABLE) {
            std::lock_guard lock(mu_);
            refusals_.push_back("lease " + std::to_string(resp.lease_id()) + " seq " +
                                std::to_string(resp.seq()) + ": code " +
                                std::to_string(resp.code()) + " " + resp.message());
          }
        }
      });
      bool ok = true;
      while (!stop_ && ok) {
        for (uint64_t lease : leases_) {
          v1::RenewRequest req;
          req.set_lease_id(lease);
          req.set_seq(++seq);
          if (!stream->Write(req)) {
            ok = false;
            break;
          }
        }
        for (auto slept = Ms(0); ok && !stop_ && slept < period_; slept += Ms(50)) {
          std::this_thread::sleep_for(Ms(50));
        }
      }
      stream->WritesDone();
      if (stop_) ctx.TryCancel();
      reader.join();
      stream->Finish();
      node_ = (node_ + 1) % cluster_.size();
    }
  }

  Cluster& cluster_;
  const std::vector<uint64_t> leases_;
  const Ms period_;
  int node_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> acknowledged_{0};
  std::mutex mu_;  ///< guards refusals_
  std::vector<std::string> refusals_;
  std::thread thread_;
};

Ms SlowFor() {
  const char* s = std::getenv("LOCKD_SLOW_DISK_SECONDS");
  return Ms(1000 * (s ? std::max(1, std::atoi(s)) : 12));
}

std::unique_ptr<Cluster> SlowableCluster(const testing::TempDir& slow_dir);

TEST(SlowDisk, ALeaderWhoseSyncsTakeMostOfATtlRefusesNoRenewalAndLosesNoLease) {
  testing::TempDir slow_dir;
  auto cluster_ptr = SlowableCluster(slow_dir);
  Cluster& cluster = *cluster_ptr;
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();

  Client client(cluster);
  std::vector<uint64_t> leases;
  for (int i = 0; i < 8; ++i) leases.push_back(client.MustGrantLease(kTtlMs, "slow-disk"));
  const uint64_t writer_lease = client.MustGrantLease(kTtlMs, "writer");
  std::vector<uint64_t> renewed = leases;
  renewed.push_back(writer_lease);
  KeepAliveClient keepalive(cluster, leader, renewed, Ms(kTtlMs / 3));

  // From now on every sync of the leader takes 0.8 x TTL.
  const std::string knob = slow_dir.path() + "/" + std::to_string(cluster.pid(leader));
  std::ofstream(knob) << kSyncDelayMs << "\n";

  // Writes keep the leader syncing: acquire and release one lock, over and over.
  std::atomic<int> writes{0};
  std::atomic<bool> stop_writes{false};
  std::thread writer([&] {
    while (!stop_writes) {
      v1::AcquireResponse a;
      CallOptions co;
      co.deadline = 20s;
      co.attempt = 10s;
      auto info = client.Acquire("slow/disk", writer_lease, v1::EXCLUSIVE, 0, &a, co);
      if (info.status.ok() && a.acquired()) {
        client.Release("slow/disk", writer_lease, a.token(), co);
        ++writes;
      }
      std::this_thread::sleep_for(200ms);
    }
  });
  std::this_thread::sleep_for(SlowFor());
  std::remove(knob.c_str());
  stop_writes = true;
  writer.join();
  std::this_thread::sleep_for(Ms(kTtlMs / 2));  // the last answers come back at full speed
  keepalive.Stop();

  std::cout << "slow disk: " << writes.load() << " acquire+release pairs, "
            << keepalive.acknowledged() << " renewals acknowledged\n";
  EXPECT_GT(writes.load(), 0) << "no write went through: the leader never synced";
  EXPECT_GT(keepalive.acknowledged(), renewed.size()) << "the renewals were not answered";
  const auto refusals = keepalive.Refusals();
  EXPECT_TRUE(refusals.empty()) << refusals.size()
                                << " renewals refused, first: " << refusals.front() << "\n"
                                << cluster.StatusSummary();
  // The stall rule was exercised: the leader saw its own stalls.
  EXPECT_NE(cluster.LogTail(leader, 100000).find("loop stalled"), std::string::npos)
      << "the leader never detected a stall: the shim did not slow its disk";
  for (uint64_t lease : renewed) {
    v1::GetLeaseResponse g;
    auto info = client.GetLease(lease, &g);
    EXPECT_TRUE(info.status.ok()) << "lease " << lease << " was lost: " << Describe(info.status);
  }
}

/// Starts a cluster whose nodes carry the slow-sync shim, with an election timeout well above
/// the stalls the tests cause (so they test lease rules, not failover).
std::unique_ptr<Cluster> SlowableCluster(const testing::TempDir& slow_dir) {
  EXPECT_EQ(setenv("LD_PRELOAD", LOCKD_SLOW_SYNC_LIB, 1), 0);
  EXPECT_EQ(setenv("LOCKD_SLOW_SYNC_DIR", slow_dir.path().c_str(), 1), 0);
  ClusterOptions o;
  o.tick_ms = 100;
  o.election_min_ms = 5000;
  auto cluster = std::make_unique<Cluster>(o);
  unsetenv("LD_PRELOAD");  // only the nodes, started above, carry the shim
  return cluster;
}

// Snapshot files are written off the loop (issue 18): a Snapshot call that comes while one is
// being written waits for it (it was answered UNAVAILABLE, and lockctl moved to another node); a
// node stopped meanwhile exits cleanly and compacts its log to the file at its next start.
TEST(SlowDisk, ASnapshotCallDuringAWriteWaitsForItAndAStopMeanwhileLosesNothing) {
  testing::TempDir slow_dir;
  auto cluster_ptr = SlowableCluster(slow_dir);
  Cluster& cluster = *cluster_ptr;
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  Client client(cluster);
  const uint64_t lease = client.MustGrantLease(600'000, "snapshot");  // outlives the test
  const int node = cluster.OtherLiveNode(leader);
  const auto snapshot = [&](v1::SnapshotResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 60s);
    return cluster.cluster(node).Snapshot(&ctx, v1::SnapshotRequest(), out);
  };
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "two calls" : "a stop during the write");
    // Something new to snapshot, then a slow disk on the follower: its file (a sync of the file
    // and one of the folder) takes seconds to write.
    v1::AcquireResponse a;
    ASSERT_TRUE(
        client.Acquire("snap/" + std::to_string(round), lease, v1::EXCLUSIVE, 0, &a).status.ok());
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          v1::StatusResponse s;
          v1::StatusResponse l;
          return cluster.Status(node, &s).ok() && cluster.Status(leader, &l).ok() &&
                 s.applied_index() >= l.commit_index();
        },
        10s));
    const std::string knob = slow_dir.path() + "/" + std::to_string(cluster.pid(node));
    std::ofstream(knob) << 1500 << "\n";
    v1::SnapshotResponse first, second;
    grpc::Status first_status;
    std::thread t([&] { first_status = snapshot(&first); });
    std::this_thread::sleep_for(500ms);  // the first is writing (its syncs take 1.5 s each)
    if (round == 0) {
      const grpc::Status second_status = snapshot(&second);
      t.join();
      std::remove(knob.c_str());
      ASSERT_TRUE(first_status.ok()) << Describe(first_status);
      ASSERT_TRUE(second_status.ok()) << Describe(second_status);
      EXPECT_GE(second.index(), first.index()) << "answered with the snapshot it waited for";
      EXPECT_NE(cluster.LogTail(node, 2000).find("waits for the snapshot being written"),
                std::string::npos)
          << "the second call did not come during the write";
    } else {
      const auto exited = cluster.Stop(node);  // SIGTERM while the file is being written
      t.join();
      EXPECT_EQ(exited, std::optional<int>(0)) << cluster.LogTail(node);
      std::remove(knob.c_str());
      EXPECT_FALSE(first_status.ok()) << "answered by a node that stopped before compacting";
      cluster.Start(node);
      ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary() << cluster.LogTail(node);
      v1::SnapshotResponse after;
      const grpc::Status again = snapshot(&after);
      ASSERT_TRUE(again.ok()) << Describe(again);
      v1::GetLockResponse g;
      auto info = client.GetLock("snap/0", &g);
      ASSERT_TRUE(info.status.ok()) << Describe(info.status);
      EXPECT_EQ(g.lock().holders_size(), 1) << "nothing acknowledged was lost";
    }
  }
}

TEST(GrantAnswer, AGrantCommittedAfterItsLeaseWasDecidedExpiredIsNotFound) {
  testing::TempDir slow_dir;
  auto cluster_ptr = SlowableCluster(slow_dir);
  Cluster& cluster = *cluster_ptr;
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  Client client(cluster);
  CallOptions at_leader;
  at_leader.node = leader;
  at_leader.rotate = false;
  at_leader.deadline = 30s;
  at_leader.attempt = 30s;

  // A holds the lock; B (TTL 2 s, never renewed) waits for it.
  const uint64_t a = client.MustGrantLease(60'000, "holder");
  v1::AcquireResponse held;
  ASSERT_TRUE(client.Acquire("edge/void", a, v1::EXCLUSIVE, 0, &held, at_leader).status.ok());
  ASSERT_TRUE(held.acquired());
  v1::GrantLeaseResponse b;
  ASSERT_TRUE(client.GrantLease(2000, &b, "doomed", at_leader).status.ok());
  const auto b_granted = Clock::now();  // B's deadline on the leader is about 2 s from here
  auto waiter = StartAcquire(client, "edge/void", b.lease_id(), v1::EXCLUSIVE, 20'000, at_leader);
  ASSERT_TRUE(WaitForWaiters(client, "edge/void", 1));

  // The followers' disks turn slow: an entry proposed now commits only after B's deadline.
  std::vector<std::string> knobs;
  for (int i = 0; i < cluster.size(); ++i) {
    if (i == leader) continue;
    knobs.push_back(slow_dir.path() + "/" + std::to_string(cluster.pid(i)));
    std::ofstream(knobs.back()) << 3000 << "\n";
  }
  ASSERT_LT(Clock::now() - b_granted, 1500ms) << "too slow to set the scene before B's deadline";
  // A's release, proposed before B's deadline, hands the lock to B when it commits.
  auto release = std::async(
      std::launch::async, [&] { return client.Release("edge/void", a, held.token(), at_leader); });
  AcquireResult got = waiter.Get(30s);
  for (const auto& k : knobs) std::remove(k.c_str());
  EXPECT_TRUE(release.get().status.ok());
  EXPECT_EQ(got.info.status.error_code(), grpc::StatusCode::NOT_FOUND)
      << "the waiter of an expiring lease was answered " << Describe(got.info.status)
      << " acquired=" << got.resp.acquired() << " token=" << got.resp.token();
  EXPECT_NE(got.info.status.error_message().find("is void"), std::string::npos)
      << Describe(got.info.status);
  // The expiry that follows releases the void grant.
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        v1::GetLockResponse g;
        return client.GetLock("edge/void", &g).status.ok() && g.lock().holders().empty();
      },
      20s))
      << ToString(client.MustGetLock("edge/void"));
}

TEST(GrantAnswer, ARetryOfAGrantWhoseLeaseWasRevokedIsNotFound) {
  Cluster cluster;
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  Client client(cluster);
  const uint64_t lease = client.MustGrantLease(60'000, "revoked");
  const v1::RequestHeader header = client.Begin();
  v1::AcquireResponse first;
  ASSERT_TRUE(
      client.Acquire("edge/retry", lease, v1::EXCLUSIVE, 0, &first, {}, header).status.ok());
  ASSERT_TRUE(first.acquired());
  // A retry while the lease lives gets the first answer.
  v1::AcquireResponse again;
  ASSERT_TRUE(
      client.Acquire("edge/retry", lease, v1::EXCLUSIVE, 0, &again, {}, header).status.ok());
  EXPECT_TRUE(again.acquired());
  EXPECT_EQ(again.token(), first.token());
  ASSERT_TRUE(client.Revoke(lease).status.ok());
  // After the lease ended, the recorded grant is not handed out as if it still held.
  v1::AcquireResponse late;
  auto info = client.Acquire("edge/retry", lease, v1::EXCLUSIVE, 0, &late, {}, header);
  EXPECT_EQ(info.status.error_code(), grpc::StatusCode::NOT_FOUND)
      << Describe(info.status) << " acquired=" << late.acquired();
  client.End(header.id().seq());
}

}  // namespace
}  // namespace lockd::e2e
