// LogStorage: what the Raft core reads of the durable log. Read-only to the core: the node
// runtime owns every write (it persists what a Ready hands it, then reports back). In the style
// of etcd's raft Storage. Implementations: MemoryLogStorage (tests, simulator, benchmarks) and
// storage::RaftStore (RocksDB).
#pragma once

#include <vector>

#include "base/status.h"
#include "raft/types.h"

namespace lockd::raft {

struct InitialState {
  HardState hard;
  ConfState conf;
};

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  /// The hard state and membership as last persisted.
  virtual InitialState Initial() const = 0;
  /// Entries [lo, hi), at most `max_bytes` of them by Entry::ByteSize() but always at least one
  /// when lo < hi. OUT_OF_RANGE when lo was compacted or hi is past the last index + 1.
  virtual Result<std::vector<Entry>> Entries(LogIndex lo, LogIndex hi,
                                             uint64_t max_bytes) const = 0;
  /// The term of entry i, for i in [FirstIndex() - 1, LastIndex()] (FirstIndex() - 1 is the
  /// snapshot's index). OUT_OF_RANGE outside.
  virtual Result<Term> TermAt(LogIndex i) const = 0;
  /// The first index still in the log (the snapshot's index + 1).
  virtual LogIndex FirstIndex() const = 0;
  /// The last index in the log (the snapshot's index when the log is empty).
  virtual LogIndex LastIndex() const = 0;
  /// What the latest snapshot covers (index 0 when there is none).
  virtual SnapshotMeta Snapshot() const = 0;
};

}  // namespace lockd::raft
