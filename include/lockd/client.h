// The lockd C++ client library (link lockd::client; docs/client.md is the guide).
//
//   auto client = lockd::client::Client::Connect({});            // endpoints: $LOCKD_ENDPOINTS
//   auto lease = (*client)->GrantLease(std::chrono::seconds(10), "billing-worker-3");
//   auto lock = (*client)->Acquire("wallet/42", *lease, {.wait = std::chrono::seconds(5), .stop =
//   {}}); if (lock.ok() && lock->held()) {
//     wallet.Withdraw(42, amount, lock->fence());  // the wallet checks the fence (lockd::Fence)
//   }                                              // ~Lock releases
//
// What it does for you (design guarantee 5):
// - renews every lease of the client over one KeepAlive stream, about every TTL/3 (jittered in
//   [0.8, 1] of that), the first time a period after the grant's first send (at once if the grant
//   answered late), matching each answer to its renewal by sequence number; a renewal that goes
//   unanswered, or a broken stream, moves the stream to the next endpoint at once and renews again
//   there. The renewal thread never blocks on the network (a callback stream);
// - treats a lease as lost at valid_until() = (send time of the last acknowledged renewal + TTL −
//   margin), margin = 2ρ·TTL + a floor, on CLOCK_BOOTTIME. The renewal thread wakes at every
//   lease's valid_until (the one-call form's too), so the loss fires without anyone polling. Loss
//   is decided once and is final: valid_until never moves again, no renewal goes out, a renewal
//   answer that arrives later changes nothing; the lost signal fires once;
// - GrantLease answers an error, not a lease, when its answer comes after the lease's validity
//   (counted from the first attempt's send), and revokes that lease;
// - reports a Lock lost when its lease is lost, or when a renewal sent after the grant arrived
//   answers that the lease no longer holds its token (an operator force-release, a revoke);
// - withdraws every Acquire the caller gives up on (deadline, stop_token, error) with Cancel
//   naming its request id, which also gives back a grant that raced the give-up;
// - retries a call after UNAVAILABLE or a broken connection with the same request id (answered
//   exactly once by the server), on the leader named by `lockd-leader` or the next endpoint, with
//   bounded attempts and exponential back-off jittered in [1/2, 1] of the step, never past the
//   caller's deadline (deadlines are on steady_clock);
// - loses every lease at once when the cluster id in a response changes (a restored cluster);
// - revokes a lease when its last handle is destroyed and every lease when the Client is
//   destroyed, so a stopped process's locks are free at once (a crashed one's wait for the TTL).
//
// The lost signal is advisory: a thread can check it and then pause past the lease. Only the
// fence, checked by the resource (lockd::Fence), protects the resource.
//
// Thread-safety: Client, Lease and Lock may be used from many threads at once (one Lock object is
// not meant to be released from two threads at once, but it is safe).
//
// Lost callbacks (OnLost) must not block. They run on one of these threads:
// - the client's renewal thread: valid_until passed, a NOT_FOUND renewal answer, a renewal answer
//   that no longer lists a lock's token, a changed cluster id seen on the KeepAlive stream;
// - the client's cleanup thread: a holdings probe (GetLease, for a server that does not list held
//   tokens) that finds a lock gone, or a changed cluster id seen by its background calls;
// - the thread that calls valid(), held() or lost_reason() at or after valid_until (it decides the
//   loss), or OnLost() on an already lost object (the callback runs at once, there);
// - the thread that calls any other Client method whose response carries a changed cluster id,
//   or, for AcquireAsync and ReleaseAsync, the gRPC thread that received that response;
// - the thread that calls Lease::Revoke() (the callbacks of that lease's Locks) or destroys the
//   Client (every lease still held is revoked and lost).
// A callback never starts after the object it was registered on is released (Lock::Release,
// ReleaseAsync, Lease::Revoke) or destroyed: that disarms it first. One already running on another
// thread at that moment is waited for — Release, Revoke and the destructors block until it returns
// — so its captures stay valid while it runs. A callback may release or destroy its own object (no
// wait then). The stop_token is still signalled at the loss; std::stop_callback has its own rules.
//
// Asynchronous answers (AcquireAsync's and ReleaseAsync's `done`) run on the client's callback
// thread, one at a time, never on the caller's thread and never on a gRPC thread; destroying the
// Client cancels the calls in flight and returns after their `done` ran. ReleaseAsync on a Lock
// whose Client is already gone runs `done` at once on the calling thread (no library thread is
// left). A Client destroyed from one of its own callbacks finishes its shutdown on a detached
// thread: see docs/client.md ("Detached threads") before exiting right after.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "lockd/status.h"

namespace lockd::client {

/// CLOCK_BOOTTIME as a std::chrono clock: it keeps counting through suspend, unlike
/// steady_clock. Every lease time the library reports is on this clock.
struct BootClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<BootClock>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept;
};

