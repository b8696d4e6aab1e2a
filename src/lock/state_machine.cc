// LockStateMachine: apply. Reads, snapshots and invariants are in state_machine_views.cc.
#include "lock/state_machine.h"

#include "base/check.h"
#include "base/unsafe_faults.h"
#include "lock/validate.h"

namespace lockd::lock {

namespace {

Outcome Error(StatusCode code, std::string message) {
  Outcome o;
  o.code = code;
  o.message = std::move(message);
  return o;
}

Outcome Error(const Status& s) {
  return Error(s.code(), s.message());
}

std::string LeaseName(LeaseId id) {
  return "lease " + std::to_string(id.value());
}

}  // namespace

void LockStateMachine::Ctx::Emit(Event::Type type, const std::string& name, LeaseId lease,
                                 Mode mode, FencingToken token, FencingToken fence) {
  Event e;
  e.type = type;
  e.number = static_cast<uint32_t>(result.events.size() + 1);
  e.name = name;
  e.lease = lease;
  e.mode = mode;
  e.token = token;
  e.fence = fence;
  result.events.push_back(std::move(e));
}

Result<ApplyResult> LockStateMachine::Apply(LogIndex index, std::string_view entry) {
  auto env = Decode(entry);
  if (!env.ok()) {
    return Status(env.status().code(),
                  "entry " + std::to_string(index.value()) + ": " + env.status().message());
  }
  if (env->version < kOldestAppliedCommandFormat) {
    // Format 2 changed what some format-1 entries do when applied (Cancel without a lease id,
    // the exactly-once caps and retirement). Replaying one with today's rules could leave this
    // node's state different from a peer that applied it with the old ones before its snapshot,
    // so it is refused, never reinterpreted (docs/storage.md, "Upgrading from format 1").
    return FailedPrecondition(
        "entry " + std::to_string(index.value()) + " is of command format " +
        std::to_string(env->version) + ", whose meaning format " +
        std::to_string(kOldestAppliedCommandFormat) +
        " changed; this build does not replay it. Let every node of the cluster take a snapshot "
        "past it with the build that wrote it, then upgrade (or bootstrap a new cluster)");
  }
  return ApplyCommand(index, env->command, env->wall_seconds, env->version);
}

ApplyResult LockStateMachine::ApplyCommand(LogIndex index, const Command& command,
                                           int64_t wall_seconds, uint8_t format) {
  LOCKD_CHECK_MSG(index > applied_, "entries are applied once, in index order");
  applied_ = index;
  if (wall_seconds > wall_seconds_) wall_seconds_ = wall_seconds;
  Ctx ctx{index, {}};

  const RequestHeader* header = HeaderOf(command);
  if (!header) {
    ctx.result.outcome = Execute(ctx, command);
    return std::move(ctx.result);
  }
  if (Status s = ValidateHeader(*header); !s.ok()) {
    ctx.result.outcome = Error(s);  // not recorded: an id that cannot be retried
    return std::move(ctx.result);
  }
  const uint64_t digest = Digest(command);
  // The reserve and the leaseless share came with format 3: a format-2 entry is admitted as it
  // was when first applied.
  const AdmitRules rules{.frees = format >= 3 && Frees(command), .leaseless_share = format >= 3};
  const auto admission = once_.Admit(*header, digest, index, limits_, rules);
  switch (admission.verdict) {
    case ExactlyOnce::Verdict::kBelowWatermark:
      ctx.result.outcome =
          Error(StatusCode::kFailedPrecondition,
                "request " + ToString(header->id) +
                    " is below its client's watermark: a late duplicate, not executed");
      break;
    case ExactlyOnce::Verdict::kForgotten:
      ctx.result.outcome =
          Error(StatusCode::kFailedPrecondition,
                "request " + ToString(header->id) +
                    " is older than the exactly-once retention window (--outcome-retention-ms=" +
                    std::to_string(limits_.outcome_retention_ms) +
                    "): its outcome was retired; not executed again");
      break;
    case ExactlyOnce::Verdict::kNoRoom:
      ctx.result.outcome = Error(admission.refusal);  // not recorded: it did not run
      break;
    case ExactlyOnce::Verdict::kOtherIdentity:
      ctx.result.outcome = Error(StatusCode::kPermissionDenied,
                                 "client id of request " + ToString(header->id) +
                                     " is another identity's; '" + header->caller.principal +
                                     "' may not use it (each client process picks its own)");
      break;
    case ExactlyOnce::Verdict::kDigestMismatch:
      ctx.result.outcome =
          Error(StatusCode::kInvalidArgument,
                "request id " + ToString(header->id) + " was already used for a different call");
      break;
    case ExactlyOnce::Verdict::kReplay:
      ctx.result.outcome = *admission.recorded;
      break;
    case ExactlyOnce::Verdict::kCancelledInAdvance: {
      Outcome o;
      o.message = "cancelled before it arrived";
      ctx.result.outcome = o;
      once_.Record(header->id, digest, o, index);
      break;
    }
    case ExactlyOnce::Verdict::kExecute:
      ctx.result.outcome = Execute(ctx, command);
      once_.Record(header->id, digest, ctx.result.outcome, index);
      break;
  }
  return std::move(ctx.result);
}

Outcome LockStateMachine::Execute(Ctx& ctx, const Command& command) {
  return std::visit(
      [&](const auto& c) -> Outcome {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, GrantLease>) {
          return DoGrantLease(ctx, c);
        } else if constexpr (std::is_same_v<T, RevokeLease>) {
          if (!leases_.count(c.lease))
            return Error(StatusCode::kNotFound, LeaseName(c.lease) + " is unknown or expired");
          if (Status s = CheckOwner(c.lease, c.header.caller, /*admin_may=*/true); !s.ok()) {
            return Error(s);
          }
          return EndLease(ctx, c.lease, /*expired=*/false);
        } else if constexpr (std::is_same_v<T, ExpireLease>) {
          if (!leases_.count(c.lease)) return Outcome{};  // already gone: nothing to do
          return EndLease(ctx, c.lease, /*expired=*/true);
        } else if constexpr (std::is_same_v<T, Acquire>) {
          return DoAcquire(ctx, c);
        } else if constexpr (std::is_same_v<T, Cancel>) {
          return DoCancel(ctx, c);
        } else if constexpr (std::is_same_v<T, Release>) {
          return DoRelease(ctx, c);
        } else if constexpr (std::is_same_v<T, ForceRelease>) {
          return DoForceRelease(ctx, c);
        } else if constexpr (std::is_same_v<T, WaitTimeout>) {
          DoWaitTimeout(ctx, c);
          return Outcome{};
        } else if constexpr (std::is_same_v<T, RetireOutcomes>) {
          once_.Retire(c, ctx.index);
          return Outcome{};
        }
      },
      command);
}

