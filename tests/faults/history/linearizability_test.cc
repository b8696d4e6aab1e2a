// Checker 5: the lock model and the bounded search, on synthetic histories.
#include "faults/history/linearizability.h"

#include <gtest/gtest.h>

#include <regex>

#include "faults/history/test_history.h"

namespace lockd::faults {
namespace {

using namespace test;
constexpr LockMode X = LockMode::kExclusive;
constexpr LockMode S = LockMode::kShared;

Report Check(const std::vector<Op>& ops, uint64_t budget = 100'000) {
  return CheckLinearizability(ops, {.budget = budget});
}

TEST(Linearizability, SequentialHandoffWithInspectionsPasses) {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
      Inspect("w3", 1, "hot/0", 12, 14, {{1, X, 5}}),
      Acquire("w2", 1, "hot/0", X, 15, 20, Outcome::kFail, 0, 2),
      Release("w1", 2, "hot/0", 5, 1, 50, 60),
      // w2's retry overlaps w1's release: it may go after it.
      Acquire("w2", 2, "hot/0", X, 40, 70, Outcome::kOk, 6, 2),
      Release("w2", 3, "hot/0", 6, 2, 100, 110),
      Inspect("w3", 2, "hot/0", 120, 125, {}),
  };
  ops[2].holders = {{1, X, 0}};
  const Report r = Check(ops);
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
}

TEST(Linearizability, TwoExclusiveGrantsAtOnceFailNamingTheOps) {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
      Acquire("w2", 1, "hot/0", X, 20, 30, Outcome::kOk, 6, 2),  // w1 still holds it
      Release("w1", 2, "hot/0", 5, 1, 50, 60),
      Release("w2", 2, "hot/0", 6, 2, 70, 80),
  };
  const Report r = Check(ops);
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
  const std::string text = r.Format();
  EXPECT_NE(text.find("hot/0 is not linearizable"), std::string::npos) << text;
  EXPECT_NE(text.find("held by lease 1 EXCLUSIVE token 5"), std::string::npos) << text;
  EXPECT_NE(text.find("w2#1 acquire EXCLUSIVE hot/0 ok token=6"), std::string::npos) << text;
}

TEST(Linearizability, SharedHoldersTogetherPassAnExclusiveAmongThemFails) {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/1", S, 0, 10, Outcome::kOk, 5, 1),
      Acquire("w2", 1, "hot/1", S, 5, 15, Outcome::kOk, 6, 2),
      Inspect("w3", 1, "hot/1", 20, 22, {{1, S, 5}, {2, S, 6}}),
      Release("w1", 2, "hot/1", 5, 1, 50, 60),
      Release("w2", 2, "hot/1", 6, 2, 50, 60),
  };
  EXPECT_EQ(Check(ops).verdict, Verdict::kPass) << Check(ops).Format();
  ops.push_back(Acquire("w4", 1, "hot/1", X, 18, 25, Outcome::kOk, 7, 4));
  EXPECT_EQ(Check(ops).verdict, Verdict::kFail) << Check(ops).Format();
}

TEST(Linearizability, AHoldWhoseReleaseFailedMayHaveEndedUnseen) {
  // w1 was paused past its TTL: its lease expired (no op says when) and w2 got the lock; w1's
  // late release was refused.
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
      Acquire("w2", 1, "hot/0", X, 20, 30, Outcome::kOk, 6, 2),
      Release("w1", 2, "hot/0", 5, 1, 50, 60, Outcome::kFail),
      Release("w2", 2, "hot/0", 6, 2, 70, 80),
  };
  EXPECT_EQ(Check(ops).verdict, Verdict::kPass) << Check(ops).Format();
  // But an inspection that still sees w1 after w2's grant is not linearizable.
  ops.push_back(Inspect("w3", 1, "hot/0", 40, 45, {{1, X, 5}}));
  EXPECT_EQ(Check(ops).verdict, Verdict::kFail) << Check(ops).Format();
}

