// Fuzz target: a Raft log entry as the lock state machine decodes and applies it (lock/command.h,
// LockStateMachine::Apply). Properties: Decode refuses with an error or gives a command whose
// encoding decodes to the same command, digest and header; applying the entry to a state machine
// that holds a lease, a lock and a waiter either refuses it (changing nothing) or leaves a state
// whose invariants hold and whose snapshot restores to an equal state machine.
#include <cstdint>

#include "fuzz_check.h"
#include "lock/command.h"
#include "lock/state_machine.h"

namespace {

using namespace lockd::lock;

/// A state with something for the fuzzed command to act on: lease 1 holds "a" exclusively,
/// lease 2 waits for it, and so does lease 3 of identity "billing".
LockStateMachine Seeded() {
  LockStateMachine sm;
  RequestHeader h;
  h.id.client = {7, 7};
  h.id.seq = 1;
  sm.ApplyCommand(LogIndex(1), GrantLease{h, 10'000, "seed"});
  h.id.seq = 2;
  sm.ApplyCommand(LogIndex(2), GrantLease{h, 10'000, "seed"});
  h.id.seq = 3;
  sm.ApplyCommand(LogIndex(3), Acquire{h, "a", LeaseId(1), Mode::kExclusive, 0, 0, ""});
  h.id.seq = 4;
  sm.ApplyCommand(LogIndex(4), Acquire{h, "a", LeaseId(2), Mode::kExclusive, 60'000, 0, ""});
  // Lease 3 belongs to identity "billing" (access control), which waits for "a" too.
  h.id.client = {8, 8};
  h.id.seq = 1;
  h.caller = Caller{"billing", 2, 3, false};
  sm.ApplyCommand(LogIndex(5), GrantLease{h, 10'000, "owned"});
  h.id.seq = 2;
  sm.ApplyCommand(LogIndex(6), Acquire{h, "a", LeaseId(3), Mode::kExclusive, 60'000, 0, ""});
  return sm;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes = lockd::fuzz::AsView(data, size);
  auto e = Decode(bytes);
  if (e.ok()) {
    const std::string again = Encode(e->command, e->wall_seconds);
    auto e2 = Decode(again);
    FUZZ_CHECK(e2.ok(), "a decoded command re-encodes to bytes that decode");
    FUZZ_CHECK(e2->command.index() == e->command.index(), "same kind");
    FUZZ_CHECK(e2->wall_seconds == e->wall_seconds, "same wall stamp");
    FUZZ_CHECK(Digest(e2->command) == Digest(e->command), "same digest");
    FUZZ_CHECK(Encode(e2->command, e2->wall_seconds) == again, "the encoding is stable");
    const RequestHeader* h1 = HeaderOf(e->command);
    const RequestHeader* h2 = HeaderOf(e2->command);
    FUZZ_CHECK((h1 == nullptr) == (h2 == nullptr), "a header iff a client command");
    if (h1 != nullptr) {
      FUZZ_CHECK(h1->id == h2->id && h1->attempt == h2->attempt && h1->watermark == h2->watermark,
                 "the header round trips");
    }
  } else {
    FUZZ_CHECK(!e.status().message().empty(), "a refusal says why");
  }

  LockStateMachine sm = Seeded();
  const LockStateMachine before = sm;
  auto applied = sm.Apply(LogIndex(7), bytes);
  if (!applied.ok()) {
    FUZZ_CHECK(sm == before, "a refused entry changes nothing");
    return 0;
  }
  FUZZ_CHECK(e.ok(), "Apply accepts only what Decode accepts");
  sm.CheckInvariants();
  FUZZ_CHECK(sm.applied() == LogIndex(7), "the applied index advances");
  auto restored = LockStateMachine::Restore(sm.Snapshot(), sm.limits());
  FUZZ_CHECK(restored.ok(), "the snapshot of an applied state restores");
  FUZZ_CHECK(*restored == sm, "restore(snapshot(sm)) == sm");
  return 0;
}
