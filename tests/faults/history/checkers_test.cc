// Checkers 1-4, 6, 7 and availability on synthetic histories: each passes a valid history and
// fails, naming the operations, on one planted violation.
#include "faults/history/checkers.h"

#include <gtest/gtest.h>

#include "faults/history/test_history.h"

namespace lockd::faults {
namespace {

using namespace test;
constexpr LockMode X = LockMode::kExclusive;
constexpr LockMode S = LockMode::kShared;

/// w1 holds hot/0 (token 5), releases; w2 then holds it (token 6), releases; each does a fenced
/// read-modify-write; a stale read with fence 5 is rejected; the watcher saw it all; the lock is
/// free at the end.
struct ValidRun {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
      Op{},  // w1's increment, below
      Release("w1", 3, "hot/0", 5, 1, 50, 60),
      Acquire("w2", 1, "hot/0", X, 20, 70, Outcome::kOk, 6, 2),
      Op{},  // w2's increment
      Release("w2", 3, "hot/0", 6, 2, 100, 110),
      WatchMark("watch_start", 0, 0),
      Seen("acquired", "hot/0", 1, 5, 3),
      Seen("released", "hot/0", 1, 5, 4),
      Seen("acquired", "hot/0", 2, 6, 5),
      Seen("released", "hot/0", 2, 6, 6),
      WatchMark("watch_end", 200, 200),
      Inspect("cleanup", 1, "hot/0", 300, 310, {}),
  };
  std::vector<ResourceRecord> log = {
      Res(20, "hot/0", false, 5, 0, true, 5, "w1", 2),
      Res(21, "hot/0", true, 5, 1, true, 5, "w1", 2),
      Res(80, "hot/0", false, 6, 1, true, 6, "w2", 2),
      Res(81, "hot/0", true, 6, 2, true, 6, "w2", 2),
      Res(90, "hot/0", false, 5, 2, false, 6, "w0", 9),
  };
  ValidRun() {
    ops[1] = Acquire("w1", 2, "hot/0", X, 20, 22, Outcome::kOk, 5, 1);
    ops[1].kind = OpKind::kIncrement;
    ops[1].value = 1;
    ops[4] = Acquire("w2", 2, "hot/0", X, 80, 82, Outcome::kOk, 6, 2);
    ops[4].kind = OpKind::kIncrement;
    ops[4].value = 2;
  }
};

void ExpectFailNaming(const Report& r, const std::string& needle) {
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
  ASSERT_FALSE(r.violations.empty());
  EXPECT_NE(r.Format().find(needle), std::string::npos) << r.Format();
}

TEST(Checkers, ValidHistoryPassesEveryChecker) {
  ValidRun run;
  for (const Report& r : {CheckFencing(run.log), CheckNoLostUpdate(run.log, run.ops),
                          CheckLeaseSafety(run.ops), CheckMutualExclusion(run.ops),
                          CheckNoLostAck(run.ops), CheckCleanup(run.ops, {}, Ms(1000))}) {
    EXPECT_EQ(r.verdict, Verdict::kPass) << r.Format();
  }
}

TEST(Checkers, FencingFailsOnAFenceAcceptedBelowAnother) {
  ValidRun run;
  run.log[4].accepted = true;  // the stale read with fence 5 let in after fence 6
  ExpectFailNaming(CheckFencing(run.log), "fence 5 accepted below fence 6");
  ExpectFailNaming(CheckFencing(run.log), "w0#9");
}

TEST(Checkers, NoLostUpdateFailsOnAnOverwrittenIncrement) {
  ValidRun run;
  run.log[2].value = 0;  // w2 read before w1's write landed …
  run.log[3].value = 1;  // … and wrote 1 over it
  run.ops[4].value = 1;
  ExpectFailNaming(CheckNoLostUpdate(run.log, run.ops), "lost update on hot/0: counter was 1");
  ExpectFailNaming(CheckNoLostUpdate(run.log, run.ops), "w2#2");
}

TEST(Checkers, NoLostUpdateFailsOnAnAcknowledgedIncrementTheResourceNeverAccepted) {
  ValidRun run;
  run.log.erase(run.log.begin() + 3);
  ExpectFailNaming(CheckNoLostUpdate(run.log, run.ops), "not accepted by the resource");
}

TEST(Checkers, LeaseSafetyFailsOnOverlappingExclusiveIntervals) {
  ValidRun run;
  run.ops[3].complete_ns = Ms(40);  // w2's grant acknowledged before w1 let go (at 50)
  const Report r = CheckLeaseSafety(run.ops);
  ExpectFailNaming(r, "overlapping holds of hot/0 for 10.0 ms");
  ExpectFailNaming(r, "w1#1");
  ExpectFailNaming(r, "w2#1");
}

TEST(Checkers, LeaseSafetyEndsAHoldAtValidUntil) {
  ValidRun run;
  // w1 was paused past its lease: it released only at 90, but its lease ended at 30.
  run.ops[2].invoke_ns = Ms(90);
  run.ops[2].valid_until_ns = Ms(30);
  run.ops[3].complete_ns = Ms(40);
  EXPECT_EQ(CheckLeaseSafety(run.ops).verdict, Verdict::kPass)
      << CheckLeaseSafety(run.ops).Format();
  // A lease treated as valid too long (valid_until past the next grant) is caught.
  run.ops[2].valid_until_ns = Ms(45);
  ExpectFailNaming(CheckLeaseSafety(run.ops), "for 5.0 ms");
}

TEST(Checkers, LeaseSafetyAllowsSharedHoldersTogetherButNotWithAnExclusiveOne) {
  std::vector<Op> ops = {
      Acquire("w1", 1, "hot/1", S, 0, 10, Outcome::kOk, 5, 1),
      Acquire("w2", 1, "hot/1", S, 0, 12, Outcome::kOk, 6, 2),
      Release("w1", 2, "hot/1", 5, 1, 50, 60),
      Release("w2", 2, "hot/1", 6, 2, 55, 60),
  };
  EXPECT_EQ(CheckLeaseSafety(ops).verdict, Verdict::kPass) << CheckLeaseSafety(ops).Format();
  ops.push_back(Acquire("w3", 1, "hot/1", X, 0, 52, Outcome::kOk, 7, 3));
  ExpectFailNaming(CheckLeaseSafety(ops), "w3#1 acquire EXCLUSIVE");
}

TEST(Checkers, MutualExclusionFailsOnAGrantWhileHeld) {
  ValidRun run;
  std::swap(run.ops[8].index, run.ops[9].index);  // token 6 granted before token 5 was released
  const Report r = CheckMutualExclusion(run.ops);
  ExpectFailNaming(r, "grant while held");
  ExpectFailNaming(r, "token=6");
}

TEST(Checkers, MutualExclusionForgetsHoldersAcrossAGap) {
  ValidRun run;
  run.ops.erase(run.ops.begin() + 8);  // the release of token 5 fell into a gap …
  // … and the marker carries the watcher's last position, as watcher.cc writes it: that of the
  // last event it saw (the grant of token 5 at (3, 0)). It must not be taken for a duplicate of
  // that event, and must be ordered after it, or the gap is lost.
  Op gap = WatchMark("gap", 61, 65);
  gap.index = 3;
  gap.event_no = 0;
  run.ops.push_back(gap);  // written when the new stream opens: after the event in the file
  EXPECT_EQ(CheckMutualExclusion(run.ops).verdict, Verdict::kPass)
      << CheckMutualExclusion(run.ops).Format();
  // Ordered by position, not by file order: the same marker written before the event.
  run.ops.pop_back();
  run.ops.insert(run.ops.begin() + 7, gap);
  EXPECT_EQ(CheckMutualExclusion(run.ops).verdict, Verdict::kPass)
      << CheckMutualExclusion(run.ops).Format();
  // A gap between two positions no event has still works.
  run.ops[7].index = 4;
  run.ops[7].event_no = 1;
  EXPECT_EQ(CheckMutualExclusion(run.ops).verdict, Verdict::kPass)
      << CheckMutualExclusion(run.ops).Format();
}

TEST(Checkers, MutualExclusionStillDropsARepeatedEvent) {
  ValidRun run;
  run.ops.insert(run.ops.begin() + 10, run.ops[9]);  // a restarted watch repeats token 6's grant
  EXPECT_EQ(CheckMutualExclusion(run.ops).verdict, Verdict::kPass)
      << CheckMutualExclusion(run.ops).Format();
}

TEST(Checkers, NoLostAckFailsOnAGrantMissingFromTheWatch) {
  ValidRun run;
  run.ops.erase(run.ops.begin() + 9);  // the watcher never saw token 6
  ExpectFailNaming(CheckNoLostAck(run.ops), "missing from the Watch history: w2#1");
}

TEST(Checkers, NoLostAckFailsOnADuplicateOrDecreasingToken) {
  ValidRun run;
  run.ops[3].token = 5;  // the planted bug that skips the token increment
  run.ops[9].token = 5;
  const Report r = CheckNoLostAck(run.ops);
  ExpectFailNaming(r, "token 5 granted twice on hot/0");
  ExpectFailNaming(r, "token not increasing");
}

TEST(Checkers, NoLostAckExcusesGrantsInAGapAndSaysUnknownWithoutAWatch) {
  ValidRun run;
  run.ops.erase(run.ops.begin() + 9);
  run.ops.push_back(WatchMark("gap", 65, 75));
  EXPECT_EQ(CheckNoLostAck(run.ops).verdict, Verdict::kPass) << CheckNoLostAck(run.ops).Format();
  std::vector<Op> no_watch(run.ops.begin(), run.ops.begin() + 6);
  EXPECT_EQ(CheckNoLostAck(no_watch).verdict, Verdict::kUnknown);
}

TEST(Checkers, CleanupFailsOnALockStillHeldAfterTheBound) {
  ValidRun run;
  run.ops.back().holders = {{2, X, 6}};
  ExpectFailNaming(CheckCleanup(run.ops, {}, Ms(1000)), "hot/0 still held");
  // Free, but only after the bound.
  run.ops.push_back(Inspect("cleanup", 2, "hot/0", 2000, 2010, {}));
  ExpectFailNaming(CheckCleanup(run.ops, {}, Ms(1000)), "hot/0 free only 1900.0 ms after");
  // The bound counts from the last fault when that is later than the workload.
  FaultEvent late{Ms(1500), "kill", "1", ""};
  EXPECT_EQ(CheckCleanup(run.ops, {late}, Ms(1000)).verdict, Verdict::kPass)
      << CheckCleanup(run.ops, {late}, Ms(1000)).Format();
}

TEST(Checkers, AvailabilityReportsTheLongestWindowPerFaultKind) {
  ValidRun run;
  // Answered cluster ops complete at 10, 60, 70, 110; the workload ends at 100 (its last
  // invocation); the clean-up is not the workload.
  std::vector<FaultEvent> faults = {{Ms(12), "kill", "1", ""}, {Ms(65), "stop", "2", ""}};
  const Report r = Availability(run.ops, faults);
  EXPECT_EQ(r.verdict, Verdict::kPass);
  const std::string text = r.Format();
  EXPECT_NE(text.find("after kill (1x): longest window without a served cluster op 48.0 ms"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("after stop (1x): longest window without a served cluster op 40.0 ms"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("increment: 2 attempted, 2 answered"), std::string::npos) << text;
}

TEST(Checkers, AvailabilityCountsTheTailWithNoAnswerAndOnlyServedOps) {
  ValidRun run;
  // A fault after the last answered op (110): the workload keeps invoking until 300 and gets
  // nothing, so the window runs from the fault to the workload's end.
  Op late = Acquire("w1", 9, "hot/0", X, 300, 400, Outcome::kInfo, 0, 1);
  late.error = "UNAVAILABLE";
  run.ops.push_back(late);
  const std::vector<FaultEvent> faults = {{Ms(120), "partition", "1", ""}};
  std::string text = Availability(run.ops, faults).Format();
  EXPECT_NE(text.find("after partition (1x): longest window without a served cluster op 180.0 ms"),
            std::string::npos)
      << text;
  // An error answer is not service: an Acquire answered NOT_FOUND at 200 does not end the window.
  Op lost = Acquire("w2", 9, "hot/0", X, 150, 200, Outcome::kFail, 0, 2);
  lost.error = "NOT_FOUND: lease expired";
  run.ops.push_back(lost);
  text = Availability(run.ops, faults).Format();
  EXPECT_NE(text.find("after partition (1x): longest window without a served cluster op 180.0 ms"),
            std::string::npos)
      << text;
  // A refusal (answered, no error) is service.
  run.ops.back().error.clear();
  text = Availability(run.ops, faults).Format();
  EXPECT_NE(text.find("after partition (1x): longest window without a served cluster op 100.0 ms"),
            std::string::npos)
      << text;
}

TEST(Checkers, LeaseKeptFailsOnARenewalRefusedWellBeforeItsDeadline) {
  // Granted at 0, renewed at 1000 (answered at once), then a stall: the renewals sent at 2000 and
  // 3000 are answered at 3400. The one sent at 2000 was due to be honoured (deadline >= 1000 +
  // 3000 = 4000, sent 2 s before it); the one sent at 3000 is within the 1 s slack.
  const std::vector<Op> ops = {
      Renew("k0", 1, 7, 0, 5, Outcome::kOk, 3000, "grant"),
      Renew("k0", 2, 7, 1000, 1005, Outcome::kOk),
      Renew("k0", 3, 7, 2000, 3400, Outcome::kFail),
      Renew("k0", 4, 7, 3000, 3400, Outcome::kFail),
  };
  const Report r = CheckLeaseKept(ops, Ms(1000));
  EXPECT_EQ(r.verdict, Verdict::kFail) << r.Format();
  ASSERT_EQ(r.violations.size(), 1u) << r.Format();
  EXPECT_NE(r.violations[0].find("k0#3"), std::string::npos) << r.violations[0];
  EXPECT_NE(r.violations[0].find("k0#2"), std::string::npos) << r.violations[0];
}

TEST(Checkers, LeaseKeptPassesOnRefusalsNearOrPastTheDeadlineAndWithoutKeepers) {
  // Refused once the deadline has passed (the keeper was silent), or with no acknowledged
  // renewal answered before it was sent: the cluster may have been right.
  const std::vector<Op> ops = {
      Renew("k0", 1, 7, 0, 5, Outcome::kOk, 3000, "grant"),
      Renew("k0", 2, 7, 3500, 3505, Outcome::kFail),
      Renew("k1", 1, 8, 0, 4000, Outcome::kOk, 3000, "grant"),
      Renew("k1", 2, 8, 1000, 4000, Outcome::kFail),  // the grant was not yet answered
      Renew("k1", 3, 8, 2000, 2100, Outcome::kInfo),  // a timeout is no refusal
  };
  EXPECT_EQ(CheckLeaseKept(ops, Ms(1000)).verdict, Verdict::kPass)
      << CheckLeaseKept(ops, Ms(1000)).Format();
  const Report none = CheckLeaseKept({}, Ms(1000));
  EXPECT_EQ(none.verdict, Verdict::kPass);
  EXPECT_NE(none.summary.find("no keeper"), std::string::npos);
}

TEST(Checkers, CoveragePassesAValidRunAndFailsOneThatDidTooLittle) {
  ValidRun run;
  EXPECT_EQ(CheckCoverage(run.ops, run.log,
                          {.min_grants_per_lock = 2, .max_gaps = 0, .expect_fence_rejection = true})
                .verdict,
            Verdict::kPass)
      << CheckCoverage(run.ops, run.log, {}).Format();
  // Too few grants on a lock, a gap, no fence refusal.
  std::vector<Op> ops = run.ops;
  ops.push_back(WatchMark("gap", 120, 130));
  std::vector<ResourceRecord> accepted(run.log.begin(), run.log.end() - 1);
  const Report r = CheckCoverage(
      ops, accepted, {.min_grants_per_lock = 3, .max_gaps = 0, .expect_fence_rejection = true});
  EXPECT_EQ(r.verdict, Verdict::kFail);
  EXPECT_EQ(r.violations.size(), 3u) << r.Format();
  // Nothing done at all.
  EXPECT_EQ(CheckCoverage({}, {}, {}).verdict, Verdict::kFail);
  // Grants outside the watcher's coverage.
  std::vector<Op> unwatched = {Acquire("w1", 1, "hot/0", X, 0, 10, Outcome::kOk, 5, 1),
                               WatchMark("watch_start", 50, 50), WatchMark("watch_end", 60, 60)};
  ExpectFailNaming(CheckCoverage(unwatched, {}, {}), "inside the watcher's coverage");
}

}  // namespace
}  // namespace lockd::faults
