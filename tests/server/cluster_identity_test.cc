// The cluster identity file: bootstrap ids agree across members, random ids differ, the file
// survives a round trip (format 1 still reads), damage or a newer format is refused with an error
// naming it; the cluster id's log entry never collides with a lock command; the IdentityStore
// keeps the first decision and the first incarnation of each peer, durably.
#include "server/cluster_identity.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>
#include <variant>

#include "lock/command.h"
#include "storage/crc32c.h"
#include "support/process.h"

namespace lockd::server {
namespace {

std::vector<MemberSpec> Three() {
  return {{1, "10.0.0.1:7501", "10.0.0.1:7401"},
          {2, "10.0.0.2:7501", "10.0.0.2:7401"},
          {3, "10.0.0.3:7501", "10.0.0.3:7401"}};
}

ClusterIdentity Sample() {
  ClusterIdentity id;
  id.cluster_id = "00112233445566778899aabbccddeeff";
  id.bootstrap_id = DeriveBootstrapId("t", Three());
  id.incarnation = "ffeeddccbbaa99887766554433221100";
  id.members = Three();
  id.known_peers = {{2, "0123456789abcdef0123456789abcdef"}};
  return id;
}

TEST(ClusterIdentity, MembersStartedWithTheSameFlagsDeriveTheSameBootstrapId) {
  auto a = Three();
  auto b = Three();
  std::swap(b[0], b[2]);  // order of the flag does not matter
  EXPECT_EQ(DeriveBootstrapId("lockd", a), DeriveBootstrapId("lockd", b));
  EXPECT_EQ(DeriveBootstrapId("lockd", a).size(), 16u);
}

TEST(ClusterIdentity, TokenAndMembersChangeTheBootstrapId) {
  auto a = Three();
  EXPECT_NE(DeriveBootstrapId("lockd", a), DeriveBootstrapId("prod-eu", a));
  auto b = a;
  b[1].peer_addr = "10.0.0.9:7501";
  EXPECT_NE(DeriveBootstrapId("lockd", a), DeriveBootstrapId("lockd", b));
}

TEST(ClusterIdentity, RandomIdsAre128BitsAndDiffer) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = NewRandomId();
    ASSERT_EQ(id.size(), 32u);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(ClusterIdentity, SavedIdentityLoadsBack) {
  testing::TempDir dir;
  auto none = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  for (ClusterIdentity id : {Sample(),
                             [] {
                               ClusterIdentity undecided = Sample();
                               undecided.cluster_id.clear();
                               undecided.known_peers.clear();
                               return undecided;
                             }(),
                             [] {
                               ClusterIdentity restored = Sample();
                               restored.restored_from = std::string(64, 'a');
                               return restored;
                             }()}) {
    ASSERT_TRUE(SaveClusterIdentity(dir.path(), id).ok());
    auto back = LoadClusterIdentity(dir.path());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ASSERT_TRUE(back->has_value());
    EXPECT_EQ(**back, id);
  }
}

TEST(ClusterIdentity, AFormatOneFileStillReadsWithItsDerivedIdAsTheClusterId) {
  // Written by the build before incarnations.
  std::string body = "lockd-cluster 1\ncluster-id 00112233aabbccdd\n";
  for (const auto& m : Three()) {
    body += "member " + std::to_string(m.id) + " " + m.peer_addr + " " + m.client_addr + "\n";
  }
  auto id = DecodeClusterIdentity(body + "crc32c " + std::to_string(storage::Crc32c(body)) + "\n");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->cluster_id, "00112233aabbccdd");
  EXPECT_EQ(id->bootstrap_id, "00112233aabbccdd") << "format 1 derived it the bootstrap id's way";
  EXPECT_TRUE(id->incarnation.empty()) << "the node makes one at its first start";
  EXPECT_EQ(id->members, Three());
}

TEST(ClusterIdentity, DamageIsRefused) {
  std::string text = EncodeClusterIdentity(Sample());
  for (size_t i = 0; i + 8 < text.size(); i += 7) {
    std::string bad = text;
    bad[i] = bad[i] == 'x' ? 'y' : 'x';
    EXPECT_FALSE(DecodeClusterIdentity(bad).ok()) << "flipped byte " << i;
  }
  EXPECT_FALSE(DecodeClusterIdentity(text.substr(0, text.size() / 2)).ok());
  EXPECT_FALSE(DecodeClusterIdentity("").ok());
}

TEST(ClusterIdentity, AddressesCannotSplitOrAddLinesAndTheMembershipIndexRoundTrips) {
  // Addresses are validated before they are taken; the file stays sound even if one were not:
  // a space or a line break in an address must neither break the file nor add a known peer.
  ClusterIdentity id = Sample();
  id.members.push_back({4, "a b:7504", "x\nknown-peer 3 0123456789abcdef0123456789abcdef\n:1"});
  id.members.push_back({5, "%41:1", ""});
  id.membership_index = 42;
  const std::string text = EncodeClusterIdentity(id);
  EXPECT_EQ(text.find("known-peer 3"), std::string::npos) << text;
  auto back = DecodeClusterIdentity(text);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, id);
  EXPECT_EQ(back->known_peers.size(), 1u);
  EXPECT_EQ(back->membership_index, 42u);
}

