#include <utility>

#include "client/lease_state.h"

namespace lockd::client {

void Lease::State::Acknowledged(BootTime sent) {
  std::lock_guard lock(mu_);
  if (lost_) return;  // a lost lease never becomes valid again
  const BootTime until = sent + ttl_ - margin_;
  if (until > valid_until_) valid_until_ = until;  // answers may arrive out of order
  if (sent > last_sent_) last_sent_ = sent;
}

void Lease::State::RenewalSent(BootTime sent) {
  std::lock_guard lock(mu_);
  last_sent_ = sent;
}

uint64_t Lease::State::NextRenewSeq() {
  std::lock_guard lock(mu_);
  return ++renew_seq_;
}

BootTime Lease::State::next_renewal(int divisor) const {
  std::lock_guard lock(mu_);
  return last_sent_ + ttl_ / divisor;
}

bool Lease::State::valid() const {
  std::lock_guard lock(mu_);
  return !lost_ && clock_->Now() < valid_until_;
}

BootTime Lease::State::valid_until() const {
  std::lock_guard lock(mu_);
  return valid_until_;
}

std::string Lease::State::lost_reason() const {
  std::lock_guard lock(mu_);
  if (!lost_ && clock_->Now() >= valid_until_) return "no renewal was acknowledged in time";
  return reason_;
}

void Lease::State::OnLost(std::function<void(const std::string&)> f) {
  std::unique_lock lock(mu_);
  if (lost_) {
    std::string reason = reason_;
    lock.unlock();
    f(reason);
    return;
  }
  on_lost_.push_back(std::move(f));
}

void Lease::State::MarkLost(const std::string& reason) {
  std::vector<std::function<void(const std::string&)>> callbacks;
  {
    std::lock_guard lock(mu_);
    if (lost_) return;
    lost_ = true;
    reason_ = reason;
    callbacks.swap(on_lost_);
  }
  for (auto& f : callbacks) f(reason);
}

void Lease::State::CheckExpired() {
  bool expired;
  {
    std::lock_guard lock(mu_);
    expired = !lost_ && clock_->Now() >= valid_until_;
  }
  if (expired) MarkLost("no renewal was acknowledged in time");
}

Lease::Lease(std::shared_ptr<State> state)
    : id_(state->id()), ttl_(state->ttl()), state_(std::move(state)) {}

bool Lease::valid() const {
  return state_->valid();
}
BootTime Lease::valid_until() const {
  return state_->valid_until();
}
std::string Lease::lost_reason() const {
  return state_->lost_reason();
}
void Lease::OnLost(std::function<void(const std::string&)> f) {
  state_->OnLost(std::move(f));
}

}  // namespace lockd::client
