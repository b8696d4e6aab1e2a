// Power loss: a file system that keeps only what was synced (FaultFs) is cut at hundreds of
// points — in the middle of a write or a sync, sometimes tearing the unsynced tail — and the store
// reopened on what is left must hold every entry and hard state it acknowledged. The same test
// with the sync skipped (a planted bug) must find a loss. LOCKD_CRASH_POINTS sets the count.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>

#include "fault_fs.h"
#include "storage/raft_store.h"
#include "support/process.h"

namespace lockd::storage {
namespace {

using raft::LogIndex;
using raft::Term;

int CutPoints() {
  const char* env = std::getenv("LOCKD_CRASH_POINTS");
  return env && *env ? std::atoi(env) : 200;
}

struct CutResult {
  std::string error;  ///< recovery failed, or an acknowledged entry is missing or wrong
  size_t acked = 0;
};

CutResult RunCutPoint(uint64_t seed, bool skip_sync) {
  lockd::testing::TempDir dir;
  const std::string path = dir.path() + "/raft";
  auto fault = std::make_shared<testing::FaultFs>(rocksdb::FileSystem::Default());
  auto env = rocksdb::NewCompositeEnv(fault);
  std::mt19937_64 rng(seed);
  std::map<uint64_t, raft::Entry> acked;
  raft::HardState acked_hs;
  {
    RaftStoreOptions o;
    o.env = env.get();
    o.skip_sync_for_testing = skip_sync;
    auto store = RaftStore::Open(path, o);
    if (!store.ok()) return {"open: " + store.status().ToString(), 0};
    const bool torn = rng() % 2;
    fault->ScheduleCut(1 + static_cast<int>(rng() % 300), torn, seed);
    uint64_t next = 1, term = 1;
    for (int step = 0; step < 200 && !fault->off(); ++step) {
      if (rng() % 10 == 0) ++term;
      PersistBatch b;
      const uint64_t n = 1 + rng() % 8;
      for (uint64_t k = 0; k < n; ++k, ++next) {
        b.entries.push_back(raft::Entry{Term(term), LogIndex(next), raft::EntryType::kNormal,
                                        "seed" + std::to_string(seed) + "/" + std::to_string(next) +
                                            std::string(rng() % 300, 'x')});
      }
      b.hard_state = raft::HardState{Term(term), raft::NodeId(1), LogIndex(next - 1 - n)};
      const Status s = (*store)->Append(b);
      if (!s.ok() || fault->off()) break;  // cut during this call: not acknowledged
      for (const auto& e : b.entries) acked[e.index.value()] = e;
      acked_hs = *b.hard_state;
    }
    fault->PowerCut(torn, seed);
  }  // the store closes with the power off: nothing more reaches the files
  auto store = RaftStore::Open(path);
  if (!store.ok()) return {"recovery failed: " + store.status().ToString(), acked.size()};
  const auto& s = **store;
  if (s.Initial().hard.term < acked_hs.term || s.Initial().hard.commit < acked_hs.commit) {
    return {"the acknowledged hard state went backwards", acked.size()};
  }
  for (const auto& [i, e] : acked) {
    auto got = s.Entries(LogIndex(i), LogIndex(i + 1), 1 << 20);
    if (!got.ok() || got->empty() || (*got)[0] != e) {
      return {"acknowledged entry " + std::to_string(i) + " is missing or different", acked.size()};
    }
  }
  return {"", acked.size()};
}

TEST(PowerLoss, NothingAcknowledgedIsLostAtAnyCutPoint) {
  size_t acked = 0;
  const int points = CutPoints();
  for (int seed = 1; seed <= points; ++seed) {
    const CutResult r = RunCutPoint(seed, /*skip_sync=*/false);
    ASSERT_EQ(r.error, "") << "seed=" << seed << " (replay: LOCKD_CRASH_POINTS=" << seed << ")";
    acked += r.acked;
  }
  std::printf("power loss: %d cut points, %zu acknowledged entries checked\n", points, acked);
}

TEST(PowerLoss, APlantedMissingSyncIsCaught) {
  int caught = 0;
  const int points = CutPoints();
  for (int seed = 1; seed <= points; ++seed) {
    if (!RunCutPoint(seed, /*skip_sync=*/true).error.empty()) ++caught;
  }
  std::printf("missing sync: caught at %d of %d cut points\n", caught, points);
  EXPECT_GT(caught, 0) << "skipping fsync lost nothing the test could see";
}

}  // namespace
}  // namespace lockd::storage
