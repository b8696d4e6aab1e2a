// Checker 5: the lock model and the bounded search, on synthetic histories.
#include "faults/history/linearizability.h"

#include <gtest/gtest.h>

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