TEST(ClusterIdentity, AFormatTwoFileReadsWithMembershipIndexZero) {
  std::string body = "lockd-cluster 2\ncluster-id -\nbootstrap-id 9a3e5b7c1d2f4a60\n";
  body += "incarnation ffeeddccbbaa99887766554433221100\n";
  for (const auto& m : Three()) {
    body += "member " + std::to_string(m.id) + " " + m.peer_addr + " " + m.client_addr + "\n";
  }
  auto id = DecodeClusterIdentity(body + "crc32c " + std::to_string(storage::Crc32c(body)) + "\n");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->members, Three());
  EXPECT_EQ(id->membership_index, 0u);
  // A format-2 file cannot carry the format-3 line.
  const std::string with = body + "membership-index 5\n";
  EXPECT_FALSE(
      DecodeClusterIdentity(with + "crc32c " + std::to_string(storage::Crc32c(with)) + "\n").ok());
}

TEST(ClusterIdentity, TheJoiningFlagAndTheRemovedMembersRoundTrip) {
  ClusterIdentity id = Sample();
  id.joining = true;
  id.removed = {{3, "0123456789abcdef0123456789abcdef"}, {4, kUnknownIncarnation}};
  auto back = DecodeClusterIdentity(EncodeClusterIdentity(id));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, id);
  // Damage is named, not taken.
  for (const char* bad : {"removed 0 -\n", "removed 3 not-hex\n", "joining 2\n"}) {
    const std::string text = EncodeClusterIdentity(Sample());
    const std::string body = text.substr(0, text.rfind("crc32c ")) + bad;
    auto r = DecodeClusterIdentity(body + "crc32c " + std::to_string(storage::Crc32c(body)) + "\n");
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << bad;
  }
  // A format-3 file reads as neither joining nor with removals, and cannot carry them.
  std::string three = EncodeClusterIdentity(Sample());
  three = three.substr(0, three.rfind("crc32c "));
  three.replace(0, three.find('\n'), "lockd-cluster 3");
  auto old =
      DecodeClusterIdentity(three + "crc32c " + std::to_string(storage::Crc32c(three)) + "\n");
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_FALSE(old->joining);
  EXPECT_TRUE(old->removed.empty());
  const std::string with = three + "joining 1\n";
  EXPECT_FALSE(
      DecodeClusterIdentity(with + "crc32c " + std::to_string(storage::Crc32c(with)) + "\n").ok());
}

TEST(ClusterIdentity, TheIndexAKnownPeerWasAcceptedAtRoundTrips) {
  ClusterIdentity id = Sample();
  id.known_peer_since = {{2, 17}};
  auto back = DecodeClusterIdentity(EncodeClusterIdentity(id));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, id);
  // Format 4 cannot carry it.
  std::string four = EncodeClusterIdentity(id);
  four = four.substr(0, four.rfind("crc32c "));
  four.replace(0, four.find('\n'), "lockd-cluster 4");
  EXPECT_FALSE(
      DecodeClusterIdentity(four + "crc32c " + std::to_string(storage::Crc32c(four)) + "\n").ok());
}

TEST(ClusterIdentity, ANewerFormatIsRefused) {
  const std::string text = EncodeClusterIdentity(Sample());
  std::string body = text.substr(0, text.rfind("crc32c "));
  body.replace(0, body.find('\n'), "lockd-cluster 6");
  const std::string newer = body + "crc32c " + std::to_string(storage::Crc32c(body)) + "\n";
  auto r = DecodeClusterIdentity(newer);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos);
}

// --- the cluster id's log entry ---------------------------------------------------------------

TEST(ClusterIdEntry, RoundTrips) {
  const std::string id = NewRandomId();
  const std::string entry = EncodeClusterIdEntry(id);
  ASSERT_TRUE(IsClusterIdEntry(entry));
  auto back = DecodeClusterIdEntry(entry);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, id);
  EXPECT_FALSE(DecodeClusterIdEntry(std::string(1, '\0') + "lockd-cluster-id 9 ab").ok());
  EXPECT_FALSE(DecodeClusterIdEntry(EncodeClusterIdEntry("not hex")).ok());
  EXPECT_FALSE(IsClusterIdEntry(""));
}