struct ClientOptions {
  /// host:port of the cluster's nodes. Empty: $LOCKD_ENDPOINTS (comma separated), else
  /// 127.0.0.1:7401.
  std::vector<std::string> endpoints;
  /// How long one call may take when the caller gives no deadline of its own (an Acquire's
  /// deadline is its wait; see LockOptions).
  std::chrono::milliseconds call_timeout{5000};
  /// Attempts of one call at most (UNAVAILABLE, a broken connection, a hung node). The default
  /// is more than fit in call_timeout at max_backoff, so a call rides out an election (about
  /// 1-2 s after a leader dies) and gives up only at its deadline.
  int max_attempts = 32;
  /// Back-off after the first failed attempt; doubles up to max_backoff; each pause is jittered
  /// in [1/2, 1] of its step. The cap bounds how long a client sleeps past the moment a new
  /// leader is elected.
  std::chrono::milliseconds initial_backoff{20};
  std::chrono::milliseconds max_backoff{250};
  /// ρ, the assumed bound on the clock-drift rate between client and servers (design: 1%).
  double drift = 0.01;
  /// The fixed part of the safety margin (scheduling delay between a check and its use).
  std::chrono::milliseconds margin_floor{100};
  /// Renew about every ttl / renew_divisor.
  int renew_divisor = 3;
  /// TLS (docs/security.md): the CA that signed the nodes' certificates, and this client's own
  /// certificate and key when the cluster asks for one. All empty: $LOCKD_CACERT, $LOCKD_CERT
  /// and $LOCKD_KEY; those empty too: plaintext. A node's certificate must match the address
  /// dialed (its DNS or IP SANs).
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  /// A bearer token, for a cluster that checks identities (`lockd --access-file`; see
  /// docs/security.md) where this client has no certificate of its own: every call carries
  /// `authorization: Bearer <token>` (plaintext channels too: development only, the token then
  /// travels in the clear). Give the token, or a file holding it (its trailing whitespace is
  /// dropped), not both; both empty: $LOCKD_AUTH_TOKEN, else $LOCKD_AUTH_TOKEN_FILE; those
  /// empty too: no header. Connect refuses an unreadable or empty file (naming it) and a token
  /// that is not printable ASCII without spaces. The token is read once, at Connect (a rotated
  /// token takes a new Client), and never appears in a message or log line.
  std::string auth_token;
  std::string auth_token_file;
  /// For tests: the clock lease times are measured on. Unset: BootClock.
  std::function<BootClock::time_point()> clock;
  /// Where the library reports what it did on its own that no caller hears of (a grant released
  /// because no Lock of this client owns it). Called on the library's cleanup thread; must not
  /// block. Unset: one line on stderr.
  std::function<void(const std::string&)> log;
};

enum class Mode { kExclusive, kShared };

class Client;
class ClientCore;
class LeaseCore;
struct LockCore;
namespace detail {
struct Access;  ///< the library's own way in (defined in src/client); not for applications
}  // namespace detail

/// A lease held by this process. Handed out as shared_ptr: every Lock on it keeps it alive; when
/// the last handle goes, the lease is revoked (its locks are free at once).
class Lease {
 public:
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  uint64_t id() const;
  std::chrono::milliseconds ttl() const;
  /// True until the lease is lost; once false, never true again.
  bool valid() const;
  /// The lease is treated as lost from this instant unless a renewal is acknowledged first.
  BootClock::time_point valid_until() const;
  /// Why it was lost ("" while valid).
  std::string lost_reason() const;
  /// Runs `f(reason)` once when the lease is lost (at once, here, if it already is). Never after
  /// Revoke() or the last handle's destruction began (see "Lost callbacks" at the top).
  void OnLost(std::function<void(const std::string&)> f);
  /// Signalled when the lease is lost: pass it to the work done under the lease.
  std::stop_token stop_token() const;
  /// Revokes the lease now: its locks and waits are released at once; the lease is lost (the
  /// stop_token is signalled; OnLost callbacks are disarmed first, so they do not run).
  Status Revoke();

 private:
  friend struct detail::Access;
  explicit Lease(std::shared_ptr<LeaseCore> core);
  std::shared_ptr<LeaseCore> core_;
};

struct LockOptions {
  Mode mode = Mode::kExclusive;
  /// 0: try once. Otherwise wait in the lock's FIFO queue; the call returns within `wait` plus a
  /// small margin (docs/client.md), acquired or not.
  std::chrono::milliseconds wait{0};
  /// Gives up the wait when signalled (the call then answers CANCELLED). To wait until stopped,
  /// give a long `wait` (the server caps waits, by default at 10 minutes).
  std::stop_token stop;
};

/// A lock acquired (or not) by Client::Acquire. RAII: destroying a held Lock releases it. Movable,
/// not copyable.
class Lock {
 public:
  Lock() = default;
  Lock(Lock&&) noexcept = default;
  Lock& operator=(Lock&& other) noexcept;
  ~Lock();

  /// The Acquire got the lock. Not getting it is a normal answer, not an error.
  bool acquired() const;
  /// Acquired, not released, not reported lost, and now < valid_until(). Advisory (see top).
  bool held() const;
  explicit operator bool() const { return held(); }

