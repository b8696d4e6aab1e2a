// Directed tests: one per rule of the design brief that lives in the replicated state.
#include "lock/state_machine.h"

#include <gtest/gtest.h>

#include "base/codec.h"
#include "harness.h"
#include "lock/validate.h"

namespace lockd::lock {
namespace {

using testing::Harness;
constexpr Mode X = Mode::kExclusive;
constexpr Mode S = Mode::kShared;

TEST(Acquire, ExclusiveGrantsOneHolderAndTryLockAnswersNotAcquired) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  auto r1 = h.Acquire("seat/1", a);
  ASSERT_TRUE(r1.outcome.acquired);
  EXPECT_EQ(r1.outcome.fence, r1.outcome.token);
  auto r2 = h.Acquire("seat/1", b);
  EXPECT_TRUE(r2.outcome.ok()) << "not getting the lock is a normal answer";
  EXPECT_FALSE(r2.outcome.acquired);
  ASSERT_EQ(r2.outcome.holders.size(), 1u);
  EXPECT_EQ(r2.outcome.holders[0].lease, a);
  EXPECT_TRUE(r2.events.empty()) << "a failed try-lock changes nothing";
}

TEST(Acquire, TokensIncreaseAcrossLocksAndGrants) {
  Harness h;
  LeaseId a = h.Lease();
  FencingToken last;
  for (int i = 0; i < 5; ++i) {
    auto r = h.Acquire("n" + std::to_string(i), a);
    EXPECT_GT(r.outcome.token, last);
    last = r.outcome.token;
  }
  EXPECT_EQ(h.sm.token_counter(), last);
}

TEST(Acquire, SharedHoldersShareTheFenceOfTheFirstGrantOfTheirRun) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease(), c = h.Lease(), d = h.Lease();
  auto ra = h.Acquire("db", a, S);
  auto rb = h.Acquire("db", b, S);
  ASSERT_TRUE(ra.outcome.acquired && rb.outcome.acquired);
  EXPECT_NE(ra.outcome.token, rb.outcome.token);
  EXPECT_EQ(rb.outcome.fence, ra.outcome.token);
  h.Release("db", a, ra.outcome.token);  // the first of the run leaves; the run goes on
  auto rc = h.Acquire("db", c, S);
  EXPECT_EQ(rc.outcome.fence, ra.outcome.token);
  h.Release("db", b, rb.outcome.token);
  h.Release("db", c, rc.outcome.token);
  auto rd = h.Acquire("db", d, S);  // a new run
  EXPECT_EQ(rd.outcome.fence, rd.outcome.token);
}

TEST(Acquire, ALeaseHoldsOrWaitsForANameAtMostOnceAndCannotUpgrade) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  ASSERT_TRUE(h.Acquire("n", a, S).outcome.acquired);
  auto again = h.Acquire("n", a, X);
  EXPECT_EQ(again.outcome.code, StatusCode::kFailedPrecondition);
  h.Acquire("m", b);
  ASSERT_TRUE(h.Acquire("m", a, X, 1000).outcome.waiting);
  EXPECT_EQ(h.Acquire("m", a, X, 1000).outcome.code, StatusCode::kFailedPrecondition);
}

TEST(Queue, ReleaseHandsOffToTheNextWaiterInTheSameApplyWithALargerToken) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  auto ra = h.Acquire("n", a);
  RequestHeader wait_header;
  auto rb = h.Acquire("n", b, X, 5000, &wait_header);
  ASSERT_TRUE(rb.outcome.waiting);
  ASSERT_EQ(rb.waits_started.size(), 1u);
  auto rel = h.Release("n", a, ra.outcome.token);
  ASSERT_TRUE(rel.outcome.ok());
  ASSERT_EQ(rel.completions.size(), 1u);
  EXPECT_EQ(rel.completions[0].acquire, wait_header.id);
  EXPECT_TRUE(rel.completions[0].outcome.acquired);
  EXPECT_GT(rel.completions[0].outcome.token, ra.outcome.token);
  ASSERT_EQ(rel.events.size(), 2u) << "the release and the handoff share one entry";
  EXPECT_EQ(rel.events[0].type, Event::Type::kReleased);
  EXPECT_EQ(rel.events[1].type, Event::Type::kAcquired);
  EXPECT_EQ(rel.events[1].number, 2u);
}

