// The reference model: the lock state machine's rules written as plainly as possible — flat
// lists, linear scans, nothing derived kept — so that the property test can compare the real
// implementation against it step by step, outcome by outcome and state by state. Slow on purpose;
// used only by tests. When a rule changes, it changes here in the plainest words first.
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "lock/command.h"
#include "lock/exactly_once.h"
#include "lock/outcome.h"
#include "lock/state_machine.h"
#include "lock/validate.h"

namespace lockd::lock::testing {

class Model {
 public:
  explicit Model(Limits limits) : limits_(limits) {}

  struct Grant {
    std::string name;
    uint64_t lease;
    Mode mode;
    uint64_t token, fence;
    RequestId by;
    uint64_t at;
  };
  struct Wait {
    std::string name;
    uint64_t lease;
    Mode mode;
    RequestId acquire;
    uint64_t wait_ms, at;
  };
  struct LeaseRec {
    uint64_t id, ttl;
    std::string label;
    RequestId by;
  };
  struct Rec {
    RequestId id;
    uint64_t digest;
    Outcome outcome;
    uint64_t at;
    bool cancelled;
  };

  std::vector<Grant> grants;  // in grant order
  std::vector<Wait> waits;    // in enqueue order (per name, that is FIFO)
  std::vector<LeaseRec> leases;
  std::vector<Rec> recs;
  std::map<ClientId, uint64_t> watermark, last_active;
  uint64_t tokens = 0, lease_ids = 0;

  ApplyResult Apply(uint64_t index, const Command& cmd) {
    ApplyResult r;
    idx_ = index;
    res_ = &r;
    const RequestHeader* h = HeaderOf(cmd);
    if (!h) {
      r.outcome = Run(cmd);
      return r;
    }
    if (!ValidateHeader(*h).ok()) {
      r.outcome = Err(StatusCode::kInvalidArgument);
      return r;
    }
    const uint64_t d = Digest(cmd);
    const ClientId cl = h->id.client;
    last_active[cl] = std::max(last_active[cl], index);
    const bool below = h->id.seq < watermark[cl];
    watermark[cl] = std::max(watermark[cl], h->watermark);
    Rec* rec = Find(h->id);
    if (below) {
      r.outcome = Err(StatusCode::kFailedPrecondition);
    } else if (rec && rec->cancelled) {
      if (auto* a = std::get_if<Acquire>(&cmd)) {
        Outcome o;
        o.mode = a->mode;
        o.why_not = NotAcquired::kCancelledInAdvance;
        *rec = Rec{h->id, d, o, index, false};
        r.outcome = o;
      } else {
        r.outcome = Err(StatusCode::kInvalidArgument);
      }
    } else if (rec && rec->digest != d) {
      r.outcome = Err(StatusCode::kInvalidArgument);
    } else if (rec) {
      r.outcome = rec->outcome;
    } else {
      r.outcome = Run(cmd);
      recs.push_back(Rec{h->id, d, r.outcome, index, false});
    }
    return r;
  }

  // --- the whole state, in the implementation's inspection shapes ---

  std::vector<std::string> Names() const {
    std::vector<std::string> n;
    for (auto& g : grants) n.push_back(g.name);
    for (auto& w : waits) n.push_back(w.name);
    std::sort(n.begin(), n.end());
    n.erase(std::unique(n.begin(), n.end()), n.end());
    return n;
  }
  std::vector<LockView> Locks() const {
    std::vector<LockView> out;
    for (const auto& name : Names()) {
      LockView v{name, Views(name), {}};
      for (auto& w : waits) {
        if (w.name == name) {
          v.waiters.push_back(WaiterView{LeaseId(w.lease), LeaseOf(w.lease).label, w.mode,
                                         w.acquire, w.wait_ms, LogIndex(w.at)});
        }
      }
      out.push_back(std::move(v));
    }
    return out;
  }
  std::vector<LeaseView> Leases() const {
    std::vector<LeaseView> out;
    for (auto& l : leases) {  // created in id order
      LeaseView v{LeaseId(l.id), l.ttl, l.label, l.by, {}, {}};
      for (auto& g : grants) {
        if (g.lease == l.id) v.held.push_back(g.name);
      }
      for (auto& w : waits) {
        if (w.lease == l.id) v.waiting.push_back(w.name);
      }
      std::sort(v.held.begin(), v.held.end());
      std::sort(v.waiting.begin(), v.waiting.end());
      out.push_back(std::move(v));
    }
    return out;
  }
  std::vector<ExactlyOnce::ClientView> Clients() const {
    std::set<ClientId> ids;
    for (auto& [c, _] : watermark) ids.insert(c);
    for (auto& [c, _] : last_active) ids.insert(c);
    std::vector<ExactlyOnce::ClientView> out;
    for (const ClientId& c : ids) {
      ExactlyOnce::ClientView v{c, Get(watermark, c), LogIndex(Get(last_active, c)), {}};
      for (auto& r : recs) {
        if (r.id.client == c) {
          v.records.push_back(
              ExactlyOnce::RecordView{r.id.seq, r.digest, LogIndex(r.at), r.cancelled, r.outcome});
        }
      }
      std::sort(v.records.begin(), v.records.end(), [](auto& a, auto& b) { return a.seq < b.seq; });
      out.push_back(std::move(v));
    }
    return out;
  }

