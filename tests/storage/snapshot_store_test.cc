// SnapshotStore: durable atomic saves, the newest loaded, damage named, failures fatal.
#include "storage/snapshot_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fault_fs.h"
#include "support/process.h"

namespace lockd::storage {
namespace {

namespace fs = std::filesystem;

raft::SnapshotMeta Meta(uint64_t index, uint64_t term) {
  raft::SnapshotMeta m;
  m.index = raft::LogIndex(index);
  m.term = raft::Term(term);
  m.conf.voters = {raft::NodeId(1), raft::NodeId(2), raft::NodeId(3)};
  return m;
}

size_t Files(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".snap";
  return n;
}

TEST(SnapshotStore, SavesLoadsTheNewestAndRemovesOlderOnes) {
  lockd::testing::TempDir dir;
  SnapshotStore store(dir.path() + "/snapshots");
  auto none = store.LoadLatest();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
  ASSERT_TRUE(store.Save(Meta(10, 1), "state at 10").ok());
  ASSERT_TRUE(store.Save(Meta(20, 2), std::string(100'000, 'x')).ok());
  auto got = store.LoadLatest();
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ((*got)->meta, Meta(20, 2));
  EXPECT_EQ((*got)->payload.size(), 100'000u);
  EXPECT_EQ(Files(store.dir()), 1u);
}

TEST(SnapshotStore, ADamagedTruncatedOrNewerSnapshotIsAnErrorNamingTheFile) {
  lockd::testing::TempDir dir;
  SnapshotStore store(dir.path() + "/snapshots");
  ASSERT_TRUE(store.Save(Meta(10, 1), "payload-bytes").ok());
  const std::string path = (*store.LoadLatest().value()).path;
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string& b) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << b;
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 1;
  write(flipped);
  auto r = store.LoadLatest();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path), std::string::npos);
  EXPECT_NE(r.status().message().find("checksum"), std::string::npos);

  write(bytes.substr(0, bytes.size() - 7));
  EXPECT_FALSE(store.LoadLatest().ok());
  write(bytes.substr(0, 5));
  EXPECT_FALSE(store.LoadLatest().ok());

  std::string newer = bytes;
  newer[8] = 2;  // the version field follows the 8-byte magic
  write(newer);
  r = store.LoadLatest();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos);
}

TEST(SnapshotStore, ALeftoverTemporaryFileIsIgnored) {
  lockd::testing::TempDir dir;
  SnapshotStore store(dir.path() + "/snapshots");
  ASSERT_TRUE(store.Save(Meta(10, 1), "a").ok());
  std::ofstream(store.dir() + "/snap-00000000000000ff-0000000000000002.snap.tmp") << "half";
  auto got = store.LoadLatest();
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ((*got)->meta.index, raft::LogIndex(10));
}

TEST(SnapshotStore, AFileWhoseNameDisagreesWithItsContentIsRefused) {
  lockd::testing::TempDir dir;
  SnapshotStore store(dir.path() + "/snapshots");
  ASSERT_TRUE(store.Save(Meta(10, 1), "a").ok());
  fs::rename(store.dir() + "/" + SnapshotStore::FileName(Meta(10, 1)),
             store.dir() + "/" + SnapshotStore::FileName(Meta(12, 1)));
  auto r = store.LoadLatest();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not what its name says"), std::string::npos)
      << r.status().ToString();
}

TEST(SnapshotStore, AnEmptyFileIsNamedAsDamaged) {
  lockd::testing::TempDir dir;
  SnapshotStore store(dir.path() + "/snapshots");
  ASSERT_TRUE(store.Save(Meta(10, 1), "a").ok());
  const std::string path = store.dir() + "/" + SnapshotStore::FileName(Meta(10, 1));
  std::ofstream(path, std::ios::trunc).close();
  auto r = store.LoadLatest();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find(path), std::string::npos);
}

TEST(SnapshotStore, AFullDiskFailsTheSaveForGoodAndKeepsThePreviousSnapshot) {
  lockd::testing::TempDir dir;
  testing::FaultFs fault(rocksdb::FileSystem::Default());
  int fatal_calls = 0;
  SnapshotStoreOptions o;
  o.fs = &fault;
  o.on_fatal = [&](const Status&) { ++fatal_calls; };
  SnapshotStore store(dir.path() + "/snapshots", o);
  ASSERT_TRUE(store.Save(Meta(10, 1), "first").ok());
  fault.SetNoSpace(true);
  const Status full = store.Save(Meta(20, 2), std::string(4096, 'x'));
  EXPECT_FALSE(full.ok());
  EXPECT_NE(full.message().find("No space left"), std::string::npos) << full.ToString();
  EXPECT_TRUE(store.failed());
  fault.SetNoSpace(false);
  EXPECT_FALSE(store.Save(Meta(30, 2), "later").ok()) << "no save after a failure";
  EXPECT_EQ(fatal_calls, 1);
  auto got = store.LoadLatest();
  ASSERT_TRUE(got.ok() && *got) << got.status().ToString();
  EXPECT_EQ((*got)->meta, Meta(10, 1));
  EXPECT_EQ((*got)->payload, "first");
}

}  // namespace
}  // namespace lockd::storage