TEST(Queue, AWaitingExclusiveIsNotOvertakenByLaterShared) {
  Harness h;
  LeaseId r1 = h.Lease(), w = h.Lease(), r2 = h.Lease();
  auto first = h.Acquire("n", r1, S);
  ASSERT_TRUE(h.Acquire("n", w, X, 5000).outcome.waiting);
  auto late = h.Acquire("n", r2, S, 5000);
  EXPECT_FALSE(late.outcome.acquired) << "SHARED would be compatible, but an EXCLUSIVE waits";
  EXPECT_TRUE(late.outcome.waiting);
  auto rel = h.Release("n", r1, first.outcome.token);
  ASSERT_EQ(rel.completions.size(), 1u);
  EXPECT_EQ(rel.completions[0].outcome.mode, X);
  auto view = h.sm.GetLock("n");
  ASSERT_TRUE(view);
  EXPECT_EQ(view->holders[0].lease, w);
  EXPECT_EQ(view->waiters[0].lease, r2);
}

TEST(Queue, ConsecutiveSharedWaitersAreGrantedTogetherUpToTheNextExclusive) {
  Harness h;
  LeaseId x = h.Lease(), s1 = h.Lease(), s2 = h.Lease(), x2 = h.Lease(), s3 = h.Lease();
  auto held = h.Acquire("n", x);
  h.Acquire("n", s1, S, 5000);
  h.Acquire("n", s2, S, 5000);
  h.Acquire("n", x2, X, 5000);
  h.Acquire("n", s3, S, 5000);
  auto rel = h.Release("n", x, held.outcome.token);
  ASSERT_EQ(rel.completions.size(), 2u);
  EXPECT_EQ(rel.completions[1].outcome.fence, rel.completions[0].outcome.token);
  auto view = h.sm.GetLock("n");
  ASSERT_EQ(view->waiters.size(), 2u);
  EXPECT_EQ(view->waiters[0].lease, x2);
}

TEST(Queue, CancellingAnExclusiveHeadLetsCompatibleSharedWaitersIn) {
  Harness h;
  LeaseId s0 = h.Lease(), x = h.Lease(), s1 = h.Lease();
  h.Acquire("n", s0, S);
  RequestHeader xh;
  h.Acquire("n", x, X, 5000, &xh);
  h.Acquire("n", s1, S, 5000);
  auto r = h.Do(Cancel{h.Header(), "n", x, xh.id});
  EXPECT_EQ(r.outcome.effect, CancelEffect::kWithdrewWait);
  ASSERT_EQ(r.completions.size(), 2u);
  EXPECT_FALSE(r.completions[0].outcome.acquired);  // the cancelled wait's final answer
  EXPECT_TRUE(r.completions[1].outcome.acquired);   // s1 joins the shared run
}

TEST(Cancel, ReleasesAGrantStillHeldAndIsANoOpAfterwards) {
  Harness h;
  LeaseId a = h.Lease();
  RequestHeader ah;
  auto got = h.Acquire("n", a, X, 0, &ah);
  ASSERT_TRUE(got.outcome.acquired);
  auto c1 = h.Do(Cancel{h.Header(), "n", a, ah.id});
  EXPECT_EQ(c1.outcome.effect, CancelEffect::kReleasedGrant);
  EXPECT_FALSE(h.sm.GetLock("n"));
  auto c2 = h.Do(Cancel{h.Header(), "n", a, ah.id});
  EXPECT_EQ(c2.outcome.effect, CancelEffect::kNothingToCancel);
}

TEST(Cancel, BeforeTheAcquireArrivesMakesItANoOp) {
  Harness h;
  LeaseId a = h.Lease();
  const RequestHeader future = h.Header();  // the Acquire's id, not yet applied
  auto c = h.Do(Cancel{h.Header(), "n", a, future.id});
  EXPECT_EQ(c.outcome.effect, CancelEffect::kCancelledInAdvance);
  auto late = h.Do(lock::Acquire{future, "n", a, X, 0, 0, ""});
  EXPECT_TRUE(late.outcome.ok());
  EXPECT_FALSE(late.outcome.acquired);
  EXPECT_FALSE(h.sm.GetLock("n")) << "the cancelled Acquire changed nothing";
  auto retry = h.Do(lock::Acquire{future, "n", a, X, 0, 0, ""});
  EXPECT_EQ(retry.outcome, late.outcome) << "and its retries answer the same";
}

TEST(Release, OnlyTheHoldingLeaseWithItsTokenMayRelease) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  auto got = h.Acquire("n", a);
  EXPECT_EQ(h.Release("n", b, got.outcome.token).outcome.code, StatusCode::kFailedPrecondition);
  EXPECT_EQ(h.Release("n", a, got.outcome.token.next()).outcome.code,
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(h.Release("n", LeaseId(999), got.outcome.token).outcome.code, StatusCode::kNotFound);
  EXPECT_TRUE(h.sm.GetLock("n")) << "refused releases change nothing";
  EXPECT_TRUE(h.Release("n", a, got.outcome.token).outcome.ok());
}

