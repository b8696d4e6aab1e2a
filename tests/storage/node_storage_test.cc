// NodeStorage: the log and the snapshot files recovered together. A crash between a snapshot's
// two durable steps is finished at the next start; a log the snapshots cannot back is refused
// with an error naming what is missing; a failed snapshot save stops the log too.
#include "storage/node_storage.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "fault_fs.h"
#include "support/process.h"

namespace lockd::storage {
namespace {

using raft::Entry;
using raft::HardState;
using raft::LogIndex;
using raft::NodeId;
using raft::SnapshotMeta;
using raft::Term;

Entry E(uint64_t index, uint64_t term) {
  return Entry{Term(term), LogIndex(index), raft::EntryType::kNormal,
               "e" + std::to_string(index) + "t" + std::to_string(term)};
}

PersistBatch Entries(uint64_t from, uint64_t to, uint64_t term, uint64_t commit) {
  PersistBatch b;
  b.hard_state = HardState{Term(term), NodeId(1), LogIndex(commit)};
  for (uint64_t i = from; i <= to; ++i) b.entries.push_back(E(i, term));
  return b;
}

SnapshotMeta Meta(uint64_t index, uint64_t term) {
  SnapshotMeta m{LogIndex(index), Term(term), {}};
  m.conf.voters = {NodeId(1), NodeId(2), NodeId(3)};
  return m;
}

class NodeStorageTest : public ::testing::Test {
 protected:
  std::string raft_dir() const { return dir_.path() + "/raft"; }
  std::string snap_dir() const { return dir_.path() + "/snapshots"; }
  Result<std::unique_ptr<NodeStorage>> TryOpen(NodeStorageOptions o = {}) {
    return NodeStorage::OpenDirs(raft_dir(), snap_dir(), std::move(o));
  }
  std::unique_ptr<NodeStorage> Open(NodeStorageOptions o = {}) {
    auto s = TryOpen(std::move(o));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  lockd::testing::TempDir dir_;
};

TEST_F(NodeStorageTest, AFreshNodeHasNoSnapshotAndAnEmptyLog) {
  auto s = Open();
  EXPECT_FALSE(s->recovered_snapshot());
  EXPECT_EQ(s->log().LastIndex(), LogIndex(0));
}

TEST_F(NodeStorageTest, SaveSnapshotWritesTheFileThenCompactsAndBothSurviveRestart) {
  auto s = Open();
  ASSERT_TRUE(s->log().Append(Entries(1, 10, 1, 8)).ok());
  ASSERT_TRUE(s->SaveSnapshot(Meta(8, 1), "state@8").ok());
  EXPECT_EQ(s->log().FirstIndex(), LogIndex(9));
  s.reset();
  s = Open();
  ASSERT_TRUE(s->recovered_snapshot());
  EXPECT_EQ(s->recovered_snapshot()->meta, Meta(8, 1));
  EXPECT_EQ(s->recovered_snapshot()->payload, "state@8");
  EXPECT_EQ(s->log().Snapshot(), Meta(8, 1));
  EXPECT_EQ(s->log().LastIndex(), LogIndex(10));
}

TEST_F(NodeStorageTest, SaveSnapshotRefusesAnUncommittedOrMismatchedSnapshotBeforeWritingIt) {
  auto s = Open();
  ASSERT_TRUE(s->log().Append(Entries(1, 10, 2, 5)).ok());
  EXPECT_EQ(s->SaveSnapshot(Meta(6, 2), "x").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->SaveSnapshot(Meta(5, 1), "x").code(), StatusCode::kFailedPrecondition);
  auto latest = s->snapshots().LoadLatest();
  ASSERT_TRUE(latest.ok());
  EXPECT_FALSE(*latest) << "no file was written";
  EXPECT_FALSE(s->failed());
}

TEST_F(NodeStorageTest, TruncationAcrossTheSnapshotBoundaryWithARestartAfterEachStep) {
  auto s = Open();
  ASSERT_TRUE(s->log().Append(Entries(1, 10, 1, 6)).ok());
  s.reset();
  s = Open();
  ASSERT_TRUE(s->SaveSnapshot(Meta(6, 1), "state@6").ok());
  s.reset();
  s = Open();
  // A new leader's entries replace 7..10 right after the snapshot boundary.
  ASSERT_TRUE(s->log().Append(Entries(7, 8, 2, 6)).ok());
  s.reset();
  s = Open();
  EXPECT_EQ(s->log().FirstIndex(), LogIndex(7));
  EXPECT_EQ(s->log().LastIndex(), LogIndex(8));
  EXPECT_EQ(*s->log().TermAt(LogIndex(6)), Term(1));
  EXPECT_EQ(*s->log().TermAt(LogIndex(7)), Term(2));
  auto es = s->log().Entries(LogIndex(7), LogIndex(9), UINT64_MAX);
  ASSERT_TRUE(es.ok());
  EXPECT_EQ(*es, (std::vector<Entry>{E(7, 2), E(8, 2)}));
  EXPECT_EQ(s->log().Append(Entries(6, 6, 2, 6)).code(), StatusCode::kFailedPrecondition)
      << "the snapshot's own entry is never rewritten";
}

TEST_F(NodeStorageTest, InstallSnapshotReplacesTheLogAndSurvivesRestart) {
  auto s = Open();
  ASSERT_TRUE(s->log().Append(Entries(1, 5, 1, 2)).ok());
  ASSERT_TRUE(s->InstallSnapshot(Meta(100, 3), "leader-state@100").ok());
  s.reset();
  s = Open();
  EXPECT_EQ(s->recovered_snapshot()->payload, "leader-state@100");
  EXPECT_EQ(s->log().FirstIndex(), LogIndex(101));
  EXPECT_EQ(s->log().Initial().hard.commit, LogIndex(100));
  EXPECT_EQ(s->log().Initial().conf, Meta(100, 3).conf);
}

// The node writes a snapshot's file on a thread of its own and compacts the log back on the
// loop (docs/storage.md): the log goes on meanwhile, and a crash in between is finished at start.
TEST_F(NodeStorageTest, ASnapshotWrittenWhileTheLogGrowsIsCompactedAfterwardsOrAtTheNextStart) {
  for (const bool crash : {false, true}) {
    SCOPED_TRACE(crash ? "a crash before the compaction" : "compacted on the loop");
    std::filesystem::remove_all(dir_.path() + "/raft");
    std::filesystem::remove_all(dir_.path() + "/snapshots");
    auto s = Open();
    ASSERT_TRUE(s->log().Append(Entries(1, 10, 1, 8)).ok());
    ASSERT_TRUE(s->CheckSnapshot(Meta(8, 1)).ok());
    ASSERT_TRUE(s->WriteSnapshotFile(Meta(8, 1), "state@8").ok());
    // Meanwhile: entries past the snapshot are replaced by a new leader's, and more appended.
    ASSERT_TRUE(s->log().Append(Entries(9, 14, 2, 12)).ok());
    if (!crash) {
      ASSERT_TRUE(s->CompactToSnapshot(Meta(8, 1)).ok());
    }
    s.reset();
    s = Open();
    EXPECT_EQ(s->log().Snapshot(), Meta(8, 1));
    EXPECT_EQ(s->recovered_snapshot()->payload, "state@8");
    EXPECT_EQ(s->log().LastIndex(), LogIndex(14));
    EXPECT_EQ(*s->log().TermAt(LogIndex(9)), Term(2));
    EXPECT_EQ(s->log().Initial().hard.commit, LogIndex(12));
  }
}

// ... and a newer snapshot from the leader installed between the file and the compaction makes
// the compaction refuse, changing nothing.
TEST_F(NodeStorageTest, ACompactionOvertakenByAnInstallChangesNothing) {
  auto s = Open();
  ASSERT_TRUE(s->log().Append(Entries(1, 10, 1, 8)).ok());
  ASSERT_TRUE(s->CheckSnapshot(Meta(8, 1)).ok());
  ASSERT_TRUE(s->WriteSnapshotFile(Meta(8, 1), "state@8").ok());
  ASSERT_TRUE(s->InstallSnapshot(Meta(50, 3), "leader-state@50").ok());
  EXPECT_EQ(s->CompactToSnapshot(Meta(8, 1)).code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(s->failed());
  EXPECT_EQ(s->log().Snapshot(), Meta(50, 3));
  s.reset();
  s = Open();
  EXPECT_EQ(s->recovered_snapshot()->payload, "leader-state@50");
  EXPECT_EQ(s->log().FirstIndex(), LogIndex(51));
}

TEST_F(NodeStorageTest, AnInterruptedCompactionIsFinishedAtStart) {
  {
    auto s = Open();
    ASSERT_TRUE(s->log().Append(Entries(1, 10, 1, 4)).ok());
  }
  // The crash came after the file was durable and before the log was compacted (and before the
  // commit index that let the state machine apply up to 6 was persisted).
  ASSERT_TRUE(SnapshotStore(snap_dir()).Save(Meta(6, 1), "state@6").ok());
  auto s = Open();
  EXPECT_EQ(s->log().Snapshot(), Meta(6, 1));
  EXPECT_EQ(s->log().LastIndex(), LogIndex(10)) << "the entries after the snapshot stay";
  EXPECT_EQ(s->log().Initial().hard.commit, LogIndex(6));
}

TEST_F(NodeStorageTest, AnInterruptedInstallIsFinishedAtStart) {
  {
    auto s = Open();
    ASSERT_TRUE(s->log().Append(Entries(1, 10, 1, 2)).ok());
  }
  // The leader's snapshot at 8 has term 2: the log's entry 8 (term 1) was never committed.
  ASSERT_TRUE(SnapshotStore(snap_dir()).Save(Meta(8, 2), "leader@8").ok());
  auto s = Open();
  EXPECT_EQ(s->log().Snapshot(), Meta(8, 2));
  EXPECT_EQ(s->log().LastIndex(), LogIndex(8)) << "the conflicting log is gone";
  EXPECT_EQ(s->log().Initial().hard, (HardState{Term(2), NodeId(1), LogIndex(8)}));
}

TEST_F(NodeStorageTest, ALogThatNoSnapshotBacksIsRefusedNamingWhatIsMissing) {
  {
    auto s = Open();
    ASSERT_TRUE(s->log().Append(Entries(1, 10, 1, 8)).ok());
    ASSERT_TRUE(s->SaveSnapshot(Meta(4, 1), "state@4").ok());
    ASSERT_TRUE(s->SaveSnapshot(Meta(8, 1), "state@8").ok());
  }
  std::filesystem::remove(snap_dir() + "/" + SnapshotStore::FileName(Meta(8, 1)));
  auto r = TryOpen();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("starts after index 8"), std::string::npos)
      << r.status().ToString();
  EXPECT_NE(r.status().message().find("holds no snapshot"), std::string::npos)
      << r.status().ToString();
}

TEST_F(NodeStorageTest, ALostLogWithSnapshotsLeftIsRefused) {
  {
    auto s = Open();
    ASSERT_TRUE(s->log().Append(Entries(1, 10, 3, 8)).ok());
    ASSERT_TRUE(s->SaveSnapshot(Meta(8, 3), "state@8").ok());
  }
  std::filesystem::remove_all(raft_dir());
  auto r = TryOpen();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("the log, with the node's term and vote, is lost"),
            std::string::npos)
      << r.status().ToString();
}

TEST_F(NodeStorageTest, ADamagedSnapshotStopsTheStartNamingTheFile) {
  {
    auto s = Open();
    ASSERT_TRUE(s->log().Append(Entries(1, 10, 1, 8)).ok());
    ASSERT_TRUE(s->SaveSnapshot(Meta(8, 1), std::string(1000, 's')).ok());
  }
  const std::string file = snap_dir() + "/" + SnapshotStore::FileName(Meta(8, 1));
  std::filesystem::resize_file(file, 500);  // a truncated file
  auto r = TryOpen();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(file), std::string::npos) << r.status().ToString();
}

TEST_F(NodeStorageTest, AFailedSnapshotSaveStopsTheLogToo) {
  testing::FaultFs fault(rocksdb::FileSystem::Default());
  NodeStorageOptions o;
  o.fs = &fault;
  int fatal_calls = 0;
  o.on_fatal = [&](const Status&) { ++fatal_calls; };
  auto s = Open(o);
  ASSERT_TRUE(s->log().Append(Entries(1, 10, 1, 8)).ok());
  fault.SetNoSpace(true);
  EXPECT_FALSE(s->SaveSnapshot(Meta(8, 1), "x").ok());
  fault.SetNoSpace(false);
  EXPECT_TRUE(s->failed());
  EXPECT_TRUE(s->log().failed());
  EXPECT_FALSE(s->log().Append(Entries(11, 11, 1, 8)).ok()) << "the log acknowledges no more";
  EXPECT_EQ(fatal_calls, 1);
  EXPECT_EQ(s->log().FirstIndex(), LogIndex(1)) << "the log was not compacted";
}

TEST_F(NodeStorageTest, TheDataDirCreatesItsFoldersAndStaysExclusive) {
  auto d = DataDir::Open(dir_.path() + "/node");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(std::filesystem::is_directory((*d)->raft_dir()));
  EXPECT_TRUE(std::filesystem::is_directory((*d)->snapshot_dir()));
  auto again = DataDir::Open(dir_.path() + "/node");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition);
  auto s = NodeStorage::Open(**d);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE((*s)->log().Append(Entries(1, 1, 1, 0)).ok());
}

}  // namespace
}  // namespace lockd::storage
