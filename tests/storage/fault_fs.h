// FaultFs: a RocksDB FileSystem for tests that models what survives a power cut. Writes reach the
// real files at once, but each file remembers how much of it was synced; PowerCut() truncates
// every file to its synced length (optionally keeping a random part of the unsynced tail, a torn
// write) and from then on drops every write, sync, rename and delete, as a machine without power
// would. It can also fail writes with "no space left". Directory-entry durability is not modelled
// (a created file survives even if its folder was never synced).
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>

namespace lockd::storage::testing {

class FaultFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultFs(std::shared_ptr<rocksdb::FileSystem> base) : FileSystemWrapper(base) {}
  static const char* kClassName() { return "LockdFaultFs"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& s, const std::string& t,
                               const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override;

  /// Power goes off after `n` more write or sync calls (the n-th is cut in the middle).
  void ScheduleCut(int n, bool torn, uint64_t seed);
  /// Power goes off now.
  void PowerCut(bool torn, uint64_t seed);
  bool off() const;
  /// Appends fail with "no space left on device" while set.
  void SetNoSpace(bool v);

  // Called by the files.
  rocksdb::IOStatus OnAppend(const std::string& name, size_t bytes, bool* drop);
  rocksdb::IOStatus OnSync(const std::string& name, bool* drop);

 private:
  void Tick();  ///< counts an operation towards a scheduled cut (mu_ held)
  void CutLocked(bool torn, uint64_t seed);

  mutable std::mutex mu_;
  struct FileState {
    uint64_t written = 0;
    uint64_t synced = 0;
  };
  std::map<std::string, FileState> files_;
  bool off_ = false;
  bool no_space_ = false;
  int countdown_ = -1;
  bool torn_ = false;
  uint64_t seed_ = 0;
};

}  // namespace lockd::storage::testing
