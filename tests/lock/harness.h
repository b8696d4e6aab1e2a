// A small driver for the lock state machine in tests: numbers entries, makes request headers,
// checks invariants after every apply.
#pragma once

#include "lock/state_machine.h"

namespace lockd::lock::testing {

class Harness {
 public:
  explicit Harness(Limits limits = {}) : sm(limits) {}

  /// A fresh request id. The watermark stays 0 (the harness never claims a call finished), so
  /// nothing is refused as a late duplicate unless a test sets a watermark itself.
  RequestHeader Header(ClientId client = {1, 1}) {
    const uint64_t seq = ++seq_[client];
    return RequestHeader{{client, seq}, 1, 0};
  }

  ApplyResult Do(const Command& c) {
    auto r = sm.ApplyCommand(LogIndex(++index), c, /*wall_seconds=*/1000);
    sm.CheckInvariants();
    return r;
  }

  LeaseId Lease(uint64_t ttl_ms = 10'000, std::string label = "test") {
    auto r = Do(GrantLease{Header(), ttl_ms, std::move(label)});
    return r.outcome.lease;
  }

  ApplyResult Acquire(const std::string& name, LeaseId lease, Mode mode = Mode::kExclusive,
                      uint64_t wait_ms = 0, RequestHeader* header_out = nullptr) {
    Command c = lock::Acquire{Header(), name, lease, mode, wait_ms, 0, ""};
    if (header_out) *header_out = std::get<lock::Acquire>(c).header;
    return Do(c);
  }

  ApplyResult Release(const std::string& name, LeaseId lease, FencingToken token) {
    return Do(lock::Release{Header(), name, lease, token});
  }

  LockStateMachine sm;
  uint64_t index = 0;

 private:
  std::map<ClientId, uint64_t> seq_;
};

}  // namespace lockd::lock::testing
