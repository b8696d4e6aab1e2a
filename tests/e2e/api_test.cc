// The whole client API on a real 3-node cluster (issue 7, "Tests"): leases, try-locks, FIFO
// waits, shared and exclusive fences, Cancel in every state, refused releases and second
// acquires, expiry with handoff, exactly-once retries of every mutating RPC, forwarding from
// followers, the leader and cluster metadata, inspection, and Watch.
//
// Timing rule: orderings and wide bounds only (the machine is small and shared). Leases that are
// not about expiry get long TTLs so no test depends on renewals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <set>
#include <thread>

#include "e2e/cluster_harness.h"
#include "support/process.h"

namespace lockd::e2e {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr uint64_t kLongTtl = 120'000;
constexpr v1::LockMode kEx = v1::EXCLUSIVE;
constexpr v1::LockMode kSh = v1::SHARED;

/// StartAcquire with an overall deadline that outlasts the wait (20 s past wait_ms at least).
PendingAcquire StartWait(Client& c, const std::string& name, uint64_t lease, v1::LockMode mode,
                         uint64_t wait_ms, CallOptions o = {},
                         std::optional<v1::RequestHeader> header = std::nullopt) {
  o.deadline = std::max(o.deadline, Ms(wait_ms) + 20s);
  return StartAcquire(c, name, lease, mode, wait_ms, o, header);
}

uint64_t TokenCounter(Cluster& cluster, int node) {
  v1::StatusResponse s;
  EXPECT_TRUE(cluster.Status(node, &s).ok());
  return s.token_counter();
}

bool SameId(const v1::RequestId& a, const v1::RequestId& b) {
  return a.client_hi() == b.client_hi() && a.client_lo() == b.client_lo() && a.seq() == b.seq();
}

class Api : public ::testing::Test {
 protected:
  void SetUp() override {
    leader_ = cluster_.WaitForReady();
    ASSERT_GE(leader_, 0) << "no leader within 30 s\n" << cluster_.StatusSummary();
    follower_ = (leader_ + 1) % cluster_.size();
  }

  /// Options that send every attempt to node `i` (forwarding tests).
  static CallOptions At(int i) {
    CallOptions o;
    o.node = i;
    o.rotate = false;
    return o;
  }

