#include "client/lease_core.h"

#include <algorithm>
#include <utility>

namespace lockd::client {

bool LossSignal::Lose(const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    if (lost_) return false;
    lost_ = true;
    reason_ = reason;
    firing_ = true;
    firing_thread_ = std::this_thread::get_id();
  }
  stop_.request_stop();
  // One at a time, each only if still armed: a Disarm between two callbacks stops the rest.
  for (;;) {
    std::function<void(const std::string&)> f;
    {
      std::lock_guard lock(mu_);
      if (disarmed_ || callbacks_.empty()) {
        firing_ = false;
        break;
      }
      f = std::move(callbacks_.front());
      callbacks_.pop_front();
    }
    f(reason);
  }
  fired_.notify_all();
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
  if (disarmed_) return;
  if (!lost_) {
    callbacks_.push_back(std::move(f));
    return;
  }
  std::string reason = reason_;
  lock.unlock();
  f(reason);
}

void LossSignal::Disarm() {
  std::deque<std::function<void(const std::string&)>> dropped;
  {
    std::unique_lock lock(mu_);
    disarmed_ = true;
    dropped.swap(callbacks_);
    const auto me = std::this_thread::get_id();
    fired_.wait(lock, [&] { return !firing_ || firing_thread_ == me; });
  }
  // `dropped` is destroyed here, outside the lock: a callback's captures may do anything.
}

LeaseCore::LeaseCore(uint64_t id, std::chrono::milliseconds ttl, std::chrono::nanoseconds margin,
                     NowFn now, bool renewed)
    : id_(id), ttl_(ttl), margin_(margin), now_(std::move(now)), renewed_(renewed) {}

void LeaseCore::Anchor(TimePoint sent) {
  std::lock_guard lock(mu_);
  valid_until_ = std::max(valid_until_, sent + ttl_ - margin_);
}

bool LeaseCore::RenewalSent(uint64_t seq, TimePoint sent) {
  std::lock_guard lock(mu_);
  if (lost_) return false;
  // A renewal that could not extend validity any more is not worth remembering; the map stays
  // bounded by the renewals of about one TTL.
  while (!outstanding_.empty() && outstanding_.begin()->second + ttl_ - margin_ <= valid_until_)
    outstanding_.erase(outstanding_.begin());
  outstanding_[seq] = sent;
  return true;
}

namespace {
constexpr const char* kExpired = "no renewal was acknowledged in time (valid_until passed)";
}  // namespace

LeaseCore::Answer LeaseCore::Acknowledged(uint64_t seq, TimePoint now,
                                          const std::optional<std::vector<uint64_t>>& held) {
  // Declared before the lock guard, so the last reference to a LockCore (whose destruction may
  // revoke this lease) is dropped after mu_ is released.
  std::vector<std::shared_ptr<LockCore>> gone, kept;
  bool expired = false, was_lost = false;
  {
    std::lock_guard lock(mu_);
    // Loss is decided before the answer is looked at, under the lock that guards the extension:
    // an answer arriving at or after valid_until comes too late, whatever renewal it answers,
    // and once the lease is lost (by any thread) valid_until never moves again.
    if (!lost_ && now >= valid_until_) lost_ = expired = true;
    if (lost_) {
      was_lost = true;
      outstanding_.clear();
    } else {
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
          if (seq > h->seq_floor &&
              std::find(held->begin(), held->end(), h->token) == held->end()) {
            gone.push_back(std::move(l));
            h = locks_.erase(h);
            continue;
          }
          kept.push_back(std::move(l));
          ++h;
        }
      }
    }
  }
  if (expired) Fire(kExpired);
  if (was_lost) return Answer::kLateLost;
  for (auto& l : gone) {
    l->loss.Lose("the lease no longer holds '" + l->name + "' (token " + std::to_string(l->token) +
                 "): released elsewhere, force-released by an operator, or revoked");
  }
  return Answer::kApplied;
}

bool LeaseCore::DecideLoss(TimePoint now) {
  bool expired = false, lost;
  {
    std::lock_guard lock(mu_);
    if (!lost_ && now >= valid_until_) lost_ = expired = true;
    lost = lost_;
  }
  if (expired) Fire(kExpired);
  return lost;
}

void LeaseCore::Lose(const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    lost_ = true;  // freezes valid_until and stops renewals before anyone hears of the loss
    outstanding_.clear();
  }
  Fire(reason);
}

void LeaseCore::Fire(const std::string& reason) {
  loss_.Lose(reason);
  // Every lock is lost with the lease, also one registered after a racing Lose.
  LoseLocks(loss_.reason());
}

bool LeaseCore::Lost() const {
  std::lock_guard lock(mu_);
  return lost_;
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
    locks_.push_back({lock, lock.get(), lock->name, token, seq_floor});
  }
  if (loss_.lost()) LoseLocks(loss_.reason());
}

void LeaseCore::RemoveLock(const LockCore* lock) {
  std::lock_guard g(mu_);
  std::erase_if(locks_, [&](const HeldLock& h) { return h.raw == lock || h.lock.expired(); });
}

bool LeaseCore::OwnsToken(uint64_t token) const {
  std::lock_guard g(mu_);
  return std::any_of(locks_.begin(), locks_.end(),
                     [&](const HeldLock& h) { return h.token == token; });
}

bool LeaseCore::OwnsName(const std::string& name) const {
  std::lock_guard g(mu_);
  return std::any_of(locks_.begin(), locks_.end(),
                     [&](const HeldLock& h) { return h.name == name; });
}

std::vector<uint64_t> LeaseCore::Unowned(const std::vector<uint64_t>& held) const {
  std::vector<uint64_t> out;
  std::lock_guard g(mu_);
  for (uint64_t t : held) {
    if (std::none_of(locks_.begin(), locks_.end(), [&](const HeldLock& h) { return h.token == t; }))
      out.push_back(t);
  }
  return out;
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
