// TermIndex: the term of every entry in the log, held in memory as runs.
//
// Terms change only at elections, so the log is a few runs of equal terms; storing one
// (first index, term) pair per run makes every term lookup a binary search over a handful of pairs
// and costs memory in proportion to the number of leaders, not entries. RaftStore keeps it in
// step with what it wrote, so the core's TermAt never reads the disk.
#pragma once

#include <optional>
#include <vector>

#include "raft/types.h"

namespace lockd::storage {

/// Not thread-safe; RaftStore guards it.
class TermIndex {
 public:
  /// An empty log that starts after `snapshot_index`.
  void Reset(raft::LogIndex snapshot_index);
  /// Appends entry last() + 1 with term `t` (never lower than the last entry's).
  void Append(raft::Term t);
  /// Forgets entries from `i` on (first() <= i <= last() + 1).
  void TruncateFrom(raft::LogIndex i);
  /// Forgets entries up to and including `i` (i <= last()); the log then starts after i.
  void CompactTo(raft::LogIndex i);

  /// The term of entry i, or nullopt when i is outside [first(), last()].
  std::optional<raft::Term> At(raft::LogIndex i) const;
  raft::LogIndex first() const { return after_.next(); }
  raft::LogIndex last() const { return last_; }
  size_t runs() const { return runs_.size(); }

 private:
  struct Run {
    raft::LogIndex first;
    raft::Term term;
  };
  raft::LogIndex after_;  ///< the log starts after this index
  raft::LogIndex last_;
  std::vector<Run> runs_;  ///< first indices strictly increasing, all within [first(), last()]
};

}  // namespace lockd::storage