  Cluster cluster_;
  Client client_{cluster_};
  int leader_ = -1;
  int follower_ = -1;
};

// ---------------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------------

TEST_F(Api, GrantLeaseGivesUniqueIncreasingIdsAndTheRequestedTtl) {
  v1::GrantLeaseResponse a, b;
  ASSERT_TRUE(client_.GrantLease(10'000, &a, "worker-a").status.ok());
  ASSERT_TRUE(client_.GrantLease(20'000, &b, "worker-b").status.ok());
  EXPECT_NE(a.lease_id(), 0u);
  EXPECT_GT(b.lease_id(), a.lease_id());
  EXPECT_EQ(a.ttl_ms(), 10'000u);
  EXPECT_EQ(b.ttl_ms(), 20'000u);

  v1::GetLeaseResponse g;
  ASSERT_TRUE(client_.GetLease(a.lease_id(), &g).status.ok());
  EXPECT_EQ(g.lease().lease_id(), a.lease_id());
  EXPECT_EQ(g.lease().label(), "worker-a");
  EXPECT_EQ(g.lease().ttl_ms(), 10'000u);
  EXPECT_LE(g.lease().remaining_ms(), 10'000u);
  EXPECT_EQ(g.lease().granted_by().client_hi(), client_.client_hi());
  EXPECT_EQ(g.lease().granted_by().client_lo(), client_.client_lo());

  std::vector<v1::LeaseInfo> all;
  ASSERT_TRUE(client_.ListAllLeases(&all).status.ok());
  std::vector<uint64_t> ids;
  for (auto& l : all) ids.push_back(l.lease_id());
  EXPECT_THAT(ids, ElementsAre(a.lease_id(), b.lease_id()));
}

TEST_F(Api, RenewEchoesItsSeqAndReportsTheRemainingTtl) {
  const uint64_t lease = client_.MustGrantLease(10'000);
  for (uint64_t seq : {7u, 8u, 1000u}) {
    v1::RenewResponse r;
    auto info = client_.Renew(lease, seq, &r);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_EQ(r.lease_id(), lease);
    EXPECT_EQ(r.seq(), seq);
    EXPECT_GT(r.remaining_ms(), 0u);
    EXPECT_LE(r.remaining_ms(), 10'000u);
    EXPECT_EQ(r.code(), 0);
  }
  // Through a follower too (forwarded to the leader, which tracks the deadlines).
  v1::RenewResponse r;
  auto info = client_.Renew(lease, 9, &r, At(follower_));
  ASSERT_TRUE(info.status.ok()) << Describe(info.status);
  EXPECT_EQ(r.seq(), 9u);
  EXPECT_GT(r.remaining_ms(), 0u);
}

TEST_F(Api, RevokeReleasesEveryLockAndWaitAndTheLeaseIsThenNotFound) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl, "revoked");
  const uint64_t other = client_.MustGrantLease(kLongTtl, "other");
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("rv/held-1", lease, kEx, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());
  ASSERT_TRUE(client_.Acquire("rv/held-2", lease, kSh, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());
  ASSERT_TRUE(client_.Acquire("rv/other", other, kEx, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());
  auto wait = StartWait(client_, "rv/other", lease, kEx, 60'000);
  ASSERT_TRUE(WaitForWaiters(client_, "rv/other", 1));

  v1::RevokeLeaseResponse rv;
  auto info = client_.Revoke(lease, &rv);
  ASSERT_TRUE(info.status.ok()) << Describe(info.status);
  EXPECT_THAT(rv.released(), UnorderedElementsAre("rv/held-1", "rv/held-2"));
  EXPECT_THAT(rv.dropped(), ElementsAre("rv/other"));

  auto w = wait.Get();
  EXPECT_TRUE(w.info.status.ok() || w.info.status.error_code() == grpc::StatusCode::NOT_FOUND)
      << "the dropped wait ends, not acquired: " << Describe(w.info.status);
  EXPECT_FALSE(w.resp.acquired());

  EXPECT_TRUE(client_.MustGetLock("rv/held-1").holders().empty());
  EXPECT_TRUE(client_.MustGetLock("rv/held-2").holders().empty());
  auto other_lock = client_.MustGetLock("rv/other");
  ASSERT_EQ(other_lock.holders_size(), 1);
  EXPECT_EQ(other_lock.holders(0).lease_id(), other);
  EXPECT_EQ(other_lock.waiters_size(), 0);

  v1::RenewResponse r;
  EXPECT_EQ(client_.Renew(lease, 1, &r).status.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::GetLeaseResponse g;
  EXPECT_EQ(client_.GetLease(lease, &g).status.error_code(), grpc::StatusCode::NOT_FOUND);
  // A revoke of a revoked lease, under a new request id, is NOT_FOUND.
  EXPECT_EQ(client_.Revoke(lease).status.error_code(), grpc::StatusCode::NOT_FOUND);
  // The other lease is untouched.
  EXPECT_TRUE(client_.Renew(other, 2, &r).status.ok());
}

TEST_F(Api, KeepAliveAnswersEachRenewalWithItsSeqAndReportsAnUnknownLeaseWithoutEndingTheStream) {
  const uint64_t lease = client_.MustGrantLease(10'000);
  for (int node : {leader_, follower_}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    auto stream = cluster_.lock(node).KeepAlive(&ctx);
    std::map<uint64_t, v1::RenewResponse> answers;
    const uint64_t unknown = lease + 1'000'000;
    for (uint64_t seq = 1; seq <= 4; ++seq) {
      v1::RenewRequest req;
      req.set_lease_id(seq == 3 ? unknown : lease);
      req.set_seq(seq);
      ASSERT_TRUE(stream->Write(req)) << "node " << node + 1;
    }
    // Answers may come in any order (the renewals are independent); each echoes its seq.
    v1::RenewResponse resp;
    while (answers.size() < 4 && stream->Read(&resp)) answers[resp.seq()] = resp;
    stream->WritesDone();
    while (stream->Read(&resp)) answers[resp.seq()] = resp;
    auto st = stream->Finish();
    EXPECT_TRUE(st.ok()) << "node " << node + 1 << ": " << Describe(st);
    ASSERT_EQ(answers.size(), 4u) << "node " << node + 1;
    for (uint64_t seq : {1u, 2u, 4u}) {
      EXPECT_EQ(answers[seq].code(), 0) << "seq " << seq << ": " << answers[seq].message();
      EXPECT_EQ(answers[seq].lease_id(), lease);
      EXPECT_GT(answers[seq].remaining_ms(), 0u);
    }
    EXPECT_EQ(answers[3].code(), static_cast<int>(grpc::StatusCode::NOT_FOUND))
        << "an unknown lease on a KeepAlive stream answers code 5 (NOT_FOUND)";
    EXPECT_EQ(answers[3].lease_id(), unknown);
    EXPECT_FALSE(answers[3].message().empty());
  }
}

// A batched renewal: one message renews many leases and is answered by one message with an entry
// per lease, in order, each with its own code; the batch bound and the unary form are refused.
TEST_F(Api, KeepAliveBatchRenewsManyLeasesInOneMessageAndAnswersEachInOrder) {
  const uint64_t a = client_.MustGrantLease(10'000), b = client_.MustGrantLease(10'000),
                 c = client_.MustGrantLease(10'000);
  const uint64_t unknown = c + 1'000'000;
  for (int node : {leader_, follower_}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    auto stream = cluster_.lock(node).KeepAlive(&ctx);
    v1::RenewRequest batch;
    batch.set_lease_id(a);
    batch.set_seq(7);
    for (uint64_t id : {b, unknown, uint64_t{0}, c}) batch.add_more_lease_ids(id);
    ASSERT_TRUE(stream->Write(batch)) << "node " << node + 1;
    v1::RenewRequest too_big;
    too_big.set_lease_id(a);
    too_big.set_seq(8);
    for (int k = 0; k < 1000; ++k) too_big.add_more_lease_ids(b);  // 1,001 with lease_id
    ASSERT_TRUE(stream->Write(too_big));
    std::map<uint64_t, v1::RenewResponse> answers;
    v1::RenewResponse resp;
    while (answers.size() < 2 && stream->Read(&resp)) answers[resp.seq()] = resp;
    stream->WritesDone();
    while (stream->Read(&resp)) answers[resp.seq()] = resp;
    auto st = stream->Finish();
    EXPECT_TRUE(st.ok()) << "node " << node + 1 << ": " << Describe(st);
    ASSERT_EQ(answers.size(), 2u) << "node " << node + 1;

    const auto& r = answers[7];
    EXPECT_EQ(r.lease_id(), a);
    EXPECT_EQ(r.code(), 0) << r.message();
    EXPECT_GT(r.remaining_ms(), 0u);
    ASSERT_EQ(r.more_size(), 4) << "one answer per more_lease_ids entry";
    EXPECT_EQ(r.more(0).lease_id(), b);
    EXPECT_EQ(r.more(0).code(), 0) << r.more(0).message();
    EXPECT_GT(r.more(0).remaining_ms(), 0u);
    EXPECT_TRUE(r.more(0).holdings_listed());
    EXPECT_EQ(r.more(1).lease_id(), unknown);
    EXPECT_EQ(r.more(1).code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
    EXPECT_EQ(r.more(1).remaining_ms(), 0u);
    EXPECT_EQ(r.more(2).code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
    EXPECT_EQ(r.more(3).lease_id(), c);
    EXPECT_EQ(r.more(3).code(), 0) << r.more(3).message();

    const auto& big = answers[8];
    EXPECT_EQ(big.code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
    EXPECT_THAT(big.message(), HasSubstr("at most 1000"));
    EXPECT_EQ(big.more_size(), 0);
  }
  // The unary form renews lease_id alone.
  v1::RenewRequest unary;
  unary.set_lease_id(a);
  unary.set_seq(1);
  unary.add_more_lease_ids(b);
  v1::RenewResponse out;
  grpc::ClientContext uctx;
  auto st = cluster_.lock(leader_).Renew(&uctx, unary, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(st);
}

// ---------------------------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------------------------

TEST_F(Api, TryLockOnAFreeNameGrantsAnExclusiveHoldWhoseFenceIsItsToken) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl, "holder");
  v1::AcquireResponse a;
  auto info = client_.Acquire("tl/free", lease, kEx, 0, &a);
  ASSERT_TRUE(info.status.ok()) << Describe(info.status);
  EXPECT_TRUE(a.acquired());
  EXPECT_GT(a.token(), 0u);
  EXPECT_EQ(a.fence(), a.token());
  EXPECT_EQ(a.mode(), kEx);
  EXPECT_EQ(a.lease_id(), lease);
  EXPECT_EQ(a.lease_ttl_ms(), 0u) << "no lease was granted by this call";

  auto lock = client_.MustGetLock("tl/free");
  EXPECT_EQ(lock.name(), "tl/free");
  ASSERT_EQ(lock.holders_size(), 1);
  EXPECT_EQ(lock.holders(0).lease_id(), lease);
  EXPECT_EQ(lock.holders(0).lease_label(), "holder");
  EXPECT_EQ(lock.holders(0).token(), a.token());
  EXPECT_EQ(lock.holders(0).fence(), a.token());
  EXPECT_EQ(lock.holders(0).mode(), kEx);
  EXPECT_EQ(lock.holders(0).acquired_by().client_hi(), client_.client_hi());
  EXPECT_EQ(lock.waiters_size(), 0);

  v1::GetLeaseResponse g;
  ASSERT_TRUE(client_.GetLease(lease, &g).status.ok());
  EXPECT_THAT(g.lease().held(), ElementsAre("tl/free"));
  EXPECT_EQ(TokenCounter(cluster_, leader_), a.token());
}

/// The sum over every node of one counter in /metrics.
uint64_t MetricSum(Cluster& cluster, const std::string& name) {
  uint64_t sum = 0;
  for (int i = 0; i < cluster.size(); ++i) {
    auto r = testing::RunCommand(
        {"/usr/bin/curl", "-s", "http://" + cluster.http_addr(i) + "/metrics"}, 10s);
    const size_t at = r.output.find("\n" + name + " ");
    if (at != std::string::npos) sum += std::stoull(r.output.substr(at + name.size() + 2));
  }
  return sum;
}

TEST_F(Api, TryLockOnAHeldNameIsNotAcquiredShowsTheHoldersAndChangesNothing) {
  const uint64_t holder = client_.MustGrantLease(kLongTtl, "holder");
  const uint64_t other = client_.MustGrantLease(kLongTtl, "other");
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("tl/held", holder, kEx, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());
  // The counter is this grant's token (one counter serves every lock). Not read from Status:
  // Status is refreshed once per loop pass, so right after an answer it may not show it yet.
  const uint64_t tokens_before = a.token();

  for (auto mode : {kEx, kSh}) {
    for (int node : {leader_, follower_}) {
      v1::AcquireResponse b;
      auto info = client_.Acquire("tl/held", other, mode, 0, &b, At(node));
      ASSERT_TRUE(info.status.ok())
          << "not getting the lock is OK, not an error: " << Describe(info.status);
      EXPECT_FALSE(b.acquired());
      EXPECT_EQ(b.token(), 0u);
      ASSERT_EQ(b.holders_size(), 1);
      EXPECT_EQ(b.holders(0).lease_id(), holder);
      EXPECT_EQ(b.holders(0).token(), a.token());
    }
  }
  auto lock = client_.MustGetLock("tl/held");
  EXPECT_EQ(lock.holders_size(), 1);
  EXPECT_EQ(lock.waiters_size(), 0) << "a try-lock never queues";
  v1::GetLeaseResponse g;
  ASSERT_TRUE(client_.GetLease(other, &g).status.ok());
  EXPECT_TRUE(g.lease().held().empty());
  EXPECT_TRUE(g.lease().waiting().empty());
  EXPECT_EQ(TokenCounter(cluster_, leader_), tokens_before);
  // First attempts were answered by the read path (a ReadIndex round, no log entry); a retried
  // attempt would have gone through the log, with the same answer.
  EXPECT_TRUE(testing::WaitFor(
      [&] { return MetricSum(cluster_, "lockd_try_locks_by_read_total") >= 1; }, 10s))
      << "no failed try-lock was answered from the read path";
}

TEST_F(Api, WaitingAcquiresAreGrantedInFifoOrderWithIncreasingTokens) {
  const uint64_t holder = client_.MustGrantLease(kLongTtl, "holder");
  v1::AcquireResponse first;
  ASSERT_TRUE(client_.Acquire("fifo/x", holder, kEx, 0, &first).status.ok());
  ASSERT_TRUE(first.acquired());

  constexpr int kWaiters = 4;
  std::vector<uint64_t> leases;
  std::vector<PendingAcquire> waits;
  for (int i = 0; i < kWaiters; ++i) {
    leases.push_back(client_.MustGrantLease(kLongTtl, "w" + std::to_string(i)));
    // Alternate the nodes the waits go through: the queue order is the commit order.
    CallOptions o = At(i % cluster_.size());
    waits.push_back(StartWait(client_, "fifo/x", leases.back(), kEx, 60'000, o));
    ASSERT_TRUE(WaitForWaiters(client_, "fifo/x", i + 1)) << "waiter " << i << " never queued";
  }
  auto lock = client_.MustGetLock("fifo/x");
  ASSERT_EQ(lock.waiters_size(), kWaiters);
  for (int i = 0; i < kWaiters; ++i) {
    EXPECT_EQ(lock.waiters(i).lease_id(), leases[i]) << "waiters are listed in grant order";
    EXPECT_TRUE(SameId(lock.waiters(i).acquire_id(), waits[i].header.id()));
    EXPECT_EQ(lock.waiters(i).wait_ms(), 60'000u);
  }

  uint64_t last_token = first.token();
  uint64_t holding_lease = holder;
  for (int i = 0; i < kWaiters; ++i) {
    EXPECT_FALSE(waits[i].Done()) << "waiter " << i << " returned before its turn";
    auto rel = client_.Release("fifo/x", holding_lease, last_token);
    ASSERT_TRUE(rel.status.ok()) << Describe(rel.status);
    auto r = waits[i].Get();
    ASSERT_TRUE(r.info.status.ok()) << "waiter " << i << ": " << Describe(r.info.status);
    EXPECT_TRUE(r.resp.acquired()) << "waiter " << i;
    EXPECT_EQ(r.resp.lease_id(), leases[i]);
    EXPECT_GT(r.resp.token(), last_token) << "every grant's token is larger than the one before";
    EXPECT_EQ(r.resp.fence(), r.resp.token());
    for (int j = i + 1; j < kWaiters; ++j) {
      EXPECT_FALSE(waits[j].Done()) << "waiter " << j << " overtook waiter " << i;
    }
    // The handoff happened in the release's own entry: the holder is already the waiter.
    auto now = client_.MustGetLock("fifo/x");
    ASSERT_EQ(now.holders_size(), 1);
    EXPECT_EQ(now.holders(0).lease_id(), leases[i]);
    EXPECT_EQ(now.waiters_size(), kWaiters - i - 1);
    last_token = r.resp.token();
    holding_lease = leases[i];
  }
}

TEST_F(Api, WaitingAcquireThatRunsOutOfWaitTimeIsNotAcquiredAndLeavesTheQueue) {
  const uint64_t holder = client_.MustGrantLease(kLongTtl);
  const uint64_t waiter = client_.MustGrantLease(kLongTtl);
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("wt/x", holder, kEx, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());

  const auto start = Clock::now();
  v1::AcquireResponse b;
  auto info = client_.Acquire("wt/x", waiter, kEx, 1500, &b);
  const auto waited = std::chrono::duration_cast<Ms>(Clock::now() - start);
  ASSERT_TRUE(info.status.ok()) << "a wait that runs out is OK with acquired=false: "
                                << Describe(info.status);
  EXPECT_FALSE(b.acquired());
  ASSERT_EQ(b.holders_size(), 1);
  EXPECT_EQ(b.holders(0).lease_id(), holder);
  EXPECT_GE(waited, 1400ms) << "the wait ended long before wait_ms";
  EXPECT_LT(waited, 15s);

  auto lock = client_.MustGetLock("wt/x");
  EXPECT_EQ(lock.waiters_size(), 0);
  v1::GetLeaseResponse g;
  ASSERT_TRUE(client_.GetLease(waiter, &g).status.ok());
  EXPECT_TRUE(g.lease().waiting().empty());
  // The lease may wait for the name again.
  auto again = StartWait(client_, "wt/x", waiter, kEx, 30'000);
  ASSERT_TRUE(WaitForWaiters(client_, "wt/x", 1));
  ASSERT_TRUE(client_.Release("wt/x", holder, a.token()).status.ok());
  auto r = again.Get();
  ASSERT_TRUE(r.info.status.ok()) << Describe(r.info.status);
  EXPECT_TRUE(r.resp.acquired());
}

TEST_F(Api, SharedHoldersShareOneFenceAndAnExclusiveWaiterIsNotOvertakenBySharedOnes) {
  const uint64_t s1 = client_.MustGrantLease(kLongTtl, "s1");
  const uint64_t s2 = client_.MustGrantLease(kLongTtl, "s2");
  const uint64_t ex = client_.MustGrantLease(kLongTtl, "ex");
  const uint64_t s3 = client_.MustGrantLease(kLongTtl, "s3");

  v1::AcquireResponse a1, a2;
  ASSERT_TRUE(client_.Acquire("sh/x", s1, kSh, 0, &a1).status.ok());
  ASSERT_TRUE(a1.acquired());
  EXPECT_EQ(a1.mode(), kSh);
  EXPECT_EQ(a1.fence(), a1.token()) << "the first shared grant of a run fences with its token";
  ASSERT_TRUE(client_.Acquire("sh/x", s2, kSh, 0, &a2).status.ok());
  ASSERT_TRUE(a2.acquired()) << "SHARED is compatible with SHARED";
  EXPECT_GT(a2.token(), a1.token());
  EXPECT_EQ(a2.fence(), a1.token()) << "concurrent readers share one fence";

  v1::AcquireResponse e;
  ASSERT_TRUE(client_.Acquire("sh/x", ex, kEx, 0, &e).status.ok());
  EXPECT_FALSE(e.acquired()) << "EXCLUSIVE is not compatible with SHARED holders";
  EXPECT_EQ(e.holders_size(), 2);

  auto ex_wait = StartWait(client_, "sh/x", ex, kEx, 60'000);
  ASSERT_TRUE(WaitForWaiters(client_, "sh/x", 1));
  // A later SHARED request does not overtake the queued EXCLUSIVE one: not as a try-lock...
  v1::AcquireResponse t3;
  ASSERT_TRUE(client_.Acquire("sh/x", s3, kSh, 0, &t3).status.ok());
  EXPECT_FALSE(t3.acquired()) << "a SHARED try-lock overtook a waiting EXCLUSIVE request";
  // ... nor as a wait: it queues behind.
  auto s3_wait = StartWait(client_, "sh/x", s3, kSh, 60'000);
  ASSERT_TRUE(WaitForWaiters(client_, "sh/x", 2));
  auto lock = client_.MustGetLock("sh/x");
  ASSERT_EQ(lock.waiters_size(), 2);
  EXPECT_EQ(lock.waiters(0).lease_id(), ex);
  EXPECT_EQ(lock.waiters(0).mode(), kEx);
  EXPECT_EQ(lock.waiters(1).lease_id(), s3);

  ASSERT_TRUE(client_.Release("sh/x", s1, a1.token()).status.ok());
  EXPECT_FALSE(ex_wait.Done()) << "EXCLUSIVE granted while a SHARED holder remained";
  ASSERT_TRUE(client_.Release("sh/x", s2, a2.token()).status.ok());
  auto er = ex_wait.Get();
  ASSERT_TRUE(er.info.status.ok()) << Describe(er.info.status);
  ASSERT_TRUE(er.resp.acquired());
  EXPECT_EQ(er.resp.mode(), kEx);
  EXPECT_GT(er.resp.token(), a2.token());
  EXPECT_EQ(er.resp.fence(), er.resp.token());
  EXPECT_FALSE(s3_wait.Done()) << "SHARED granted beside an EXCLUSIVE holder";

  ASSERT_TRUE(client_.Release("sh/x", ex, er.resp.token()).status.ok());
  auto sr = s3_wait.Get();
  ASSERT_TRUE(sr.info.status.ok()) << Describe(sr.info.status);
  ASSERT_TRUE(sr.resp.acquired());
  EXPECT_GT(sr.resp.token(), er.resp.token());
  EXPECT_EQ(sr.resp.fence(), sr.resp.token()) << "a new run of readers gets a new fence";
}

TEST_F(Api, CancelWithdrawsAWaitAndTheWaitingCallEndsNotAcquired) {
  const uint64_t holder = client_.MustGrantLease(kLongTtl);
  const uint64_t waiter = client_.MustGrantLease(kLongTtl);
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("cw/x", holder, kEx, 0, &a).status.ok());
  auto wait = StartWait(client_, "cw/x", waiter, kEx, 60'000);
  ASSERT_TRUE(WaitForWaiters(client_, "cw/x", 1));

  v1::CancelResponse c;
  auto info = client_.Cancel("cw/x", waiter, wait.header.id(), &c, At(follower_));
  ASSERT_TRUE(info.status.ok()) << Describe(info.status);
  EXPECT_EQ(c.effect(), v1::CancelResponse::WITHDREW_WAIT);
  auto r = wait.Get();
  ASSERT_TRUE(r.info.status.ok()) << Describe(r.info.status);
  EXPECT_FALSE(r.resp.acquired());
  EXPECT_EQ(client_.MustGetLock("cw/x").waiters_size(), 0);

  // The release now frees the lock: nobody is promoted.
  ASSERT_TRUE(client_.Release("cw/x", holder, a.token()).status.ok());
  auto lock = client_.MustGetLock("cw/x");
  EXPECT_EQ(lock.holders_size(), 0);
  EXPECT_EQ(lock.waiters_size(), 0);
  // Cancelling it again (new request id) finds nothing to cancel.
  ASSERT_TRUE(client_.Cancel("cw/x", waiter, wait.header.id(), &c).status.ok());
  EXPECT_EQ(c.effect(), v1::CancelResponse::NOTHING_TO_CANCEL);
}

TEST_F(Api, CancelAfterTheGrantReleasesItAndHandsTheLockToTheNextWaiter) {
  const uint64_t holder = client_.MustGrantLease(kLongTtl);
  const uint64_t next = client_.MustGrantLease(kLongTtl);
  auto header = client_.Begin();
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("cg/x", holder, kEx, 0, &a, {}, header).status.ok());
  client_.End(header.id().seq());
  ASSERT_TRUE(a.acquired());
  auto wait = StartWait(client_, "cg/x", next, kEx, 60'000);
  ASSERT_TRUE(WaitForWaiters(client_, "cg/x", 1));

  v1::CancelResponse c;
  auto info = client_.Cancel("cg/x", holder, header.id(), &c);
  ASSERT_TRUE(info.status.ok()) << Describe(info.status);
  EXPECT_EQ(c.effect(), v1::CancelResponse::RELEASED_GRANT);
  auto r = wait.Get();
  ASSERT_TRUE(r.info.status.ok()) << Describe(r.info.status);
  EXPECT_TRUE(r.resp.acquired());
  EXPECT_GT(r.resp.token(), a.token());

  ASSERT_TRUE(client_.Cancel("cg/x", holder, header.id(), &c).status.ok());
  EXPECT_EQ(c.effect(), v1::CancelResponse::NOTHING_TO_CANCEL)
      << "the grant was already released: nothing to cancel";
  auto lock = client_.MustGetLock("cg/x");
  ASSERT_EQ(lock.holders_size(), 1);
  EXPECT_EQ(lock.holders(0).lease_id(), next);
}

TEST_F(Api, CancelBeforeTheAcquireArrivesMakesTheAcquireANoOp) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl);
  auto header = client_.Begin();  // the Acquire's id, used only after the Cancel
  v1::CancelResponse c;
  auto info = client_.Cancel("ca/x", lease, header.id(), &c);
  ASSERT_TRUE(info.status.ok()) << Describe(info.status);
  EXPECT_EQ(c.effect(), v1::CancelResponse::CANCELLED_IN_ADVANCE);

  const uint64_t tokens_before = TokenCounter(cluster_, leader_);
  v1::AcquireResponse a;
  auto acq = client_.Acquire("ca/x", lease, kEx, 0, &a, {}, header);
  client_.End(header.id().seq());
  ASSERT_TRUE(acq.status.ok()) << Describe(acq.status);
  EXPECT_FALSE(a.acquired()) << "an Acquire cancelled in advance must not grant";
  auto lock = client_.MustGetLock("ca/x");
  EXPECT_EQ(lock.holders_size(), 0);
  EXPECT_EQ(lock.waiters_size(), 0);
  EXPECT_EQ(TokenCounter(cluster_, leader_), tokens_before);
  // A fresh Acquire (new request id) of the same name works.
  ASSERT_TRUE(client_.Acquire("ca/x", lease, kEx, 0, &a).status.ok());
  EXPECT_TRUE(a.acquired());
}

TEST_F(Api, ReleaseWithAWrongTokenOrByAnotherLeaseIsRefusedAndChangesNothing) {
  const uint64_t holder = client_.MustGrantLease(kLongTtl);
  const uint64_t other = client_.MustGrantLease(kLongTtl);
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("rl/x", holder, kEx, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());

  struct Case {
    const char* what;
    uint64_t lease, token;
  } cases[] = {
      {"wrong token", holder, a.token() + 1},
      {"token 0", holder, 0},
      {"another lease with the right token", other, a.token()},
  };
  for (const auto& k : cases) {
    for (int node : {leader_, follower_}) {
      auto info = client_.Release("rl/x", k.lease, k.token, At(node));
      EXPECT_EQ(info.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
          << k.what << " via node " << node + 1 << ": " << Describe(info.status);
      EXPECT_FALSE(info.status.error_message().empty());
    }
  }
  // A name nobody holds.
  EXPECT_EQ(client_.Release("rl/never-held", holder, a.token()).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  auto lock = client_.MustGetLock("rl/x");
  ASSERT_EQ(lock.holders_size(), 1) << "a refused release changed the lock";
  EXPECT_EQ(lock.holders(0).lease_id(), holder);
  EXPECT_EQ(lock.holders(0).token(), a.token());

  ASSERT_TRUE(client_.Release("rl/x", holder, a.token()).status.ok());
  EXPECT_EQ(client_.MustGetLock("rl/x").holders_size(), 0);
  // Released already: a second release (new request id) is refused.
  EXPECT_EQ(client_.Release("rl/x", holder, a.token()).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(Api, SecondAcquireOfAHeldOrAwaitedNameByTheSameLeaseIsRefused) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl);
  const uint64_t other = client_.MustGrantLease(kLongTtl);
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("sa/held", lease, kSh, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());
  const uint64_t tokens = a.token();  // not Status: it may not show an answer just sent yet
  for (auto mode : {kSh, kEx}) {
    for (uint64_t wait : {0u, 5000u}) {
      v1::AcquireResponse b;
      auto info = client_.Acquire("sa/held", lease, mode, wait, &b);
      EXPECT_EQ(info.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
          << "mode " << v1::LockMode_Name(mode) << " wait " << wait << ": " << Describe(info.status)
          << " acquired=" << b.acquired() << " (no upgrade, no second hold)";
    }
  }
  EXPECT_EQ(TokenCounter(cluster_, leader_), tokens);
  auto held = client_.MustGetLock("sa/held");
  EXPECT_EQ(held.holders_size(), 1);
  EXPECT_EQ(held.waiters_size(), 0);

  // Waiting counts too.
  v1::AcquireResponse o;
  ASSERT_TRUE(client_.Acquire("sa/awaited", other, kEx, 0, &o).status.ok());
  auto wait = StartWait(client_, "sa/awaited", lease, kEx, 60'000);
  ASSERT_TRUE(WaitForWaiters(client_, "sa/awaited", 1));
  v1::AcquireResponse b;
  auto info = client_.Acquire("sa/awaited", lease, kEx, 0, &b);
  EXPECT_EQ(info.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << Describe(info.status);
  EXPECT_EQ(client_.MustGetLock("sa/awaited").waiters_size(), 1);
  ASSERT_TRUE(client_.Revoke(lease).status.ok());
  wait.Get();
}

TEST_F(Api, UnrenewedLeaseExpiresAfterItsTtlReleasingItsLocksAndPromotingTheNextWaiter) {
  const auto granted_at = Clock::now();  // before the grant was sent: expiry is later than TTL
  const uint64_t short_lease = client_.MustGrantLease(2000, "short");
  const uint64_t waiter = client_.MustGrantLease(kLongTtl, "waiter");
  v1::AcquireResponse a, held2;
  ASSERT_TRUE(client_.Acquire("ex/x", short_lease, kEx, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());
  ASSERT_TRUE(client_.Acquire("ex/y", short_lease, kSh, 0, &held2).status.ok());
  ASSERT_TRUE(held2.acquired());
  WatchStream watch(cluster_, follower_, [] {
    v1::WatchRequest w;
    w.set_name("ex/x");
    return w;
  }());
  auto wait = StartWait(client_, "ex/x", waiter, kEx, 60'000);

  auto r = wait.Get(30s);
  const auto promoted_after = std::chrono::duration_cast<Ms>(Clock::now() - granted_at);
  ASSERT_TRUE(r.info.status.ok()) << Describe(r.info.status);
  ASSERT_TRUE(r.resp.acquired()) << "the waiter must be promoted when the holder's lease expires";
  EXPECT_GT(r.resp.token(), a.token());
  EXPECT_GT(r.resp.token(), held2.token());
  EXPECT_GE(promoted_after, 2000ms) << "the lease expired before its TTL ran out";
  EXPECT_LT(promoted_after, 20s);

  v1::GetLeaseResponse g;
  EXPECT_EQ(client_.GetLease(short_lease, &g).status.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::RenewResponse rn;
  EXPECT_EQ(client_.Renew(short_lease, 1, &rn).status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(client_.MustGetLock("ex/y").holders_size(), 0) << "every lock of the lease is freed";
  auto x = client_.MustGetLock("ex/x");
  ASSERT_EQ(x.holders_size(), 1);
  EXPECT_EQ(x.holders(0).lease_id(), waiter);

  // The watcher saw the expiry and the handoff in one entry (if it joined in time to see it).
  auto events = watch.WaitEvents(100, 2s);
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].type() == v1::LockEvent::EXPIRED) {
      EXPECT_EQ(events[i].lease_id(), short_lease);
      ASSERT_LT(i + 1, events.size());
      EXPECT_EQ(events[i + 1].type(), v1::LockEvent::ACQUIRED);
      EXPECT_EQ(events[i + 1].lease_id(), waiter);
      EXPECT_EQ(events[i + 1].position().index(), events[i].position().index())
          << "the expiry and the handoff it causes share an index";
    }
  }
}

TEST_F(Api, AcquireWithoutALeaseGrantsAOneLockLeaseWithTheGivenTtl) {
  v1::AcquireRequest req;
  req.set_name("ol/x");
  req.set_mode(kEx);
  req.set_ttl_ms(30'000);
  req.set_lease_label("setnx");
  v1::AcquireResponse a;
  auto info = client_.Call(&v1::LockService::Stub::Acquire, req, &a);
  ASSERT_TRUE(info.status.ok()) << Describe(info.status);
  ASSERT_TRUE(a.acquired());
  EXPECT_NE(a.lease_id(), 0u);
  EXPECT_EQ(a.lease_ttl_ms(), 30'000u);
  v1::GetLeaseResponse g;
  ASSERT_TRUE(client_.GetLease(a.lease_id(), &g).status.ok());
  EXPECT_EQ(g.lease().label(), "setnx");
  EXPECT_EQ(g.lease().ttl_ms(), 30'000u);
  EXPECT_THAT(g.lease().held(), ElementsAre("ol/x"));

  // A second one-lock Acquire of the held name: a failed try-lock grants no lease either.
  std::vector<v1::LeaseInfo> before, after;
  ASSERT_TRUE(client_.ListAllLeases(&before).status.ok());
  v1::AcquireResponse b;
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::Acquire, req, &b).status.ok());
  EXPECT_FALSE(b.acquired());
  ASSERT_TRUE(client_.ListAllLeases(&after).status.ok());
  EXPECT_EQ(after.size(), before.size()) << "a failed try-lock must not leave a lease behind";
}

// ---------------------------------------------------------------------------------------------
// Exactly once
// ---------------------------------------------------------------------------------------------

TEST_F(Api, RetriedGrantLeaseIsAnsweredOnceWithTheSameLease) {
  v1::GrantLeaseRequest req;
  *req.mutable_header() = client_.Begin();
  req.set_ttl_ms(kLongTtl);
  v1::GrantLeaseResponse first;
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::GrantLease, req, &first).status.ok());
  for (int node = 0; node < cluster_.size(); ++node) {
    req.mutable_header()->set_attempt(2 + node);
    v1::GrantLeaseResponse again;
    auto info = client_.Call(&v1::LockService::Stub::GrantLease, req, &again, At(node));
    ASSERT_TRUE(info.status.ok()) << "node " << node + 1 << ": " << Describe(info.status);
    EXPECT_EQ(again.lease_id(), first.lease_id()) << "retry via node " << node + 1;
    EXPECT_EQ(again.ttl_ms(), first.ttl_ms());
  }
  client_.End(req.header().id().seq());
  std::vector<v1::LeaseInfo> all;
  ASSERT_TRUE(client_.ListAllLeases(&all).status.ok());
  EXPECT_EQ(all.size(), 1u) << "retries granted more than one lease";
}

TEST_F(Api, RetriedAcquireIsAnsweredOnceWithTheSameToken) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl);
  v1::AcquireRequest req;
  *req.mutable_header() = client_.Begin();
  req.set_name("rt/acq");
  req.set_lease_id(lease);
  req.set_mode(kEx);
  v1::AcquireResponse first;
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::Acquire, req, &first).status.ok());
  ASSERT_TRUE(first.acquired());
  const uint64_t tokens = first.token();  // not Status: it may not show an answer just sent yet
  for (int node = 0; node < cluster_.size(); ++node) {
    v1::AcquireResponse again;
    auto info = client_.Call(&v1::LockService::Stub::Acquire, req, &again, At(node));
    ASSERT_TRUE(info.status.ok()) << "a retry must not be refused as a second Acquire: "
                                  << Describe(info.status);
    EXPECT_TRUE(again.acquired());
    EXPECT_EQ(again.token(), first.token());
    EXPECT_EQ(again.fence(), first.fence());
  }
  client_.End(req.header().id().seq());
  EXPECT_EQ(TokenCounter(cluster_, leader_), tokens) << "a retry granted again";
  EXPECT_EQ(client_.MustGetLock("rt/acq").holders_size(), 1);

  // A failed try-lock retried is still a failed try-lock (not a grant, not an error).
  const uint64_t other = client_.MustGrantLease(kLongTtl);
  v1::AcquireRequest tl = req;
  *tl.mutable_header() = client_.Begin();
  tl.set_lease_id(other);
  v1::AcquireResponse t1, t2;
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::Acquire, tl, &t1).status.ok());
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::Acquire, tl, &t2).status.ok());
  EXPECT_FALSE(t1.acquired());
  EXPECT_FALSE(t2.acquired());
  client_.End(tl.header().id().seq());
}

TEST_F(Api, RetriedReleaseCancelAndRevokeAreAnsweredOnce) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl);
  const uint64_t next = client_.MustGrantLease(kLongTtl);
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("rt/rel", lease, kEx, 0, &a).status.ok());
  auto wait = StartWait(client_, "rt/rel", next, kEx, 60'000);
  ASSERT_TRUE(WaitForWaiters(client_, "rt/rel", 1));

  // Release: the retry answers OK (the first outcome), and does not release the new holder.
  v1::ReleaseRequest rel;
  *rel.mutable_header() = client_.Begin();
  rel.set_name("rt/rel");
  rel.set_lease_id(lease);
  rel.set_token(a.token());
  v1::ReleaseResponse rr;
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::Release, rel, &rr).status.ok());
  auto granted = wait.Get();
  ASSERT_TRUE(granted.resp.acquired());
  for (int node = 0; node < cluster_.size(); ++node) {
    auto info = client_.Call(&v1::LockService::Stub::Release, rel, &rr, At(node));
    EXPECT_TRUE(info.status.ok()) << "node " << node + 1 << ": " << Describe(info.status);
  }
  client_.End(rel.header().id().seq());
  auto lock = client_.MustGetLock("rt/rel");
  ASSERT_EQ(lock.holders_size(), 1);
  EXPECT_EQ(lock.holders(0).lease_id(), next);

  // Cancel of the grant: RELEASED_GRANT on every retry, not NOTHING_TO_CANCEL.
  v1::CancelRequest can;
  *can.mutable_header() = client_.Begin();
  can.set_name("rt/rel");
  can.set_lease_id(next);
  *can.mutable_acquire_id() = wait.header.id();
  v1::CancelResponse cr;
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::Cancel, can, &cr).status.ok());
  EXPECT_EQ(cr.effect(), v1::CancelResponse::RELEASED_GRANT);
  for (int node = 0; node < cluster_.size(); ++node) {
    auto info = client_.Call(&v1::LockService::Stub::Cancel, can, &cr, At(node));
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_EQ(cr.effect(), v1::CancelResponse::RELEASED_GRANT) << "node " << node + 1;
  }
  client_.End(can.header().id().seq());

  // Revoke: the retry answers the first outcome (OK, same names), not NOT_FOUND.
  v1::AcquireResponse h;
  ASSERT_TRUE(client_.Acquire("rt/rev", lease, kEx, 0, &h).status.ok());
  v1::RevokeLeaseRequest rv;
  *rv.mutable_header() = client_.Begin();
  rv.set_lease_id(lease);
  v1::RevokeLeaseResponse first;
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::RevokeLease, rv, &first).status.ok());
  EXPECT_THAT(first.released(), ElementsAre("rt/rev"));
  for (int node = 0; node < cluster_.size(); ++node) {
    v1::RevokeLeaseResponse again;
    auto info = client_.Call(&v1::LockService::Stub::RevokeLease, rv, &again, At(node));
    ASSERT_TRUE(info.status.ok()) << "node " << node + 1 << ": " << Describe(info.status);
    EXPECT_THAT(again.released(), ElementsAre("rt/rev"));
  }
  client_.End(rv.header().id().seq());
}

TEST_F(Api, RetriedWaitingAcquireRejoinsThePendingWaitAndBothCallsGetTheOneGrant) {
  const uint64_t holder = client_.MustGrantLease(kLongTtl);
  const uint64_t waiter = client_.MustGrantLease(kLongTtl);
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("rj/x", holder, kEx, 0, &a).status.ok());
  auto header = client_.Begin();
  auto first = StartWait(client_, "rj/x", waiter, kEx, 60'000, At(leader_), header);
  ASSERT_TRUE(WaitForWaiters(client_, "rj/x", 1));
  header.set_attempt(2);
  auto retry = StartWait(client_, "rj/x", waiter, kEx, 60'000, At(follower_), header);
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(retry.Done()) << "the retry of a pending wait must rejoin it, not answer at once";
  EXPECT_EQ(client_.MustGetLock("rj/x").waiters_size(), 1) << "the retry queued a second wait";

  ASSERT_TRUE(client_.Release("rj/x", holder, a.token()).status.ok());
  auto r1 = first.Get();
  auto r2 = retry.Get();
  ASSERT_TRUE(r1.info.status.ok()) << Describe(r1.info.status);
  ASSERT_TRUE(r2.info.status.ok()) << Describe(r2.info.status);
  EXPECT_TRUE(r1.resp.acquired());
  EXPECT_TRUE(r2.resp.acquired());
  EXPECT_EQ(r1.resp.token(), r2.resp.token());
  EXPECT_EQ(r1.resp.token(), a.token() + 1) << "exactly one grant";
  EXPECT_EQ(TokenCounter(cluster_, leader_), a.token() + 1);
}

TEST_F(Api, RequestIdReusedForADifferentCallIsInvalidArgumentAndChangesNothing) {
  v1::GrantLeaseRequest req;
  *req.mutable_header() = client_.Begin();
  req.set_ttl_ms(kLongTtl);
  v1::GrantLeaseResponse first;
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::GrantLease, req, &first).status.ok());
  req.set_ttl_ms(kLongTtl / 2);
  v1::GrantLeaseResponse other;
  auto info = client_.Call(&v1::LockService::Stub::GrantLease, req, &other);
  EXPECT_EQ(info.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(info.status);

  // The same id on another method.
  v1::AcquireRequest acq;
  *acq.mutable_header() = req.header();
  acq.set_name("ru/x");
  acq.set_lease_id(first.lease_id());
  acq.set_mode(kEx);
  v1::AcquireResponse a;
  info = client_.Call(&v1::LockService::Stub::Acquire, acq, &a);
  EXPECT_EQ(info.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(info.status);
  client_.End(req.header().id().seq());
  EXPECT_EQ(client_.MustGetLock("ru/x").holders_size(), 0);
  std::vector<v1::LeaseInfo> all;
  ASSERT_TRUE(client_.ListAllLeases(&all).status.ok());
  EXPECT_EQ(all.size(), 1u);
}

TEST_F(Api, CommandBelowTheClientsWatermarkIsRefusedWithoutRunning) {
  // seq s1 finishes; a later call says its client's lowest pending sequence number is above s1;
  // a late duplicate of s1 must not run again.
  v1::GrantLeaseRequest old_req;
  *old_req.mutable_header() = client_.Begin();
  old_req.set_ttl_ms(kLongTtl);
  v1::GrantLeaseResponse first;
  ASSERT_TRUE(client_.Call(&v1::LockService::Stub::GrantLease, old_req, &first).status.ok());
  client_.End(old_req.header().id().seq());

  auto h = client_.Begin();
  ASSERT_GT(h.watermark(), old_req.header().id().seq());
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("wm/x", first.lease_id(), kEx, 0, &a, {}, h).status.ok());
  client_.End(h.id().seq());

  old_req.mutable_header()->set_attempt(5);
  v1::GrantLeaseResponse late;
  auto info = client_.Call(&v1::LockService::Stub::GrantLease, old_req, &late);
  EXPECT_EQ(info.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << Describe(info.status);
  std::vector<v1::LeaseInfo> all;
  ASSERT_TRUE(client_.ListAllLeases(&all).status.ok());
  EXPECT_EQ(all.size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Forwarding and metadata
// ---------------------------------------------------------------------------------------------

TEST_F(Api, EveryNodeServesEveryRpcByForwardingToTheLeader) {
  v1::StatusResponse status;
  ASSERT_TRUE(cluster_.Status(leader_, &status).ok());
  const std::string leader_addr = cluster_.client_addr(leader_);
  for (int node = 0; node < cluster_.size(); ++node) {
    SCOPED_TRACE("via node " + std::to_string(node + 1) +
                 (node == leader_ ? " (leader)" : " (follower)"));
    const auto o = At(node);
    const std::string name = "fw/" + std::to_string(node);
    v1::GrantLeaseResponse g;
    auto info = client_.GrantLease(kLongTtl, &g, "", o);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_EQ(info.attempts, 1) << "the call was not served on its first attempt";
    EXPECT_EQ(info.meta.leader, leader_addr);
    EXPECT_EQ(info.meta.cluster, status.cluster_id());
    v1::RenewResponse rn;
    info = client_.Renew(g.lease_id(), 3, &rn, o);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_EQ(info.meta.leader, leader_addr);
    v1::AcquireResponse a;
    info = client_.Acquire(name, g.lease_id(), kEx, 0, &a, o);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    ASSERT_TRUE(a.acquired());
    EXPECT_EQ(info.meta.leader, leader_addr);
    v1::GetLockResponse gl;
    info = client_.GetLock(name, &gl, o);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_EQ(gl.lock().holders_size(), 1) << "a linearizable read on any node sees the grant";
    v1::CancelResponse c;
    info = client_.Cancel(name, g.lease_id(), client_.FreshId(), &c, o);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_EQ(c.effect(), v1::CancelResponse::CANCELLED_IN_ADVANCE);
    info = client_.Release(name, g.lease_id(), a.token(), o);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_EQ(info.meta.leader, leader_addr);
    v1::GetLeaseResponse gls;
    info = client_.GetLease(g.lease_id(), &gls, o);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    info = client_.Revoke(g.lease_id(), nullptr, o);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_EQ(info.meta.leader, leader_addr);
    EXPECT_EQ(info.meta.cluster, status.cluster_id());
  }
}

TEST_F(Api, EveryResponseCarriesTheLeaderAndClusterMetadataErrorsIncluded) {
  v1::StatusResponse status;
  ASSERT_TRUE(cluster_.Status(leader_, &status).ok());
  ASSERT_FALSE(status.cluster_id().empty());
  const std::string leader_addr = cluster_.client_addr(leader_);
  for (int node = 0; node < cluster_.size(); ++node) {
    SCOPED_TRACE("node " + std::to_string(node + 1));
    {  // Status
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 5s);
      v1::StatusResponse s;
      ASSERT_TRUE(cluster_.cluster(node).Status(&ctx, {}, &s).ok());
      auto m = MetaOf(ctx);
      EXPECT_TRUE(m.has_leader && m.has_cluster);
      EXPECT_EQ(m.leader, leader_addr);
      EXPECT_EQ(m.cluster, status.cluster_id());
      EXPECT_EQ(s.cluster_id(), status.cluster_id());
    }
    {  // an error: NOT_FOUND
      v1::RenewResponse r;
      auto info = client_.Renew(999'999'999, 1, &r, At(node));
      EXPECT_EQ(info.status.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(info.status);
      EXPECT_TRUE(info.meta.has_leader) << "no lockd-leader on an error response";
      EXPECT_EQ(info.meta.leader, leader_addr);
      EXPECT_EQ(info.meta.cluster, status.cluster_id());
    }
    {  // an error refused before forwarding: INVALID_ARGUMENT
      v1::GetLockResponse r;
      auto info = client_.GetLock("", &r, At(node));
      EXPECT_EQ(info.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_EQ(info.meta.leader, leader_addr);
      EXPECT_EQ(info.meta.cluster, status.cluster_id());
    }
  }
}

TEST_F(Api, StatusAnswersOnEveryNodeWithTheMembersTheLeaderAndTheTokenCounter) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl);
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("st/x", lease, kEx, 0, &a).status.ok());
  std::string cluster_id;
  for (int node = 0; node < cluster_.size(); ++node) {
    SCOPED_TRACE("node " + std::to_string(node + 1));
    v1::StatusResponse s;
    // Followers apply a moment later: wait for the token counter to arrive.
    ASSERT_TRUE(testing::WaitFor(
        [&] { return cluster_.Status(node, &s).ok() && s.token_counter() >= a.token(); }, 10s))
        << s.DebugString();
    EXPECT_EQ(s.node_id(), cluster_.id(node));
    EXPECT_EQ(s.leader_id(), cluster_.id(leader_));
    EXPECT_GT(s.term(), 0u);
    EXPECT_GE(s.commit_index(), s.applied_index());
    EXPECT_GT(s.applied_index(), 0u);
    EXPECT_EQ(s.token_counter(), a.token());
    if (cluster_id.empty()) cluster_id = s.cluster_id();
    EXPECT_EQ(s.cluster_id(), cluster_id);
    ASSERT_EQ(s.members_size(), cluster_.size());
    for (const auto& m : s.members()) {
      const int i = cluster_.IndexOf(m.id());
      ASSERT_GE(i, 0) << "unknown member id " << m.id();
      EXPECT_EQ(m.client_addr(), cluster_.client_addr(i));
      EXPECT_EQ(m.peer_addr(), cluster_.peer_addr(i));
      if (i == leader_)
        EXPECT_EQ(m.role(), v1::Member::LEADER);
      else
        EXPECT_EQ(m.role(), v1::Member::FOLLOWER);
    }
  }
  EXPECT_FALSE(cluster_id.empty());
}

// ---------------------------------------------------------------------------------------------
// Inspection
// ---------------------------------------------------------------------------------------------

TEST_F(Api, ListLocksPagesThroughAPrefixInNameOrder) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl);
  for (const char* n : {"ls/e", "ls/a", "ls/c", "ls/b", "ls/d", "lt/other", "lr/other"}) {
    v1::AcquireResponse a;
    ASSERT_TRUE(client_.Acquire(n, lease, kSh, 0, &a).status.ok());
    ASSERT_TRUE(a.acquired());
  }
  std::vector<std::string> names;
  std::string token;
  int pages = 0;
  do {
    v1::ListLocksRequest req;
    req.set_prefix("ls/");
    req.set_page_size(2);
    req.set_page_token(token);
    v1::ListLocksResponse resp;
    auto info = client_.Call(&v1::LockService::Stub::ListLocks, req, &resp);
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_LE(resp.locks_size(), 2);
    for (auto& l : resp.locks()) {
      names.push_back(l.name());
      EXPECT_EQ(l.holders_size(), 1);
    }
    token = resp.next_page_token();
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_THAT(names, ElementsAre("ls/a", "ls/b", "ls/c", "ls/d", "ls/e"));
  EXPECT_GE(pages, 3);
}

TEST_F(Api, StaleReadsAnswerFromTheLocalNodeAndCatchUp) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl);
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("sr/x", lease, kEx, 0, &a).status.ok());
  for (int node = 0; node < cluster_.size(); ++node) {
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          v1::GetLockRequest req;
          req.set_name("sr/x");
          req.set_stale(true);
          v1::GetLockResponse resp;
          auto info = client_.Call(&v1::LockService::Stub::GetLock, req, &resp, At(node));
          return info.status.ok() && resp.lock().holders_size() == 1 &&
                 resp.lock().holders(0).token() == a.token();
        },
        10s))
        << "node " << node + 1 << " never showed the grant in a stale read";
    v1::GetLeaseRequest req;
    req.set_lease_id(lease);
    req.set_stale(true);
    v1::GetLeaseResponse resp;
    auto info = client_.Call(&v1::LockService::Stub::GetLease, req, &resp, At(node));
    ASSERT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_THAT(resp.lease().held(), ElementsAre("sr/x"));
  }
}

// ---------------------------------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------------------------------

/// Opens a Watch on `prefix` and makes sure it is registered (its own probe events arrive)
/// before returning; the probe name is prefix + "~probe".
std::unique_ptr<WatchStream> SyncedWatch(Cluster& cluster, Client& client, int node,
                                         const std::string& prefix, uint64_t probe_lease) {
  v1::WatchRequest req;
  req.set_prefix(prefix);
  auto w = std::make_unique<WatchStream>(cluster, node, req);
  const std::string probe = prefix + "~probe";
  const bool synced = testing::WaitFor(
      [&] {
        v1::AcquireResponse a;
        if (client.Acquire(probe, probe_lease, v1::EXCLUSIVE, 0, &a).status.ok() && a.acquired()) {
          client.Release(probe, probe_lease, a.token());
        }
        return !w->WaitEvents(1, 300ms).empty();
      },
      15s);
  EXPECT_TRUE(synced) << "the Watch on node " << node + 1 << " never delivered an event";
  return w;
}

std::vector<v1::LockEvent> Without(const std::vector<v1::LockEvent>& es, const std::string& name) {
  std::vector<v1::LockEvent> out;
  for (const auto& e : es) {
    if (e.name() != name) out.push_back(e);
  }
  return out;
}

TEST_F(Api, WatchDeliversEveryEventInLogOrderWithOneEntryPerMessage) {
  v1::StatusResponse status;
  ASSERT_TRUE(cluster_.Status(leader_, &status).ok());
  const uint64_t probe = client_.MustGrantLease(kLongTtl);
  auto watch = SyncedWatch(cluster_, client_, follower_, "wa/", probe);
  const uint64_t la = client_.MustGrantLease(kLongTtl, "a");
  const uint64_t lb = client_.MustGrantLease(kLongTtl, "b");
  const uint64_t lc = client_.MustGrantLease(kLongTtl, "c");

  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("wa/x", la, kEx, 0, &a).status.ok());  // ACQUIRED a
  auto bw = StartWait(client_, "wa/x", lb, kEx, 60'000);             // WAITING b
  ASSERT_TRUE(WaitForWaiters(client_, "wa/x", 1));
  ASSERT_TRUE(client_.Release("wa/x", la, a.token()).status.ok());  // RELEASED a + ACQUIRED b
  auto b = bw.Get();
  ASSERT_TRUE(b.resp.acquired());
  v1::AcquireResponse c;
  ASSERT_TRUE(client_.Acquire("wa/x", lc, kEx, 0, &c).status.ok());  // (try-lock: nothing)
  ASSERT_FALSE(c.acquired());
  auto cw = StartWait(client_, "wa/x", lc, kEx, 60'000);  // WAITING c
  ASSERT_TRUE(WaitForWaiters(client_, "wa/x", 1));
  v1::CancelResponse cr;
  ASSERT_TRUE(client_.Cancel("wa/x", lc, cw.header.id(), &cr).status.ok());  // CANCELLED c
  cw.Get();
  v1::AcquireResponse s;
  ASSERT_TRUE(client_.Acquire("wa/y", lc, kSh, 0, &s).status.ok());  // ACQUIRED c on y
  ASSERT_TRUE(client_.Revoke(lb).status.ok());                       // RELEASED/EXPIRED b

  std::vector<v1::LockEvent> events;
  // Wait until the last expected event arrives (the stream is asynchronous).
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        events = Without(watch->WaitEvents(1000, 0ms), "wa/~probe");
        return events.size() >= 8;
      },
      10s));
  std::vector<std::string> got;
  for (auto& e : events) got.push_back(ToString(e));
  ASSERT_EQ(events.size(), 8u) << ::testing::PrintToString(got);
  using T = v1::LockEvent;
  EXPECT_EQ(events[0].type(), T::ACQUIRED);
  EXPECT_EQ(events[0].lease_id(), la);
  EXPECT_EQ(events[0].token(), a.token());
  EXPECT_EQ(events[0].fence(), a.token());
  EXPECT_EQ(events[1].type(), T::WAITING);
  EXPECT_EQ(events[1].lease_id(), lb);
  EXPECT_EQ(events[2].type(), T::RELEASED);
  EXPECT_EQ(events[2].lease_id(), la);
  EXPECT_EQ(events[3].type(), T::ACQUIRED);
  EXPECT_EQ(events[3].lease_id(), lb);
  EXPECT_EQ(events[3].token(), b.resp.token());
  EXPECT_EQ(events[2].position().index(), events[3].position().index())
      << "a release and the handoff it causes share an index";
  EXPECT_EQ(events[4].type(), T::WAITING);
  EXPECT_EQ(events[4].lease_id(), lc);
  EXPECT_EQ(events[5].type(), T::CANCELLED);
  EXPECT_EQ(events[5].lease_id(), lc);
  EXPECT_EQ(events[6].name(), "wa/y");
  EXPECT_EQ(events[6].type(), T::ACQUIRED);
  for (auto& e : events) {
    EXPECT_EQ(e.position().cluster_id(), status.cluster_id());
    EXPECT_GT(e.position().event(), 0u) << "event numbers within an entry start at 1";
  }
  // The revoke's release comes last.
  EXPECT_EQ(events[7].lease_id(), lb);
  EXPECT_TRUE(events[7].type() == T::RELEASED || events[7].type() == T::EXPIRED)
      << ToString(events[7]);
  // Positions strictly increase; the events of one entry come in one message.
  auto all = watch->WaitEvents(1000, 0ms);
  for (size_t i = 1; i < all.size(); ++i) {
    EXPECT_TRUE(PositionLess(all[i - 1].position(), all[i].position()))
        << ToString(all[i - 1]) << " then " << ToString(all[i]);
  }
  std::set<uint64_t> seen_indices;
  for (const auto& r : watch->Responses()) {
    ASSERT_GT(r.events_size(), 0) << "an empty Watch message";
    const uint64_t idx = r.events(0).position().index();
    EXPECT_TRUE(seen_indices.insert(idx).second) << "entry " << idx << " split across messages";
    for (int k = 0; k < r.events_size(); ++k) {
      EXPECT_EQ(r.events(k).position().index(), idx);
      EXPECT_EQ(r.events(k).position().event(), static_cast<uint32_t>(k + 1));
    }
  }
}

TEST_F(Api, WatchResumesAfterAPositionOnAnyNodeAndRefusesAnotherClustersPosition) {
  const uint64_t probe = client_.MustGrantLease(kLongTtl);
  auto live = SyncedWatch(cluster_, client_, leader_, "wr/", probe);
  const uint64_t la = client_.MustGrantLease(kLongTtl);
  const uint64_t lb = client_.MustGrantLease(kLongTtl);
  v1::AcquireResponse a, b;
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(client_.Acquire("wr/x", la, kEx, 0, &a).status.ok());
    ASSERT_TRUE(client_.Acquire("wr/z", lb, kSh, 0, &b).status.ok());
    ASSERT_TRUE(client_.Release("wr/x", la, a.token()).status.ok());
    ASSERT_TRUE(client_.Release("wr/z", lb, b.token()).status.ok());
  }
  std::vector<v1::LockEvent> seen;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        seen = Without(live->WaitEvents(1000, 0ms), "wr/~probe");
        return seen.size() >= 12;
      },
      10s));
  live->Finish();

  // Resume after the 4th event (an entry of its own: a release with no waiter) on each node.
  const v1::WatchPosition after = seen[3].position();
  for (int node = 0; node < cluster_.size(); ++node) {
    SCOPED_TRACE("resumed on node " + std::to_string(node + 1));
    // A node that has not applied the position yet refuses it (OUT_OF_RANGE, "ahead"): a
    // follower may still be catching up.
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          v1::StatusResponse s;
          return cluster_.Status(node, &s).ok() && s.applied_index() >= after.index();
        },
        10s));
    v1::WatchRequest req;
    req.set_prefix("wr/");
    *req.mutable_after() = after;
    grpc::Status st;
    // Probe events that came after `after` are in the history as well; filter them.
    auto got = Without(Events(ReadWatch(cluster_, node, req, 8, 10s, &st)), "wr/~probe");
    ASSERT_GE(got.size(), 8u) << Describe(st);
    for (size_t i = 0; i < 8; ++i) {
      EXPECT_EQ(got[i].type(), seen[4 + i].type()) << i;
      EXPECT_EQ(got[i].name(), seen[4 + i].name()) << i;
      EXPECT_EQ(got[i].token(), seen[4 + i].token()) << i;
      EXPECT_EQ(got[i].position().index(), seen[4 + i].position().index()) << i;
      EXPECT_EQ(got[i].position().event(), seen[4 + i].position().event()) << i;
    }
  }
  // By name, resumed: only that name's events.
  {
    v1::WatchRequest req;
    req.set_name("wr/z");
    *req.mutable_after() = after;
    auto got = Events(ReadWatch(cluster_, follower_, req, 4, 10s));
    ASSERT_GE(got.size(), 4u);
    for (auto& e : got) EXPECT_EQ(e.name(), "wr/z");
  }
  // Another cluster's position.
  v1::WatchRequest req;
  req.set_prefix("wr/");
  *req.mutable_after() = after;
  req.mutable_after()->set_cluster_id(after.cluster_id() + "-not-this-one");
  grpc::Status st;
  auto got = ReadWatch(cluster_, follower_, req, 1, 10s, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::OUT_OF_RANGE) << Describe(st);
  EXPECT_TRUE(got.empty());
}

