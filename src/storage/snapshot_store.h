// SnapshotStore: the state machine's snapshots as files in `<data dir>/snapshots`.
//
// A file is named snap-<index>-<term>.snap (16 hex digits each, so name order is index order) and
// holds: magic "LOCKDSNP", format version (fixed64), the metadata record (index, term,
// membership; itself versioned and checksummed), the payload length and bytes (opaque: the lock
// state machine's encoding), and a CRC-32C of everything before it.
//
// Save is atomic and durable: write a temporary name, fsync it, rename it into place, fsync the
// folder; only then are older snapshots removed. A crash at any point leaves the previous
// snapshot or the new one, never a mix; a leftover temporary file is ignored and cleaned.
//
// LoadLatest returns the newest complete snapshot. A file with its final name was durable and
// whole when it was renamed, so if it is damaged (magic, checksum, truncation, a name that
// disagrees with its content) or of a newer format, that is an error naming the file and the node
// refuses to start: falling back to an older file would silently rewind the state machine past
// entries the log no longer holds.
//
// Every file operation goes through a rocksdb::FileSystem (the default one, or a test's FaultFs),
// so the power-loss tests cut snapshots exactly as they cut the log. A failed write or sync trips
// the store's FailStop. Owned by NodeStorage; one thread at a time.
#pragma once

#include <optional>
#include <string>

#include "base/status.h"
#include "raft/types.h"
#include "storage/fail_stop.h"

namespace rocksdb {
class FileSystem;
}

namespace lockd::storage {

inline constexpr uint32_t kSnapshotFileVersion = 1;

struct StoredSnapshot {
  raft::SnapshotMeta meta;
  std::string payload;
  std::string path;
  uint64_t file_bytes = 0;
};

struct SnapshotStoreOptions {
  /// Every read and write goes through it (not owned); nullptr: rocksdb::FileSystem::Default().
  rocksdb::FileSystem* fs = nullptr;
  /// Runs once if a save fails (see FailStop).
  FatalHandler on_fatal;
  /// When set (not owned), checked and tripped instead of the store's own latch.
  FailStop* shared_fail_stop = nullptr;
  /// Test-only planted bug: skip the fsync of the folder after the rename, so a power cut can
  /// take the new name away. The power-loss test must catch it.
  bool skip_dir_sync_for_testing = false;
};

class SnapshotStore {
 public:
  explicit SnapshotStore(std::string dir, SnapshotStoreOptions options = {});

  /// Writes a snapshot durably, then removes the older ones. A failure is fatal (fail-stop).
  Status Save(const raft::SnapshotMeta& meta, const std::string& payload);
  /// The newest snapshot, or nullopt when there is none. Errors name the damaged file.
  Result<std::optional<StoredSnapshot>> LoadLatest() const;
  /// Reads and verifies one file.
  Result<StoredSnapshot> ReadFile(const std::string& path) const;

  const std::string& dir() const { return dir_; }
  /// True once a save failed; every later Save returns that error.
  bool failed() const { return fail_stop_->failed(); }
  /// The file name a snapshot with this metadata is saved under.
  static std::string FileName(const raft::SnapshotMeta& meta);

 private:
  Status SaveFile(const raft::SnapshotMeta& meta, const std::string& payload);

  std::string dir_;
  SnapshotStoreOptions options_;
  rocksdb::FileSystem* fs_;
  FailStop own_fail_stop_;
  FailStop* fail_stop_;  ///< own_fail_stop_ or the shared one
};

}  // namespace lockd::storage
