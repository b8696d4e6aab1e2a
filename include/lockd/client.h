// The lockd C++ client library.
//
//   auto client = lockd::client::Client::Connect({.endpoints = {"10.0.0.1:7401",
//   "10.0.0.2:7401"}}); auto lease = (*client)->GrantLease(std::chrono::seconds(10),
//   "billing-worker-3"); auto grant = (*client)->Acquire("seat/42", **lease, {.wait =
//   std::chrono::seconds(5)}); if (grant.ok() && grant->acquired) {
//     storage.Write(seat, value, /*fence=*/grant->fence);   // the resource checks the fence
//     (*client)->Release(*grant);
//   }
//
// What it does for you (design brief, guarantee 5):
// - keeps every lease alive with a renewal every TTL/3 from one background thread;
// - treats a lease as lost at (send time of the last acknowledged renewal + TTL − margin), with
//   margin = 2ρ·TTL + a fixed floor, matching each answer to its own renewal by sequence number; a
//   lost lease never becomes valid again and fires its on_lost callbacks once;
// - discards (and releases) a grant that arrives after its lease was lost;
// - retries a mutating call after UNAVAILABLE or a broken connection with the same request id,
//   which the server answers exactly once, rotating through the endpoints until the call's
//   deadline;
// - treats every lease as lost when the cluster id in a response changes (a restored cluster).
//
// Lease::valid() is advisory: a thread can check it, then pause past the lease. Only the fence,
// checked by the resource, protects the resource.
//
// Thread-safety: Client and Lease are safe to use from many threads. Client owns one background
// thread for renewals; destroying the Client stops it (leases are not revoked: call Revoke()).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"

namespace lockd::client {

struct ClientOptions {
  std::vector<std::string> endpoints = {"127.0.0.1:7401"};
  /// Deadline of one call (an Acquire adds its wait to it).
  std::chrono::milliseconds call_timeout{5000};
  /// ρ, the assumed bound on clock-drift rate between client and servers.
  double drift = 0.01;
  /// The fixed part of the safety margin, for scheduling delays between a check and its use.
  std::chrono::milliseconds margin_floor{100};
  /// Renew every ttl / renew_divisor.
  int renew_divisor = 3;
  /// The clock durations are measured on; CLOCK_BOOTTIME unless a test substitutes one.
  const Clock* clock = nullptr;
};

enum class Mode { kExclusive, kShared };

class Client;

/// A lease this process holds. Created by Client::GrantLease (or an Acquire with a TTL); shared
/// between the Client's renewal thread and the caller, hence shared_ptr.
class Lease {
 public:
  uint64_t id() const { return id_; }
  std::chrono::milliseconds ttl() const { return ttl_; }
  /// True until the lease is lost; once false, never true again.
  bool valid() const;
  /// When the lease will be treated as lost unless a renewal is acknowledged first.
  BootTime valid_until() const;
  /// Why it was lost ("" while valid).
  std::string lost_reason() const;
  /// Runs `f(reason)` once when the lease is lost (at once if it already is), on the Client's
  /// renewal thread or the caller's.
  void OnLost(std::function<void(const std::string&)> f);

  struct State;  ///< shared with the renewal thread
  explicit Lease(std::shared_ptr<State> state);

 private:
  friend class Client;
  uint64_t id_ = 0;
  std::chrono::milliseconds ttl_{0};
  std::shared_ptr<State> state_;
};

struct AcquireOptions {
  Mode mode = Mode::kExclusive;
  /// 0: try once. Otherwise wait in the lock's FIFO queue up to this long.
  std::chrono::milliseconds wait{0};
};

/// The answer to an Acquire. Not acquiring is a normal answer, not an error.
struct LockGrant {
  bool acquired = false;
  std::string name;
  uint64_t lease_id = 0;
  uint64_t token = 0;
  uint64_t fence = 0;  ///< present this to the resource
  Mode mode = Mode::kExclusive;
  std::vector<uint64_t> holder_leases;  ///< when not acquired: who holds it
};

class Client {
 public:
  static Result<std::unique_ptr<Client>> Connect(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Result<std::shared_ptr<Lease>> GrantLease(std::chrono::milliseconds ttl,
                                            const std::string& label);
  Status Revoke(Lease& lease);
  Result<LockGrant> Acquire(const std::string& name, Lease& lease, AcquireOptions options = {});
  Status Release(const LockGrant& grant);

  /// The cluster id seen in responses ("" before the first).
  std::string cluster_id() const;

  class Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// margin = 2ρ·TTL + floor: how much earlier than the server could expire it a lease is given up.
std::chrono::nanoseconds SafetyMargin(std::chrono::milliseconds ttl, double drift,
                                      std::chrono::milliseconds floor);

}  // namespace lockd::client
