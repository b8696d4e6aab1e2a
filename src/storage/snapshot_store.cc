#include "storage/snapshot_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/codec.h"
#include "storage/crc32c.h"
#include "storage/records.h"

namespace lockd::storage {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[] = "LOCKDSNP";

std::string FileName(const raft::SnapshotMeta& m) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "snap-%016llx-%016llx.snap",
                static_cast<unsigned long long>(m.index.value()),
                static_cast<unsigned long long>(m.term.value()));
  return buf;
}

Status Errno(const std::string& what, const std::string& path) {
  return DataLoss(what + " " + path + ": " + std::strerror(errno));
}

/// Writes all of `data` to `fd`, then fsyncs it.
Status WriteAllAndSync(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("cannot write", path);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return Errno("cannot fsync", path);
  return Status::Ok();
}

Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", dir);
  const int r = ::fsync(fd);
  ::close(fd);
  return r == 0 ? Status::Ok() : Errno("cannot fsync", dir);
}

std::vector<std::string> SnapshotFiles(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("snap-") && name.ends_with(".snap")) out.push_back(name);
  }
  std::sort(out.begin(), out.end());  // hex, fixed width: name order is index order
  return out;
}

}  // namespace

Status SnapshotStore::Save(const raft::SnapshotMeta& meta, const std::string& payload) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return DataLoss("cannot create " + dir_ + ": " + ec.message());
  Writer w;
  for (size_t i = 0; i < 8; ++i) w.U8(static_cast<uint8_t>(kMagic[i]));
  w.Fixed64(kSnapshotFileVersion);
  w.Bytes(EncodeSnapshotMeta(meta));
  w.Bytes(payload);
  std::string data = w.Take();
  const uint32_t crc = Crc32c(data);
  for (int i = 0; i < 4; ++i) data.push_back(static_cast<char>(crc >> (8 * i)));

  const std::string final_path = dir_ + "/" + FileName(meta);
  const std::string tmp = final_path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", tmp);
  Status s = WriteAllAndSync(fd, data, tmp);
  ::close(fd);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) return Errno("cannot rename", tmp);
  if (Status d = SyncDir(dir_); !d.ok()) return d;
  // Only now is the new snapshot durable: the older ones may go.
  for (const auto& name : SnapshotFiles(dir_)) {
    if (name < FileName(meta)) ::unlink((dir_ + "/" + name).c_str());
  }
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    if (e.path().extension() == ".tmp") fs::remove(e.path(), ec);
  }
  return Status::Ok();
}

Result<StoredSnapshot> SnapshotStore::ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return DataLoss("cannot read snapshot " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  if (data.size() < 8 + 8 + 4 || data.compare(0, 8, kMagic, 8) != 0) {
    return DataLoss("snapshot " + path + " is not a lockd snapshot (or is truncated)");
  }
  const std::string_view body(data.data(), data.size() - 4);
  uint32_t crc = 0;
  for (int i = 0; i < 4; ++i)
    crc |= uint32_t{static_cast<uint8_t>(data[data.size() - 4 + i])} << (8 * i);
  Reader r(body.substr(8));
  uint64_t version = 0;
  if (!r.Fixed64(&version)) return DataLoss("snapshot " + path + " is truncated");
  if (version > kSnapshotFileVersion) {
    return FailedPrecondition("snapshot " + path + " has format version " +
                              std::to_string(version) + ", newer than this build's " +
                              std::to_string(kSnapshotFileVersion));
  }
  if (Crc32c(body) != crc) return DataLoss("snapshot " + path + " fails its checksum");
  std::string meta_bytes;
  StoredSnapshot s;
  s.path = path;
  if (!r.Bytes(&meta_bytes) || !r.Bytes(&s.payload) || !r.done()) {
    return DataLoss("snapshot " + path + " is malformed");
  }
  auto meta = DecodeSnapshotMeta(meta_bytes);
  if (!meta.ok())
    return Status(meta.status().code(), "snapshot " + path + ": " + meta.status().message());
  s.meta = *meta;
  return s;
}

Result<std::optional<StoredSnapshot>> SnapshotStore::LoadLatest() const {
  const auto files = SnapshotFiles(dir_);
  if (files.empty()) return std::optional<StoredSnapshot>();
  auto s = ReadFile(dir_ + "/" + files.back());
  if (!s.ok()) return s.status();
  return std::optional<StoredSnapshot>(std::move(s).value());
}

}  // namespace lockd::storage
