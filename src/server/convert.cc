#include "server/convert.h"

#include "lock/validate.h"

namespace lockd::server {

namespace pb = lockd::v1;

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
}

grpc::Status ToGrpc(const lock::Outcome& o) {
  if (o.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(o.code), o.message);
}

lock::RequestId FromProto(const pb::RequestId& id) {
  lock::RequestId r;
  r.client.hi = id.client_hi();
  r.client.lo = id.client_lo();
  r.seq = id.seq();
  return r;
}

void ToProto(const lock::RequestId& id, pb::RequestId* out) {
  out->set_client_hi(id.client.hi);
  out->set_client_lo(id.client.lo);
  out->set_seq(id.seq);
}

Result<lock::RequestHeader> FromProto(const pb::RequestHeader& h) {
  if (!h.has_id()) {
    return InvalidArgument(
        "header.id is missing: every mutating call carries a request id "
        "(client id + sequence number)");
  }
  lock::RequestHeader r;
  r.id = FromProto(h.id());
  r.attempt = h.attempt();
  r.watermark = h.watermark();
  if (Status s = lock::ValidateHeader(r); !s.ok()) return s;
  return r;
}

Result<lock::Mode> ModeFromProto(int mode) {
  switch (mode) {
    case pb::EXCLUSIVE:
      return lock::Mode::kExclusive;
    case pb::SHARED:
      return lock::Mode::kShared;
    default:
      return InvalidArgument("mode " + std::to_string(mode) +
                             " is not EXCLUSIVE (1) or SHARED (2)");
  }
}

pb::LockMode ToProto(lock::Mode m) {
  return m == lock::Mode::kShared ? pb::SHARED : pb::EXCLUSIVE;
}

namespace {

/// Answers carry no times (the apply thread's clock is not at hand there).
const ViewClock kNoClock{[](lock::LogIndex) { return std::nullopt; },
                         [](lock::LeaseId) { return std::nullopt; }};

Status ValidateLease(uint64_t id) {
  if (id == 0) return InvalidArgument("lease_id is missing (0 names no lease)");
  return Status::Ok();
}

}  // namespace

Result<lock::Command> ToCommand(const pb::GrantLeaseRequest& r, const lock::Limits& l) {
  auto h = FromProto(r.header());
  if (!h.ok()) return h.status();
  if (Status s = lock::ValidateTtl(r.ttl_ms(), l); !s.ok()) return s;
  if (Status s = lock::ValidateLabel(r.label(), l); !s.ok()) return s;
  return lock::Command(lock::GrantLease{*h, r.ttl_ms(), r.label()});
}

Result<lock::Command> ToCommand(const pb::RevokeLeaseRequest& r, const lock::Limits&) {
  auto h = FromProto(r.header());
  if (!h.ok()) return h.status();
  if (Status s = ValidateLease(r.lease_id()); !s.ok()) return s;
  return lock::Command(lock::RevokeLease{*h, lock::LeaseId(r.lease_id())});
}

Result<lock::Command> ToCommand(const pb::AcquireRequest& r, const lock::Limits& l) {
  auto h = FromProto(r.header());
  if (!h.ok()) return h.status();
  if (Status s = lock::ValidateName(r.name(), l); !s.ok()) return s;
  auto mode = ModeFromProto(r.mode());
  if (!mode.ok()) return mode.status();
  if (Status s = lock::ValidateWait(r.wait_ms(), l); !s.ok()) return s;
  lock::Acquire a;
  a.header = *h;
  a.name = r.name();
  a.lease = lock::LeaseId(r.lease_id());
  a.mode = *mode;
  a.wait_ms = r.wait_ms();
  a.ttl_ms = r.ttl_ms();
  a.label = r.lease_label();
  if (r.lease_id() == 0) {
    if (r.ttl_ms() == 0) {
      return InvalidArgument("give a lease_id, or a ttl_ms to grant a lease for this one lock");
    }
    if (Status s = lock::ValidateTtl(r.ttl_ms(), l); !s.ok()) return s;
    if (Status s = lock::ValidateLabel(r.lease_label(), l); !s.ok()) return s;
  } else if (r.ttl_ms() != 0 || !r.lease_label().empty()) {
    return InvalidArgument("ttl_ms and lease_label are only for an Acquire without a lease_id");
  }
  return lock::Command(std::move(a));
}

Result<lock::Command> ToCommand(const pb::CancelRequest& r, const lock::Limits& l) {
  auto h = FromProto(r.header());
  if (!h.ok()) return h.status();
  if (Status s = lock::ValidateName(r.name(), l); !s.ok()) return s;
  if (!r.has_acquire_id()) return InvalidArgument("acquire_id names no Acquire");
  lock::Cancel c;
  c.header = *h;
  c.name = r.name();
  c.lease = lock::LeaseId(r.lease_id());
  c.acquire = FromProto(r.acquire_id());
  if (c.acquire.client.zero() || c.acquire.seq == 0) {
    return InvalidArgument("acquire_id needs a client id and a sequence number > 0");
  }
  if (c.acquire == c.header.id) {
    return InvalidArgument("a Cancel cannot name its own request id");
  }
  return lock::Command(std::move(c));
}

