// lockd::Fence: the protected resource's side of fencing (design guarantee 2).
//
// A lock holder sends its fence (Lock::fence()) with every request it makes to the resource, reads
// included. The resource keeps the largest fence it has seen per lock name and refuses any request
// carrying a smaller one: such a request comes from a holder that was paused (GC, SIGSTOP, VM
// steal) past its lease while someone else took the lock. Equal fences pass: an exclusive holder
// makes many requests with its one fence, and concurrent SHARED holders share one fence. So for
// SHARED holders the fence separates runs, not holders: a reader paused past its lease is still
// admitted while the run of shared holders it belonged to goes on, and refused once an exclusive
// grant (or a new run) has shown the resource a larger fence.
//
// The check must be atomic with the resource's own change: check, apply and record under one
// lock or in one transaction, and persist the largest fences together with the data (Snapshot /
// Restore), or a restarted resource forgets them. docs/client.md shows the pattern.
//
// The client library's lost signal is advisory (a thread can pass the check and then pause); only
// this check, done by the resource, protects it.
//
// Thread-safety: every member may be called from many threads at once.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "lockd/status.h"

namespace lockd {

class Fence {
 public:
  /// Admits a request on `lock_name` carrying `fence` if it is at least the largest seen, and
  /// records it; otherwise FAILED_PRECONDITION naming both fences. Fence 0 is never valid (no
  /// grant has token 0) and is INVALID_ARGUMENT.
  client::Status Check(const std::string& lock_name, uint64_t fence);

  /// Runs `apply()` only if `fence` is admitted, with the admission and `apply` under one lock,
  /// so no request with a smaller fence can slip in between; returns the admission's Status.
  template <typename Apply>
  client::Status CheckAndApply(const std::string& lock_name, uint64_t fence, Apply&& apply) {
    std::lock_guard lock(mu_);
    client::Status s = CheckLocked(lock_name, fence);
    if (s.ok()) apply();
    return s;
  }

  /// The largest fence seen for `lock_name` (0 if none).
  uint64_t Largest(const std::string& lock_name) const;

  /// Every lock's largest fence, to persist with the resource's data.
  std::map<std::string, uint64_t> Snapshot() const;
  /// Raises the recorded fences to `fences` (never lowers one), e.g. after a restart.
  void Restore(const std::map<std::string, uint64_t>& fences);

 private:
  client::Status CheckLocked(const std::string& lock_name, uint64_t fence);

  mutable std::mutex mu_;  ///< guards largest_
  std::map<std::string, uint64_t> largest_;
};

}  // namespace lockd
