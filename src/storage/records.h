// How storage encodes what it keeps: log entries, hard state, membership and snapshot metadata.
// Every record starts with a format version and a CRC-32C of the rest, so a torn or corrupted
// record is detected at recovery (and named), and a newer format is refused rather than misread.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "raft/types.h"

namespace lockd::storage {

inline constexpr uint8_t kRecordFormatVersion = 1;

std::string EncodeEntry(const raft::Entry& e);
/// `index` comes from the key; it is checked against nothing here.
Result<raft::Entry> DecodeEntry(raft::LogIndex index, std::string_view bytes);

std::string EncodeHardState(const raft::HardState& hs);
Result<raft::HardState> DecodeHardState(std::string_view bytes);

std::string EncodeSnapshotMeta(const raft::SnapshotMeta& m);
Result<raft::SnapshotMeta> DecodeSnapshotMeta(std::string_view bytes);

/// The big-endian key of a log index, so RocksDB's byte order is index order.
std::string IndexKey(raft::LogIndex i);
raft::LogIndex KeyIndex(std::string_view key);

}  // namespace lockd::storage
