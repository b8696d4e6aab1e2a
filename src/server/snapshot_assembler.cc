#include "server/snapshot_assembler.h"

#include "storage/crc32c.h"

namespace lockd::server {

Result<uint64_t> SnapshotAssembler::Begin(uint64_t from, const SnapshotTransferId& id) {
  if (id.total_bytes > max_bytes_) {
    return ResourceExhausted("a snapshot of " + std::to_string(id.total_bytes) +
                             " bytes is above this node's limit of " + std::to_string(max_bytes_) +
                             " (--max-snapshot-bytes)");
  }
  std::lock_guard lock(mu_);
  Partial& p = partials_[from];
  if (!(p.id == id)) {
    p = Partial{};
    p.id = id;
    // The whole payload arrives anyway: one allocation instead of a doubling series.
    p.data.reserve(id.total_bytes);
  }
  return static_cast<uint64_t>(p.data.size());
}

Result<bool> SnapshotAssembler::Add(uint64_t from, uint64_t offset, std::string_view data) {
  std::lock_guard lock(mu_);
  auto it = partials_.find(from);
  if (it == partials_.end())
    return FailedPrecondition("a snapshot chunk before its transfer began");
  Partial& p = it->second;
  if (offset != p.data.size()) {
    return InvalidArgument("a snapshot chunk at offset " + std::to_string(offset) + ", expected " +
                           std::to_string(p.data.size()));
  }
  if (data.size() > p.id.total_bytes - p.data.size()) {
    return InvalidArgument("a snapshot chunk past the payload's " +
                           std::to_string(p.id.total_bytes) + " bytes");
  }
  p.data.append(data);
  p.crc = storage::Crc32c(data, p.crc);
  if (p.data.size() < p.id.total_bytes) return false;
  if (p.crc != p.id.crc32c) {
    partials_.erase(it);
    return DataLoss("the snapshot payload fails its checksum; the transfer starts over");
  }
  return true;
}

std::string SnapshotAssembler::Take(uint64_t from) {
  std::lock_guard lock(mu_);
  auto it = partials_.find(from);
  if (it == partials_.end()) return {};
  std::string data = std::move(it->second.data);
  partials_.erase(it);
  return data;
}

uint64_t SnapshotAssembler::held(uint64_t from) const {
  std::lock_guard lock(mu_);
  auto it = partials_.find(from);
  return it == partials_.end() ? 0 : it->second.data.size();
}

}  // namespace lockd::server