TEST(Linearizability, AnIndeterminateAcquireMayTakeEffectLaterOrNever) {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
      Acquire("w2", 1, "hot/0", X, 20, 25, Outcome::kInfo, 0, 2),  // timed out
      Release("w1", 2, "hot/0", 5, 1, 50, 60),
      // Seen holding after w1's release: the timed-out Acquire took effect after its answer.
      Inspect("w3", 1, "hot/0", 70, 75, {{2, X, 9}}),
      Inspect("w3", 2, "hot/0", 80, 85, {}),  // then its Cancel released it
  };
  EXPECT_EQ(Check(ops).verdict, Verdict::kPass) << Check(ops).Format();
  // Never taking effect is fine too.
  std::vector<Op> never = {ops[0], ops[1], ops[2], ops[4]};
  EXPECT_EQ(Check(never).verdict, Verdict::kPass) << Check(never).Format();
  // Without the indeterminate Acquire nothing explains lease 2 holding the lock.
  std::vector<Op> unexplained = {ops[0], ops[2], ops[3]};
  EXPECT_EQ(Check(unexplained).verdict, Verdict::kFail) << Check(unexplained).Format();
  // An indeterminate op cannot take effect before it was invoked.
  std::vector<Op> early = {ops[0], ops[1], ops[2]};
  early.push_back(Inspect("w3", 1, "hot/0", 12, 15, {{2, X, 9}}));
  EXPECT_EQ(Check(early).verdict, Verdict::kFail) << Check(early).Format();
}

// The watcher covers [0, 10 s] unless a test says otherwise (it must run a second past the last
// op for a grant it did not see to count as one that did not happen).
std::vector<Op> Watched(std::vector<Op> ops, int64_t end = 10'000) {
  ops.push_back(WatchMark("watch_start", 0, 0));
  ops.push_back(WatchMark("watch_end", end, end));
  return ops;
}

TEST(Linearizability, AnIndeterminateAcquireTheWatcherSawTookEffectBeforeItWasSeen) {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
      Acquire("w2", 1, "hot/0", X, 20, 25, Outcome::kInfo, 0, 2),  // timed out
      Release("w1", 2, "hot/0", 5, 1, 50, 60),
      Inspect("w3", 1, "hot/0", 70, 75, {{2, X, 9}}),
  };
  // Without a watcher the acquire may have taken effect after w1's release: fine.
  EXPECT_EQ(Check(ops).verdict, Verdict::kPass) << Check(ops).Format();
  // The watcher saw it granted token 9 after w1's release: fine too, and it says so.
  std::vector<Op> seen_late = Watched(ops);
  seen_late.push_back(Seen("acquired", "hot/0", 2, 9, 7, X, 65));
  Report r = Check(seen_late);
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
  EXPECT_NE(r.summary.find("1 seen granted by the watcher"), std::string::npos) << r.Format();
  // Seen granted before w1's acknowledged release: it cannot be placed after it any more.
  std::vector<Op> seen_early = Watched(ops);
  seen_early.push_back(Seen("acquired", "hot/0", 2, 9, 7, X, 40));
  r = Check(seen_early);
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
  EXPECT_NE(r.Format().find("the watcher saw it granted token 9"), std::string::npos) << r.Format();
  // Seen granted another token than the one the inspection saw.
  std::vector<Op> other_token = Watched(ops);
  other_token.push_back(Seen("acquired", "hot/0", 2, 8, 7, X, 65));
  EXPECT_EQ(Check(other_token).verdict, Verdict::kFail) << Check(other_token).Format();
}

