// The planted-bug switch (base/unsafe_faults.h): a bad name is refused with the known ones and
// switches nothing on. (Good names are not switched on here: the switch is process-wide.)
#include "base/unsafe_faults.h"

#include <gtest/gtest.h>

namespace lockd::unsafe {
namespace {

TEST(UnsafeFaults, AnUnknownNameIsRefusedNamingTheKnownOnesAndSwitchesNothingOn) {
  const Status s = Enable("skip-everything");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("skip-everything"), std::string::npos) << s.message();
  for (const char* known :
       {"skip-new-leader-rule", "skip-token-increment", "stall-rule-old-order"}) {
    EXPECT_NE(s.message().find(known), std::string::npos) << s.message();
  }
  EXPECT_EQ(Enable("").code(), StatusCode::kInvalidArgument);
  for (Fault f :
       {Fault::kSkipNewLeaderRule, Fault::kSkipTokenIncrement, Fault::kStallRuleOldOrder}) {
    EXPECT_FALSE(Enabled(f));
  }
}

}  // namespace
}  // namespace lockd::unsafe
