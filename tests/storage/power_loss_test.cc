// Power loss: FaultFs keeps only what was synced (data and folder entries alike), and power is cut
// at hundreds of points across a workload of appends, truncations, snapshots with compaction and
// installed snapshots, under RocksDB and the snapshot files together, sometimes tearing unsynced
// tails, with a tiny memtable so flushes are cut too. Storage reopened on what is left must hold
// exactly the state after the last acknowledged op, or after the op the cut interrupted: nothing
// acknowledged lost, no op half-applied. The same runs with a sync skipped (planted bugs) must
// find a loss. LOCKD_CRASH_POINTS sets the number of cut points (default 200).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "fault_fs.h"
#include "storage/node_storage.h"
#include "support/process.h"
#include "workload.h"

namespace lockd::storage {
namespace {

using testing::Model;

int CutPoints() {
  const char* env = std::getenv("LOCKD_CRASH_POINTS");
  return env && *env ? std::atoi(env) : 200;
}

struct Planted {
  bool skip_sync = false;
  bool skip_dir_sync = false;
};

struct CutResult {
  std::string error;  ///< recovery failed, or the state is neither before nor after the cut op
  size_t acked_ops = 0;
};

CutResult RunCutPoint(uint64_t seed, Planted planted) {
  lockd::testing::TempDir dir;
  const std::string raft_dir = dir.path() + "/raft", snap_dir = dir.path() + "/snapshots";
  // As DataDir::Open leaves them: both folders exist and are durable.
  std::filesystem::create_directories(raft_dir);
  std::filesystem::create_directories(snap_dir);
  auto fault = std::make_shared<testing::FaultFs>(rocksdb::FileSystem::Default());
  auto env = rocksdb::NewCompositeEnv(fault);
  std::mt19937_64 rng(seed);
  Model acked, in_flight_after;
  bool in_flight = false;
  size_t acked_ops = 0;
  std::string cut_op;
  {
    NodeStorageOptions o;
    o.env = env.get();
    o.fs = fault.get();
    o.memtable_bytes = 64 << 10;
    o.skip_sync_for_testing = planted.skip_sync;
    o.skip_dir_sync_for_testing = planted.skip_dir_sync;
    auto s = NodeStorage::OpenDirs(raft_dir, snap_dir, o);
    if (!s.ok()) return {"open: " + s.status().ToString(), 0};
    const bool torn = rng() % 2;
    fault->ScheduleCut(1 + static_cast<int>(rng() % 500), torn, seed);
    for (int step = 0; step < 150; ++step) {
      const testing::Op op = NextOp(acked, rng);
      const Status st = Execute(**s, op);
      if (fault->off()) {  // cut during this op: it may or may not have happened
        in_flight = true;
        in_flight_after = ApplyInFlight(acked, op);
        cut_op = op.Describe();
        break;
      }
      if (!st.ok()) return {"op " + op.Describe() + " failed: " + st.ToString(), acked_ops};
      acked = Apply(acked, op);
      ++acked_ops;
    }
    fault->PowerCut(torn, seed);
  }  // storage closes with the power off: nothing more reaches the files
  fault->Settle();
  auto s = NodeStorage::OpenDirs(raft_dir, snap_dir);
  const bool planted_bug = planted.skip_sync || planted.skip_dir_sync;
  if (!s.ok() && planted_bug) return {"recovery failed: " + s.status().ToString(), acked_ops};
  if (!s.ok()) {
    // Keep what the cut left, for a look with `lockd --inspect-data-dir` or RocksDB's ldb.
    const std::string keep = "/tmp/lockd-power-loss-seed-" + std::to_string(seed);
    std::error_code ec;
    std::filesystem::remove_all(keep, ec);
    std::filesystem::copy(dir.path(), keep, std::filesystem::copy_options::recursive, ec);
    return {"recovery failed: " + s.status().ToString() + " (data kept in " + keep + ")",
            acked_ops};
  }
  auto got = Model::From(**s);
  if (!got.ok()) return {"reading back: " + got.status().ToString(), acked_ops};
  const std::string before = Model::Diff(acked, *got);
  if (before.empty()) return {"", acked_ops};
  if (in_flight && Model::Diff(in_flight_after, *got).empty()) return {"", acked_ops};
  return {"after " + std::to_string(acked_ops) + " acknowledged ops" +
              (in_flight ? ", cut during '" + cut_op + "'" : std::string()) + ": " + before,
          acked_ops};
}

TEST(PowerLoss, NothingAcknowledgedIsLostAndNoOpIsHalfAppliedAtAnyCutPoint) {
  size_t acked = 0;
  const int points = CutPoints();
  for (int seed = 1; seed <= points; ++seed) {
    const CutResult r = RunCutPoint(seed, {});
    ASSERT_EQ(r.error, "") << "seed=" << seed;
    acked += r.acked_ops;
  }
  std::printf("power loss: %d cut points, %zu acknowledged ops checked\n", points, acked);
}

/// Runs every cut point with a planted bug; returns how many found a loss, printing the first.
int CountCaught(Planted planted, const char* what) {
  int caught = 0;
  const int points = CutPoints();
  for (int seed = 1; seed <= points; ++seed) {
    const CutResult r = RunCutPoint(seed, planted);
    if (r.error.empty()) continue;
    if (caught++ == 0)
      std::printf("%s, first caught at seed %d: %s\n", what, seed, r.error.c_str());
  }
  std::printf("%s: caught at %d of %d cut points\n", what, caught, points);
  return caught;
}

TEST(PowerLoss, APlantedMissingSyncOfTheLogIsCaught) {
  const int points = CutPoints();
  const int caught = CountCaught({.skip_sync = true}, "missing log sync");
  EXPECT_GT(caught, points / 2) << "skipping the WAL's fsync lost nothing the test could see";
}

TEST(PowerLoss, APlantedMissingFolderSyncOfASnapshotIsCaught) {
  const int caught = CountCaught({.skip_dir_sync = true}, "missing snapshot folder sync");
  EXPECT_GT(caught, 0) << "a snapshot whose name was never synced survived every cut";
}

}  // namespace
}  // namespace lockd::storage
