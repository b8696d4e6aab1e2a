// The Raft core, claim by claim (Raft paper and thesis), on a synchronous in-memory cluster.
#include "raft/raft.h"

#include <gtest/gtest.h>

#include "cluster.h"
#include "raft/quorum.h"

namespace lockd::raft {
namespace {

using testing::Cluster;

int CountLeaders(Cluster& c, int n) {
  int leaders = 0;
  for (int i = 1; i <= n; ++i) leaders += c.node(i).role() == Role::kLeader;
  return leaders;
}

TEST(Quorum, MajorityAndJointArithmetic) {
  MajorityConfig three({NodeId(1), NodeId(2), NodeId(3)});
  std::map<NodeId, LogIndex> match = {
      {NodeId(1), LogIndex(5)}, {NodeId(2), LogIndex(3)}, {NodeId(3), LogIndex(1)}};
  EXPECT_EQ(three.CommittedIndex([&](NodeId id) { return match[id]; }), LogIndex(3));
  EXPECT_EQ(three.Vote({{NodeId(1), true}, {NodeId(2), true}}), VoteResult::kWon);
  EXPECT_EQ(three.Vote({{NodeId(1), true}, {NodeId(2), false}}), VoteResult::kPending);
  EXPECT_EQ(three.Vote({{NodeId(1), false}, {NodeId(2), false}}), VoteResult::kLost);
  JointConfig joint(MajorityConfig({NodeId(1), NodeId(2), NodeId(3)}),
                    MajorityConfig({NodeId(3), NodeId(4), NodeId(5)}));
  EXPECT_FALSE(joint.Majority([](NodeId id) { return id.value() <= 2; }))
      << "a majority of the incoming config alone is not enough";
  EXPECT_TRUE(joint.Majority([](NodeId id) { return id.value() >= 2 && id.value() <= 4; }));
}

TEST(Election, ASingleNodeLeadsAndCommitsItsNoOp) {
  Cluster c(1);
  ASSERT_EQ(c.ElectLeader(), 1);
  c.Stabilize();
  EXPECT_EQ(c.node(1).log().committed(), LogIndex(1));
  ASSERT_EQ(c.applied(1).size(), 1u);
  EXPECT_TRUE(c.applied(1)[0].data.empty());
}

TEST(Election, ThreeNodesElectExactlyOneLeaderWhoCommitsAnEntryOfItsTerm) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  ASSERT_NE(leader, 0);
  EXPECT_EQ(CountLeaders(c, 3), 1);
  c.TickAll(3);
  EXPECT_TRUE(c.node(leader).committed_current_term());
  for (int i = 1; i <= 3; ++i)
    EXPECT_EQ(c.node(i).log().committed(), c.node(leader).log().committed());
}

TEST(Election, PreVoteDoesNotDisruptAStableLeader) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  const Term term = c.node(leader).term();
  const int lone = leader == 3 ? 1 : 3;
  c.Isolate(lone);
  c.TickAll(100);  // the isolated node times out again and again
  EXPECT_EQ(c.node(lone).term(), term) << "pre-votes never raise the term";
  c.Heal();
  c.TickAll(20);
  EXPECT_EQ(c.node(leader).role(), Role::kLeader);
  EXPECT_EQ(c.node(leader).term(), term);
}

TEST(Election, AVoterRefusesVotesWhileItHearsFromALeader) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  const int a = leader == 1 ? 2 : 1;
  const int b = 6 - leader - a;
  // `a` campaigns on its own (without pre-vote's protection) while `b` hears from the leader.
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = NodeId(a);
  vote.to = NodeId(b);
  vote.term = c.node(leader).term() + 5;
  vote.index = c.node(a).log().last_index();
  vote.log_term = c.node(a).log().last_term();
  ASSERT_TRUE(c.node(b).Step(vote).ok());
  EXPECT_EQ(c.node(b).term(), c.node(leader).term()) << "ignored: term unchanged";
  EXPECT_EQ(c.node(b).vote(), NodeId(leader));
}

