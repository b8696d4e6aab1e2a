// The client library's leases against real clusters (issue 14): kept alive by the KeepAlive stream
// alone, surviving a leader kill -9 at the 2 s minimum TTL, the lost signal firing before the
// cluster could expire a lease when every node is stopped, and a force-release reported on the
// holder's Lock within one renewal interval.
#include <gtest/gtest.h>

#include <iostream>

#include "client/client_core.h"  // HeldTokensOf, to probe the server
#include "cluster_harness.h"
#include "lockd/client.h"

namespace lockd::e2e {
namespace {

namespace lc = ::lockd::client;

std::vector<std::string> Endpoints(Cluster& c) {
  std::vector<std::string> out;
  for (int i = 0; i < c.size(); ++i) out.push_back(c.client_addr(i));
  return out;
}

std::unique_ptr<lc::Client> Connect(Cluster& c) {
  lc::ClientOptions o;
  o.endpoints = Endpoints(c);
  o.call_timeout = 5s;
  auto client = lc::Client::Connect(o);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return std::move(client).value();
}

lc::LockOptions Wait(Ms wait) {
  lc::LockOptions o;
  o.wait = wait;
  return o;
}

TEST(ClientLease, KeptAliveForTenTtlsByRenewalsAlone) {
  Cluster cluster;
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  auto client = Connect(cluster);
  auto lease = client->GrantLease(2000ms, "ten-ttls");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  auto lock = client->Acquire("ten/ttls", *lease);
  ASSERT_TRUE(lock.ok() && lock->held());
  for (int i = 0; i < 20; ++i) {  // 10 TTLs, checked every second
    std::this_thread::sleep_for(1000ms);
    ASSERT_TRUE(lock->held()) << "after " << i + 1 << " s: " << lock->lost_reason();
  }
  auto info = client->GetLease((*lease)->id());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->held, std::vector<std::string>{"ten/ttls"});
}

TEST(ClientLease, EveryLeaseSurvivesALeaderKill9AtTheMinimumTtl) {
  Cluster cluster;
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  auto client = Connect(cluster);
  std::vector<std::shared_ptr<lc::Lease>> leases;
  std::vector<lc::Lock> locks;
  for (int i = 0; i < 5; ++i) {
    auto l = client->GrantLease(2000ms, "kill9-" + std::to_string(i));
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    auto k = client->Acquire("kill9/" + std::to_string(i), *l);
    ASSERT_TRUE(k.ok() && k->held()) << (k.ok() ? "not acquired" : k.status().ToString());
    leases.push_back(*l);
    locks.push_back(std::move(*k));
  }
  std::this_thread::sleep_for(1000ms);
  cluster.Kill(leader);
  // Over two TTLs after the kill: every renewal after it went through the new leader.
  for (int t = 0; t < 50; ++t) {
    std::this_thread::sleep_for(100ms);
    for (auto& l : leases)
      ASSERT_TRUE(l->valid()) << "at " << t * 100 << " ms: " << l->lost_reason();
  }
  ASSERT_GE(cluster.WaitForReady(), 0);
  for (size_t i = 0; i < locks.size(); ++i) {
    EXPECT_TRUE(locks[i].held()) << locks[i].lost_reason();
    auto info = client->GetLock(locks[i].name());
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    ASSERT_EQ(info->holders.size(), 1u);
    EXPECT_EQ(info->holders[0].token, locks[i].token());
    EXPECT_EQ(info->holders[0].lease_id, leases[i]->id());
  }
}

TEST(ClientLease, WithEveryNodeStoppedTheLostSignalFiresBeforeTheClusterCouldExpire) {
  Cluster cluster;
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  auto a = Connect(cluster);
  auto lease = a->GrantLease(2000ms, "stopped-cluster");
  ASSERT_TRUE(lease.ok());
  auto lock = a->Acquire("stopped/cluster", *lease);
  ASSERT_TRUE(lock.ok() && lock->held());
  std::atomic<bool> fired{false};
  lc::BootClock::time_point fired_at{}, until{};
  lock->OnLost([&](const std::string&) {
    fired_at = lc::BootClock::now();
    until = lock->valid_until();  // frozen by the loss
    fired = true;
  });
  std::this_thread::sleep_for(700ms);
  const auto paused = lc::BootClock::now();
  for (int i = 0; i < cluster.size(); ++i) cluster.Pause(i);
  // Nobody polls: the renewal thread declares the loss at valid_until, not before, and not
  // later than a scheduling delay after it.
  ASSERT_TRUE(testing::WaitFor([&] { return fired.load(); }, 4s));
  const auto margin = lc::SafetyMargin(2000ms, 0.01, 100ms);
  EXPECT_GE(fired_at, until) << "declared lost before valid_until";
  EXPECT_LT(fired_at - until, 300ms) << "declared lost late";
  // The safety bound itself: lost before any node could expire the lease (every acknowledged
  // renewal was sent before the pause). Stated against paused + TTL, not the tighter
  // until + margin (100 ms here), which a scheduling delay on a loaded machine could exceed.
  EXPECT_LT(fired_at, paused + 2000ms) << "declared lost after a node could have expired it";
  // Every acknowledged renewal was sent before the pause, so no node can expire the lease before
  // paused + TTL; valid_until stays a margin short of it. And renewals went on until the pause:
  // the last acknowledged one was sent at most two periods (2 × 667 ms) before it.
  EXPECT_LE(until, paused + 2000ms - margin);
  EXPECT_GT(until, paused + 2000ms - margin - 2 * 667ms - 200ms);
  EXPECT_FALSE(lock->held());
  for (int i = 0; i < cluster.size(); ++i) cluster.Resume(i);
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();

  auto b = Connect(cluster);
  auto lease_b = b->GrantLease(5000ms, "after");
  ASSERT_TRUE(lease_b.ok()) << lease_b.status().ToString();
  auto taken = b->Acquire("stopped/cluster", *lease_b, Wait(10s));
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  ASSERT_TRUE(taken->held());
  EXPECT_GT(taken->token(), lock->token());
  EXPECT_GT(taken->fence(), lock->fence());
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(lock->held());
    EXPECT_FALSE((*lease)->valid());
    std::this_thread::sleep_for(100ms);
  }
}