TEST_F(Api, StatusOnAFollowerShowsWhichPeersItsStreamsReach) {
  const int other = 3 - leader_ - follower_;
  auto reachable = [&](int asked, int member) {
    v1::StatusResponse s;
    if (!cluster_.Status(asked, &s).ok()) return false;
    for (const auto& m : s.members()) {
      if (m.id() == cluster_.id(member)) return m.reachable();
    }
    return false;
  };
  EXPECT_TRUE(testing::WaitFor(
      [&] { return reachable(follower_, leader_) && reachable(follower_, other); }, 15s))
      << cluster_.StatusSummary();
  cluster_.Kill(other);
  EXPECT_TRUE(testing::WaitFor([&] { return !reachable(follower_, other); }, 20s))
      << "a killed peer still shows as reachable from a follower";
  EXPECT_TRUE(reachable(follower_, leader_));
  EXPECT_TRUE(testing::WaitFor([&] { return !reachable(leader_, other); }, 20s))
      << "nor from the leader";
}

TEST_F(Api, StatusSaysForEachMemberWhetherTheAnsweringNodeRecordedItsIncarnation) {
  // Every member of a running cluster has talked to every other: each node has recorded every
  // peer's data dir incarnation (and its own). The start script reads this (lockd-start.sh).
  auto all_recorded = [&](int asked) {
    v1::StatusResponse s;
    if (!cluster_.Status(asked, &s).ok() || s.members_size() != cluster_.size()) return false;
    for (const auto& m : s.members()) {
      if (!m.incarnation_recorded()) return false;
    }
    return true;
  };
  for (int i = 0; i < cluster_.size(); ++i) {
    EXPECT_TRUE(testing::WaitFor([&] { return all_recorded(i); }, 15s)) << "node " << i << "\n"
                                                                        << cluster_.StatusSummary();
  }
}

