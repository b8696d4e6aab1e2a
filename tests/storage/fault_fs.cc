#include "fault_fs.h"

#include <unistd.h>

#include <filesystem>

namespace lockd::storage::testing {
namespace {

std::string Norm(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : Norm(path.substr(0, slash == 0 ? 1 : slash));
}

class FaultFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultFile(std::unique_ptr<rocksdb::FSWritableFile> f, FaultFs* fs, std::string name)
      : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs), name_(std::move(name)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
    bool drop = false;
    auto s = fs_->OnAppend(name_, d.size(), &drop);
    if (!s.ok() || drop) return s;
    return target()->Append(d, o, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo&,
                           rocksdb::IODebugContext* dbg) override {
    return Append(d, o, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&, uint64_t, const rocksdb::IOOptions&,
                                     rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("FaultFs models appends only");
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    bool drop = false;
    auto s = fs_->OnSync(name_, &drop);
    if (!s.ok() || drop) return s;
    return target()->Sync(o, dbg);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    return Sync(o, dbg);
  }
  rocksdb::IOStatus RangeSync(uint64_t, uint64_t, const rocksdb::IOOptions&,
                              rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::OK();  // a hint; durability comes only from Sync
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    if (fs_->off()) return rocksdb::IOStatus::OK();
    return target()->Close(o, dbg);
  }

 private:
  FaultFs* fs_;
  std::string name_;
};

class FaultDir : public rocksdb::FSDirectoryWrapper {
 public:
  FaultDir(std::unique_ptr<rocksdb::FSDirectory> d, FaultFs* fs, std::string name)
      : FSDirectoryWrapper(std::move(d)), fs_(fs), name_(std::move(name)) {}

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    bool drop = false;
    auto s = fs_->OnDirSync(name_, &drop);
    if (!s.ok() || drop) return s;
    return FSDirectoryWrapper::Fsync(o, dbg);
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg,
                                        const rocksdb::DirFsyncOptions&) override {
    return Fsync(o, dbg);  // always the whole folder: that is what the model tracks
  }

 private:
  FaultFs* fs_;
  std::string name_;
};

}  // namespace

rocksdb::IOStatus FaultFs::NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                           std::unique_ptr<rocksdb::FSWritableFile>* r,
                                           rocksdb::IODebugContext* dbg) {
  std::lock_guard lock(mu_);
  if (off_) return rocksdb::IOStatus::IOError("power is off");
  const bool existed = target()->FileExists(f, {}, dbg).ok();
  std::unique_ptr<rocksdb::FSWritableFile> base;
  auto s = target()->NewWritableFile(f, o, &base, dbg);
  if (!s.ok()) return s;
  // A truncated existing file is modelled as empty and synced, which errs towards keeping less.
  files_[f] = FileState{};
  if (!existed) NoteCreatedLocked(f, NameChange::kCreateFile);
  r->reset(new FaultFile(std::move(base), this, f));
  return s;
}

rocksdb::IOStatus FaultFs::ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                              std::unique_ptr<rocksdb::FSWritableFile>* r,
                                              rocksdb::IODebugContext* dbg) {
  std::lock_guard lock(mu_);
  if (off_) return rocksdb::IOStatus::IOError("power is off");
  const bool existed = target()->FileExists(f, {}, dbg).ok();
  std::unique_ptr<rocksdb::FSWritableFile> base;
  auto s = target()->ReopenWritableFile(f, o, &base, dbg);
  if (!s.ok()) return s;
  uint64_t size = 0;
  target()->GetFileSize(f, rocksdb::IOOptions(), &size, dbg).PermitUncheckedError();
  if (!files_.count(f)) files_[f] = FileState{size, size};
  if (!existed) NoteCreatedLocked(f, NameChange::kCreateFile);
  r->reset(new FaultFile(std::move(base), this, f));
  return s;
}

rocksdb::IOStatus FaultFs::NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                        std::unique_ptr<rocksdb::FSDirectory>* r,
                                        rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSDirectory> base;
  auto s = target()->NewDirectory(name, o, &base, dbg);
  if (!s.ok()) return s;
  r->reset(new FaultDir(std::move(base), this, Norm(name)));
  return s;
}

rocksdb::IOStatus FaultFs::CreateDir(const std::string& d, const rocksdb::IOOptions& o,
                                     rocksdb::IODebugContext* dbg) {
  std::lock_guard lock(mu_);
  if (off_) return rocksdb::IOStatus::IOError("power is off");
  auto s = target()->CreateDir(d, o, dbg);
  if (s.ok()) NoteCreatedLocked(Norm(d), NameChange::kCreateDir);
  return s;
}

rocksdb::IOStatus FaultFs::CreateDirIfMissing(const std::string& d, const rocksdb::IOOptions& o,
                                              rocksdb::IODebugContext* dbg) {
  std::lock_guard lock(mu_);
  if (off_) return rocksdb::IOStatus::IOError("power is off");
  const bool existed = target()->FileExists(d, {}, dbg).ok();
  auto s = target()->CreateDirIfMissing(d, o, dbg);
  if (s.ok() && !existed) NoteCreatedLocked(Norm(d), NameChange::kCreateDir);
  return s;
}

