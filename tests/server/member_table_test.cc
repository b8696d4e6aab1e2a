// The member table a membership entry carries, and the identity store that records it.
#include "server/member_table.h"

#include <gtest/gtest.h>

#include "base/codec.h"
#include "server/cluster_identity.h"
#include "support/process.h"

namespace lockd::server {
namespace {

std::vector<MemberSpec> Three() {
  return {{1, "h:7501", "h:7401"}, {2, "h:7502", "h:7402"}, {3, "h:7503", "h:7403"}};
}

/// A data dir's identity in a cluster of the three members above (a fresh incarnation).
ClusterIdentity ThreeMembers() {
  ClusterIdentity id;
  id.bootstrap_id = DeriveBootstrapId("t", Three());
  id.incarnation = NewRandomId();
  id.members = Three();
  return id;
}

raft::ConfState Voters(std::vector<uint64_t> ids, std::vector<uint64_t> learners = {}) {
  raft::ConfState cs;
  for (uint64_t id : ids) cs.voters.push_back(raft::NodeId(id));
  for (uint64_t id : learners) cs.learners.push_back(raft::NodeId(id));
  return cs;
}

TEST(MemberTable, RoundTrips) {
  auto back = DecodeMemberTable(EncodeMemberTable(Three()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, Three());
  auto empty = DecodeMemberTable(EncodeMemberTable({}));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(MemberTable, DamageANewerVersionAndDuplicatesAreRefused) {
  const std::string good = EncodeMemberTable(Three());
  for (size_t cut = 0; cut < good.size(); ++cut) {
    EXPECT_FALSE(DecodeMemberTable(good.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(DecodeMemberTable(good + "x").ok());
  std::string newer = good;
  newer[0] = 3;
  auto refused = DecodeMemberTable(newer);
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  auto twice = Three();
  twice[2].id = 1;
  EXPECT_FALSE(DecodeMemberTable(EncodeMemberTable(twice)).ok());
  EXPECT_FALSE(DecodeMemberTable(EncodeMemberTable({{0, "a:1", "b:2"}})).ok());
}

TEST(MemberTable, ATableWithAnAddressThatIsNotHostPortIsRefused) {
  // A table comes from the log or a peer's snapshot: a bad address in it never reaches the
  // identity file or the transport.
  const std::vector<std::string> bads = {"a b:7504",
                                         "a\nknown-peer 2 ab:7504",
                                         "h",
                                         "h:0",
                                         "::1:80",
                                         std::string(300, 'h') + ":1",
                                         std::string("h\0:1", 4)};
  for (const std::string& bad : bads) {
    auto table = Three();
    table[1].client_addr = bad;
    auto refused = DecodeMemberTable(EncodeMemberTable(table));
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_FALSE(MemberTableAfter(Three(), Voters({1, 2, 3}), EncodeMemberTable(table)).ok());
    table = Three();
    table[2].peer_addr = bad;
    EXPECT_FALSE(DecodeMemberTable(EncodeMemberTable(table)).ok()) << bad;
  }
  EXPECT_TRUE(ValidMemberAddr("[::1]:7501").ok());
  EXPECT_TRUE(ValidMemberAddr("lock-2.example.com:7501").ok());
}

TEST(MemberTable, ARemovalNamesTheIncarnationItRemoves) {
  const std::string inc = NewRandomId();
  const std::string removal = EncodeMemberTable(Three(), inc);
  EXPECT_EQ(DecodeRemovedIncarnation(removal).value(), inc);
  EXPECT_EQ(DecodeMemberTable(removal).value(), Three());
  EXPECT_EQ(DecodeRemovedIncarnation(EncodeMemberTable(Three())).value(), "");
  // Format 1 (no incarnation) still reads.
  Writer w;
  w.U8(1);
  w.Varint(1);
  w.Varint(1);
  w.Bytes("h:7501");
  w.Bytes("h:7401");
  auto v1 = DecodeMemberTable(w.Take());
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_EQ(v1->size(), 1u);
}

TEST(MemberTable, AnEntryLeadsToItsContextsTableTrimmedToItsMembership) {
  auto with4 = Three();
  with4.push_back({4, "h:7504", "h:7404"});
  // Adding a learner: the context names it.
  auto added = MemberTableAfter(Three(), Voters({1, 2, 3}, {4}), EncodeMemberTable(with4));
  ASSERT_TRUE(added.ok());
  EXPECT_EQ(*added, with4);
  // Leaving a joint configuration carries no context: the table stays, trimmed.
  auto kept = MemberTableAfter(with4, Voters({1, 2, 4}), "");
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->size(), 3u);
  EXPECT_EQ(kept->back().id, 4u);
  // A damaged context is an error, not a silent change.
  EXPECT_FALSE(MemberTableAfter(Three(), Voters({1, 2, 3}), "\x01\x05").ok());
}

TEST(MemberTable, ANewMemberNeedsAFreshIdAndFreshAddresses) {
  EXPECT_TRUE(CheckNewMember(Three(), {4, "h:7504", "h:7404"}).ok());
  auto id = CheckNewMember(Three(), {2, "h:7504", "h:7404"});
  EXPECT_EQ(id.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(id.message().find("already a member"), std::string::npos);
  auto peer = CheckNewMember(Three(), {4, "h:7502", "h:7404"});
  EXPECT_NE(peer.message().find("already used by node 2"), std::string::npos);
  auto client_as_peer = CheckNewMember(Three(), {4, "h:7403", "h:7404"});
  EXPECT_NE(client_as_peer.message().find("already used by node 3"), std::string::npos);
  EXPECT_EQ(CheckNewMember(Three(), {4, "h:1", "h:1"}).code(), StatusCode::kInvalidArgument);
}

TEST(IdentityStore, MembersAreRecordedAndARemovedIncarnationIsForgotten) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  ASSERT_TRUE(SaveClusterIdentity(dir.path(), id).ok());
  IdentityStore store(dir.path(), id);
  const std::string inc3 = NewRandomId();
  ASSERT_TRUE(store.CheckPeer(3, inc3, 5).ok());  // it had applied the membership of 5
  auto two = Three();
  two.pop_back();
  ASSERT_TRUE(store.SetMembers(two, {{3, ""}}, 17, true).ok());
  EXPECT_EQ(store.membership_index(), 17u);
  EXPECT_FALSE(store.IsMember(3));
  EXPECT_TRUE(store.WasRemoved(3, inc3));
  // A new data dir under the same id is not the removed member, and is accepted once added.
  const std::string fresh = NewRandomId();
  EXPECT_FALSE(store.WasRemoved(3, fresh));
  EXPECT_TRUE(store.CheckPeer(3, fresh).ok());
  // Durable: a restart reads the new table.
  auto loaded = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->members, two);
  EXPECT_EQ((*loaded)->membership_index, 17u);
  // The removal outlives a restart (it was in memory only): the old data dir stays refused.
  IdentityStore restarted(dir.path(), **loaded);
  EXPECT_TRUE(restarted.WasRemoved(3, inc3));
  EXPECT_FALSE(restarted.WasRemoved(3, fresh));
}

TEST(IdentityStore, AReplacementUnderARemovedIdIsAdmittedAndTheOldDataDirStaysRefused) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  IdentityStore store(dir.path(), id);
  const std::string old3 = NewRandomId();
  ASSERT_TRUE(store.CheckPeer(3, old3).ok());
  auto two = Three();
  two.pop_back();
  // The removal names the incarnation the leader knew.
  ASSERT_TRUE(store.SetMembers(two, {{3, old3}}, 10, true).ok());
  const std::string new3 = NewRandomId();
  // Its replacement applied the entry that added it back (past 10) before this node did.
  EXPECT_TRUE(store.Admits(3, 11));
  EXPECT_TRUE(store.CheckPeer(3, new3).ok());
  // Added back under the same id: the table names 3 again, and the old data dir is still out
  // (before, re-adding the id forgot the removal).
  ASSERT_TRUE(store.SetMembers(Three(), {}, 12, true).ok());
  EXPECT_TRUE(store.WasRemoved(3, old3));
  EXPECT_FALSE(store.WasRemoved(3, new3));
}

// Found by review: any id presenting the cluster id was admitted (and recorded durably), so a
// stray process, a joiner not added yet or a removed member's wiped data dir started with
// bootstrap flags could talk Raft to the members.
TEST(IdentityStore, AnIdOutsideTheTableIsAdmittedOnlyFromAPeerThatAppliedALaterMembership) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  id.membership_index = 6;
  IdentityStore store(dir.path(), id);
  EXPECT_TRUE(store.Admits(2, 0)) << "a member of the table, whatever it applied";
  // Never added, or added after the entry this node applied (a new leader, to a catching-up
  // node): only the second applied a later membership.
  EXPECT_FALSE(store.IsMember(5));
  EXPECT_FALSE(store.Admits(5, 0));
  EXPECT_FALSE(store.Admits(5, 6));
  EXPECT_TRUE(store.Admits(5, 7));
  // Removed: out (a wiped data dir under its id starts with nothing applied).
  auto two = Three();
  two.pop_back();
  ASSERT_TRUE(store.SetMembers(two, {{3, NewRandomId()}}, 10, true).ok());
  EXPECT_FALSE(store.Admits(3, 0));
  EXPECT_TRUE(store.WasRemovedId(3));
  EXPECT_FALSE(store.WasRemovedId(2));
  // Its replacement, added back under the id by a later entry this node has not applied yet.
  EXPECT_TRUE(store.Admits(3, 11));
  // Joining, this node knows no table to go by.
  store.SetJoining(true);
  EXPECT_TRUE(store.Admits(9, 0));
}

// A member removed under an unknown incarnation never applied its removal: it is never ahead, so
// the index keeps it out; an id that is ahead is a replacement added since, even one that leads
// (re-review: refusing it left a lagging node unable to follow it).
TEST(IdentityStore, AnIdRemovedUnderAnUnknownIncarnationIsAdmittedOnlyAhead) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  IdentityStore store(dir.path(), id);
  auto two = Three();
  two.pop_back();
  ASSERT_TRUE(store.SetMembers(two, {{3, ""}}, 10, true).ok());
  EXPECT_EQ(store.removed_members(), (std::vector<RemovedMember>{{3, kUnknownIncarnation}}));
  EXPECT_FALSE(store.Admits(3, 9));
  EXPECT_FALSE(store.Admits(3, 10));
  EXPECT_TRUE(store.Admits(3, 11));
  ASSERT_TRUE(store.SetMembers(Three(), {}, 12, true).ok());
  EXPECT_TRUE(store.Admits(3, 0));
}

// Re-review: a removal that names no incarnation was resolved to whatever this node knew for the
// id, even a replacement met since (a lagging node, or a joiner that replaces another reused id):
// the live replacement was then expelled. Only an incarnation accepted from a peer that had not
// applied the removal is the one removed.
TEST(IdentityStore, ARemovalOfUnknownIncarnationNamesOnlyARecordFromBeforeIt) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  id.membership_index = 4;
  IdentityStore store(dir.path(), id);
  auto two = Three();
  two.pop_back();
  // Known from before the removal (it had applied 4): the one removed.
  const std::string old3 = NewRandomId();
  ASSERT_TRUE(store.CheckPeer(3, old3, 4).ok());
  ASSERT_TRUE(store.SetMembers(two, {{3, ""}}, 10, true).ok());
  EXPECT_TRUE(store.WasRemoved(3, old3));
  // A lagging node that never met the old one meets the replacement (it had applied 12) while
  // its table still names 3, then applies the removal at 10: the replacement is not removed.
  testing::TempDir dir2;
  IdentityStore lagging(dir2.path(), id);
  const std::string new3 = NewRandomId();
  ASSERT_TRUE(lagging.CheckPeer(3, new3, 12).ok());
  ASSERT_TRUE(lagging.SetMembers(two, {{3, ""}}, 10, true).ok());
  EXPECT_FALSE(lagging.WasRemoved(3, new3));
  EXPECT_EQ(lagging.removed_members(), (std::vector<RemovedMember>{{3, kUnknownIncarnation}}));
  // Nor one whose index is unknown (0): a same-id replacement joining says 0 while it catches up
  // (third review), as do older builds.
  testing::TempDir dir3;
  IdentityStore unsure(dir3.path(), id);
  const std::string joiner3 = NewRandomId();
  ASSERT_TRUE(unsure.CheckPeer(3, joiner3, 0).ok());
  ASSERT_TRUE(unsure.SetMembers(two, {{3, ""}}, 10, true).ok());
  EXPECT_FALSE(unsure.WasRemoved(3, joiner3));
}

TEST(IdentityStore, RemovalsReportedByAPeerAreMergedDurablyAndBounded) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  ASSERT_TRUE(SaveClusterIdentity(dir.path(), id).ok());
  IdentityStore store(dir.path(), id);
  const std::string old3 = NewRandomId();
  ASSERT_TRUE(store.CheckPeer(3, old3).ok());
  // A peer applied the removal of node 3's old data dir; this node has not yet.
  ASSERT_TRUE(store.NoteRemoved({{3, old3}, {9, kUnknownIncarnation}}).ok());
  EXPECT_TRUE(store.WasRemoved(3, old3));
  EXPECT_TRUE(store.CheckPeer(3, NewRandomId()).ok()) << "its replacement is admitted";
  EXPECT_TRUE(store.Admits(9, 1)) << "an unknown incarnation is settled by this node's own log";
  EXPECT_FALSE(store.NoteRemoved({{0, old3}}).ok());
  EXPECT_FALSE(store.NoteRemoved({{4, "not hex"}}).ok());
  auto loaded = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->removed, (std::vector<RemovedMember>{{3, old3}}));
  // Bounded: the oldest go first.
  std::vector<RemovedMember> many;
  for (uint64_t i = 0; i < kMaxRemovedMembers + 10; ++i) many.push_back({100 + i, NewRandomId()});
  ASSERT_TRUE(store.NoteRemoved(many).ok());
  const auto kept = store.removed_members();
  EXPECT_EQ(kept.size(), kMaxRemovedMembers);
  EXPECT_FALSE(store.WasRemoved(3, old3));
  EXPECT_EQ(kept.back(), many.back());
}

