// RaftStore: every operation, and a restart after each, including truncation across the
// snapshot boundary; recovery refuses damage and names it; a failed write stops the store.
#include "storage/raft_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "fault_fs.h"
#include "storage/records.h"
#include "support/process.h"

namespace lockd::storage {
namespace {

using raft::Entry;
using raft::HardState;
using raft::LogIndex;
using raft::Term;

Entry E(uint64_t index, uint64_t term, std::string data = "") {
  if (data.empty()) data = "e" + std::to_string(index) + "t" + std::to_string(term);
  return Entry{Term(term), LogIndex(index), raft::EntryType::kNormal, data};
}

/// A batch whose hard state carries a term at least that of its entries, as the core's always do.
PersistBatch B(std::vector<Entry> es) {
  return PersistBatch{HardState{Term(10), raft::NodeId(), LogIndex()}, std::move(es)};
}

class RaftStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<RaftStore> Open() {
    auto s = RaftStore::Open(dir_.path() + "/raft");
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  std::unique_ptr<RaftStore> Reopen(std::unique_ptr<RaftStore>& s) {
    s.reset();
    return Open();
  }
  static std::vector<uint64_t> Terms(const RaftStore& s) {
    std::vector<uint64_t> out;
    for (auto i = s.FirstIndex(); i <= s.LastIndex(); ++i) out.push_back(s.TermAt(i)->value());
    return out;
  }
  lockd::testing::TempDir dir_;
};

TEST_F(RaftStoreTest, AnEmptyStoreStartsAtIndexOne) {
  auto s = Open();
  EXPECT_EQ(s->FirstIndex(), LogIndex(1));
  EXPECT_EQ(s->LastIndex(), LogIndex(0));
  EXPECT_TRUE(s->Initial().hard.empty());
  EXPECT_EQ(*s->TermAt(LogIndex(0)), Term(0));
}

TEST_F(RaftStoreTest, AppendsEntriesAndHardStateAtomicallyAndKeepsThemAcrossRestart) {
  auto s = Open();
  ASSERT_TRUE(
      s->Append({HardState{Term(2), raft::NodeId(1), LogIndex(2)}, {E(1, 1), E(2, 1), E(3, 2)}})
          .ok());
  s = Reopen(s);
  EXPECT_EQ(s->LastIndex(), LogIndex(3));
  EXPECT_EQ(s->Initial().hard, (HardState{Term(2), raft::NodeId(1), LogIndex(2)}));
  auto got = s->Entries(LogIndex(1), LogIndex(4), 1 << 20);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[2], E(3, 2));
  EXPECT_EQ(Terms(*s), (std::vector<uint64_t>{1, 1, 2}));
}

TEST_F(RaftStoreTest, EntriesRespectsMaxBytesButReturnsAtLeastOne) {
  auto s = Open();
  ASSERT_TRUE(s->Append(B({E(1, 1, std::string(100, 'a')), E(2, 1, std::string(100, 'b'))})).ok());
  EXPECT_EQ(s->Entries(LogIndex(1), LogIndex(3), 1)->size(), 1u);
  EXPECT_EQ(s->Entries(LogIndex(1), LogIndex(3), 1000)->size(), 2u);
  EXPECT_EQ(s->Entries(LogIndex(1), LogIndex(5), 1000).status().code(), StatusCode::kOutOfRange);
}

TEST_F(RaftStoreTest, AConflictingSuffixIsReplacedAndAGapRefused) {
  auto s = Open();
  ASSERT_TRUE(s->Append(B({E(1, 1), E(2, 1), E(3, 1), E(4, 1)})).ok());
  ASSERT_TRUE(s->Append(B({E(3, 2)})).ok());
  EXPECT_EQ(s->LastIndex(), LogIndex(3)) << "entries after the conflict are gone";
  s = Reopen(s);
  EXPECT_EQ(Terms(*s), (std::vector<uint64_t>{1, 1, 2}));
  EXPECT_EQ(s->Append(B({E(5, 2)})).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->LastIndex(), LogIndex(3));
}

TEST_F(RaftStoreTest, CompactionDropsThePrefixAndTruncationWorksAcrossTheBoundary) {
  auto s = Open();
  std::vector<Entry> es;
  for (uint64_t i = 1; i <= 10; ++i) es.push_back(E(i, i <= 5 ? 1 : 2));
  ASSERT_TRUE(s->Append(B(es)).ok());
  ASSERT_TRUE(s->Compact({LogIndex(6), Term(2), {}}).ok());
  s = Reopen(s);
  EXPECT_EQ(s->FirstIndex(), LogIndex(7));
  EXPECT_EQ(*s->TermAt(LogIndex(6)), Term(2)) << "the snapshot's own term is known";
  EXPECT_EQ(s->TermAt(LogIndex(5)).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s->Entries(LogIndex(5), LogIndex(8), 1 << 20).status().code(), StatusCode::kOutOfRange);
  // A new leader overwrites everything after the snapshot.
  ASSERT_TRUE(s->Append(B({E(7, 3), E(8, 3)})).ok());
  s = Reopen(s);
  EXPECT_EQ(s->LastIndex(), LogIndex(8));
  EXPECT_EQ(Terms(*s), (std::vector<uint64_t>{3, 3}));
  EXPECT_EQ(s->Append(B({E(6, 3)})).code(), StatusCode::kFailedPrecondition)
      << "nothing may be written at or below the snapshot";
  EXPECT_EQ(s->Compact({LogIndex(8), Term(1), {}}).code(), StatusCode::kFailedPrecondition)
      << "a snapshot whose term the log disagrees with";
}

TEST_F(RaftStoreTest, ResetToSnapshotReplacesTheWholeLog) {
  auto s = Open();
  ASSERT_TRUE(
      s->Append({HardState{Term(1), raft::NodeId(), LogIndex(1)}, {E(1, 1), E(2, 1)}}).ok());
  raft::ConfState conf;
  conf.voters = {raft::NodeId(1), raft::NodeId(2), raft::NodeId(3)};
  ASSERT_TRUE(s->ResetToSnapshot({LogIndex(50), Term(4), conf}).ok());
  s = Reopen(s);
  EXPECT_EQ(s->FirstIndex(), LogIndex(51));
  EXPECT_EQ(s->LastIndex(), LogIndex(50));
  EXPECT_EQ(s->Initial().hard.commit, LogIndex(50));
  EXPECT_EQ(s->Initial().conf, conf);
  ASSERT_TRUE(s->Append(B({E(51, 4)})).ok());
}

TEST_F(RaftStoreTest, RecoveryNamesADamagedEntryAGapAndANewerFormat) {
  {
    auto s = Open();
    std::vector<Entry> es;
    for (uint64_t i = 1; i <= 5; ++i) es.push_back(E(i, 1));
    ASSERT_TRUE(s->Append(B(es)).ok());
  }
  auto poke = [&](auto f) {
    rocksdb::DB* db = nullptr;
    rocksdb::DBOptions o;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"log", {}}, {"meta", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> hs;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir_.path() + "/raft", cfs, &hs, &db).ok());
    f(db, hs[1]);
    for (auto* h : hs) delete h;
    delete db;
  };
  std::string good;
  poke([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log) {
    ASSERT_TRUE(db->Get({}, log, IndexKey(LogIndex(3)), &good).ok());
    std::string bad = good;
    bad.back() ^= 0x5a;
    ASSERT_TRUE(db->Put({}, log, IndexKey(LogIndex(3)), bad).ok());
  });
  auto r = RaftStore::Open(dir_.path() + "/raft");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("log entry 3"), std::string::npos) << r.status().ToString();

  poke([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log) {
    std::string newer = good;
    newer[0] = 9;
    ASSERT_TRUE(db->Put({}, log, IndexKey(LogIndex(3)), newer).ok());
  });
  r = RaftStore::Open(dir_.path() + "/raft");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos);

  poke([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log) {
    ASSERT_TRUE(db->Delete({}, log, IndexKey(LogIndex(3))).ok());
  });
  r = RaftStore::Open(dir_.path() + "/raft");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("gap: entry 3"), std::string::npos) << r.status().ToString();
}

TEST_F(RaftStoreTest, AFullDiskStopsTheStoreForGood) {
  auto fault = std::make_shared<testing::FaultFs>(rocksdb::FileSystem::Default());
  auto env = rocksdb::NewCompositeEnv(fault);
  RaftStoreOptions o;
  o.env = env.get();
  auto s = RaftStore::Open(dir_.path() + "/raft", o);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->Append(B({E(1, 1)})).ok());
  fault->SetNoSpace(true);
  const Status full = (*s)->Append(B({E(2, 1)}));
  EXPECT_FALSE(full.ok());
  EXPECT_NE(full.message().find("must exit"), std::string::npos) << full.ToString();
  fault->SetNoSpace(false);  // space comes back: the store still refuses
  EXPECT_FALSE((*s)->Append(B({E(2, 1)})).ok());
  EXPECT_FALSE((*s)->fatal().ok());
  EXPECT_EQ((*s)->LastIndex(), LogIndex(1)) << "nothing after the failure is acknowledged";
}

}  // namespace
}  // namespace lockd::storage
