// The README's GC-pause demos (examples/fencing/demo.sh), run as a user runs them: the paused
// worker's stale write is refused by PostgreSQL and by Redis, and B's withdrawal stands.
#include <gtest/gtest.h>

#include "adapters/resource_servers.h"
#include "support/process.h"

namespace lockd::adapters_test {
namespace {

using namespace std::chrono_literals;

TEST(FencingDemo, BothDemosPrintTheRefusedStaleWrite) {
  const std::string missing = PostgresServer::Missing() + RedisServer::Missing();
  if (!missing.empty()) GTEST_SKIP() << "fencing demo skipped: " << missing;
  auto r = testing::RunCommand(
      {"/bin/sh", "-c", LOCKD_SOURCE_DIR "/examples/fencing/demo.sh " LOCKD_BUILD_DIR " both 2>&1"},
      120s);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* expected :
       {"-> REJECTED LF001: lockd_fence: stale fence", "-> REJECTED LOCKD_STALE lockd_fence: stale",
        "demo: PostgreSQL: A's stale write was refused", "demo: Redis: A's stale write was refused",
        "demo: Redis: balance 50", "alice   |      50"}) {
    EXPECT_NE(r.output.find(expected), std::string::npos) << expected << "\n" << r.output;
  }
}

}  // namespace
}  // namespace lockd::adapters_test
