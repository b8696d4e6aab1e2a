#include "storage/node_storage.h"

#include <spdlog/spdlog.h>

#include <filesystem>

namespace lockd::storage {
namespace {

std::string N(uint64_t v) {
  return std::to_string(v);
}

}  // namespace

Result<std::unique_ptr<NodeStorage>> NodeStorage::Open(const DataDir& dir,
                                                       NodeStorageOptions options) {
  return OpenDirs(dir.raft_dir(), dir.snapshot_dir(), std::move(options));
}

Result<std::unique_ptr<NodeStorage>> NodeStorage::OpenDirs(const std::string& raft_dir,
                                                           const std::string& snapshot_dir,
                                                           NodeStorageOptions options) {
  std::unique_ptr<NodeStorage> s(new NodeStorage());
  s->fail_stop_ = std::make_unique<FailStop>(std::move(options.on_fatal));
  SnapshotStoreOptions so;
  so.fs = options.fs;
  so.shared_fail_stop = s->fail_stop_.get();
  so.skip_dir_sync_for_testing = options.skip_dir_sync_for_testing;
  s->snapshots_ = std::make_unique<SnapshotStore>(snapshot_dir, so);
  auto latest = s->snapshots_->LoadLatest();
  if (!latest.ok()) return latest.status();
  s->recovered_ = std::move(latest).value();

  // A log that vanished while snapshots stayed would be recreated empty, losing the term and vote
  // it held (the node could then vote twice in one term): that is damage, not a fresh node.
  std::error_code ec;
  if (s->recovered_ && !std::filesystem::exists(raft_dir + "/CURRENT", ec)) {
    return DataLoss("snapshot " + s->recovered_->path + " exists but the Raft log in " + raft_dir +
                    " does not: the log, with the node's term and vote, is lost");
  }
  RaftStoreOptions ro;
  ro.env = options.env;
  ro.shared_fail_stop = s->fail_stop_.get();
  ro.skip_sync_for_testing = options.skip_sync_for_testing;
  ro.memtable_bytes = options.memtable_bytes;
  ro.on_synced_write = options.on_synced_write;
  auto log = RaftStore::Open(raft_dir, ro);
  if (!log.ok()) return log.status();
  s->log_ = std::move(log).value();
  if (Status r = s->Reconcile(); !r.ok()) return r;
  return s;
}

Status NodeStorage::Reconcile() {
  const raft::SnapshotMeta start = log_->Snapshot();  // the log starts after this
  if (!recovered_) {
    if (start.index.zero()) return Status::Ok();
    return DataLoss("the Raft log starts after index " + N(start.index.value()) + " but " +
                    snapshots_->dir() + " holds no snapshot: the state up to that index is lost");
  }
  const raft::SnapshotMeta& snap = recovered_->meta;
  if (snap.index < start.index) {
    return DataLoss("the Raft log starts after index " + N(start.index.value()) +
                    " but the newest snapshot, " + recovered_->path + ", covers only up to " +
                    N(snap.index.value()) + ": the entries in between are lost");
  }
  if (snap.index == start.index) {
    if (snap.term != start.term) {
      return DataLoss("snapshot " + recovered_->path + " has term " + N(snap.term.value()) +
                      " but the Raft log starts after term " + N(start.term.value()));
    }
    return Status::Ok();
  }
  // The file is ahead of the log: a crash came between the two durable steps of a snapshot.
  const auto term = log_->TermAt(snap.index);
  const raft::HardState hard = log_->Initial().hard;
  if (term.ok() && *term == snap.term) {
    spdlog::warn("finishing an interrupted compaction of the Raft log up to {} ({})",
                 snap.index.value(), recovered_->path);
    if (hard.commit < snap.index) {
      // The snapshot holds only committed state, so its index is committed.
      PersistBatch b;
      b.hard_state = raft::HardState{hard.term, hard.vote, snap.index};
      if (Status s = log_->Append(b); !s.ok()) return s;
    }
    return log_->Compact(snap);
  }
  if (hard.commit > snap.index) {
    return DataLoss("snapshot " + recovered_->path + " disagrees with the Raft log at index " +
                    N(snap.index.value()) + ", which is committed");
  }
  spdlog::warn("finishing an interrupted install of snapshot {}", recovered_->path);
  return log_->ResetToSnapshot(snap);
}

Status NodeStorage::SaveSnapshot(const raft::SnapshotMeta& meta, const std::string& payload) {
  if (Status s = CheckSnapshot(meta); !s.ok()) return s;
  if (Status s = WriteSnapshotFile(meta, payload); !s.ok()) return s;
  return CompactToSnapshot(meta);
}

Status NodeStorage::WriteSnapshotFile(const raft::SnapshotMeta& meta, const std::string& payload) {
  if (Status s = fail_stop_->Check(); !s.ok()) return s;
  return snapshots_->Save(meta, payload);
}

Status NodeStorage::CompactToSnapshot(const raft::SnapshotMeta& meta) {
  if (Status s = fail_stop_->Check(); !s.ok()) return s;
  if (meta.index <= log_->Snapshot().index) {
    return FailedPrecondition("the log already starts at " + N(log_->Snapshot().index.value()) +
                              ", not before the snapshot at " + N(meta.index.value()));
  }
  return log_->Compact(meta);
}

Status NodeStorage::CheckSnapshot(const raft::SnapshotMeta& meta) const {
  if (Status s = fail_stop_->Check(); !s.ok()) return s;
  // Checked before the file is written: a file the log cannot be compacted to would be taken for
  // an interrupted install at the next start.
  const raft::SnapshotMeta start = log_->Snapshot();
  if (meta.index <= start.index) {
    return FailedPrecondition("a snapshot at " + N(meta.index.value()) +
                              " is not newer than the log's start " + N(start.index.value()));
  }
  if (meta.index > log_->Initial().hard.commit) {
    return FailedPrecondition("a snapshot at " + N(meta.index.value()) + " is not committed");
  }
  const auto term = log_->TermAt(meta.index);
  if (!term.ok() || *term != meta.term) {
    return FailedPrecondition("a snapshot at " + N(meta.index.value()) + " with term " +
                              N(meta.term.value()) + " disagrees with the log");
  }
  return Status::Ok();
}

Status NodeStorage::InstallSnapshot(const raft::SnapshotMeta& meta, const std::string& payload) {
  if (Status s = fail_stop_->Check(); !s.ok()) return s;
  if (meta.index <= log_->Snapshot().index) {
    return FailedPrecondition("an installed snapshot at " + N(meta.index.value()) +
                              " is not newer than the log's start");
  }
  if (log_->Initial().hard.commit > meta.index) {
    return FailedPrecondition("an installed snapshot at " + N(meta.index.value()) +
                              " is behind the commit index");
  }
  if (Status s = snapshots_->Save(meta, payload); !s.ok()) return s;
  return log_->ResetToSnapshot(meta);
}

}  // namespace lockd::storage
