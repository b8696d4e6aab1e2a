// LockStateMachine: inspection, snapshots and invariants.
#include <algorithm>

#include "base/check.h"
#include "base/codec.h"
#include "lock/state_machine.h"
#include "lock/wire.h"

namespace lockd::lock {

std::vector<HolderView> LockStateMachine::HolderViews(const Lock& lock) const {
  std::vector<HolderView> out;
  for (const auto& h : lock.holders) {
    out.push_back(HolderView{h.lease, leases_.at(h.lease).label, h.mode, h.token, h.fence,
                             h.acquired_by, h.granted_at});
  }
  return out;
}

LockView LockStateMachine::ViewOf(const std::string& name, const Lock& lock) const {
  LockView v{name, HolderViews(lock), {}};
  for (const auto& w : lock.waiters) {
    v.waiters.push_back(WaiterView{w.lease, leases_.at(w.lease).label, w.mode, w.acquire, w.wait_ms,
                                   w.enqueued_at});
  }
  return v;
}

LeaseView LockStateMachine::ViewOf(LeaseId id, const Lease& l) const {
  LeaseView v{id,      l.ttl_ms,
              l.label, l.granted_by,
              l.owner, {l.held.begin(), l.held.end()},
              {},      {l.waiting.begin(), l.waiting.end()}};
  v.held_tokens.reserve(v.held.size());
  for (const std::string& name : v.held) {
    const Lock& lock = locks_.at(name);
    auto h = std::find_if(lock.holders.begin(), lock.holders.end(),
                          [&](const Holder& x) { return x.lease == id; });
    LOCKD_CHECK(h != lock.holders.end());
    v.held_tokens.push_back(h->token.value());
  }
  return v;
}

LockStateMachine::Usage LockStateMachine::UsageOf(std::string_view principal) const {
  if (principal.empty()) return {};
  auto it = usage_.find(principal);
  return it == usage_.end() ? Usage{} : it->second;
}

std::optional<std::string> LockStateMachine::OwnerOf(LeaseId id) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  return it->second.owner;
}

std::optional<LockView> LockStateMachine::GetLock(std::string_view name) const {
  auto it = locks_.find(name);
  if (it == locks_.end()) return std::nullopt;
  return ViewOf(it->first, it->second);
}

Page<LockView> LockStateMachine::ListLocks(std::string_view prefix, std::string_view after,
                                           size_t limit) const {
  Page<LockView> page;
  auto it = after.empty() ? locks_.lower_bound(prefix) : locks_.upper_bound(after);
  if (!after.empty() && it != locks_.end() && it->first < prefix) it = locks_.lower_bound(prefix);
  for (; it != locks_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    if (page.items.size() == limit) {
      page.next = page.items.back().name;
      break;
    }
    page.items.push_back(ViewOf(it->first, it->second));
  }
  return page;
}

std::optional<LeaseView> LockStateMachine::GetLease(LeaseId id) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  return ViewOf(id, it->second);
}

Page<LeaseView> LockStateMachine::ListLeases(LeaseId after, size_t limit) const {
  Page<LeaseView> page;
  for (auto it = leases_.upper_bound(after); it != leases_.end(); ++it) {
    if (page.items.size() == limit) {
      page.next = std::to_string(page.items.back().id.value());
      break;
    }
    page.items.push_back(ViewOf(it->first, it->second));
  }
  return page;
}

std::vector<std::pair<LeaseId, uint64_t>> LockStateMachine::LeaseTtls() const {
  std::vector<std::pair<LeaseId, uint64_t>> out;
  for (const auto& [id, l] : leases_) out.emplace_back(id, l.ttl_ms);
  return out;
}

std::vector<WaitStarted> LockStateMachine::PendingWaits() const {
  std::vector<WaitStarted> out;
  for (const auto& [name, lock] : locks_) {
    for (const auto& w : lock.waiters)
      out.push_back(WaitStarted{name, w.acquire, w.lease, w.wait_ms});
  }
  return out;
}