TEST(Expiry, AnExpiredLeaseReleasesItsHoldsDropsItsWaitsAndPromotesTheNext) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease(), c = h.Lease();
  auto held = h.Acquire("n", a);
  h.Acquire("m", c);
  ASSERT_TRUE(h.Acquire("m", a, X, 5000).outcome.waiting);
  ASSERT_TRUE(h.Acquire("n", b, X, 5000).outcome.waiting);
  auto r = h.Do(ExpireLease{a});
  EXPECT_EQ(r.outcome.released, std::vector<std::string>{"n"});
  EXPECT_EQ(r.outcome.dropped, std::vector<std::string>{"m"});
  ASSERT_EQ(r.completions.size(), 2u);
  EXPECT_TRUE(r.completions[0].outcome.acquired);  // b gets n with a larger token
  EXPECT_GT(r.completions[0].outcome.token, held.outcome.token);
  EXPECT_FALSE(r.completions[1].outcome.acquired);  // a's wait on m ends
  EXPECT_EQ(r.events[0].type, Event::Type::kExpired);
  EXPECT_EQ(r.leases_ended, std::vector<LeaseId>{a});
  EXPECT_FALSE(h.sm.GetLease(a));
  EXPECT_EQ(h.Acquire("x", a).outcome.code, StatusCode::kNotFound);
}

TEST(WaitTimeout, EndsAWaitButAGrantThatWonTheRaceStands) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  auto held = h.Acquire("n", a);
  RequestHeader bh;
  h.Acquire("n", b, X, 100, &bh);
  h.Release("n", a, held.outcome.token);  // b is granted first
  auto t = h.Do(WaitTimeout{"n", bh.id});
  EXPECT_TRUE(t.completions.empty());
  EXPECT_EQ(h.sm.GetLock("n")->holders[0].lease, b);
  LeaseId c = h.Lease();
  RequestHeader ch;
  h.Acquire("n", c, X, 100, &ch);
  auto t2 = h.Do(WaitTimeout{"n", ch.id});
  ASSERT_EQ(t2.completions.size(), 1u);
  EXPECT_FALSE(t2.completions[0].outcome.acquired);
}

TEST(AcquireWithTtl, GrantsALeaseForOneLockAndLeavesNoLeaseWhenNotAcquired) {
  Harness h;
  auto r = h.Do(lock::Acquire{h.Header(), "n", LeaseId(), X, 0, 5000, "redis-habit"});
  ASSERT_TRUE(r.outcome.acquired);
  EXPECT_FALSE(r.outcome.lease.zero());
  EXPECT_EQ(r.outcome.ttl_ms, 5000u);
  const size_t leases = h.sm.lease_count();
  auto miss = h.Do(lock::Acquire{h.Header(), "n", LeaseId(), X, 0, 5000, "redis-habit"});
  EXPECT_FALSE(miss.outcome.acquired);
  EXPECT_EQ(h.sm.lease_count(), leases) << "a failed try-lock grants no lease";
  EXPECT_EQ(h.Do(lock::Acquire{h.Header(), "n", LeaseId(), X, 0, 0, ""}).outcome.code,
            StatusCode::kInvalidArgument);
}

TEST(ExactlyOnce, ARetryGetsTheFirstOutcomeAndRunsOnce) {
  Harness h;
  LeaseId a = h.Lease();
  const RequestHeader hd = h.Header();
  auto first = h.Do(lock::Acquire{hd, "n", a, X, 0, 0, ""});
  RequestHeader retry = hd;
  retry.attempt = 2;
  auto second = h.Do(lock::Acquire{retry, "n", a, X, 0, 0, ""});
  EXPECT_EQ(second.outcome, first.outcome);
  EXPECT_TRUE(second.events.empty());
  EXPECT_EQ(h.sm.token_counter(), first.outcome.token);
}

TEST(ExactlyOnce, AReusedIdWithOtherArgumentsIsInvalidArgument) {
  Harness h;
  LeaseId a = h.Lease();
  const RequestHeader hd = h.Header();
  h.Do(lock::Acquire{hd, "n", a, X, 0, 0, ""});
  auto other = h.Do(lock::Acquire{hd, "m", a, X, 0, 0, ""});
  EXPECT_EQ(other.outcome.code, StatusCode::kInvalidArgument);
  EXPECT_FALSE(h.sm.GetLock("m"));
}