bool LockStateMachine::Frees(const Command& command) const {
  const auto holds = [&](const std::string& name, const auto& matches) {
    auto it = locks_.find(name);
    if (it == locks_.end()) return false;
    return std::any_of(it->second.holders.begin(), it->second.holders.end(), matches);
  };
  return std::visit(
      [&](const auto& c) -> bool {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, RevokeLease>) {
          return leases_.count(c.lease) > 0;
        } else if constexpr (std::is_same_v<T, Release>) {
          return holds(c.name,
                       [&](const Holder& h) { return h.lease == c.lease && h.token == c.token; });
        } else if constexpr (std::is_same_v<T, ForceRelease>) {
          return holds(c.name,
                       [&](const Holder& h) { return c.lease.zero() || h.lease == c.lease; });
        } else if constexpr (std::is_same_v<T, Cancel>) {
          if (c.acquire == c.header.id) return false;
          const auto ours = [&](LeaseId l) { return c.lease.zero() || l == c.lease; };
          auto it = locks_.find(c.name);
          if (it == locks_.end()) return false;
          for (const auto& w : it->second.waiters) {
            if (w.acquire == c.acquire) return ours(w.lease);
          }
          return holds(
              c.name, [&](const Holder& h) { return h.acquired_by == c.acquire && ours(h.lease); });
        } else {
          return false;
        }
      },
      command);
}