// --- snapshots --------------------------------------------------------------------------------
// Layout: version, counters, applied index, wall seconds, leases (id, ttl, label, granted_by),
// locks (name, holders, waiters), the exactly-once table. A lease's held/waiting sets and the
// per-label counts are derived on restore.

std::string LockStateMachine::Snapshot() const {
  Writer w;
  w.U8(kSnapshotFormatVersion);
  w.Varint(token_counter_);
  w.Varint(lease_counter_);
  w.Varint(applied_.value());
  w.Varint(static_cast<uint64_t>(wall_seconds_));
  w.Varint(leases_.size());
  for (const auto& [id, l] : leases_) {
    w.Varint(id.value());
    w.Varint(l.ttl_ms);
    w.Bytes(l.label);
    PutRequestId(w, l.granted_by);
    w.Bytes(l.owner);
  }
  w.Varint(locks_.size());
  for (const auto& [name, lock] : locks_) {
    w.Bytes(name);
    w.Varint(lock.holders.size());
    for (const auto& h : lock.holders) {
      w.Varint(h.lease.value());
      w.U8(static_cast<uint8_t>(h.mode));
      w.Varint(h.token.value());
      w.Varint(h.fence.value());
      PutRequestId(w, h.acquired_by);
      w.Varint(h.granted_at.value());
    }
    w.Varint(lock.waiters.size());
    for (const auto& x : lock.waiters) {
      w.Varint(x.lease.value());
      w.U8(static_cast<uint8_t>(x.mode));
      PutRequestId(w, x.acquire);
      w.Varint(x.wait_ms);
      w.Varint(x.enqueued_at.value());
      w.U8(x.created_lease ? 1 : 0);
    }
  }
  once_.EncodeTo(w);
  return w.Take();
}

