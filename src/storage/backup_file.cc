#include "storage/backup_file.h"

#include <openssl/sha.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/codec.h"
#include "storage/crc32c.h"
#include "storage/fs_util.h"

namespace lockd::storage {

namespace {

/// A header longer than this is damage, not a header (the real one is well under 200 bytes).
constexpr uint32_t kMaxHeaderBytes = 4096;
/// magic, version, header length.
constexpr size_t kPrefixBytes = 8 + 4 + 4;

constexpr std::string_view kSeedMagic = "LOCKDSEED";
constexpr uint8_t kSeedVersion = 1;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t GetU32(std::string_view in, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(in[at + i])} << (8 * i);
  return v;
}
uint64_t GetU64(std::string_view in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(in[at + i])} << (8 * i);
  return v;
}

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 0xf]);
  }
  return out;
}

Status Truncated(size_t size, uint64_t expected) {
  return DataLoss("the backup is truncated at byte " + std::to_string(size) + " (it should have " +
                  std::to_string(expected) + " bytes)");
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return Hex(digest, sizeof digest);
}

std::string BackupDigestHex(std::string_view file) {
  if (file.size() < kBackupDigestBytes) return "";
  return Hex(reinterpret_cast<const unsigned char*>(file.data() + file.size() - kBackupDigestBytes),
             kBackupDigestBytes);
}

std::string EncodeBackup(const Backup& backup) {
  const BackupHeader& h = backup.header;
  Writer w;
  w.Varint(h.index);
  w.Varint(h.term);
  w.Bytes(h.cluster_id);
  w.Varint(h.node_id);
  w.Varint(h.token_counter);
  w.Varint(h.lease_counter);
  w.Varint(static_cast<uint64_t>(h.taken_unix_seconds));
  const std::string header = w.Take();

  std::string out(kBackupMagic);
  PutU32(out, kBackupFormatVersion);
  PutU32(out, static_cast<uint32_t>(header.size()));
  out += header;
  PutU64(out, backup.state.size());
  PutU32(out, Crc32c(out));
  out += backup.state;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(out.data()), out.size(), digest);
  out.append(reinterpret_cast<const char*>(digest), sizeof digest);
  return out;
}

Result<Backup> DecodeBackup(std::string_view file) {
  const size_t size = file.size();
  // The magic first: a file that is not a backup at all is named as such, whatever its size.
  const size_t magic_seen = std::min(size, kBackupMagic.size());
  if (size == 0 || file.substr(0, magic_seen) != kBackupMagic.substr(0, magic_seen)) {
    return InvalidArgument("not a lockd backup (it does not start with \"LOCKDBAK\")");
  }
  if (size < kPrefixBytes) return Truncated(size, kPrefixBytes);
  const uint32_t version = GetU32(file, 8);
  const uint32_t header_len = GetU32(file, 12);
  if (version != kBackupFormatVersion) {
    // A version this lockd does not read, or a damaged version field: a header whose checksum
    // holds (in this version's layout) is named by its version, anything else as damage.
    const size_t at = kPrefixBytes + size_t{header_len} + 8;
    if (header_len <= kMaxHeaderBytes && size >= at + 4 &&
        Crc32c(file.substr(0, at)) != GetU32(file, at)) {
      return DataLoss(
          "the backup is damaged: checksum mismatch in its header (its version field "
          "reads " +
          std::to_string(version) + ")");
    }
    return FailedPrecondition("unknown backup format version " + std::to_string(version) +
                              " (this lockd reads version " + std::to_string(kBackupFormatVersion) +
                              ")");
  }
  if (header_len > kMaxHeaderBytes) {
    return DataLoss("the backup is damaged: its header length (" + std::to_string(header_len) +
                    " bytes) is impossible");
  }
  const size_t crc_at = kPrefixBytes + header_len + 8;
  const size_t state_at = crc_at + 4;
  if (size < state_at) return Truncated(size, state_at + kBackupDigestBytes);
  if (Crc32c(file.substr(0, crc_at)) != GetU32(file, crc_at)) {
    return DataLoss("the backup is damaged: checksum mismatch in its header");
  }
  const uint64_t state_len = GetU64(file, kPrefixBytes + header_len);
  if (state_len > (uint64_t{1} << 40)) {
    return DataLoss("the backup is damaged: its state length is impossible");
  }
  const uint64_t total = state_at + state_len + kBackupDigestBytes;
  if (size < total) return Truncated(size, total);
  if (size > total) {
    return DataLoss("the backup has " + std::to_string(size - total) +
                    " trailing bytes after its checksum (" + std::to_string(total) +
                    " expected): not a whole backup file");
  }
  const std::string_view body = file.substr(0, size - kBackupDigestBytes);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest);
  if (file.substr(size - kBackupDigestBytes) !=
      std::string_view(reinterpret_cast<const char*>(digest), sizeof digest)) {
    return DataLoss("the backup is damaged: checksum mismatch (SHA-256 of its " +
                    std::to_string(body.size()) + " bytes is " + Hex(digest, sizeof digest) +
                    ", the file says " + BackupDigestHex(file) + ")");
  }

  Backup b;
  Reader r(file.substr(kPrefixBytes, header_len));
  uint64_t taken = 0;
  if (!r.Varint(&b.header.index) || !r.Varint(&b.header.term) || !r.Bytes(&b.header.cluster_id) ||
      !r.Varint(&b.header.node_id) || !r.Varint(&b.header.token_counter) ||
      !r.Varint(&b.header.lease_counter) || !r.Varint(&taken) || !r.done()) {
    return DataLoss(
        "the backup's header is malformed (its checksums match: written by a broken "
        "lockd?)");
  }
  b.header.taken_unix_seconds = static_cast<int64_t>(taken);
  b.state.assign(file.substr(state_at, state_len));
  return b;
}

