// Builders of synthetic histories for the checkers' unit tests (times in milliseconds).
#pragma once

#include <string>
#include <vector>

#include "faults/history/history.h"

namespace lockd::faults::test {

inline BootNs Ms(int64_t ms) {
  return ms * 1'000'000;
}

inline Op Acquire(std::string process, uint64_t id, std::string lock, LockMode mode, int64_t invoke,
                  int64_t complete, Outcome outcome, uint64_t token, uint64_t lease,
                  int64_t valid_until = 100'000) {
  Op op;
  op.process = std::move(process);
  op.id = id;
  op.kind = OpKind::kAcquire;
  op.lock = std::move(lock);
  op.mode = mode;
  op.invoke_ns = Ms(invoke);
  op.complete_ns = Ms(complete);
  op.outcome = outcome;
  op.token = op.fence = token;
  op.lease = lease;
  op.valid_until_ns = Ms(valid_until);
  return op;
}

inline Op Release(std::string process, uint64_t id, std::string lock, uint64_t token,
                  uint64_t lease, int64_t invoke, int64_t complete, Outcome outcome = Outcome::kOk,
                  int64_t valid_until = 100'000) {
  Op op = Acquire(std::move(process), id, std::move(lock), LockMode::kExclusive, invoke, complete,
                  outcome, token, lease, valid_until);
  op.kind = OpKind::kRelease;
  return op;
}

inline Op Inspect(std::string process, uint64_t id, std::string lock, int64_t invoke,
                  int64_t complete, std::vector<Holder> holders) {
  Op op = Acquire(std::move(process), id, std::move(lock), LockMode::kExclusive, invoke, complete,
                  Outcome::kOk, 0, 0, 0);
  op.kind = OpKind::kInspect;
  op.holders = std::move(holders);
  return op;
}

/// A Watch event at log position `index`: "acquired" is a grant_seen, others release_seen.
inline Op Seen(std::string event, std::string lock, uint64_t lease, uint64_t token, uint64_t index,
               LockMode mode = LockMode::kExclusive, int64_t at = 0) {
  Op op;
  op.process = "watch";
  op.id = index;
  op.kind = event == "acquired" ? OpKind::kGrantSeen : OpKind::kReleaseSeen;
  op.event = event == "acquired" ? "" : event;
  op.lock = std::move(lock);
  op.lease = lease;
  op.token = op.fence = token;
  op.mode = mode;
  op.index = index;
  op.invoke_ns = op.complete_ns = Ms(at);
  return op;
}

/// The watcher's coverage markers.
inline Op WatchMark(std::string event, int64_t invoke, int64_t complete) {
  Op op;
  op.process = "watch";
  op.kind = OpKind::kReleaseSeen;
  op.event = std::move(event);
  op.invoke_ns = Ms(invoke);
  op.complete_ns = Ms(complete);
  return op;
}

/// A keeper's renewal of `lease` (TTL `ttl` ms); event "grant" for the grant itself.
inline Op Renew(std::string process, uint64_t id, uint64_t lease, int64_t invoke, int64_t complete,
                Outcome outcome, int64_t ttl = 3000, std::string event = "") {
  Op op;
  op.process = std::move(process);
  op.id = id;
  op.kind = OpKind::kRenew;
  op.lease = lease;
  op.invoke_ns = Ms(invoke);
  op.complete_ns = Ms(complete);
  op.outcome = outcome;
  op.value = ttl;
  op.event = std::move(event);
  if (outcome == Outcome::kFail) op.error = "5: lease has expired";
  return op;
}

inline ResourceRecord Res(int64_t at, std::string lock, bool write, uint64_t fence, int64_t value,
                          bool accepted, uint64_t largest, std::string process, uint64_t op) {
  return {Ms(at), std::move(lock), write, fence, value, accepted, largest, std::move(process), op};
}

}  // namespace lockd::faults::test
