// LeaderLease: may the leader acknowledge a renewal it received at time r? (Design brief,
// guarantee 4, rule (c).)
//
// The Raft core runs heartbeat rounds with ids and reports when a majority of the voters of every
// configuration in force has acknowledged a round; it has no clock. This class keeps the time
// each round began (stamped by the runtime when the core starts it, before any of its heartbeats
// leaves, so the stamp is never later than the send) and the newest confirmed round start, and
// answers the question with either branch of the rule:
//   - s ≥ r: a round begun after the renewal arrived was confirmed — ReadIndex applied to
//     renewals; needs no clock reasoning;
//   - now − s < (E_min − T_tick)·(1 − 2ρ): the confirmed round is recent enough that no other node
//     can have been elected since (every voter refuses votes for E_min after hearing a leader).
// The time branch ends for the rest of the term once the leader sends TimeoutNow or appends a
// configuration that removes it. Owned by the runtime's loop thread; not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>

#include "base/clock.h"

namespace lockd::server {

struct LeaseTiming {
  std::chrono::nanoseconds election_min{std::chrono::milliseconds(1000)};  ///< E_min
  std::chrono::nanoseconds tick{std::chrono::milliseconds(100)};           ///< T_tick
  double drift = 0.01;                                                     ///< ρ

  /// (E_min − T_tick)·(1 − 2ρ): how long a confirmed round keeps the time branch open.
  std::chrono::nanoseconds TimeBranchWindow() const;
};

class LeaderLease {
 public:
  explicit LeaderLease(LeaseTiming timing) : timing_(timing) {}

  /// A new term as leader: forget every round of the previous one, time branch allowed again.
  void BecomeLeader(uint64_t term);
  /// No longer leader: nothing may be acknowledged until BecomeLeader.
  void StepDown();

  /// The core started round `id` (ids increase within a term) at `start`.
  void RoundStarted(uint64_t id, BootTime start);
  /// The core reports round `id` acknowledged by a majority of every configuration in force.
  /// Confirms that round's own start time, not the newest round's.
  void RoundConfirmed(uint64_t id);
  /// TimeoutNow sent, or a configuration removing this node appended: only rounds begun after a
  /// renewal may confirm it from now on, for the rest of the term.
  void EndTimeBranch() { time_branch_allowed_ = false; }

  /// Whether a renewal received at `received` may be acknowledged at `now`.
  bool CanAcknowledge(BootTime received, BootTime now) const;
  /// Whether some round begun at or after `received` still has to confirm before a renewal
  /// received then can be acknowledged (the runtime then asks the core for a round).
  bool NeedsRoundAfter(BootTime received) const;

  bool leader() const { return leader_; }
  std::optional<BootTime> last_confirmed_start() const { return confirmed_start_; }

 private:
  LeaseTiming timing_;
  bool leader_ = false;
  uint64_t term_ = 0;
  bool time_branch_allowed_ = true;
  /// Rounds started and not yet confirmed (or superseded), oldest first.
  std::deque<std::pair<uint64_t, BootTime>> pending_;
  std::optional<BootTime> confirmed_start_;  ///< the latest start among confirmed rounds
  std::optional<BootTime> latest_started_;
};

}  // namespace lockd::server
