#include "client/lease_core.h"

#include <algorithm>
#include <utility>

namespace lockd::client {

bool LossSignal::Lose(const std::string& reason) {
  std::vector<std::function<void(const std::string&)>> callbacks;
  {
    std::lock_guard lock(mu_);
    if (lost_) return false;
    lost_ = true;
    reason_ = reason;
    callbacks.swap(callbacks_);
  }
  stop_.request_stop();
  for (auto& f : callbacks) f(reason);
  return true;
}

bool LossSignal::lost() const {
  std::lock_guard lock(mu_);
  return lost_;
}

std::string LossSignal::reason() const {
  std::lock_guard lock(mu_);
  return reason_;
}

void LossSignal::OnLost(std::function<void(const std::string&)> f) {
  std::unique_lock lock(mu_);
  if (!lost_) {
    callbacks_.push_back(std::move(f));
    return;
  }
  std::string reason = reason_;
  lock.unlock();
  f(reason);
}

LeaseCore::LeaseCore(uint64_t id, std::chrono::milliseconds ttl, std::chrono::nanoseconds margin,
                     NowFn now, bool renewed)
    : id_(id), ttl_(ttl), margin_(margin), now_(std::move(now)), renewed_(renewed) {}

void LeaseCore::Anchor(TimePoint sent) {
  std::lock_guard lock(mu_);
  valid_until_ = std::max(valid_until_, sent + ttl_ - margin_);
}

void LeaseCore::RenewalSent(uint64_t seq, TimePoint sent) {
  std::lock_guard lock(mu_);
  // A renewal that could not extend validity any more is not worth remembering; the map stays
  // bounded by the renewals of about one TTL.
  while (!outstanding_.empty() && outstanding_.begin()->second + ttl_ - margin_ <= valid_until_)
    outstanding_.erase(outstanding_.begin());
  outstanding_[seq] = sent;
}

LeaseCore::Answer LeaseCore::Acknowledged(uint64_t seq, TimePoint now,
                                          const std::optional<std::vector<uint64_t>>& held) {
  // Loss is decided before the answer is looked at: an answer arriving at or after valid_until
  // comes too late, whatever renewal it answers.
  if (DecideLoss(now)) return Answer::kLateLost;
  // Declared before the lock guard, so the last reference to a LockCore (whose destruction may
  // revoke this lease) is dropped after mu_ is released.
  std::vector<std::shared_ptr<LockCore>> gone, kept;
  {
    std::lock_guard lock(mu_);
    auto it = outstanding_.find(seq);
    if (it == outstanding_.end()) return Answer::kUnknownSeq;  // replayed, or never ours
    valid_until_ = std::max(valid_until_, it->second + ttl_ - margin_);
    outstanding_.erase(it);
    if (held) {
      for (auto h = locks_.begin(); h != locks_.end();) {
        auto l = h->lock.lock();
        if (!l) {
          h = locks_.erase(h);
          continue;
        }
        // Only a renewal sent after the grant answer arrived can speak for the grant.
        if (seq > h->seq_floor && std::find(held->begin(), held->end(), h->token) == held->end()) {
          gone.push_back(std::move(l));
          h = locks_.erase(h);
          continue;
        }
        kept.push_back(std::move(l));
        ++h;
      }
    }
  }
  for (auto& l : gone) {
    l->loss.Lose("the lease no longer holds '" + l->name + "' (token " + std::to_string(l->token) +
                 "): released elsewhere, force-released by an operator, or revoked");
  }
  return Answer::kApplied;
}

bool LeaseCore::DecideLoss(TimePoint now) {
  bool expired;
  {
    std::lock_guard lock(mu_);
    expired = now >= valid_until_;
  }
  if (expired) Lose("no renewal was acknowledged in time (valid_until passed)");
  return loss_.lost();
}

void LeaseCore::Lose(const std::string& reason) {
  loss_.Lose(reason);
  // Every lock is lost with the lease, also one registered after a racing Lose.
  LoseLocks(loss_.reason());
}

void LeaseCore::LoseLocks(const std::string& reason) {
  std::vector<HeldLock> locks;
  {
    std::lock_guard lock(mu_);
    locks.swap(locks_);
  }
  for (auto& h : locks) {
    if (auto l = h.lock.lock()) l->loss.Lose("lease " + std::to_string(id_) + " lost: " + reason);
  }
}

TimePoint LeaseCore::ValidUntil() const {
  std::lock_guard lock(mu_);
  return valid_until_;
}

void LeaseCore::AddLock(const std::shared_ptr<LockCore>& lock, uint64_t token, uint64_t seq_floor) {
  {
    std::lock_guard g(mu_);
    locks_.push_back({lock, lock.get(), token, seq_floor});
  }
  if (loss_.lost()) LoseLocks(loss_.reason());
}

void LeaseCore::RemoveLock(const LockCore* lock) {
  std::lock_guard g(mu_);
  std::erase_if(locks_, [&](const HeldLock& h) { return h.raw == lock || h.lock.expired(); });
}

std::vector<std::shared_ptr<LockCore>> LeaseCore::Locks() {
  std::vector<std::shared_ptr<LockCore>> out;
  std::lock_guard g(mu_);
  for (const auto& h : locks_) {
    if (auto l = h.lock.lock()) out.push_back(std::move(l));
  }
  return out;
}

void LeaseCore::JudgeHeldNames(const std::vector<std::shared_ptr<LockCore>>& locks,
                               const std::vector<std::string>& held_names) {
  std::vector<std::shared_ptr<LockCore>> gone;
  {
    std::lock_guard g(mu_);
    for (const auto& l : locks) {
      if (std::find(held_names.begin(), held_names.end(), l->name) != held_names.end()) continue;
      // Only if still registered: a lock released by its owner meanwhile is not lost.
      auto it = std::find_if(locks_.begin(), locks_.end(),
                             [&](const HeldLock& h) { return h.raw == l.get(); });
      if (it == locks_.end()) continue;
      locks_.erase(it);
      gone.push_back(l);
    }
  }
  for (auto& l : gone) {
    l->loss.Lose("lease " + std::to_string(id_) + " no longer holds '" + l->name +
                 "': released elsewhere, force-released by an operator, or revoked");
  }
}

bool LeaseCore::MarkRevoked() {
  std::lock_guard lock(mu_);
  return !std::exchange(revoked_, true);
}

}  // namespace lockd::client
