#include "storage/fs_util.h"

#include <rocksdb/file_system.h>

namespace lockd::storage {

std::string ParentDir(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

Status SyncDir(rocksdb::FileSystem* fs, const std::string& dir) {
  std::unique_ptr<rocksdb::FSDirectory> d;
  auto st = fs->NewDirectory(dir, {}, &d, nullptr);
  if (st.ok()) st = d->Fsync({}, nullptr);
  if (st.ok()) st = d->Close({}, nullptr);
  if (!st.ok()) return Internal("fsync of folder " + dir + ": " + st.ToString());
  return Status::Ok();
}

Status CreateDirDurably(rocksdb::FileSystem* fs, const std::string& dir) {
  if (fs->FileExists(dir, {}, nullptr).ok()) return Status::Ok();
  auto st = fs->CreateDirIfMissing(dir, {}, nullptr);
  if (!st.ok()) return Internal("cannot create folder " + dir + ": " + st.ToString());
  return SyncDir(fs, ParentDir(dir));
}

Status WriteFileDurably(rocksdb::FileSystem* fs, const std::string& path, const std::string& data) {
  std::unique_ptr<rocksdb::FSWritableFile> f;
  auto st = fs->NewWritableFile(path, {}, &f, nullptr);
  if (!st.ok()) return Internal("cannot create " + path + ": " + st.ToString());
  st = f->Append(data, {}, nullptr);
  if (st.ok()) st = f->Fsync({}, nullptr);
  // Close even after a failure; the failure, not the close, is what the caller reports.
  auto closed = f->Close({}, nullptr);
  if (!st.ok()) return Internal("writing " + path + ": " + st.ToString());
  if (!closed.ok()) return Internal("closing " + path + ": " + closed.ToString());
  return Status::Ok();
}

}  // namespace lockd::storage
