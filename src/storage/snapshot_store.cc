#include "storage/snapshot_store.h"

#include <rocksdb/file_system.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "base/codec.h"
#include "storage/crc32c.h"
#include "storage/fs_util.h"
#include "storage/records.h"

namespace lockd::storage {
namespace {

constexpr char kMagic[] = "LOCKDSNP";
constexpr size_t kMagicBytes = 8;

bool ParseName(const std::string& name, uint64_t* index, uint64_t* term) {
  unsigned long long i = 0, t = 0;
  int used = 0;
  if (name.size() != 43 ||
      std::sscanf(name.c_str(), "snap-%16llx-%16llx.snap%n", &i, &t, &used) != 2 || used != 43) {
    return false;
  }
  *index = i;
  *term = t;
  return true;
}

/// Complete snapshot files (final names only), oldest first.
std::vector<std::string> SnapshotFiles(rocksdb::FileSystem* fs, const std::string& dir) {
  std::vector<std::string> children, out;
  fs->GetChildren(dir, {}, &children, nullptr).PermitUncheckedError();
  uint64_t i = 0, t = 0;
  for (auto& name : children) {
    if (ParseName(name, &i, &t)) out.push_back(std::move(name));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Encode(const raft::SnapshotMeta& meta, const std::string& payload) {
  Writer w;
  for (size_t i = 0; i < kMagicBytes; ++i) w.U8(static_cast<uint8_t>(kMagic[i]));
  w.Fixed64(kSnapshotFileVersion);
  w.Bytes(EncodeSnapshotMeta(meta));
  w.Bytes(payload);
  std::string data = w.Take();
  const uint32_t crc = Crc32c(data);
  for (int i = 0; i < 4; ++i) data.push_back(static_cast<char>(crc >> (8 * i)));
  return data;
}

}  // namespace

SnapshotStore::SnapshotStore(std::string dir, SnapshotStoreOptions options)
    : dir_(std::move(dir)),
      options_(std::move(options)),
      fs_(options_.fs ? options_.fs : rocksdb::FileSystem::Default().get()),
      own_fail_stop_(options_.on_fatal),
      fail_stop_(options_.shared_fail_stop ? options_.shared_fail_stop : &own_fail_stop_) {}

std::string SnapshotStore::FileName(const raft::SnapshotMeta& m) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "snap-%016llx-%016llx.snap",
                static_cast<unsigned long long>(m.index.value()),
                static_cast<unsigned long long>(m.term.value()));
  return buf;
}

Status SnapshotStore::Save(const raft::SnapshotMeta& meta, const std::string& payload) {
  if (Status s = fail_stop_->Check(); !s.ok()) return s;
  if (Status s = SaveFile(meta, payload); !s.ok()) {
    return fail_stop_->Trip("saving snapshot " + dir_ + "/" + FileName(meta), s.message());
  }
  // Only now is the new snapshot durable: the older ones (and leftovers) may go. A failed removal
  // loses nothing, so it is a warning, not a fail-stop.
  const std::string keep = FileName(meta);
  std::vector<std::string> children;
  fs_->GetChildren(dir_, {}, &children, nullptr).PermitUncheckedError();
  uint64_t i = 0, t = 0;
  for (const auto& name : children) {
    const bool older = ParseName(name, &i, &t) && name < keep;
    const bool leftover = name.ends_with(".tmp");
    if (!older && !leftover) continue;
    auto st = fs_->DeleteFile(dir_ + "/" + name, {}, nullptr);
    if (!st.ok()) spdlog::warn("cannot remove old snapshot {}/{}: {}", dir_, name, st.ToString());
  }
  return Status::Ok();
}

Status SnapshotStore::SaveFile(const raft::SnapshotMeta& meta, const std::string& payload) {
  if (Status s = CreateDirDurably(fs_, dir_); !s.ok()) return s;
  const std::string final_path = dir_ + "/" + FileName(meta);
  const std::string tmp = final_path + ".tmp";
  if (Status s = WriteFileDurably(fs_, tmp, Encode(meta, payload)); !s.ok()) return s;
  auto st = fs_->RenameFile(tmp, final_path, {}, nullptr);
  if (!st.ok()) return Internal("rename " + tmp + ": " + st.ToString());
  if (options_.skip_dir_sync_for_testing) return Status::Ok();
  return SyncDir(fs_, dir_);
}

Result<StoredSnapshot> SnapshotStore::ReadFile(const std::string& path) const {
  std::string data;
  auto st = rocksdb::ReadFileToString(fs_, path, &data);
  if (!st.ok()) return DataLoss("cannot read snapshot " + path + ": " + st.ToString());
  if (data.size() < kMagicBytes + 8 + 4 || data.compare(0, kMagicBytes, kMagic) != 0) {
    return DataLoss("snapshot " + path + " is not a lockd snapshot (or is truncated)");
  }
  const std::string_view body(data.data(), data.size() - 4);
  Reader r(body.substr(kMagicBytes));
  uint64_t version = 0;
  if (!r.Fixed64(&version)) return DataLoss("snapshot " + path + " is truncated");
  // The version is checked before the checksum: a newer format may place its checksum elsewhere.
  if (version > kSnapshotFileVersion) {
    return FailedPrecondition("snapshot " + path + " has format version " +
                              std::to_string(version) + ", newer than this build's " +
                              std::to_string(kSnapshotFileVersion) + "; upgrade lockd");
  }
  uint32_t crc = 0;
  for (int i = 0; i < 4; ++i) {
    crc |= uint32_t{static_cast<uint8_t>(data[data.size() - 4 + i])} << (8 * i);
  }
  if (version == 0 || Crc32c(body) != crc) {
    return DataLoss("snapshot " + path + " fails its checksum (damaged or truncated)");
  }
  std::string meta_bytes;
  StoredSnapshot s;
  s.path = path;
  s.file_bytes = data.size();
  if (!r.Bytes(&meta_bytes) || !r.Bytes(&s.payload) || !r.done()) {
    return DataLoss("snapshot " + path + " is malformed");
  }
  auto meta = DecodeSnapshotMeta(meta_bytes);
  if (!meta.ok()) {
    return Status(meta.status().code(), "snapshot " + path + ": " + meta.status().message());
  }
  s.meta = *meta;
  const std::string name = path.substr(path.rfind('/') + 1);
  uint64_t index = 0, term = 0;
  if (ParseName(name, &index, &term) &&
      (index != s.meta.index.value() || term != s.meta.term.value())) {
    return DataLoss("snapshot " + path + " holds index " + std::to_string(s.meta.index.value()) +
                    " term " + std::to_string(s.meta.term.value()) + ", not what its name says");
  }
  return s;
}

Result<std::optional<StoredSnapshot>> SnapshotStore::LoadLatest() const {
  const auto files = SnapshotFiles(fs_, dir_);
  if (files.empty()) return std::optional<StoredSnapshot>();
  auto s = ReadFile(dir_ + "/" + files.back());
  if (!s.ok()) return s.status();
  return std::optional<StoredSnapshot>(std::move(s).value());
}

}  // namespace lockd::storage