// Failover (issue 18): a follower told that its connection to the leader broke campaigns at the
// minimum timeout instead of a random one up to twice that; counted from its last heartbeat.
TEST(Election, AFollowerThatLostItsLeadersConnectionCampaignsNearTheMinimumTimeout) {
  constexpr int kElectionTick = 10;  // Config's default
  Cluster c(3);
  const int leader = c.ElectLeader();
  ASSERT_NE(leader, 0);
  c.TickAll(3);
  const Term term = c.node(leader).term();
  const int a = leader == 1 ? 2 : 1;
  c.Isolate(leader);  // as if its process died: nothing more from it
  c.node(a).PeerUnreachable(NodeId(leader));
  int ticks = 0;
  while (c.node(a).role() != Role::kLeader && ticks < 10 * kElectionTick) {
    c.TickAll();
    ++ticks;
  }
  EXPECT_EQ(c.node(a).role(), Role::kLeader);
  EXPECT_GE(ticks, kElectionTick) << "never before E_min since the last heartbeat";
  EXPECT_LE(ticks, kElectionTick + kElectionTick / 5) << "within [E_min, 1.2 E_min)";
  EXPECT_EQ(c.node(a).term(), term + 1);
}

// The hint is only a hint: a follower that still hears from its leader never campaigns on it.
TEST(Election, AWrongUnreachableHintDoesNotDisruptALiveLeader) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  ASSERT_NE(leader, 0);
  const Term term = c.node(leader).term();
  for (int t = 0; t < 50; ++t) {
    for (int i = 1; i <= 3; ++i) c.node(i).PeerUnreachable(NodeId(leader));
    c.TickAll();
  }
  EXPECT_EQ(c.node(leader).role(), Role::kLeader);
  EXPECT_EQ(c.node(leader).term(), term);
}

TEST(Election, ARestartedVoterRefusesVotesForAnElectionTimeout) {
  Cluster c(3);
  c.ElectLeader();
  c.Restart(2);
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = NodeId(3);
  vote.to = NodeId(2);
  vote.term = c.node(2).term() + 1;
  vote.index = LogIndex(100);
  vote.log_term = vote.term;
  ASSERT_TRUE(c.node(2).Step(vote).ok());
  EXPECT_TRUE(c.node(2).vote().zero() || c.node(2).term() < vote.term);
}

TEST(Election, VotesGoOnlyToCandidatesWithLogsAtLeastAsUpToDate) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  ASSERT_TRUE(c.node(leader).Propose("x").ok());
  c.Stabilize();
  const int follower = leader == 1 ? 2 : 1;
  c.TickAll(15);  // everyone out of the refusal window once the leader is gone below
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = NodeId(9);
  vote.to = NodeId(follower);
  vote.term = c.node(follower).term() + 1;
  vote.index = LogIndex(1);  // shorter than the follower's log
  vote.log_term = c.node(follower).term();
  c.Isolate(follower);
  c.Tick(follower, 25);
  c.Stabilize();
  ASSERT_TRUE(c.node(follower).Step(vote).ok());
  EXPECT_NE(c.node(follower).vote(), NodeId(9));
}

TEST(Replication, ProposalsCommitAndApplyInTheSameOrderEverywhere) {
  Cluster c(5);
  const int leader = c.ElectLeader();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(c.node(leader).Propose("cmd" + std::to_string(i)).ok());
  c.TickAll(5);
  for (int n = 1; n <= 5; ++n) {
    ASSERT_EQ(c.applied(n).size(), c.applied(leader).size()) << n;
    for (size_t k = 0; k < c.applied(n).size(); ++k)
      EXPECT_EQ(c.applied(n)[k], c.applied(leader)[k]);
  }
}

TEST(Replication, AFollowerWithADivergentLogIsRepaired) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  const int lagging = leader == 3 ? 2 : 3;
  c.Isolate(lagging);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(c.node(leader).Propose("a" + std::to_string(i)).ok());
  c.Stabilize();
  c.Heal();
  c.TickAll(10);
  EXPECT_EQ(c.node(lagging).log().last_index(), c.node(leader).log().last_index());
  EXPECT_EQ(c.node(lagging).log().committed(), c.node(leader).log().committed());
}

TEST(Replication, AProposalWithoutALeaderFailsFastWithARetryableReason) {
  Cluster c(3);
  auto r = c.node(1).Propose("x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
}

TEST(Replication, InflightAppendsPerFollowerAreBounded) {
  Cluster c(3, {}, /*max_inflight=*/4);
  const int leader = c.ElectLeader();
  const int f = leader == 1 ? 2 : 1;
  c.Cut(leader, f);  // appends to f are lost: none is acknowledged
  c.sent().clear();
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(c.node(leader).Propose("p" + std::to_string(i)).ok());
    c.Stabilize();
  }
  int apps = 0;
  for (const auto& m : c.sent()) apps += m.type == MessageType::kApp && m.to == NodeId(f);
  EXPECT_LE(apps, 4);
}