  const std::string& name() const;
  Mode mode() const;
  uint64_t lease_id() const;
  /// The grant's token (unique to it) and fence (present this to the resource).
  uint64_t token() const;
  uint64_t fence() const;
  /// The cluster that granted it: a resource records it with the fence (lockd/fence_adapters.h).
  /// Empty when not acquired.
  const std::string& cluster_id() const;
  /// When not acquired: the leases that hold it.
  const std::vector<uint64_t>& holder_leases() const;

  /// The lease's valid_until(): the lock is never reported held past it.
  BootClock::time_point valid_until() const;
  std::string lost_reason() const;
  void OnLost(std::function<void(const std::string&)> f);
  std::stop_token stop_token() const;

  /// Releases the lock (once; later calls are OK and do nothing). If the cluster cannot answer
  /// now (an election, a hung node) the answer is UNAVAILABLE and the release goes on in the
  /// background with the same request id, for up to 30 s, until the cluster answers. Disarms
  /// the OnLost callbacks first (see "Lost callbacks" at the top).
  Status Release();
  /// Release() without blocking: returns at once; `done` runs once with what Release() would
  /// answer, on the client's callback thread (never on this one while the Client lives; once it
  /// is destroyed, here, at once). The Lock may be destroyed meanwhile. No `done` is fine.
  void ReleaseAsync(std::function<void(Status)> done);

 private:
  friend struct detail::Access;
  explicit Lock(std::shared_ptr<LockCore> core);
  std::shared_ptr<LockCore> core_;
};

/// Inspection results (docs/api.md has the fields' meaning).
struct HolderInfo {
  uint64_t lease_id = 0;
  std::string lease_label;
  Mode mode = Mode::kExclusive;
  uint64_t token = 0;
  uint64_t fence = 0;
};
struct WaiterInfo {
  uint64_t lease_id = 0;
  std::string lease_label;
  Mode mode = Mode::kExclusive;
};
struct LockInfo {
  std::string name;
  std::vector<HolderInfo> holders;
  std::vector<WaiterInfo> waiters;
};
struct LeaseInfo {
  uint64_t lease_id = 0;
  std::string label;
  std::chrono::milliseconds ttl{0};
  std::chrono::milliseconds remaining{0};
  std::vector<std::string> held, waiting;
};

/// One event of a Watch (see docs/api.md).
struct LockEvent {
  enum class Type { kAcquired, kReleased, kExpired, kWaiting, kCancelled, kOther };
  Type type = Type::kOther;
  std::string name;
  uint64_t lease_id = 0;
  uint64_t token = 0;
  uint64_t fence = 0;
  uint64_t index = 0;  ///< log index of the entry
};

class Client {
 public:
  /// Validates the options and sets up one channel per endpoint; does not contact the cluster.
  static Result<std::unique_ptr<Client>> Connect(ClientOptions options);
  /// Revokes every lease still held (bounded by call_timeout) and stops the renewal thread.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Result<std::shared_ptr<Lease>> GrantLease(std::chrono::milliseconds ttl,
                                            const std::string& label);

  /// Acquires `name` for `lease`: a try (wait 0), with a timeout, or until `stop`.
  Result<Lock> Acquire(const std::string& name, const std::shared_ptr<Lease>& lease,
                       LockOptions options = {});
  /// The one-call form (Redis's SET NX PX habit): a lease of `ttl` for this one lock, not
  /// renewed; the lock is held until released or until its TTL runs out.
  Result<Lock> AcquireWithTtl(const std::string& name, std::chrono::milliseconds ttl,
                              LockOptions options = {});

  /// The asynchronous form: returns at once; `done` runs once with the result, on the client's
  /// callback thread, never on the caller's (it must not block: it holds up other answers). No
  /// thread waits while the Acquire waits (gRPC's callback API and alarms); retries, the deadline,
  /// the stop_token and the withdrawal of an abandoned wait work as for Acquire().
  void AcquireAsync(const std::string& name, const std::shared_ptr<Lease>& lease,
                    LockOptions options, std::function<void(Result<Lock>)> done);

  // --- inspection (linearizable) ---
  Result<LockInfo> GetLock(const std::string& name);
  Result<LeaseInfo> GetLease(uint64_t lease_id);
  /// Every lock whose name starts with `prefix` (all pages).
  Result<std::vector<LockInfo>> ListLocks(const std::string& prefix);

  /// Watches `name` (or every name starting with it if `prefix`) from now, calling `on_event`
  /// for each event until `stop` is signalled or the stream ends; returns the stream's end.
  Status Watch(const std::string& name, bool prefix, std::stop_token stop,
               const std::function<void(const LockEvent&)>& on_event);

  /// The cluster id seen in responses ("" before the first).
  std::string cluster_id() const;
  /// The leader as the last response named it ("" when unknown).
  std::string leader() const;

 private:
  explicit Client(std::shared_ptr<ClientCore> core);
  std::shared_ptr<ClientCore> core_;
};

/// margin = 2ρ·TTL + floor: how much earlier than the server could expire it a lease is given up.
std::chrono::nanoseconds SafetyMargin(std::chrono::milliseconds ttl, double drift,
                                      std::chrono::milliseconds floor);

}  // namespace lockd::client
