// LockStateMachine: the replicated lease and lock state, and the deterministic apply of committed
// commands (design brief, guarantees 1, 2, 6, 8 and "Exactly once").
//
// Every node applies the same entries in the same order and reaches the same state: the class
// reads no clock, does no I/O, starts no thread, and iterates only ordered containers. Expiry and
// wait timeouts are decided by the leader and arrive as commands. A release, revoke, expiry,
// cancel or timeout hands the lock to the next waiters in the same apply (FIFO; a waiting
// EXCLUSIVE request is never overtaken by later SHARED ones), and the ApplyResult says which
// earlier Acquires that completed, so the runtime can answer their callers at once.
//
// Owned by the node runtime's apply thread; not thread-safe. Reads are for the same thread (or
// under the runtime's own lock).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "lock/command.h"
#include "lock/exactly_once.h"
#include "lock/outcome.h"
#include "lock/types.h"

namespace lockd::lock {

/// 2: each exactly-once client carries forgotten_through. 3: the exactly-once table carries the
/// age clock's samples. 4: each lease carries its owner. Versions 1 to 3 are still read.
inline constexpr uint8_t kSnapshotFormatVersion = 4;

/// A snapshot with a token or lease-id counter above this is refused: one grant or lease at a
/// time, it is 2^63 of them away from wrapping (found by the lock_snapshot fuzz target: a counter
/// restored at 2^64-1 wrapped to 0 at the next lease).
inline constexpr uint64_t kMaxSnapshotCounter = uint64_t{1} << 63;
/// A restore as a new cluster never starts a counter above this: 2^62 grants of headroom before
/// its snapshots would be refused.
inline constexpr uint64_t kMaxStartCounter = uint64_t{1} << 62;

struct LockView {
  std::string name;
  std::vector<HolderView> holders;
  std::vector<WaiterView> waiters;  ///< in grant order
  bool operator==(const LockView&) const = default;
};

struct LeaseView {
  LeaseId id;
  uint64_t ttl_ms = 0;
  std::string label;
  RequestId granted_by;
  std::string owner;  ///< the identity that granted it (empty: access control was off)
  std::vector<std::string> held;
  std::vector<uint64_t> held_tokens;  ///< the token of each grant in `held`, in its order
  std::vector<std::string> waiting;
  bool operator==(const LeaseView&) const = default;
};

template <typename T>
struct Page {
  std::vector<T> items;
  std::string next;  ///< where the next page starts; empty on the last page
};

class LockStateMachine {
 public:
  explicit LockStateMachine(Limits limits = {}) : limits_(limits) {}

  /// Applies the committed entry at `index` (indices increase). A malformed entry or a newer
  /// format is an error: the node must stop rather than diverge from its peers.
  Result<ApplyResult> Apply(LogIndex index, std::string_view entry);
  /// Applies an already-decoded command (the simulator and tests use this). `format`: the
  /// command format of the entry it came from; a format-2 entry is applied with the rules it was
  /// written under (no exactly-once reserve), so nodes that applied it before and after an
  /// upgrade agree.
  ApplyResult ApplyCommand(LogIndex index, const Command& command, int64_t wall_seconds = 0,
                           uint8_t format = kCommandFormatVersion);

  // --- inspection ---
  std::optional<LockView> GetLock(std::string_view name) const;
  /// The outcome `c` would get from the log if it is a try-lock that fails (so it changes
  /// nothing, not even a lease): for the read path, which answers such a first attempt after a
  /// ReadIndex instead of a log entry (design brief, "Exactly once"). nullopt whenever the log
  /// could answer anything else: a grant, a wait, an error, or a recorded or refused request id.
  std::optional<Outcome> FailedTryLock(const Acquire& c) const;
  /// Locks whose name starts with `prefix`, by name, after `after` (exclusive), at most `limit`.
  Page<LockView> ListLocks(std::string_view prefix, std::string_view after, size_t limit) const;
  std::optional<LeaseView> GetLease(LeaseId id) const;
  Page<LeaseView> ListLeases(LeaseId after, size_t limit) const;
  /// Every lease with its TTL: a new leader starts their deadlines from these.
  std::vector<std::pair<LeaseId, uint64_t>> LeaseTtls() const;
  /// Every pending wait: a new leader re-arms their timers.
  std::vector<WaitStarted> PendingWaits() const;

