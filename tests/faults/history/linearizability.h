// Checker 5: linearizability of acquire / release / inspect against a model of one lock, by a
// Porcupine-style search (Wing & Gong's, with Lowe's memoisation of (linearized set, state)),
// partitioned per lock name.
//
// The model's state is the lock's holders (lease, mode, token). A holder is "droppable" when the
// history does not pin its end: its release was not acknowledged (failed, indeterminate, or never
// made), or its grant was indeterminate — a lease expiry, a Cancel of an abandoned Acquire, or a
// release retried in the background may end such a hold at any moment without an op of its own.
// Dropping lazily is complete (keeping a droppable holder only helps an inspection that still
// sees it; a conflicting grant drops it), so the model drops one only when an op needs it gone.
//
//   acquire ok (L, M, T):   conflicting holders must all be droppable; they go; (L, M, T) is added
//   acquire fail (holders): every lease listed holds the lock (an empty list: refused for the
//   queue) acquire info:           either nothing, or as acquire ok with the token unknown
//   (droppable) release ok (L, T):      (L, T) holds the lock; it goes inspect ok (holders):   each
//   one seen holds the lock; the unseen ones must be droppable; they go release fail/info, inspect
//   fail/info: no constraint (the holder is droppable anyway)
//
// An indeterminate op may take effect at any time after its invocation, or never. The search is
// bounded: past the budget of explored states the verdict is UNKNOWN, never a guess.
#pragma once

#include <cstdint>
#include <vector>

#include "faults/history/checkers.h"
#include "faults/history/history.h"

namespace lockd::faults {

struct LinearizabilityOptions {
  /// Search steps (states expanded) per lock before giving up on it with UNKNOWN.
  uint64_t budget = 500'000;
};

Report CheckLinearizability(const std::vector<Op>& ops, LinearizabilityOptions options = {});

}  // namespace lockd::faults
