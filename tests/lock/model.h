// The reference model: the lock state machine's rules written as plainly as possible — flat
// lists, linear scans, nothing derived kept — so that the property test can compare the real
// implementation against it step by step. Slow on purpose; used only by tests.
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "lock/command.h"
#include "lock/exactly_once.h"
#include "lock/outcome.h"
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
    bool created;
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
  /// The per-client record: watermark, last activity, highest seq retired for age.
  struct ClientRec {
    uint64_t watermark = 0, last_active = 0, forgotten = 0;
  };
  std::map<ClientId, ClientRec> clients;
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
    const bool known = clients.count(h->id.client) > 0;
    const ClientRec before = known ? clients[h->id.client] : ClientRec{};
    Rec* rec = Find(h->id);
    // A new request that does not fit is refused; from an unknown client it leaves no trace.
    const bool fits = Room(h->id.client, 0, 0, Frees(cmd));
    if (!known && !rec && !fits) {
      r.outcome = Err(StatusCode::kResourceExhausted);
      return r;
    }
    ClientRec& cl = clients[h->id.client];
    cl.last_active = std::max(cl.last_active, index);
    cl.watermark = std::max(cl.watermark, h->watermark);
    if (h->id.seq < before.watermark) {
      r.outcome = Err(StatusCode::kFailedPrecondition);
    } else if (rec && rec->cancelled) {
      rec->cancelled = false;
      rec->digest = d;
      rec->outcome = Outcome{};
      rec->at = index;
      r.outcome = rec->outcome;
    } else if (rec && rec->digest != d) {
      r.outcome = Err(StatusCode::kInvalidArgument);
    } else if (rec) {
      r.outcome = rec->outcome;
    } else if (h->id.seq <= before.forgotten) {
      r.outcome = Err(StatusCode::kFailedPrecondition);
    } else if (!fits) {
      r.outcome = Err(StatusCode::kResourceExhausted);
    } else {
      r.outcome = Run(cmd);
      recs.push_back(Rec{h->id, d, r.outcome, index, false});
    }
    return r;
  }

  size_t RecordsOf(const ClientId& c) const {
    return std::count_if(recs.begin(), recs.end(), [&](auto& r) { return r.id.client == c; });
  }
  /// Room for one more record of `c`, besides the ones reserved (see ExactlyOnce::Room). A
  /// request that frees a lease, a hold or a wait may use the reserve above the global cap.
  /// Clients holding no lease may fill only their share of the global cap, and a freeing request
  /// may use the reserve only from a client within its share of it.
  bool Room(const ClientId& c, size_t reserved_own, size_t reserved, bool frees = false,
            bool leaseless_share = true) const {
    const size_t own = RecordsOf(c);
    if (own + reserved_own + 1 > limits_.max_outcomes_per_client) return false;
    const size_t added = clients.count(c) ? 1 : 2;
    const size_t after = recs.size() + clients.size() + reserved + added;
    if (leaseless_share && !frees && !HoldsLease(c) &&
        LeaselessSize() + reserved + added > LeaselessOutcomeShare(limits_)) {
      return false;
    }
    if (frees && after > limits_.max_outcomes &&
        own + reserved_own + 1 > OutcomeReserveShare(limits_)) {
      return false;
    }
    const size_t cap = limits_.max_outcomes + (frees ? OutcomeReserve(limits_) : 0);
    return after <= cap;
  }
  bool HoldsLease(const ClientId& c) const {
    return std::any_of(leases.begin(), leases.end(),
                       [&](const LeaseRec& l) { return l.by.client == c; });
  }
  /// Records plus client records of clients holding no lease.
  size_t LeaselessSize() const {
    std::set<ClientId> leased;
    for (const LeaseRec& l : leases) leased.insert(l.by.client);
    size_t n = 0;
    for (const auto& [id, cl] : clients) n += leased.count(id) ? 0 : 1;
    for (const Rec& r : recs) n += leased.count(r.id.client) ? 0 : 1;
    return n;
  }
  /// Whether running `cmd` now would end a lease, a grant or a wait.
  bool Frees(const Command& cmd) const {
    if (auto* c = std::get_if<RevokeLease>(&cmd)) return HasLease(c->lease.value());
    if (auto* c = std::get_if<Release>(&cmd)) {
      return std::any_of(grants.begin(), grants.end(), [&](const Grant& g) {
        return g.name == c->name && g.lease == c->lease.value() && g.token == c->token.value();
      });
    }
    if (auto* c = std::get_if<ForceRelease>(&cmd)) {
      return std::any_of(grants.begin(), grants.end(), [&](const Grant& g) {
        return g.name == c->name && (c->lease.zero() || g.lease == c->lease.value());
      });
    }
    if (auto* c = std::get_if<Cancel>(&cmd)) {
      if (c->acquire == c->header.id) return false;
      const auto ours = [&](uint64_t l) { return c->lease.zero() || l == c->lease.value(); };
      return std::any_of(waits.begin(), waits.end(),
                         [&](const Wait& w) {
                           return w.name == c->name && w.acquire == c->acquire && ours(w.lease);
                         }) ||
             std::any_of(grants.begin(), grants.end(), [&](const Grant& g) {
               return g.name == c->name && g.by == c->acquire && ours(g.lease);
             });
    }
    return false;
  }
  bool Refused(const RequestId& id) const {
    auto c = clients.find(id.client);
    if (c == clients.end()) return false;
    if (id.seq < c->second.watermark) return true;
    return id.seq <= c->second.forgotten &&
           std::none_of(recs.begin(), recs.end(), [&](auto& r) { return r.id == id; });
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
  std::vector<std::string> Names() const {
    std::vector<std::string> n;
    for (auto& g : grants) n.push_back(g.name);
    for (auto& w : waits) n.push_back(w.name);
    std::sort(n.begin(), n.end());
    n.erase(std::unique(n.begin(), n.end()), n.end());
    return n;
  }

 private:
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
  void Emit(Event::Type t, const std::string& name, uint64_t lease, Mode m, uint64_t tok,
            uint64_t fence) {
    Event e;
    e.type = t;
    e.number = static_cast<uint32_t>(res_->events.size() + 1);
    e.name = name;
    e.lease = LeaseId(lease);
    e.mode = m;
    e.token = FencingToken(tok);
    e.fence = FencingToken(fence);
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
  size_t LabelCount(const std::string& label) const {
    return std::count_if(leases.begin(), leases.end(), [&](auto& l) { return l.label == label; });
  }
  Status LeaseLimits(const std::string& label) const {
    if (leases.size() >= limits_.max_leases || LabelCount(label) >= limits_.max_leases_per_label) {
      return ResourceExhausted("");
    }
    return Status::Ok();
  }
  uint64_t NewLease(uint64_t ttl, const std::string& label, const RequestId& by) {
    leases.push_back(LeaseRec{++lease_ids, ttl, label, by});
    res_->leases_granted.emplace_back(LeaseId(lease_ids), ttl);
    return lease_ids;
  }
  void DoGrant(const std::string& name, uint64_t lease, Mode m, const RequestId& by, Outcome& o) {
    auto hs = HoldersOf(name);
    o.token = FencingToken(++tokens);
    o.fence = (m == Mode::kShared && !hs.empty()) ? FencingToken(hs.front()->fence) : o.token;
    grants.push_back(Grant{name, lease, m, o.token.value(), o.fence.value(), by, idx_});
    Emit(Event::Type::kAcquired, name, lease, m, o.token.value(), o.fence.value());
  }
  void SetRec(const RequestId& id, const Outcome& o) {
    if (Rec* r = Find(id)) {
      r->outcome = o;
      r->at = idx_;
    }
  }
  void Promote(const std::string& name) {
    while (true) {
      auto ws = WaitersOf(name);
      if (ws.empty() || !Compatible(name, ws.front()->mode)) return;
      Wait w = *ws.front();
      waits.erase(std::find_if(waits.begin(), waits.end(),
                               [&](auto& x) { return x.acquire == w.acquire && x.name == name; }));
      Outcome o;
      o.acquired = true;
      o.mode = w.mode;
      o.lease = LeaseId(w.lease);
      if (w.created) o.ttl_ms = LeaseOf(w.lease).ttl;
      DoGrant(name, w.lease, w.mode, w.acquire, o);
      SetRec(w.acquire, o);
      res_->completions.push_back(Completion{w.acquire, o});
    }
  }
  void DropGrant(size_t i, Event::Type t) {
    Grant g = grants[i];
    grants.erase(grants.begin() + static_cast<ptrdiff_t>(i));
    Emit(t, g.name, g.lease, g.mode, g.token, g.fence);
    Promote(g.name);
  }
  void DropWait(size_t i, Event::Type t, const std::string& why) {
    Wait w = waits[i];
    waits.erase(waits.begin() + static_cast<ptrdiff_t>(i));
    Emit(t, w.name, w.lease, w.mode, 0, 0);
    Outcome o;
    o.mode = w.mode;
    o.lease = LeaseId(w.lease);
    if (w.created && HasLease(w.lease)) o.ttl_ms = LeaseOf(w.lease).ttl;
    o.message = why;
    o.holders = Views(w.name);
    SetRec(w.acquire, o);
    res_->completions.push_back(Completion{w.acquire, o});
    Promote(w.name);
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
          DropWait(i, Event::Type::kCancelled,
                   "lease " + std::to_string(id) + (expired ? " expired" : " was revoked"));
          break;
        }
      }
      o.dropped.push_back(n);
    }
    auto gone = std::find_if(leases.begin(), leases.end(), [&](auto& l) { return l.id == id; });
    if (auto c = clients.find(gone->by.client); c != clients.end()) {
      c->second.last_active = std::max(c->second.last_active, idx_);
    }
    leases.erase(gone);
    res_->leases_ended.push_back(LeaseId(id));
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
          DropWait(i, Event::Type::kCancelled,
                   "not acquired within wait_ms " + std::to_string(waits[i].wait_ms));
          break;
        }
      }
      return Outcome{};
    }
    if (auto* c = std::get_if<RetireOutcomes>(&cmd)) {
      const uint64_t upto = c->recorded_at_or_before.value();
      const uint64_t expired = c->expired_at_or_before.value();
      std::erase_if(recs, [&](const Rec& r) {
        if (r.outcome.waiting) return false;  // a pending wait keeps its record
        ClientRec& cl = clients[r.id.client];
        if (r.at <= expired) {
          // Only what the client ran raises the mark, not a Cancel in advance.
          if (!r.cancelled) cl.forgotten = std::max(cl.forgotten, r.id.seq);
          return true;
        }
        return r.id.seq < cl.watermark && r.at <= upto;
      });
      for (auto it = clients.begin(); it != clients.end();) {
        const ClientId cl = it->first;
        const bool has_recs =
            std::any_of(recs.begin(), recs.end(), [&](auto& r) { return r.id.client == cl; });
        const bool has_lease =
            std::any_of(leases.begin(), leases.end(), [&](auto& l) { return l.by.client == cl; });
        if (!has_recs && !has_lease && it->second.last_active <= expired) {
          it = clients.erase(it);
        } else {
          ++it;
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
      if (c.ttl_ms != 0) return Err(StatusCode::kInvalidArgument);
      if (!HasLease(c.lease.value())) return Err(StatusCode::kNotFound);
      for (auto& g : grants) {
        if (g.name == c.name && g.lease == c.lease.value())
          return Err(StatusCode::kFailedPrecondition);
      }
      for (auto& w : waits) {
        if (w.name == c.name && w.lease == c.lease.value())
          return Err(StatusCode::kFailedPrecondition);
      }
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
    waits.push_back(Wait{c.name, lease, c.mode, c.header.id, c.wait_ms, idx_, fresh});
    Emit(Event::Type::kWaiting, c.name, lease, c.mode, 0, 0);
    res_->waits_started.push_back(WaitStarted{c.name, c.header.id, LeaseId(lease), c.wait_ms});
    o.waiting = true;
    o.holders = Views(c.name);
    return o;
  }

  Outcome RunCancel(const Cancel& c) {
    if (!ValidateName(c.name, limits_).ok() || c.acquire == c.header.id) {
      return Err(StatusCode::kInvalidArgument);
    }
    // Found by its request id alone; a lease id, when given, must be the one it used.
    const auto matches = [&](uint64_t lease) { return c.lease.zero() || lease == c.lease.value(); };
    Outcome o;
    for (size_t i = 0; i < waits.size(); ++i) {
      if (waits[i].name == c.name && waits[i].acquire == c.acquire) {
        if (!matches(waits[i].lease)) return Err(StatusCode::kFailedPrecondition);
        DropWait(i, Event::Type::kCancelled, "cancelled");
        o.effect = CancelEffect::kWithdrewWait;
        return o;
      }
    }
    for (size_t i = 0; i < grants.size(); ++i) {
      if (grants[i].name == c.name && grants[i].by == c.acquire) {
        if (!matches(grants[i].lease)) return Err(StatusCode::kFailedPrecondition);
        DropGrant(i, Event::Type::kReleased);
        o.effect = CancelEffect::kReleasedGrant;
        return o;
      }
    }
    if (Find(c.acquire) || Refused(c.acquire)) {
      o.effect = CancelEffect::kNothingToCancel;
      return o;
    }
    if (!c.lease.zero() && !HasLease(c.lease.value())) return Err(StatusCode::kNotFound);
    // Only the Acquire's own client may cancel it in advance.
    if (c.acquire.client != c.header.id.client) return Err(StatusCode::kFailedPrecondition);
    if (!Room(c.acquire.client, 1, 1, false, /*leaseless_share=*/false)) {
      return Err(StatusCode::kResourceExhausted);
    }
    recs.push_back(Rec{c.acquire, 0, Outcome{}, idx_, true});
    clients[c.acquire.client].last_active = std::max(clients[c.acquire.client].last_active, idx_);
    o.effect = CancelEffect::kCancelledInAdvance;
    return o;
  }

  Limits limits_;
  uint64_t idx_ = 0;
  ApplyResult* res_ = nullptr;
};

}  // namespace lockd::lock::testing