Result<LockStateMachine> LockStateMachine::Restore(std::string_view snapshot, Limits limits) {
  Reader r(snapshot);
  LockStateMachine sm(limits);
  uint8_t version = 0;
  if (!r.U8(&version)) return DataLoss("lock state snapshot is empty");
  if (version > kSnapshotFormatVersion) {
    return FailedPrecondition("lock state snapshot format " + std::to_string(version) +
                              " is newer than this node's " +
                              std::to_string(kSnapshotFormatVersion) + "; upgrade the node");
  }
  const auto bad = [&](const char* what) {
    return DataLoss(std::string("lock state snapshot is malformed (") + what + ")");
  };
  uint64_t applied = 0, wall = 0, n = 0;
  if (version == 0 || !r.Varint(&sm.token_counter_) || !r.Varint(&sm.lease_counter_) ||
      !r.Varint(&applied) || !r.Varint(&wall) || !r.Varint(&n)) {
    return bad("header");
  }
  if (sm.token_counter_ > kMaxSnapshotCounter || sm.lease_counter_ > kMaxSnapshotCounter) {
    return bad("a counter above 2^63");
  }
  sm.applied_ = LogIndex(applied);
  sm.wall_seconds_ = static_cast<int64_t>(wall);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t id = 0;
    Lease l;
    if (!r.Varint(&id) || !r.Varint(&l.ttl_ms) || !r.Bytes(&l.label) ||
        !GetRequestId(r, &l.granted_by) || (version >= 4 && !r.Bytes(&l.owner)) || id == 0 ||
        id > sm.lease_counter_) {
      return bad("lease");
    }
    ++sm.leases_per_label_[l.label];
    if (!l.owner.empty()) ++sm.usage_[l.owner].leases;
    if (!sm.leases_.emplace(LeaseId(id), std::move(l)).second) return bad("duplicate lease");
  }
  if (!r.Varint(&n)) return bad("lock count");
  for (uint64_t i = 0; i < n; ++i) {
    std::string name;
    Lock lock;
    uint64_t holders = 0, waiters = 0;
    if (!r.Bytes(&name) || !r.Varint(&holders) || holders > r.remaining()) return bad("lock");
    for (uint64_t j = 0; j < holders; ++j) {
      Holder h;
      uint64_t lease = 0, token = 0, fence = 0, at = 0;
      if (!r.Varint(&lease) || !GetMode(r, &h.mode) || !r.Varint(&token) || !r.Varint(&fence) ||
          !GetRequestId(r, &h.acquired_by) || !r.Varint(&at)) {
        return bad("holder");
      }
      h.lease = LeaseId(lease);
      h.token = FencingToken(token);
      h.fence = FencingToken(fence);
      h.granted_at = LogIndex(at);
      auto l = sm.leases_.find(h.lease);
      if (l == sm.leases_.end() || !l->second.held.insert(name).second) return bad("holder lease");
      if (!l->second.owner.empty()) ++sm.usage_[l->second.owner].locks;
      lock.holders.push_back(h);
      ++sm.holder_count_;
    }
    if (!r.Varint(&waiters) || waiters > r.remaining()) return bad("waiters");
    for (uint64_t j = 0; j < waiters; ++j) {
      Waiter x;
      uint64_t lease = 0, at = 0;
      uint8_t created = 0;
      if (!r.Varint(&lease) || !GetMode(r, &x.mode) || !GetRequestId(r, &x.acquire) ||
          !r.Varint(&x.wait_ms) || !r.Varint(&at) || !r.U8(&created)) {
        return bad("waiter");
      }
      x.lease = LeaseId(lease);
      x.enqueued_at = LogIndex(at);
      x.created_lease = created != 0;
      auto l = sm.leases_.find(x.lease);
      if (l == sm.leases_.end() || !l->second.waiting.insert(name).second)
        return bad("waiter lease");
      if (!l->second.owner.empty()) ++sm.usage_[l->second.owner].locks;
      lock.waiters.push_back(x);
      ++sm.waiter_count_;
    }
    if (!sm.locks_.emplace(std::move(name), std::move(lock)).second) return bad("duplicate lock");
  }
  if (!sm.once_.DecodeFrom(r, version, sm.applied_) || !r.done()) return bad("exactly-once table");
  // Well framed is not enough: a state that breaks an invariant would be served, or abort a
  // later apply (found by the lock_snapshot fuzz target).
  if (const char* violation = sm.LockTableViolation()) return bad(violation);
  for (const auto& [id, l] : sm.leases_) sm.once_.LeaseGranted(l.granted_by.client);
  return sm;
}

Result<LockStateMachine> LockStateMachine::RestoreAsNewCluster(std::string_view snapshot,
                                                               Limits limits,
                                                               int64_t now_wall_seconds,
                                                               uint64_t floor) {
  auto old = Restore(snapshot, limits);
  if (!old.ok()) return old.status();
  return NewClusterFrom(limits, old->token_counter_, old->lease_counter_, old->wall_seconds_,
                        now_wall_seconds, floor);
}

Result<LockStateMachine> LockStateMachine::NewClusterFrom(Limits limits, uint64_t token_counter,
                                                          uint64_t lease_counter,
                                                          int64_t from_wall_seconds,
                                                          int64_t now_wall_seconds,
                                                          uint64_t floor) {
  const int64_t elapsed = std::max<int64_t>(0, now_wall_seconds - from_wall_seconds);
  const unsigned __int128 bump =
      (static_cast<unsigned __int128>(1) << 32) * (static_cast<unsigned __int128>(elapsed) + 1);
  const auto raise = [&](uint64_t counter) -> std::optional<uint64_t> {
    const unsigned __int128 v = static_cast<unsigned __int128>(counter) + bump;
    if (v > kMaxStartCounter || floor > kMaxStartCounter) return std::nullopt;
    return std::max<uint64_t>(floor, static_cast<uint64_t>(v));
  };
  const auto tokens = raise(token_counter);
  const auto leases = raise(lease_counter);
  if (!tokens || !leases) {
    return OutOfRange(
        "restoring would start the token or lease-id counter above 2^62 (the floor, or the "
        "backup's counters plus 2^32 per second since it was taken)");
  }
  LockStateMachine sm(limits);
  sm.token_counter_ = *tokens;
  sm.lease_counter_ = *leases;
  sm.wall_seconds_ = now_wall_seconds;
  return sm;
}

