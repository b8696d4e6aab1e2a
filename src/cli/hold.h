// Getting a lock to hold for `lockctl acquire` and `lockctl run`: through the client library,
// which renews the lease and reports the lock lost (design guarantee 5).
#pragma once

#include <memory>

#include "cli/commands.h"
#include "lockd/client.h"

namespace lockd::cli {

/// A lock held for the rest of a command. Members are destroyed lock first, client last.
struct HeldLock {
  std::unique_ptr<client::Client> client;
  std::shared_ptr<client::Lease> lease;
  client::Lock lock;
};

/// Grants a lease and acquires `a.name` for it. SIGINT or SIGTERM (which the caller must have
/// blocked in every thread) while the Acquire waits gives up the wait. Returns kExitOk with
/// `out` filled, or the exit code (printed why): kExitNotFound when not acquired (the lease is
/// revoked), 128 + the signal when interrupted, the mapped code of an error.
int AcquireToHold(const CommandContext& c, const AcquireArgs& a, HeldLock& out);

/// The label of a lease lockctl grants: `a.label`, else "lockctl@host:pid".
std::string LeaseLabel(const AcquireArgs& a);

}  // namespace lockd::cli