TEST(ExactlyOnce, ACommandBelowTheWatermarkIsRefusedWithoutRunning) {
  Harness h;
  LeaseId a = h.Lease();
  const ClientId cl{7, 7};
  RequestHeader late{{cl, 3}, 1, 3};
  RequestHeader newer{{cl, 9}, 1, 9};  // the client says nothing below 9 is pending
  h.Do(GrantLease{newer, 5000, ""});
  auto r = h.Do(lock::Acquire{late, "n", a, X, 0, 0, ""});
  EXPECT_EQ(r.outcome.code, StatusCode::kFailedPrecondition);
  EXPECT_FALSE(h.sm.GetLock("n"));
}

TEST(ExactlyOnce, ARetryOfAPendingWaitRejoinsItAndLaterRetriesSeeTheGrant) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  auto held = h.Acquire("n", a);
  const RequestHeader wh = h.Header();
  auto w = h.Do(lock::Acquire{wh, "n", b, X, 5000, 0, ""});
  auto again = h.Do(lock::Acquire{wh, "n", b, X, 5000, 0, ""});
  EXPECT_TRUE(again.outcome.waiting);
  EXPECT_EQ(h.sm.GetLock("n")->waiters.size(), 1u) << "no second wait";
  auto rel = h.Release("n", a, held.outcome.token);
  auto after = h.Do(lock::Acquire{wh, "n", b, X, 5000, 0, ""});
  EXPECT_EQ(after.outcome, rel.completions[0].outcome);
}

TEST(ExactlyOnce, OutcomesAreRetiredOnlyByTheLogBelowTheWatermark) {
  Harness h;
  const size_t base = h.sm.exactly_once().records();
  const ClientId cl{5, 5};
  h.Do(GrantLease{RequestHeader{{cl, 1}, 1, 1}, 5000, ""});
  EXPECT_EQ(h.sm.exactly_once().records(), base + 1);
  h.Do(RetireOutcomes{LogIndex(h.index), LogIndex(), LogIndex(), 0});
  EXPECT_EQ(h.sm.exactly_once().records(), base + 1) << "seq 1 is not below the watermark (1)";
  h.Do(GrantLease{RequestHeader{{cl, 2}, 1, 2}, 5000, ""});
  EXPECT_EQ(h.sm.exactly_once().records(), base + 2);
  h.Do(RetireOutcomes{LogIndex(h.index - 3), LogIndex(), LogIndex(), 0});
  EXPECT_EQ(h.sm.exactly_once().records(), base + 2) << "seq 1 was recorded after that index";
  h.Do(RetireOutcomes{LogIndex(h.index), LogIndex(), LogIndex(), 0});
  EXPECT_EQ(h.sm.exactly_once().records(), base + 1) << "seq 1 is below the watermark (2) now";
}

TEST(Limits, ReachingALimitIsResourceExhaustedAndChangesNothing) {
  Limits l;
  l.max_leases = 2;
  l.max_waiters_per_lock = 1;
  l.max_locks = 2;
  Harness h(l);
  LeaseId a = h.Lease(), b = h.Lease();
  EXPECT_EQ(h.Do(GrantLease{h.Header(), 5000, ""}).outcome.code, StatusCode::kResourceExhausted);
  h.Acquire("n1", a);
  h.Acquire("n2", a);
  EXPECT_EQ(h.Acquire("n3", a).outcome.code, StatusCode::kResourceExhausted);
  h.Acquire("n1", b, X, 1000);
  EXPECT_EQ(h.sm.GetLock("n1")->waiters.size(), 1u);
  EXPECT_EQ(h.sm.lock_count(), 2u);
}

