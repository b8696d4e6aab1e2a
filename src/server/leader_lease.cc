#include "server/leader_lease.h"

#include "base/check.h"

namespace lockd::server {

std::chrono::nanoseconds LeaseTiming::TimeBranchWindow() const {
  const auto base = election_min - tick;
  if (base <= std::chrono::nanoseconds::zero()) return std::chrono::nanoseconds::zero();
  return std::chrono::nanoseconds(
      static_cast<int64_t>(static_cast<double>(base.count()) * (1.0 - 2.0 * drift)));
}

void LeaderLease::BecomeLeader(uint64_t term) {
  LOCKD_CHECK(term > term_ || !leader_);
  leader_ = true;
  term_ = term;
  time_branch_allowed_ = true;
  pending_.clear();
  confirmed_start_.reset();
  latest_started_.reset();
}

void LeaderLease::StepDown() {
  leader_ = false;
  pending_.clear();
  confirmed_start_.reset();
  latest_started_.reset();
}

void LeaderLease::RoundStarted(uint64_t id, BootTime start) {
  if (!leader_) return;
  LOCKD_CHECK(pending_.empty() || id > pending_.back().first);
  pending_.emplace_back(id, start);
  if (!latest_started_ || start > *latest_started_) latest_started_ = start;
}

void LeaderLease::RoundConfirmed(uint64_t id) {
  if (!leader_) return;
  // A quorum that acknowledged round `id` acknowledged it at or after its own start; it says
  // nothing about later rounds. Earlier pending rounds are superseded (their starts are older).
  while (!pending_.empty() && pending_.front().first <= id) {
    if (pending_.front().first == id) {
      const BootTime s = pending_.front().second;
      if (!confirmed_start_ || s > *confirmed_start_) confirmed_start_ = s;
    }
    pending_.pop_front();
  }
}

bool LeaderLease::CanAcknowledge(BootTime received, BootTime now) const {
  if (!leader_ || !confirmed_start_) return false;
  const BootTime s = *confirmed_start_;
  if (s >= received) return true;
  return time_branch_allowed_ && now - s < timing_.TimeBranchWindow();
}

bool LeaderLease::NeedsRoundAfter(BootTime received) const {
  return !latest_started_ || *latest_started_ < received;
}

}  // namespace lockd::server