TEST(Linearizability, AnIndeterminateAcquireTheWatcherWouldHaveSeenButDidNotNeverTookEffect) {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
      Acquire("w2", 1, "hot/0", X, 20, 25, Outcome::kInfo, 0, 2),
      Release("w1", 2, "hot/0", 5, 1, 50, 60),
      Inspect("w3", 1, "hot/0", 70, 75, {{2, X, 9}}),  // but lease 2 is seen holding it
  };
  Report r = Check(Watched(ops));
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
  // A watcher that stopped too early, or lost events in a gap, cannot tell.
  r = Check(Watched(ops, 40));
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
  EXPECT_NE(r.summary.find("1 unresolved"), std::string::npos) << r.Format();
  // A gap: the grant can have hidden only in it. After w1's release, fine; before, not.
  std::vector<Op> late_gap = Watched(ops);
  late_gap.push_back(WatchMark("gap", 55, 65));
  r = Check(late_gap);
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
  EXPECT_NE(r.summary.find("1 possible only in Watch gaps"), std::string::npos) << r.Format();
  std::vector<Op> early_gap = Watched(ops);
  early_gap.push_back(WatchMark("gap", 30, 35));
  r = Check(early_gap);
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
  // Without the inspection it simply never happened.
  r = Check(Watched({ops[0], ops[1], ops[2]}));
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
  EXPECT_NE(r.summary.find("1 never granted"), std::string::npos) << r.Format();
}

TEST(Linearizability, WhatMayHaveHappenedBeforeACutCarriesOverIt) {
  // w1's release failed, so its hold may end at any moment: three pieces with nothing in flight
  // between them. An inspection seeing the lock free ends the hold; a later one cannot see it.
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", S, 0, 10, Outcome::kOk, 5, 1),
      Acquire("w2", 1, "hot/0", S, 5, 12, Outcome::kOk, 6, 2),
      Release("w1", 2, "hot/0", 5, 1, 20, 30, Outcome::kFail),
      Inspect("w3", 1, "hot/0", 40, 45, {{2, S, 6}}),  // w1's hold ended; w2's goes on
      Inspect("w3", 2, "hot/0", 50, 55, {{2, S, 6}}),
  };
  Report r = Check(ops);
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
  EXPECT_NE(r.summary.find("in 3 pieces"), std::string::npos) << r.Format();
  std::vector<Op> back = ops;
  back.push_back(Inspect("w3", 3, "hot/0", 60, 65, {{1, S, 5}, {2, S, 6}}));
  r = Check(back);
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
  EXPECT_NE(r.Format().find("in the piece of its history from w3#3 inspect"), std::string::npos)
      << r.Format();
  EXPECT_NE(r.Format().find("starting from lock held by lease 2 SHARED token 6"), std::string::npos)
      << r.Format();
  // Whereas an inspection that does not pin the end keeps both possibilities open.
  std::vector<Op> open = {ops[0], ops[1], ops[2]};
  open.push_back(Inspect("w3", 3, "hot/0", 60, 65, {{1, S, 5}, {2, S, 6}}));
  open.push_back(Inspect("w3", 4, "hot/0", 70, 75, {{2, S, 6}}));
  EXPECT_EQ(Check(open).verdict, Verdict::kPass) << Check(open).Format();
}

TEST(Linearizability, AnAcquireThatCouldHideOnlyInAGapCannotGoAfterAnOpInvokedPastIt) {
  // One piece (a slow inspection spans it): w2's grant, if any, fell into the gap [30, 35], while
  // w1 still held the lock (its release is acknowledged after). Placing w2's grant after the
  // release, invoked at 50, would pass: the deadline forbids it.
  std::vector<Op> ops = Watched({
      WatchMark("gap", 30, 35),
      Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
      Inspect("w4", 1, "hot/0", 5, 100, {{1, X, 5}}),
      Acquire("w2", 1, "hot/0", X, 20, 25, Outcome::kInfo, 0, 2),
      Release("w1", 2, "hot/0", 5, 1, 50, 60),
      Inspect("w3", 1, "hot/0", 70, 75, {{2, X, 9}}),
  });
  EXPECT_EQ(Check(ops).verdict, Verdict::kFail) << Check(ops).Format();
}

