// The README's GC-pause demo (examples/fencing/demo.sh), run as a user runs it, each half on its
// own: the paused worker's stale write is refused with the adapter's stale-fence error (demo.sh
// checks for that error, not for any refusal), and B's withdrawal stands.
#include <gtest/gtest.h>
#include <signal.h>

#include "adapters/resource_servers.h"
#include "support/process.h"

namespace lockd::adapters_test {
namespace {

using namespace std::chrono_literals;

/// Runs `demo.sh <build dir> <which>` and returns its output, failing the test unless it exits 0.
std::string RunDemo(const std::string& which) {
  testing::TempDir dir;
  // Its own process group, killed whole on a timeout (the script's EXIT trap cannot run after a
  // SIGKILL, and its servers are in that group); SIGTERM lets the trap run if this test dies.
  testing::SpawnOptions spawn;
  spawn.own_process_group = true;
  spawn.death_signal = SIGTERM;
  testing::Process demo(
      {"/bin/bash", LOCKD_SOURCE_DIR "/examples/fencing/demo.sh", LOCKD_BUILD_DIR, which},
      dir.path() + "/demo.log", spawn);
  const auto code = demo.Wait(120s);
  if (!code) {
    demo.SignalGroup(SIGKILL);
    demo.Kill();
  }
  const std::string out = demo.ReadLog();
  EXPECT_EQ(code, std::optional<int>(0)) << out;
  return out;
}

TEST(FencingDemo, ThePostgresDemoPrintsTheRefusedStaleWrite) {
  const std::string missing = PostgresServer::Missing();
  if (!missing.empty()) GTEST_SKIP() << "fencing demo skipped: " << missing;
  const std::string out = RunDemo("postgres");
  for (const char* expected :
       {"-> REJECTED LF001: lockd_fence: stale fence",
        "demo: PostgreSQL: A's stale write was refused", "alice   |      50"}) {
    EXPECT_NE(out.find(expected), std::string::npos) << expected << "\n" << out;
  }
}

TEST(FencingDemo, TheRedisDemoPrintsTheRefusedStaleWrite) {
  const std::string missing = RedisServer::Missing();
  if (!missing.empty()) GTEST_SKIP() << "fencing demo skipped: " << missing;
  const std::string out = RunDemo("redis");
  for (const char* expected :
       {"-> REJECTED LOCKD_STALE lockd_fence: stale fence",
        "demo: Redis: A's stale write was refused", "demo: Redis: balance 50, recorded fence"}) {
    EXPECT_NE(out.find(expected), std::string::npos) << expected << "\n" << out;
  }
}

}  // namespace
}  // namespace lockd::adapters_test
