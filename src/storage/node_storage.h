// NodeStorage: everything a node keeps durably — the Raft log (RaftStore) and the state machine's
// snapshot files (SnapshotStore) in one data dir — recovered together and kept consistent.
//
// Recovery (Open): the newest snapshot file and the log are each verified (checksums, versions,
// contiguity; see RaftStore and SnapshotStore), then checked against each other. The log must
// continue the snapshot: a log that starts after the newest snapshot file (its entries compacted
// with no snapshot covering them), or a log missing while snapshots exist, is lost state and an
// error naming both. A crash between the two durable steps of a snapshot leaves the file ahead of
// the log; Open finishes the step: a file whose entry the log still holds with the same term was a
// local snapshot (the log is compacted to it), otherwise it was installed from the leader (the log
// is reset to it). After Open, the log starts right after the recovered snapshot: restore the
// state machine from that snapshot's payload, then apply the log's entries up to the commit index.
//
// Snapshots: SaveSnapshot and InstallSnapshot write the file durably first, then change the log,
// so a crash between them is the case above.
//
// Fail-stop: both stores share one FailStop, so a failed snapshot save also stops the log; after
// any failure nothing is acknowledged again, failed() is true, and on_fatal ran once.
//
// Owned by the node runtime, inside the DataDir it was opened from (which holds the flock).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/status.h"
#include "raft/types.h"
#include "storage/data_dir.h"
#include "storage/fail_stop.h"
#include "storage/raft_store.h"
#include "storage/snapshot_store.h"

namespace rocksdb {
class Env;
class FileSystem;
}  // namespace rocksdb

namespace lockd::storage {

struct NodeStorageOptions {
  /// Runs once when any write or sync fails. The daemon's handler logs and exits the process.
  FatalHandler on_fatal;
  /// Tests only: RocksDB Env and snapshot FileSystem (not owned; the same power-cutting file
  /// system under both), and the planted bugs the power-loss tests must catch.
  rocksdb::Env* env = nullptr;
  rocksdb::FileSystem* fs = nullptr;
  bool skip_sync_for_testing = false;
  bool skip_dir_sync_for_testing = false;
  uint64_t memtable_bytes = 0;                          ///< see RaftStoreOptions
  std::function<void(double seconds)> on_synced_write;  ///< see RaftStoreOptions
};

class NodeStorage {
 public:
  /// Recovers the node's storage in a locked data dir (see the file comment).
  static Result<std::unique_ptr<NodeStorage>> Open(const DataDir& dir,
                                                   NodeStorageOptions options = {});
  /// The same on explicit folders, for tests that hold no DataDir.
  static Result<std::unique_ptr<NodeStorage>> OpenDirs(const std::string& raft_dir,
                                                       const std::string& snapshot_dir,
                                                       NodeStorageOptions options = {});

  /// The log: the core's LogStorage, and where the runtime persists each Ready.
  RaftStore& log() { return *log_; }
  const RaftStore& log() const { return *log_; }
  const SnapshotStore& snapshots() const { return *snapshots_; }
  /// The snapshot recovered at Open (nullopt: none; the state machine starts empty).
  const std::optional<StoredSnapshot>& recovered_snapshot() const { return recovered_; }

  /// The state machine's snapshot at meta.index (committed, in the log with meta.term): saved
  /// durably, then the log's prefix up to it compacted. The three steps it takes, for a caller
  /// that writes the file on another thread (the file is the slow part):
  ///   CheckSnapshot (the log's thread) → WriteSnapshotFile (any one thread, while no other
  ///   snapshot is saved, installed or read) → CompactToSnapshot (the log's thread).
  /// A crash between the file and the compaction is finished by Open (see the top).
  Status SaveSnapshot(const raft::SnapshotMeta& meta, const std::string& payload);
  Status CheckSnapshot(const raft::SnapshotMeta& meta) const;
  Status WriteSnapshotFile(const raft::SnapshotMeta& meta, const std::string& payload);
  /// FAILED_PRECONDITION (nothing changed) if the log already starts at or after meta.index (a
  /// snapshot from the leader was installed meanwhile).
  Status CompactToSnapshot(const raft::SnapshotMeta& meta);
  /// A snapshot from the leader (newer than the log's start, not behind its commit): saved
  /// durably, then the log replaced by it.
  Status InstallSnapshot(const raft::SnapshotMeta& meta, const std::string& payload);

  /// True once any write or sync failed; the node must exit.
  bool failed() const { return fail_stop_->failed(); }
  Status fatal() const { return fail_stop_->Check(); }

 private:
  NodeStorage() = default;
  Status Reconcile();

  std::unique_ptr<FailStop> fail_stop_;  ///< shared by both stores; declared first, dies last
  std::unique_ptr<RaftStore> log_;
  std::unique_ptr<SnapshotStore> snapshots_;
  std::optional<StoredSnapshot> recovered_;
};

}  // namespace lockd::storage
