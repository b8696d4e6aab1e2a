#include "fault_fs.h"

#include <unistd.h>

namespace lockd::storage::testing {
namespace {

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

}  // namespace

rocksdb::IOStatus FaultFs::NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                           std::unique_ptr<rocksdb::FSWritableFile>* r,
                                           rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> base;
  auto s = target()->NewWritableFile(f, o, &base, dbg);
  if (!s.ok()) return s;
  {
    std::lock_guard lock(mu_);
    files_[f] = FileState{};
  }
  r->reset(new FaultFile(std::move(base), this, f));
  return s;
}

rocksdb::IOStatus FaultFs::ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                              std::unique_ptr<rocksdb::FSWritableFile>* r,
                                              rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSWritableFile> base;
  auto s = target()->ReopenWritableFile(f, o, &base, dbg);
  if (!s.ok()) return s;
  uint64_t size = 0;
  target()->GetFileSize(f, rocksdb::IOOptions(), &size, dbg).PermitUncheckedError();
  {
    std::lock_guard lock(mu_);
    files_[f] = FileState{size, size};
  }
  r->reset(new FaultFile(std::move(base), this, f));
  return s;
}

rocksdb::IOStatus FaultFs::RenameFile(const std::string& s, const std::string& t,
                                      const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) {
  std::lock_guard lock(mu_);
  if (off_) return rocksdb::IOStatus::OK();
  auto st = target()->RenameFile(s, t, o, dbg);
  if (st.ok() && files_.count(s)) {
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

void FaultFs::SetNoSpace(bool v) {
  std::lock_guard lock(mu_);
  no_space_ = v;
}

void FaultFs::Tick() {
  if (countdown_ > 0 && --countdown_ == 0) CutLocked(torn_, seed_);
}

void FaultFs::CutLocked(bool torn, uint64_t seed) {
  if (off_) return;
  off_ = true;
  std::mt19937_64 rng(seed);
  for (auto& [name, st] : files_) {
    uint64_t keep = st.synced;
    if (torn && st.written > st.synced) keep += rng() % (st.written - st.synced + 1);
    if (::truncate(name.c_str(), static_cast<off_t>(keep)) != 0) {
      // The file may be gone already; nothing to cut.
    }
  }
}

rocksdb::IOStatus FaultFs::OnAppend(const std::string& name, size_t bytes, bool* drop) {
  std::lock_guard lock(mu_);
  Tick();
  if (off_) {
    *drop = true;
    return rocksdb::IOStatus::OK();
  }
  if (no_space_) return rocksdb::IOStatus::NoSpace("no space left on device (injected)");
  files_[name].written += bytes;
  return rocksdb::IOStatus::OK();
}

rocksdb::IOStatus FaultFs::OnSync(const std::string& name, bool* drop) {
  std::lock_guard lock(mu_);
  Tick();
  if (off_) {
    *drop = true;
    return rocksdb::IOStatus::OK();
  }
  files_[name].synced = files_[name].written;
  return rocksdb::IOStatus::OK();
}

}  // namespace lockd::storage::testing