rocksdb::IOStatus FaultFs::RenameFile(const std::string& s, const std::string& t,
                                      const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) {
  std::lock_guard lock(mu_);
  if (TickLocked() || off_) return rocksdb::IOStatus::OK();
  NameChange c{NameChange::kRename, t, s, std::nullopt};
  std::string old;
  if (rocksdb::ReadFileToString(target(), t, &old).ok()) c.replaced = std::move(old);
  auto st = target()->RenameFile(s, t, o, dbg);
  if (!st.ok()) return st;
  pending_.push_back(std::move(c));
  if (files_.count(s)) {
    files_[t] = files_[s];
    files_.erase(s);
  }
  return st;
}

rocksdb::IOStatus FaultFs::DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                                      rocksdb::IODebugContext* dbg) {
  std::lock_guard lock(mu_);
  if (off_) return rocksdb::IOStatus::OK();
  files_.erase(f);
  return target()->DeleteFile(f, o, dbg);
}

void FaultFs::ScheduleCut(int n, bool torn, uint64_t seed) {
  std::lock_guard lock(mu_);
  countdown_ = n;
  torn_ = torn;
  seed_ = seed;
}

void FaultFs::PowerCut(bool torn, uint64_t seed) {
  std::lock_guard lock(mu_);
  CutLocked(torn, seed);
}

bool FaultFs::off() const {
  std::lock_guard lock(mu_);
  return off_;
}

int FaultFs::operations() const {
  std::lock_guard lock(mu_);
  return operations_;
}

void FaultFs::SetNoSpace(bool v) {
  std::lock_guard lock(mu_);
  no_space_ = v;
}

void FaultFs::SetSyncError(bool v) {
  std::lock_guard lock(mu_);
  sync_error_ = v;
}

void FaultFs::NoteCreatedLocked(const std::string& path, NameChange::Kind kind) {
  pending_.push_back(NameChange{kind, path, "", std::nullopt});
}

bool FaultFs::TickLocked() {
  if (off_) return false;
  ++operations_;
  if (countdown_ > 0 && --countdown_ == 0) {
    CutLocked(torn_, seed_);
    return true;
  }
  return false;
}

void FaultFs::CutLocked(bool torn, uint64_t seed) {
  if (off_) return;
  off_ = true;
  torn_ = torn;
  seed_ = seed;
}

void FaultFs::Settle() {
  std::lock_guard lock(mu_);
  if (!off_ || settled_) return;
  settled_ = true;
  std::mt19937_64 rng(seed_);
  for (auto& [name, st] : files_) {
    uint64_t keep = st.synced;
    if (torn_ && st.written > st.synced) keep += rng() % (st.written - st.synced + 1);
    if (::truncate(name.c_str(), static_cast<off_t>(keep)) != 0) {
      // The file may be gone already; nothing to cut.
    }
  }
  // Undo the name changes no folder sync made durable, newest first.
  namespace fs = std::filesystem;
  std::error_code ec;
  for (auto it = pending_.rbegin(); it != pending_.rend(); ++it) {
    switch (it->kind) {
      case NameChange::kRename:
        fs::rename(it->path, it->from, ec);
        if (it->replaced) {
          rocksdb::WriteStringToFile(target(), *it->replaced, it->path, false)
              .PermitUncheckedError();
        }
        break;
      case NameChange::kCreateFile:
        fs::remove(it->path, ec);
        break;
      case NameChange::kCreateDir:
        fs::remove_all(it->path, ec);
        break;
    }
  }
  pending_.clear();
}

rocksdb::IOStatus FaultFs::OnAppend(const std::string& name, size_t bytes, bool* drop) {
  std::lock_guard lock(mu_);
  if (TickLocked() || off_) {
    *drop = true;
    return rocksdb::IOStatus::OK();
  }
  if (no_space_) return rocksdb::IOStatus::NoSpace("no space left on device (injected)");
  files_[name].written += bytes;
  return rocksdb::IOStatus::OK();
}

rocksdb::IOStatus FaultFs::OnSync(const std::string& name, bool* drop) {
  std::lock_guard lock(mu_);
  if (TickLocked() || off_) {
    *drop = true;
    return rocksdb::IOStatus::OK();
  }
  if (sync_error_) return rocksdb::IOStatus::IOError("fsync failed (injected EIO)");
  files_[name].synced = files_[name].written;
  return rocksdb::IOStatus::OK();
}

rocksdb::IOStatus FaultFs::OnDirSync(const std::string& dir, bool* drop) {
  std::lock_guard lock(mu_);
  if (TickLocked() || off_) {
    *drop = true;
    return rocksdb::IOStatus::OK();
  }
  if (sync_error_) return rocksdb::IOStatus::IOError("fsync of a folder failed (injected EIO)");
  std::erase_if(pending_, [&](const NameChange& c) { return DirOf(c.path) == dir; });
  return rocksdb::IOStatus::OK();
}

}  // namespace lockd::storage::testing