 private:
  static uint64_t Get(const std::map<ClientId, uint64_t>& m, const ClientId& c) {
    auto it = m.find(c);
    return it == m.end() ? 0 : it->second;
  }
  static Outcome Err(StatusCode c) {
    Outcome o;
    o.code = c;
    return o;
  }
  Rec* Find(const RequestId& id) {
    for (auto& r : recs) {
      if (r.id == id) return &r;
    }
    return nullptr;
  }
  bool HasLease(uint64_t id) const {
    return std::any_of(leases.begin(), leases.end(), [&](auto& l) { return l.id == id; });
  }
  const LeaseRec& LeaseOf(uint64_t id) const {
    return *std::find_if(leases.begin(), leases.end(), [&](auto& l) { return l.id == id; });
  }
  std::vector<const Grant*> HoldersOf(const std::string& name) const {
    std::vector<const Grant*> out;
    for (auto& g : grants) {
      if (g.name == name) out.push_back(&g);
    }
    return out;
  }
  std::vector<const Wait*> WaitersOf(const std::string& name) const {
    std::vector<const Wait*> out;
    for (auto& w : waits) {
      if (w.name == name) out.push_back(&w);
    }
    return out;
  }
  bool Uses(uint64_t lease, const std::string& name) const {
    for (auto& g : grants) {
      if (g.name == name && g.lease == lease) return true;
    }
    for (auto& w : waits) {
      if (w.name == name && w.lease == lease) return true;
    }
    return false;
  }
  bool Idle(uint64_t lease) const {
    return std::none_of(grants.begin(), grants.end(), [&](auto& g) { return g.lease == lease; }) &&
           std::none_of(waits.begin(), waits.end(), [&](auto& w) { return w.lease == lease; });
  }
  void Emit(Event::Type t, const std::string& name, uint64_t lease, Mode m, uint64_t tok,
            uint64_t fence, const RequestId& by) {
    Event e;
    e.type = t;
    e.index = LogIndex(idx_);
    e.number = static_cast<uint32_t>(res_->events.size() + 1);
    e.name = name;
    e.lease = LeaseId(lease);
    e.mode = m;
    e.token = FencingToken(tok);
    e.fence = FencingToken(fence);
    e.request = by;
    res_->events.push_back(e);
  }
  bool Compatible(const std::string& name, Mode m) const {
    auto hs = HoldersOf(name);
    if (hs.empty()) return true;
    return m == Mode::kShared &&
           std::all_of(hs.begin(), hs.end(), [](auto* g) { return g->mode == Mode::kShared; });
  }
  std::vector<HolderView> Views(const std::string& name) const {
    std::vector<HolderView> v;
    for (auto* g : HoldersOf(name)) {
      v.push_back(HolderView{LeaseId(g->lease), LeaseOf(g->lease).label, g->mode,
                             FencingToken(g->token), FencingToken(g->fence), g->by,
                             LogIndex(g->at)});
    }
    return v;
  }
  Status LeaseLimits(const std::string& label) const {
    const size_t same =
        std::count_if(leases.begin(), leases.end(), [&](auto& l) { return l.label == label; });
    if (leases.size() >= limits_.max_leases || same >= limits_.max_leases_per_label) {
      return ResourceExhausted("");
    }
    return Status::Ok();
  }
  uint64_t NewLease(uint64_t ttl, const std::string& label, const RequestId& by) {
    leases.push_back(LeaseRec{++lease_ids, ttl, label, by});
    res_->leases_granted.emplace_back(LeaseId(lease_ids), ttl);
    return lease_ids;
  }
  void DropLease(uint64_t id) {
    std::erase_if(leases, [&](auto& l) { return l.id == id; });
    res_->leases_ended.push_back(LeaseId(id));
  }
  /// A lease an Acquire granted itself goes with that Acquire's wait or grant.
  void EndOneLock(uint64_t lease, const RequestId& acquire) {
    if (HasLease(lease) && LeaseOf(lease).by == acquire && Idle(lease)) DropLease(lease);
  }
  bool CancelMatches(uint64_t given, uint64_t actual, const RequestId& acquire) const {
    return given == actual || (given == 0 && LeaseOf(actual).by == acquire);
  }
  void DoGrant(const std::string& name, uint64_t lease, Mode m, const RequestId& by, Outcome& o) {
    auto hs = HoldersOf(name);
    o.token = FencingToken(++tokens);
    o.fence = (m == Mode::kShared && !hs.empty()) ? FencingToken(hs.front()->fence) : o.token;
    grants.push_back(Grant{name, lease, m, o.token.value(), o.fence.value(), by, idx_});
    Emit(Event::Type::kAcquired, name, lease, m, o.token.value(), o.fence.value(), by);
  }
  void SetRec(const RequestId& id, const Outcome& o) {
    if (Rec* r = Find(id)) r->outcome = o;
  }
  void Promote(const std::string& name) {
    while (true) {
      auto ws = WaitersOf(name);
      if (ws.empty() || !Compatible(name, ws.front()->mode)) return;
      Wait w = *ws.front();
      std::erase_if(waits, [&](auto& x) { return x.acquire == w.acquire && x.name == name; });
      Outcome o;
      o.acquired = true;
      o.mode = w.mode;
      o.lease = LeaseId(w.lease);
      if (LeaseOf(w.lease).by == w.acquire) o.ttl_ms = LeaseOf(w.lease).ttl;
      DoGrant(name, w.lease, w.mode, w.acquire, o);
      SetRec(w.acquire, o);
      res_->completions.push_back(Completion{w.acquire, o});
    }
  }
  void DropGrant(size_t i, Event::Type t) {
    Grant g = grants[i];
    grants.erase(grants.begin() + static_cast<ptrdiff_t>(i));
    Emit(t, g.name, g.lease, g.mode, g.token, g.fence, g.by);
    Promote(g.name);
  }
  void DropWait(size_t i, NotAcquired why) {
    Wait w = waits[i];
    waits.erase(waits.begin() + static_cast<ptrdiff_t>(i));
    const bool own = LeaseOf(w.lease).by == w.acquire;
    Emit(Event::Type::kCancelled, w.name, w.lease, w.mode, 0, 0, w.acquire);
    Outcome o;
    o.mode = w.mode;
    if (!own) o.lease = LeaseId(w.lease);
    o.why_not = why;
    o.holders = Views(w.name);
    SetRec(w.acquire, o);
    res_->completions.push_back(Completion{w.acquire, o});
    Promote(w.name);
    if (own && why != NotAcquired::kLeaseEnded) EndOneLock(w.lease, w.acquire);
  }
  Outcome End(uint64_t id, bool expired) {
    Outcome o;
    // Names in sorted order, as the implementation walks its sets.
    std::vector<std::string> held, waiting;
    for (auto& g : grants) {
      if (g.lease == id) held.push_back(g.name);
    }
    for (auto& w : waits) {
      if (w.lease == id) waiting.push_back(w.name);
    }
    std::sort(held.begin(), held.end());
    std::sort(waiting.begin(), waiting.end());
    for (auto& n : held) {
      for (size_t i = 0; i < grants.size(); ++i) {
        if (grants[i].lease == id && grants[i].name == n) {
          DropGrant(i, expired ? Event::Type::kExpired : Event::Type::kReleased);
          break;
        }
      }
      o.released.push_back(n);
    }
    for (auto& n : waiting) {
      for (size_t i = 0; i < waits.size(); ++i) {
        if (waits[i].lease == id && waits[i].name == n) {
          DropWait(i, NotAcquired::kLeaseEnded);
          break;
        }
      }
      o.dropped.push_back(n);
    }
    DropLease(id);
    return o;
  }

