// Lease::State: the bookkeeping behind one lease, shared by the caller's Lease handle and the
// Client's renewal thread. It decides when the lease is lost: at (send time of the last
// acknowledged renewal + TTL − margin), by the client's own clock, and never un-loses it.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "base/clock.h"
#include "lockd/client.h"

namespace lockd::client {

struct Lease::State {
  State(uint64_t id, std::chrono::milliseconds ttl, std::chrono::nanoseconds margin,
        const Clock* clock)
      : id_(id), ttl_(ttl), margin_(margin), clock_(clock) {}

  uint64_t id() const { return id_; }
  std::chrono::milliseconds ttl() const { return ttl_; }

  /// A renewal (or the grant) sent at `sent` was acknowledged: the server's deadline is at least
  /// sent + TTL, since it received the request after we sent it.
  void Acknowledged(BootTime sent);
  void RenewalSent(BootTime sent);
  uint64_t NextRenewSeq();
  /// When the next renewal is due: ttl/divisor after the last one sent.
  BootTime next_renewal(int divisor) const;

  bool valid() const;
  BootTime valid_until() const;
  std::string lost_reason() const;
  void OnLost(std::function<void(const std::string&)> f);
  /// Loses the lease now, with a reason; later calls change nothing.
  void MarkLost(const std::string& reason);
  /// Loses the lease if its validity has run out.
  void CheckExpired();

 private:
  const uint64_t id_;
  const std::chrono::milliseconds ttl_;
  const std::chrono::nanoseconds margin_;
  const Clock* const clock_;

  mutable std::mutex mu_;  ///< guards everything below
  BootTime valid_until_;
  BootTime last_sent_;
  uint64_t renew_seq_ = 0;
  bool lost_ = false;
  std::string reason_;
  std::vector<std::function<void(const std::string&)>> on_lost_;
};

}  // namespace lockd::client