TEST(ClientLease, WatchReportsAcquireAndReleaseUntilStopped) {
  Cluster cluster;
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  auto client = Connect(cluster);
  std::mutex mu;
  std::vector<lc::LockEvent> events;
  std::stop_source stop;
  lc::Status ended;
  std::thread watcher([&] {
    ended = client->Watch("watched/", true, stop.get_token(), [&](const lc::LockEvent& e) {
      std::lock_guard g(mu);
      events.push_back(e);
    });
  });
  std::this_thread::sleep_for(500ms);  // the watch is open (it starts from now)
  auto lease = client->GrantLease(5000ms, "watched");
  ASSERT_TRUE(lease.ok());
  {
    auto lock = client->Acquire("watched/a", *lease);
    ASSERT_TRUE(lock.ok() && lock->held());
  }  // released here
  const bool seen = testing::WaitFor(
      [&] {
        std::lock_guard g(mu);
        return events.size() >= 2;
      },
      10s);
  stop.request_stop();
  watcher.join();
  ASSERT_TRUE(seen);
  EXPECT_TRUE(ended.ok()) << ended.ToString();
  std::lock_guard g(mu);
  EXPECT_EQ(events[0].type, lc::LockEvent::Type::kAcquired);
  EXPECT_EQ(events[0].name, "watched/a");
  EXPECT_EQ(events[1].type, lc::LockEvent::Type::kReleased);
  EXPECT_EQ(events[0].token, events[1].token);
}

