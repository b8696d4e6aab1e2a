// RaftStore: every operation, and a restart after each, including truncation across the
// snapshot boundary; the log's shape is guarded; recovery refuses damage and names it; a failed
// write stops the store for good.
#include "storage/raft_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "fault_fs.h"
#include "storage/records.h"
#include "support/process.h"

namespace lockd::storage {
namespace {

using raft::Entry;
using raft::HardState;
using raft::LogIndex;
using raft::NodeId;
using raft::Term;

Entry E(uint64_t index, uint64_t term, std::string data = "") {
  if (data.empty()) data = "e" + std::to_string(index) + "t" + std::to_string(term);
  return Entry{Term(term), LogIndex(index), raft::EntryType::kNormal, data};
}

HardState H(uint64_t term, uint64_t commit, uint64_t vote = 0) {
  return HardState{Term(term), NodeId(vote), LogIndex(commit)};
}

/// A batch whose hard state carries a term at least that of its entries, as the core's do.
PersistBatch B(std::vector<Entry> es, uint64_t commit = 0) {
  PersistBatch b;
  b.hard_state = H(10, commit);
  b.entries = std::move(es);
  return b;
}

std::vector<Entry> Range(uint64_t from, uint64_t to, uint64_t term) {
  std::vector<Entry> es;
  for (uint64_t i = from; i <= to; ++i) es.push_back(E(i, term));
  return es;
}

class RaftStoreTest : public ::testing::Test {
 protected:
  std::string path() const { return dir_.path() + "/raft"; }
  std::unique_ptr<RaftStore> Open(RaftStoreOptions o = {}) {
    auto s = RaftStore::Open(path(), std::move(o));
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
  static std::vector<Entry> All(const RaftStore& s) {
    auto r = s.Entries(s.FirstIndex(), s.LastIndex().next(), UINT64_MAX);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<Entry>{};
  }
  /// Opens the RocksDB underneath directly, to plant damage.
  template <typename F>
  void Poke(F f) {
    rocksdb::DB* db = nullptr;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"log", {}}, {"meta", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> hs;
    ASSERT_TRUE(rocksdb::DB::Open({}, path(), cfs, &hs, &db).ok());
    f(db, hs[1], hs[2]);
    for (auto* h : hs) delete h;
    delete db;
  }
  lockd::testing::TempDir dir_;
};

TEST_F(RaftStoreTest, AnEmptyStoreStartsAtIndexOne) {
  auto s = Open();
  EXPECT_EQ(s->FirstIndex(), LogIndex(1));
  EXPECT_EQ(s->LastIndex(), LogIndex(0));
  EXPECT_TRUE(s->Initial().hard.empty());
  EXPECT_EQ(*s->TermAt(LogIndex(0)), Term(0));
  EXPECT_EQ(s->TermAt(LogIndex(1)).status().code(), StatusCode::kOutOfRange);
  s = Reopen(s);
  EXPECT_EQ(s->LastIndex(), LogIndex(0));
}

TEST_F(RaftStoreTest, AppendsEntriesHardStateAndMembershipAtomicallyAndKeepsThemAcrossRestart) {
  auto s = Open();
  PersistBatch b;
  b.hard_state = H(2, 2, 1);
  b.entries = {E(1, 1), E(2, 1), E(3, 2)};
  b.conf_state = raft::ConfState{{NodeId(1), NodeId(2), NodeId(3)}, {}, {NodeId(4)}, {}, false};
  ASSERT_TRUE(s->Append(b).ok());
  s = Reopen(s);
  EXPECT_EQ(s->LastIndex(), LogIndex(3));
  EXPECT_EQ(s->Initial().hard, H(2, 2, 1));
  EXPECT_EQ(s->Initial().conf, *b.conf_state);
  EXPECT_EQ(All(*s), b.entries);
  EXPECT_EQ(Terms(*s), (std::vector<uint64_t>{1, 1, 2}));
}

TEST_F(RaftStoreTest, AHardStateAloneAndAMembershipAloneArePersisted) {
  auto s = Open();
  ASSERT_TRUE(s->Append(PersistBatch{H(5, 0, 3), {}, {}}).ok());
  raft::ConfState conf;
  conf.voters = {NodeId(7)};
  ASSERT_TRUE(s->SetConfState(conf).ok());
  s = Reopen(s);
  EXPECT_EQ(s->Initial().hard, H(5, 0, 3));
  EXPECT_EQ(s->Initial().conf, conf);
}

TEST_F(RaftStoreTest, EntriesRespectsMaxBytesButReturnsAtLeastOne) {
  auto s = Open();
  ASSERT_TRUE(s->Append(B({E(1, 1, std::string(100, 'a')), E(2, 1, std::string(100, 'b'))})).ok());
  EXPECT_EQ(s->Entries(LogIndex(1), LogIndex(3), 1)->size(), 1u);
  EXPECT_EQ(s->Entries(LogIndex(1), LogIndex(3), 1000)->size(), 2u);
  EXPECT_EQ(s->Entries(LogIndex(2), LogIndex(3), 1000)->front(), E(2, 1, std::string(100, 'b')));
  EXPECT_TRUE(s->Entries(LogIndex(2), LogIndex(2), 1000)->empty());
  EXPECT_EQ(s->Entries(LogIndex(1), LogIndex(5), 1000).status().code(), StatusCode::kOutOfRange);
}

TEST_F(RaftStoreTest, AConflictingSuffixIsReplacedInTheSameBatchAndAGapRefused) {
  auto s = Open();
  ASSERT_TRUE(s->Append(B(Range(1, 4, 1), 1)).ok());
  ASSERT_TRUE(s->Append(B({E(3, 2)}, 1)).ok());
  EXPECT_EQ(s->LastIndex(), LogIndex(3)) << "entries after the conflict are gone";
  s = Reopen(s);
  EXPECT_EQ(Terms(*s), (std::vector<uint64_t>{1, 1, 2}));
  EXPECT_EQ(All(*s).back(), E(3, 2));
  EXPECT_EQ(s->Append(B({E(5, 2)})).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->LastIndex(), LogIndex(3));
  EXPECT_FALSE(s->failed()) << "a refused batch is not a failure";
}

TEST_F(RaftStoreTest, TheLogsShapeIsGuarded) {
  auto s = Open();
  ASSERT_TRUE(s->Append(B(Range(1, 5, 2), 3)).ok());
  EXPECT_EQ(s->Append(B({E(3, 3)})).code(), StatusCode::kFailedPrecondition)
      << "committed entries are never overwritten";
  EXPECT_EQ(s->Append(B({E(6, 2), E(8, 2)})).code(), StatusCode::kInvalidArgument)
      << "entries must be contiguous";
  EXPECT_EQ(s->Append(B({E(6, 1)})).code(), StatusCode::kInvalidArgument)
      << "terms never decrease along the log";
  EXPECT_EQ(s->Append(PersistBatch{H(10, 2), {}, {}}).code(), StatusCode::kFailedPrecondition)
      << "the commit index never goes back";
  EXPECT_EQ(s->Append(PersistBatch{H(9, 3), {}, {}}).code(), StatusCode::kFailedPrecondition)
      << "the term never goes back";
  EXPECT_EQ(s->Append(PersistBatch{H(10, 6), {}, {}}).code(), StatusCode::kFailedPrecondition)
      << "commit cannot pass the last entry";
  PersistBatch no_hs;
  no_hs.entries = {E(6, 11)};
  EXPECT_EQ(s->Append(no_hs).code(), StatusCode::kFailedPrecondition)
      << "an entry's term needs a hard state of that term";
  s = Reopen(s);
  EXPECT_EQ(All(*s), Range(1, 5, 2)) << "nothing refused was written";
  EXPECT_EQ(s->Initial().hard, H(10, 3));
}

TEST_F(RaftStoreTest, CompactionDropsThePrefixAndTruncationWorksAcrossTheBoundary) {
  auto s = Open();
  std::vector<Entry> es = Range(1, 5, 1);
  for (auto& e : Range(6, 10, 2)) es.push_back(e);
  ASSERT_TRUE(s->Append(B(es, 6)).ok());
  EXPECT_EQ(s->Compact({LogIndex(8), Term(2), {}}).code(), StatusCode::kFailedPrecondition)
      << "only committed entries are compacted";
  EXPECT_EQ(s->Compact({LogIndex(6), Term(1), {}}).code(), StatusCode::kFailedPrecondition)
      << "a snapshot whose term the log disagrees with";
  ASSERT_TRUE(s->Compact({LogIndex(6), Term(2), {}}).ok());
  EXPECT_EQ(s->FirstIndex(), LogIndex(7));
  s = Reopen(s);
  EXPECT_EQ(s->FirstIndex(), LogIndex(7));
  EXPECT_EQ(s->Snapshot().index, LogIndex(6));
  EXPECT_EQ(*s->TermAt(LogIndex(6)), Term(2)) << "the snapshot's own term is known";
  EXPECT_EQ(s->TermAt(LogIndex(5)).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s->Entries(LogIndex(5), LogIndex(8), 1 << 20).status().code(), StatusCode::kOutOfRange);
  // A new leader overwrites everything after the snapshot boundary.
  ASSERT_TRUE(s->Append(B({E(7, 3), E(8, 3)}, 6)).ok());
  s = Reopen(s);
  EXPECT_EQ(s->LastIndex(), LogIndex(8));
  EXPECT_EQ(Terms(*s), (std::vector<uint64_t>{3, 3}));
  EXPECT_EQ(All(*s), (std::vector<Entry>{E(7, 3), E(8, 3)}));
  EXPECT_EQ(s->Append(B({E(6, 3)})).code(), StatusCode::kFailedPrecondition)
      << "nothing may be written at or below the snapshot";
  // Compacting everything leaves an empty log that starts after the snapshot.
  ASSERT_TRUE(s->Append(PersistBatch{H(10, 8), {}, {}}).ok());
  ASSERT_TRUE(s->Compact({LogIndex(8), Term(3), {}}).ok());
  s = Reopen(s);
  EXPECT_EQ(s->FirstIndex(), LogIndex(9));
  EXPECT_EQ(s->LastIndex(), LogIndex(8));
  EXPECT_EQ(*s->TermAt(LogIndex(8)), Term(3));
  ASSERT_TRUE(s->Append(B({E(9, 4)}, 8)).ok());
  s = Reopen(s);
  EXPECT_EQ(All(*s), (std::vector<Entry>{E(9, 4)}));
}

TEST_F(RaftStoreTest, ResetToSnapshotReplacesTheWholeLog) {
  auto s = Open();
  ASSERT_TRUE(s->Append(PersistBatch{H(1, 1), {E(1, 1), E(2, 1)}, {}}).ok());
  raft::ConfState conf;
  conf.voters = {NodeId(1), NodeId(2), NodeId(3)};
  ASSERT_TRUE(s->ResetToSnapshot({LogIndex(50), Term(4), conf}).ok());
  s = Reopen(s);
  EXPECT_EQ(s->FirstIndex(), LogIndex(51));
  EXPECT_EQ(s->LastIndex(), LogIndex(50));
  EXPECT_EQ(s->Initial().hard, H(4, 50));
  EXPECT_EQ(s->Initial().conf, conf);
  EXPECT_EQ(s->ResetToSnapshot({LogIndex(40), Term(4), conf}).code(),
            StatusCode::kFailedPrecondition)
      << "an older snapshot is refused";
  ASSERT_TRUE(s->Append(B({E(51, 4)}, 50)).ok());
  s = Reopen(s);
  EXPECT_EQ(All(*s), (std::vector<Entry>{E(51, 4)}));
}

TEST_F(RaftStoreTest, TermsStayInMemoryAsRunsAcrossTruncationAndCompaction) {
  auto s = Open();
  for (uint64_t t = 1; t <= 5; ++t) {
    ASSERT_TRUE(s->Append(B(Range((t - 1) * 100 + 1, t * 100, t), (t - 1) * 100)).ok());
  }
  EXPECT_EQ(s->Stats().entries, 500u);
  EXPECT_EQ(s->Stats().term_runs, 5u);
  ASSERT_TRUE(s->Append(B(Range(450, 460, 7), 400)).ok());
  ASSERT_TRUE(s->Compact({LogIndex(250), Term(3), {}}).ok());
  s = Reopen(s);
  EXPECT_EQ(s->Stats().term_runs, 4u);  // terms 3, 4, 5, 7
  EXPECT_EQ(*s->TermAt(LogIndex(251)), Term(3));
  EXPECT_EQ(*s->TermAt(LogIndex(449)), Term(5));
  EXPECT_EQ(*s->TermAt(LogIndex(450)), Term(7));
  EXPECT_EQ(s->LastIndex(), LogIndex(460));
}

TEST_F(RaftStoreTest, RecoveryNamesADamagedEntryAGapANewerFormatAndAMisplacedRecord) {
  {
    auto s = Open();
    ASSERT_TRUE(s->Append(B(Range(1, 5, 1))).ok());
  }
  std::string good, four;
  Poke([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log, auto*) {
    ASSERT_TRUE(db->Get({}, log, IndexKey(LogIndex(3)), &good).ok());
    ASSERT_TRUE(db->Get({}, log, IndexKey(LogIndex(4)), &four).ok());
    std::string bad = good;
    bad.back() ^= 0x5a;
    ASSERT_TRUE(db->Put({}, log, IndexKey(LogIndex(3)), bad).ok());
  });
  auto r = RaftStore::Open(path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("log entry 3 record fails its checksum"), std::string::npos)
      << r.status().ToString();

  Poke([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log, auto*) {
    std::string newer = good;
    newer[0] = 9;
    ASSERT_TRUE(db->Put({}, log, IndexKey(LogIndex(3)), newer).ok());
  });
  r = RaftStore::Open(path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("format version 9, newer"), std::string::npos);

  Poke([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log, auto*) {
    ASSERT_TRUE(db->Put({}, log, IndexKey(LogIndex(3)), four).ok());
  });
  r = RaftStore::Open(path());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("log entry 3 holds the record of entry 4"), std::string::npos)
      << r.status().ToString();

