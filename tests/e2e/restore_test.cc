// Restore's edges on real processes (issue 15; docs/operations.md "Backup and restore"): a
// restored cluster whose leader cannot start it says why where an operator looks (Status, the
// health endpoint, lockctl status), not only in its log.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "base/clock.h"
#include "e2e/cluster_harness.h"
#include "lock/state_machine.h"
#include "storage/backup_file.h"

namespace lockd::e2e {
namespace {

namespace fs = std::filesystem;
using testing::RunCommand;

std::string InitialCluster(Cluster& c) {
  std::string s;
  for (int i = 0; i < c.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(c.id(i)) + "=" + c.peer_addr(i) + "/" + c.client_addr(i);
  }
  return s;
}

testing::CommandResult Restore(Cluster& c, int i, const std::string& file,
                               std::vector<std::string> extra = {}, std::string data_dir = "") {
  std::vector<std::string> argv = {LOCKD_BINARY,
                                   "restore",
                                   "--from",
                                   file,
                                   "--data-dir",
                                   data_dir.empty() ? c.data_dir(i) : data_dir,
                                   "--id",
                                   std::to_string(c.id(i)),
                                   "--initial-cluster",
                                   InitialCluster(c),
                                   "--cluster-token",
                                   "restored"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return RunCommand(argv, 30s);
}

/// An empty state's backup taken `ahead` seconds after now (a backup node whose clock ran ahead).
std::string BackupFromTheFuture(int64_t ahead) {
  storage::Backup b;
  b.state = lock::LockStateMachine(lock::Limits{}).Snapshot();
  b.header.index = 7;
  b.header.term = 2;
  b.header.cluster_id = "0123456789abcdef";
  b.header.node_id = 1;
  b.header.taken_unix_seconds = WallSeconds() + ahead;
  return storage::EncodeBackup(b);
}

TEST(Restore, ALeaderThatCannotStartTheRestoredClusterSaysWhyInStatusHealthAndLockctl) {
  ClusterOptions o;
  o.nodes = 1;
  o.start = false;
  Cluster cluster(o);
  const std::string file = cluster.dir() + "/ahead.lockdbak";
  const std::string backup = BackupFromTheFuture(3600);
  std::ofstream(file, std::ios::binary) << backup;

  // lockd restore itself refuses a backup an hour ahead of this clock, unless given a floor.
  auto refused = Restore(cluster, 0, file);
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_NE(refused.output.find("behind the backup"), std::string::npos) << refused.output;
  auto r = Restore(cluster, 0, file, {"--token-floor", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // The member's seed as a machine whose clock went back after the restore would leave it (no
  // floor): its leader cannot count the seconds since the backup, and must not start.
  ASSERT_TRUE(storage::WriteRestoreSeed(cluster.data_dir(0), {0, WallSeconds(), backup}).ok());
  cluster.Start(0);
  v1::StatusResponse st;
  grpc::Status s;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        s = cluster.Status(0, &st, 2s);
        return s.error_message().find("cannot start the cluster restored") != std::string::npos;
      },
      15s))
      << Describe(s) << cluster.LogTails();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(s.error_message().find("behind the backup"), std::string::npos) << Describe(s);

  // Health follows the node's status a moment later (its watcher polls it; on a loaded machine
  // the first answer can still be the earlier reason, "cluster id not decided yet").
  testing::CommandResult health;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        health =
            RunCommand({"/usr/bin/curl", "-s", "http://" + cluster.http_addr(0) + "/readyz"}, 20s);
        return health.output.rfind("NOT_READY: cannot start the cluster restored", 0) == 0;
      },
      10s))
      << health.output;
  auto status = RunCommand(
      {LOCKCTL_BINARY, "--endpoints", cluster.client_addr(0), "--timeout-ms", "3000", "status"},
      20s);
  EXPECT_EQ(status.exit_code, 4) << status.output;  // UNAVAILABLE (docs/cli.md, exit codes)
  EXPECT_NE(status.output.find("behind the backup"), std::string::npos) << status.output;

  // The operator's remedy, a floor (here put straight into the seed): the cluster starts, its
  // counters at the floor, and the problem is gone from every place it was shown.
  ASSERT_EQ(cluster.Stop(0), 0);
  constexpr uint64_t kFloor = uint64_t{1} << 40;
  ASSERT_TRUE(storage::WriteRestoreSeed(cluster.data_dir(0), {kFloor, WallSeconds(), backup}).ok());
  cluster.Start(0);
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.LogTails();
  ASSERT_TRUE(cluster.Status(0, &st).ok());
  EXPECT_EQ(st.token_counter(), kFloor);
  // Health follows the node's status a moment later (its watcher polls it).
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        health =
            RunCommand({"/usr/bin/curl", "-s", "http://" + cluster.http_addr(0) + "/readyz"}, 20s);
        return health.output == "READY\n";
      },
      10s))
      << health.output;
}