// Issue 18: a leader that defers commit-only appends sends each follower one append per entry
// (the entry, carrying the commit index as it was); the next append, a heartbeat or SendCommit
// carries the new commit index. Without deferral, each commit costs every follower an empty
// append (and its answer) more.
int AppsPerFollowerForOneEntry(bool defer) {
  Cluster c(3, {}, 256, defer);
  const int leader = c.ElectLeader();
  c.Stabilize();
  const int f = leader == 1 ? 2 : 1;
  c.sent().clear();
  EXPECT_TRUE(c.node(leader).Propose("x").ok());
  c.Stabilize();
  int apps = 0;
  for (const auto& m : c.sent()) apps += m.type == MessageType::kApp && m.to == NodeId(f);
  return apps;
}

TEST(Replication, ADeferredCommitIndexTravelsWithTheNextAppendOrSendCommit) {
  EXPECT_EQ(AppsPerFollowerForOneEntry(false), 2) << "the entry, then the commit index alone";
  EXPECT_EQ(AppsPerFollowerForOneEntry(true), 1) << "the entry only";

  Cluster c(3, {}, 256, /*defer_commit_only_appends=*/true);
  const int leader = c.ElectLeader();
  c.Stabilize();
  c.node(leader).SendCommit();  // the election's no-op, committed, reaches everyone
  c.Stabilize();
  ASSERT_FALSE(c.node(leader).commit_unsent());
  ASSERT_TRUE(c.node(leader).Propose("a").ok());
  c.Stabilize();
  const LogIndex a = c.node(leader).log().committed();
  EXPECT_EQ(a, c.node(leader).log().last_index()) << "committed on the leader";
  EXPECT_TRUE(c.node(leader).commit_unsent());
  for (int i = 1; i <= 3; ++i) {
    if (i == leader) continue;
    EXPECT_LT(c.node(i).log().committed(), a) << "not told yet: " << i;
  }
  // The next entry's append carries a's commit.
  ASSERT_TRUE(c.node(leader).Propose("b").ok());
  c.Stabilize();
  for (int i = 1; i <= 3; ++i) EXPECT_GE(c.node(i).log().committed(), a) << i;
  // SendCommit sends b's, once: then nothing is unsent.
  EXPECT_TRUE(c.node(leader).commit_unsent());
  c.node(leader).SendCommit();
  c.Stabilize();
  EXPECT_FALSE(c.node(leader).commit_unsent());
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(c.node(i).log().committed(), c.node(leader).log().committed()) << i;
  }
  // A heartbeat carries it too (without SendCommit).
  ASSERT_TRUE(c.node(leader).Propose("c").ok());
  c.Stabilize();
  c.TickAll(2);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(c.node(i).log().committed(), c.node(leader).log().committed()) << i;
  }
  EXPECT_FALSE(c.node(leader).commit_unsent());
}

// A follower counted by commit_unsent() and then cut off is counted no more once SendCommit sent
// it the index (the lost append is repaired by heartbeats), so a runtime that flushes while
// commit_unsent() holds never spins; with nothing to send, SendCommit sends nothing.
TEST(Replication, SendCommitClearsCommitUnsentEvenWhenTheFollowerIsCutOff) {
  Cluster c(3, {}, 256, /*defer_commit_only_appends=*/true);
  const int leader = c.ElectLeader();
  c.Stabilize();
  const int f = leader == 1 ? 2 : 1;
  ASSERT_TRUE(c.node(leader).Propose("a").ok());
  c.Stabilize();
  ASSERT_TRUE(c.node(leader).commit_unsent()) << "both followers acknowledged, neither was told";
  c.Cut(leader, f);
  c.node(leader).SendCommit();
  c.Stabilize();
  EXPECT_FALSE(c.node(leader).commit_unsent());
  EXPECT_LT(c.node(f).log().committed(), c.node(leader).log().committed()) << "lost on the way";
  c.sent().clear();
  c.node(leader).SendCommit();
  c.Stabilize();
  EXPECT_TRUE(c.sent().empty()) << "nothing left to send";
  c.Heal();
  c.TickAll(2);  // a heartbeat carries it
  EXPECT_EQ(c.node(f).log().committed(), c.node(leader).log().committed());
}

