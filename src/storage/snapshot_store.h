// SnapshotStore: the state machine's snapshots as files in `<data dir>/snapshots`.
//
// A file is named snap-<index>-<term>.snap (16 hex digits each) and holds: magic "LOCKDSNP",
// format version, the metadata record (index, term, membership), the payload length, the payload
// (opaque bytes from the lock state machine), and a CRC-32C of everything before it. A snapshot
// is written atomically — a temporary name, fsync, rename, fsync of the folder — and older ones
// are removed only after the new one is durable. Loading picks the newest; if it is damaged (bad
// magic, checksum, truncation) or of a newer format, that is an error naming the file: the node
// refuses to start rather than fall back to a state its log no longer continues.
#pragma once

#include <optional>
#include <string>

#include "base/status.h"
#include "raft/types.h"

namespace lockd::storage {

inline constexpr uint32_t kSnapshotFileVersion = 1;

struct StoredSnapshot {
  raft::SnapshotMeta meta;
  std::string payload;
  std::string path;
};

class SnapshotStore {
 public:
  explicit SnapshotStore(std::string dir) : dir_(std::move(dir)) {}

  /// Writes a snapshot durably, then removes the older ones.
  Status Save(const raft::SnapshotMeta& meta, const std::string& payload);
  /// The newest snapshot, or nullopt when there is none.
  Result<std::optional<StoredSnapshot>> LoadLatest() const;
  /// Reads and verifies one file.
  static Result<StoredSnapshot> ReadFile(const std::string& path);
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

}  // namespace lockd::storage
