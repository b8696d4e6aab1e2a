// Fuzz target: the lock state machine's snapshot decoder (LockStateMachine::Restore and
// RestoreAsNewCluster), which reads what a leader sends in InstallSnapshot and what a backup file
// carries. Properties: a snapshot is refused with an error, or restores to a state whose
// invariants hold, whose snapshot restores to an equal state and re-encodes to the same bytes,
// and on which a command can be applied; a new cluster from it holds no leases, locks or outcomes.
#include <cstdint>

#include "fuzz_check.h"
#include "lock/command.h"
#include "lock/state_machine.h"

using namespace lockd::lock;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes = lockd::fuzz::AsView(data, size);
  // Small limits, so a snapshot that exceeds them is found with small inputs too.
  Limits limits;
  limits.max_locks = 64;
  limits.max_leases = 64;
  limits.max_waiters_per_lock = 8;
  auto sm = LockStateMachine::Restore(bytes, limits);
  if (!sm.ok()) {
    FUZZ_CHECK(!sm.status().message().empty(), "a refusal says why");
  } else {
    sm->CheckInvariants();
    // The age clock is behind the applied index: a sample at or after it would stop the clock
    // and let the next retirement drop every record, whatever its age.
    for (const auto& a : sm->exactly_once().age_samples()) {
      FUZZ_CHECK(a.applied < sm->applied(), "every age sample is before the applied index");
    }
    const std::string snap = sm->Snapshot();
    auto again = LockStateMachine::Restore(snap, limits);
    FUZZ_CHECK(again.ok(), "the snapshot of a restored state restores");
    FUZZ_CHECK(*again == *sm, "restore(snapshot(sm)) == sm");
    FUZZ_CHECK(again->Snapshot() == snap, "the encoding is stable");
    // The restored state is live: the next entry applies to it without breaking an invariant.
    RequestHeader h;
    h.id.client = {9, 9};
    h.id.seq = 1;
    sm->ApplyCommand(LogIndex(sm->applied().value() + 1),
                     Acquire{h, "a", LeaseId(0), Mode::kExclusive, 0, 10'000, ""});
    sm->CheckInvariants();
  }

  auto fresh = LockStateMachine::RestoreAsNewCluster(bytes, limits, 1'000'000, 5);
  if (fresh.ok()) {
    FUZZ_CHECK(fresh->lease_count() == 0 && fresh->lock_count() == 0, "a new cluster is empty");
    FUZZ_CHECK(fresh->token_counter().value() >= 5, "the token floor holds");
    fresh->CheckInvariants();
  }
  return 0;
}
