// Snapshots and log compaction on a synchronous cluster: a follower behind the compacted prefix
// is sent the snapshot, installs it, restarts from it; the leader sends no appends meanwhile.
#include <gtest/gtest.h>

#include "cluster.h"
#include "raft/progress.h"
#include "raft/raft.h"

namespace lockd::raft {
namespace {

using testing::Cluster;

int CountSent(Cluster& c, MessageType t) {
  int n = 0;
  for (const auto& m : c.sent()) n += m.type == t;
  return n;
}

TEST(Snapshot, AFollowerBehindTheCompactedLogIsSentTheSnapshotAndCatchesUp) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  ASSERT_NE(leader, 0);
  const int lag = leader == 3 ? 1 : 3;
  c.Isolate(lag);
  for (int k = 0; k < 20; ++k) ASSERT_TRUE(c.node(leader).Propose("e" + std::to_string(k)).ok());
  c.TickAll(2);
  const LogIndex applied = c.node(leader).log().applied();
  ASSERT_TRUE(c.Compact(leader, applied).ok());
  EXPECT_EQ(c.node(leader).log().first_index(), applied.next());
  c.Heal();
  c.TickAll(3);
  EXPECT_GE(CountSent(c, MessageType::kSnapshot), 1);
  EXPECT_EQ(c.storage(lag).Snapshot().index, applied);
  EXPECT_EQ(c.node(lag).log().committed(), c.node(leader).log().committed());
  EXPECT_EQ(c.applied(lag), c.applied(leader)) << "the snapshot's payload, then the log";
  ASSERT_TRUE(c.node(leader).Propose("after").ok());
  c.TickAll(2);
  EXPECT_EQ(c.applied(lag).back().data, "after");
  // A restart comes back from the installed snapshot.
  c.Restart(lag);
  EXPECT_EQ(c.node(lag).log().first_index(), applied.next());
  EXPECT_EQ(c.node(lag).conf_state(), c.node(leader).conf_state());
  c.TickAll(3);
  EXPECT_EQ(c.applied(lag), c.applied(leader));
}

TEST(Snapshot, AFailedTransferIsRetriedAndNoAppendGoesOutMeanwhile) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  const int lag = leader == 3 ? 1 : 3;
  c.Isolate(lag);
  for (int k = 0; k < 5; ++k) ASSERT_TRUE(c.node(leader).Propose("e").ok());
  c.TickAll(2);
  ASSERT_TRUE(c.Compact(leader, c.node(leader).log().applied()).ok());
  c.FailSnapshots(true);
  c.Heal();
  const size_t first_sent = c.sent().size();
  c.TickAll(3);  // every transfer fails (reported), and is retried after a heartbeat response
  EXPECT_GE(CountSent(c, MessageType::kSnapshot), 2);
  for (size_t k = first_sent; k < c.sent().size(); ++k) {
    const Message& m = c.sent()[k];
    EXPECT_FALSE(m.type == MessageType::kApp && m.to == NodeId(lag) &&
                 m.index.next() < c.node(leader).log().first_index())
        << "an append of compacted entries";
  }
  const Progress* pr = c.node(leader).progress(NodeId(lag));
  ASSERT_NE(pr, nullptr);
  EXPECT_LT(pr->match(), c.node(leader).log().first_index());
  c.FailSnapshots(false);
  c.Heal();
  c.TickAll(3);
  EXPECT_EQ(c.node(lag).log().committed(), c.node(leader).log().committed());
}

TEST(Snapshot, SnapshotMetaCarriesTheMembershipAtItsIndex) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  c.TickAll(2);
  const LogIndex before = c.node(leader).log().applied();
  ConfChange cc;
  cc.changes.push_back({ConfChangeType::kAddLearner, NodeId(4)});
  c.AddNode(4);
  ASSERT_TRUE(c.node(leader).ProposeConfChange(cc).ok());
  c.TickAll(2);
  auto old_meta = c.node(leader).SnapshotMetaAt(before);
  auto new_meta = c.node(leader).SnapshotMetaAt(c.node(leader).log().applied());
  ASSERT_TRUE(old_meta.ok() && new_meta.ok());
  EXPECT_TRUE(old_meta->conf.learners.empty());
  EXPECT_EQ(new_meta->conf.learners, std::vector<NodeId>{NodeId(4)});
  EXPECT_FALSE(c.node(leader).SnapshotMetaAt(c.node(leader).log().applied().next()).ok());
  // A learner that joins after compaction learns the membership from the snapshot.
  ASSERT_TRUE(c.Compact(leader, c.node(leader).log().applied()).ok());
  c.TickAll(3);
  EXPECT_EQ(c.node(4).conf_state(), c.node(leader).conf_state());
}

// Found by the simulator: a node added later learns the log from index 1 without the bootstrap
// membership, so before its first membership entry it knows no membership. A snapshot there
// would carry no voters, and every node it is sent to refuses it as malformed.
TEST(Snapshot, ANodeThatJoinedLaterTakesNoSnapshotBeforeItKnowsTheMembership) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  ASSERT_NE(leader, 0);
  for (int k = 0; k < 3; ++k) ASSERT_TRUE(c.node(leader).Propose("e").ok());
  c.TickAll(2);
  c.AddNode(4);
  ConfChange cc;
  cc.changes.push_back({ConfChangeType::kAddLearner, NodeId(4)});
  auto at = c.node(leader).ProposeConfChange(cc);
  ASSERT_TRUE(at.ok());
  c.TickAll(3);
  ASSERT_GE(c.node(4).log().applied(), *at);
  auto before = c.node(4).SnapshotMetaAt(at->prev());
  EXPECT_FALSE(before.ok() && before->conf.voters.empty())
      << "a snapshot with no voters: " << ToString(before->conf);
  EXPECT_FALSE(before.ok());
  auto after = c.node(4).SnapshotMetaAt(*at);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->conf, c.node(leader).conf_state());
}

TEST(Snapshot, ProgressInSnapshotStateSendsNothingUntilDone) {
  Progress pr(LogIndex(1), 4);
  pr.BecomeSnapshot(LogIndex(10));
  EXPECT_FALSE(pr.CanSend());
  EXPECT_FALSE(pr.MaybeDecrease(LogIndex(3), LogIndex(2)));
  pr.SnapshotDone(true);
  EXPECT_EQ(pr.state(), Progress::State::kProbe);
  EXPECT_EQ(pr.next(), LogIndex(11));
  EXPECT_FALSE(pr.CanSend()) << "waits for the follower's answer";
  pr.OnHeartbeatResponse();
  EXPECT_TRUE(pr.CanSend());
  pr.BecomeSnapshot(LogIndex(12));
  pr.SnapshotDone(false);
  EXPECT_EQ(pr.next(), LogIndex(1)) << "a failed snapshot resumes from what the follower has";
}

}  // namespace
}  // namespace lockd::raft