  Outcome Run(const Command& cmd) {
    if (auto* c = std::get_if<GrantLease>(&cmd)) {
      if (!ValidateTtl(c->ttl_ms, limits_).ok() || !ValidateLabel(c->label, limits_).ok())
        return Err(StatusCode::kInvalidArgument);
      if (!LeaseLimits(c->label).ok()) return Err(StatusCode::kResourceExhausted);
      Outcome o;
      o.lease = LeaseId(NewLease(c->ttl_ms, c->label, c->header.id));
      o.ttl_ms = c->ttl_ms;
      return o;
    }
    if (auto* c = std::get_if<RevokeLease>(&cmd)) {
      if (!HasLease(c->lease.value())) return Err(StatusCode::kNotFound);
      return End(c->lease.value(), false);
    }
    if (auto* c = std::get_if<ExpireLease>(&cmd)) {
      if (!HasLease(c->lease.value())) return Outcome{};
      return End(c->lease.value(), true);
    }
    if (auto* c = std::get_if<Acquire>(&cmd)) return RunAcquire(*c);
    if (auto* c = std::get_if<Cancel>(&cmd)) return RunCancel(*c);
    if (auto* c = std::get_if<Release>(&cmd)) {
      if (!ValidateName(c->name, limits_).ok()) return Err(StatusCode::kInvalidArgument);
      if (!HasLease(c->lease.value())) return Err(StatusCode::kNotFound);
      for (size_t i = 0; i < grants.size(); ++i) {
        if (grants[i].name == c->name && grants[i].lease == c->lease.value() &&
            grants[i].token == c->token.value()) {
          DropGrant(i, Event::Type::kReleased);
          return Outcome{};
        }
      }
      return Err(StatusCode::kFailedPrecondition);
    }
    if (auto* c = std::get_if<ForceRelease>(&cmd)) {
      if (!ValidateName(c->name, limits_).ok()) return Err(StatusCode::kInvalidArgument);
      Outcome o;
      std::vector<Grant> targets;
      for (auto& g : grants) {
        if (g.name == c->name && (c->lease.zero() || g.lease == c->lease.value()))
          targets.push_back(g);
      }
      for (auto& t : targets) {
        o.holders.push_back(HolderView{LeaseId(t.lease), LeaseOf(t.lease).label, t.mode,
                                       FencingToken(t.token), FencingToken(t.fence), t.by,
                                       LogIndex(t.at)});
        for (size_t i = 0; i < grants.size(); ++i) {
          if (grants[i].token == t.token) {
            DropGrant(i, Event::Type::kReleased);
            break;
          }
        }
      }
      return o;
    }
    if (auto* c = std::get_if<WaitTimeout>(&cmd)) {
      for (size_t i = 0; i < waits.size(); ++i) {
        if (waits[i].name == c->name && waits[i].acquire == c->acquire) {
          DropWait(i, NotAcquired::kWaitTimedOut);
          break;
        }
      }
      return Outcome{};
    }
    if (auto* c = std::get_if<RetireOutcomes>(&cmd)) {
      const uint64_t upto = c->recorded_at_or_before.value();
      std::set<ClientId> ids;
      for (auto& [cl, _] : watermark) ids.insert(cl);
      for (auto& [cl, _] : last_active) ids.insert(cl);
      for (const ClientId& cl : ids) {
        const bool has_lease =
            std::any_of(leases.begin(), leases.end(), [&](auto& l) { return l.by.client == cl; });
        if (!has_lease && Get(last_active, cl) <= upto) {  // the whole client goes
          std::erase_if(recs, [&](const Rec& r) { return r.id.client == cl; });
          watermark.erase(cl);
          last_active.erase(cl);
        } else {
          std::erase_if(recs, [&](const Rec& r) {
            return r.id.client == cl && r.id.seq < Get(watermark, cl) && r.at <= upto;
          });
        }
      }
      return Outcome{};
    }
    return Err(StatusCode::kInternal);
  }

