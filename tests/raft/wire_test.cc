// The peer wire format of Raft messages: every field survives a round trip, and a damaged or
// hostile frame is an error value, never a crash or a half-understood message.
#include "raft/wire.h"

#include <gtest/gtest.h>

namespace lockd::raft {
namespace {

Message SampleAppend() {
  Message m;
  m.type = MessageType::kApp;
  m.from = NodeId(1);
  m.to = NodeId(2);
  m.term = Term(7);
  m.log_term = Term(6);
  m.index = LogIndex(41);
  m.commit = LogIndex(40);
  m.round = 99;
  m.reject_hint = LogIndex(3);
  m.hint_term = Term(2);
  for (int i = 0; i < 3; ++i) {
    Entry e;
    e.term = Term(i == 0 ? 6 : 7);
    e.index = LogIndex(42 + i);
    e.data = "cmd" + std::to_string(i);
    m.entries.push_back(e);
  }
  m.entries[2].type = EntryType::kConfChange;
  return m;
}

TEST(Wire, EveryFieldRoundTrips) {
  Message m = SampleAppend();
  auto back = DecodeMessage(EncodeMessage(m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, m);

  Message v;
  v.type = MessageType::kVote;
  v.from = NodeId(3);
  v.to = NodeId(1);
  v.term = Term(9);
  v.transfer = true;
  v.reject = true;
  auto vb = DecodeMessage(EncodeMessage(v));
  ASSERT_TRUE(vb.ok());
  EXPECT_EQ(*vb, v);
}

TEST(Wire, EveryTruncationIsAnError) {
  const std::string bytes = EncodeMessage(SampleAppend());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeMessage(bytes.substr(0, n)).ok()) << "prefix of " << n << " bytes";
  }
}

TEST(Wire, TrailingBytesAreRefused) {
  EXPECT_FALSE(DecodeMessage(EncodeMessage(SampleAppend()) + "x").ok());
}

TEST(Wire, ANewerFormatIsRefusedNamingBothVersions) {
  std::string bytes = EncodeMessage(SampleAppend());
  bytes[0] = static_cast<char>(kFormatVersion + 1);
  auto r = DecodeMessage(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos);
}

TEST(Wire, UnknownTypesAndImpossibleEntriesAreRefused) {
  std::string bytes = EncodeMessage(SampleAppend());
  std::string bad_type = bytes;
  bad_type[1] = 42;
  EXPECT_FALSE(DecodeMessage(bad_type).ok());

  Message newer_entry = SampleAppend();
  newer_entry.entries[1].term = Term(8);  // above the message's term
  EXPECT_FALSE(DecodeMessage(EncodeMessage(newer_entry)).ok());

  Message decreasing = SampleAppend();
  decreasing.entries[2].term = Term(6);
  EXPECT_FALSE(DecodeMessage(EncodeMessage(decreasing)).ok());

  Message vote_with_entries = SampleAppend();
  vote_with_entries.type = MessageType::kVote;
  EXPECT_FALSE(DecodeMessage(EncodeMessage(vote_with_entries)).ok());

  Message anonymous = SampleAppend();
  anonymous.from = NodeId();
  EXPECT_FALSE(DecodeMessage(EncodeMessage(anonymous)).ok());
}

Message SampleSnapshot() {
  Message m;
  m.type = MessageType::kSnapshot;
  m.from = NodeId(1);
  m.to = NodeId(4);
  m.term = Term(9);
  m.commit = LogIndex(120);
  m.snapshot.index = LogIndex(100);
  m.snapshot.term = Term(8);
  m.snapshot.conf.voters = {NodeId(1), NodeId(2), NodeId(3)};
  m.snapshot.conf.voters_outgoing = {NodeId(1), NodeId(2), NodeId(5)};
  m.snapshot.conf.learners = {NodeId(4)};
  m.snapshot.conf.learners_next = {NodeId(5)};
  m.snapshot.conf.auto_leave = true;
  return m;
}

TEST(Wire, ASnapshotMessageCarriesItsMetadata) {
  const Message m = SampleSnapshot();
  const std::string bytes = EncodeMessage(m);
  auto back = DecodeMessage(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, m);
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeMessage(bytes.substr(0, n)).ok()) << "prefix of " << n << " bytes";
  }
  // Metadata is only on kSnapshot: an append keeps its old size and ignores the field.
  Message app = SampleAppend();
  const size_t plain = EncodeMessage(app).size();
  app.snapshot = m.snapshot;
  EXPECT_EQ(EncodeMessage(app).size(), plain);
}

TEST(Wire, AnImpossibleSnapshotIsRefused) {
  Message future = SampleSnapshot();
  future.snapshot.term = Term(10);  // above the message's term
  EXPECT_FALSE(DecodeMessage(EncodeMessage(future)).ok());

  Message at_zero = SampleSnapshot();
  at_zero.snapshot.index = LogIndex(0);
  EXPECT_FALSE(DecodeMessage(EncodeMessage(at_zero)).ok());

  Message no_voters = SampleSnapshot();
  no_voters.snapshot.conf = ConfState{};
  EXPECT_FALSE(DecodeMessage(EncodeMessage(no_voters)).ok());

  Message twice = SampleSnapshot();
  twice.snapshot.conf.learners = {NodeId(2)};  // a voter cannot also be a learner
  EXPECT_FALSE(DecodeMessage(EncodeMessage(twice)).ok());
}

TEST(Wire, AHugeEntryCountIsNotAnAllocation) {
  // Header of an append whose entry count claims 2^40 entries, with no entries behind it.
  Message m = SampleAppend();
  m.entries.clear();
  std::string bytes = EncodeMessage(m);
  bytes.pop_back();  // the count 0
  bytes += std::string("\x80\x80\x80\x80\x80\x20", 6);
  EXPECT_FALSE(DecodeMessage(bytes).ok());
}

TEST(Wire, RandomBytesNeverCrash) {
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 20000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::string bytes(x % 64, '\0');
    for (auto& c : bytes) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>(x);
    }
    (void)DecodeMessage(bytes);  // only that it returns
  }
}

}  // namespace
}  // namespace lockd::raft
