// Cancel finds its Acquire by request id alone (issue 13, defect 4): an Acquire made without a
// lease id (SET NX PX: ttl_ms, a lease of its own) can be cancelled by a caller who never learned
// that lease, in every state — waiting, granted, and not yet applied. A lease id, when given,
// must still be the Acquire's.
#include <gtest/gtest.h>

#include "harness.h"

namespace lockd::lock {
namespace {

using testing::Harness;
constexpr Mode X = Mode::kExclusive;

/// A one-lock Acquire: no lease id, a TTL.
lock::Acquire OneLock(const RequestHeader& h, const std::string& name, uint64_t wait_ms) {
  return lock::Acquire{h, name, LeaseId(), X, wait_ms, 10'000, "set-nx-px"};
}

TEST(CancelById, WithdrawsAWaitOfAnAcquireWithoutALeaseId) {
  Harness h;
  LeaseId holder = h.Lease();
  ASSERT_TRUE(h.Acquire("n", holder).outcome.acquired);
  const RequestHeader ah = h.Header();
  auto waiting = h.Do(OneLock(ah, "n", 5000));
  ASSERT_TRUE(waiting.outcome.waiting);
  auto c = h.Do(Cancel{h.Header(), "n", LeaseId(), ah.id});
  EXPECT_EQ(c.outcome.effect, CancelEffect::kWithdrewWait);
  ASSERT_EQ(c.completions.size(), 1u);
  EXPECT_EQ(c.completions[0].acquire, ah.id);
  EXPECT_FALSE(c.completions[0].outcome.acquired);
  EXPECT_TRUE(h.sm.GetLock("n")->waiters.empty());
  auto retry = h.Do(OneLock(ah, "n", 5000));
  EXPECT_EQ(retry.outcome, c.completions[0].outcome) << "a retry gets the final answer";
}

TEST(CancelById, ReleasesAGrantOfAnAcquireWithoutALeaseId) {
  Harness h;
  const RequestHeader ah = h.Header();
  auto got = h.Do(OneLock(ah, "n", 0));
  ASSERT_TRUE(got.outcome.acquired);
  auto c = h.Do(Cancel{h.Header(), "n", LeaseId(), ah.id});
  EXPECT_EQ(c.outcome.effect, CancelEffect::kReleasedGrant);
  EXPECT_FALSE(h.sm.GetLock("n")) << "released";
  auto again = h.Do(Cancel{h.Header(), "n", LeaseId(), ah.id});
  EXPECT_EQ(again.outcome.effect, CancelEffect::kNothingToCancel);
}

TEST(CancelById, CancelsInAdvanceAnAcquireWithoutALeaseId) {
  Harness h;
  const RequestHeader ah = h.Header();  // not applied yet
  auto c = h.Do(Cancel{h.Header(), "n", LeaseId(), ah.id});
  EXPECT_EQ(c.outcome.effect, CancelEffect::kCancelledInAdvance);
  const LeaseId leases_before = h.sm.lease_counter();
  auto late = h.Do(OneLock(ah, "n", 0));
  EXPECT_TRUE(late.outcome.ok());
  EXPECT_FALSE(late.outcome.acquired);
  EXPECT_FALSE(h.sm.GetLock("n")) << "the cancelled Acquire changed nothing";
  EXPECT_EQ(h.sm.lease_counter(), leases_before) << "not even a lease";
}

TEST(CancelById, AGivenLeaseIdMustStillMatchAndAWrongOneChangesNothing) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease(), other = h.Lease();
  RequestHeader held, queued;
  ASSERT_TRUE(h.Acquire("n", a, X, 0, &held).outcome.acquired);
  ASSERT_TRUE(h.Acquire("n", b, X, 5000, &queued).outcome.waiting);
  for (const RequestId& target : {held.id, queued.id}) {
    auto wrong = h.Do(Cancel{h.Header(), "n", other, target});
    EXPECT_EQ(wrong.outcome.code, StatusCode::kFailedPrecondition);
    EXPECT_NE(wrong.outcome.message.find("give its lease id or none"), std::string::npos)
        << wrong.outcome.message;
    EXPECT_TRUE(wrong.events.empty());
  }
  EXPECT_EQ(h.sm.GetLock("n")->holders.size(), 1u);
  EXPECT_EQ(h.sm.GetLock("n")->waiters.size(), 1u);
  EXPECT_EQ(h.Do(Cancel{h.Header(), "n", b, queued.id}).outcome.effect,
            CancelEffect::kWithdrewWait);
  EXPECT_EQ(h.Do(Cancel{h.Header(), "n", a, held.id}).outcome.effect, CancelEffect::kReleasedGrant);
  // In advance, a given lease id must name a live lease; without one, none is needed.
  const RequestHeader future = h.Header();
  EXPECT_EQ(h.Do(Cancel{h.Header(), "n", LeaseId(999), future.id}).outcome.code,
            StatusCode::kNotFound);
  EXPECT_EQ(h.Do(Cancel{h.Header(), "n", LeaseId(), future.id}).outcome.effect,
            CancelEffect::kCancelledInAdvance);
}

// Found by review: a Cancel in advance from another client, naming a far sequence number of
// its victim, was recorded in the victim's table; once retired for age it raised the victim's
// forgotten mark past every later request, so each one was refused, its lock held forever.
TEST(CancelById, OnlyTheAcquiresOwnClientMayCancelItInAdvance) {
  Harness h;
  const ClientId victim{5, 5}, other{6, 6};
  const RequestId far{victim, uint64_t{1} << 62};
  auto c = h.Do(Cancel{h.Header(other), "zzz", LeaseId(), far});
  EXPECT_EQ(c.outcome.code, StatusCode::kFailedPrecondition) << c.outcome.message;
  EXPECT_FALSE(h.sm.exactly_once().Known(far)) << "nothing recorded for the victim";
  // The victim's own requests still run after a retirement of everything.
  const LeaseId lease = h.Do(GrantLease{h.Header(victim), 10'000, "v"}).outcome.lease;
  h.Do(RetireOutcomes{LogIndex(h.index), LogIndex(h.index), LogIndex(), 0});
  auto got = h.Do(lock::Acquire{h.Header(victim), "n", lease, X, 0, 0, ""});
  EXPECT_TRUE(got.outcome.acquired) << got.outcome.message;
}

TEST(CancelById, ARetiredCancelInAdvanceDoesNotRefuseTheClientsLaterRequests) {
  Harness h;
  const ClientId me{5, 5};
  const RequestHeader cancel = h.Header(me);  // seq 1
  const RequestId later{me, 1000};            // an Acquire this client gave up on
  ASSERT_EQ(h.Do(Cancel{cancel, "n", LeaseId(), later}).outcome.effect,
            CancelEffect::kCancelledInAdvance);
  h.Do(RetireOutcomes{LogIndex(h.index), LogIndex(h.index), LogIndex(), 0});
  // seq 2 is below 1000: it must run, not be taken for a retired request.
  auto r = h.Do(GrantLease{h.Header(me), 10'000, "me"});
  EXPECT_TRUE(r.outcome.ok()) << r.outcome.message;
}

TEST(Codec, AFormatOneEntryIsRefusedAtApplyNotReinterpreted) {
  LockStateMachine sm;
  // Version 1, wall second 7, kind 9 (RetireOutcomes), recorded_at_or_before 50.
  const std::string v1 = {1, 7, 9, 50};
  auto r = sm.Apply(LogIndex(1), v1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("format 1"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace lockd::lock