// ---------------------------------------------------------------------------------------------
// ClusterService: forwarded like every other call
// ---------------------------------------------------------------------------------------------

TEST_F(Api, TransferLeadershipFromAnyNodeAnswersOnceTheNamedNodeLeads) {
  const int target = (leader_ + 2) % cluster_.size();  // neither the leader nor follower_
  // A transfer is one TimeoutNow: let every peer stream come up first, so it is not lost to a
  // connection still being made right after the cluster started (DEADLINE_EXCEEDED then).
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        for (int i = 0; i < cluster_.size(); ++i) {
          v1::StatusResponse s;
          if (!cluster_.Status(i, &s).ok()) return false;
          for (const auto& m : s.members()) {
            if (!m.reachable()) return false;
          }
        }
        return true;
      },
      15s))
      << cluster_.StatusSummary();
  v1::TransferLeadershipRequest req;
  req.set_to(cluster_.id(target));
  v1::TransferLeadershipResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  // Sent to a follower, which forwards it; the answer comes once the target leads.
  grpc::Status st = cluster_.cluster(follower_).TransferLeadership(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << Describe(st) << "\n" << cluster_.StatusSummary();
  EXPECT_EQ(resp.leader_id(), cluster_.id(target));
  v1::StatusResponse s;
  ASSERT_TRUE(cluster_.Status(target, &s).ok());
  EXPECT_EQ(s.leader_id(), cluster_.id(target)) << "answered before the target led";

  // 0: the most caught-up other voter takes over.
  grpc::ClientContext any;
  any.set_deadline(std::chrono::system_clock::now() + 20s);
  v1::TransferLeadershipRequest to_any;
  st = cluster_.cluster(leader_).TransferLeadership(&any, to_any, &resp);
  ASSERT_TRUE(st.ok()) << Describe(st);
  EXPECT_NE(resp.leader_id(), cluster_.id(target));
  EXPECT_NE(resp.leader_id(), 0u);

  // Not a member, or the leader itself: refused, leadership stays.
  const uint64_t leader_now = resp.leader_id();
  for (uint64_t bad : {uint64_t{99}, leader_now}) {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::TransferLeadershipRequest r;
    r.set_to(bad);
    st = cluster_.cluster(leader_).TransferLeadership(&c, r, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad << ": " << Describe(st);
  }
  ASSERT_TRUE(cluster_.Status(0, &s).ok());
  EXPECT_EQ(s.leader_id(), leader_now);
}

TEST_F(Api, ForceReleaseOnAFollowerReleasesTheHolderAndPromotesTheNextWaiter) {
  const uint64_t holder = client_.MustGrantLease(kLongTtl, "stuck");
  const uint64_t next = client_.MustGrantLease(kLongTtl, "next");
  v1::AcquireResponse a;
  ASSERT_TRUE(client_.Acquire("fr/x", holder, kEx, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());
  CallOptions o;
  o.deadline = 80s;  // outlasts the wait
  auto wait = StartAcquire(client_, "fr/x", next, kEx, 60'000, o);
  ASSERT_TRUE(WaitForWaiters(client_, "fr/x", 1));

  v1::ForceReleaseRequest req;
  *req.mutable_header() = client_.Begin();
  req.set_name("fr/x");
  req.set_reason("operator: stuck job");
  v1::ForceReleaseResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  const grpc::Status st = cluster_.cluster(follower_).ForceRelease(&ctx, req, &resp);
  client_.End(req.header().id().seq());
  ASSERT_TRUE(st.ok()) << Describe(st);
  ASSERT_EQ(resp.released_size(), 1);
  EXPECT_EQ(resp.released(0).lease_id(), holder);
  EXPECT_EQ(resp.released(0).token(), a.token());

  const AcquireResult w = wait.Get(20s);
  ASSERT_TRUE(w.info.status.ok()) << Describe(w.info.status);
  EXPECT_TRUE(w.resp.acquired());
  EXPECT_GT(w.resp.token(), a.token());
  v1::GetLeaseResponse g;
  ASSERT_TRUE(client_.GetLease(holder, &g).status.ok()) << "the lease itself lives on";
  EXPECT_TRUE(g.lease().held().empty());
}

// A renewal answers the tokens the lease holds, so a holder learns of a force-release at its next
// renewal (issue 14): unary on the leader and through a follower, and on KeepAlive.
TEST_F(Api, RenewalsAnswerTheTokensTheLeaseHoldsSoAForceReleaseIsSeen) {
  const uint64_t lease = client_.MustGrantLease(kLongTtl, "holds-two");
  v1::AcquireResponse x, y;
  ASSERT_TRUE(client_.Acquire("held/x", lease, kEx, 0, &x).status.ok());
  ASSERT_TRUE(client_.Acquire("held/y", lease, v1::SHARED, 0, &y).status.ok());
  ASSERT_TRUE(x.acquired() && y.acquired());
  auto tokens = [](const v1::RenewResponse& r) {
    return std::set<uint64_t>(r.held_tokens().begin(), r.held_tokens().end());
  };
  for (int node : {leader_, follower_}) {
    v1::RenewResponse r;
    ASSERT_TRUE(client_.Renew(lease, 1, &r, At(node)).status.ok());
    EXPECT_EQ(tokens(r), (std::set<uint64_t>{x.token(), y.token()})) << "node " << node;
  }

  v1::ForceReleaseRequest req;
  *req.mutable_header() = client_.Begin();
  req.set_name("held/x");
  v1::ForceReleaseResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  ASSERT_TRUE(cluster_.cluster(leader_).ForceRelease(&ctx, req, &resp).ok());
  client_.End(req.header().id().seq());

  v1::RenewResponse after;
  ASSERT_TRUE(client_.Renew(lease, 2, &after, At(follower_)).status.ok());
  EXPECT_EQ(tokens(after), std::set<uint64_t>{y.token()});
  grpc::ClientContext kctx;
  kctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto stream = cluster_.lock(leader_).KeepAlive(&kctx);
  v1::RenewRequest rr;
  rr.set_lease_id(lease);
  rr.set_seq(3);
  ASSERT_TRUE(stream->Write(rr));
  v1::RenewResponse ka;
  ASSERT_TRUE(stream->Read(&ka));
  EXPECT_EQ(ka.code(), 0) << ka.message();
  EXPECT_EQ(ka.seq(), 3u);
  EXPECT_EQ(tokens(ka), std::set<uint64_t>{y.token()});
  stream->WritesDone();
  kctx.TryCancel();
  stream->Finish();
}

// ---------------------------------------------------------------------------------------------
// The deferred commit index (issue 18, --commit-flush-us)
// ---------------------------------------------------------------------------------------------

// A leader does not send a follower the commit index alone the moment it advances, but it sends
// it within --commit-flush-us (2 ms) when no append carries it: at idle, each follower applies a
// write long before the next heartbeat. Heartbeats every 500 ms here, and six writes 100 ms
// apart: were the flush missing, each catch-up would wait for the next heartbeat (~375 ms after
// the first), so at most one would come in under 250 ms; with it, each takes a few ms, and one
// slow one (a stalled machine) is forgiven.
TEST(CommitFlush, FollowersApplyAnIdleWriteLongBeforeTheNextHeartbeat) {
  ClusterOptions o;
  o.tick_ms = 500;
  o.election_min_ms = 1500;
  Cluster cluster(o);
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  Client client(cluster);
  const uint64_t lease = client.MustGrantLease(kLongTtl);
  int quick = 0;
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE("write " + std::to_string(i));
    std::this_thread::sleep_for(100ms);  // idle: nothing in flight
    v1::AcquireResponse a;
    ASSERT_TRUE(client.Acquire("flush/" + std::to_string(i), lease, kEx, 0, &a).status.ok());
    v1::StatusResponse ls;
    ASSERT_TRUE(cluster.Status(leader, &ls).ok());
    const auto start = std::chrono::steady_clock::now();
    for (int node = 0; node < cluster.size(); ++node) {
      if (node == leader) continue;
      ASSERT_TRUE(testing::WaitFor(
          [&] {
            v1::StatusResponse s;
            return cluster.Status(node, &s).ok() && s.applied_index() >= ls.commit_index();
          },
          10s));
    }
    quick += std::chrono::steady_clock::now() - start < 250ms;
  }
  EXPECT_GE(quick, 5) << "the followers waited for heartbeats to learn the commit index";
}

}  // namespace
}  // namespace lockd::e2e