Status LockStateMachine::CheckLeaseLimits(const std::string& label, const Caller& caller) const {
  if (leases_.size() >= limits_.max_leases) {
    return ResourceExhausted("the cluster holds " + std::to_string(leases_.size()) +
                             " leases, the configured limit");
  }
  auto it = leases_per_label_.find(label);
  if (it != leases_per_label_.end() && it->second >= limits_.max_leases_per_label) {
    return ResourceExhausted("label '" + label + "' has " + std::to_string(it->second) +
                             " leases, the configured limit per label");
  }
  if (caller.max_leases > 0) {
    if (const size_t owned = UsageOf(caller.principal).leases; owned >= caller.max_leases) {
      return ResourceExhausted("identity '" + caller.principal + "' owns " + std::to_string(owned) +
                               " live leases, its quota max_leases (" +
                               std::to_string(caller.max_leases) + ")");
    }
  }
  return Status::Ok();
}

Status LockStateMachine::CheckOwner(LeaseId id, const Caller& caller, bool admin_may) const {
  // Proposed with access control off: nothing to check. (Members agree on whether it is on: a
  // peer with another setting is refused, server/peer_transport.h, so while a majority has a
  // policy no leader without one is elected.)
  if (caller.principal.empty()) return Status::Ok();
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.owner == caller.principal) return Status::Ok();
  if (admin_may && caller.admin) return Status::Ok();
  return Status(
      StatusCode::kPermissionDenied,
      LeaseName(id) + " belongs to another identity; '" + caller.principal + "' may not use it" +
          (admin_may ? " (revoking another identity's lease needs admin on every name)" : ""));
}

void LockStateMachine::CountLock(LeaseId lease, int delta) {
  const std::string& owner = leases_.at(lease).owner;
  if (owner.empty()) return;
  auto it = usage_.find(owner);
  LOCKD_CHECK_MSG(it != usage_.end(), "a lease's owner is counted while it owns the lease");
  it->second.locks = static_cast<size_t>(static_cast<ptrdiff_t>(it->second.locks) + delta);
}

LeaseId LockStateMachine::CreateLease(Ctx& ctx, uint64_t ttl_ms, const std::string& label,
                                      const RequestHeader& by) {
  const LeaseId id(++lease_counter_);
  Lease& l = leases_[id];
  l.ttl_ms = ttl_ms;
  l.label = label;
  l.granted_by = by.id;
  l.owner = by.caller.principal;
  if (!l.owner.empty()) ++usage_[l.owner].leases;
  ++leases_per_label_[label];
  once_.LeaseGranted(by.id.client);
  ctx.result.leases_granted.emplace_back(id, ttl_ms);
  return id;
}

Outcome LockStateMachine::DoGrantLease(Ctx& ctx, const GrantLease& c) {
  if (Status s = ValidateTtl(c.ttl_ms, limits_); !s.ok()) return Error(s);
  if (Status s = ValidateLabel(c.label, limits_); !s.ok()) return Error(s);
  if (Status s = CheckLeaseLimits(c.label, c.header.caller); !s.ok()) return Error(s);
  Outcome o;
  o.lease = CreateLease(ctx, c.ttl_ms, c.label, c.header);
  o.ttl_ms = c.ttl_ms;
  return o;
}

bool LockStateMachine::Compatible(const Lock& lock, Mode mode) {
  if (lock.holders.empty()) return true;
  return mode == Mode::kShared && lock.holders.front().mode == Mode::kShared;
}