TEST(IdentityStore, AJoinerIsRecordedAsJoiningUntilItAppliesAMembership) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  id.joining = true;
  ASSERT_TRUE(SaveClusterIdentity(dir.path(), id).ok());
  IdentityStore store(dir.path(), id);
  auto four = Three();
  four.push_back({4, "h:7504", "h:7404"});
  // Catching up, it applies an older entry first: its table does not name this node (4).
  ASSERT_TRUE(store.SetMembers(Three(), {}, 5, false).ok());
  auto loaded = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_TRUE((*loaded)->joining) << "found by review: the first membership applied cleared it";
  ASSERT_TRUE(store.SetMembers(four, {}, 7, true).ok());
  loaded = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_FALSE((*loaded)->joining);
}

TEST(IdentityStore, AnIncarnationKnownOnlyOutsideTheTableIsReplacedNotRefused) {
  // A joiner that dialed the members before it was added, then was restarted on an empty data
  // dir: not a member, it counts in no quorum here, so the record is only provisional.
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  IdentityStore store(dir.path(), id);
  ASSERT_TRUE(SaveClusterIdentity(dir.path(), id).ok());
  ASSERT_TRUE(store.CheckPeer(4, NewRandomId()).ok());
  const std::string again = NewRandomId();
  EXPECT_TRUE(store.CheckPeer(4, again).ok());
  EXPECT_TRUE(store.KnowsIncarnationOf(4));
  // In memory only: no Hello can grow the identity file.
  EXPECT_FALSE(store.Recorded().known_peers.contains(4));
  auto loaded = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_TRUE((*loaded)->known_peers.empty());
  // A member's is not: that is a wiped data dir.
  ASSERT_TRUE(store.CheckPeer(2, NewRandomId()).ok());
  EXPECT_EQ(store.CheckPeer(2, NewRandomId()).code(), StatusCode::kFailedPrecondition);
  // Once a table names 4, the incarnation it was accepted under is durable and binding.
  auto four = Three();
  four.push_back({4, "h:7504", "h:7404"});
  ASSERT_TRUE(store.SetMembers(four, {}, 9, true).ok());
  loaded = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->known_peers.at(4), again);
  EXPECT_EQ(store.CheckPeer(4, NewRandomId()).code(), StatusCode::kFailedPrecondition);
}

