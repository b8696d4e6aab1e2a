// InspectDataDir: what an operator wants to know about a data directory — log range, hard state,
// snapshot, sizes — read without disturbing a node that may be running on it.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "raft/types.h"

namespace lockd::storage {

struct DataDirReport {
  std::string path;
  raft::LogIndex first_index, last_index;
  raft::HardState hard_state;
  raft::ConfState conf;
  raft::SnapshotMeta log_snapshot;  ///< what the log starts after
  std::string snapshot_file;        ///< newest snapshot file ("" if none)
  raft::SnapshotMeta snapshot_file_meta;
  uint64_t raft_bytes = 0, snapshot_bytes = 0;
};

/// Opens the log read-only and verifies everything recovery would; errors name the damage.
Result<DataDirReport> InspectDataDir(const std::string& path);
std::string FormatReport(const DataDirReport& r);

}  // namespace lockd::storage