Result<lock::Command> ToCommand(const pb::ReleaseRequest& r, const lock::Limits& l) {
  auto h = FromProto(r.header());
  if (!h.ok()) return h.status();
  if (Status s = lock::ValidateName(r.name(), l); !s.ok()) return s;
  if (Status s = ValidateLease(r.lease_id()); !s.ok()) return s;
  return lock::Command(
      lock::Release{*h, r.name(), lock::LeaseId(r.lease_id()), lock::FencingToken(r.token())});
}

Result<lock::Command> ToCommand(const pb::ForceReleaseRequest& r, const lock::Limits& l) {
  auto h = FromProto(r.header());
  if (!h.ok()) return h.status();
  if (Status s = lock::ValidateName(r.name(), l); !s.ok()) return s;
  if (r.reason().size() > 1024) return InvalidArgument("reason is longer than 1024 bytes");
  if (!lock::IsValidUtf8(r.reason())) return InvalidArgument("reason is not valid UTF-8");
  return lock::Command(lock::ForceRelease{*h, r.name(), lock::LeaseId(r.lease_id()), r.reason()});
}

void FillResponse(const lock::Outcome& o, pb::GrantLeaseResponse* out) {
  out->set_lease_id(o.lease.value());
  out->set_ttl_ms(o.ttl_ms);
}

void FillResponse(const lock::Outcome& o, pb::RevokeLeaseResponse* out) {
  for (const auto& n : o.released) out->add_released(n);
  for (const auto& n : o.dropped) out->add_dropped(n);
}

void FillResponse(const lock::Outcome& o, pb::AcquireResponse* out) {
  out->set_acquired(o.acquired);
  out->set_mode(ToProto(o.mode));
  out->set_lease_id(o.lease.value());
  out->set_lease_ttl_ms(o.ttl_ms);
  if (o.acquired) {
    out->set_token(o.token.value());
    out->set_fence(o.fence.value());
  }
  for (const auto& h : o.holders) ToProto(h, kNoClock, out->add_holders());
}

void FillResponse(const lock::Outcome& o, pb::CancelResponse* out) {
  switch (o.effect) {
    case lock::CancelEffect::kWithdrewWait:
      out->set_effect(pb::CancelResponse::WITHDREW_WAIT);
      break;
    case lock::CancelEffect::kReleasedGrant:
      out->set_effect(pb::CancelResponse::RELEASED_GRANT);
      break;
    case lock::CancelEffect::kCancelledInAdvance:
      out->set_effect(pb::CancelResponse::CANCELLED_IN_ADVANCE);
      break;
    case lock::CancelEffect::kNothingToCancel:
      out->set_effect(pb::CancelResponse::NOTHING_TO_CANCEL);
      break;
    case lock::CancelEffect::kNone:
      out->set_effect(pb::CancelResponse::EFFECT_UNSPECIFIED);
      break;
  }
}

void FillResponse(const lock::Outcome&, pb::ReleaseResponse*) {}

void FillResponse(const lock::Outcome& o, pb::ForceReleaseResponse* out) {
  for (const auto& h : o.holders) ToProto(h, kNoClock, out->add_released());
}

void ToProto(const lock::HolderView& h, const ViewClock& c, pb::Holder* out) {
  out->set_lease_id(h.lease.value());
  out->set_lease_label(h.label);
  out->set_mode(ToProto(h.mode));
  out->set_token(h.token.value());
  out->set_fence(h.fence.value());
  ToProto(h.acquired_by, out->mutable_acquired_by());
  if (auto held = c.since_applied(h.granted_at)) out->set_held_ms(held->count());
  if (auto left = c.lease_remaining(h.lease)) out->set_lease_remaining_ms(left->count());
}

void ToProto(const lock::LockView& v, const ViewClock& c, pb::LockInfo* out) {
  out->set_name(v.name);
  for (const auto& h : v.holders) ToProto(h, c, out->add_holders());
  for (const auto& w : v.waiters) {
    auto* o = out->add_waiters();
    o->set_lease_id(w.lease.value());
    o->set_lease_label(w.label);
    o->set_mode(ToProto(w.mode));
    ToProto(w.acquire, o->mutable_acquire_id());
    o->set_wait_ms(w.wait_ms);
    if (auto waited = c.since_applied(w.enqueued_at)) o->set_waited_ms(waited->count());
  }
}

void ToProto(const lock::LeaseView& v, const ViewClock& c, pb::LeaseInfo* out) {
  out->set_lease_id(v.id.value());
  out->set_label(v.label);
  out->set_ttl_ms(v.ttl_ms);
  if (auto left = c.lease_remaining(v.id)) out->set_remaining_ms(left->count());
  for (const auto& n : v.held) out->add_held(n);
  for (uint64_t t : v.held_tokens) out->add_held_tokens(t);
  for (const auto& n : v.waiting) out->add_waiting(n);
  ToProto(v.granted_by, out->mutable_granted_by());
  out->set_owner(v.owner);
}

}  // namespace lockd::server
