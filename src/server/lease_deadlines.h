// LeaseDeadlines: the leader's view of when each lease may be expired (design brief, guarantee 4).
//
// Deadlines live only in the leader's memory, on its CLOCK_BOOTTIME; the replicated state knows a
// lease's TTL but never a time. The rules this class keeps:
//   - a new leader tracks nothing until it has applied the first entry of its term; then every
//     lease's deadline is that moment + TTL (Activate);
//   - an acknowledged renewal received at r moves the deadline to at least r + TTL;
//   - once the leader decides a deadline has passed, the lease is "expiring": renewals get
//     NOT_FOUND from then on, whether or not the expiry has committed yet;
//   - a renewal is refused only if the lease is expiring or its deadline was at or before the
//     renewal's receive time (never because the deadline passed while the renewal waited in a
//     queue, a stall or a heartbeat round: NOT_FOUND must mean expired or expiring);
//   - after a stall of the loop or disk longer than a heartbeat interval, Stalled(end) raises
//     every deadline to at least end + TTL/3 before anything may expire (etcd#15247). Renewals and
//     Stalled only ever raise deadlines, so their order does not change any deadline; the runtime
//     raises first so that no renewal that arrived during the stall is refused for a deadline
//     the stall itself let pass.
// Owned by the runtime's loop thread; not thread-safe. Lease ids are the state machine's.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "base/clock.h"

namespace lockd::server {

class LeaseDeadlines {
 public:
  enum class Renewal { kRenewed, kNotFound, kNotReady };

  /// Leader, first entry of the term applied at `now`: every lease gets now + TTL.
  void Activate(BootTime now,
                const std::vector<std::pair<uint64_t, std::chrono::milliseconds>>& leases);
  /// No longer leader: forget everything.
  void Deactivate();
  bool active() const { return active_; }

  /// A lease was granted (applied) at `now`.
  void Added(uint64_t lease, std::chrono::milliseconds ttl, BootTime now);
  /// A lease was revoked or its expiry applied.
  void Removed(uint64_t lease);

  /// Records a renewal received at `received` that the leader lease allows acknowledging.
  Renewal Renew(uint64_t lease, BootTime received);
  /// Leases whose deadline is at or before `now`, in deadline order; each is marked expiring and
  /// is returned once. The runtime proposes their expiry.
  std::vector<uint64_t> DecideExpired(BootTime now);
  /// Whether a renewal of `lease` received at `received` must be refused: the lease is expiring
  /// or its deadline was at or before `received`. False for a lease not tracked here (the state
  /// machine decides whether it exists).
  bool RefusesRenewal(uint64_t lease, BootTime received) const;
  /// Whether the leader has decided that `lease` expired (its expiry is proposed or committing).
  bool Expiring(uint64_t lease) const;
  /// The loop or disk stalled until `end`: no deadline earlier than end + TTL/3.
  void Stalled(BootTime end);

  /// Time left before the deadline (zero if past); nullopt for an unknown or expiring lease.
  std::optional<std::chrono::nanoseconds> Remaining(uint64_t lease, BootTime now) const;
  /// The earliest deadline among leases not yet expiring, for the loop's timer.
  std::optional<BootTime> NextDeadline() const;
  size_t size() const { return leases_.size(); }

 private:
  struct Entry {
    std::chrono::milliseconds ttl{0};
    BootTime deadline;
    bool expiring = false;
  };
  void SetDeadline(uint64_t lease, Entry& e, BootTime deadline);

  bool active_ = false;
  std::map<uint64_t, Entry> leases_;
  std::set<std::pair<BootTime, uint64_t>> by_deadline_;  ///< leases not yet expiring
};

}  // namespace lockd::server
