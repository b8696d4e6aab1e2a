// ExactlyOnce: the byte encoding of the table and of outcomes, for the snapshot. Only the
// records, the clients and the age samples are written; the indexes are derived on decode.
#include "lock/exactly_once.h"

namespace lockd::lock {

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
    w.Bytes(c.principal);
    w.Varint(c.records.size());
    for (const auto& [seq, rec] : c.records) {
      w.Varint(seq);
      w.Fixed64(rec.digest);
      w.Varint(rec.recorded_at.value());
      w.U8(rec.cancelled_in_advance ? 1 : 0);
      EncodeOutcome(w, rec.outcome);
    }
  }
  w.Varint(last_mark_ms_);
  w.Varint(ages_.size());
  for (const auto& a : ages_) {
    w.Varint(a.applied.value());
    w.Varint(a.mark_ms);
  }
}

bool ExactlyOnce::DecodeFrom(Reader& r, uint8_t version, LogIndex applied) {
  *this = ExactlyOnce();
  uint64_t n = 0;
  if (!r.Varint(&n)) return false;
  for (uint64_t i = 0; i < n; ++i) {
    ClientId id;
    Client c;
    uint64_t active = 0, records = 0;
    if (!r.Fixed64(&id.hi) || !r.Fixed64(&id.lo) || !r.Varint(&c.watermark) ||
        (version >= 2 && !r.Varint(&c.forgotten_through)) || !r.Varint(&active) ||
        (version >= 4 && !r.Bytes(&c.principal)) || !r.Varint(&records)) {
      return false;
    }
    c.id = id;
    c.last_active = LogIndex(active);
    if (c.last_active > applied) return false;
    for (uint64_t j = 0; j < records; ++j) {
      uint64_t seq = 0, at = 0;
      uint8_t cancelled = 0;
      Entry rec;
      if (!r.Varint(&seq) || !r.Fixed64(&rec.digest) || !r.Varint(&at) || !r.U8(&cancelled) ||
          !DecodeOutcome(r, &rec.outcome)) {
        return false;
      }
      rec.recorded_at = LogIndex(at);
      if (rec.recorded_at > applied) return false;
      rec.cancelled_in_advance = cancelled != 0;
      if (!c.records.emplace(seq, std::move(rec)).second) return false;
      ++records_;
    }
    if (!clients_.emplace(id, std::move(c)).second) return false;
  }
  if (version >= 3) {
    uint64_t samples = 0;
    if (!r.Varint(&last_mark_ms_) || !r.Varint(&samples) || samples > r.remaining() ||
        samples > kMaxAgeSamples) {
      return false;
    }
    for (uint64_t i = 0; i < samples; ++i) {
      uint64_t sampled = 0, mark = 0;
      if (!r.Varint(&sampled) || !r.Varint(&mark)) return false;
      const AgeSample a{LogIndex(sampled), mark};
      // Strictly before the applied index (AddAgeSample takes only a sample below the index it is
      // applied at): a later one would stop the age clock for good and make the next retirement
      // drop every finished record and idle client, whatever its age.
      if (a.applied >= applied) return false;
      // In order, and none past the newest mark: the order AddAgeSample keeps.
      if (mark > last_mark_ms_ || (!ages_.empty() && (a.applied < ages_.back().applied ||
                                                      a.mark_ms < ages_.back().mark_ms))) {
        return false;
      }
      ages_.push_back(a);
    }
    if (!ages_.empty() && ages_.back().mark_ms != last_mark_ms_) return false;
  }
  Reindex();
  return true;
}

}  // namespace lockd::lock