// Found by review: a joiner replaying an old removal that names no incarnation took the one it
// knows for the id, recorded at its start: possibly a replacement's, added under the id since,
// which would then be refused (and told it was removed) by the joiner and every peer it tells.
TEST(IdentityStore, AJoinerReplayingARemovalOfUnknownIncarnationRecordsItUnknown) {
  testing::TempDir dir;
  ClusterIdentity id;
  id.bootstrap_id = DeriveBootstrapId("t", Three());
  id.incarnation = NewRandomId();
  id.members = Three();  // asked at its start: 3 is the replacement by now
  id.joining = true;
  IdentityStore store(dir.path(), id);
  store.SetJoining(true);
  const std::string replacement = NewRandomId();
  // The replacement had applied the entry that added it (12), past the removal (10).
  ASSERT_TRUE(store.CheckPeer(3, replacement, 12).ok());
  auto two = Three();
  two.pop_back();
  ASSERT_TRUE(store.SetMembers(two, {{3, ""}}, 10, false).ok());  // the old removal of 3
  EXPECT_FALSE(store.WasRemoved(3, replacement));
  EXPECT_EQ(store.removed_members(), (std::vector<RemovedMember>{{3, kUnknownIncarnation}}));
  // A member's removal it applies once it is in (not joining) names the one it knows.
  auto four = Three();
  four.push_back({4, "h:7504", "h:7404"});
  ASSERT_TRUE(store.SetMembers(four, {}, 12, true).ok());
  const std::string inc2 = NewRandomId();
  ASSERT_TRUE(store.CheckPeer(2, inc2, 12).ok());
  auto no_two = four;
  no_two.erase(no_two.begin() + 1);
  ASSERT_TRUE(store.SetMembers(no_two, {{2, ""}}, 14, true).ok());
  EXPECT_TRUE(store.WasRemoved(2, inc2));
}

