#include "server/lease_deadlines.h"

namespace lockd::server {

void LeaseDeadlines::Activate(
    BootTime now, const std::vector<std::pair<uint64_t, std::chrono::milliseconds>>& leases) {
  Deactivate();
  active_ = true;
  for (const auto& [id, ttl] : leases) Added(id, ttl, now);
}

void LeaseDeadlines::Deactivate() {
  active_ = false;
  leases_.clear();
  by_deadline_.clear();
}

void LeaseDeadlines::Added(uint64_t lease, std::chrono::milliseconds ttl, BootTime now) {
  if (!active_) return;
  Entry& e = leases_[lease];
  e.ttl = ttl;
  SetDeadline(lease, e, now + ttl);
}

void LeaseDeadlines::Removed(uint64_t lease) {
  auto it = leases_.find(lease);
  if (it == leases_.end()) return;
  if (!it->second.expiring) by_deadline_.erase({it->second.deadline, lease});
  leases_.erase(it);
}

void LeaseDeadlines::SetDeadline(uint64_t lease, Entry& e, BootTime deadline) {
  if (e.expiring) return;
  by_deadline_.erase({e.deadline, lease});
  e.deadline = deadline;
  by_deadline_.insert({deadline, lease});
}

LeaseDeadlines::Renewal LeaseDeadlines::Renew(uint64_t lease, BootTime received) {
  if (!active_) return Renewal::kNotReady;
  auto it = leases_.find(lease);
  if (it == leases_.end() || it->second.expiring) return Renewal::kNotFound;
  Entry& e = it->second;
  const BootTime candidate = received + e.ttl;
  if (candidate > e.deadline) SetDeadline(lease, e, candidate);
  return Renewal::kRenewed;
}

std::vector<uint64_t> LeaseDeadlines::DecideExpired(BootTime now) {
  std::vector<uint64_t> out;
  if (!active_) return out;
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
    const uint64_t id = by_deadline_.begin()->second;
    by_deadline_.erase(by_deadline_.begin());
    leases_[id].expiring = true;
    out.push_back(id);
  }
  return out;
}

bool LeaseDeadlines::RefusesRenewal(uint64_t lease, BootTime received) const {
  auto it = leases_.find(lease);
  if (it == leases_.end()) return false;  // unknown here: the state machine answers NOT_FOUND
  return it->second.expiring || it->second.deadline <= received;
}

bool LeaseDeadlines::Expiring(uint64_t lease) const {
  auto it = leases_.find(lease);
  return it != leases_.end() && it->second.expiring;
}

void LeaseDeadlines::Stalled(BootTime end) {
  for (auto& [id, e] : leases_) {
    const BootTime floor = end + e.ttl / 3;
    if (!e.expiring && e.deadline < floor) SetDeadline(id, e, floor);
  }
}

std::optional<std::chrono::nanoseconds> LeaseDeadlines::Remaining(uint64_t lease,
                                                                  BootTime now) const {
  auto it = leases_.find(lease);
  if (it == leases_.end() || it->second.expiring) return std::nullopt;
  const auto left = it->second.deadline - now;
  return left > std::chrono::nanoseconds::zero() ? left : std::chrono::nanoseconds::zero();
}

std::optional<BootTime> LeaseDeadlines::NextDeadline() const {
  if (by_deadline_.empty()) return std::nullopt;
  return by_deadline_.begin()->first;
}

}  // namespace lockd::server
