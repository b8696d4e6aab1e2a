// Replica: lease renewals and expiry, wait timers and outcome retirement — the leader's decisions
// that are taken on its clock and reach the state machine only as log entries.
#include <spdlog/spdlog.h>

#include "base/unsafe_faults.h"
#include "server/replica.h"

namespace lockd::server {

namespace {

std::chrono::milliseconds ToMillis(std::chrono::nanoseconds d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}

/// The boot clock in whole milliseconds, as the retirement planner counts.
uint64_t MillisOf(BootTime t) {
  return static_cast<uint64_t>(std::max<int64_t>(0, t.nanos / 1'000'000));
}

}  // namespace

void Replica::ActivateLeases(BootTime now) {
  // The first entry of this term is applied: every lease gets a full TTL from now, and every
  // pending wait its full wait again (a new leader re-arms every wait; none ends early).
  std::vector<std::pair<uint64_t, std::chrono::milliseconds>> leases;
  for (const auto& [id, ttl] : state_.LeaseTtls()) {
    leases.emplace_back(id.value(), std::chrono::milliseconds(ttl));
  }
  // Planted bug for the fault tests only (base/unsafe_faults.h): no full TTL from now; dated a
  // longest TTL back, every lease is due at once unless renewed in the next pass.
  BootTime from = now;
  if (unsafe::Enabled(unsafe::Fault::kSkipNewLeaderRule)) {
    for (const auto& [id, ttl] : leases) from = std::min(from, now - ttl);
  }
  deadlines_.Activate(from, leases);
  for (const auto& w : state_.PendingWaits()) ArmWait(w.name, w.acquire, w.wait_ms, now);
  // The age clock goes on from the mark the log carries, not from zero (issue 13 review).
  retirement_.Start(MillisOf(now), state_.exactly_once().age_mark_ms());
  spdlog::info("node {}: leader ready: {} leases, {} waits re-armed", options_.node_id,
               leases.size(), wait_timers_.size());
}

std::optional<std::chrono::milliseconds> Replica::LeaseRemaining(lock::LeaseId id) const {
  if (!leader_ || !deadlines_.active()) return std::nullopt;
  auto left = deadlines_.Remaining(id.value(), clock_.Now());
  if (!left) return std::nullopt;
  return ToMillis(*left);
}

// --- renewals ---------------------------------------------------------------------------------

void Replica::HandleRenewal(ParkedRenewal r, BootTime now) {
  if (!leader_) {
    r.done(Unavailable("not the leader; renew through the leader"));
    return;
  }
  if (!deadlines_.active()) {
    r.done(Unavailable("a new leader is not ready to answer renewals yet; retry shortly"));
    return;
  }
  const auto view = state_.GetLease(lock::LeaseId(r.lease));
  if (!view.has_value()) {
    r.done(NotFound("lease " + std::to_string(r.lease) + " is unknown or has expired"));
    return;
  }
  // Before anything is renewed: another identity's renewal must not keep a lease alive.
  if (!r.principal.empty() && view->owner != r.principal) {
    r.done(Status(StatusCode::kPermissionDenied, "lease " + std::to_string(r.lease) +
                                                     " belongs to another identity; '" +
                                                     r.principal + "' may not renew it"));
    return;
  }
  // Judged by when the renewal arrived: a deadline that passed while it waited (in the queue,
  // a stall, a heartbeat round) does not refuse it (issue 13, defect 2).
  // Planted bug for the fault tests only (base/unsafe_faults.h): the old order judged at `now`.
  const bool old_order = unsafe::Enabled(unsafe::Fault::kStallRuleOldOrder);
  if (deadlines_.RefusesRenewal(r.lease, old_order ? now : r.received) ||
      deadlines_.Renew(r.lease, r.received) != LeaseDeadlines::Renewal::kRenewed) {
    r.done(NotFound("lease " + std::to_string(r.lease) + " has expired"));
    return;
  }
  // The deadline now counts from r even before leadership is confirmed: that only delays an
  // expiry, which is always safe, and keeps a renewal waiting for its round from seeing its lease
  // decided expired under it. If this node turns out not to lead, its deadlines are dropped.
  if (lease_.CanAcknowledge(r.received, now)) {
    auto left = deadlines_.Remaining(r.lease, now);
    Renewed answer;
    answer.remaining = left ? ToMillis(*left) : std::chrono::milliseconds(0);
    answer.held_tokens = view->held_tokens;
    r.done(std::move(answer));
    return;
  }
  // Leadership has to be confirmed by a round begun after this renewal arrived.
  if (lease_.NeedsRoundAfter(r.received)) round_for_renewals_ = true;
  parked_renewals_.push_back(std::move(r));
}

void Replica::RetryParkedRenewals(BootTime now) {
  if (parked_renewals_.empty()) return;
  std::vector<ParkedRenewal> parked;
  parked.swap(parked_renewals_);
  for (auto& r : parked) HandleRenewal(std::move(r), now);
  if (round_for_renewals_ && leader_) {
    // Renewals that arrived after every round in flight began: start one for them now rather
    // than at the next tick.
    StartRoundNow();
    round_for_renewals_ = false;
    HandleReadies();
  }
}

lock::Outcome Replica::GrantAnswer(lock::Outcome o) const {
  if (!o.ok() || !o.acquired) return o;
  // A grant applied after the leader decided its lease expired (proposed before the deadline,
  // committed after it), or after the lease's expiry applied (a retry answered from the
  // exactly-once record), is void: the expiry releases it. Saying "acquired" would invite the
  // caller to use a lock its lease no longer backs, so the answer is the lease's NOT_FOUND.
  const bool gone = !state_.OwnerOf(o.lease).has_value();
  const bool expiring = leader_ && deadlines_.active() && deadlines_.Expiring(o.lease.value());
  if (!gone && !expiring) return o;
  lock::Outcome void_grant;
  void_grant.code = StatusCode::kNotFound;
  void_grant.message = "lease " + std::to_string(o.lease.value()) +
                       (gone ? " no longer exists (expired or revoked)" : " is expiring") +
                       ": the grant with token " + std::to_string(o.token.value()) +
                       " is void and is released with the lease; treat the lease as lost";
  return void_grant;
}

// --- expiry, waits, retirement ------------------------------------------------------------------

void Replica::ProposeExpiries(BootTime now) {
  if (!leader_ || !deadlines_.active()) return;
  for (uint64_t lease : deadlines_.DecideExpired(now)) {
    spdlog::info("node {}: lease {} passed its deadline; proposing its expiry", options_.node_id,
                 lease);
    expiries_to_propose_.push_back(lease);
  }
  std::vector<uint64_t> left;
  for (uint64_t lease : expiries_to_propose_) {
    if (!Propose(lock::ExpireLease{lock::LeaseId(lease)})) left.push_back(lease);
  }
  expiries_to_propose_.swap(left);
}

void Replica::ArmWait(const std::string& name, const lock::RequestId& id, uint64_t wait_ms,
                      BootTime now) {
  DisarmWait(id);
  const BootTime deadline = now + std::chrono::milliseconds(wait_ms);
  wait_timers_[id] = WaitTimer{name, deadline};
  wait_order_.insert({deadline, id});
}

void Replica::DisarmWait(const lock::RequestId& id) {
  auto it = wait_timers_.find(id);
  if (it == wait_timers_.end()) return;
  wait_order_.erase({it->second.deadline, id});
  wait_timers_.erase(it);
}

void Replica::ProposeWaitTimeouts(BootTime now) {
  if (!leader_ || !deadlines_.active()) return;
  while (!wait_order_.empty() && wait_order_.begin()->first <= now) {
    const lock::RequestId id = wait_order_.begin()->second;
    const std::string name = wait_timers_[id].name;
    if (!Propose(lock::WaitTimeout{name, id})) {
      // The core refused (over its uncommitted-bytes bound): try again a tick later.
      ArmWait(name, id, static_cast<uint64_t>(ToMillis(options_.timing.tick).count()), now);
      return;
    }
    // The caller is answered when the timeout applies; if a grant wins the race, the caller
    // learns of the grant and the timeout is a no-op.
    DisarmWait(id);
  }
}

void Replica::ProposeRetirement(BootTime now) {
  if (!leader_ || !deadlines_.active()) return;
  auto retire =
      retirement_.Due(MillisOf(now), lock::LogIndex(applied_), state_.exactly_once().age_samples());
  // Refused by the core (over its uncommitted bound): the next one, F_fwd later, covers it.
  if (retire) Propose(*retire);
}

}  // namespace lockd::server