TEST(IdentityStore, AnOutsideRecordIsForgottenOnceThisNodeAppliedAsFarAsThePeerHad) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  id.membership_index = 5;
  IdentityStore store(dir.path(), id);
  ASSERT_TRUE(store.CheckPeer(8, NewRandomId(), 9).ok());  // ahead: it knows the table of 9
  ASSERT_TRUE(store.SetMembers(Three(), {}, 7, true).ok());
  EXPECT_TRUE(store.KnowsIncarnationOf(8)) << "not there yet";
  ASSERT_TRUE(store.SetMembers(Three(), {}, 9, true).ok());
  EXPECT_FALSE(store.KnowsIncarnationOf(8)) << "the table of 9 does not name it: it left";
}

TEST(IdentityStore, RecordsOfAnOlderBuildForPeersOutsideTheTableAreNotBinding) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  id.known_peers = {{2, NewRandomId()}, {9, NewRandomId()}};
  IdentityStore store(dir.path(), id);
  EXPECT_FALSE(store.Recorded().known_peers.contains(9));
  EXPECT_FALSE(store.KnowsAnotherIncarnation(9, NewRandomId()));
  EXPECT_TRUE(store.CheckPeer(9, NewRandomId()).ok());
  EXPECT_TRUE(store.KnowsAnotherIncarnation(2, NewRandomId()));
}