  Poke([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log, auto*) {
    ASSERT_TRUE(db->Delete({}, log, IndexKey(LogIndex(3))).ok());
  });
  r = RaftStore::Open(path());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("gap: entry 3 is missing"), std::string::npos)
      << r.status().ToString();
}

TEST_F(RaftStoreTest, RecoveryRefusesAHardStateTheLogCannotBackAndADamagedHardState) {
  {
    auto s = Open();
    ASSERT_TRUE(s->Append(B(Range(1, 5, 1), 5)).ok());
  }
  Poke([&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* log, auto*) {
    ASSERT_TRUE(db->Delete({}, log, IndexKey(LogIndex(5))).ok());
  });
  auto r = RaftStore::Open(path());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("commit index 5 is past the last log entry 4"),
            std::string::npos)
      << r.status().ToString();
  Poke([&](rocksdb::DB* db, auto*, rocksdb::ColumnFamilyHandle* meta) {
    std::string hs;
    ASSERT_TRUE(db->Get({}, meta, "hard_state", &hs).ok());
    hs[hs.size() - 1] ^= 1;
    ASSERT_TRUE(db->Put({}, meta, "hard_state", hs).ok());
  });
  r = RaftStore::Open(path());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("hard state record fails its checksum"), std::string::npos)
      << r.status().ToString();
}

