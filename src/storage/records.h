// How storage encodes what it keeps: log entries, hard state, membership and snapshot metadata.
// Every record is `version (1 byte) | CRC-32C of the body (4 bytes, little-endian) | body`, so a
// torn or corrupted record is detected at recovery (and named), and a newer format is refused
// rather than misread. An entry's body is index, term (varints), type (1 byte), data.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "raft/types.h"

namespace lockd::storage {

inline constexpr uint8_t kRecordFormatVersion = 1;

std::string EncodeEntry(const raft::Entry& e);
/// The record of `e` without its data: EncodeEntry(e) == EncodeEntryHeader(e) + e.data. Lets the
/// writer hand RocksDB the two parts and skip one copy of every entry's data.
std::string EncodeEntryHeader(const raft::Entry& e);
/// `index` comes from the key; the record must agree with it.
Result<raft::Entry> DecodeEntry(raft::LogIndex index, std::string_view bytes);

std::string EncodeHardState(const raft::HardState& hs);
Result<raft::HardState> DecodeHardState(std::string_view bytes);

std::string EncodeSnapshotMeta(const raft::SnapshotMeta& m);
Result<raft::SnapshotMeta> DecodeSnapshotMeta(std::string_view bytes);

/// The big-endian key of a log index, so RocksDB's byte order is index order.
std::string IndexKey(raft::LogIndex i);
raft::LogIndex KeyIndex(std::string_view key);

}  // namespace lockd::storage