TEST(IdentityStore, EndJoiningClearsTheFlagDurably) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  id.joining = true;
  ASSERT_TRUE(SaveClusterIdentity(dir.path(), id).ok());
  IdentityStore store(dir.path(), id);
  store.SetJoining(true);
  ASSERT_TRUE(store.EndJoining().ok());
  EXPECT_FALSE(store.joining());
  auto loaded = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_FALSE((*loaded)->joining);
}

TEST(IdentityStore, PeersOutsideTheTableAreBoundedAndARecordTheTableDropsMovesToMemory) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  IdentityStore store(dir.path(), id);
  for (uint64_t peer = 100; peer < 100 + kMaxOutsidePeers; ++peer) {
    ASSERT_TRUE(store.CheckPeer(peer, NewRandomId()).ok()) << peer;
  }
  const Status full = store.CheckPeer(999, NewRandomId());
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted) << full.ToString();
  EXPECT_NE(full.message().find("outside its member table"), std::string::npos) << full.message();
  EXPECT_TRUE(store.CheckPeer(100, NewRandomId()).ok()) << "one already tracked may come again";
  EXPECT_TRUE(store.CheckPeer(2, NewRandomId()).ok()) << "the table's members are not bounded";
  // An older table met while catching up does not name 2: its record leaves the file.
  const std::string inc3 = NewRandomId();
  ASSERT_TRUE(store.CheckPeer(3, inc3).ok());
  std::vector<MemberSpec> one_three = {Three()[0], Three()[2]};
  ASSERT_TRUE(store.SetMembers(one_three, {}, 4, true).ok());
  EXPECT_FALSE(store.Recorded().known_peers.contains(2));
  EXPECT_EQ(store.Recorded().known_peers.at(3), inc3);
}

TEST(IdentityStore, ARemovedNodeMarksItsDataDirAndTakesNoPart) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  IdentityStore store(dir.path(), id);
  EXPECT_TRUE(IdentityStore::RemovedMark(dir.path()).empty());
  store.MarkRemoved("node 1 was removed by entry 9");
  EXPECT_TRUE(store.replaced());
  EXPECT_EQ(store.removed_reason(), "node 1 was removed by entry 9");
  EXPECT_EQ(IdentityStore::RemovedMark(dir.path()), "node 1 was removed by entry 9");
}

TEST(IdentityStore, AJoiningNodeAcceptsAnyPeerUntilATableNamesIt) {
  testing::TempDir dir;
  ClusterIdentity id = ThreeMembers();
  IdentityStore store(dir.path(), id);
  store.SetJoining(true);
  EXPECT_TRUE(store.IsMember(7));
  store.SetJoining(false);
  EXPECT_FALSE(store.IsMember(7));
  EXPECT_TRUE(store.IsMember(2));
  EXPECT_EQ(store.ClientAddr(2), "h:7402");
}

}  // namespace
}  // namespace lockd::server
