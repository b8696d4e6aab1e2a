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
//                           queue)
//   acquire info:           either nothing, or as acquire ok with the token unknown (droppable)
//   release ok (L, T):      (L, T) holds the lock, or L with a token unknown; it goes
//   inspect ok (holders):   each one seen holds the lock; the unseen ones must be droppable; they
//   go release fail/info, inspect fail/info: no constraint (the holder is droppable anyway)
//
// Scale (an hour's soak holds ~80,000 ops per lock and hundreds of indeterminate acquires):
//
// - Indeterminate acquires are resolved from the Watch history. A grant the watcher saw for the
//   acquire's lock, lease and mode, whose token no acknowledged acquire holds, is that acquire
//   taking effect: it must be linearized between its invocation and the watcher's receipt, with
//   that token. (Each such grant goes to the earliest candidate acquire; when another candidate's
//   window crosses a gap of the Watch, that one's grant may have been lost in the gap and this
//   one be the other's, so none is pinned: each may take effect until the grant was seen.) One
//   the watcher would have seen but did not never took effect and is left out; one whose window
//   crosses gaps may have taken effect only inside them, so by the end of the last one. These
//   only narrow the linearizations the search may choose (a known token where it was unknown, a
//   deadline where there was none, "never" where "maybe"), so none can turn a violation into a
//   pass: a Watch history that lied could only make the checker fail, never pass. Without a
//   watcher, or when it stopped less than `watch_tail` after the lock's last op, an indeterminate
//   acquire may take effect at any time after its invocation, or never.
// - A lock's history is cut where no op is in flight (every op before the cut completed, or passed
//   its deadline, before every op after it was invoked), so every linearization orders the pieces
//   as they came. The search runs piece by piece, carrying every state the lock may be in at the
//   cut (pruned to the states not dominated by another: one that holds the same holders plus
//   droppable ones can do all the other can). An indeterminate acquire with no deadline may take
//   effect at any later time, so no cut falls after one.
//
// The search is bounded: past the budget of explored states in one piece the verdict is UNKNOWN,
// never a guess.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "faults/history/checkers.h"
#include "faults/history/history.h"

namespace lockd::faults {

struct LinearizabilityOptions {
  /// Search steps (states expanded) per piece of a lock's history before giving up on the lock
  /// with UNKNOWN.
  uint64_t budget = 500'000;
  /// States the lock may be in at a cut, beyond which the lock is UNKNOWN.
  size_t max_frontier = 4'096;
  /// How long after a lock's last op the watcher must have run for a grant it did not see to
  /// count as one that did not happen (one committed before it stopped may still have been on
  /// its way). Shorter: such acquires stay unresolved.
  std::chrono::milliseconds watch_tail{1000};
};

Report CheckLinearizability(const std::vector<Op>& ops, LinearizabilityOptions options = {});

}  // namespace lockd::faults
