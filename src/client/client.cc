// The client library's calls: request ids and watermarks, retries, endpoint rotation, the cluster
// id check. The lease bookkeeping is in lease.cc.
#include "lockd/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "client/lease_state.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::client {

namespace pb = lockd::v1;

namespace {

Status FromGrpc(const grpc::Status& s) {
  return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
}

bool Retryable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE;
}

}  // namespace

std::chrono::nanoseconds SafetyMargin(std::chrono::milliseconds ttl, double drift,
                                      std::chrono::milliseconds floor) {
  const auto drift_part = std::chrono::nanoseconds(static_cast<int64_t>(
      2.0 * drift * static_cast<double>(std::chrono::nanoseconds(ttl).count())));
  return drift_part + floor;
}

class Client::Impl {
 public:
  explicit Impl(ClientOptions options)
      : options_(std::move(options)),
        clock_(options_.clock ? options_.clock : &SystemClock::Instance()) {
    std::random_device rd;
    client_hi_ = (uint64_t{rd()} << 32) | rd();
    client_lo_ = (uint64_t{rd()} << 32) | rd();
    for (const auto& e : options_.endpoints) {
      stubs_.push_back(
          pb::LockService::NewStub(grpc::CreateChannel(e, grpc::InsecureChannelCredentials())));
    }
    renewer_ = std::thread([this] { RenewLoop(); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    renewer_.join();
  }

  // --- mutating calls: one request id, retried on UNAVAILABLE until the deadline ------------

  /// Runs `call(stub, ctx, header)` until it answers something other than UNAVAILABLE or the
  /// deadline passes; every attempt carries the same request id. `first_send` gets the time of
  /// the first attempt (the anchor of a lease the call grants).
  template <typename Call>
  grpc::Status Mutate(std::chrono::milliseconds extra_wait, Call call,
                      BootTime* first_send = nullptr) {
    const uint64_t seq = BeginRequest();
    const auto deadline = std::chrono::system_clock::now() + options_.call_timeout + extra_wait;
    grpc::Status status;
    for (uint32_t attempt = 1;; ++attempt) {
      pb::RequestHeader header;
      header.mutable_id()->set_client_hi(client_hi_);
      header.mutable_id()->set_client_lo(client_lo_);
      header.mutable_id()->set_seq(seq);
      header.set_attempt(attempt);
      header.set_watermark(Watermark());
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline);
      if (attempt == 1 && first_send) *first_send = clock_->Now();
      const size_t endpoint = endpoint_.load();
      status = call(*stubs_[endpoint % stubs_.size()], ctx, header);
      ObserveCluster(ctx);
      if (!Retryable(status) || std::chrono::system_clock::now() >= deadline) break;
      RotateFrom(endpoint);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(20u * attempt, 500u)));
    }
    EndRequest(seq);
    return status;
  }

  Result<std::shared_ptr<Lease>> GrantLease(std::chrono::milliseconds ttl,
                                            const std::string& label) {
    pb::GrantLeaseResponse resp;
    BootTime anchor;
    grpc::Status s = Mutate(
        std::chrono::milliseconds(0),
        [&](pb::LockService::Stub& stub, grpc::ClientContext& ctx, const pb::RequestHeader& h) {
          pb::GrantLeaseRequest req;
          *req.mutable_header() = h;
          req.set_ttl_ms(ttl.count());
          req.set_label(label);
          return stub.GrantLease(&ctx, req, &resp);
        },
        &anchor);
    if (!s.ok()) return FromGrpc(s);
    return AdoptLease(resp.lease_id(), std::chrono::milliseconds(resp.ttl_ms()), anchor);
  }

  Status Revoke(Lease& lease) {
    pb::RevokeLeaseResponse resp;
    grpc::Status s =
        Mutate(std::chrono::milliseconds(0), [&](auto& stub, auto& ctx, const auto& h) {
          pb::RevokeLeaseRequest req;
          *req.mutable_header() = h;
          req.set_lease_id(lease.id());
          return stub.RevokeLease(&ctx, req, &resp);
        });
    lease.state_->MarkLost("revoked by this client");
    Forget(lease.id());
    return s.ok() ? Status::Ok() : FromGrpc(s);
  }

  Result<LockGrant> Acquire(const std::string& name, Lease& lease, AcquireOptions o) {
    if (!lease.valid())
      return FailedPrecondition("lease " + std::to_string(lease.id()) + " is lost");
    pb::AcquireResponse resp;
    grpc::Status s = Mutate(o.wait, [&](auto& stub, auto& ctx, const auto& h) {
      pb::AcquireRequest req;
      *req.mutable_header() = h;
      req.set_name(name);
      req.set_lease_id(lease.id());
      req.set_mode(o.mode == Mode::kShared ? pb::SHARED : pb::EXCLUSIVE);
      req.set_wait_ms(o.wait.count());
      return stub.Acquire(&ctx, req, &resp);
    });
    if (!s.ok()) return FromGrpc(s);
    LockGrant g;
    g.acquired = resp.acquired();
    g.name = name;
    g.lease_id = lease.id();
    g.token = resp.token();
    g.fence = resp.fence();
    g.mode = resp.mode() == pb::SHARED ? Mode::kShared : Mode::kExclusive;
    for (const auto& h : resp.holders()) g.holder_leases.push_back(h.lease_id());
    if (g.acquired && !lease.valid()) {
      // The grant outlived the lease it was for: nobody may act on it. Give it back.
      (void)Release(g);
      return FailedPrecondition("lease " + std::to_string(lease.id()) +
                                " was lost before the grant arrived (" + lease.lost_reason() +
                                "); the grant was released");
    }
    return g;
  }

  Status Release(const LockGrant& g) {
    pb::ReleaseResponse resp;
    grpc::Status s =
        Mutate(std::chrono::milliseconds(0), [&](auto& stub, auto& ctx, const auto& h) {
          pb::ReleaseRequest req;
          *req.mutable_header() = h;
          req.set_name(g.name);
          req.set_lease_id(g.lease_id);
          req.set_token(g.token);
          return stub.Release(&ctx, req, &resp);
        });
    return s.ok() ? Status::Ok() : FromGrpc(s);
  }

  std::string cluster_id() const {
    std::lock_guard lock(mu_);
    return cluster_id_;
  }

 private:
  /// Moves calls to the next endpoint, unless another thread already moved them past `seen`.
  void RotateFrom(size_t seen) {
    size_t expected = seen;
    endpoint_.compare_exchange_strong(expected, seen + 1);
  }

  uint64_t BeginRequest() {
    std::lock_guard lock(mu_);
    const uint64_t seq = ++last_seq_;
    pending_.insert(seq);
    return seq;
  }
  void EndRequest(uint64_t seq) {
    std::lock_guard lock(mu_);
    pending_.erase(seq);
  }
  /// The lowest sequence number still pending: the server may forget outcomes below it.
  uint64_t Watermark() const {
    std::lock_guard lock(mu_);
    return pending_.empty() ? last_seq_ + 1 : *pending_.begin();
  }

  /// A response from another cluster (a restore) voids every lease this client had.
  void ObserveCluster(grpc::ClientContext& ctx) {
    const auto& md = ctx.GetServerInitialMetadata();
    auto it = md.find("lockd-cluster");
    if (it == md.end()) return;
    std::string id(it->second.data(), it->second.size());
    std::vector<std::shared_ptr<Lease::State>> lost;
    {
      std::lock_guard lock(mu_);
      if (id.empty() || id == cluster_id_) return;
      if (!cluster_id_.empty()) {
        for (auto& [_, st] : leases_) lost.push_back(st);
        leases_.clear();
      }
      cluster_id_ = id;
    }
    for (auto& st : lost) st->MarkLost("the cluster id changed (the cluster was restored)");
  }

  std::shared_ptr<Lease> AdoptLease(uint64_t id, std::chrono::milliseconds ttl, BootTime anchor) {
    auto state = std::make_shared<Lease::State>(
        id, ttl, SafetyMargin(ttl, options_.drift, options_.margin_floor), clock_);
    state->Acknowledged(anchor);
    auto lease = std::make_shared<Lease>(state);
    {
      std::lock_guard lock(mu_);
      leases_[id] = state;
    }
    cv_.notify_all();
    return lease;
  }

  void Forget(uint64_t id) {
    std::lock_guard lock(mu_);
    leases_.erase(id);
  }

  /// Renews each lease every ttl/renew_divisor; a lease past its validity is lost and dropped.
  void RenewLoop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      std::vector<std::shared_ptr<Lease::State>> due, expired;
      const BootTime now = clock_->Now();
      for (auto it = leases_.begin(); it != leases_.end();) {
        auto& st = it->second;
        if (!st->valid()) {
          expired.push_back(st);
          it = leases_.erase(it);
          continue;
        }
        if (now >= st->next_renewal(options_.renew_divisor)) due.push_back(st);
        ++it;
      }
      lock.unlock();
      for (auto& st : expired) st->CheckExpired();  // fires its on_lost callbacks
      for (auto& st : due) Renew(*st);
      lock.lock();
      cv_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stopping_; });
    }
  }

  void Renew(Lease::State& st) {
    pb::RenewRequest req;
    req.set_lease_id(st.id());
    req.set_seq(st.NextRenewSeq());
    pb::RenewResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::min<std::chrono::milliseconds>(options_.call_timeout,
                                                         st.ttl() / options_.renew_divisor));
    const BootTime sent = clock_->Now();
    st.RenewalSent(sent);
    const size_t endpoint = endpoint_.load();
    grpc::Status s = stubs_[endpoint % stubs_.size()]->Renew(&ctx, req, &resp);
    ObserveCluster(ctx);
    if (s.ok()) {
      if (resp.seq() == req.seq() && resp.lease_id() == st.id()) st.Acknowledged(sent);
    } else if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
      st.MarkLost("the server no longer knows the lease: " + s.error_message());
    } else if (Retryable(s) || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      RotateFrom(endpoint);
    }
    st.CheckExpired();
  }

  const ClientOptions options_;
  const Clock* const clock_;
  uint64_t client_hi_ = 0, client_lo_ = 0;
  std::vector<std::unique_ptr<pb::LockService::Stub>> stubs_;
  std::atomic<size_t> endpoint_{0};  ///< index of the endpoint calls go to; rotates on failure

  mutable std::mutex mu_;  ///< guards everything below
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t last_seq_ = 0;
  std::set<uint64_t> pending_;
  std::string cluster_id_;
  std::map<uint64_t, std::shared_ptr<Lease::State>> leases_;
  std::thread renewer_;
};

Result<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  if (options.endpoints.empty()) return InvalidArgument("no endpoints");
  if (options.renew_divisor < 2) return InvalidArgument("renew_divisor must be at least 2");
  if (options.drift < 0 || options.drift >= 0.5)
    return InvalidArgument("drift must be in [0, 0.5)");
  return std::unique_ptr<Client>(new Client(std::make_unique<Impl>(std::move(options))));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::shared_ptr<Lease>> Client::GrantLease(std::chrono::milliseconds ttl,
                                                  const std::string& label) {
  return impl_->GrantLease(ttl, label);
}
Status Client::Revoke(Lease& lease) {
  return impl_->Revoke(lease);
}
Result<LockGrant> Client::Acquire(const std::string& name, Lease& lease, AcquireOptions options) {
  return impl_->Acquire(name, lease, options);
}
Status Client::Release(const LockGrant& grant) {
  return impl_->Release(grant);
}
std::string Client::cluster_id() const {
  return impl_->cluster_id();
}

}  // namespace lockd::client
