#include "storage/data_dir.h"

#include <fcntl.h>
#include <rocksdb/file_system.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "storage/fs_util.h"

namespace lockd::storage {
namespace {

std::string ErrnoText(int err) {
  return std::strerror(err);
}

std::string ReadOwner(const std::string& lock_path) {
  std::ifstream in(lock_path);
  std::string pid;
  std::getline(in, pid);
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

DataDir::DataDir(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}

Result<std::unique_ptr<DataDir>> DataDir::Open(const std::string& path) {
  std::error_code ec;
  const bool existed = std::filesystem::is_directory(path, ec);
  std::filesystem::create_directories(path, ec);
  if (ec) return Internal("cannot create data dir " + path + ": " + ec.message());

  const std::string lock_path = path + "/LOCK.lockd";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Internal("cannot open " + lock_path + ": " + ErrnoText(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return FailedPrecondition("data dir " + path + " is in use by another process (pid " +
                                ReadOwner(lock_path) + ")");
    }
    return Internal("cannot lock " + lock_path + ": " + ErrnoText(err));
  }
  // Record the owner for the error message above; the lock itself is the flock, not the content.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    const int err = errno;
    ::close(fd);
    return Internal("cannot write " + lock_path + ": " + ErrnoText(err));
  }

  std::unique_ptr<DataDir> dir(new DataDir(path, fd));
  // The folders must survive a power cut as surely as the files in them: a snapshot whose folder
  // entry was never synced can vanish while the log it let us compact stays compacted.
  rocksdb::FileSystem* fs = rocksdb::FileSystem::Default().get();
  if (!existed) {
    if (Status s = SyncDir(fs, ParentDir(path)); !s.ok()) return s;
  }
  for (const std::string& sub : {dir->raft_dir(), dir->snapshot_dir()}) {
    if (Status s = CreateDirDurably(fs, sub); !s.ok()) return s;
  }
  return dir;
}

DataDir::~DataDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

}  // namespace lockd::storage
