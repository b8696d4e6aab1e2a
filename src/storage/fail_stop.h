// FailStop: the latch that stops a store for good after its first failed write or sync.
//
// Why a latch and not a retry: when fsync fails, Linux may already have dropped the dirty pages
// and marked them clean, so a second fsync reports success for data that never reached the disk
// (PostgreSQL's "fsyncgate", 2018). The only safe reaction is to stop: the failing call returns
// the error, every later write returns the same error without touching the disk, nothing more is
// acknowledged, and the owner's handler runs once (the daemon's logs the error and exits; the
// node recovers from what is durable when it restarts). A full disk (ENOSPC) is such a failure.
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include "base/status.h"

namespace lockd::storage {

/// Called once, with the error, when a store trips. The node runtime's handler must make the
/// process exit (after logging): a store that tripped never acknowledges again, so a node that
/// kept running would serve without being able to persist.
using FatalHandler = std::function<void(const Status&)>;

/// Owned by each store (RaftStore, SnapshotStore), or by NodeStorage and shared by both.
/// Thread-safe.
class FailStop {
 public:
  explicit FailStop(FatalHandler on_fatal = nullptr) : on_fatal_(std::move(on_fatal)) {}

  /// OK while healthy; the fatal error once tripped.
  Status Check() const;
  /// Records the first failure (`what` failed because of `cause`), logs it, runs the handler once,
  /// and returns the fatal error. Later calls return the first error unchanged.
  Status Trip(const std::string& what, const std::string& cause);
  bool failed() const;

 private:
  mutable std::mutex mu_;  ///< guards error_ (the handler runs outside it)
  Status error_;
  FatalHandler on_fatal_;
};

}  // namespace lockd::storage
