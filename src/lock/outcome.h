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

/// What a Cancel did (design brief: "Says which happened").
enum class CancelEffect : uint8_t {
  kNone = 0,
  kWithdrewWait = 1,        ///< the Acquire was waiting; its wait ended
  kReleasedGrant = 2,       ///< the Acquire's grant was still held; it is released
  kCancelledInAdvance = 3,  ///< the Acquire has not arrived; it will be a no-op
  kNothingToCancel = 4,     ///< the Acquire already finished (or was refused)
};
inline constexpr uint8_t kMaxCancelEffect = 4;

/// Why an Acquire answered acquired = false (all are OK answers, not errors).
enum class NotAcquired : uint8_t {
  kNone = 0,                ///< acquired, still waiting, or an error
  kBusy = 1,                ///< a try-lock (wait_ms = 0) found the lock taken or queued
  kWaitTimedOut = 2,        ///< the leader's WaitTimeout ended the wait
  kCancelled = 3,           ///< a Cancel withdrew the wait
  kLeaseEnded = 4,          ///< the waiting lease was revoked or expired
  kCancelledInAdvance = 5,  ///< a Cancel named this Acquire before it arrived
};
inline constexpr uint8_t kMaxNotAcquired = 5;

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
  NotAcquired why_not = NotAcquired::kNone;
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

/// A change for Watch and the metrics. Its position is (index, number): all events of one entry
/// share the index, so a release and the handoff it causes arrive together.
struct Event {
  enum class Type : uint8_t { kAcquired = 1, kReleased, kExpired, kWaiting, kCancelled };
  Type type = Type::kAcquired;
  LogIndex index;       ///< the entry that made the change
  uint32_t number = 0;  ///< within the entry, from 1
  std::string name;
  LeaseId lease;
  Mode mode = Mode::kExclusive;
  FencingToken token;  ///< zero for waits
  FencingToken fence;  ///< zero for waits
  RequestId request;   ///< the Acquire that made the hold or wait
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