TEST(Validation, BadNamesTtlsAndLabelsAreInvalidArgument) {
  Harness h;
  LeaseId a = h.Lease();
  for (std::string bad :
       {std::string(""), std::string(513, 'x'), std::string("a\0b", 3), std::string("\xff\xfe"),
        std::string("\xc0\xaf"), std::string("\xed\xa0\x80")}) {
    EXPECT_EQ(h.Acquire(bad, a).outcome.code, StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(h.Acquire(std::string(512, 'x'), a).outcome.acquired);
  EXPECT_TRUE(h.Acquire("ünïcödé/🔒", a).outcome.acquired);
  EXPECT_EQ(h.Do(GrantLease{h.Header(), 1999, ""}).outcome.code, StatusCode::kInvalidArgument);
  EXPECT_EQ(h.Do(GrantLease{h.Header(), 3'600'001, ""}).outcome.code, StatusCode::kInvalidArgument);
  EXPECT_NE(h.Do(GrantLease{h.Header(), 1, ""}).outcome.message.find("2000..3600000"),
            std::string::npos);
}

TEST(ForceRelease, ReleasesEveryHolderAndPromotes) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease(), c = h.Lease();
  h.Acquire("n", a, S);
  h.Acquire("n", b, S);
  h.Acquire("n", c, X, 5000);
  auto r = h.Do(ForceRelease{h.Header(), "n", LeaseId(), "stuck"});
  EXPECT_EQ(r.outcome.holders.size(), 2u);
  ASSERT_EQ(r.completions.size(), 1u);
  EXPECT_EQ(h.sm.GetLock("n")->holders[0].lease, c);
}

TEST(Codec, EveryCommandRoundTripsAndNewerVersionsAreRefused) {
  const RequestHeader hd{{{1, 2}, 3}, 2, 3};
  std::vector<Command> all = {GrantLease{hd, 5000, "l"},
                              RevokeLease{hd, LeaseId(4)},
                              ExpireLease{LeaseId(4)},
                              lock::Acquire{hd, "n", LeaseId(4), S, 100, 0, ""},
                              Cancel{hd, "n", LeaseId(4), RequestId{{1, 2}, 9}},
                              lock::Release{hd, "n", LeaseId(4), FencingToken(77)},
                              ForceRelease{hd, "n", LeaseId(), "why"},
                              WaitTimeout{"n", RequestId{{1, 2}, 9}},
                              RetireOutcomes{LogIndex(50), LogIndex(40), LogIndex(45), 1234}};
  for (const auto& c : all) {
    const std::string bytes = Encode(c, 12345);
    auto d = Decode(bytes);
    ASSERT_TRUE(d.ok()) << KindName(c) << ": " << d.status().ToString();
    EXPECT_EQ(d->wall_seconds, 12345);
    EXPECT_EQ(Encode(d->command, 12345), bytes) << KindName(c);
    EXPECT_EQ(Digest(d->command), Digest(c));
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      EXPECT_FALSE(Decode(bytes.substr(0, cut)).ok()) << KindName(c) << " truncated at " << cut;
    }
  }
  std::string newer = Encode(all[0], 0);
  newer[0] = kCommandFormatVersion + 1;
  EXPECT_EQ(Decode(newer).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(Decode(newer).status().message().find("newer"), std::string::npos);
}

TEST(Codec, AVersion1RetireOutcomesStillDecodesAndRetiresNothingForAge) {
  // Version 1, wall second 7, kind 9 (RetireOutcomes), recorded_at_or_before 50: no second bound.
  const std::string v1 = {1, 7, 9, 50};
  auto d = Decode(v1);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const auto& r = std::get<RetireOutcomes>(d->command);
  EXPECT_EQ(r.recorded_at_or_before, LogIndex(50));
  EXPECT_EQ(r.expired_at_or_before, LogIndex());
}

TEST(Codec, TheDigestIgnoresAttemptAndWatermark) {
  RequestHeader h1{{{1, 1}, 5}, 1, 2}, h2{{{1, 1}, 5}, 4, 5};
  EXPECT_EQ(Digest(GrantLease{h1, 5000, "x"}), Digest(GrantLease{h2, 5000, "x"}));
  EXPECT_NE(Digest(GrantLease{h1, 5000, "x"}), Digest(GrantLease{h1, 5001, "x"}));
}

TEST(Snapshot, RoundTripsTheWholeStateAndRefusesDamage) {
  Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  h.Acquire("n", a, S);
  h.Acquire("n", b, X, 5000);
  const std::string snap = h.sm.Snapshot();
  auto back = LockStateMachine::Restore(snap, {});
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == h.sm);
  back->CheckInvariants();
  for (size_t cut = 0; cut < snap.size(); cut += 3) {
    EXPECT_FALSE(LockStateMachine::Restore(snap.substr(0, cut), {}).ok()) << cut;
  }
  std::string newer = snap;
  newer[0] = 9;
  EXPECT_EQ(LockStateMachine::Restore(newer, {}).status().code(), StatusCode::kFailedPrecondition);
}

// Found by the lock_snapshot fuzz target (tests/fuzz/corpus/lock_snapshot/crash-*): an
// exactly-once record "recorded" after the snapshot's applied index was accepted, and the next
// apply appended an older record behind it, breaking the age list's order (retirement walks it
// oldest first and stops at the first record too young).
TEST(Snapshot, RefusesARecordOrActivityAfterItsAppliedIndex) {
  Harness h;
  LeaseId a = h.Lease();
  h.Acquire("n", a, X);
  const std::string snap = h.sm.Snapshot();
  ASSERT_TRUE(LockStateMachine::Restore(snap, {}).ok());
  // The same snapshot claiming to have applied only index 1: version, two counters, applied.
  Writer prefix;
  prefix.U8(snap[0]);
  prefix.Varint(h.sm.token_counter().value());
  prefix.Varint(h.sm.lease_counter().value());
  Writer applied;
  applied.Varint(h.sm.applied().value());
  ASSERT_EQ(snap.substr(0, prefix.data().size() + applied.data().size()),
            prefix.data() + applied.data());
  Writer one;
  one.Varint(1);
  const std::string early =
      prefix.data() + one.data() + snap.substr(prefix.data().size() + applied.data().size());
  auto r = LockStateMachine::Restore(early, {});
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
}

