// InspectDataDir: what an operator sees, and that damage is named rather than described.
#include "storage/inspect.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "storage/node_storage.h"
#include "support/process.h"

namespace lockd::storage {
namespace {

using raft::LogIndex;
using raft::NodeId;
using raft::Term;

TEST(Inspect, ReportsLogHardStateMembersAndSnapshotWhileTheNodeRuns) {
  lockd::testing::TempDir tmp;
  auto dir = DataDir::Open(tmp.path() + "/node");
  ASSERT_TRUE(dir.ok());
  auto s = NodeStorage::Open(**dir);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  PersistBatch b;
  b.hard_state = raft::HardState{Term(3), NodeId(2), LogIndex(20)};
  for (uint64_t i = 1; i <= 30; ++i) {
    b.entries.push_back({Term(i <= 10 ? 2 : 3), LogIndex(i), raft::EntryType::kNormal, "x"});
  }
  b.conf_state = raft::ConfState{{NodeId(1), NodeId(2), NodeId(3)}, {}, {}, {}, false};
  ASSERT_TRUE((*s)->log().Append(b).ok());
  ASSERT_TRUE((*s)->SaveSnapshot({LogIndex(15), Term(3), *b.conf_state}, "payload!").ok());

  auto r = InspectDataDir(tmp.path() + "/node");  // the node still holds the dir
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->first_index, LogIndex(16));
  EXPECT_EQ(r->last_index, LogIndex(30));
  EXPECT_EQ(r->entries, 15u);
  EXPECT_EQ(r->hard_state, b.hard_state);
  EXPECT_EQ(r->conf, *b.conf_state);
  EXPECT_EQ(r->snapshot_meta.index, LogIndex(15));
  EXPECT_EQ(r->snapshot_payload_bytes, 8u);
  EXPECT_TRUE(r->pending_repair.empty());
  EXPECT_GT(r->raft_bytes, 0u);
  EXPECT_NE(r->owner.find("(running)"), std::string::npos) << r->owner;
  const std::string text = FormatReport(*r);
  EXPECT_NE(text.find("first 16  last 30"), std::string::npos) << text;
  EXPECT_NE(text.find("term 3  vote 2  commit 20"), std::string::npos) << text;
  EXPECT_NE(text.find("voters 1,2,3"), std::string::npos) << text;
  EXPECT_NE(text.find("status        verified"), std::string::npos) << text;
}

TEST(Inspect, NamesADamagedSnapshotAndAMissingDir) {
  lockd::testing::TempDir tmp;
  {
    auto dir = DataDir::Open(tmp.path() + "/node");
    ASSERT_TRUE(dir.ok());
    auto s = NodeStorage::Open(**dir);
    ASSERT_TRUE(s.ok());
    PersistBatch b;
    b.hard_state = raft::HardState{Term(1), NodeId(1), LogIndex(5)};
    for (uint64_t i = 1; i <= 5; ++i) {
      b.entries.push_back({Term(1), LogIndex(i), raft::EntryType::kNormal, "x"});
    }
    ASSERT_TRUE((*s)->log().Append(b).ok());
    ASSERT_TRUE((*s)->SaveSnapshot({LogIndex(5), Term(1), {}}, std::string(100, 'p')).ok());
  }
  const std::string file =
      tmp.path() + "/node/snapshots/" + SnapshotStore::FileName({LogIndex(5), Term(1), {}});
  std::filesystem::resize_file(file, 60);
  auto r = InspectDataDir(tmp.path() + "/node");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(file), std::string::npos) << r.status().ToString();
  EXPECT_EQ(InspectDataDir(tmp.path() + "/nope").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace lockd::storage
