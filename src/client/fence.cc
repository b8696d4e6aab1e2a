#include "lockd/fence.h"

namespace lockd {

using client::Status;
using client::StatusCode;

Status Fence::Check(const std::string& lock_name, uint64_t fence) {
  std::lock_guard lock(mu_);
  return CheckLocked(lock_name, fence);
}

Status Fence::CheckLocked(const std::string& lock_name, uint64_t fence) {
  if (fence == 0) {
    return Status(StatusCode::kInvalidArgument,
                  "fence 0 on lock '" + lock_name + "': no grant has fence 0");
  }
  uint64_t& largest = largest_[lock_name];
  if (fence < largest) {
    return Status(StatusCode::kFailedPrecondition,
                  "stale fence " + std::to_string(fence) + " on lock '" + lock_name +
                      "': a holder with fence " + std::to_string(largest) + " came since");
  }
  largest = fence;
  return Status::Ok();
}

uint64_t Fence::Largest(const std::string& lock_name) const {
  std::lock_guard lock(mu_);
  auto it = largest_.find(lock_name);
  return it == largest_.end() ? 0 : it->second;
}

std::map<std::string, uint64_t> Fence::Snapshot() const {
  std::lock_guard lock(mu_);
  return largest_;
}

void Fence::Restore(const std::map<std::string, uint64_t>& fences) {
  std::lock_guard lock(mu_);
  for (const auto& [name, f] : fences) {
    uint64_t& largest = largest_[name];
    if (f > largest) largest = f;
  }
}

}  // namespace lockd