void LockStateMachine::Grant(Ctx& ctx, const std::string& name, Lock& lock, LeaseId lease,
                             Mode mode, const RequestId& by, FencingToken* token,
                             FencingToken* fence) {
  // Planted bug for the fault tests only (base/unsafe_faults.h): reuse the last token.
  const bool reuse = unsafe::Enabled(unsafe::Fault::kSkipTokenIncrement) && token_counter_ > 0;
  *token = FencingToken(reuse ? token_counter_ : ++token_counter_);
  // Concurrent readers share one fence: the token of the first grant of their run.
  *fence = (mode == Mode::kShared && !lock.holders.empty()) ? lock.holders.front().fence : *token;
  lock.holders.push_back(Holder{lease, mode, *token, *fence, by, ctx.index});
  ++holder_count_;
  leases_.at(lease).held.insert(name);
  CountLock(lease, +1);
  ctx.Emit(Event::Type::kAcquired, name, lease, mode, *token, *fence);
}

std::optional<Outcome> LockStateMachine::CheckAcquire(const Acquire& c, bool* grantable) const {
  if (Status s = ValidateName(c.name, limits_); !s.ok()) return Error(s);
  if (Status s = ValidateWait(c.wait_ms, limits_); !s.ok()) return Error(s);
  if (c.mode != Mode::kExclusive && c.mode != Mode::kShared) {
    return Error(StatusCode::kInvalidArgument, "mode must be EXCLUSIVE or SHARED");
  }
  if (c.lease.zero()) {
    if (c.ttl_ms == 0) {
      return Error(StatusCode::kInvalidArgument,
                   "give a lease_id, or a ttl_ms to grant a lease for this lock");
    }
    if (Status s = ValidateTtl(c.ttl_ms, limits_); !s.ok()) return Error(s);
    if (Status s = ValidateLabel(c.label, limits_); !s.ok()) return Error(s);
    if (Status s = CheckLeaseLimits(c.label, c.header.caller); !s.ok()) return Error(s);
  } else {
    if (c.ttl_ms != 0) {
      return Error(StatusCode::kInvalidArgument,
                   "ttl_ms is only for an Acquire without a lease_id");
    }
    auto l = leases_.find(c.lease);
    if (l == leases_.end())
      return Error(StatusCode::kNotFound, LeaseName(c.lease) + " is unknown or expired");
    if (Status s = CheckOwner(c.lease, c.header.caller, /*admin_may=*/false); !s.ok()) {
      return Error(s);
    }
    if (l->second.held.count(c.name) || l->second.waiting.count(c.name)) {
      return Error(StatusCode::kFailedPrecondition,
                   LeaseName(c.lease) + " already " +
                       (l->second.held.count(c.name) ? "holds" : "waits for") + " '" + c.name +
                       "'; a lease holds or waits for a name at most once (release first)");
    }
  }
  auto it = locks_.find(c.name);
  const bool exists = it != locks_.end();
  if (!exists && locks_.size() >= limits_.max_locks) {
    return Error(
        StatusCode::kResourceExhausted,
        "the cluster tracks " + std::to_string(locks_.size()) + " locks, the configured limit");
  }
  *grantable = !exists || (it->second.waiters.empty() && Compatible(it->second, c.mode));
  if (!*grantable && c.wait_ms > 0 && it->second.waiters.size() >= limits_.max_waiters_per_lock) {
    return Error(StatusCode::kResourceExhausted, "'" + c.name + "' has " +
                                                     std::to_string(it->second.waiters.size()) +
                                                     " waiters, the configured limit");
  }
  // The caller's quota counts what this Acquire would add: a hold or a wait (a failed try-lock
  // adds nothing).
  const Caller& caller = c.header.caller;
  if (caller.max_locks > 0 && (*grantable || c.wait_ms > 0)) {
    if (const size_t used = UsageOf(caller.principal).locks; used >= caller.max_locks) {
      return Error(StatusCode::kResourceExhausted,
                   "identity '" + caller.principal + "' holds or waits for " +
                       std::to_string(used) + " names, its quota max_locks (" +
                       std::to_string(caller.max_locks) + ")");
    }
  }
  return std::nullopt;
}

