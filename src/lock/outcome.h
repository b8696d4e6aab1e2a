// What applying a command produces: the answer to its own caller, the answers it completes for
// earlier callers (waits granted or ended in the same apply), the events for Watch, and what the
// runtime must now track (new leases, started waits).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "lock/types.h"

namespace lockd::lock {

/// A grant as inspection and answers show it.
struct HolderView {
  LeaseId lease;
  std::string label;
  Mode mode = Mode::kExclusive;
  FencingToken token;
  FencingToken fence;
  RequestId acquired_by;
  LogIndex granted_at;
  bool operator==(const HolderView&) const = default;
};

struct WaiterView {
  LeaseId lease;
  std::string label;
  Mode mode = Mode::kExclusive;
  RequestId acquire;
  uint64_t wait_ms = 0;
  LogIndex enqueued_at;
  bool operator==(const WaiterView&) const = default;
};

enum class CancelEffect : uint8_t {
  kNone = 0,
  kWithdrewWait = 1,
  kReleasedGrant = 2,
  kCancelledInAdvance = 3,
  kNothingToCancel = 4,
};

/// The answer to one command. `code` and `message` become the gRPC status; the other fields are
/// filled by the commands they belong to.
struct Outcome {
  StatusCode code = StatusCode::kOk;
  std::string message;
  // GrantLease, and Acquire that granted a lease.
  LeaseId lease;
  uint64_t ttl_ms = 0;
  // Acquire.
  bool acquired = false;
  bool waiting = false;  ///< enqueued; the final answer comes when the wait ends
  FencingToken token;
  FencingToken fence;
  Mode mode = Mode::kExclusive;
  std::vector<HolderView> holders;  ///< when not acquired
  // Cancel.
  CancelEffect effect = CancelEffect::kNone;
  // RevokeLease / ForceRelease.
  std::vector<std::string> released;
  std::vector<std::string> dropped;

  bool ok() const { return code == StatusCode::kOk; }
  bool operator==(const Outcome&) const = default;
};

struct Event {
  enum class Type : uint8_t { kAcquired = 1, kReleased, kExpired, kWaiting, kCancelled };
  Type type = Type::kAcquired;
  uint32_t number = 0;  ///< within the entry, from 1
  std::string name;
  LeaseId lease;
  Mode mode = Mode::kExclusive;
  FencingToken token;
  FencingToken fence;
  bool operator==(const Event&) const = default;
};

/// An earlier Acquire whose final answer this apply decided (granted, cancelled, timed out, or
/// its lease went away).
struct Completion {
  RequestId acquire;
  Outcome outcome;
  bool operator==(const Completion&) const = default;
};

struct WaitStarted {
  std::string name;
  RequestId acquire;
  LeaseId lease;
  uint64_t wait_ms = 0;
  bool operator==(const WaitStarted&) const = default;
};

struct ApplyResult {
  Outcome outcome;  ///< for the command's own request id
  std::vector<Completion> completions;
  std::vector<Event> events;
  std::vector<WaitStarted> waits_started;
  std::vector<std::pair<LeaseId, uint64_t>> leases_granted;  ///< (lease, ttl_ms)
  std::vector<LeaseId> leases_ended;
};

}  // namespace lockd::lock
