// MemoryLogStorage: a LogStorage in memory, for the simulator, tests and benchmarks. "Persisting"
// is appending here; a simulated crash keeps exactly what was appended.
#pragma once

#include <vector>

#include "raft/log_storage.h"

namespace lockd::raft {

class MemoryLogStorage final : public LogStorage {
 public:
  InitialState Initial() const override { return {hard_, conf_}; }
  Result<std::vector<Entry>> Entries(LogIndex lo, LogIndex hi, uint64_t max_bytes) const override;
  Result<Term> TermAt(LogIndex i) const override;
  LogIndex FirstIndex() const override { return snap_.index.next(); }
  LogIndex LastIndex() const override { return snap_.index + entries_.size(); }
  SnapshotMeta Snapshot() const override { return snap_; }

  /// Appends (replacing a conflicting suffix); a gap is a programming error.
  void Append(const std::vector<Entry>& entries);
  void SetHardState(const HardState& hs) { hard_ = hs; }
  void SetConfState(const ConfState& cs) { conf_ = cs; }
  /// A snapshot of the state machine covers everything up to meta.index (committed, in the log or
  /// at the snapshot's own index): the prefix is dropped. As storage::RaftStore::Compact.
  Status Compact(const SnapshotMeta& meta);
  /// A snapshot from the leader was installed: the whole log is replaced by it, the membership
  /// becomes its, the commit index rises to it. As storage::RaftStore::ResetToSnapshot.
  void ResetToSnapshot(const SnapshotMeta& meta);

 private:
  HardState hard_;
  ConfState conf_;
  SnapshotMeta snap_;
  std::vector<Entry> entries_;  ///< entries_[k] has index snap_.index + 1 + k
};

}  // namespace lockd::raft
