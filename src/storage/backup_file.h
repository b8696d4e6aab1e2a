// Backup files: a consistent copy of one node's lock state, streamed by ClusterService.Backup and
// read by `lockd restore` (docs/operations.md, "Backup and restore"; docs/storage.md).
//
// Layout, all integers little-endian:
//   magic "LOCKDBAK" | format version (u32) | header length (u32) | header | state length (u64)
//   | CRC-32C of everything before it (u32) | state | SHA-256 of everything before it (32 bytes)
// The header (varints and length-prefixed bytes) says what the backup covers: Raft index and
// term, cluster id, the node that took it, the token and lease-id counters, and the node's wall
// clock when it took it (restore's 2^32-per-second rule). The state is the lock state machine's
// own snapshot encoding, opaque here. The CRC lets a damaged length be named as damage rather
// than as a truncation; the SHA-256 covers the whole file and is what `lockctl backup` prints.
//
// Decoding checks everything before anything is used, and each refusal names the problem: not a
// lockd backup, unknown format version, truncated at byte N, trailing bytes, checksum mismatch.
//
// A restore seed (`<data dir>/restore-seed`) is what `lockd restore` leaves for the node's first
// start: the verified backup and the operator's --token-floor, CRC-protected. The first leader of
// the new cluster turns it into the new cluster's starting state (server/restore_seed.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace lockd::storage {

inline constexpr uint32_t kBackupFormatVersion = 1;
inline constexpr std::string_view kBackupMagic = "LOCKDBAK";
/// SHA-256 trailer size.
inline constexpr size_t kBackupDigestBytes = 32;
/// The Backup RPC streams a file in chunks of this size (the last one shorter).
inline constexpr size_t kBackupChunkBytes = 64 * 1024;

/// What a backup covers.
struct BackupHeader {
  uint64_t index = 0;  ///< the Raft index of the last entry the state includes
  uint64_t term = 0;   ///< that entry's term
  std::string cluster_id;
  uint64_t node_id = 0;  ///< the node that took it
  uint64_t token_counter = 0;
  uint64_t lease_counter = 0;
  int64_t taken_unix_seconds = 0;  ///< the node's wall clock when it took the snapshot

  bool operator==(const BackupHeader&) const = default;
};

struct Backup {
  BackupHeader header;
  std::string state;  ///< the lock state machine's snapshot encoding
};

/// The whole file.
std::string EncodeBackup(const Backup& backup);
/// Verifies and decodes a whole file; the error names the first problem found.
Result<Backup> DecodeBackup(std::string_view file);
/// Reads and decodes `path`.
Result<Backup> ReadBackupFile(const std::string& path);

/// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
/// The hex of a backup file's SHA-256 trailer (the file must be at least the trailer's size).
std::string BackupDigestHex(std::string_view file);

/// What `lockd restore` leaves in a new data dir for the node's first start.
struct RestoreSeed {
  uint64_t token_floor = 0;           ///< --token-floor
  int64_t restored_unix_seconds = 0;  ///< when `lockd restore` ran
  std::string backup;                 ///< the verified backup file, whole
};

inline constexpr const char* kRestoreSeedFile = "restore-seed";

std::string EncodeRestoreSeed(const RestoreSeed& seed);
Result<RestoreSeed> DecodeRestoreSeed(std::string_view data);
/// Writes `<dir>/restore-seed` durably (temporary name, fsync, rename, fsync of `dir`).
Status WriteRestoreSeed(const std::string& dir, const RestoreSeed& seed);
/// The seed in `dir`, nullopt when there is none, or an error naming the damage.
Result<std::optional<RestoreSeed>> LoadRestoreSeed(const std::string& dir);
/// Removes `<dir>/restore-seed` durably (OK when there is none): once the cluster id is decided
/// the log carries the restored start, and the seed (a whole copy of the old state) is dead weight.
Status RemoveRestoreSeed(const std::string& dir);

}  // namespace lockd::storage