// The exactly-once table alone, one client active at 2 with one record recorded at `recorded_at`:
// a record after the applied index is refused even when the client's activity is not (the
// snapshot test above is refused for its activity before any record is read).
std::string OneClientTable(uint64_t last_active, uint64_t recorded_at) {
  Writer w;
  w.Varint(1);  // clients
  w.Fixed64(1);
  w.Fixed64(1);
  w.Varint(0);  // watermark
  w.Varint(0);  // forgotten_through
  w.Varint(last_active);
  w.Bytes("");  // principal (format 4)
  w.Varint(1);  // records
  w.Varint(1);  // seq
  w.Fixed64(0);
  w.Varint(recorded_at);
  w.U8(0);
  EncodeOutcome(w, Outcome{});
  w.Varint(0);  // last age mark
  w.Varint(0);  // age samples
  return w.data();
}

TEST(Snapshot, RefusesARecordAfterItsAppliedIndexWhenTheActivityIsNot) {
  const auto decodes = [](uint64_t last_active, uint64_t recorded_at, uint64_t applied) {
    const std::string bytes = OneClientTable(last_active, recorded_at);
    Reader r(bytes);
    ExactlyOnce table;
    return table.DecodeFrom(r, kSnapshotFormatVersion, LogIndex(applied)) && r.done();
  };
  EXPECT_TRUE(decodes(2, 3, 3));
  EXPECT_FALSE(decodes(2, 4, 3));  // recorded_at > applied >= last_active
  EXPECT_FALSE(decodes(4, 2, 3));  // last_active > applied
}

// Found by the lock_snapshot fuzz target (corpus crash-5a8f520d…): a snapshot with a counter at
// 2^64-1 restored, and the next lease wrapped its id to 0.
TEST(Snapshot, RefusesACounterAbove2To63AndARestoreThatWouldStartAbove2To62) {
  for (int which = 0; which < 2; ++which) {
    Writer w;
    w.U8(kSnapshotFormatVersion);
    w.Varint(which == 0 ? kMaxSnapshotCounter + 1 : 0);  // token counter
    w.Varint(which == 1 ? kMaxSnapshotCounter + 1 : 0);  // lease counter
    w.Varint(0);                                         // applied
    w.Varint(0);                                         // wall
    w.Varint(0);                                         // leases
    w.Varint(0);                                         // locks
    ExactlyOnce().EncodeTo(w);
    auto r = LockStateMachine::Restore(w.data(), {});
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << which;
  }
  EXPECT_TRUE(LockStateMachine::NewClusterFrom({}, 0, 0, 0, 0, kMaxStartCounter).ok());
  EXPECT_EQ(LockStateMachine::NewClusterFrom({}, 0, 0, 0, 0, kMaxStartCounter + 1).status().code(),
            StatusCode::kOutOfRange);
  EXPECT_EQ(LockStateMachine::NewClusterFrom({}, kMaxStartCounter, 0, 0, 0, 0).status().code(),
            StatusCode::kOutOfRange);
}

// Found by review (session 13): a cluster restored with its counters as high as allowed must
// still be restorable after it granted: every state a start allows snapshots and restores.
TEST(Snapshot, AClusterStartedAtTheHighestCountersGrantsAndStillRestores) {
  auto started = LockStateMachine::NewClusterFrom({}, 0, 0, 0, 0, kMaxStartCounter);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  Harness h;
  h.sm = std::move(started).value();
  const LeaseId lease = h.Lease();
  EXPECT_GT(lease.value(), kMaxStartCounter);
  const auto got = h.Acquire("seat/1", lease);
  ASSERT_TRUE(got.outcome.ok());
  EXPECT_GT(got.outcome.token.value(), kMaxStartCounter);
  auto restored = LockStateMachine::Restore(h.sm.Snapshot(), {});
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(*restored == h.sm);
  // The bound itself is a value a snapshot may carry.
  Writer w;
  w.U8(kSnapshotFormatVersion);
  w.Varint(kMaxSnapshotCounter);  // token counter
  w.Varint(kMaxSnapshotCounter);  // lease counter
  w.Varint(0);                    // applied
  w.Varint(0);                    // wall
  w.Varint(0);                    // leases
  w.Varint(0);                    // locks
  ExactlyOnce().EncodeTo(w);
  EXPECT_TRUE(LockStateMachine::Restore(w.data(), {}).ok());
}