TEST(ClientLease, SharedHoldersShareOneFenceAndTheOneCallFormExpiresByItsTtl) {
  Cluster cluster;
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  auto a = Connect(cluster);
  auto b = Connect(cluster);
  auto la = a->GrantLease(5000ms, "reader-a");
  auto lb = b->GrantLease(5000ms, "reader-b");
  ASSERT_TRUE(la.ok() && lb.ok());
  lc::LockOptions shared;
  shared.mode = lc::Mode::kShared;
  auto ra = a->Acquire("shared/doc", *la, shared);
  auto rb = b->Acquire("shared/doc", *lb, shared);
  ASSERT_TRUE(ra.ok() && rb.ok());
  ASSERT_TRUE(ra->held() && rb->held());
  EXPECT_EQ(ra->mode(), lc::Mode::kShared);
  EXPECT_NE(ra->token(), rb->token());
  EXPECT_EQ(ra->fence(), rb->fence()) << "one run of shared holders, one fence";

  // SET NX PX: a 2 s lock without lease management; another client cannot take it until its
  // TTL runs out, and the library stops calling it held before then.
  auto once = a->AcquireWithTtl("one/call", 2000ms);
  ASSERT_TRUE(once.ok()) << once.status().ToString();
  ASSERT_TRUE(once->held());
  auto tried = b->Acquire("one/call", *lb);
  ASSERT_TRUE(tried.ok());
  EXPECT_FALSE(tried->acquired());
  ASSERT_TRUE(testing::WaitFor([&] { return !once->held(); }, 4s));
  auto later = b->Acquire("one/call", *lb, Wait(5s));
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  EXPECT_TRUE(later->held()) << "the cluster expired the one-call lease";
  EXPECT_GT(later->fence(), once->fence());
}

/// Whether the cluster's renewal answers list the lease's held tokens (held_tokens).
bool ServerReportsHoldings(Cluster& cluster) {
  Client raw(cluster);
  const uint64_t lease = raw.MustGrantLease(5000, "probe");
  v1::AcquireResponse acq;
  if (!raw.Acquire("probe/holdings", lease, v1::EXCLUSIVE, 0, &acq).status.ok()) return false;
  v1::RenewResponse renewed;
  if (!raw.Renew(lease, 1, &renewed).status.ok()) return false;
  (void)raw.Revoke(lease);
  const auto held = lc::HeldTokensOf(renewed);
  return held && held->size() == 1 && held->front() == acq.token();
}

TEST(ClientLease, AForceReleaseIsReportedOnTheHoldersLockWithinOneRenewalInterval) {
  Cluster cluster;
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  // The renewal answers list the held tokens (a server without them would leave it to the
  // library's GetLease probe after each renewal, tested against the scripted server).
  EXPECT_TRUE(ServerReportsHoldings(cluster));
  auto client = Connect(cluster);
  auto lease = client->GrantLease(3000ms, "forced");
  ASSERT_TRUE(lease.ok());
  auto lock = client->Acquire("forced/one", *lease);
  ASSERT_TRUE(lock.ok() && lock->held());
  std::this_thread::sleep_for(1500ms);  // the library has seen held tokens by now
  std::atomic<bool> fired{false};
  lock->OnLost([&](const std::string&) { fired = true; });

  Client raw(cluster);
  v1::ForceReleaseRequest req;
  *req.mutable_header() = raw.Begin();
  req.set_name("forced/one");
  req.set_reason("e2e");
  v1::ForceReleaseResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  ASSERT_TRUE(cluster.cluster(leader).ForceRelease(&ctx, req, &resp).ok());
  raw.End(req.header().id().seq());
  const auto released = std::chrono::steady_clock::now();
  ASSERT_TRUE(testing::WaitFor([&] { return fired.load(); }, 5s)) << "never reported";
  EXPECT_LT(std::chrono::steady_clock::now() - released, 1000ms + 500ms)
      << "one renewal interval (TTL/3) plus a round trip";
  EXPECT_FALSE(lock->held());
  EXPECT_TRUE((*lease)->valid()) << "the lease itself lives on";
}

}  // namespace
}  // namespace lockd::e2e
