#include "storage/records.h"

#include "base/codec.h"
#include "raft/conf_change.h"
#include "storage/crc32c.h"

namespace lockd::storage {
namespace {

/// version | crc32c(body) | body
std::string Seal(const std::string& body) {
  Writer w;
  w.U8(kRecordFormatVersion);
  const uint32_t crc = Crc32c(body);
  for (int i = 0; i < 4; ++i) w.U8(static_cast<uint8_t>(crc >> (8 * i)));
  std::string out = w.Take();
  out += body;
  return out;
}

Result<std::string_view> Open(std::string_view bytes, const char* what) {
  if (bytes.size() < 5) return DataLoss(std::string(what) + " record is truncated");
  const uint8_t version = static_cast<uint8_t>(bytes[0]);
  if (version > kRecordFormatVersion) {
    return FailedPrecondition(std::string(what) + " record has format version " +
                              std::to_string(version) + ", newer than this build's " +
                              std::to_string(kRecordFormatVersion));
  }
  uint32_t crc = 0;
  for (int i = 0; i < 4; ++i) crc |= uint32_t{static_cast<uint8_t>(bytes[1 + i])} << (8 * i);
  const std::string_view body = bytes.substr(5);
  if (version == 0 || Crc32c(body) != crc) {
    return DataLoss(std::string(what) + " record fails its checksum");
  }
  return body;
}

}  // namespace

std::string EncodeEntryHeader(const raft::Entry& e) {
  Writer w;
  // The index is also the key; keeping it under the checksum catches a record under a wrong key.
  w.Varint(e.index.value());
  w.Varint(e.term.value());
  w.U8(static_cast<uint8_t>(e.type));
  const std::string fields = w.Take();
  const uint32_t crc = Crc32c(e.data, Crc32c(fields));
  Writer h;
  h.U8(kRecordFormatVersion);
  for (int i = 0; i < 4; ++i) h.U8(static_cast<uint8_t>(crc >> (8 * i)));
  std::string out = h.Take();
  out += fields;
  return out;
}

std::string EncodeEntry(const raft::Entry& e) {
  return EncodeEntryHeader(e) + e.data;
}

Result<raft::Entry> DecodeEntry(raft::LogIndex index, std::string_view bytes) {
  auto body = Open(bytes, ("log entry " + std::to_string(index.value())).c_str());
  if (!body.ok()) return body.status();
  Reader r(*body);
  uint64_t stored_index = 0, term = 0;
  uint8_t type = 0;
  if (!r.Varint(&stored_index) || !r.Varint(&term) || !r.U8(&type) || type > 1) {
    return DataLoss("log entry " + std::to_string(index.value()) + " is malformed");
  }
  if (stored_index != index.value()) {
    return DataLoss("log entry " + std::to_string(index.value()) + " holds the record of entry " +
                    std::to_string(stored_index));
  }
  raft::Entry e;
  e.term = raft::Term(term);
  e.index = index;
  e.type = static_cast<raft::EntryType>(type);
  e.data.assign(body->substr(body->size() - r.remaining()));
  return e;
}

std::string EncodeHardState(const raft::HardState& hs) {
  Writer w;
  w.Varint(hs.term.value());
  w.Varint(hs.vote.value());
  w.Varint(hs.commit.value());
  return Seal(w.Take());
}

Result<raft::HardState> DecodeHardState(std::string_view bytes) {
  auto body = Open(bytes, "hard state");
  if (!body.ok()) return body.status();
  Reader r(*body);
  uint64_t t = 0, v = 0, c = 0;
  if (!r.Varint(&t) || !r.Varint(&v) || !r.Varint(&c) || !r.done()) {
    return DataLoss("hard state record is malformed");
  }
  return raft::HardState{raft::Term(t), raft::NodeId(v), raft::LogIndex(c)};
}

std::string EncodeSnapshotMeta(const raft::SnapshotMeta& m) {
  Writer w;
  w.Varint(m.index.value());
  w.Varint(m.term.value());
  raft::PutConfState(w, m.conf);
  return Seal(w.Take());
}

Result<raft::SnapshotMeta> DecodeSnapshotMeta(std::string_view bytes) {
  auto body = Open(bytes, "snapshot metadata");
  if (!body.ok()) return body.status();
  Reader r(*body);
  uint64_t i = 0, t = 0;
  raft::SnapshotMeta m;
  if (!r.Varint(&i) || !r.Varint(&t) || !raft::GetConfState(r, &m.conf) || !r.done()) {
    return DataLoss("snapshot metadata record is malformed");
  }
  m.index = raft::LogIndex(i);
  m.term = raft::Term(t);
  return m;
}

std::string IndexKey(raft::LogIndex i) {
  std::string k(8, '\0');
  for (int b = 0; b < 8; ++b) k[b] = static_cast<char>(i.value() >> (56 - 8 * b));
  return k;
}

raft::LogIndex KeyIndex(std::string_view key) {
  uint64_t v = 0;
  for (size_t b = 0; b < 8 && b < key.size(); ++b) v = (v << 8) | static_cast<uint8_t>(key[b]);
  return raft::LogIndex(v);
}

}  // namespace lockd::storage
