// The network-namespace harness itself (issue 17): a 3-node cluster in namespaces serves clients
// in the root namespace; node lifecycle (kill -9, SIGSTOP/SIGCONT, restart, wipe) does what it
// says; and everything the harness creates is gone afterwards, also what a crashed run left.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "faults/faults_support.h"
#include "support/process.h"

namespace lockd::faults {
namespace {

using namespace std::chrono_literals;

bool NetnsExists(const std::string& name) {
  auto r = testing::RunCommand({"/usr/sbin/ip", "netns", "list"}, 10s);
  return r.output.find(name) != std::string::npos;
}

bool LinkExists(const std::string& name) {
  return testing::RunCommand({"/usr/sbin/ip", "link", "show", name}, 10s).exit_code == 0;
}

TEST(NetnsHarness, AClusterInNamespacesServesRootClientsAndIsRemovedAfterwards) {
  LOCKD_REQUIRE_NETNS();
  std::string prefix, bridge;
  std::vector<std::string> namespaces;
  {
    std::string error;
    auto c = NetnsCluster::Create({}, &error);
    ASSERT_NE(c, nullptr) << error;
    prefix = c->network().prefix();
    bridge = c->network().bridge();
    for (int i = 0; i < c->network().size(); ++i) namespaces.push_back(c->network().ns(i));
    for (const auto& ns : namespaces) EXPECT_TRUE(NetnsExists(ns)) << ns;
    EXPECT_TRUE(LinkExists(bridge));
    // Each node sees only its own address and loopback.
    auto addrs = c->network().RunIn(0, {"/usr/sbin/ip", "-o", "-4", "addr"});
    EXPECT_NE(addrs.output.find(c->network().node_ip(0)), std::string::npos) << addrs.output;
    EXPECT_NE(addrs.output.find("127.0.0.1"), std::string::npos) << addrs.output;

    const int leader = c->WaitForLeader(30s);
    ASSERT_GE(leader, 0) << c->StatusSummary() << c->LogTails();
    auto client = ConnectTo(c->endpoints());
    ASSERT_NE(client, nullptr);
    EXPECT_TRUE(CommitWithin(*client, 20s).has_value()) << c->StatusSummary();
  }
  for (const auto& ns : namespaces) EXPECT_FALSE(NetnsExists(ns)) << ns << " left behind";
  EXPECT_FALSE(LinkExists(bridge)) << bridge << " left behind";
}

TEST(NetnsHarness, LeftoversOfACrashedRunAreRemovedAtStart) {
  LOCKD_REQUIRE_NETNS();
  // A pid that does not run: a child that exited and was reaped.
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  ASSERT_GT(dead, 0);
  waitpid(dead, nullptr, 0);
  const std::string ns = "lkf" + std::to_string(dead) + "n1";
  const std::string br = "lkf" + std::to_string(dead) + "br";
  ASSERT_EQ(RunInRoot({"/usr/sbin/ip", "netns", "add", ns}), "");
  ASSERT_EQ(RunInRoot({"/usr/sbin/ip", "link", "add", br, "type", "bridge"}), "");
  // A process left inside the namespace, as a killed test leaves its nodes.
  testing::Process sleeper({"/usr/sbin/ip", "netns", "exec", ns, "/bin/sleep", "600"}, "/dev/null");
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return !testing::RunCommand({"/usr/sbin/ip", "netns", "pids", ns}, 5s).output.empty();
      },
      5s));
  const auto removed = CleanLeftovers();
  EXPECT_FALSE(NetnsExists(ns));
  EXPECT_FALSE(LinkExists(br));
  EXPECT_TRUE(sleeper.Wait(5s).has_value()) << "the process in the leftover namespace still runs";
  std::string all;
  for (const auto& r : removed) all += r + "\n";
  EXPECT_NE(all.find(ns), std::string::npos) << all;
}

TEST(NetnsHarness, NodesCanBeKilledPausedRestartedAndWiped) {
  LOCKD_REQUIRE_NETNS();
  std::string error;
  auto c = NetnsCluster::Create({}, &error);
  ASSERT_NE(c, nullptr) << error;
  int leader = c->WaitForLeader(30s);
  ASSERT_GE(leader, 0) << c->StatusSummary();
  const int follower = (leader + 1) % 3;

  c->Kill(follower);
  EXPECT_FALSE(c->running(follower));
  EXPECT_EQ(c->ExitCode(follower), std::optional<int>(128 + SIGKILL));
  c->Start(follower);
  EXPECT_TRUE(c->running(follower));

  c->Pause(follower);
  v1::StatusResponse st;
  EXPECT_FALSE(c->Status(follower, &st, 500ms).ok()) << "a stopped node answered";
  c->Resume(follower);
  EXPECT_TRUE(testing::WaitFor([&] { return c->Status(follower, &st, 500ms).ok(); }, 10s));

  c->Restart(follower);
  EXPECT_TRUE(testing::WaitFor(
      [&] { return c->Status(follower, &st, 500ms).ok() && st.leader_id() != 0; }, 20s))
      << c->LogTail(follower);

  // Wiped: the data dir is empty afterwards, and the node comes back with a new incarnation.
  c->Stop(follower);
  c->Wipe(follower);
  EXPECT_TRUE(std::filesystem::is_empty(c->data_dir(follower)));
}

}  // namespace
}  // namespace lockd::faults
