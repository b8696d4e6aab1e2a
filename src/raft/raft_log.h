// RaftLog: the log as the core sees it — the durable part read through LogStorage, plus the
// unstable tail not yet handed to the runtime for persisting (as etcd's log_unstable) — with the
// commit and applied indices. A snapshot received from the leader replaces the whole log at once
// (Restore); until the runtime has installed it (Advance), the log is that snapshot plus the
// unstable tail and the durable log is not read.
#pragma once

#include <optional>
#include <vector>

#include "raft/log_storage.h"

namespace lockd::raft {

class RaftLog {
 public:
  explicit RaftLog(const LogStorage& storage);

  LogIndex first_index() const;
  LogIndex last_index() const;
  Term last_term() const { return TermOr(last_index(), Term()); }
  /// The term at i, or `fallback` when i is compacted or past the end.
  Term TermOr(LogIndex i, Term fallback) const;
  bool MatchTerm(LogIndex i, Term t) const;
  bool IsUpToDate(LogIndex last, Term term) const;

  /// Entries [lo, hi), at most max_bytes (at least one).
  std::vector<Entry> Slice(LogIndex lo, LogIndex hi, uint64_t max_bytes) const;

  /// Appends after truncating any conflicting suffix (entries[0].index <= last + 1).
  void Append(const std::vector<Entry>& entries);
  /// For a follower's append: skips entries already present with the same term, truncates at the
  /// first conflict, appends the rest. Returns the last new index.
  LogIndex MaybeAppend(LogIndex prev, const std::vector<Entry>& entries);
  /// The first index whose term differs from `entries` (or last+1 if none conflicts).
  LogIndex FindConflict(const std::vector<Entry>& entries) const;
  /// For the fast back-off: the largest index <= index whose term <= term.
  LogIndex FindConflictByTerm(LogIndex index, Term term) const;

  /// The snapshot the log starts after: the pending one if any, else the durable one.
  SnapshotMeta snapshot() const;
  /// A snapshot from the leader replaces the log: commit and applied jump to its index, and it
  /// waits (pending_snapshot()) for the runtime to install it. Requires meta.index > committed().
  void Restore(const SnapshotMeta& meta);
  const std::optional<SnapshotMeta>& pending_snapshot() const { return pending_snapshot_; }
  /// The runtime installed the pending snapshot (storage now starts after it).
  void SnapshotInstalled(const SnapshotMeta& meta);

  const std::vector<Entry>& unstable() const { return unstable_; }
  /// The runtime persisted everything up to `index` with term `term`.
  void StableTo(LogIndex index, Term term);
  LogIndex stable_last() const;

  /// Test-only (a planted bug needs it): let a bad leader overwrite committed entries so the
  /// simulator's checkers, not an abort here, report the damage.
  void AllowCommittedOverwriteForTesting() { checks_committed_ = false; }

  LogIndex committed() const { return committed_; }
  LogIndex applied() const { return applied_; }
  void CommitTo(LogIndex i);
  void AppliedTo(LogIndex i);
  /// Committed entries not yet applied, at most max_bytes.
  std::vector<Entry> NextToApply(uint64_t max_bytes) const;

 private:
  const LogStorage& storage_;
  std::vector<Entry> unstable_;  ///< contiguous, starting at unstable_offset_
  LogIndex unstable_offset_;
  std::optional<SnapshotMeta> pending_snapshot_;  ///< received, not yet installed by the runtime
  LogIndex committed_;
  LogIndex applied_;
  bool checks_committed_ = true;
};

}  // namespace lockd::raft
