#include "raft/wire.h"

#include "base/codec.h"
#include "raft/conf_change.h"

namespace lockd::raft {
namespace {

constexpr uint8_t kFlagReject = 1;
constexpr uint8_t kFlagTransfer = 2;

Status Malformed(const std::string& what) {
  return InvalidArgument("malformed Raft message: " + what);
}

}  // namespace

std::string EncodeMessage(const Message& m) {
  Writer w;
  w.Varint(kFormatVersion);
  w.U8(static_cast<uint8_t>(m.type));
  w.Varint(m.from.value());
  w.Varint(m.to.value());
  w.Varint(m.term.value());
  w.Varint(m.log_term.value());
  w.Varint(m.index.value());
  w.Varint(m.commit.value());
  w.U8((m.reject ? kFlagReject : 0) | (m.transfer ? kFlagTransfer : 0));
  w.Varint(m.reject_hint.value());
  w.Varint(m.hint_term.value());
  w.Varint(m.round);
  w.Varint(m.entries.size());
  for (const Entry& e : m.entries) {
    w.Varint(e.term.value());
    w.U8(static_cast<uint8_t>(e.type));
    w.Bytes(e.data);
  }
  // Only a kSnapshot carries its metadata, so every other message keeps its size.
  if (m.type == MessageType::kSnapshot) {
    w.Varint(m.snapshot.index.value());
    w.Varint(m.snapshot.term.value());
    PutConfState(w, m.snapshot.conf);
  }
  return w.Take();
}

Result<Message> DecodeMessage(std::string_view bytes) {
  Reader r(bytes);
  Message m;
  uint64_t version = 0;
  if (!r.Varint(&version)) return Malformed("no format version");
  if (version > kFormatVersion) {
    return FailedPrecondition("Raft message format " + std::to_string(version) +
                              " is newer than this node's " + std::to_string(kFormatVersion) +
                              "; upgrade this node");
  }
  if (version == 0) return Malformed("format version 0");
  m.version = static_cast<uint32_t>(version);
  uint8_t type = 0, flags = 0;
  uint64_t from, to, term, log_term, index, commit, hint, hint_term, round, n;
  if (!r.U8(&type) || !r.Varint(&from) || !r.Varint(&to) || !r.Varint(&term) ||
      !r.Varint(&log_term) || !r.Varint(&index) || !r.Varint(&commit) || !r.U8(&flags) ||
      !r.Varint(&hint) || !r.Varint(&hint_term) || !r.Varint(&round) || !r.Varint(&n)) {
    return Malformed("truncated header");
  }
  if (type < static_cast<uint8_t>(MessageType::kPreVote) ||
      type > static_cast<uint8_t>(MessageType::kSnapshot)) {
    return Malformed("unknown type " + std::to_string(type));
  }
  if (flags & ~(kFlagReject | kFlagTransfer)) return Malformed("unknown flags");
  if (from == 0) return Malformed("no sender");
  m.type = static_cast<MessageType>(type);
  m.from = NodeId(from);
  m.to = NodeId(to);
  m.term = Term(term);
  m.log_term = Term(log_term);
  m.index = LogIndex(index);
  m.commit = LogIndex(commit);
  m.reject = flags & kFlagReject;
  m.transfer = flags & kFlagTransfer;
  m.reject_hint = LogIndex(hint);
  m.hint_term = Term(hint_term);
  m.round = round;
  // Each entry takes at least 3 bytes; a count beyond that is a lie, not an allocation.
  if (n > r.remaining() / 3) return Malformed("entry count " + std::to_string(n) + " too large");
  if (n > 0 && m.type != MessageType::kApp) return Malformed("entries on a non-append message");
  m.entries.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    Entry e;
    uint64_t et = 0;
    uint8_t etype = 0;
    if (!r.Varint(&et) || !r.U8(&etype) || !r.Bytes(&e.data)) return Malformed("truncated entry");
    if (etype > static_cast<uint8_t>(EntryType::kConfChange)) {
      return Malformed("unknown entry type " + std::to_string(etype));
    }
    e.term = Term(et);
    e.type = static_cast<EntryType>(etype);
    // Entries follow the one at `index` contiguously, and carry no term newer than the message.
    e.index = LogIndex(index + 1 + i);
    if (e.term > m.term) return Malformed("entry term above the message's term");
    if (i == 0 ? e.term < m.log_term : e.term < m.entries.back().term) {
      return Malformed("entry terms decrease");
    }
    m.entries.push_back(std::move(e));
  }
  if (m.type == MessageType::kSnapshot) {
    uint64_t snap_index = 0, snap_term = 0;
    if (!r.Varint(&snap_index) || !r.Varint(&snap_term) || !GetConfState(r, &m.snapshot.conf)) {
      return Malformed("truncated snapshot metadata");
    }
    m.snapshot.index = LogIndex(snap_index);
    m.snapshot.term = Term(snap_term);
    if (m.snapshot.index.value() == 0) return Malformed("a snapshot at index 0");
    if (m.snapshot.term > m.term) return Malformed("snapshot term above the message's term");
    if (Status s = CheckConfState(m.snapshot.conf); !s.ok()) {
      return Malformed("snapshot membership: " + s.message());
    }
  }
  if (!r.done()) return Malformed("trailing bytes");
  return m;
}

}  // namespace lockd::raft
