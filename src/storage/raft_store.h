// RaftStore: the Raft log, hard state and membership of one node, in RocksDB.
//
// Layout: column family "log" maps the big-endian index to an entry record; "meta" holds the
// hard state and the metadata of the snapshot the log starts after. Each Append is one atomic
// WriteBatch written with sync = true: the hard state and the entries it depends on land
// together, many entries share one fsync (group commit), and a conflicting suffix is deleted in
// the same batch. Terms of every entry in the log are kept in memory (8 bytes each), so the core's
// term lookups never touch the disk.
//
// Fail-stop: after a write or sync fails (a full disk included), the store refuses every later
// write and the node must exit — retrying fsync after a failure is how data is lost silently.
// Recovery at Open verifies every record's version and checksum and the log's contiguity; damage
// is an error that names the index, and the node refuses to start.
//
// Thread-safety: one writer (the runtime's persist step); reads may come from the Raft thread
// concurrently with nothing else. Owned by the node runtime.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "raft/log_storage.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
class Env;
}  // namespace rocksdb

namespace lockd::storage {

struct RaftStoreOptions {
  /// Test-only: write without fsync (a planted bug the power-loss test must catch).
  bool skip_sync_for_testing = false;
  /// Open without taking RocksDB's lock, for inspecting a data dir a running node holds. Writes
  /// fail.
  bool read_only = false;
  /// RocksDB Env to use (tests inject a fault-injecting file system); nullptr: the default.
  rocksdb::Env* env = nullptr;
};

/// One unit of durable work from the core: written atomically, synced once.
struct PersistBatch {
  std::optional<raft::HardState> hard_state;
  std::vector<raft::Entry> entries;  ///< contiguous; may start at or below LastIndex() + 1
};

class RaftStore final : public raft::LogStorage {
 public:
  static Result<std::unique_ptr<RaftStore>> Open(const std::string& dir,
                                                 RaftStoreOptions options = {});
  ~RaftStore() override;

  // raft::LogStorage
  raft::InitialState Initial() const override;
  Result<std::vector<raft::Entry>> Entries(raft::LogIndex lo, raft::LogIndex hi,
                                           uint64_t max_bytes) const override;
  Result<raft::Term> TermAt(raft::LogIndex i) const override;
  raft::LogIndex FirstIndex() const override { return snapshot_.index.next(); }
  raft::LogIndex LastIndex() const override { return snapshot_.index + terms_.size(); }
  raft::SnapshotMeta Snapshot() const override { return snapshot_; }

  /// Writes the batch durably. Entries overwrite a conflicting suffix; a gap is refused.
  Status Append(const PersistBatch& batch);
  /// Sets the membership in force (stored with the hard state).
  Status SetConfState(const raft::ConfState& conf);
  /// The state machine took a snapshot at `meta.index`: drop the log up to it.
  Status Compact(const raft::SnapshotMeta& meta);
  /// A snapshot from the leader was installed: the whole log is replaced by it.
  Status ResetToSnapshot(const raft::SnapshotMeta& meta);

  /// The fatal error that stopped the store, if any (then every write fails with it).
  const Status& fatal() const { return fatal_; }

 private:
  RaftStore() = default;
  Status Recover();
  Status Write(rocksdb::WriteBatch& batch, const char* what);

  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* log_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;
  RaftStoreOptions options_;
  raft::HardState hard_;
  raft::ConfState conf_;
  raft::SnapshotMeta snapshot_;
  std::vector<raft::Term> terms_;  ///< terms_[k] is the term of entry snapshot_.index + 1 + k
  Status fatal_;
};

}  // namespace lockd::storage
