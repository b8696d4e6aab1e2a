// ExactlyOnce: admission, records, retirement and the derived indexes. The byte encoding is in
// exactly_once_codec.cc.
#include "lock/exactly_once.h"

#include <algorithm>
#include <vector>

#include "base/check.h"

namespace lockd::lock {

namespace {

bool Pending(const Outcome& o) {
  return o.waiting;
}

std::string ClientName(const ClientId& c) {
  return ToString(RequestId{c, 0}).substr(0, 32);
}

}  // namespace

// --- copies and moves: the indexes point into the maps, so a copy derives its own --------------

ExactlyOnce::ExactlyOnce(const ExactlyOnce& o)
    : clients_(o.clients_), records_(o.records_), ages_(o.ages_), last_mark_ms_(o.last_mark_ms_) {
  Reindex();
}

ExactlyOnce& ExactlyOnce::operator=(const ExactlyOnce& o) {
  if (this != &o) {
    ExactlyOnce copy(o);
    *this = std::move(copy);
  }
  return *this;
}

// std::map keeps its nodes when moved, so the pointers stay valid in the new owner.
ExactlyOnce::ExactlyOnce(ExactlyOnce&& o) noexcept
    : clients_(std::move(o.clients_)),
      records_(std::exchange(o.records_, 0)),
      ages_(std::move(o.ages_)),
      last_mark_ms_(std::exchange(o.last_mark_ms_, 0)),
      leased_size_(std::exchange(o.leased_size_, 0)),
      oldest_(std::exchange(o.oldest_, nullptr)),
      newest_(std::exchange(o.newest_, nullptr)),
      below_watermark_(std::move(o.below_watermark_)),
      idle_(std::move(o.idle_)) {
  o.clients_.clear();
}

ExactlyOnce& ExactlyOnce::operator=(ExactlyOnce&& o) noexcept {
  if (this != &o) {
    clients_ = std::move(o.clients_);
    o.clients_.clear();
    records_ = std::exchange(o.records_, 0);
    ages_ = std::move(o.ages_);
    last_mark_ms_ = std::exchange(o.last_mark_ms_, 0);
    leased_size_ = std::exchange(o.leased_size_, 0);
    oldest_ = std::exchange(o.oldest_, nullptr);
    newest_ = std::exchange(o.newest_, nullptr);
    below_watermark_ = std::move(o.below_watermark_);
    idle_ = std::move(o.idle_);
  }
  return *this;
}

// --- admission --------------------------------------------------------------------------------

Status ExactlyOnce::Room(const ClientId& client, size_t reserved_own, size_t reserved,
                         const Limits& limits, AdmitRules rules) const {
  const bool frees = rules.frees;
  auto it = clients_.find(client);
  const size_t own = it == clients_.end() ? 0 : it->second.records.size();
  if (own + reserved_own + 1 > limits.max_outcomes_per_client) {
    return ResourceExhausted(
        "client " + ClientName(client) + " has " + std::to_string(own) +
        " outstanding exactly-once records, the limit (--max-outcomes-per-client=" +
        std::to_string(limits.max_outcomes_per_client) +
        "); a client that sends its watermark (its lowest pending sequence number) has its "
        "answered requests retired early");
  }
  const size_t added = it == clients_.end() ? 2 : 1;
  const size_t reserve = OutcomeReserve(limits);
  const size_t cap = limits.max_outcomes + (frees ? reserve : 0);
  const bool leaseless = it == clients_.end() || it->second.leases == 0;
  if (rules.leaseless_share && !frees && leaseless &&
      leaseless_size() + reserved + added > LeaselessOutcomeShare(limits)) {
    return ResourceExhausted(
        "clients holding no lease keep " + std::to_string(leaseless_size()) +
        " exactly-once records, their share (half of --max-outcomes=" +
        std::to_string(limits.max_outcomes) + ", " + std::to_string(LeaselessOutcomeShare(limits)) +
        "); the rest is kept for clients that hold a lease, and a request that frees a lock or a "
        "lease is not held to it");
  }
  if (frees && size() + reserved + added > limits.max_outcomes &&
      own + reserved_own + 1 > OutcomeReserveShare(limits)) {
    return ResourceExhausted("the cluster keeps " + std::to_string(size()) +
                             " exactly-once records, past the limit (--max-outcomes=" +
                             std::to_string(limits.max_outcomes) + "), and client " +
                             ClientName(client) + " has " + std::to_string(own) +
                             ", past its share of the reserve for requests that free a lock or a " +
                             "lease (" + std::to_string(OutcomeReserveShare(limits)) +
                             ", a sixteenth of the reserve of " + std::to_string(reserve) +
                             "); a client that sends its watermark has its answered " +
                             "requests retired early");
  }
  if (size() + reserved + added > cap) {
    return ResourceExhausted(
        "the cluster keeps " + std::to_string(size()) +
        " exactly-once records, the limit (--max-outcomes=" + std::to_string(limits.max_outcomes) +
        ")" +
        (frees ? " and its reserve of " + std::to_string(reserve) +
                     " for requests that free a lock or a lease"
               : "; a Release, RevokeLease, Cancel or ForceRelease that frees a lock or a lease "
                 "may still use a reserve of " +
                     std::to_string(reserve) + " above it"));
  }
  return Status::Ok();
}

ExactlyOnce::Admission ExactlyOnce::Peek(const RequestHeader& h, uint64_t digest,
                                         const Limits& limits, AdmitRules rules) const {
  auto c = clients_.find(h.id.client);
  if (c != clients_.end()) {
    // A record made with access control on belongs to its principal: a request of another one
    // may not use it (one without a principal was proposed with access control off: nothing is
    // checked). A record made with access control off is claimed by the first principal that
    // uses it (Admit): a client process running when access control is switched on carries on.
    if (!h.caller.principal.empty() && !c->second.principal.empty() &&
        c->second.principal != h.caller.principal) {
      return {Verdict::kOtherIdentity, nullptr, {}};
    }
    if (h.id.seq < c->second.watermark) return {Verdict::kBelowWatermark, nullptr, {}};
    auto it = c->second.records.find(h.id.seq);
    if (it != c->second.records.end()) {
      if (it->second.cancelled_in_advance) return {Verdict::kCancelledInAdvance, nullptr, {}};
      if (it->second.digest != digest) return {Verdict::kDigestMismatch, nullptr, {}};
      return {Verdict::kReplay, &it->second.outcome, {}};
    }
    if (h.id.seq <= c->second.forgotten_through) return {Verdict::kForgotten, nullptr, {}};
  }
  // Only a request that would add a record is ever refused for room: a retry is answered above.
  if (Status s = Room(h.id.client, 0, 0, limits, rules); !s.ok()) {
    return {Verdict::kNoRoom, nullptr, std::move(s)};
  }
  return {Verdict::kExecute, nullptr, {}};
}

ExactlyOnce::Admission ExactlyOnce::Admit(const RequestHeader& h, uint64_t digest, LogIndex at,
                                          const Limits& limits, AdmitRules rules) {
  Admission a = Peek(h, digest, limits, rules);
  if (a.verdict == Verdict::kNoRoom && !clients_.count(h.id.client)) return a;
  if (a.verdict == Verdict::kOtherIdentity) return a;
  auto [it, added] = clients_.try_emplace(h.id.client);
  Client& c = it->second;
  if (added) c.id = h.id.client;
  if (c.principal.empty()) c.principal = h.caller.principal;
  if (h.watermark > c.watermark) c.watermark = h.watermark;
  Touch(c, at);
  return a;
}

Status ExactlyOnce::RoomForCancelInAdvance(const RequestId& id, const ClientId& canceller,
                                           const Limits& limits) const {
  // A record of an Acquire that may never come frees nothing: the cap applies in full. The
  // leaseless share is not checked again: the Cancel itself was admitted under it (and a Cancel
  // in advance comes only from the Acquire's own client).
  return Room(id.client, canceller == id.client ? 1 : 0, 1, limits,
              AdmitRules{.frees = false, .leaseless_share = false});
}

// --- records ----------------------------------------------------------------------------------

ExactlyOnce::Entry& ExactlyOnce::Put(Client& c, uint64_t seq, LogIndex at) {
  auto [it, added] = c.records.try_emplace(seq);
  if (added) {
    ++records_;
    if (c.leases > 0) ++leased_size_;
  }
  Entry& e = it->second;
  Unlink(e);  // a cancel in advance now recorded as run: it moves to the young end
  e.recorded_at = at;
  return e;
}

void ExactlyOnce::Record(const RequestId& id, uint64_t digest, const Outcome& outcome,
                         LogIndex at) {
  auto [it, added] = clients_.try_emplace(id.client);
  Client& c = it->second;
  if (added) c.id = id.client;
  Entry& e = Put(c, id.seq, at);
  e.digest = digest;
  e.outcome = outcome;
  e.cancelled_in_advance = false;
  Link(c, id.seq, e);
  Touch(c, at);
}

void ExactlyOnce::Update(const RequestId& id, const Outcome& outcome, LogIndex at) {
  auto c = clients_.find(id.client);
  if (c == clients_.end()) return;
  auto r = c->second.records.find(id.seq);
  if (r == c->second.records.end()) return;
  Unlink(r->second);
  r->second.outcome = outcome;
  // The caller learns the final answer now: a retry gets it for a whole window from here.
  r->second.recorded_at = at;
  Link(c->second, id.seq, r->second);
  Settle(c->second);
}

void ExactlyOnce::CancelInAdvance(const RequestId& id, LogIndex at) {
  auto [it, added] = clients_.try_emplace(id.client);
  Client& c = it->second;
  if (added) c.id = id.client;
  Entry& e = Put(c, id.seq, at);
  e.cancelled_in_advance = true;
  Link(c, id.seq, e);
  Touch(c, at);
}

bool ExactlyOnce::Known(const RequestId& id) const {
  auto c = clients_.find(id.client);
  return c != clients_.end() && c->second.records.count(id.seq) > 0;
}

bool ExactlyOnce::Refused(const RequestId& id) const {
  auto c = clients_.find(id.client);
  return c != clients_.end() &&
         (id.seq < c->second.watermark ||
          (id.seq <= c->second.forgotten_through && !c->second.records.count(id.seq)));
}

void ExactlyOnce::LeaseGranted(const ClientId& client) {
  // The client was admitted (it sent the request), except in a snapshot written before the
  // table kept every lease's client: then it starts here, with no watermark.
  auto [c, added] = clients_.try_emplace(client);
  if (added) c->second.id = client;
  if (c->second.leases == 0) leased_size_ += c->second.records.size() + 1;
  ++c->second.leases;
  SettleIdle(c->second);
}

void ExactlyOnce::LeaseEnded(const ClientId& client, LogIndex at) {
  auto c = clients_.find(client);
  if (c == clients_.end()) return;
  if (c->second.leases > 0 && --c->second.leases == 0) {
    leased_size_ -= c->second.records.size() + 1;
  }
  Touch(c->second, at);
}

// --- the derived indexes ----------------------------------------------------------------------

void ExactlyOnce::Link(Client& c, uint64_t seq, Entry& e) {
  if (Pending(e.outcome)) return;  // kept whatever its age until its wait ends (Update links it)
  e.age = AgeLink{&c, seq, newest_, nullptr, true};
  if (newest_) {
    newest_->age.newer = &e;
  } else {
    oldest_ = &e;
  }
  newest_ = &e;
}

void ExactlyOnce::Unlink(Entry& e) {
  if (!e.age.linked) return;
  (e.age.older ? e.age.older->age.newer : oldest_) = e.age.newer;
  (e.age.newer ? e.age.newer->age.older : newest_) = e.age.older;
  e.age = AgeLink{};
}

void ExactlyOnce::Erase(Client& c, std::map<uint64_t, Entry>::iterator r) {
  Unlink(r->second);
  c.records.erase(r);
  --records_;
  if (c.leases > 0) --leased_size_;
}

void ExactlyOnce::Touch(Client& c, LogIndex at) {
  if (at > c.last_active) c.last_active = at;
  Settle(c);
}

void ExactlyOnce::Settle(Client& c) {
  if (!c.records.empty() && c.records.begin()->first < c.watermark) below_watermark_.insert(c.id);
  SettleIdle(c);
}

void ExactlyOnce::SettleIdle(Client& c) {
  const bool idle = c.records.empty() && c.leases == 0;
  if (c.idle && (!idle || c.idle_key != c.last_active)) {
    idle_.erase({c.idle_key, c.id});
    c.idle = false;
  }
  if (idle && !c.idle) {
    idle_.emplace(c.last_active, c.id);
    c.idle = true;
    c.idle_key = c.last_active;
  }
}

void ExactlyOnce::Reindex() {
  oldest_ = newest_ = nullptr;
  below_watermark_.clear();
  idle_.clear();
  leased_size_ = 0;
  std::vector<std::pair<Client*, std::map<uint64_t, Entry>::iterator>> finished;
  for (auto& [id, c] : clients_) {
    c.id = id;
    c.idle = false;
    if (c.leases > 0) leased_size_ += c.records.size() + 1;
    for (auto r = c.records.begin(); r != c.records.end(); ++r) {
      r->second.age = AgeLink{};
      if (!Pending(r->second.outcome)) finished.emplace_back(&c, r);
    }
  }
  // The order among records of one index does not matter: they are retired together.
  std::stable_sort(finished.begin(), finished.end(), [](const auto& a, const auto& b) {
    return a.second->second.recorded_at < b.second->second.recorded_at;
  });
  for (auto& [c, r] : finished) Link(*c, r->first, r->second);
  for (auto& [id, c] : clients_) Settle(c);
}

// --- retirement -------------------------------------------------------------------------------

void ExactlyOnce::Retire(const RetireOutcomes& retire, LogIndex at) {
  const LogIndex expired = retire.expired_at_or_before;
  const LogIndex answered = retire.recorded_at_or_before;
  retire_steps_ = 0;
  // Every finished record at least the window old, oldest first: the age list's head.
  while (oldest_ && oldest_->recorded_at <= expired) {
    ++retire_steps_;
    Client& c = *oldest_->age.client;
    const uint64_t seq = oldest_->age.seq;
    // Only a request the client itself ran raises the mark: a Cancel in advance records an
    // Acquire that may never come, at any sequence number.
    if (!oldest_->cancelled_in_advance && seq > c.forgotten_through) c.forgotten_through = seq;
    Erase(c, c.records.find(seq));
    SettleIdle(c);
  }
  // Finished records below their client's watermark, once F_fwd old: only the clients listed.
  for (auto id = below_watermark_.begin(); id != below_watermark_.end();) {
    auto found = clients_.find(*id);
    bool keep = false;
    ++retire_steps_;
    if (found != clients_.end()) {
      Client& c = found->second;
      for (auto r = c.records.begin(); r != c.records.end() && r->first < c.watermark;) {
        ++retire_steps_;
        // A wait still pending keeps its record: its retry must rejoin it, and its end update it
        // (which lists the client again).
        if (Pending(r->second.outcome)) {
          ++r;
        } else if (r->second.recorded_at <= answered) {
          auto next = std::next(r);
          Erase(c, r);
          r = next;
        } else {
          keep = true;  // not F_fwd old yet: a later retirement takes it
          ++r;
        }
      }
    }
    id = keep ? std::next(id) : below_watermark_.erase(id);
    if (found != clients_.end()) SettleIdle(found->second);
  }
  // Clients with no record and no lease, inactive for the window: the idle list's head.
  while (!idle_.empty() && idle_.begin()->first <= expired) {
    ++retire_steps_;
    const ClientId id = idle_.begin()->second;
    idle_.erase(idle_.begin());
    below_watermark_.erase(id);
    clients_.erase(id);
  }
  AddAgeSample(retire, at);
}

void ExactlyOnce::AddAgeSample(const RetireOutcomes& retire, LogIndex at) {
  // Samples no later decision needs: a bound at or below this one's age bound retires nothing
  // more (the age list is ordered, and what it retired is gone).
  while (!ages_.empty() && ages_.front().applied <= retire.expired_at_or_before) ages_.pop_front();
  if (retire.age_mark_ms == 0) return;  // format 2: no sample
  // The clock only goes forward, in both index and mark; anything else is ignored the same way
  // on every node (a leader never proposes it).
  if (retire.sampled_index >= at || retire.age_mark_ms < last_mark_ms_ ||
      (!ages_.empty() && retire.sampled_index < ages_.back().applied)) {
    return;
  }
  last_mark_ms_ = retire.age_mark_ms;
  ages_.push_back(AgeSample{retire.sampled_index, retire.age_mark_ms});
  if (ages_.size() > kMaxAgeSamples) {
    // Drop the one inner sample whose neighbours are closest in mark: a record then counts its
    // age from a later sample, so it is only ever retained longer, and by the least. (Thinning
    // to every other sample, as before, lost the old samples exponentially: +0.41 W at 1 day.)
    size_t drop = 1;
    for (size_t i = 2; i + 1 < ages_.size(); ++i) {
      if (ages_[i + 1].mark_ms - ages_[i - 1].mark_ms <
          ages_[drop + 1].mark_ms - ages_[drop - 1].mark_ms) {
        drop = i;
      }
    }
    ages_.erase(ages_.begin() + static_cast<std::ptrdiff_t>(drop));
  }
}

void ExactlyOnce::CheckInvariants(const std::map<ClientId, uint32_t>& leases_by_client) const {
  size_t records = 0, finished = 0, idle = 0, leased = 0;
  for (const auto& [id, c] : clients_) {
    LOCKD_CHECK(c.id == id);
    records += c.records.size();
    auto leases = leases_by_client.find(id);
    LOCKD_CHECK(c.leases == (leases == leases_by_client.end() ? 0 : leases->second));
    if (c.leases > 0) leased += c.records.size() + 1;
    const bool is_idle = c.records.empty() && c.leases == 0;
    LOCKD_CHECK(c.idle == is_idle);
    if (is_idle) {
      LOCKD_CHECK(c.idle_key == c.last_active && idle_.count({c.last_active, id}));
      ++idle;
    }
    bool below = false;
    for (const auto& [seq, e] : c.records) {
      LOCKD_CHECK(e.age.linked == !Pending(e.outcome));
      if (e.age.linked) {
        LOCKD_CHECK(e.age.client == &c && e.age.seq == seq);
        ++finished;
        if (seq < c.watermark) below = true;
      }
    }
    if (below) LOCKD_CHECK_MSG(below_watermark_.count(id), "a client below its watermark unlisted");
  }
  for (const auto& [id, c] : leases_by_client) LOCKD_CHECK(clients_.count(id));
  LOCKD_CHECK(records == records_);
  LOCKD_CHECK(leased == leased_size_);
  LOCKD_CHECK(idle == idle_.size());
  size_t walked = 0;
  for (const Entry* e = oldest_; e; e = e->age.newer) {
    ++walked;
    if (e->age.newer) LOCKD_CHECK(e->recorded_at <= e->age.newer->recorded_at);
    LOCKD_CHECK(e->age.newer ? e->age.newer->age.older == e : newest_ == e);
  }
  LOCKD_CHECK(walked == finished);
  for (size_t i = 1; i < ages_.size(); ++i) {
    LOCKD_CHECK(ages_[i - 1].applied <= ages_[i].applied);
    LOCKD_CHECK(ages_[i - 1].mark_ms <= ages_[i].mark_ms);
  }
  if (!ages_.empty()) LOCKD_CHECK(ages_.back().mark_ms == last_mark_ms_);
}

}  // namespace lockd::lock
