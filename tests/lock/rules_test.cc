// Directed tests, part two: the queue order when SHARED and EXCLUSIVE waiters interleave, Cancel
// in every state, one-lock leases, why an Acquire was not acquired, events, retention, paging,
// restore, and damaged input. (Part one is state_machine_test.cc.)
#include <gtest/gtest.h>

#include <random>

#include "harness.h"
#include "lock/state_machine.h"

namespace lockd::lock {
namespace {

using testing::Harness;
constexpr Mode X = Mode::kExclusive;
constexpr Mode S = Mode::kShared;

std::vector<LeaseId> Holders(const Harness& h, const std::string& name) {
  std::vector<LeaseId> out;
  if (auto v = h.sm.GetLock(name)) {
    for (const auto& x : v->holders) out.push_back(x.lease);
  }
  return out;
}

TEST(Queue, InterleavedSharedAndExclusiveWaitersAreGrantedInRunsInCommitOrder) {
  Harness h;
  LeaseId s0 = h.Lease(), x1 = h.Lease(), s1 = h.Lease(), s2 = h.Lease(), x2 = h.Lease(),
          s3 = h.Lease(), s4 = h.Lease();
  auto first = h.Acquire("q", s0, S);
  for (auto [l, m] : std::vector<std::pair<LeaseId, Mode>>{
           {x1, X}, {s1, S}, {s2, S}, {x2, X}, {s3, S}, {s4, S}}) {
    ASSERT_TRUE(h.Acquire("q", l, m, 10'000).outcome.waiting);
  }
  // s0 leaves: x1 alone.
  auto r1 = h.Release("q", s0, first.outcome.token);
  EXPECT_EQ(Holders(h, "q"), std::vector<LeaseId>{x1});
  // x1 leaves: the run s1, s2 (stopping at x2), sharing s1's token as fence.
  auto r2 = h.Release("q", x1, r1.completions[0].outcome.token);
  ASSERT_EQ(r2.completions.size(), 2u);
  EXPECT_EQ(Holders(h, "q"), (std::vector<LeaseId>{s1, s2}));
  EXPECT_EQ(r2.completions[1].outcome.fence, r2.completions[0].outcome.token);
  EXPECT_GT(r2.completions[0].outcome.token, r1.completions[0].outcome.token);
  // s1 leaves: x2 still waits for s2.
  EXPECT_TRUE(h.Release("q", s1, r2.completions[0].outcome.token).completions.empty());
  // s2 leaves: x2, then (when it leaves) s3 and s4 together with a fresh fence.
  auto r3 = h.Release("q", s2, r2.completions[1].outcome.token);
  EXPECT_EQ(Holders(h, "q"), std::vector<LeaseId>{x2});
  auto r4 = h.Release("q", x2, r3.completions[0].outcome.token);
  ASSERT_EQ(r4.completions.size(), 2u);
  EXPECT_EQ(r4.completions[0].outcome.fence, r4.completions[0].outcome.token);
  EXPECT_GT(r4.completions[0].outcome.fence, r3.completions[0].outcome.token);
  EXPECT_EQ(Holders(h, "q"), (std::vector<LeaseId>{s3, s4}));
  EXPECT_TRUE(h.sm.GetLock("q")->waiters.empty());
}

TEST(Queue, AnExpiredExclusiveHeadLetsTheSharedRunBehindItJoin) {
  Harness h;
  LeaseId s0 = h.Lease(), x = h.Lease(), s1 = h.Lease(), x2 = h.Lease();
  h.Acquire("q", s0, S);
  h.Acquire("q", x, X, 10'000);
  h.Acquire("q", s1, S, 10'000);
  h.Acquire("q", x2, X, 10'000);
  auto r = h.Do(ExpireLease{x});
  ASSERT_EQ(r.completions.size(), 2u);
  EXPECT_EQ(r.completions[0].outcome.why_not, NotAcquired::kLeaseEnded);
  EXPECT_TRUE(r.completions[1].outcome.acquired);
  EXPECT_EQ(Holders(h, "q"), (std::vector<LeaseId>{s0, s1}));
  EXPECT_EQ(h.sm.GetLock("q")->waiters.size(), 1u);
}

TEST(Acquire, EveryNotAcquiredAnswerSaysWhy) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease(), c = h.Lease();
  h.Acquire("n", a);
  EXPECT_EQ(h.Acquire("n", b).outcome.why_not, NotAcquired::kBusy);
  RequestHeader bh, ch;
  h.Acquire("n", b, X, 100, &bh);
  h.Acquire("n", c, X, 100, &ch);
  auto t = h.Do(WaitTimeout{"n", bh.id});
  ASSERT_EQ(t.completions.size(), 1u);
  EXPECT_EQ(t.completions[0].outcome.why_not, NotAcquired::kWaitTimedOut);
  EXPECT_EQ(t.completions[0].outcome.lease, b);
  auto x = h.Do(Cancel{h.Header(), "n", c, ch.id});
  EXPECT_EQ(x.completions[0].outcome.why_not, NotAcquired::kCancelled);
  EXPECT_FALSE(x.completions[0].outcome.acquired);
}

TEST(Cancel, ByAnotherLeaseIsFailedPreconditionAndChangesNothing) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease(), c = h.Lease();
  h.Acquire("n", a);
  RequestHeader bh;
  h.Acquire("n", b, X, 5000, &bh);
  auto r = h.Do(Cancel{h.Header(), "n", c, bh.id});
  EXPECT_EQ(r.outcome.code, StatusCode::kFailedPrecondition);
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(h.sm.GetLock("n")->waiters.size(), 1u);
}

TEST(Cancel, TouchesOnlyTheNamedAcquire) {
  Harness h;
  LeaseId a = h.Lease();
  RequestHeader first;
  h.Acquire("one", a, X, 0, &first);
  h.Acquire("two", a);
  auto r = h.Do(Cancel{h.Header(), "one", a, first.id});
  EXPECT_EQ(r.outcome.effect, CancelEffect::kReleasedGrant);
  EXPECT_FALSE(h.sm.GetLock("one"));
  EXPECT_TRUE(h.sm.GetLock("two")) << "the lease's other hold stays";
  EXPECT_TRUE(h.sm.GetLease(a)) << "and so does the lease";
}

TEST(Cancel, InAdvanceTwiceSaysSoAndTheIdCannotCarryAnotherCall) {
  Harness h;
  LeaseId a = h.Lease();
  const RequestHeader future = h.Header();
  EXPECT_EQ(h.Do(Cancel{h.Header(), "n", a, future.id}).outcome.effect,
            CancelEffect::kCancelledInAdvance);
  EXPECT_EQ(h.Do(Cancel{h.Header(), "n", a, future.id}).outcome.effect,
            CancelEffect::kCancelledInAdvance);
  auto other = h.Do(Release{future, "n", a, FencingToken(1)});
  EXPECT_EQ(other.outcome.code, StatusCode::kInvalidArgument);
  auto late = h.Do(lock::Acquire{future, "n", a, S, 5000, 0, ""});
  EXPECT_TRUE(late.outcome.ok());
  EXPECT_EQ(late.outcome.why_not, NotAcquired::kCancelledInAdvance);
  EXPECT_TRUE(late.events.empty() && late.waits_started.empty());
}

TEST(Cancel, OfAnAcquireBelowTheWatermarkOrAlreadyAnsweredDoesNothing) {
  Harness h;
  LeaseId a = h.Lease();
  const ClientId cl{9, 9};
  h.Do(GrantLease{RequestHeader{{cl, 10}, 1, 10}, 5000, ""});
  auto r = h.Do(Cancel{h.Header(), "n", a, RequestId{cl, 4}});
  EXPECT_EQ(r.outcome.effect, CancelEffect::kNothingToCancel)
      << "seq 4 is below the watermark: it can never arrive, so nothing is recorded";
  EXPECT_FALSE(h.sm.exactly_once().CancelledInAdvance(RequestId{cl, 4}));
}

TEST(OneLockLease, AWaitThatEndsWithoutAGrantTakesItsLeaseAlong) {
  Harness h;
  LeaseId a = h.Lease();
  h.Acquire("n", a);
  const RequestHeader wh = h.Header();
  auto w = h.Do(lock::Acquire{wh, "n", LeaseId(), X, 5000, 3000, "redis"});
  ASSERT_TRUE(w.outcome.waiting);
  const LeaseId own = w.outcome.lease;
  ASSERT_FALSE(own.zero());
  // Cancelled by the caller, who never learned the lease id: lease zero names it.
  auto c = h.Do(Cancel{h.Header(), "n", LeaseId(), wh.id});
  EXPECT_EQ(c.outcome.effect, CancelEffect::kWithdrewWait);
  EXPECT_EQ(c.leases_ended, std::vector<LeaseId>{own});
  EXPECT_TRUE(c.completions[0].outcome.lease.zero()) << "as if the try-lock had failed";
  EXPECT_FALSE(h.sm.GetLease(own));
}

TEST(OneLockLease, AHandoffAnswersWithTheLeaseAndItsTtl) {
  Harness h;
  LeaseId a = h.Lease();
  auto held = h.Acquire("n", a);
  const RequestHeader wh = h.Header();
  auto w = h.Do(lock::Acquire{wh, "n", LeaseId(), S, 5000, 3000, "redis"});
  auto rel = h.Release("n", a, held.outcome.token);
  ASSERT_EQ(rel.completions.size(), 1u);
  EXPECT_EQ(rel.completions[0].outcome.lease, w.outcome.lease);
  EXPECT_EQ(rel.completions[0].outcome.ttl_ms, 3000u);
  // Cancelling the grant releases it and ends the lease it made.
  auto c = h.Do(Cancel{h.Header(), "n", LeaseId(), wh.id});
  EXPECT_EQ(c.outcome.effect, CancelEffect::kReleasedGrant);
  EXPECT_EQ(c.leases_ended, std::vector<LeaseId>{w.outcome.lease});
  EXPECT_EQ(h.sm.lock_count(), 0u);
}

TEST(OneLockLease, ALabelOrTtlWithALeaseIsInvalidArgument) {
  Harness h;
  LeaseId a = h.Lease();
  EXPECT_EQ(h.Do(lock::Acquire{h.Header(), "n", a, X, 0, 5000, ""}).outcome.code,
            StatusCode::kInvalidArgument);
  EXPECT_EQ(h.Do(lock::Acquire{h.Header(), "n", a, X, 0, 0, "x"}).outcome.code,
            StatusCode::kInvalidArgument);
}

TEST(Events, CarryTheirEntryIndexNumberAndTheAcquireThatMadeThem) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  RequestHeader ah, bh;
  auto got = h.Acquire("n", a, X, 0, &ah);
  auto w = h.Acquire("n", b, X, 5000, &bh);
  ASSERT_EQ(w.events.size(), 1u);
  EXPECT_EQ(w.events[0].type, Event::Type::kWaiting);
  EXPECT_EQ(w.events[0].index, LogIndex(h.index));
  EXPECT_EQ(w.events[0].request, bh.id);
  auto rel = h.Release("n", a, got.outcome.token);
  ASSERT_EQ(rel.events.size(), 2u);
  for (const auto& e : rel.events) EXPECT_EQ(e.index, LogIndex(h.index));
  EXPECT_EQ(rel.events[0].request, ah.id);
  EXPECT_EQ(rel.events[1].request, bh.id);
  EXPECT_EQ(rel.events[1].number, 2u);
}

TEST(ExactlyOnce, AClientWithoutALeaseIsForgottenWholeAfterRetention) {
  Harness h;
  const ClientId cl{3, 3};
  auto g = h.Do(GrantLease{RequestHeader{{cl, 1}, 1, 1}, 5000, ""});
  h.Do(RevokeLease{RequestHeader{{cl, 2}, 1, 1}, g.outcome.lease});  // seq 2 still pending
  const LogIndex quiet(h.index);
  h.Do(RetireOutcomes{quiet.prev()});
  EXPECT_EQ(h.sm.exactly_once().Clients().back().id, cl) << "active after that index: kept";
  h.Do(RetireOutcomes{quiet});
  for (const auto& c : h.sm.exactly_once().Clients()) EXPECT_NE(c.id, cl);
}

TEST(ExactlyOnce, AClientWithALeaseKeepsItsWatermark) {
  Harness h;
  const ClientId cl{4, 4};
  h.Do(GrantLease{RequestHeader{{cl, 1}, 1, 1}, 5000, ""});
  h.Do(GrantLease{RequestHeader{{cl, 5}, 1, 5}, 5000, ""});
  h.Do(RetireOutcomes{LogIndex(h.index)});
  auto late = h.Do(GrantLease{RequestHeader{{cl, 2}, 1, 2}, 5000, ""});
  EXPECT_EQ(late.outcome.code, StatusCode::kFailedPrecondition);
  EXPECT_EQ(h.sm.lease_count(), 2u) << "the late duplicate granted nothing";
}

TEST(Inspection, PagesTileTheListingInNameAndIdOrder) {
  Harness h;
  LeaseId a = h.Lease();
  for (const char* n : {"b/2", "a/1", "b/1", "c", "b/3"}) h.Acquire(n, a);
  for (int i = 0; i < 4; ++i) h.Lease();
  auto p1 = h.sm.ListLocks("b/", "", 2);
  ASSERT_EQ(p1.items.size(), 2u);
  EXPECT_EQ(p1.items[0].name, "b/1");
  EXPECT_EQ(p1.next, "b/2");
  auto p2 = h.sm.ListLocks("b/", p1.next, 2);
  ASSERT_EQ(p2.items.size(), 1u);
  EXPECT_EQ(p2.items[0].name, "b/3");
  EXPECT_TRUE(p2.next.empty());
  EXPECT_EQ(h.sm.ListLocks("", "", 0).items.size(), 5u) << "limit 0 is the default page";
  auto l1 = h.sm.ListLeases(LeaseId(), 3);
  ASSERT_EQ(l1.items.size(), 3u);
  auto l2 = h.sm.ListLeases(l1.items.back().id, 3);
  ASSERT_EQ(l2.items.size(), 2u);
  EXPECT_LT(l1.items.back().id, l2.items.front().id);
  EXPECT_EQ(h.sm.GetLease(a)->held.size(), 5u);
}

TEST(Limits, WaitersPerLockAndLeasesPerLabel) {
  Limits l;
  l.max_waiters_per_lock = 1;
  l.max_leases_per_label = 3;
  Harness h(l);
  LeaseId a = h.Lease(), b = h.Lease(), c = h.Lease();
  h.Acquire("n", a);
  EXPECT_TRUE(h.Acquire("n", b, X, 100).outcome.waiting);
  auto full = h.Acquire("n", c, X, 100);
  EXPECT_EQ(full.outcome.code, StatusCode::kResourceExhausted);
  EXPECT_EQ(h.Acquire("n", c).outcome.why_not, NotAcquired::kBusy) << "a try-lock still answers";
  EXPECT_EQ(h.Do(GrantLease{h.Header(), 5000, "test"}).outcome.code,
            StatusCode::kResourceExhausted);
  EXPECT_TRUE(h.Do(GrantLease{h.Header(), 5000, "other"}).outcome.ok());
}

TEST(Restore, AsANewClusterRaisesTheLeaseIdCounterAndRefusesOverflow) {
  Harness h;
  h.Lease();
  const std::string snap = h.sm.Snapshot();
  auto fresh = LockStateMachine::RestoreAsNewCluster(snap, {}, 1000, 0);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->lease_counter().value(), 1 + (uint64_t{1} << 32));
  EXPECT_EQ(fresh->wall_seconds(), 1000);
  // A new lease in the new cluster has an id no old lease had.
  Harness h2;
  h2.sm = std::move(fresh).value();
  h2.index = h2.sm.applied().value();
  EXPECT_EQ(h2.Lease().value(), 2 + (uint64_t{1} << 32));
  auto far = LockStateMachine::RestoreAsNewCluster(snap, {}, int64_t{1} << 40, 0);
  EXPECT_EQ(far.status().code(), StatusCode::kOutOfRange);
}

TEST(Restore, ARestoredStateContinuesExactlyLikeTheOriginal) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  auto held = h.Acquire("n", a, S);
  RequestHeader bh;
  h.Acquire("n", b, X, 5000, &bh);
  auto back = LockStateMachine::Restore(h.sm.Snapshot(), {});
  ASSERT_TRUE(back.ok());
  const Command next = Release{h.Header(), "n", a, held.outcome.token};
  auto r1 = h.sm.ApplyCommand(LogIndex(h.index + 1), next);
  auto r2 = back->ApplyCommand(LogIndex(h.index + 1), next);
  EXPECT_EQ(r1.completions, r2.completions);
  EXPECT_EQ(r1.events, r2.events);
  EXPECT_TRUE(h.sm == *back);
}

TEST(Restore, DamagedSnapshotsAndEntriesAreErrorsNeverCrashes) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  h.Acquire("n", a, S);
  h.Acquire("n", b, X, 5000);
  h.Do(Cancel{h.Header(), "m", a, RequestId{{1, 1}, 999}});
  const std::string snap = h.sm.Snapshot();
  const std::string entry = Encode(lock::Acquire{h.Header(), "n", a, X, 5, 0, ""}, 7);
  std::mt19937_64 rng(42);
  int refused = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string s = i % 2 ? snap : entry;
    for (int k = 0; k < 1 + i % 4; ++k) s[rng() % s.size()] = static_cast<char>(rng());
    if (i % 2) {
      auto r = LockStateMachine::Restore(s, {});
      if (r.ok()) {
        EXPECT_TRUE(r->CheckConsistency().ok());  // whatever it accepts is consistent
      } else {
        ++refused;
      }
    } else if (auto d = Decode(s); !d.ok()) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 500);
}

TEST(Restore, AStateNoApplyCouldReachIsDataLoss) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  h.Acquire("n", a);
  h.Acquire("m", b);
  std::string snap = h.sm.Snapshot();
  // Rename "m" to "n": two EXCLUSIVE holders of one name would appear as a duplicate lock.
  const size_t at = snap.rfind("\x01m");
  ASSERT_NE(at, std::string::npos);
  snap[at + 1] = 'n';
  auto r = LockStateMachine::Restore(snap, {});
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace lockd::lock
