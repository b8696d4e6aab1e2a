// The fuzz run's requests, one builder per RPC: well-formed ones that build state (leases, held
// locks, waiters), random ones, and well-formed ones that reuse a recorded request id for another
// call.
#include "e2e/fuzz_gen.h"

namespace lockd::e2e::fuzz {

namespace {

/// How often each unary RPC is picked (per mille of the unary requests).
constexpr std::pair<Method, int> kWeights[] = {
    {Method::kGrantLease, 90},   {Method::kRenew, 90},
    {Method::kRevokeLease, 25},  {Method::kAcquire, 210},
    {Method::kCancel, 60},       {Method::kRelease, 100},
    {Method::kGetLock, 80},      {Method::kListLocks, 50},
    {Method::kListLeases, 50},   {Method::kGetLease, 60},
    {Method::kStatus, 20},       {Method::kAddMember, 10},
    {Method::kRemoveMember, 10}, {Method::kTransferLeadership, 15},
    {Method::kSnapshot, 10},     {Method::kForceRelease, 40},
};

Method PickMethod(World::Gen& g) {
  int total = 0;
  for (const auto& [m, w] : kWeights) total += w;
  int r = static_cast<int>(g.U(0, total - 1));
  for (const auto& [m, w] : kWeights) {
    if (r < w) return m;
    r -= w;
  }
  return Method::kStatus;
}

void SetHeader(World::Gen& g, bool valid, v1::RequestHeader* out, bool* has) {
  auto h = g.Header(valid);
  *has = h.has_value();
  if (h) *out = *h;
}

std::string Digits(World::Gen& g, size_t n) {
  std::string s(n, '0');
  for (auto& c : s) c = static_cast<char>('0' + g.U(0, 9));
  return s;
}

}  // namespace

bool World::IsTracked(const v1::RequestId& id) const {
  for (const auto& c : tracked_) {
    if (c->hi == id.client_hi() && c->lo == id.client_lo()) return true;
  }
  return false;
}

std::optional<RecordedId> World::PickReusable(Gen& g) {
  std::lock_guard l(mu_);
  if (recorded_.empty()) return std::nullopt;
  for (int tries = 0; tries < 8; ++tries) {
    const size_t back = g.U(0, std::min<size_t>(recorded_.size(), 64) - 1);
    const RecordedId& r = recorded_[recorded_.size() - 1 - back];
    for (const auto& c : tracked_) {
      // Still above the client's watermark (kLag below its newest seq), and recent.
      if (c->hi == r.id.client_hi() && c->lo == r.id.client_lo() &&
          r.id.seq() + kReuseSpan > c->next_seq.load()) {
        return r;
      }
    }
  }
  return std::nullopt;
}

void World::SendOne(Gen& g) {
  const int node = g.Node();
  const uint64_t mode = g.U(0, 99);
  if (mode < 7 && SendReuse(g, node)) return;
  const bool valid = mode < 50;
  const Method m = PickMethod(g);
  switch (m) {
    case Method::kGrantLease: {
      v1::GrantLeaseRequest r;
      bool has = false;
      SetHeader(g, valid, r.mutable_header(), &has);
      if (!has) r.clear_header();
      if (valid) {
        r.set_ttl_ms(g.P(0.9) ? g.U(2000, 20'000) : g.U(20'000, 60'000));
        r.set_label("fz-" + std::to_string(g.U(0, 49)));
      } else {
        r.set_ttl_ms(g.Ttl());
        if (g.P(0.8)) r.set_label(g.Bytes());
      }
      Issue(m, node, &LockAsync::GrantLease, std::move(r), 3s, false,
            std::function<void(const v1::GrantLeaseRequest&, const v1::GrantLeaseResponse&)>(
                [this](const auto& q, const auto& a) {
                  if (a.ttl_ms() <= 60'000) NoteLease(a.lease_id());
                  if (IsTracked(q.header().id())) NoteRecorded(q.header(), Method::kGrantLease);
                }));
      return;
    }
    case Method::kRenew: {
      v1::RenewRequest r;
      r.set_lease_id(valid ? g.KnownLease() : g.Lease());
      r.set_seq(g.rng());
      Issue(m, node, &LockAsync::Renew, std::move(r), 3s);
      return;
    }
    case Method::kRevokeLease: {
      v1::RevokeLeaseRequest r;
      bool has = false;
      SetHeader(g, valid, r.mutable_header(), &has);
      if (!has) r.clear_header();
      r.set_lease_id(valid ? g.KnownLease() : g.Lease());
      Issue(m, node, &LockAsync::RevokeLease, std::move(r), 3s, false,
            std::function<void(const v1::RevokeLeaseRequest&, const v1::RevokeLeaseResponse&)>(
                [this](const auto& q, const auto&) {
                  if (IsTracked(q.header().id())) NoteRecorded(q.header(), Method::kRevokeLease);
                }));
      return;
    }
    case Method::kAcquire: {
      v1::AcquireRequest r;
      bool has = false;
      SetHeader(g, valid, r.mutable_header(), &has);
      if (!has) r.clear_header();
      Ms deadline = 3s;
      if (valid) {
        r.set_name(g.PoolName());
        r.set_mode(g.P(0.6) ? v1::EXCLUSIVE : v1::SHARED);
        // Mostly try-locks; some short waits the caller sees end; some long ones that stay
        // queued as state (our deadline ends the call, not the wait).
        const uint64_t w = g.U(0, 99);
        r.set_wait_ms(w < 85 ? 0 : w < 93 ? g.U(1, 150) : g.U(5'000, 30'000));
        if (g.P(0.9)) {
          r.set_lease_id(g.KnownLease());
        } else {
          r.set_ttl_ms(g.U(2000, 10'000));
          r.set_lease_label("fz-one");
        }
        deadline = r.wait_ms() <= 150 ? deadline + Ms(r.wait_ms()) : 250ms;
      } else {
        r.set_name(g.Name());
        r.set_mode(g.Mode());
        r.set_lease_id(g.Lease());
        r.set_wait_ms(g.Wait());
        if (g.P(0.3)) r.set_ttl_ms(g.Ttl());
        if (g.P(0.2)) r.set_lease_label(g.Bytes());
        // A long wait on a held lock would hold a slot for its whole wait: our deadline ends it
        // (the wait goes on in the server, as state).
        deadline = r.wait_ms() <= 100 ? 3s : 300ms;
      }
      NoteAcquireId(r.header().id());
      Issue(m, node, &LockAsync::Acquire, std::move(r), deadline, false,
            std::function<void(const v1::AcquireRequest&, const v1::AcquireResponse&)>(
                [this](const auto& q, const auto& a) {
                  if (!a.acquired()) return;
                  NoteGrant(Grant{q.name(), a.lease_id(), a.token(), q.header().id()});
                  if (q.lease_id() == 0 && a.lease_ttl_ms() <= 60'000) NoteLease(a.lease_id());
                  if (IsTracked(q.header().id())) NoteRecorded(q.header(), Method::kAcquire);
                }));
      return;
    }
    case Method::kCancel: {
      v1::CancelRequest r;
      bool has = false;
      SetHeader(g, valid, r.mutable_header(), &has);
      if (!has) r.clear_header();
      auto grant = g.KnownGrant();
      if (valid && grant) {
        r.set_name(grant->name);
        r.set_lease_id(grant->lease);
        *r.mutable_acquire_id() = grant->acquire_id;
      } else if (valid) {
        r.set_name(g.PoolName());
        r.set_lease_id(g.KnownLease());
        *r.mutable_acquire_id() = g.KnownAcquireId();
      } else {
        r.set_name(g.Name());
        r.set_lease_id(g.Lease());
        const uint64_t pick = g.U(0, 9);
        if (pick < 3) {
          *r.mutable_acquire_id() = g.KnownAcquireId();
        } else if (pick < 8) {
          *r.mutable_acquire_id() = g.RandomId();
        } else if (pick < 9) {
          *r.mutable_acquire_id() = r.header().id();  // itself
        }                                             // else: missing
      }
      Issue(m, node, &LockAsync::Cancel, std::move(r), 3s, false,
            std::function<void(const v1::CancelRequest&, const v1::CancelResponse&)>(
                [this](const auto& q, const auto&) {
                  if (IsTracked(q.header().id())) NoteRecorded(q.header(), Method::kCancel);
                }));
      return;
    }
    case Method::kRelease: {
      v1::ReleaseRequest r;
      bool has = false;
      SetHeader(g, valid, r.mutable_header(), &has);
      if (!has) r.clear_header();
      auto grant = g.KnownGrant();
      if (valid && grant) {
        r.set_name(grant->name);
        r.set_lease_id(grant->lease);
        r.set_token(grant->token);
      } else {
        r.set_name(g.Name());
        r.set_lease_id(g.Lease());
        r.set_token(g.Token());
      }
      Issue(m, node, &LockAsync::Release, std::move(r), 3s, false,
            std::function<void(const v1::ReleaseRequest&, const v1::ReleaseResponse&)>(
                [this](const auto& q, const auto&) {
                  if (IsTracked(q.header().id())) NoteRecorded(q.header(), Method::kRelease);
                }));
      return;
    }
    case Method::kGetLock: {
      v1::GetLockRequest r;
      r.set_name(valid ? g.PoolName() : g.Name());
      r.set_stale(g.P(0.5));
      Issue(m, node, &LockAsync::GetLock, std::move(r), 3s);
      return;
    }
    case Method::kListLocks: {
      v1::ListLocksRequest r;
      const uint64_t p = g.U(0, 9);
      r.set_prefix(p < 3 ? "" : p < 6 ? "fz/" : g.Bytes());
      r.set_page_size(g.P(0.5) ? static_cast<uint32_t>(g.U(0, 20))
                               : static_cast<uint32_t>(g.P(0.5) ? g.U(999, 1001) : g.rng()));
      const uint64_t t = g.U(0, 9);
      if (t < 3) {
        r.set_page_token(g.KnownPageToken(true));
      } else if (t < 6) {
        r.set_page_token("locks-after:" + g.Bytes());
      } else if (t < 8) {
        r.set_page_token(g.Bytes());
      }
      r.set_stale(g.P(0.5));
      Issue(m, node, &LockAsync::ListLocks, std::move(r), 3s, false,
            std::function<void(const v1::ListLocksRequest&, const v1::ListLocksResponse&)>(
                [this](const auto&, const auto& a) { NotePageToken(true, a.next_page_token()); }));
      return;
    }
    case Method::kListLeases: {
      v1::ListLeasesRequest r;
      r.set_page_size(g.P(0.5) ? static_cast<uint32_t>(g.U(0, 20))
                               : static_cast<uint32_t>(g.P(0.5) ? g.U(999, 1001) : g.rng()));
      const uint64_t t = g.U(0, 9);
      // 20 digits above 2^64 - 1, or more, overflow the server's parse (defect 7).
      const size_t max_digits = 25;  // past uint64: must be INVALID_ARGUMENT
      if (t < 3) {
        r.set_page_token(g.KnownPageToken(false));
      } else if (t < 6) {
        r.set_page_token("leases-after:" + Digits(g, g.U(0, max_digits)));
      } else if (t < 7) {
        r.set_page_token("leases-after:" + g.Text());
      } else if (t < 8) {
        r.set_page_token(g.Text());
      }
      r.set_stale(g.P(0.5));
      Issue(m, node, &LockAsync::ListLeases, std::move(r), 3s, false,
            std::function<void(const v1::ListLeasesRequest&, const v1::ListLeasesResponse&)>(
                [this](const auto&, const auto& a) { NotePageToken(false, a.next_page_token()); }));
      return;
    }
    case Method::kGetLease: {
      v1::GetLeaseRequest r;
      r.set_lease_id(valid ? g.KnownLease() : g.Lease());
      r.set_stale(g.P(0.5));
      Issue(m, node, &LockAsync::GetLease, std::move(r), 3s);
      return;
    }
    case Method::kStatus:
      Issue(m, node, &ClusterAsync::Status, v1::StatusRequest(), 3s);
      return;
    case Method::kAddMember: {
      v1::AddMemberRequest r;
      bool has = false;
      SetHeader(g, valid, r.mutable_header(), &has);
      if (!has) r.clear_header();
      r.set_id(g.P(0.5) ? g.U(0, 9) : g.rng());
      r.set_client_addr(g.Text());
      r.set_peer_addr(g.Text());
      Issue(m, node, &ClusterAsync::AddMember, std::move(r), 3s);
      return;
    }
    case Method::kRemoveMember: {
      v1::RemoveMemberRequest r;
      bool has = false;
      SetHeader(g, valid, r.mutable_header(), &has);
      if (!has) r.clear_header();
      // Never one of the cluster's own members (1..size): removing them would end the run.
      uint64_t id = g.P(0.5) ? g.U(0, 9) : g.rng();
      if (id >= 1 && id <= static_cast<uint64_t>(cluster_.size())) id += 10;
      r.set_id(id);
      Issue(m, node, &ClusterAsync::RemoveMember, std::move(r), 3s);
      return;
    }
    case Method::kTransferLeadership: {
      v1::TransferLeadershipRequest r;
      // A real transfer (to 0 or to a member) only a couple of times a run: each costs an
      // election's worth of UNAVAILABLE.
      if (g.P(0.02) && transfers_left_.fetch_sub(1) > 0) {
        r.set_to(g.U(0, cluster_.size()));
      } else {
        r.set_to(g.P(0.5) ? g.U(cluster_.size() + 1, 20) : g.Big());
      }
      Issue(m, node, &ClusterAsync::TransferLeadership, std::move(r), 8s);
      return;
    }
    case Method::kSnapshot:
      Issue(m, node, &ClusterAsync::Snapshot, v1::SnapshotRequest(), 3s);
      return;
    case Method::kForceRelease: {
      v1::ForceReleaseRequest r;
      bool has = false;
      SetHeader(g, valid, r.mutable_header(), &has);
      if (!has) r.clear_header();
      auto grant = g.KnownGrant();
      if (valid && grant && g.P(0.3)) {
        r.set_name(grant->name);
        r.set_lease_id(grant->lease);
      } else {
        r.set_name(valid ? "fz/none-" + std::to_string(g.U(0, 9)) : g.Name());
        r.set_lease_id(valid ? 0 : g.Lease());
      }
      r.set_reason(g.Text());
      Issue(m, node, &ClusterAsync::ForceRelease, std::move(r), 3s, false,
            std::function<void(const v1::ForceReleaseRequest&, const v1::ForceReleaseResponse&)>(
                [this](const auto& q, const auto&) {
                  if (IsTracked(q.header().id())) NoteRecorded(q.header(), Method::kForceRelease);
                }));
      return;
    }
    default:
      return;
  }
}

bool World::SendReuse(Gen& g, int node) {
  auto r = PickReusable(g);
  if (!r) return false;
  v1::RequestHeader h;
  *h.mutable_id() = r->id;
  h.set_attempt(static_cast<uint32_t>(g.U(1, 3)));
  h.set_watermark(r->watermark);
  // A well-formed call of another method (or GrantLease with other arguments: no well-formed
  // GrantLease of the run has label "fz-reuse"), which would change the state if executed.
  Method m = r->method;
  while (m == r->method && !(m == Method::kGrantLease && g.P(0.3))) {
    static constexpr Method kMutating[] = {Method::kGrantLease,  Method::kAcquire,
                                           Method::kRelease,     Method::kCancel,
                                           Method::kRevokeLease, Method::kForceRelease};
    m = kMutating[g.U(0, 5)];
  }
  switch (m) {
    case Method::kGrantLease: {
      v1::GrantLeaseRequest q;
      *q.mutable_header() = h;
      q.set_ttl_ms(g.U(2000, 9000));
      q.set_label("fz-reuse");
      Issue(m, node, &LockAsync::GrantLease, std::move(q), 3s, true);
      break;
    }
    case Method::kAcquire: {
      v1::AcquireRequest q;
      *q.mutable_header() = h;
      q.set_name("fz-reuse/" + std::to_string(g.U(0, 9)));
      q.set_mode(v1::EXCLUSIVE);
      q.set_ttl_ms(5000);
      Issue(m, node, &LockAsync::Acquire, std::move(q), 3s, true);
      break;
    }
    case Method::kRelease: {
      v1::ReleaseRequest q;
      *q.mutable_header() = h;
      q.set_name(g.PoolName());
      q.set_lease_id(g.KnownLease());
      q.set_token(g.U(1, 1000));
      Issue(m, node, &LockAsync::Release, std::move(q), 3s, true);
      break;
    }
    case Method::kCancel: {
      v1::CancelRequest q;
      *q.mutable_header() = h;
      q.set_name(g.PoolName());
      q.set_lease_id(g.KnownLease());
      *q.mutable_acquire_id() = g.RandomId();
      q.mutable_acquire_id()->set_client_hi(q.acquire_id().client_hi() | 1);
      q.mutable_acquire_id()->set_seq(q.acquire_id().seq() | 1);
      Issue(m, node, &LockAsync::Cancel, std::move(q), 3s, true);
      break;
    }
    case Method::kRevokeLease: {
      v1::RevokeLeaseRequest q;
      *q.mutable_header() = h;
      q.set_lease_id(g.U(1, 1'000'000));
      Issue(m, node, &LockAsync::RevokeLease, std::move(q), 3s, true);
      break;
    }
    default: {
      v1::ForceReleaseRequest q;
      *q.mutable_header() = h;
      q.set_name("fz-reuse/" + std::to_string(g.U(0, 9)));
      q.set_reason("fuzz");
      Issue(Method::kForceRelease, node, &ClusterAsync::ForceRelease, std::move(q), 3s, true);
      break;
    }
  }
  return true;
}

}  // namespace lockd::e2e::fuzz
