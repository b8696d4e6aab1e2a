// RaftStore: the Raft log, hard state and membership of one node, in RocksDB.
//
// Layout: column family "log" maps the 8-byte big-endian index to an entry record (so RocksDB's
// byte order is index order); "meta" holds the hard state, the membership, and the metadata of
// the snapshot the log starts after. Every record carries a format version and a CRC-32C.
//
// Each write is one atomic RocksDB WriteBatch written with sync = true: Append puts the hard
// state, the membership and the entries they depend on in one batch (many entries, one fsync:
// group commit), deleting a conflicting suffix in the same batch. A batch that only raises the
// commit index writes nothing: the commit index need not be durable (a restarted node learns it
// again from the leader, and a leader recomputes it from its followers' logs, as in etcd's raft),
// so the store keeps it in memory and writes it with the next synced batch (entries, membership,
// term or vote, compaction). The leader used to pay a second fdatasync per batch for it. Every WAL
// record stays synced, so only the last one can be torn (see MakeDBOptions), and a restart or a
// power cut may only find an older commit index than the store answered. Compact drops the prefix a
// durable snapshot covers; ResetToSnapshot replaces the log with an installed snapshot.
//
// The term of every entry is held in memory (TermIndex), so the core's term lookups never touch
// the disk; entries are read back from RocksDB (the recent tail from its memtable).
//
// Fail-stop: after a write or sync fails (ENOSPC included) the store never writes or acknowledges
// again. The failing call and every later write return the fatal error, `failed()` turns true and
// the options' `on_fatal` runs once; the node must exit. Recovery at Open verifies every record's
// version and checksum, the log's contiguity and its agreement with the hard state; damage is an
// error naming the index or record, and the node refuses to start.
//
// Threads: writes (Append, SetConfState, Compact, ResetToSnapshot) come from one thread at a time
// (the runtime's persist step); the LogStorage reads may come from another thread concurrently.
// Owned by NodeStorage (or a test).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "raft/log_storage.h"
#include "storage/fail_stop.h"
#include "storage/term_index.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
class Env;
}  // namespace rocksdb

namespace lockd::storage {

struct RaftStoreOptions {
  /// Runs once when a write or sync fails (see FailStop). The daemon's handler exits.
  FatalHandler on_fatal;
  /// When set (not owned), the store checks and trips this latch instead of its own, so every
  /// store of a node stops together (NodeStorage shares one); `on_fatal` is then the latch's.
  FailStop* shared_fail_stop = nullptr;
  /// Test-only planted bug: write without fsync. The power-loss test must catch it.
  bool skip_sync_for_testing = false;
  /// Open without RocksDB's lock and refuse writes: for inspecting a data dir a node may be
  /// running on. Recovery's checks still run.
  bool read_only = false;
  /// RocksDB Env to use (not owned; tests inject a power-cutting file system); nullptr: default.
  rocksdb::Env* env = nullptr;
  /// Memtable size; 0: 128 MiB. Tests make it tiny so memtable flushes (SST files, MANIFEST
  /// updates) happen under their power cuts too.
  uint64_t memtable_bytes = 0;
  /// Called after each synced write with its duration in seconds (metrics); runs on the writing
  /// thread, so it must be cheap.
  std::function<void(double seconds)> on_synced_write;
};

/// One unit of durable work from the core (a Ready's persistent part): written atomically,
/// synced once; a batch that only raises the commit index is kept in memory until the next write
/// (see the file comment). Any part may be empty.
struct PersistBatch {
  std::optional<raft::HardState> hard_state;
  /// Contiguous; may start at or below LastIndex() + 1 (a conflicting suffix is replaced), never
  /// at or below the snapshot index or the commit index, never past LastIndex() + 1.
  std::vector<raft::Entry> entries;
  /// The membership in force, when it changed.
  std::optional<raft::ConfState> conf_state;
};

/// Sizes for the inspection report.
struct RaftStoreStats {
  uint64_t entries = 0;
  uint64_t term_runs = 0;  ///< runs of equal terms held in memory
};

class RaftStore final : public raft::LogStorage {
 public:
  /// Opens (or creates) the store in `dir` and recovers it; an error names any damage found.
  static Result<std::unique_ptr<RaftStore>> Open(const std::string& dir,
                                                 RaftStoreOptions options = {});
  ~RaftStore() override;
  RaftStore(const RaftStore&) = delete;
  RaftStore& operator=(const RaftStore&) = delete;

  // raft::LogStorage
  raft::InitialState Initial() const override;
  Result<std::vector<raft::Entry>> Entries(raft::LogIndex lo, raft::LogIndex hi,
                                           uint64_t max_bytes) const override;
  Result<raft::Term> TermAt(raft::LogIndex i) const override;
  raft::LogIndex FirstIndex() const override;
  raft::LogIndex LastIndex() const override;
  raft::SnapshotMeta Snapshot() const override;

  /// Writes the batch durably (one synced WriteBatch); OK means it survives a crash or power
  /// loss. FAILED_PRECONDITION / INVALID_ARGUMENT for a batch that breaks the log's shape (nothing
  /// written, the store stays usable); any other error is fatal (failed() is then true).
  Status Append(const PersistBatch& batch);
  /// Sets the membership in force (durably).
  Status SetConfState(const raft::ConfState& conf);
  /// A durable snapshot covers everything up to meta.index: drop that prefix. meta.index must be
  /// committed and its term must match the log. Save the snapshot file first (NodeStorage does).
  Status Compact(const raft::SnapshotMeta& meta);
  /// A snapshot from the leader was installed (its file saved first): the whole log is replaced
  /// by it, the membership becomes its, and the commit index rises to it.
  Status ResetToSnapshot(const raft::SnapshotMeta& meta);

  /// True once a write or sync failed: the store acknowledges nothing more; the node must exit.
  bool failed() const { return fail_stop_->failed(); }
  /// The fatal error (OK while healthy).
  Status fatal() const { return fail_stop_->Check(); }
  RaftStoreStats Stats() const;

 private:
  explicit RaftStore(RaftStoreOptions options);
  Status Recover();
  Status Write(rocksdb::WriteBatch& batch, const char* what);

  RaftStoreOptions options_;
  FailStop own_fail_stop_;
  FailStop* fail_stop_;  ///< own_fail_stop_ or the shared one
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* log_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;

  std::mutex write_mu_;           ///< one write at a time (held across the synced write)
  mutable std::mutex mu_;         ///< guards the in-memory view below (never held across I/O)
  raft::HardState hard_;          ///< what the store answers: the last hard state given
  raft::HardState written_hard_;  ///< the last one written (only the writer touches it)
  raft::ConfState conf_;
  raft::SnapshotMeta snapshot_;
  TermIndex terms_;
};

}  // namespace lockd::storage
