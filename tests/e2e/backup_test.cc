// Backup and restore on real processes (issue 15; docs/operations.md "Backup and restore"; design
// brief guarantee 8). A 3-node cluster serves a client that acquires and releases continuously;
// `lockctl backup` streams a backup from a follower in the middle of it; the load goes on after
// the backup. The cluster is then lost (stopped) and rebuilt from the file with `lockd restore` on
// the same addresses, as an operator would. The new cluster has a new cluster id, no leases and no
// locks; an old lease's Renew is NOT_FOUND; the client library that held a lease across it treats
// the changed cluster id as loss; and its first token is larger than every token the old cluster
// issued, including those issued after the backup. A truncated or corrupted file is refused by
// `lockd restore` (exit != 0, the problem named) and the data dir is left as it was.
// Snapshot answers its index and size (also through `lockctl snapshot`).
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/clock.h"
#include "e2e/cluster_harness.h"
#include "lockd/client.h"
#include "storage/backup_file.h"

namespace lockd::e2e {
namespace {

namespace fs = std::filesystem;
using testing::RunCommand;
constexpr v1::LockMode kEx = v1::EXCLUSIVE;

std::string InitialCluster(Cluster& c) {
  std::string s;
  for (int i = 0; i < c.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(c.id(i)) + "=" + c.peer_addr(i) + "/" + c.client_addr(i);
  }
  return s;
}

testing::CommandResult Lockctl(const std::string& endpoint, std::vector<std::string> args) {
  std::vector<std::string> argv = {LOCKCTL_BINARY, "--endpoints", endpoint};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, 30s);
}

testing::CommandResult Restore(Cluster& c, int i, const std::string& file,
                               const std::string& data_dir) {
  return RunCommand({LOCKD_BINARY, "restore", "--from", file, "--data-dir", data_dir, "--id",
                     std::to_string(c.id(i)), "--initial-cluster", InitialCluster(c),
                     "--cluster-token", "restored"},
                    30s);
}

/// The unsigned value after `"key":` in a one-line JSON object (0 if absent).
uint64_t JsonNumber(const std::string& json, const std::string& key) {
  const auto at = json.find("\"" + key + "\":");
  return at == std::string::npos ? 0 : std::stoull(json.substr(at + key.size() + 3));
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Sha256Of(const std::string& file) {
  return storage::BackupDigestHex(file);
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

/// Every member of the restored `cluster` reports the cluster id and starting token counter of
/// `leader`'s status `st`.
void ExpectEveryMemberAgrees(Cluster& cluster, const v1::StatusResponse& st) {
  for (int i = 0; i < cluster.size(); ++i) {
    v1::StatusResponse s;
    ASSERT_TRUE(testing::WaitFor(
        [&] { return cluster.Status(i, &s).ok() && s.token_counter() == st.token_counter(); }, 10s))
        << cluster.StatusSummary();
    EXPECT_EQ(s.cluster_id(), st.cluster_id());
  }
}

/// Holds `n` locks of ~59 KB names under one lease of `client`: far more state than the
/// transport's windows take from a Backup stream nobody reads.
void HoldBigLocks(Client& client, int n) {
  const uint64_t lease = client.MustGrantLease(600'000, "big");
  for (int k = 0; k < n; ++k) {
    v1::AcquireResponse a;
    std::string name = std::to_string(k) + "/";
    name.resize(59'000, 'x');
    ASSERT_TRUE(client.Acquire(name, lease, kEx, 0, &a).status.ok()) << k;
  }
}

/// Acquires and releases under "load/" until stopped (bounded by count and time), keeping the
/// largest token granted.
class Load {
 public:
  explicit Load(Client& client) : client_(client) {
    lease_ = client_.MustGrantLease(10'000, "load");
    thread_ = std::thread([this] { Run(); });
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t max_token() const { return max_token_.load(); }
  uint64_t grants() const { return grants_.load(); }

 private:
  void Run() {
    const auto until = Clock::now() + 30s;
    for (int k = 0; k < 5000 && !stop_ && Clock::now() < until; ++k) {
      const std::string name = "load/" + std::to_string(k % 8);
      v1::AcquireResponse a;
      if (!client_.Acquire(name, lease_, kEx, 0, &a).status.ok() || !a.acquired()) continue;
      max_token_ = std::max<uint64_t>(max_token_.load(), a.token());
      ++grants_;
      client_.Release(name, lease_, a.token());
    }
  }
  Client& client_;
  uint64_t lease_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> max_token_{0};
  std::atomic<uint64_t> grants_{0};
  std::thread thread_;
};

TEST(BackupRestore, ARestoredClusterIsNewAndItsTokensExceedEveryOldOne) {
  Cluster cluster;
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.LogTails();
  const int follower = cluster.OtherLiveNode(leader);
  Client client(cluster);
  v1::StatusResponse old_status;
  ASSERT_TRUE(cluster.Status(leader, &old_status).ok());
  const std::string old_cluster = old_status.cluster_id();

  // A lease held through the client library, with a TTL long enough to outlive the outage: it
  // must be lost for the changed cluster id, not for its time.
  client::ClientOptions co;
  for (int i = 0; i < cluster.size(); ++i) co.endpoints.push_back(cluster.client_addr(i));
  auto lib = client::Client::Connect(co);
  ASSERT_TRUE(lib.ok());
  auto lib_lease = (*lib)->GrantLease(60s, "held-across-restore");
  ASSERT_TRUE(lib_lease.ok()) << lib_lease.status().ToString();
  auto lib_lock = (*lib)->Acquire("held", *lib_lease);
  ASSERT_TRUE(lib_lock.ok()) << lib_lock.status().ToString();
  const uint64_t old_lease = client.MustGrantLease(60'000, "old");

  // Snapshot answers index and size; lockctl snapshot prints them.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::SnapshotResponse snap;
    grpc::Status s = cluster.cluster(follower).Snapshot(&ctx, v1::SnapshotRequest(), &snap);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_GT(snap.index(), 0u);
    EXPECT_GT(snap.bytes(), 0u);
    v1::StatusResponse st;
    ASSERT_TRUE(cluster.Status(follower, &st).ok());
    EXPECT_EQ(st.snapshot_index(), snap.index());
    auto out = Lockctl(cluster.client_addr(leader), {"--json", "snapshot"});
    EXPECT_EQ(out.exit_code, 0) << out.output;
    EXPECT_GT(JsonNumber(out.output, "index"), 0u) << out.output;
    EXPECT_GT(JsonNumber(out.output, "bytes"), 0u) << out.output;
  }

  // The backup, from a follower, under load; the load goes on after it.
  const std::string file = cluster.dir() + "/cluster.lockdbak";
  uint64_t max_token = 0;
  uint64_t at_backup = 0;
  int64_t taken = 0;
  {
    Load load(client);
    ASSERT_TRUE(testing::WaitFor([&] { return load.grants() >= 20; }, 20s));
    auto out = Lockctl(cluster.client_addr(follower), {"--json", "backup", "--to", file});
    ASSERT_EQ(out.exit_code, 0) << out.output;
    EXPECT_GT(JsonNumber(out.output, "index"), 0u) << out.output;
    EXPECT_NE(out.output.find(old_cluster), std::string::npos) << out.output;
    at_backup = JsonNumber(out.output, "token_counter");
    taken = static_cast<int64_t>(JsonNumber(out.output, "taken_unix_seconds"));
    EXPECT_GT(at_backup, 0u) << out.output;
    EXPECT_GT(taken, 0) << out.output;
    ASSERT_TRUE(testing::WaitFor([&] { return load.max_token() > at_backup + 20; }, 20s))
        << "no grants after the backup";
    load.Stop();
    max_token = load.max_token();
    ASSERT_GT(max_token, at_backup);
    // A second file is refused rather than overwritten.
    auto again = Lockctl(cluster.client_addr(follower), {"backup", "--to", file});
    EXPECT_EQ(again.exit_code, 2) << again.output;
  }
  ASSERT_TRUE(cluster.Status(leader, &old_status).ok());
  max_token = std::max<uint64_t>(max_token, old_status.token_counter());

  // The old cluster is lost.
  EXPECT_TRUE(cluster.StopAll());

  // Damaged files are refused before anything is written; the data dir stays as it was.
  const std::string good = ReadAll(file);
  ASSERT_GT(good.size(), 100u);
  {
    const std::string fresh = cluster.dir() + "/fresh";
    const std::string truncated = cluster.dir() + "/truncated.lockdbak";
    WriteAll(truncated, good.substr(0, good.size() / 2));
    auto r = Restore(cluster, 0, truncated, fresh);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("truncated at byte " + std::to_string(good.size() / 2)),
              std::string::npos)
        << r.output;
    EXPECT_FALSE(fs::exists(fresh));

    std::string flipped = good;
    flipped[flipped.size() - 40] ^= 0x04;
    const std::string corrupted = cluster.dir() + "/corrupted.lockdbak";
    WriteAll(corrupted, flipped);
    fs::create_directories(fresh);
    r = Restore(cluster, 0, corrupted, fresh);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("checksum mismatch"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::is_empty(fresh));

    // The old member's data dir is not a new one: refused, untouched.
    const auto before = fs::last_write_time(cluster.data_dir(0) + "/cluster");
    r = Restore(cluster, 0, file, cluster.data_dir(0));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("not empty"), std::string::npos) << r.output;
    EXPECT_EQ(fs::last_write_time(cluster.data_dir(0) + "/cluster"), before);
  }

  // Restore every member from the same file, on the same addresses, and start them.
  for (int i = 0; i < cluster.size(); ++i) {
    fs::remove_all(cluster.data_dir(i));
    auto r = Restore(cluster, i, file, cluster.data_dir(i));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("restored data dir"), std::string::npos) << r.output;
  }
  const int64_t before_start = WallSeconds();
  cluster.StartAll();
  const int new_leader = cluster.WaitForReady();
  ASSERT_GE(new_leader, 0) << cluster.LogTails();
  const int64_t after_ready = WallSeconds();

  v1::StatusResponse st;
  ASSERT_TRUE(cluster.Status(new_leader, &st).ok());
  EXPECT_FALSE(st.cluster_id().empty());
  EXPECT_NE(st.cluster_id(), old_cluster);
  EXPECT_GT(st.token_counter(), max_token);
  // Exactly guarantee 8's counter: the backup's plus 2^32 x (1 + whole seconds from the backup to
  // the leader's start), the leader's moment lying between the start and the first read; counted
  // from the backup's timestamp or the newest leader stamp in it, at most a second earlier.
  const auto bump = [](int64_t seconds) { return (uint64_t{1} << 32) * uint64_t(1 + seconds); };
  EXPECT_GE(st.token_counter(), at_backup + bump(before_start - taken))
      << "taken " << taken << ", started " << before_start;
  EXPECT_LE(st.token_counter(), at_backup + bump(after_ready - taken + 1))
      << "taken " << taken << ", ready " << after_ready;
  // Decided: no member keeps its restore seed (a copy of the old state); the identity file
  // records the restore.
  for (int i = 0; i < cluster.size(); ++i) {
    EXPECT_TRUE(
        testing::WaitFor([&] { return !fs::exists(cluster.data_dir(i) + "/restore-seed"); }, 10s))
        << "node " << i;
    EXPECT_NE(ReadAll(cluster.data_dir(i) + "/cluster").find("restored-from " + Sha256Of(good)),
              std::string::npos);
  }
  // Every member agrees on the new id and starting counter.
  ExpectEveryMemberAgrees(cluster, st);

  // No leases, no locks; an old lease is unknown.
  std::vector<v1::LeaseInfo> leases;
  ASSERT_TRUE(client.ListAllLeases(&leases).status.ok());
  EXPECT_TRUE(leases.empty());
  std::vector<v1::LockInfo> locks;
  ASSERT_TRUE(client.ListAllLocks("", &locks).status.ok());
  EXPECT_TRUE(locks.empty());
  v1::RenewResponse renewed;
  auto renew = client.Renew(old_lease, 1, &renewed);
  EXPECT_EQ(renew.status.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(renew.status);
  EXPECT_EQ(renew.meta.cluster, st.cluster_id());

  // The client library sees the new cluster id and treats its lease as lost.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        (void)(*lib)->GetLock("held");
        return !(*lib_lease)->valid();
      },
      20s));
  // The reason names whichever the library saw first: the new cluster id (on any answer), or the
  // new cluster's NOT_FOUND for the lease on the renewal stream. Both end the lease; which one
  // wins is a race between the renewal thread and this thread's GetLock (seen once in ~6 runs at
  // load 6, after the header-first fix of session 8). Known gap: a NOT_FOUND that comes with
  // another cluster id should be reported as the cluster id change.
  const std::string why = (*lib_lease)->lost_reason();
  EXPECT_TRUE(why.find("cluster id changed") != std::string::npos ||
              why.find("no longer knows lease") != std::string::npos)
      << why;

  // The first grant of the new cluster is above every token the old one issued.
  const uint64_t lease = client.MustGrantLease(10'000, "new");
  EXPECT_GT(lease, max_token);  // lease ids were raised too (never reused across restores)
  v1::AcquireResponse a;
  ASSERT_TRUE(client.Acquire("held", lease, kEx, 0, &a).status.ok());
  ASSERT_TRUE(a.acquired());
  EXPECT_GT(a.token(), max_token);

  // A restart replays the restored start from the log: same id, counters not turned back.
  cluster.Restart(new_leader);
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.LogTails();
  v1::StatusResponse after;
  ASSERT_TRUE(cluster.Status(new_leader, &after).ok());
  EXPECT_EQ(after.cluster_id(), st.cluster_id());
  EXPECT_GE(after.token_counter(), a.token());
}

/// A Backup call on a connection of its own (distinct channel arguments: gRPC would otherwise
/// share one connection, whose window a reader that never reads fills for everyone) that never
/// reads.
struct StuckReader {
  StuckReader(const std::string& addr, int n) {
    grpc::ChannelArguments args;
    args.SetInt("lockd.test.stuck_reader", n);
    channel = grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
    stub = v1::ClusterService::NewStub(channel);
    ctx.set_deadline(std::chrono::system_clock::now() + 30s);
    reader = stub->Backup(&ctx, v1::BackupRequest());
  }
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::ClusterService::Stub> stub;
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::BackupChunk>> reader;
};

/// The value of an unlabelled metric on node i's /metrics (-1 when unreadable).
double Metric(Cluster& c, int i, const std::string& name) {
  auto r = RunCommand({"/usr/bin/curl", "-s", "http://" + c.http_addr(i) + "/metrics"}, 10s);
  const auto at = r.output.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(r.output.substr(at + name.size() + 2));
}

TEST(BackupRestore, ReadersThatNeverReadAreEndedAfterTheStallTimeoutAndFreeTheirSlots) {
  ClusterOptions o;
  o.nodes = 1;
  o.max_name_bytes = 60'000;
  o.extra_flags = {"--backup-stall-timeout-ms", "1500"};
  Cluster cluster(o);
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.LogTails();
  // ~12 MB of lock names.
  Client client(cluster);
  HoldBigLocks(client, 200);
  if (HasFatalFailure()) return;

  // Two readers that never read hold both slots...
  StuckReader first(cluster.client_addr(0), 1), second(cluster.client_addr(0), 2);
  ASSERT_TRUE(
      testing::WaitFor([&] { return Metric(cluster, 0, "lockd_backups_in_progress") == 2; }, 10s));
  // ...so a third backup is refused, naming the limit.
  const std::string file = cluster.dir() + "/third.lockdbak";
  auto third = Lockctl(cluster.client_addr(0), {"backup", "--to", file});
  EXPECT_NE(third.exit_code, 0) << third.output;
  EXPECT_NE(third.output.find("already streaming 2 backups"), std::string::npos) << third.output;

  // Past the stall timeout both are ended and their slots freed: a backup goes through again.
  const auto stuck_at = Clock::now();
  ASSERT_TRUE(
      testing::WaitFor([&] { return Metric(cluster, 0, "lockd_backups_in_progress") == 0; }, 10s))
      << cluster.LogTails();
  EXPECT_GE(Clock::now() - stuck_at, 1s);  // not before the timeout (1.5 s from their last write)
  EXPECT_EQ(Metric(cluster, 0, "lockd_backups_failed_total"), 2);
  EXPECT_NE(cluster.LogTail(0).find("took no chunk for 1500 ms"), std::string::npos);
  auto again = Lockctl(cluster.client_addr(0), {"--json", "backup", "--to", file});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_GT(JsonNumber(again.output, "bytes"), 11'000'000u) << again.output;
  // The stuck readers' calls ended with the reason (after the chunks they never read).
  for (auto* r : {&first, &second}) {
    v1::BackupChunk chunk;
    while (r->reader->Read(&chunk)) {
    }
    grpc::Status s = r->reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Describe(s);
    EXPECT_NE(s.error_message().find("--backup-stall-timeout-ms"), std::string::npos)
        << Describe(s);
  }
}

// Guarantee 8's bump counts from the backup to the restored cluster's first leader, not to each
// `lockd restore`: members restored seconds apart agree exactly on the starting counters.
TEST(BackupRestore, MembersRestoredAtDifferentTimesStartOneClusterWithTheSameCounters) {
  Cluster cluster;
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.LogTails();
  Client client(cluster);
  const uint64_t lease = client.MustGrantLease(60'000, "before");
  v1::AcquireResponse a;
  ASSERT_TRUE(client.Acquire("restored-apart", lease, kEx, 0, &a).status.ok() && a.acquired());
  const std::string file = cluster.dir() + "/apart.lockdbak";
  auto out = Lockctl(cluster.client_addr(leader), {"--json", "backup", "--to", file});
  ASSERT_EQ(out.exit_code, 0) << out.output;
  const uint64_t at_backup = JsonNumber(out.output, "token_counter");
  const auto taken = static_cast<int64_t>(JsonNumber(out.output, "taken_unix_seconds"));
  ASSERT_GE(at_backup, a.token());
  EXPECT_TRUE(cluster.StopAll());

  fs::remove_all(cluster.data_dir(0));
  auto first = Restore(cluster, 0, file, cluster.data_dir(0));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  std::this_thread::sleep_for(2100ms);  // whole seconds apart
  for (int i = 1; i < cluster.size(); ++i) {
    fs::remove_all(cluster.data_dir(i));
    auto r = Restore(cluster, i, file, cluster.data_dir(i));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const int64_t before_start = WallSeconds();
  cluster.StartAll();
  const int new_leader = cluster.WaitForReady();
  ASSERT_GE(new_leader, 0) << cluster.LogTails();
  v1::StatusResponse st;
  ASSERT_TRUE(cluster.Status(new_leader, &st).ok());
  const auto bump = [](int64_t seconds) { return (uint64_t{1} << 32) * uint64_t(1 + seconds); };
  EXPECT_GE(st.token_counter(), at_backup + bump(before_start - taken));
  ExpectEveryMemberAgrees(cluster, st);
  const uint64_t fresh = client.MustGrantLease(10'000, "after");
  v1::AcquireResponse b;
  ASSERT_TRUE(client.Acquire("restored-apart", fresh, kEx, 0, &b).status.ok() && b.acquired());
  EXPECT_GT(b.token(), at_backup);
}

// A node stopped while it streams a backup to a reader that takes nothing: the stream ends (the
// reader sees an error, never a short file passed off as whole), the node exits 0 within the
// harness's bound instead of waiting on the reader, and its data dir starts again with its state.
TEST(BackupRestore, ANodeStoppedInTheMiddleOfABackupExitsCleanlyAndKeepsItsState) {
  ClusterOptions o;
  o.nodes = 1;
  o.max_name_bytes = 60'000;
  Cluster cluster(o);
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.LogTails();
  Client client(cluster);
  HoldBigLocks(client, 200);  // ~12 MB
  if (HasFatalFailure()) return;
  StuckReader stuck(cluster.client_addr(0), 1);
  ASSERT_TRUE(
      testing::WaitFor([&] { return Metric(cluster, 0, "lockd_backups_in_progress") == 1; }, 10s));
  const auto stopping = Clock::now();
  EXPECT_EQ(cluster.Stop(0), std::optional<int>(0)) << cluster.LogTail(0, 30);
  EXPECT_LT(Clock::now() - stopping, 15s);
  v1::BackupChunk chunk;
  uint64_t bytes = 0;
  bool last = false;
  while (stuck.reader->Read(&chunk)) {
    bytes += chunk.data().size();
    last = last || chunk.last();
  }
  const grpc::Status s = stuck.reader->Finish();
  EXPECT_FALSE(s.ok()) << "a stream cut by the shutdown must not end OK (" << bytes << " bytes)";
  EXPECT_FALSE(last) << "no trailer: the reader cannot take what it got for a whole backup";
  cluster.Start(0);
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.LogTails();
  std::vector<v1::LockInfo> locks;
  ASSERT_TRUE(client.ListAllLocks("", &locks).status.ok());
  EXPECT_EQ(locks.size(), 200u);
}

}  // namespace
}  // namespace lockd::e2e