  Outcome RunAcquire(const Acquire& c) {
    if (!ValidateName(c.name, limits_).ok() || !ValidateWait(c.wait_ms, limits_).ok())
      return Err(StatusCode::kInvalidArgument);
    const bool fresh = c.lease.zero();
    if (fresh) {
      if (c.ttl_ms == 0 || !ValidateTtl(c.ttl_ms, limits_).ok() ||
          !ValidateLabel(c.label, limits_).ok()) {
        return Err(StatusCode::kInvalidArgument);
      }
      if (!LeaseLimits(c.label).ok()) return Err(StatusCode::kResourceExhausted);
    } else {
      if (c.ttl_ms != 0 || !c.label.empty()) return Err(StatusCode::kInvalidArgument);
      if (!HasLease(c.lease.value())) return Err(StatusCode::kNotFound);
      if (Uses(c.lease.value(), c.name)) return Err(StatusCode::kFailedPrecondition);
    }
    auto names = Names();
    const bool exists = std::find(names.begin(), names.end(), c.name) != names.end();
    if (!exists && names.size() >= limits_.max_locks) return Err(StatusCode::kResourceExhausted);
    const bool grantable = WaitersOf(c.name).empty() && Compatible(c.name, c.mode);
    if (!grantable && c.wait_ms > 0 && WaitersOf(c.name).size() >= limits_.max_waiters_per_lock) {
      return Err(StatusCode::kResourceExhausted);
    }
    Outcome o;
    o.mode = c.mode;
    if (!grantable && c.wait_ms == 0) {
      o.why_not = NotAcquired::kBusy;
      o.holders = Views(c.name);
      return o;
    }
    const uint64_t lease = fresh ? NewLease(c.ttl_ms, c.label, c.header.id) : c.lease.value();
    o.lease = LeaseId(lease);
    if (fresh) o.ttl_ms = c.ttl_ms;
    if (grantable) {
      DoGrant(c.name, lease, c.mode, c.header.id, o);
      o.acquired = true;
      return o;
    }
    waits.push_back(Wait{c.name, lease, c.mode, c.header.id, c.wait_ms, idx_});
    Emit(Event::Type::kWaiting, c.name, lease, c.mode, 0, 0, c.header.id);
    res_->waits_started.push_back(WaitStarted{c.name, c.header.id, LeaseId(lease), c.wait_ms});
    o.waiting = true;
    o.holders = Views(c.name);
    return o;
  }

