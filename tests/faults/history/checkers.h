// The checkers of a fault run (issue 17), each a small pure function of the recorded history
// (history.h) that passes, fails naming the operations involved, or says why it cannot tell.
//
//   1. fencing at the resource           CheckFencing
//   2. no lost update                    CheckNoLostUpdate
//   3. lease safety as clients saw it    CheckLeaseSafety
//   4. mutual exclusion from the Watch   CheckMutualExclusion
//   5. linearizability                   CheckLinearizability (linearizability.h)
//   6. no lost acknowledgement           CheckNoLostAck
//   7. clean-up                          CheckCleanup
//   plus leases kept alive stay alive    CheckLeaseKept (the keepers' renewals; when asked)
//   the run's coverage                   CheckCoverage (none of the above passed vacuously)
//   and availability per fault kind      Availability
//
// The watcher's history: grant_seen (an ACQUIRED event) and release_seen (event "released",
// "expired"; waits that end are not recorded), each with its position (index, event_no);
// release_seen with event "watch_start" / "watch_end" bound the time it covered, and "gap" marks
// [invoke, complete] during which it lost events (its position fell below the history a node keeps,
// so it re-watched from now).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "faults/history/history.h"

namespace lockd::faults {

enum class Verdict { kPass, kFail, kUnknown };
const char* Name(Verdict v);

/// What one checker found.
struct Report {
  std::string checker;  ///< "fencing", "no-lost-update", …
  Verdict verdict = Verdict::kPass;
  std::string summary;                  ///< one line: what was checked, how much
  std::vector<std::string> violations;  ///< each names the operations involved
  std::vector<std::string> details;     ///< figures worth printing (not violations)
  bool failed() const { return verdict == Verdict::kFail; }
  /// "[fencing] PASS: …" and then one indented line per violation (the first `max_lines`).
  std::string Format(size_t max_lines = 20) const;
};

/// The time the watcher's history covers: from watch_start to watch_end, less its gaps.
struct WatchCoverage {
  BootNs start = 0, end = 0;  ///< end 0: no Watch history at all
  std::vector<std::pair<BootNs, BootNs>> gaps;
  bool present() const { return end != 0; }
  /// Whether the history holds every event of [from, to].
  bool Covers(BootNs from, BootNs to) const;
};
WatchCoverage CoverageOf(const std::vector<Op>& ops);

Report CheckFencing(const std::vector<ResourceRecord>& log);
Report CheckNoLostUpdate(const std::vector<ResourceRecord>& log, const std::vector<Op>& ops);
Report CheckLeaseSafety(const std::vector<Op>& ops);
Report CheckMutualExclusion(const std::vector<Op>& ops);
Report CheckNoLostAck(const std::vector<Op>& ops);

/// Every lock any op touched must be seen free by an inspection that completed within `bound`
/// of the moment the faults and the workload stopped (the later of the last fault event and the
/// last completion of an op of any process but `cleanup_process` and the watcher).
Report CheckCleanup(const std::vector<Op>& ops, const std::vector<FaultEvent>& faults,
                    BootNs bound_ns, const std::string& cleanup_process = "cleanup");

/// The keepers' renewals (`renew` ops, keeper.cc): a renewal the cluster refused NOT_FOUND although
/// it was sent more than `slack` before the deadline an earlier renewal of the lease guarantees
/// (one sent at S and acknowledged before this one was sent: the deadline is at least S + TTL),
/// so it arrived before that deadline and must have been honoured, a stall notwithstanding
/// (design: the stall rule). Sound only where (a) every renewal reaches the leader that judges it
/// within `slack` of its sending (loopback, no network faults between client and nodes, no
/// forwarding delayed by a paused or cut-off node) and (b) every NOT_FOUND comes from the one
/// real leader (no partitions or pauses that leave a deposed leader answering from stale
/// deadlines); and it catches anything only with slack < TTL − TTL/3. faults_check runs it only
/// when asked (--renewal-slack-ms). PASS with nothing to check when no keeper ran.
Report CheckLeaseKept(const std::vector<Op>& ops, BootNs slack_ns);

/// That the run exercised what the checkers check, so none of them passed on an empty history:
/// at least `min_grants_per_lock` acknowledged grants on every lock any op touched (and one lock at
/// least), at most `max_gaps` gaps in the Watch history (-1: any), at least 90 % of the
/// acknowledged grants inside the watcher's coverage, and, with `expect_fence_rejection`, at
/// least one request the resource refused for its fence.
struct CoverageOptions {
  int64_t min_grants_per_lock = 1;
  int64_t max_gaps = -1;
  bool expect_fence_rejection = false;
};
Report CheckCoverage(const std::vector<Op>& ops, const std::vector<ResourceRecord>& log,
                     const CoverageOptions& options);

/// Operations attempted and answered per kind, and per fault kind the longest window without a
/// served cluster operation (acquire, release, inspect done, or refused without an error) that
/// began at or after such a fault, before the next fault or the workload's end (its last
/// invocation), the stretch after the last served op included. The clean-up process and
/// the watcher are not the workload. Informational: its verdict is always PASS.
Report Availability(const std::vector<Op>& ops, const std::vector<FaultEvent>& faults,
                    const std::string& cleanup_process = "cleanup");

/// The acquire's release by the same process (same lock and token), or nullptr.
struct Hold {
  const Op* acquire = nullptr;
  const Op* release = nullptr;
  BootNs start = 0, end = 0;  ///< [grant acknowledged, min(release invoked, valid_until)]
};
/// Every acknowledged grant of a worker with the interval its client believed it held the lock.
std::vector<Hold> Holds(const std::vector<Op>& ops);

}  // namespace lockd::faults