std::optional<Outcome> LockStateMachine::FailedTryLock(const Acquire& c) const {
  if (c.wait_ms != 0 || !ValidateHeader(c.header).ok() ||
      once_.Peek(c.header, Digest(c), limits_).verdict != ExactlyOnce::Verdict::kExecute) {
    return std::nullopt;
  }
  bool grantable = true;
  if (CheckAcquire(c, &grantable).has_value() || grantable) return std::nullopt;
  // Exactly what DoAcquire answers for it (and, like there, nothing changes).
  Outcome o;
  o.mode = c.mode;
  o.holders = HolderViews(locks_.at(c.name));
  return o;
}

Outcome LockStateMachine::DoAcquire(Ctx& ctx, const Acquire& c) {
  bool grantable = true;
  if (auto error = CheckAcquire(c, &grantable)) return *std::move(error);
  const bool new_lease = c.lease.zero();
  auto it = locks_.find(c.name);
  const bool exists = it != locks_.end();

  Outcome o;
  o.mode = c.mode;
  if (!grantable && c.wait_ms == 0) {  // a failed try-lock changes nothing, not even a lease
    o.holders = HolderViews(it->second);
    return o;
  }
  const LeaseId lease = new_lease ? CreateLease(ctx, c.ttl_ms, c.label, c.header) : c.lease;
  o.lease = lease;
  if (new_lease) o.ttl_ms = c.ttl_ms;
  if (!exists) it = locks_.emplace(c.name, Lock{}).first;
  if (grantable) {
    Grant(ctx, c.name, it->second, lease, c.mode, c.header.id, &o.token, &o.fence);
    o.acquired = true;
    return o;
  }
  it->second.waiters.push_back(Waiter{lease, c.mode, c.header.id, c.wait_ms, ctx.index, new_lease});
  ++waiter_count_;
  leases_.at(lease).waiting.insert(c.name);
  CountLock(lease, +1);
  ctx.Emit(Event::Type::kWaiting, c.name, lease, c.mode, FencingToken(), FencingToken());
  ctx.result.waits_started.push_back(WaitStarted{c.name, c.header.id, lease, c.wait_ms});
  o.waiting = true;
  o.holders = HolderViews(it->second);
  return o;
}

void LockStateMachine::Promote(Ctx& ctx, const std::string& name, Lock& lock) {
  while (!lock.waiters.empty() && Compatible(lock, lock.waiters.front().mode)) {
    Waiter w = lock.waiters.front();
    lock.waiters.erase(lock.waiters.begin());
    --waiter_count_;
    leases_.at(w.lease).waiting.erase(name);
    CountLock(w.lease, -1);
    Outcome o;
    o.acquired = true;
    o.mode = w.mode;
    o.lease = w.lease;
    if (w.created_lease) o.ttl_ms = leases_.at(w.lease).ttl_ms;
    Grant(ctx, name, lock, w.lease, w.mode, w.acquire, &o.token, &o.fence);
    once_.Update(w.acquire, o, ctx.index);
    ctx.result.completions.push_back(Completion{w.acquire, std::move(o)});
  }
}

void LockStateMachine::EraseIfEmpty(LockMap::iterator it) {
  if (it->second.holders.empty() && it->second.waiters.empty()) locks_.erase(it);
}

void LockStateMachine::RemoveHolder(Ctx& ctx, LockMap::iterator it, size_t i, Event::Type type) {
  Lock& lock = it->second;
  const Holder h = lock.holders[i];
  lock.holders.erase(lock.holders.begin() + static_cast<ptrdiff_t>(i));
  --holder_count_;
  leases_.at(h.lease).held.erase(it->first);
  CountLock(h.lease, -1);
  ctx.Emit(type, it->first, h.lease, h.mode, h.token, h.fence);
  Promote(ctx, it->first, lock);
  EraseIfEmpty(it);
}