// A commit index raised alone is not written (issue 18: the leader synced a 42-byte commit-only
// record after every batch); the next synced write carries it. A restart or a power cut may find
// an older commit index, never an older entry, term or vote.
TEST_F(RaftStoreTest, ACommitIndexAloneWaitsForTheNextSyncedWriteAndACutCanOnlyTakeItBack) {
  int syncs = 0;
  std::filesystem::create_directories(path());  // durable, as DataDir::Open leaves it
  {
    auto fault = std::make_shared<testing::FaultFs>(rocksdb::FileSystem::Default());
    auto env = rocksdb::NewCompositeEnv(fault);
    RaftStoreOptions o;
    o.env = env.get();
    o.on_synced_write = [&](double) { ++syncs; };
    auto s = Open(o);
    ASSERT_TRUE(s->Append(B(Range(1, 4, 10), 1)).ok());
    EXPECT_EQ(syncs, 1) << "entries are synced";
    ASSERT_TRUE(s->Append(PersistBatch{H(10, 3), {}, {}}).ok());
    EXPECT_EQ(syncs, 1) << "a commit index alone is not written";
    EXPECT_EQ(s->Initial().hard.commit, LogIndex(3)) << "the store answers what it wrote";
    ASSERT_TRUE(s->Append(PersistBatch{H(11, 3, 2), {}, {}}).ok());
    EXPECT_EQ(syncs, 2) << "a new term and vote are synced";
    ASSERT_TRUE(s->Append(PersistBatch{H(11, 4, 2), {}, {}}).ok());
    EXPECT_EQ(syncs, 2);
    fault->PowerCut(/*torn=*/false, /*seed=*/1);
    s.reset();
    fault->Settle();
  }
  auto s = Open();
  EXPECT_EQ(s->Initial().hard, H(11, 3, 2))
      << "the cut took back only commit index 4, kept in memory; the synced vote carried commit 3";
  EXPECT_EQ(All(*s), Range(1, 4, 10)) << "no entry is lost";
  // A compaction up to a commit index kept in memory writes it too: the log never starts past
  // its durable commit index.
  ASSERT_TRUE(s->Append(PersistBatch{H(11, 4, 2), {}, {}}).ok());
  ASSERT_TRUE(s->Compact({LogIndex(4), Term(10), {}}).ok());
  s = Reopen(s);
  EXPECT_EQ(s->Initial().hard, H(11, 4, 2));
  EXPECT_EQ(s->FirstIndex(), LogIndex(5));
}

