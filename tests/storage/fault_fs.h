// FaultFs: a RocksDB FileSystem for tests that models what a power cut keeps.
//
// Data: every file remembers how much of it was synced. Writes reach the real file at once (so
// reads before the cut see them, as the page cache would serve them), but only the synced prefix
// is durable: after a cut, Settle() truncates every file to it, optionally keeping a random part of
// the unsynced tail (a torn write). The cut itself only stops the writes; Settle(), called once the
// store is closed, makes the disk what the power cut left (done later because the files still
// open would otherwise rewrite their tails when they are closed).
// Names: a file created, a folder made, or a rename done in a folder is durable only once that
// folder is fsynced; Settle() undoes the ones that were not (renames are reverted, including
// the file a rename replaced, then unsynced new files and folders are removed). Deletions are
// taken as durable at once (a file that reappears after a cut is not modelled).
// After the cut nothing reaches the disk: writes, syncs, renames and deletes are dropped and new
// files cannot be created, as on a machine without power. It can also fail appends with "no space
// left on device" and syncs with an I/O error.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

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
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDir(const std::string& d, const rocksdb::IOOptions& o,
                              rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDirIfMissing(const std::string& d, const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& s, const std::string& t,
                               const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override;

  /// Power goes off at the n-th next write, sync, rename or folder sync (which does not happen).
  void ScheduleCut(int n, bool torn, uint64_t seed);
  /// Power goes off now.
  void PowerCut(bool torn, uint64_t seed);
  /// After a cut, once every file is closed: leaves on disk only what the cut kept.
  void Settle();
  bool off() const;
  /// Appends fail with "no space left on device" while set.
  void SetNoSpace(bool v);
  /// Syncs fail with an I/O error while set.
  void SetSyncError(bool v);
  /// How many write/sync/rename/folder-sync operations ran (to pick cut points).
  int operations() const;

  // Called by the files and folders.
  rocksdb::IOStatus OnAppend(const std::string& name, size_t bytes, bool* drop);
  rocksdb::IOStatus OnSync(const std::string& name, bool* drop);
  rocksdb::IOStatus OnDirSync(const std::string& dir, bool* drop);

 private:
  struct FileState {
    uint64_t written = 0;
    uint64_t synced = 0;
  };
  /// A change to a folder's names that a folder fsync has not made durable yet.
  struct NameChange {
    enum Kind { kCreateFile, kCreateDir, kRename } kind;
    std::string path;                     ///< the created path, or the rename's target
    std::string from;                     ///< the rename's source
    std::optional<std::string> replaced;  ///< the content a rename replaced
  };

  bool TickLocked();  ///< counts an operation; true if the power just went off (mu_ held)
  void CutLocked(bool torn, uint64_t seed);
  void NoteCreatedLocked(const std::string& path, NameChange::Kind kind);

  mutable std::mutex mu_;
  std::map<std::string, FileState> files_;
  std::vector<NameChange> pending_;  ///< in order; a folder sync removes its folder's
  bool off_ = false;
  bool settled_ = false;
  bool no_space_ = false;
  bool sync_error_ = false;
  int countdown_ = -1;
  int operations_ = 0;
  bool torn_ = false;
  uint64_t seed_ = 0;
};

}  // namespace lockd::storage::testing