void LockStateMachine::RemoveWaiter(Ctx& ctx, LockMap::iterator it, size_t i,
                                    const std::string& why, Event::Type type) {
  Lock& lock = it->second;
  const Waiter w = lock.waiters[i];
  lock.waiters.erase(lock.waiters.begin() + static_cast<ptrdiff_t>(i));
  --waiter_count_;
  leases_.at(w.lease).waiting.erase(it->first);
  CountLock(w.lease, -1);
  ctx.Emit(type, it->first, w.lease, w.mode, FencingToken(), FencingToken());
  Outcome o;
  o.mode = w.mode;
  o.lease = w.lease;
  if (w.created_lease && leases_.count(w.lease)) o.ttl_ms = leases_.at(w.lease).ttl_ms;
  o.message = why;
  o.holders = HolderViews(lock);
  once_.Update(w.acquire, o, ctx.index);
  ctx.result.completions.push_back(Completion{w.acquire, std::move(o)});
  // The head may have been an EXCLUSIVE waiter that held back compatible SHARED ones.
  Promote(ctx, it->first, lock);
  EraseIfEmpty(it);
}

Outcome LockStateMachine::EndLease(Ctx& ctx, LeaseId id, bool expired) {
  Outcome o;
  const Lease lease = leases_.at(id);  // a copy: removals below edit the live sets
  for (const auto& name : lease.held) {
    auto it = locks_.find(name);
    auto& hs = it->second.holders;
    for (size_t i = 0; i < hs.size(); ++i) {
      if (hs[i].lease == id) {
        RemoveHolder(ctx, it, i, expired ? Event::Type::kExpired : Event::Type::kReleased);
        break;
      }
    }
    o.released.push_back(name);
  }
  for (const auto& name : lease.waiting) {
    auto it = locks_.find(name);
    auto& ws = it->second.waiters;
    for (size_t i = 0; i < ws.size(); ++i) {
      if (ws[i].lease == id) {
        RemoveWaiter(ctx, it, i, LeaseName(id) + (expired ? " expired" : " was revoked"),
                     Event::Type::kCancelled);
        break;
      }
    }
    o.dropped.push_back(name);
  }
  auto label = leases_per_label_.find(lease.label);
  if (--label->second == 0) leases_per_label_.erase(label);
  if (!lease.owner.empty()) {
    auto usage = usage_.find(lease.owner);
    if (--usage->second.leases == 0) usage_.erase(usage);  // its holds and waits went above
  }
  leases_.erase(id);
  once_.LeaseEnded(lease.granted_by.client, ctx.index);
  ctx.result.leases_ended.push_back(id);
  return o;
}

Outcome LockStateMachine::DoCancel(Ctx& ctx, const Cancel& c) {
  if (Status s = ValidateName(c.name, limits_); !s.ok()) return Error(s);
  if (c.acquire == c.header.id) {
    return Error(StatusCode::kInvalidArgument, "a Cancel names the Acquire to cancel, not itself");
  }
  // The Acquire is found by its request id alone (an Acquire that granted its own lease has a
  // lease id its caller may not know); a lease id, when given, must be the one it used.
  const auto other_lease = [&](LeaseId used, const char* what) {
    return Error(StatusCode::kFailedPrecondition, "Acquire " + ToString(c.acquire) + " " + what +
                                                      " '" + c.name + "' with " + LeaseName(used) +
                                                      ", not " + LeaseName(c.lease) +
                                                      "; give its lease id or none");
  };
  Outcome o;
  auto it = locks_.find(c.name);
  if (it != locks_.end()) {
    auto& ws = it->second.waiters;
    for (size_t i = 0; i < ws.size(); ++i) {
      if (ws[i].acquire != c.acquire) continue;
      if (!c.lease.zero() && ws[i].lease != c.lease) return other_lease(ws[i].lease, "waits for");
      if (Status s = CheckOwner(ws[i].lease, c.header.caller, false); !s.ok()) return Error(s);
      RemoveWaiter(ctx, it, i, "cancelled", Event::Type::kCancelled);
      o.effect = CancelEffect::kWithdrewWait;
      return o;
    }
    auto& hs = it->second.holders;
    for (size_t i = 0; i < hs.size(); ++i) {
      if (hs[i].acquired_by != c.acquire) continue;
      if (!c.lease.zero() && hs[i].lease != c.lease) return other_lease(hs[i].lease, "holds");
      if (Status s = CheckOwner(hs[i].lease, c.header.caller, false); !s.ok()) return Error(s);
      RemoveHolder(ctx, it, i, Event::Type::kReleased);
      o.effect = CancelEffect::kReleasedGrant;
      return o;
    }
  }
  if (once_.Known(c.acquire) || once_.Refused(c.acquire)) {
    o.effect = CancelEffect::kNothingToCancel;
    return o;
  }
  if (!c.lease.zero() && !leases_.count(c.lease))
    return Error(StatusCode::kNotFound, LeaseName(c.lease) + " is unknown or expired");
  if (Status s = CheckOwner(c.lease, c.header.caller, false); !s.ok()) return Error(s);
  // A record of an Acquire that has not arrived lives in its client's table, so only that client
  // may make one: another client's Cancel could otherwise fill it, or name a far sequence number
  // whose retirement would refuse every later request of the victim.
  if (c.acquire.client != c.header.id.client) {
    return Error(StatusCode::kFailedPrecondition,
                 "Acquire " + ToString(c.acquire) +
                     " has not arrived; only the client that sends it may cancel it in advance");
  }
  if (Status s = once_.RoomForCancelInAdvance(c.acquire, c.header.id.client, limits_); !s.ok()) {
    return Error(s);
  }
  once_.CancelInAdvance(c.acquire, ctx.index);
  o.effect = CancelEffect::kCancelledInAdvance;
  return o;
}

