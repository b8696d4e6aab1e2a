// lockd::Fence, the resource's side of fencing (design guarantee 2).
#include "lockd/fence.h"

#include <gtest/gtest.h>

namespace lockd {
namespace {

using client::StatusCode;

TEST(FenceTest, RejectsASmallerFenceAfterALargerOnePerLock) {
  Fence f;
  EXPECT_TRUE(f.Check("wallet/1", 5).ok());
  EXPECT_TRUE(f.Check("wallet/1", 5).ok()) << "one holder sends its fence many times";
  EXPECT_TRUE(f.Check("wallet/1", 9).ok());
  auto stale = f.Check("wallet/1", 5);
  EXPECT_EQ(stale.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.message().find("stale fence 5"), std::string::npos) << stale.message();
  EXPECT_NE(stale.message().find("9"), std::string::npos);
  EXPECT_EQ(f.Largest("wallet/1"), 9u);
  EXPECT_TRUE(f.Check("wallet/2", 3).ok()) << "fences are per lock name";
}

TEST(FenceTest, FenceZeroIsInvalidAndChangesNothing) {
  Fence f;
  EXPECT_EQ(f.Check("a", 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f.Largest("a"), 0u);
  EXPECT_TRUE(f.Snapshot().empty());
}

TEST(FenceTest, CheckAndApplyRunsOnlyWhenAdmitted) {
  Fence f;
  int applied = 0;
  EXPECT_TRUE(f.CheckAndApply("a", 4, [&] { ++applied; }).ok());
  EXPECT_FALSE(f.CheckAndApply("a", 3, [&] { ++applied; }).ok());
  EXPECT_EQ(applied, 1);
}

TEST(FenceTest, RestoreRaisesButNeverLowers) {
  Fence f;
  ASSERT_TRUE(f.Check("a", 10).ok());
  f.Restore({{"a", 4}, {"b", 7}});
  EXPECT_EQ(f.Largest("a"), 10u);
  EXPECT_EQ(f.Largest("b"), 7u);
  EXPECT_FALSE(f.Check("b", 6).ok());
}

}  // namespace
}  // namespace lockd
