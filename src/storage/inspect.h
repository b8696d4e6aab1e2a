// InspectDataDir: what an operator wants to know about a node's data directory — log range, hard
// state, membership, snapshot, sizes — read without disturbing a node that may be running on it
// (RocksDB is opened read-only, which takes no lock, and nothing is written). It verifies what
// recovery would: a damaged record or file, a gap, a newer format, or a log that does not continue
// the newest snapshot is an error naming it. `lockd --inspect-data-dir DIR` prints FormatReport.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "raft/types.h"

namespace lockd::storage {

struct DataDirReport {
  std::string path;
  std::string owner;  ///< "pid N (running)", "pid N (not running)" or "none"
  raft::LogIndex first_index, last_index;
  uint64_t entries = 0, term_runs = 0;
  raft::HardState hard_state;
  raft::ConfState conf;
  raft::SnapshotMeta log_start;  ///< what the log starts after
  std::string snapshot_file;     ///< newest snapshot file ("" if none)
  raft::SnapshotMeta snapshot_meta;
  uint64_t snapshot_payload_bytes = 0;
  /// Empty when the log continues the snapshot; otherwise what the next start will finish.
  std::string pending_repair;
  uint64_t raft_bytes = 0, snapshot_bytes = 0;
};

/// Verifies and describes the data dir at `path`; errors name the damage.
Result<DataDirReport> InspectDataDir(const std::string& path);
/// A few aligned lines for a terminal.
std::string FormatReport(const DataDirReport& r);

}  // namespace lockd::storage