Outcome LockStateMachine::DoRelease(Ctx& ctx, const Release& c) {
  if (Status s = ValidateName(c.name, limits_); !s.ok()) return Error(s);
  if (!leases_.count(c.lease))
    return Error(StatusCode::kNotFound, LeaseName(c.lease) + " is unknown or expired");
  if (Status s = CheckOwner(c.lease, c.header.caller, /*admin_may=*/false); !s.ok()) {
    return Error(s);
  }
  auto it = locks_.find(c.name);
  if (it != locks_.end()) {
    auto& hs = it->second.holders;
    for (size_t i = 0; i < hs.size(); ++i) {
      if (hs[i].lease == c.lease && hs[i].token == c.token) {
        RemoveHolder(ctx, it, i, Event::Type::kReleased);
        return Outcome{};
      }
    }
  }
  return Error(StatusCode::kFailedPrecondition, LeaseName(c.lease) + " does not hold '" + c.name +
                                                    "' with token " +
                                                    std::to_string(c.token.value()));
}

Outcome LockStateMachine::DoForceRelease(Ctx& ctx, const ForceRelease& c) {
  if (Status s = ValidateName(c.name, limits_); !s.ok()) return Error(s);
  Outcome o;
  auto it = locks_.find(c.name);
  if (it == locks_.end()) return o;
  // Collect first: each removal may promote waiters into the holder list.
  std::vector<Holder> targets;
  for (const auto& h : it->second.holders) {
    if (c.lease.zero() || h.lease == c.lease) targets.push_back(h);
  }
  for (const auto& h : targets) {
    o.holders.push_back(HolderView{h.lease, leases_.at(h.lease).label, h.mode, h.token, h.fence,
                                   h.acquired_by, h.granted_at});
    it = locks_.find(c.name);
    auto& hs = it->second.holders;
    for (size_t i = 0; i < hs.size(); ++i) {
      if (hs[i].token == h.token) {
        RemoveHolder(ctx, it, i, Event::Type::kReleased);
        break;
      }
    }
  }
  return o;
}

void LockStateMachine::DoWaitTimeout(Ctx& ctx, const WaitTimeout& c) {
  auto it = locks_.find(c.name);
  if (it == locks_.end()) return;  // granted or ended already: a grant that won the race stands
  auto& ws = it->second.waiters;
  for (size_t i = 0; i < ws.size(); ++i) {
    if (ws[i].acquire == c.acquire) {
      RemoveWaiter(ctx, it, i, "not acquired within wait_ms " + std::to_string(ws[i].wait_ms),
                   Event::Type::kCancelled);
      return;
    }
  }
}

}  // namespace lockd::lock