TEST_F(RaftStoreTest, AFullDiskStopsTheStoreForGoodAndCallsTheFatalHandlerOnce) {
  auto fault = std::make_shared<testing::FaultFs>(rocksdb::FileSystem::Default());
  auto env = rocksdb::NewCompositeEnv(fault);
  int fatal_calls = 0;
  RaftStoreOptions o;
  o.env = env.get();
  o.on_fatal = [&](const Status&) { ++fatal_calls; };
  auto s = Open(o);
  ASSERT_TRUE(s->Append(B({E(1, 1)})).ok());
  fault->SetNoSpace(true);
  const Status full = s->Append(B({E(2, 1)}));
  EXPECT_FALSE(full.ok());
  EXPECT_NE(full.message().find("fail-stop"), std::string::npos) << full.ToString();
  EXPECT_NE(full.message().find("No space left"), std::string::npos) << full.ToString();
  EXPECT_NE(full.message().find("must exit"), std::string::npos) << full.ToString();
  EXPECT_TRUE(s->failed());
  fault->SetNoSpace(false);  // space comes back: the store still refuses, without trying
  EXPECT_EQ(s->Append(B({E(2, 1)})).message(), full.message());
  EXPECT_EQ(s->SetConfState({}).message(), full.message());
  EXPECT_EQ(s->Compact({LogIndex(1), Term(1), {}}).message(), full.message());
  EXPECT_EQ(s->ResetToSnapshot({LogIndex(9), Term(1), {}}).message(), full.message());
  EXPECT_EQ(fatal_calls, 1);
  EXPECT_EQ(s->LastIndex(), LogIndex(1)) << "nothing after the failure is acknowledged";
  s.reset();
  s = Open();
  EXPECT_EQ(All(*s), (std::vector<Entry>{E(1, 1)}));
}