TEST(Linearizability, AGrantLostInAGapLeavesEveryCandidateOpen) {
  // One lease, two timed-out acquires. The first one's grant (token 2) fell into a Watch gap; the
  // watcher saw only the second one's (token 3). Pinning token 3 on the first would leave the
  // second's hold unexplained.
  std::vector<Op> ops = Watched({
      WatchMark("gap", 10, 20),
      Acquire("w1", 1, "hot/0", X, 12, 14, Outcome::kInfo, 0, 11),
      Inspect("w3", 1, "hot/0", 30, 31, {{11, X, 2}}),
      Inspect("w3", 2, "hot/0", 35, 36, {}),
      Acquire("w1", 2, "hot/0", X, 40, 42, Outcome::kInfo, 0, 11),
      Seen("acquired", "hot/0", 11, 3, 7, X, 52),
      Inspect("w3", 3, "hot/0", 60, 61, {{11, X, 3}}),
  });
  const Report r = Check(ops);
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
}

TEST(Linearizability, AReleaseMayEndAHoldWhoseTokenOnlyTheWatcherSaw) {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", X, 10, 20, Outcome::kInfo, 0, 10),
      Release("w1", 2, "hot/0", 7, 10, 30, 40),  // the library learnt the token and released it
  };
  EXPECT_EQ(Check(ops).verdict, Verdict::kPass) << Check(ops).Format();
  std::vector<Op> seen = Watched(ops);
  seen.push_back(Seen("acquired", "hot/0", 10, 7, 5, X, 25));
  EXPECT_EQ(Check(seen).verdict, Verdict::kPass) << Check(seen).Format();
  // The cluster granted token 6, yet a release of token 7 succeeded.
  std::vector<Op> other = Watched(ops);
  other.push_back(Seen("acquired", "hot/0", 10, 6, 5, X, 25));
  EXPECT_EQ(Check(other).verdict, Verdict::kFail) << Check(other).Format();
}