  Outcome RunCancel(const Cancel& c) {
    if (!ValidateName(c.name, limits_).ok() || c.acquire == c.header.id) {
      return Err(StatusCode::kInvalidArgument);
    }
    Outcome o;
    for (size_t i = 0; i < waits.size(); ++i) {
      if (waits[i].name != c.name || waits[i].acquire != c.acquire) continue;
      if (!CancelMatches(c.lease.value(), waits[i].lease, c.acquire))
        return Err(StatusCode::kFailedPrecondition);
      DropWait(i, NotAcquired::kCancelled);
      o.effect = CancelEffect::kWithdrewWait;
      return o;
    }
    for (size_t i = 0; i < grants.size(); ++i) {
      if (grants[i].name != c.name || grants[i].by != c.acquire) continue;
      const uint64_t lease = grants[i].lease;
      if (!CancelMatches(c.lease.value(), lease, c.acquire))
        return Err(StatusCode::kFailedPrecondition);
      DropGrant(i, Event::Type::kReleased);
      EndOneLock(lease, c.acquire);
      o.effect = CancelEffect::kReleasedGrant;
      return o;
    }
    if (Rec* r = Find(c.acquire); r && r->cancelled) {
      o.effect = CancelEffect::kCancelledInAdvance;
      return o;
    }
    if (Find(c.acquire) || c.acquire.seq < Get(watermark, c.acquire.client)) {
      o.effect = CancelEffect::kNothingToCancel;
      return o;
    }
    if (!c.lease.zero() && !HasLease(c.lease.value())) return Err(StatusCode::kNotFound);
    recs.push_back(Rec{c.acquire, 0, Outcome{}, idx_, true});
    last_active[c.acquire.client] = std::max(Get(last_active, c.acquire.client), idx_);
    o.effect = CancelEffect::kCancelledInAdvance;
    return o;
  }

  Limits limits_;
  uint64_t idx_ = 0;
  ApplyResult* res_ = nullptr;
};

}  // namespace lockd::lock::testing