  FencingToken token_counter() const { return FencingToken(token_counter_); }
  LeaseId lease_counter() const { return LeaseId(lease_counter_); }
  LogIndex applied() const { return applied_; }
  int64_t wall_seconds() const { return wall_seconds_; }
  size_t lock_count() const { return locks_.size(); }
  /// Grants held and Acquires waiting, over every lock (kept as they change: O(1)).
  size_t holder_count() const { return holder_count_; }
  size_t waiter_count() const { return waiter_count_; }
  size_t lease_count() const { return leases_.size(); }
  /// What `principal`'s leases hold: live leases, and names held plus waited for.
  struct Usage {
    size_t leases = 0;
    size_t locks = 0;
    bool operator==(const Usage&) const = default;
  };
  Usage UsageOf(std::string_view principal) const;
  /// The owner of lease `id` (empty when access control was off), or nullopt when unknown.
  std::optional<std::string> OwnerOf(LeaseId id) const;
  const Limits& limits() const { return limits_; }
  const ExactlyOnce& exactly_once() const { return once_; }

  // --- snapshots ---
  std::string Snapshot() const;
  static Result<LockStateMachine> Restore(std::string_view snapshot, Limits limits);
  /// A new cluster from a backup (guarantee 8): no leases, no holders, no waiters, no outcomes;
  /// the token and lease-id counters start at max(floor, counter + 2^32 × (1 + whole seconds
  /// from the backup's wall time to `now_wall_seconds`)).
  static Result<LockStateMachine> RestoreAsNewCluster(std::string_view snapshot, Limits limits,
                                                      int64_t now_wall_seconds, uint64_t floor);
  /// The same start from the backup's two counters and wall time alone (no state to decode), so a
  /// restored cluster's leader computes it without the old state.
  static Result<LockStateMachine> NewClusterFrom(Limits limits, uint64_t token_counter,
                                                 uint64_t lease_counter, int64_t from_wall_seconds,
                                                 int64_t now_wall_seconds, uint64_t floor);

  /// Aborts (LOCKD_CHECK) if the structure is inconsistent; the simulator and tests call it
  /// after every apply.
  void CheckInvariants() const;
  bool operator==(const LockStateMachine& o) const;

 private:
  struct Holder {
    LeaseId lease;
    Mode mode = Mode::kExclusive;
    FencingToken token;
    FencingToken fence;
    RequestId acquired_by;
    LogIndex granted_at;
    bool operator==(const Holder&) const = default;
  };
  struct Waiter {
    LeaseId lease;
    Mode mode = Mode::kExclusive;
    RequestId acquire;
    uint64_t wait_ms = 0;
    LogIndex enqueued_at;
    bool created_lease = false;  ///< the Acquire granted this lease itself (lease_id was 0)
    bool operator==(const Waiter&) const = default;
  };
  struct Lock {
    std::vector<Holder> holders;
    std::vector<Waiter> waiters;
    bool operator==(const Lock&) const = default;
  };
  struct Lease {
    uint64_t ttl_ms = 0;
    std::string label;
    RequestId granted_by;
    std::string owner;              ///< the Caller principal that granted it
    std::set<std::string> held;     ///< derived from locks_, kept for O(held) revoke
    std::set<std::string> waiting;  ///< likewise
    bool operator==(const Lease&) const = default;
  };
  using LockMap = std::map<std::string, Lock, std::less<>>;

  /// The apply in progress: the result being built and the entry's index.
  struct Ctx {
    LogIndex index;
    ApplyResult result;
    void Emit(Event::Type type, const std::string& name, LeaseId lease, Mode mode,
              FencingToken token, FencingToken fence);
  };

