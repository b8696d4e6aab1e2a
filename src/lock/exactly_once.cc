#include "lock/exactly_once.h"

namespace lockd::lock {

namespace {

bool Pending(const Outcome& o) {
  return o.waiting;
}

std::string ClientName(const ClientId& c) {
  return ToString(RequestId{c, 0}).substr(0, 32);
}

}  // namespace

Status ExactlyOnce::Room(const ClientId& client, size_t reserved_own, size_t reserved,
                         const Limits& limits) const {
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
  if (size() + reserved + added > limits.max_outcomes) {
    return ResourceExhausted("the cluster keeps " + std::to_string(size()) +
                             " exactly-once records, the limit (--max-outcomes=" +
                             std::to_string(limits.max_outcomes) + ")");
  }
  return Status::Ok();
}

ExactlyOnce::Admission ExactlyOnce::Peek(const RequestHeader& h, uint64_t digest,
                                         const Limits& limits) const {
  auto c = clients_.find(h.id.client);
  if (c != clients_.end()) {
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
  if (Status s = Room(h.id.client, 0, 0, limits); !s.ok()) {
    return {Verdict::kNoRoom, nullptr, std::move(s)};
  }
  return {Verdict::kExecute, nullptr, {}};
}

ExactlyOnce::Admission ExactlyOnce::Admit(const RequestHeader& h, uint64_t digest, LogIndex at,
                                          const Limits& limits) {
  Admission a = Peek(h, digest, limits);
  if (a.verdict == Verdict::kNoRoom && !clients_.count(h.id.client)) return a;
  Client& c = clients_[h.id.client];
  if (at > c.last_active) c.last_active = at;
  if (h.watermark > c.watermark) c.watermark = h.watermark;
  return a;
}

void ExactlyOnce::Record(const RequestId& id, uint64_t digest, const Outcome& outcome,
                         LogIndex at) {
  Client& c = clients_[id.client];
  auto [it, added] = c.records.try_emplace(id.seq);
  if (added) ++records_;
  Entry& r = it->second;
  r.digest = digest;
  r.outcome = outcome;
  r.recorded_at = at;
  r.cancelled_in_advance = false;
  if (at > c.last_active) c.last_active = at;
}

void ExactlyOnce::Update(const RequestId& id, const Outcome& outcome, LogIndex at) {
  auto c = clients_.find(id.client);
  if (c == clients_.end()) return;
  auto r = c->second.records.find(id.seq);
  if (r == c->second.records.end()) return;
  r->second.outcome = outcome;
  // The caller learns the final answer now: a retry gets it for a whole window from here.
  r->second.recorded_at = at;
}

Status ExactlyOnce::RoomForCancelInAdvance(const RequestId& id, const ClientId& canceller,
                                           const Limits& limits) const {
  return Room(id.client, canceller == id.client ? 1 : 0, 1, limits);
}

void ExactlyOnce::CancelInAdvance(const RequestId& id, LogIndex at) {
  Client& c = clients_[id.client];
  auto [it, added] = c.records.try_emplace(id.seq);
  if (added) ++records_;
  it->second.cancelled_in_advance = true;
  it->second.recorded_at = at;
  if (at > c.last_active) c.last_active = at;
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

void ExactlyOnce::LeaseEnded(const ClientId& client, LogIndex at) {
  auto c = clients_.find(client);
  if (c != clients_.end() && at > c->second.last_active) c->second.last_active = at;
}

void ExactlyOnce::Retire(LogIndex below_watermark_upto, LogIndex expired_upto,
                         const std::function<bool(const ClientId&)>& has_lease) {
  for (auto c = clients_.begin(); c != clients_.end();) {
    Client& client = c->second;
    for (auto r = client.records.begin(); r != client.records.end();) {
      const Entry& e = r->second;
      const bool expired = e.recorded_at <= expired_upto;
      const bool answered = r->first < client.watermark && e.recorded_at <= below_watermark_upto;
      // A wait still pending keeps its record: its retry must rejoin it, and its end update it.
      if (Pending(e.outcome) || !(expired || answered)) {
        ++r;
        continue;
      }
      // Only a request the client itself ran raises the mark: a Cancel in advance records an
      // Acquire that may never come, at any sequence number.
      if (expired && !e.cancelled_in_advance && r->first > client.forgotten_through) {
        client.forgotten_through = r->first;
      }
      r = client.records.erase(r);
      --records_;
    }
    if (client.records.empty() && client.last_active <= expired_upto && !has_lease(c->first)) {
      c = clients_.erase(c);
    } else {
      ++c;
    }
  }
}

// --- encoding ---------------------------------------------------------------------------------

void EncodeOutcome(Writer& w, const Outcome& o) {
  w.Varint(static_cast<uint64_t>(o.code));
  w.Bytes(o.message);
  w.Varint(o.lease.value());
  w.Varint(o.ttl_ms);
  w.U8(static_cast<uint8_t>((o.acquired ? 1 : 0) | (o.waiting ? 2 : 0)));
  w.Varint(o.token.value());
  w.Varint(o.fence.value());
  w.U8(static_cast<uint8_t>(o.mode));
  w.Varint(o.holders.size());
  for (const auto& h : o.holders) {
    w.Varint(h.lease.value());
    w.Bytes(h.label);
    w.U8(static_cast<uint8_t>(h.mode));
    w.Varint(h.token.value());
    w.Varint(h.fence.value());
    w.Fixed64(h.acquired_by.client.hi);
    w.Fixed64(h.acquired_by.client.lo);
    w.Varint(h.acquired_by.seq);
    w.Varint(h.granted_at.value());
  }
  w.U8(static_cast<uint8_t>(o.effect));
  w.Varint(o.released.size());
  for (const auto& s : o.released) w.Bytes(s);
  w.Varint(o.dropped.size());
  for (const auto& s : o.dropped) w.Bytes(s);
}

bool DecodeOutcome(Reader& r, Outcome* o) {
  uint64_t code = 0, lease = 0, token = 0, fence = 0, n = 0;
  uint8_t flags = 0, mode = 0, effect = 0;
  if (!r.Varint(&code) || !r.Bytes(&o->message) || !r.Varint(&lease) || !r.Varint(&o->ttl_ms) ||
      !r.U8(&flags) || !r.Varint(&token) || !r.Varint(&fence) || !r.U8(&mode) || !r.Varint(&n)) {
    return false;
  }
  o->code = static_cast<StatusCode>(code);
  o->lease = LeaseId(lease);
  o->acquired = flags & 1;
  o->waiting = flags & 2;
  o->token = FencingToken(token);
  o->fence = FencingToken(fence);
  o->mode = static_cast<Mode>(mode);
  if (n > r.remaining()) return false;
  o->holders.resize(n);
  for (auto& h : o->holders) {
    uint64_t hl = 0, ht = 0, hf = 0, at = 0;
    uint8_t hm = 0;
    if (!r.Varint(&hl) || !r.Bytes(&h.label) || !r.U8(&hm) || !r.Varint(&ht) || !r.Varint(&hf) ||
        !r.Fixed64(&h.acquired_by.client.hi) || !r.Fixed64(&h.acquired_by.client.lo) ||
        !r.Varint(&h.acquired_by.seq) || !r.Varint(&at)) {
      return false;
    }
    h.lease = LeaseId(hl);
    h.mode = static_cast<Mode>(hm);
    h.token = FencingToken(ht);
    h.fence = FencingToken(hf);
    h.granted_at = LogIndex(at);
  }
  if (!r.U8(&effect) || !r.Varint(&n) || n > r.remaining()) return false;
  o->effect = static_cast<CancelEffect>(effect);
  o->released.resize(n);
  for (auto& s : o->released) {
    if (!r.Bytes(&s)) return false;
  }
  if (!r.Varint(&n) || n > r.remaining()) return false;
  o->dropped.resize(n);
  for (auto& s : o->dropped) {
    if (!r.Bytes(&s)) return false;
  }
  return true;
}

void ExactlyOnce::EncodeTo(Writer& w) const {
  w.Varint(clients_.size());
  for (const auto& [id, c] : clients_) {
    w.Fixed64(id.hi);
    w.Fixed64(id.lo);
    w.Varint(c.watermark);
    w.Varint(c.forgotten_through);
    w.Varint(c.last_active.value());
    w.Varint(c.records.size());
    for (const auto& [seq, rec] : c.records) {
      w.Varint(seq);
      w.Fixed64(rec.digest);
      w.Varint(rec.recorded_at.value());
      w.U8(rec.cancelled_in_advance ? 1 : 0);
      EncodeOutcome(w, rec.outcome);
    }
  }
}

bool ExactlyOnce::DecodeFrom(Reader& r, uint8_t version) {
  clients_.clear();
  records_ = 0;
  uint64_t n = 0;
  if (!r.Varint(&n)) return false;
  for (uint64_t i = 0; i < n; ++i) {
    ClientId id;
    Client c;
    uint64_t active = 0, records = 0;
    if (!r.Fixed64(&id.hi) || !r.Fixed64(&id.lo) || !r.Varint(&c.watermark) ||
        (version >= 2 && !r.Varint(&c.forgotten_through)) || !r.Varint(&active) ||
        !r.Varint(&records)) {
      return false;
    }
    c.last_active = LogIndex(active);
    for (uint64_t j = 0; j < records; ++j) {
      uint64_t seq = 0, at = 0;
      uint8_t cancelled = 0;
      Entry rec;
      if (!r.Varint(&seq) || !r.Fixed64(&rec.digest) || !r.Varint(&at) || !r.U8(&cancelled) ||
          !DecodeOutcome(r, &rec.outcome)) {
        return false;
      }
      rec.recorded_at = LogIndex(at);
      rec.cancelled_in_advance = cancelled != 0;
      if (!c.records.emplace(seq, std::move(rec)).second) return false;
      ++records_;
    }
    if (!clients_.emplace(id, std::move(c)).second) return false;
  }
  return true;
}

}  // namespace lockd::lock
