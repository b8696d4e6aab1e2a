// Records and their JSON lines: every field survives a round trip, torn lines are skipped with a
// warning, bad input is refused with a reason.
#include "faults/history/history.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace lockd::faults {
namespace {

TEST(History, OpRoundTripsThroughJson) {
  Op op;
  op.process = "w\"3";
  op.id = 17;
  op.kind = OpKind::kInspect;
  op.lock = "hot/1";
  op.mode = LockMode::kShared;
  op.invoke_ns = 1'000'000'001;
  op.complete_ns = 1'000'000'999;
  op.outcome = Outcome::kInfo;
  op.token = 9;
  op.fence = 8;
  op.lease = 4;
  op.valid_until_ns = 5'000'000'000;
  op.value = -3;
  op.holders = {{4, LockMode::kShared, 8}, {5, LockMode::kShared, 9}};
  op.event = "expired";
  op.index = 77;
  op.event_no = 2;
  op.error = "UNAVAILABLE: no leader\n";
  std::string error;
  auto obj = ParseJsonObject(ToJson(op), &error);
  ASSERT_TRUE(obj) << error;
  auto back = OpFromJson(*obj, &error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(ToJson(*back), ToJson(op));
  EXPECT_EQ(back->holders, op.holders);
  EXPECT_EQ(back->error, op.error);
}

TEST(History, ResourceRecordAndFaultEventRoundTrip) {
  ResourceRecord r{12, "hot/0", true, 5, 41, false, 6, "w1", 3};
  std::string error;
  auto rr = ResourceRecordFromJson(*ParseJsonObject(ToJson(r), &error), &error);
  ASSERT_TRUE(rr) << error;
  EXPECT_EQ(ToJson(*rr), ToJson(r));
  // The nemeses' file may give the target as a number.
  auto e = FaultEventFromJson(
      *ParseJsonObject(R"({"t_ns":5,"kind":"kill","target":2,"detail":"leader"})", &error), &error);
  ASSERT_TRUE(e) << error;
  EXPECT_EQ(e->kind, "kill");
  EXPECT_EQ(e->target, "2");
  EXPECT_EQ(e->t_ns, 5);
}

TEST(History, BadInputIsRefusedWithAReason) {
  std::string error;
  EXPECT_FALSE(ParseJsonObject("[1,2]", &error));
  EXPECT_FALSE(error.empty());
  EXPECT_FALSE(ParseJsonObject(R"({"a":1)", &error));
  EXPECT_FALSE(ParseJsonObject(R"({"a":1} x)", &error));
  auto obj = ParseJsonObject(R"({"kind":"steal","outcome":"ok"})", &error);
  ASSERT_TRUE(obj);
  EXPECT_FALSE(OpFromJson(*obj, &error));
  obj = ParseJsonObject(R"({"kind":"read","outcome":"ok","token":"x"})", &error);
  ASSERT_TRUE(obj);
  EXPECT_FALSE(OpFromJson(*obj, &error));
  EXPECT_NE(error.find("token"), std::string::npos) << error;
}

TEST(History, WriterAppendsAndReaderSkipsATornLine) {
  char path[] = "/tmp/lockd-history-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    JsonLinesWriter w(path);
    ASSERT_TRUE(w.ok());
    Op a;
    a.process = "w1";
    a.id = 1;
    w.Write(ToJson(a));
    a.id = 2;
    w.Write(ToJson(a));
  }
  {
    std::ofstream torn(path, std::ios::app);
    torn << R"({"process":"w1","op":3,"kin)";
  }
  auto loaded = ReadOps(path);
  EXPECT_TRUE(loaded.error.empty());
  ASSERT_EQ(loaded.records.size(), 2u);
  EXPECT_EQ(loaded.records[1].id, 2u);
  ASSERT_EQ(loaded.warnings.size(), 1u);
  EXPECT_NE(loaded.warnings[0].find(":3:"), std::string::npos) << loaded.warnings[0];
  std::remove(path);
  EXPECT_FALSE(ReadOps(path).error.empty());
}

}  // namespace
}  // namespace lockd::faults