// A state whose last age sample is at index 2, applied through 3, its client last active at 1.
std::string SampledSnapshot() {
  Harness h;
  h.Lease();
  h.Do(RetireOutcomes{LogIndex(0), LogIndex(0), LogIndex(1), 1'000});
  h.Do(RetireOutcomes{LogIndex(0), LogIndex(0), LogIndex(2), 2'000});
  EXPECT_EQ(h.sm.applied(), LogIndex(3));
  EXPECT_EQ(h.sm.exactly_once().age_samples().size(), 2u);
  EXPECT_EQ(h.sm.exactly_once().age_samples().back().applied, LogIndex(2));
  return h.sm.Snapshot();
}

// `snap` claiming to have applied through `applied` (one-byte varints: version, two counters,
// applied).
std::string WithApplied(const std::string& snap, uint8_t applied) {
  std::string out = snap;
  EXPECT_LT(static_cast<uint8_t>(out[3]), 0x80);
  out[3] = static_cast<char>(applied);
  return out;
}

// A snapshot whose age sample is at or after its applied index (no honest state has one: a
// sample is taken below the index applying it) would stop the replicated age clock for good, and
// the next retirement would drop every finished record and idle client whatever its age, so a
// late duplicate could run twice. Restore refuses it; the fuzz corpus keeps the same input
// (tests/fuzz/corpus/lock_snapshot/crash-age-sample-after-applied).
TEST(Snapshot, RefusesAnAgeSampleAtOrAfterItsAppliedIndex) {
  const std::string snap = SampledSnapshot();
  ASSERT_EQ(static_cast<uint8_t>(snap[3]), 3);
  ASSERT_TRUE(LockStateMachine::Restore(snap, {}).ok());
  auto r = LockStateMachine::Restore(WithApplied(snap, 2), {});
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
}

// Also found by the lock_snapshot fuzz target: Restore checked only the framing, so a holder's
// token above the token counter (a later grant would reissue it) was restored, and the next
// CheckInvariants aborted. Restore now refuses any state that breaks an invariant.
TEST(Snapshot, RefusesAStateThatBreaksAnInvariant) {
  Harness h;
  LeaseId a = h.Lease();
  h.Acquire("n", a, X);
  const std::string snap = h.sm.Snapshot();
  Writer counter;
  counter.Varint(h.sm.token_counter().value());
  ASSERT_EQ(snap.substr(1, counter.data().size()), counter.data());
  Writer zero;
  zero.Varint(0);
  const std::string behind =
      snap.substr(0, 1) + zero.data() + snap.substr(1 + counter.data().size());
  auto r = LockStateMachine::Restore(behind, {});
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  EXPECT_NE(r.status().message().find("token counter"), std::string::npos) << r.status().ToString();
}

TEST(Snapshot, RestoreAsANewClusterDropsLeasesAndRaisesCountersPastTheOldCluster) {
  Harness h;  // entries are stamped wall time 1000
  LeaseId a = h.Lease();
  auto got = h.Acquire("n", a);
  const std::string snap = h.sm.Snapshot();
  auto fresh = LockStateMachine::RestoreAsNewCluster(snap, {}, /*now=*/1010, /*floor=*/0);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->lease_count(), 0u);
  EXPECT_EQ(fresh->lock_count(), 0u);
  const uint64_t expected = got.outcome.token.value() + (uint64_t{1} << 32) * 11;
  EXPECT_EQ(fresh->token_counter().value(), expected);
  auto floored = LockStateMachine::RestoreAsNewCluster(snap, {}, 1010, expected + 5);
  EXPECT_EQ(floored->token_counter().value(), expected + 5);
  auto clock_back = LockStateMachine::RestoreAsNewCluster(snap, {}, 500, 0);
  EXPECT_EQ(clock_back->token_counter().value(), got.outcome.token.value() + (uint64_t{1} << 32))
      << "a wall clock behind the backup still raises by 2^32";
}

// --- the read path's failed try-lock ----------------------------------------------------------

/// Whether FailedTryLock's answer for `c` is exactly what the log gives it, and the log changed
/// nothing but the exactly-once record; or, when it has no answer, that the log does something
/// else (a grant, a wait or an error).
Acquire Try(Harness& h, const std::string& name, LeaseId lease, Mode mode = Mode::kExclusive,
            uint64_t wait_ms = 0, uint64_t ttl_ms = 0, std::string label = "") {
  return Acquire{h.Header(), name, lease, mode, wait_ms, ttl_ms, std::move(label)};
}

void ExpectReadPathAgreesWithTheLog(Harness& h, const Acquire& c) {
  const auto by_read = h.sm.FailedTryLock(c);
  const uint64_t tokens = h.sm.token_counter().value();
  const auto locks = h.sm.ListLocks("", "", 1000).items;
  const auto leases = h.sm.ListLeases(LeaseId(), 1000).items;
  const ApplyResult r = h.Do(c);
  if (by_read.has_value()) {
    EXPECT_EQ(*by_read, r.outcome) << "the read path must answer exactly what the log would";
    EXPECT_FALSE(r.outcome.acquired);
    EXPECT_FALSE(r.outcome.waiting);
    EXPECT_EQ(h.sm.token_counter().value(), tokens);
    EXPECT_EQ(h.sm.ListLocks("", "", 1000).items, locks);
    EXPECT_EQ(h.sm.ListLeases(LeaseId(), 1000).items, leases) << "not even a lease";
  } else {
    EXPECT_TRUE(!r.outcome.ok() || r.outcome.acquired || r.outcome.waiting)
        << "a failed try-lock the read path did not recognise: " << r.outcome.message;
  }
}

TEST(FailedTryLock, AnswersExactlyAsTheLogForAHeldLockAndNothingElse) {
  Harness h;
  const LeaseId a = h.Lease(), b = h.Lease();
  ASSERT_TRUE(h.Acquire("x", a).outcome.acquired);
  ASSERT_TRUE(h.Acquire("s", a, Mode::kShared).outcome.acquired);
  ASSERT_TRUE(h.Acquire("q", a).outcome.acquired);
  ASSERT_TRUE(h.Acquire("q", b, Mode::kExclusive, 60'000).outcome.waiting);
  const LeaseId c = h.Lease();

  // Held exclusively: fails for either mode, with an existing lease or a new one.
  EXPECT_TRUE(h.sm.FailedTryLock(Try(h, "x", b)).has_value());
  ExpectReadPathAgreesWithTheLog(h, Try(h, "x", b));
  ExpectReadPathAgreesWithTheLog(h, Try(h, "x", b, Mode::kShared));
  ExpectReadPathAgreesWithTheLog(h, Try(h, "x", LeaseId(), Mode::kExclusive, 0, 5'000, "new"));
  // Held shared: an exclusive try fails, a shared one is granted (the log's business).
  ExpectReadPathAgreesWithTheLog(h, Try(h, "s", b));
  EXPECT_FALSE(h.sm.FailedTryLock(Try(h, "s", c, Mode::kShared)).has_value());
  ExpectReadPathAgreesWithTheLog(h, Try(h, "s", c, Mode::kShared));
  // A queue: a shared try behind a waiting exclusive fails too (no overtaking).
  ExpectReadPathAgreesWithTheLog(h, Try(h, "q", c, Mode::kShared));
  // Free, waiting, erroneous: never the read path.
  EXPECT_FALSE(h.sm.FailedTryLock(Try(h, "free", b)).has_value());
  ExpectReadPathAgreesWithTheLog(h, Try(h, "free", b));
  EXPECT_FALSE(h.sm.FailedTryLock(Try(h, "x", c, Mode::kExclusive, 1000)));
  EXPECT_FALSE(h.sm.FailedTryLock(Try(h, "x", LeaseId(777))).has_value())
      << "an unknown lease is NOT_FOUND from the log";
  EXPECT_FALSE(h.sm.FailedTryLock(Try(h, "x", a)).has_value())
      << "a lease that already holds the name is FAILED_PRECONDITION from the log";
  EXPECT_FALSE(h.sm.FailedTryLock(Try(h, "", b)).has_value());
  EXPECT_FALSE(h.sm.FailedTryLock(Try(h, "x", b, static_cast<Mode>(9))).has_value());
}

TEST(FailedTryLock, NeverAnswersARequestIdTheTableKnowsOrRefuses) {
  Harness h;
  const LeaseId a = h.Lease(), b = h.Lease();
  ASSERT_TRUE(h.Acquire("x", a).outcome.acquired);
  // An id already executed (its first attempt was granted, say) is the table's to answer.
  const Acquire tried = Try(h, "x", b);
  ASSERT_TRUE(h.sm.FailedTryLock(tried).has_value());
  h.Do(tried);
  EXPECT_FALSE(h.sm.FailedTryLock(tried).has_value()) << "a recorded id replays from the log";
  // Below the client's watermark: the log refuses it, the read path must not answer it.
  RequestHeader late = h.Header(ClientId{9, 9});
  RequestHeader ahead = h.Header(ClientId{9, 9});
  ahead.watermark = late.id.seq + 1;
  h.Do(GrantLease{ahead, 5'000, "w"});
  EXPECT_FALSE(h.sm.FailedTryLock(Acquire{late, "x", b, Mode::kExclusive, 0, 0, ""}).has_value());
}

}  // namespace
}  // namespace lockd::lock