TEST(Restore, FollowersOfALeaderThatCannotStartTheRestoredClusterAreNotReady) {
  // Three members restored, each seed as a clock gone back would leave it: the leader cannot
  // start the cluster, so no cluster id is ever decided. Its followers know a leader, but every
  // lockd.v1 call is refused on them: /readyz must not say READY (it did, as a leader was known).
  ClusterOptions o;
  o.nodes = 3;
  o.start = false;
  Cluster cluster(o);
  const std::string file = cluster.dir() + "/ahead.lockdbak";
  const std::string backup = BackupFromTheFuture(3600);
  std::ofstream(file, std::ios::binary) << backup;
  for (int i = 0; i < cluster.size(); ++i) {
    auto r = Restore(cluster, i, file, {"--token-floor", "1000"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_TRUE(storage::WriteRestoreSeed(cluster.data_dir(i), {0, WallSeconds(), backup}).ok());
  }
  cluster.StartAll();
  auto readyz = [&](int i) {
    return RunCommand({"/usr/bin/curl", "-s", "http://" + cluster.http_addr(i) + "/readyz"}, 20s)
        .output;
  };
  int leader = -1;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        for (int i = 0; i < cluster.size(); ++i) {
          if (readyz(i).rfind("NOT_READY: cannot start the cluster restored", 0) == 0) leader = i;
        }
        return leader >= 0;
      },
      20s))
      << cluster.LogTails();
  // Each follower knows the leader (its log says so: the node's watcher logs every leader it
  // learns), so "cluster id not decided yet" below is checked where "no leader known" does not
  // apply; then, for a few seconds, none is ready.
  const std::string knows = ": leader is " + std::to_string(cluster.id(leader));
  for (int i = 0; i < cluster.size(); ++i) {
    if (i == leader) continue;
    const std::string line = "node " + std::to_string(cluster.id(i)) + knows;
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          std::ifstream log(cluster.log_path(i));
          const std::string text((std::istreambuf_iterator<char>(log)),
                                 std::istreambuf_iterator<char>());
          return text.find(line) != std::string::npos;
        },
        10s))
        << "node " << i << " never logged \"" << line << "\"\n"
        << cluster.LogTail(i);
  }
  const auto until = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < cluster.size(); ++i) {
      if (i == leader) continue;
      const std::string why = readyz(i);
      ASSERT_EQ(why.rfind("NOT_READY: cluster id not decided yet", 0), 0u)
          << "node " << i << ": " << why;
    }
    std::this_thread::sleep_for(200ms);
  }
}

TEST(Restore, ADataDirRestoredWithoutItsSeedRefusesToStartUndecided) {
  ClusterOptions o;
  o.nodes = 1;
  o.start = false;
  Cluster cluster(o);
  const std::string file = cluster.dir() + "/old.lockdbak";
  std::ofstream(file, std::ios::binary) << BackupFromTheFuture(-5);
  auto r = Restore(cluster, 0, file);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // A restore interrupted before its seed (the commit marker) was written may be run again into
  // the same folder.
  ASSERT_TRUE(fs::remove(cluster.data_dir(0) + "/restore-seed"));
  r = Restore(cluster, 0, file);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(cluster.data_dir(0) + "/restore-seed"));
  // Without its seed (lost, or never written) the member would lead the restored cluster from
  // counter 0: it refuses to start.
  ASSERT_TRUE(fs::remove(cluster.data_dir(0) + "/restore-seed"));
  cluster.Start(0);
  ASSERT_TRUE(testing::WaitFor([&] { return !cluster.running(0); }, 15s));
  EXPECT_NE(cluster.LogTail(0).find("restore-seed file is missing"), std::string::npos)
      << cluster.LogTail(0);
}

TEST(Restore, PathsAreNormalisedAndNothingRestoreDidNotCreateIsRemoved) {
  ClusterOptions o;
  o.nodes = 1;
  o.start = false;
  Cluster cluster(o);
  const std::string file = cluster.dir() + "/old.lockdbak";
  std::ofstream(file, std::ios::binary) << BackupFromTheFuture(-5);
  const std::string dir = cluster.data_dir(0);
  // A folder an earlier tool left under the name the old restore used as its temporary: kept.
  fs::create_directories(dir + ".restoring");
  std::ofstream(dir + ".restoring/keep") << "x";

  // A trailing slash names the same (missing) folder: built beside it, renamed into place.
  auto r = Restore(cluster, 0, file, {}, dir + "/");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/cluster"));
  EXPECT_TRUE(fs::exists(dir + "/restore-seed"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);
  EXPECT_TRUE(fs::exists(dir + ".restoring/keep"));
  for (const auto& e : fs::directory_iterator(fs::path(dir).parent_path())) {
    EXPECT_EQ(e.path().filename().string().find(".restoring-"), std::string::npos) << e.path();
  }

  // An existing empty folder holding only a file system's lost+found (a mount point, which
  // cannot be renamed over): built in place, lost+found untouched.
  fs::remove_all(dir);
  fs::create_directories(dir + "/lost+found");
  std::ofstream(dir + "/lost+found/#123") << "y";
  r = Restore(cluster, 0, file);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/restore-seed"));
  EXPECT_TRUE(fs::exists(dir + "/lost+found/#123"));
  cluster.Start(0);
  EXPECT_GE(cluster.WaitForReady(), 0) << cluster.LogTails();
}

TEST(Restore, AMemberRestoredWithAnotherTokenFloorIsRefusedByItsPeers) {
  ClusterOptions o;
  o.start = false;
  Cluster cluster(o);
  const std::string file = cluster.dir() + "/old.lockdbak";
  std::ofstream(file, std::ios::binary) << BackupFromTheFuture(-5);
  for (int i = 0; i < 3; ++i) {
    auto r = Restore(cluster, i, file, {"--token-floor", i == 2 ? "7000000000000" : "0"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  cluster.StartAll();
  // Nodes 1 and 2 (index 0, 1) agree and start the cluster; the third is refused, and says why.
  v1::StatusResponse st;
  grpc::Status s;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        s = cluster.Status(2, &st);
        return s.error_message().find("refuses this node") != std::string::npos &&
               cluster.Status(0, &st).ok();
      },
      20s))
      << Describe(s) << cluster.LogTails();
  EXPECT_NE(s.error_message().find("--token-floor"), std::string::npos) << Describe(s);
  EXPECT_GE(st.token_counter(), uint64_t{1} << 32);
}

}  // namespace
}  // namespace lockd::e2e
