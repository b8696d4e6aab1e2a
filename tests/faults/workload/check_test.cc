// faults_check end to end on small recorded files: exit 0 and every checker PASS on a valid run;
// exit 1 and a report naming the operation on a planted violation; exit 2 on a missing file; exit 3
// when a checker could not decide.
#include <gtest/gtest.h>

#include <string>

#include "faults/history/history.h"
#include "faults/history/test_history.h"
#include "support/process.h"

namespace lockd::faults {
namespace {

using namespace std::chrono_literals;
using namespace test;

class FaultsCheck : public ::testing::Test {
 protected:
  void Write(const std::string& name, const std::vector<std::string>& lines) {
    JsonLinesWriter w(dir_.path() + "/" + name);
    for (const std::string& l : lines) w.Write(l);
  }
  testing::CommandResult Run() {
    return testing::RunCommand(
        {FAULTS_CHECK_BIN, "--history", dir_.path() + "/w1.jsonl," + dir_.path() + "/watch.jsonl",
         "--resource-log", dir_.path() + "/res.jsonl", "--faults", dir_.path() + "/faults.jsonl",
         "--cleanup-bound-ms", "1000"},
        60s);
  }
  void WriteValidRun(int64_t increment_value) {
    Op inc = Acquire("w1", 2, "hot/0", LockMode::kExclusive, 20, 22, Outcome::kOk, 5, 1);
    inc.kind = OpKind::kIncrement;
    inc.value = increment_value;
    Write("w1.jsonl",
          {ToJson(Acquire("w1", 1, "hot/0", LockMode::kExclusive, 0, 10, Outcome::kOk, 5, 1)),
           ToJson(inc), ToJson(Release("w1", 3, "hot/0", 5, 1, 50, 60))});
    Write("watch.jsonl",
          {ToJson(WatchMark("watch_start", 0, 0)), ToJson(Seen("acquired", "hot/0", 1, 5, 3)),
           ToJson(Seen("released", "hot/0", 1, 5, 4)), ToJson(WatchMark("watch_end", 200, 200))});
    Write("res.jsonl", {ToJson(Res(21, "hot/0", true, 5, increment_value, true, 5, "w1", 2))});
    Write("faults.jsonl", {ToJson(FaultEvent{Ms(5), "kill", "node1", "leader"})});
  }
  testing::TempDir dir_;
};

TEST_F(FaultsCheck, ValidRunPassesEveryChecker) {
  WriteValidRun(1);
  // The clean-up: an inspection that finds the lock free.
  JsonLinesWriter(dir_.path() + "/w1.jsonl")
      .Write(ToJson(Inspect("cleanup", 1, "hot/0", 70, 75, {})));
  auto r = Run();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[fencing] PASS"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[linearizability] PASS"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("after kill (1x)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no violation"), std::string::npos) << r.output;
}

TEST_F(FaultsCheck, PlantedLostUpdateFailsNamingTheOp) {
  WriteValidRun(7);  // the write skipped six values: increments were lost
  JsonLinesWriter(dir_.path() + "/w1.jsonl")
      .Write(ToJson(Inspect("cleanup", 1, "hot/0", 70, 75, {})));
  auto r = Run();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("[no-lost-update] FAIL"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("by w1#2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("VIOLATIONS FOUND"), std::string::npos) << r.output;
}

TEST_F(FaultsCheck, AnUndecidedCheckerFailsTheRunUnlessAllowed) {
  WriteValidRun(1);
  JsonLinesWriter(dir_.path() + "/w1.jsonl")
      .Write(ToJson(Inspect("cleanup", 1, "hot/0", 70, 75, {})));
  std::vector<std::string> argv = {FAULTS_CHECK_BIN,
                                   "--history",
                                   dir_.path() + "/w1.jsonl," + dir_.path() + "/watch.jsonl",
                                   "--resource-log",
                                   dir_.path() + "/res.jsonl",
                                   "--cleanup-bound-ms",
                                   "1000",
                                   "--search-budget",
                                   "1"};
  auto r = testing::RunCommand(argv, 60s);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("[linearizability] UNKNOWN"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("NOT FULLY CHECKED"), std::string::npos) << r.output;
  argv.push_back("--allow-unknown");
  r = testing::RunCommand(argv, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(FaultsCheck, MissingFileIsAnErrorNotAPass) {
  WriteValidRun(1);
  auto r = testing::RunCommand({FAULTS_CHECK_BIN, "--history", dir_.path() + "/nope.jsonl",
                                "--resource-log", dir_.path() + "/res.jsonl"},
                               60s);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cannot open"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lockd::faults
