// SnapshotAssembler: the receiving half of a snapshot transfer (peer.proto, InstallSnapshot).
//
// A transfer is named by its sender, the snapshot it carries (index and term), the payload's size
// and its CRC-32C. The assembler keeps at most one partial payload per sender, so memory is
// bounded by (members × max_bytes) and in practice by one snapshot: a transfer interrupted by a
// broken stream resumes where it stopped when the same sender starts the same transfer again,
// while a different transfer from that sender discards the partial one. Chunks must arrive in
// order; the checksum is kept running and checked when the last byte arrives, and a payload that
// fails it is discarded whole (the sender starts over).
//
// Thread-safe: every inbound stream runs on its own gRPC thread.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "base/status.h"

namespace lockd::server {

struct SnapshotTransferId {
  uint64_t index = 0;
  uint64_t term = 0;
  uint64_t total_bytes = 0;
  uint32_t crc32c = 0;
  bool operator==(const SnapshotTransferId&) const = default;
};

class SnapshotAssembler {
 public:
  explicit SnapshotAssembler(uint64_t max_bytes) : max_bytes_(max_bytes) {}

  /// Starts (or resumes) `id` from `from`. Returns how many bytes of it are already held;
  /// RESOURCE_EXHAUSTED for a payload above max_bytes.
  Result<uint64_t> Begin(uint64_t from, const SnapshotTransferId& id);
  /// Adds the chunk at `offset` of the transfer `from` began. Returns true once the payload is
  /// whole and its checksum holds. An offset other than the bytes held, a chunk beyond the total,
  /// or a checksum that fails is an error (the last also discards the partial payload).
  Result<bool> Add(uint64_t from, uint64_t offset, std::string_view data);
  /// The whole payload of `from`'s finished transfer; the assembler forgets it.
  std::string Take(uint64_t from);
  /// Bytes held for `from` (0 when nothing): for tests and metrics.
  uint64_t held(uint64_t from) const;

 private:
  struct Partial {
    SnapshotTransferId id;
    std::string data;
    uint32_t crc = 0;  ///< running CRC-32C of `data`
  };

  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  std::map<uint64_t, Partial> partials_;
};

}  // namespace lockd::server
