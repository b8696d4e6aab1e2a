// DataDir: exclusive ownership of a node's data directory.
//
// A node's directory holds its Raft log (RocksDB, in `raft/`) and its snapshot files (in
// `snapshots/`). Two processes must never open one directory: the second would append to a log the
// first believes it owns. `DataDir::Open` takes an advisory lock (flock) on `<dir>/LOCK.lockd` that
// the kernel releases when the process dies, including on kill -9, so a crashed node never leaves a
// stale lock behind. Open also creates `raft/` and `snapshots/` and syncs the folders that name
// them, so they are durable before anything is written inside. The owner is the daemon's main;
// everything opened inside (NodeStorage) lives no longer.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"

namespace lockd::storage {

class DataDir {
 public:
  /// Creates `path` (and its `raft/` and `snapshots/` folders, durably) if missing and locks it.
  /// FAILED_PRECONDITION when another process holds it.
  static Result<std::unique_ptr<DataDir>> Open(const std::string& path);
  ~DataDir();

  DataDir(const DataDir&) = delete;
  DataDir& operator=(const DataDir&) = delete;

  const std::string& path() const { return path_; }
  std::string raft_dir() const { return path_ + "/raft"; }
  std::string snapshot_dir() const { return path_ + "/snapshots"; }

 private:
  DataDir(std::string path, int lock_fd);

  std::string path_;
  int lock_fd_ = -1;
};

}  // namespace lockd::storage