// Followers in the probe state, or with appends in flight, are not counted: the next answer or
// heartbeat sends them what they lack, the commit index with it.
TEST(Replication, AFollowerWithAppendsInFlightIsNotCountedUntilItAnswers) {
  Cluster c(3, {}, 256, /*defer_commit_only_appends=*/true);
  const int leader = c.ElectLeader();
  c.Stabilize();
  c.node(leader).SendCommit();
  c.Stabilize();
  const int f = leader == 1 ? 2 : 1;
  c.CutOneWay(f, leader);  // its answers are lost: its append stays in flight
  ASSERT_TRUE(c.node(leader).Propose("a").ok());
  c.Stabilize();
  ASSERT_EQ(c.node(leader).progress(NodeId(f))->inflight(), 1u);
  // The third member answered and was not told: counted. f is not.
  ASSERT_TRUE(c.node(leader).commit_unsent());
  c.node(leader).SendCommit();
  c.Stabilize();
  EXPECT_FALSE(c.node(leader).commit_unsent()) << "f, with an append in flight, is not counted";
  c.Heal();
  c.TickAll(2);
  EXPECT_EQ(c.node(f).log().committed(), c.node(leader).log().committed());
}

TEST(CheckQuorum, AnIsolatedLeaderStepsDown) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  c.Isolate(leader);
  c.Tick(leader, 25);
  c.Stabilize();
  EXPECT_NE(c.node(leader).role(), Role::kLeader);
}

TEST(ReadIndex, IsServedOnlyAfterAQuorumRoundBegunAfterTheRead) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  c.TickAll(2);
  ASSERT_TRUE(c.node(leader).ReadIndex(7).ok());
  c.Stabilize();
  EXPECT_TRUE(c.reads(leader).empty()) << "no round has started since the read";
  EXPECT_TRUE(c.node(leader).round_wanted());
  ASSERT_TRUE(c.node(leader).RequestRound().ok());
  c.Stabilize();
  ASSERT_EQ(c.reads(leader).size(), 1u);
  EXPECT_EQ(c.reads(leader)[0].ctx, 7u);
  EXPECT_EQ(c.reads(leader)[0].index, c.node(leader).log().committed());
}

TEST(ReadIndex, AnIsolatedLeaderServesNoRead) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  c.TickAll(2);
  c.Isolate(leader);
  ASSERT_TRUE(c.node(leader).ReadIndex(1).ok());
  ASSERT_TRUE(c.node(leader).RequestRound().ok());
  c.Stabilize();
  EXPECT_TRUE(c.reads(leader).empty());
}

TEST(Rounds, AMajorityEchoingARoundIdConfirmsThatRound) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  c.TickAll(2);
  ASSERT_TRUE(c.node(leader).RequestRound().ok());
  const uint64_t round = c.node(leader).newest_round();
  bool acked = false;
  c.Stabilize();
  for (const auto& m : c.sent()) acked |= m.type == MessageType::kHeartbeatResp && m.round == round;
  EXPECT_TRUE(acked);
}

TEST(Transfer, TimeoutNowMakesACaughtUpTargetLeaderAndEndsTheTimeBranch) {
  Cluster c(3);
  const int leader = c.ElectLeader();
  c.TickAll(2);
  const int target = leader == 1 ? 2 : 1;
  ASSERT_TRUE(c.node(leader).TransferLeadership(NodeId(target)).ok());
  EXPECT_TRUE(c.node(leader).lease_time_branch_ended());
  c.Stabilize();
  EXPECT_EQ(c.node(target).role(), Role::kLeader);
  EXPECT_FALSE(c.node(leader).role() == Role::kLeader);
}

TEST(Messages, ANewerFormatIsRefused) {
  Cluster c(1);
  Message m;
  m.version = kFormatVersion + 1;
  m.from = NodeId(2);
  m.to = NodeId(1);
  EXPECT_EQ(c.node(1).Step(m).code(), StatusCode::kFailedPrecondition);
}

TEST(Persistence, TermAndVoteAreInTheReadyBeforeTheVoteLeaves) {
  Cluster c(3);
  c.ElectLeader();
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(c.storage(i).Initial().hard.term, c.node(i).term());
    EXPECT_EQ(c.storage(i).Initial().hard.vote, c.node(i).vote());
  }
}

}  // namespace
}  // namespace lockd::raft