  /// Why the locks and leases break an invariant, or nullptr: CheckInvariants aborts on it and
  /// Restore refuses a snapshot with it.
  const char* LockTableViolation() const;
  Outcome Execute(Ctx& ctx, const Command& command);
  /// Whether `command` would free a lease, a hold or a wait if run now: only such a request may
  /// use the exactly-once reserve above --max-outcomes (OutcomeReserve), so a table filled by a
  /// flood of new clients never stops a holder from releasing or an operator from revoking.
  bool Frees(const Command& command) const;
  Outcome DoGrantLease(Ctx& ctx, const GrantLease& c);
  Outcome DoAcquire(Ctx& ctx, const Acquire& c);
  Outcome DoCancel(Ctx& ctx, const Cancel& c);
  Outcome DoRelease(Ctx& ctx, const Release& c);
  Outcome DoForceRelease(Ctx& ctx, const ForceRelease& c);
  Outcome EndLease(Ctx& ctx, LeaseId id, bool expired);
  void DoWaitTimeout(Ctx& ctx, const WaitTimeout& c);

  /// A new lease; the caller has checked the limits.
  LeaseId CreateLease(Ctx& ctx, uint64_t ttl_ms, const std::string& label, const RequestHeader& by);
  /// The cluster's lease limits, then the caller's lease quota.
  Status CheckLeaseLimits(const std::string& label, const Caller& caller) const;
  /// PERMISSION_DENIED unless `caller` may act with lease `id`: it owns it (a lease granted with
  /// access control off is owned by the empty principal), or `admin_may` and it is cluster admin.
  /// OK for an unknown lease (the command answers that itself), and when access control is off
  /// (no principal).
  Status CheckOwner(LeaseId id, const Caller& caller, bool admin_may) const;
  /// Names held or waited for, per owner: +1 or -1 as a lease of `lease` gains or loses one.
  void CountLock(LeaseId lease, int delta);
  /// Every check of an Acquire, changing nothing: its error outcome, or nullopt and whether the
  /// lock could be granted at once.
  std::optional<Outcome> CheckAcquire(const Acquire& c, bool* grantable) const;
  void Grant(Ctx& ctx, const std::string& name, Lock& lock, LeaseId lease, Mode mode,
             const RequestId& by, FencingToken* token, FencingToken* fence);
  /// Removes holder `i` (event of `type`), then promotes waiters. Erases an empty lock.
  void RemoveHolder(Ctx& ctx, LockMap::iterator it, size_t i, Event::Type type);
  /// Removes waiter `i`, completes its Acquire with acquired=false and `why`, then promotes.
  void RemoveWaiter(Ctx& ctx, LockMap::iterator it, size_t i, const std::string& why,
                    Event::Type type);
  /// Grants the queue's head while it is compatible with the holders (FIFO, no overtaking).
  void Promote(Ctx& ctx, const std::string& name, Lock& lock);
  void EraseIfEmpty(LockMap::iterator it);
  std::vector<HolderView> HolderViews(const Lock& lock) const;
  LockView ViewOf(const std::string& name, const Lock& lock) const;
  LeaseView ViewOf(LeaseId id, const Lease& lease) const;
  static bool Compatible(const Lock& lock, Mode mode);

  Limits limits_;
  LockMap locks_;  ///< only names held or waited for
  std::map<LeaseId, Lease> leases_;
  std::map<std::string, size_t, std::less<>> leases_per_label_;
  /// Derived (not encoded): per owner with a principal, its leases and their holds and waits.
  std::map<std::string, Usage, std::less<>> usage_;
  ExactlyOnce once_;
  size_t holder_count_ = 0;     ///< derived from locks_ (not encoded): holders over every lock
  size_t waiter_count_ = 0;     ///< the same for waiters
  uint64_t token_counter_ = 0;  ///< the last token granted
  uint64_t lease_counter_ = 0;  ///< the last lease id granted
  LogIndex applied_;
  int64_t wall_seconds_ = 0;  ///< the newest leader stamp applied
};

}  // namespace lockd::lock
