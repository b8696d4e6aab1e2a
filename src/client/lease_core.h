// The client's lease and lock bookkeeping, behind the public Lease and Lock handles. No gRPC, no
// threads of its own, time passed in or read from an injected clock: the loss rules of design
// guarantee 5 live here and are unit-tested with a fake clock (tests/client/lease_core_test.cc).
//
// Rules:
// - valid_until = (send time of the acknowledged renewal + TTL − margin), the largest over every
//   acknowledged renewal (answers may come out of order); the grant is anchored at the send time of
//   its request's first attempt.
// - An answer counts only if its sequence number names a renewal this lease sent and has not had
//   answered yet: a replayed or unknown answer is never a renewal.
// - Loss is decided once: at valid_until (by whoever looks first at or after it; the renewal thread
//   wakes for it), on NOT_FOUND, a revoke, or a cluster-id change. It is final: valid_until is
//   frozen, an answer arriving later is ignored, no renewal goes out; the signal (callbacks,
//   stop_token) fires once.
// - A signal is disarmed when its owner releases or destroys the object it was registered on: no
//   callback starts after that, and one already running is waited for.
// - A Lock is lost with its lease, or when an answer to a renewal sent after the Lock's grant
//   answer was received no longer lists its token (force-release, revoke, release elsewhere).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "lockd/client.h"

namespace lockd::client {

using TimePoint = BootClock::time_point;
using NowFn = std::function<TimePoint()>;

/// A one-shot "lost" signal: a reason, callbacks, a stop_source. Thread-safe.
class LossSignal {
 public:
  /// Loses with `reason` unless already lost; true if this call did it. Callbacks run here,
  /// outside the lock, one after the other, each only if the signal is still armed.
  bool Lose(const std::string& reason);
  bool lost() const;
  std::string reason() const;
  /// Runs `f` once at the loss (here, at once, if already lost); never once disarmed.
  void OnLost(std::function<void(const std::string&)> f);
  /// The owner is done with the object: no callback starts from now on, and one running on
  /// another thread is waited for (one running on this thread, i.e. a callback that releases its
  /// own lock, is not: it is the caller). The stop_token is left as it is.
  void Disarm();
  std::stop_token token() const { return stop_.get_token(); }

 private:
  mutable std::mutex mu_;          ///< guards everything below except stop_
  std::condition_variable fired_;  ///< firing_ turned false
  bool lost_ = false;
  bool disarmed_ = false;
  bool firing_ = false;  ///< Lose is running callbacks on firing_thread_
  std::thread::id firing_thread_;
  std::string reason_;
  std::deque<std::function<void(const std::string&)>> callbacks_;
  std::stop_source stop_;
};

struct LockCore;
class ClientCore;

class LeaseCore {
 public:
  LeaseCore(uint64_t id, std::chrono::milliseconds ttl, std::chrono::nanoseconds margin, NowFn now,
            bool renewed);

  uint64_t id() const { return id_; }
  std::chrono::milliseconds ttl() const { return ttl_; }
  /// Renewed by the client's KeepAlive stream (false for the one-call form's lease).
  bool renewed() const { return renewed_; }
  TimePoint Now() const { return now_(); }

  /// The grant answered; its request was first sent at `sent`.
  void Anchor(TimePoint sent);
  /// A renewal with client-wide sequence number `seq` is about to be sent at `sent`. False (and
  /// nothing recorded) if the lease is lost: no renewal goes out after the loss was decided.
  bool RenewalSent(uint64_t seq, TimePoint sent);

  enum class Answer { kApplied, kLateLost, kUnknownSeq };
  /// An acknowledging answer to renewal `seq`, received at `now`. `held` lists the tokens the
  /// lease holds as the leader answered (nullopt: the server did not say).
  Answer Acknowledged(uint64_t seq, TimePoint now,
                      const std::optional<std::vector<uint64_t>>& held);

  /// Loses the lease if `now` is at or past valid_until. True if it is lost (now or before).
  bool DecideLoss(TimePoint now);
  /// Loses the lease (and every lock on it) now; later calls change nothing.
  void Lose(const std::string& reason);

  /// A lost lease does not read the clock (nothing is left to decide).
  bool Valid() { return !Lost() && !DecideLoss(now_()); }
  /// Lost (decided), without deciding anything.
  bool Lost() const;
  TimePoint ValidUntil() const;
  LossSignal& loss() { return loss_; }

  /// A Lock granted on this lease, its grant answer received when the client's last renewal
  /// sequence number was `seq_floor`: answers to renewals numbered above it judge the token.
  void AddLock(const std::shared_ptr<LockCore>& lock, uint64_t token, uint64_t seq_floor);
  void RemoveLock(const LockCore* lock);
  /// A Lock registered on this lease has `token` / is for `name` (a lease holds a name at most
  /// once). Unowned: the tokens of `held` no registered Lock has.
  bool OwnsToken(uint64_t token) const;
  bool OwnsName(const std::string& name) const;
  std::vector<uint64_t> Unowned(const std::vector<uint64_t>& held) const;
  /// The locks registered now (for a holdings probe, see Renewer).
  std::vector<std::shared_ptr<LockCore>> Locks();
  /// After a linearizable read that began once `locks` were registered said the lease holds
  /// `held_names`: every one of `locks` still registered whose name is missing is lost.
  void JudgeHeldNames(const std::vector<std::shared_ptr<LockCore>>& locks,
                      const std::vector<std::string>& held_names);

  /// True the first time: the lease is being revoked by its owner (destruction revokes once).
  bool MarkRevoked();

  std::weak_ptr<ClientCore> client;  ///< set once by the Client that granted it

 private:
  struct HeldLock {
    std::weak_ptr<LockCore> lock;
    const LockCore* raw;  ///< identity only, never dereferenced
    std::string name;
    uint64_t token;
    uint64_t seq_floor;
  };
  /// Announces the loss already recorded in lost_: the signal, then every lock.
  void Fire(const std::string& reason);
  void LoseLocks(const std::string& reason);

  const uint64_t id_;
  const std::chrono::milliseconds ttl_;
  const std::chrono::nanoseconds margin_;
  const NowFn now_;
  const bool renewed_;
  LossSignal loss_;

  mutable std::mutex mu_;  ///< guards everything below; taken before loss_'s, never after
  bool lost_ = false;      ///< decided (valid_until_ frozen from then on)
  TimePoint valid_until_{};
  std::map<uint64_t, TimePoint> outstanding_;  ///< renewal seq → send time, not yet answered
  std::vector<HeldLock> locks_;
  bool revoked_ = false;
};

/// What a Lock handle points at.
struct LockCore {
  std::string name;
  Mode mode = Mode::kExclusive;
  bool acquired = false;
  uint64_t token = 0, fence = 0, lease_id = 0;
  std::string cluster_id;  ///< of the cluster that granted it (empty if not acquired)
  std::vector<uint64_t> holder_leases;
  std::shared_ptr<Lease> lease;  ///< keeps the lease (and its renewals) alive while held
  bool one_call = false;         ///< the lease is this lock's own: releasing revokes it
  std::weak_ptr<ClientCore> client;
  LossSignal loss;

  std::mutex mu;  ///< guards released
  bool released = false;
};

}  // namespace lockd::client