template <size_t... I>
void ExpectNoCommandLooksLikeAnIdEntry(std::index_sequence<I...>) {
  (
      [] {
        const lock::Command command(std::in_place_index<I>);
        const std::string entry = lock::Encode(command, 1'700'000'000);
        EXPECT_FALSE(IsClusterIdEntry(entry)) << lock::KindName(command);
        EXPECT_TRUE(lock::Decode(entry).ok()) << lock::KindName(command);
      }(),
      ...);
}

TEST(ClusterIdEntry, NeverCollidesWithALockCommand) {
  // Every command kind the lock state machine encodes starts with its format version, never 0.
  ExpectNoCommandLooksLikeAnIdEntry(std::make_index_sequence<std::variant_size_v<lock::Command>>());
  EXPECT_NE(lock::kCommandFormatVersion, 0);
  // And the state machine refuses an id entry rather than misreading it.
  auto decoded = lock::Decode(EncodeClusterIdEntry(NewRandomId()));
  EXPECT_FALSE(decoded.ok());
}

// --- IdentityStore ----------------------------------------------------------------------------

TEST(IdentityStore, TheFirstDecisionWinsIsDurableAndTellsTheListenerOnce) {
  testing::TempDir dir;
  ClusterIdentity undecided = Sample();
  undecided.cluster_id.clear();
  IdentityStore store(dir.path(), undecided);
  std::vector<std::string> told;
  store.SetDecidedListener([&](const std::string& id) { told.push_back(id); });
  EXPECT_FALSE(store.decided());
  EXPECT_NE(store.UndecidedReason().find("not decided"), std::string::npos);

  auto first = store.Decide("aaaa");
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(*first);
  auto later = store.Decide("bbbb");
  ASSERT_TRUE(later.ok());
  EXPECT_FALSE(*later) << "a later decision is ignored";
  EXPECT_EQ(store.cluster_id(), "aaaa");
  EXPECT_EQ(told, std::vector<std::string>{"aaaa"});
  EXPECT_FALSE(store.Decide("not hex").ok());

  auto back = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((*back)->cluster_id, "aaaa");
  EXPECT_EQ((*back)->incarnation, undecided.incarnation);
}

TEST(IdentityStore, KnowsEachPeerByItsFirstIncarnation) {
  testing::TempDir dir;
  IdentityStore store(dir.path(), Sample());  // knows node 2 already
  EXPECT_TRUE(store.CheckPeer(2, "0123456789abcdef0123456789abcdef").ok());
  const Status wiped = store.CheckPeer(2, "99999999999999999999999999999999");
  EXPECT_EQ(wiped.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(wiped.message().find("its data dir was wiped or replaced"), std::string::npos);
  EXPECT_NE(wiped.message().find("remove it and add it back as a new member"), std::string::npos);

  EXPECT_TRUE(store.CheckPeer(3, "33333333333333333333333333333333").ok()) << "first use";
  auto back = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((*back)->known_peers.at(3), "33333333333333333333333333333333");
  EXPECT_FALSE(store.CheckPeer(3, "33333333333333333333333333333334").ok());
  EXPECT_FALSE(store.CheckPeer(4, "").ok()) << "malformed";
}

TEST(IdentityStore, SaysWhichPeersItRecordedAnIncarnationFor) {
  // What Status reports as incarnation_recorded: a member that never talked to this node has none
  // (a late first start), one that did keeps it (its wiped copy is a lost volume).
  testing::TempDir dir;
  IdentityStore store(dir.path(), Sample());  // knows node 2 already
  EXPECT_TRUE(store.KnowsIncarnationOf(2));
  EXPECT_FALSE(store.KnowsIncarnationOf(3));
  EXPECT_FALSE(store.CheckPeer(3, "").ok()) << "malformed: not recorded";
  EXPECT_FALSE(store.KnowsIncarnationOf(3));
  ASSERT_TRUE(store.CheckPeer(3, "33333333333333333333333333333333").ok());
  EXPECT_TRUE(store.KnowsIncarnationOf(3));
}

TEST(IdentityStore, TheUndecidedReasonNamesThePeersThatRefuseThisNode) {
  testing::TempDir dir;
  ClusterIdentity undecided = Sample();
  undecided.cluster_id.clear();
  IdentityStore store(dir.path(), undecided);
  store.NotePeerRefusal(1, "node 3 presents data dir incarnation x");
  EXPECT_NE(store.UndecidedReason().find("peer 1 refuses this node: node 3 presents"),
            std::string::npos)
      << store.UndecidedReason();
  store.NotePeerRefusal(1, "");
  EXPECT_EQ(store.UndecidedReason().find("refuses"), std::string::npos);
}

}  // namespace
}  // namespace lockd::server