Result<Backup> ReadBackupFile(const std::string& path) {
  std::string data;
  auto st = rocksdb::ReadFileToString(rocksdb::Env::Default(), path, &data);
  if (!st.ok()) return NotFound("cannot read backup file " + path + ": " + st.ToString());
  auto b = DecodeBackup(data);
  if (!b.ok()) return Status(b.status().code(), path + ": " + b.status().message());
  return b;
}

// --- restore seed ------------------------------------------------------------------------------

std::string EncodeRestoreSeed(const RestoreSeed& seed) {
  Writer w;
  w.U8(kSeedVersion);
  w.Varint(seed.token_floor);
  w.Varint(static_cast<uint64_t>(seed.restored_unix_seconds));
  w.Bytes(seed.backup);
  std::string out(kSeedMagic);
  out += w.Take();
  PutU32(out, Crc32c(out));
  return out;
}

Result<RestoreSeed> DecodeRestoreSeed(std::string_view data) {
  if (data.size() < kSeedMagic.size() + 4 || !data.starts_with(kSeedMagic)) {
    return DataLoss("not a restore seed (no LOCKDSEED magic)");
  }
  const std::string_view body = data.substr(0, data.size() - 4);
  if (Crc32c(body) != GetU32(data, data.size() - 4)) {
    return DataLoss("the restore seed is damaged: checksum mismatch");
  }
  Reader r(body.substr(kSeedMagic.size()));
  uint8_t version = 0;
  uint64_t restored = 0;
  RestoreSeed seed;
  if (!r.U8(&version)) return DataLoss("the restore seed is empty");
  if (version != kSeedVersion) {
    return FailedPrecondition("unknown restore seed version " + std::to_string(version));
  }
  if (!r.Varint(&seed.token_floor) || !r.Varint(&restored) || !r.Bytes(&seed.backup) || !r.done()) {
    return DataLoss("the restore seed is malformed");
  }
  seed.restored_unix_seconds = static_cast<int64_t>(restored);
  if (auto b = DecodeBackup(seed.backup); !b.ok()) {
    return Status(b.status().code(), "the restore seed's backup: " + b.status().message());
  }
  return seed;
}

Status WriteRestoreSeed(const std::string& dir, const RestoreSeed& seed) {
  auto* fs = rocksdb::FileSystem::Default().get();
  const std::string path = dir + "/" + kRestoreSeedFile;
  const std::string tmp = path + ".tmp";
  if (Status s = WriteFileDurably(fs, tmp, EncodeRestoreSeed(seed)); !s.ok()) return s;
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Internal("cannot rename " + tmp + " to " + path);
  }
  return SyncDir(fs, dir);
}

Status RemoveRestoreSeed(const std::string& dir) {
  const std::string path = dir + "/" + kRestoreSeedFile;
  if (std::remove(path.c_str()) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Internal("cannot remove " + path + ": " + std::strerror(errno));
  }
  return SyncDir(rocksdb::FileSystem::Default().get(), dir);
}

Result<std::optional<RestoreSeed>> LoadRestoreSeed(const std::string& dir) {
  const std::string path = dir + "/" + kRestoreSeedFile;
  auto* env = rocksdb::Env::Default();
  if (!env->FileExists(path).ok()) return std::optional<RestoreSeed>();
  std::string data;
  auto st = rocksdb::ReadFileToString(env, path, &data);
  if (!st.ok()) return Internal("cannot read " + path + ": " + st.ToString());
  auto seed = DecodeRestoreSeed(data);
  if (!seed.ok()) return Status(seed.status().code(), path + ": " + seed.status().message());
  return std::optional<RestoreSeed>(std::move(seed).value());
}

}  // namespace lockd::storage