bool LockStateMachine::operator==(const LockStateMachine& o) const {
  return locks_ == o.locks_ && leases_ == o.leases_ && leases_per_label_ == o.leases_per_label_ &&
         usage_ == o.usage_ && once_ == o.once_ && token_counter_ == o.token_counter_ &&
         lease_counter_ == o.lease_counter_ && applied_ == o.applied_ &&
         wall_seconds_ == o.wall_seconds_;
}

// --- invariants -------------------------------------------------------------------------------

const char* LockStateMachine::LockTableViolation() const {
  std::map<LeaseId, std::set<std::string>> held, waiting;
  size_t holders = 0, waiters = 0;
  for (const auto& [name, lock] : locks_) {
    holders += lock.holders.size();
    waiters += lock.waiters.size();
    if (lock.holders.empty() && lock.waiters.empty()) return "an empty lock is kept";
    std::set<LeaseId> seen;
    for (const auto& h : lock.holders) {
      // Mutual exclusion: one EXCLUSIVE holder, or only SHARED ones sharing one fence.
      if (h.mode == Mode::kExclusive && (lock.holders.size() != 1 || h.fence != h.token)) {
        return "an exclusive holder shares its lock, or its fence is not its token";
      }
      if (h.mode == Mode::kShared && (lock.holders.front().mode != Mode::kShared ||
                                      h.fence != lock.holders.front().fence || h.fence > h.token)) {
        return "shared holders disagree on their fence";
      }
      if (h.token.value() > token_counter_ || h.token.zero()) {
        return "a holder's token is zero or above the token counter";
      }
      if (!leases_.count(h.lease)) return "a holder's lease does not exist";
      if (!seen.insert(h.lease).second) return "a lease holds a name twice";
      held[h.lease].insert(name);
    }
    for (const auto& w : lock.waiters) {
      if (!leases_.count(w.lease)) return "a waiter's lease does not exist";
      if (!seen.insert(w.lease).second) return "a lease holds or waits for a name twice";
      waiting[w.lease].insert(name);
    }
    // Handoff is immediate: the head of the queue is never grantable.
    if (!lock.waiters.empty() && Compatible(lock, lock.waiters.front().mode)) {
      return "the head of a wait queue is grantable";
    }
  }
  std::map<std::string, size_t, std::less<>> per_label;
  std::map<std::string, Usage, std::less<>> usage;
  for (const auto& [id, l] : leases_) {
    if (id.value() > lease_counter_) return "a lease id is above the lease counter";
    if (l.held != held[id] || l.waiting != waiting[id]) {
      return "a lease's names disagree with the locks";
    }
    ++per_label[l.label];
    if (!l.owner.empty()) {
      Usage& u = usage[l.owner];
      ++u.leases;
      u.locks += l.held.size() + l.waiting.size();
    }
  }
  if (per_label != leases_per_label_) return "the leases per label disagree";
  if (usage != usage_) return "the usage per owner disagrees with the leases";
  if (holders != holder_count_ || waiters != waiter_count_) return "the holder counts disagree";
  return nullptr;
}

void LockStateMachine::CheckInvariants() const {
  const char* violation = LockTableViolation();
  LOCKD_CHECK_MSG(violation == nullptr, violation);
  std::map<ClientId, uint32_t> leases_by_client;
  for (const auto& [id, l] : leases_) ++leases_by_client[l.granted_by.client];
  once_.CheckInvariants(leases_by_client);
}

}  // namespace lockd::lock