TEST_F(RaftStoreTest, AFailedSyncIsFatalToo) {
  auto fault = std::make_shared<testing::FaultFs>(rocksdb::FileSystem::Default());
  auto env = rocksdb::NewCompositeEnv(fault);
  RaftStoreOptions o;
  o.env = env.get();
  auto s = Open(o);
  ASSERT_TRUE(s->Append(B({E(1, 1)})).ok());
  fault->SetSyncError(true);
  EXPECT_FALSE(s->Append(B({E(2, 1)})).ok());
  fault->SetSyncError(false);
  EXPECT_FALSE(s->Append(B({E(2, 1)})).ok()) << "no retry after a failed fsync";
  EXPECT_TRUE(s->failed());
}

TEST_F(RaftStoreTest, AReadOnlyStoreReadsButRefusesWrites) {
  auto s = Open();
  ASSERT_TRUE(s->Append(B(Range(1, 3, 1))).ok());
  RaftStoreOptions ro;
  ro.read_only = true;
  auto r = RaftStore::Open(path(), ro);  // while the writer holds it, as inspection does
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->LastIndex(), LogIndex(3));
  EXPECT_EQ((*r)->Append(B({E(4, 1)})).code(), StatusCode::kFailedPrecondition);
}

TEST_F(RaftStoreTest, ReadsFromAnotherThreadSeeAConsistentLogWhileWritesGoOn) {
  auto s = Open();
  ASSERT_TRUE(s->Append(B({E(1, 1)})).ok());
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) {
      const LogIndex last = s->LastIndex();
      ASSERT_TRUE(s->TermAt(last).ok());
      auto es = s->Entries(LogIndex(1), last.next(), UINT64_MAX);
      ASSERT_TRUE(es.ok()) << es.status().ToString();
      ASSERT_EQ(es->size(), last.value());
      ASSERT_EQ(es->back(), E(last.value(), 1));
    }
  });
  for (uint64_t i = 2; i <= 200; ++i) ASSERT_TRUE(s->Append(B({E(i, 1)}, i - 1)).ok());
  done = true;
  reader.join();
  EXPECT_EQ(s->LastIndex(), LogIndex(200));
}

}  // namespace
}  // namespace lockd::storage