/// An hour's soak in miniature: `cycles` handoffs of one lock among three workers, each with a
/// refused attempt, an inspection, and every tenth an acquire that timed out and that the watcher
/// saw granted.
std::vector<Op> LongHistory(int cycles) {
  std::vector<Op> ops = {WatchMark("watch_start", 0, 0)};
  uint64_t id = 0, token = 0;
  int64_t t = 10;
  for (int c = 0; c < cycles; ++c, t += 100) {
    const std::string me = "w" + std::to_string(c % 3), other = "w" + std::to_string((c + 1) % 3);
    const uint64_t lease = 1 + c % 3;
    ++token;
    if (c % 10 == 9) {
      // Timed out, yet granted; the holder never learns its token, so nobody releases it: the
      // next grant finds it droppable.
      ops.push_back(Acquire(me, ++id, "hot/0", X, t, t + 20, Outcome::kInfo, 0, lease));
      ops.push_back(Seen("acquired", "hot/0", lease, token, token, X, t + 15));
      continue;
    }
    ops.push_back(Acquire(me, ++id, "hot/0", X, t, t + 20, Outcome::kOk, token, lease));
    ops.back().valid_until_ns = Ms(t + 10'000);
    ops.push_back(Seen("acquired", "hot/0", lease, token, token, X, t + 15));
    Op refused = Acquire(other, ++id, "hot/0", X, t + 30, t + 40, Outcome::kFail, 0, lease % 3 + 1);
    refused.holders = {{lease, X, 0}};
    ops.push_back(refused);
    ops.push_back(Inspect(other, ++id, "hot/0", t + 45, t + 50, {{lease, X, token}}));
    ops.push_back(Release(me, ++id, "hot/0", token, lease, t + 50, t + 90));
  }
  ops.push_back(WatchMark("watch_end", t + 5'000, t + 5'000));
  return ops;
}

TEST(Linearizability, DecidesAnHoursWorthOfOneLockAndFindsTheOneBadOp) {
  std::vector<Op> ops = LongHistory(20'000);  // ~74,000 ops on one lock
  Report r = Check(ops, 10'000);
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
  EXPECT_NE(r.summary.find("2000 seen granted by the watcher"), std::string::npos) << r.Format();
  // Halfway through, an inspection sees a lease that has not held the lock for a while.
  Op stale = Inspect("w9", 1, "hot/0", Ms(0), Ms(0), {{1, X, 1}});
  stale.invoke_ns = Ms(10 + 10'000 * 100 + 60);
  stale.complete_ns = stale.invoke_ns + Ms(1);
  ops.push_back(stale);
  r = Check(ops, 10'000);
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
  EXPECT_NE(r.Format().find("w9#1 inspect"), std::string::npos) << r.Format();
}

TEST(Linearizability, AnAcquireThatCanHideOnlyInAGapDoesNotJoinTheRestIntoOnePiece) {
  // A timed-out acquire at the start whose grant, if any, fell into an early gap; then the
  // long history. Without a deadline it would be one piece of ~18,000 ops.
  std::vector<Op> ops = LongHistory(4'000);
  ops.push_back(WatchMark("gap", 1, 5));
  ops.push_back(Acquire("w7", 1, "hot/0", X, 1, 3, Outcome::kInfo, 0, 70));
  Report r = Check(ops, 10'000);
  EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
  EXPECT_NE(r.summary.find("1 possible only in Watch gaps"), std::string::npos) << r.Format();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.summary, m, std::regex(R"(the largest (\d+) ops)")));
  EXPECT_LT(std::stoi(m[1]), 10) << r.Format();
  // Seen holding long after the gap: it cannot have been granted then.
  ops.push_back(Inspect("w9", 1, "hot/0", 0, 0, {{70, X, 0}}));
  ops.back().invoke_ns = Ms(10 + 2'000 * 100 + 92);
  ops.back().complete_ns = ops.back().invoke_ns + Ms(1);
  r = Check(ops, 10'000);
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
}

TEST(Linearizability, LocksArePartitionedAndEachIsNamed) {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
      Acquire("w2", 1, "hot/1", X, 0, 10, Outcome::kOk, 6, 2),  // another lock: no conflict
      Inspect("w3", 1, "hot/1", 20, 25, {}),                    // but w2 still holds it
      Release("w2", 2, "hot/1", 6, 2, 50, 60),                  // (its release says so)
  };
  const Report r = Check(ops);
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
  EXPECT_EQ(r.violations.size(), 1u) << r.Format();
  EXPECT_NE(r.Format().find("hot/1 is not linearizable"), std::string::npos) << r.Format();
}

TEST(Linearizability, SaysUnknownWhenTheSearchBudgetIsExhausted) {
  // Twenty concurrent SHARED grants and one EXCLUSIVE grant that overlaps them all, all released
  // only later: no order works, and proving it visits every subset of the SHARED ones.
  std::vector<Op> ops;
  for (uint64_t i = 0; i < 20; ++i) {
    ops.push_back(
        Acquire("w" + std::to_string(i), 1, "hot/2", S, 0, 1000, Outcome::kOk, 10 + i, 100 + i));
  }
  ops.push_back(Acquire("wx", 1, "hot/2", X, 0, 1000, Outcome::kOk, 99, 99));
  const size_t grants = ops.size();
  for (size_t i = 0; i < grants; ++i) {  // each released later, so no hold may end unseen
    ops.push_back(Release(ops[i].process, 2, "hot/2", ops[i].token, ops[i].lease, 2000, 2001));
  }
  const Report r = Check(ops, 1000);
  EXPECT_EQ(r.verdict, Verdict::kUnknown) << r.Format();
  EXPECT_NE(r.Format().find("unknown: search budget exhausted"), std::string::npos) << r.Format();
}

}  // namespace
}  // namespace lockd::faults
