// DataDir: exclusive ownership of a node's data directory.
//
// A node's directory holds its RocksDB database (the Raft log and hard state) and its snapshot
// files. Two processes must never open one directory: the second would append to a log the first
// believes it owns. `DataDir::Open` takes an advisory lock (flock) on `<dir>/LOCK.lockd` that the
// kernel releases when the process dies, including on kill -9, so a crashed node never leaves a
// stale lock behind. The owner is the daemon's main; everything opened inside lives no longer.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"

namespace rocksdb {
class DB;
}

namespace lockd::storage {

class DataDir {
 public:
  /// Creates `path` if missing, locks it, and opens (or creates) the database inside.
  /// FAILED_PRECONDITION when another process holds the directory.
  static Result<std::unique_ptr<DataDir>> Open(const std::string& path);
  ~DataDir();

  DataDir(const DataDir&) = delete;
  DataDir& operator=(const DataDir&) = delete;

  const std::string& path() const { return path_; }
  rocksdb::DB* db() const { return db_.get(); }

 private:
  DataDir(std::string path, int lock_fd);

  std::string path_;
  int lock_fd_ = -1;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace lockd::storage
