// A client process SIGSTOPped past its TTL (issue 14): examples/wallet/demo.sh stops worker A
// after its last "still held" check, lets worker B take the lock and withdraw, resumes A; the
// library must report A's lock lost and the wallet service must reject A's stale withdrawal.
#include <gtest/gtest.h>

#include "support/process.h"

namespace lockd {
namespace {

using namespace std::chrono_literals;

TEST(ClientFencing, APausedWorkerIsToldItLostTheLockAndItsStaleWithdrawalIsRejected) {
  auto r = testing::RunCommand(
      {"/bin/sh", "-c", LOCKD_SOURCE_DIR "/examples/wallet/demo.sh " LOCKD_BUILD_DIR " 2>&1"}, 90s);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("A: LOST the lock"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("REJECTED stale fence"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("B: withdraw 50 with fence"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("A: lock held at exit: no"), std::string::npos) << r.output;
  // The balance: 100 − B's 50; A's 70 never happened.
  EXPECT_NE(r.output.find("-> OK 50"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lockd
