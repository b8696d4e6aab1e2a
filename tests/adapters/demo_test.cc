// The README's GC-pause demo (examples/fencing/demo.sh), run as a user runs it: the paused
// worker's stale write is refused, and B's withdrawal stands. Only its PostgreSQL half: the Redis
// half is the same script path, and adapters_redis_test runs that scenario already.
#include <gtest/gtest.h>
#include <signal.h>

#include "adapters/resource_servers.h"
#include "support/process.h"

namespace lockd::adapters_test {
namespace {

using namespace std::chrono_literals;

TEST(FencingDemo, ThePostgresDemoPrintsTheRefusedStaleWrite) {
  const std::string missing = PostgresServer::Missing();
  if (!missing.empty()) GTEST_SKIP() << "fencing demo skipped: " << missing;
  testing::TempDir dir;
  // Its own process group, killed whole on a timeout (the script's EXIT trap cannot run after a
  // SIGKILL, and its servers are in that group); SIGTERM lets the trap run if this test dies.
  testing::SpawnOptions spawn;
  spawn.own_process_group = true;
  spawn.death_signal = SIGTERM;
  testing::Process demo(
      {"/bin/bash", LOCKD_SOURCE_DIR "/examples/fencing/demo.sh", LOCKD_BUILD_DIR, "postgres"},
      dir.path() + "/demo.log", spawn);
  const auto code = demo.Wait(120s);
  if (!code) {
    demo.SignalGroup(SIGKILL);
    demo.Kill();
  }
  const std::string out = demo.ReadLog();
  ASSERT_EQ(code, std::optional<int>(0)) << out;
  for (const char* expected :
       {"-> REJECTED LF001: lockd_fence: stale fence",
        "demo: PostgreSQL: A's stale write was refused", "alice   |      50"}) {
    EXPECT_NE(out.find(expected), std::string::npos) << expected << "\n" << out;
  }
}

}  // namespace
}  // namespace lockd::adapters_test
