// RetirementPlanner: the leader's side of exactly-once retirement — which RetireOutcomes entries to
// propose, and the age clock they carry (docs/state-machine.md, "The age clock").
//
// The age clock is replicated: every RetireOutcomes carries a sample (the index this leader had
// applied, its age mark then), and the state machine keeps the recent samples. A leader taking
// office continues from the newest mark applied, counting only the time its own monotonic clock
// measures from then on (slowed by ρ), so the clock never runs ahead of real time: the time
// between the last leader's last sample and this leader taking office is not counted at all, and
// a record is only ever retired later than a window after it was applied, never earlier. A leader
// change therefore delays retirement by at most one retire period plus the election, instead of
// restarting the window.
//
// Pure: fed with the caller's monotonic time in milliseconds, reads no clock. Owned by the node
// runtime's loop thread (and by tests that simulate leaders).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include "lock/command.h"
#include "lock/exactly_once.h"

namespace lockd::lock {

class RetirementPlanner {
 public:
  struct Timing {
    uint64_t forward_ms = 10'000;  ///< F_fwd: below-watermark records go once this old
    uint64_t window_ms = 300'000;  ///< W: every record goes once this old
    double drift = 0.01;  ///< ρ: the age clock counts (1 − ρ) of what this clock measures
  };
  /// How often this leader samples its own applied index between proposals, at least.
  static constexpr uint64_t kLocalSampleMs = 1'000;
  /// Samples a window holds at most, replicated (proposals) and local alike.
  static constexpr uint64_t kSamplesPerWindow = 512;
  /// A new leader's first proposal comes this soon after Start (then every period_ms()): the age
  /// clock keeps running when leaders change faster than the period.
  static constexpr uint64_t kFirstProposalMs = 1'000;

  /// How often a RetireOutcomes is proposed: W/32, within [1 s, F_fwd], and at least W/512 (above
  /// W = 512 F_fwd, 85 min at the defaults, that is more than F_fwd). A leader change loses the
  /// age clock's time since the last one, so with a change every W/2 the clock still runs at
  /// 15/16 of real time, less the elections.
  uint64_t period_ms() const;
  /// How far apart this leader's own samples are: 1 s, at least W/512, so a window holds at
  /// most 512 of them.
  uint64_t local_spacing_ms() const;

  explicit RetirementPlanner(Timing timing) : timing_(timing) {}

  /// This node leads and has applied the first entry of its term: the age clock continues from
  /// `replicated_mark_ms` (ExactlyOnce::age_mark_ms()) at `now_ms`.
  void Start(uint64_t now_ms, uint64_t replicated_mark_ms);
  /// This node no longer leads: nothing is proposed until the next Start.
  void Stop();
  bool active() const { return active_; }
  /// This leader's own samples (tests look at how many are kept).
  const std::deque<AgeSample>& local_samples() const { return local_; }

  /// The age clock at `now_ms` (only while active).
  uint64_t MarkAt(uint64_t now_ms) const;

  /// Called every loop pass with the applied index and the replicated samples: the entry to
  /// propose when one is due (kFirstProposalMs after Start, then every period_ms()), else nothing.
  std::optional<RetireOutcomes> Due(uint64_t now_ms, LogIndex applied,
                                    const std::deque<AgeSample>& replicated);

 private:
  Timing timing_;
  bool active_ = false;
  uint64_t base_mark_ms_ = 0;  ///< the replicated mark at Start
  uint64_t base_ms_ = 0;       ///< when Start was called, on the caller's clock
  uint64_t last_proposal_ms_ = 0;
  bool proposed_ = false;  ///< this term has proposed once
  /// This leader's own samples, every local_spacing_ms(): finer than the replicated ones (one per
  /// proposal), and lost with the office, which only retains longer.
  std::deque<AgeSample> local_;
};

}  // namespace lockd::lock
