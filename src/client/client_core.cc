#include "client/client_core.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/unknown_field_set.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>

#include "base/thread_name.h"
#include "client/credentials.h"
#include "client/renewer.h"

namespace lockd::client {

using namespace std::chrono_literals;

namespace {

/// Endpoints the client may add for a leader it learns of that is not in its list.
constexpr size_t kMaxEndpoints = 32;

}  // namespace

BootClock::time_point BootClock::now() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

std::chrono::nanoseconds SafetyMargin(std::chrono::milliseconds ttl, double drift,
                                      std::chrono::milliseconds floor) {
  const auto drift_part = std::chrono::nanoseconds(static_cast<int64_t>(
      2.0 * drift * static_cast<double>(std::chrono::nanoseconds(ttl).count())));
  return drift_part + floor;
}

Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return Status::Ok();
  return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
}

std::optional<std::vector<uint64_t>> HeldTokensOf(const pb::RenewResponse& r) {
  if (!r.holdings_listed()) return std::nullopt;  // a server that does not list them
  return std::vector<uint64_t>(r.held_tokens().begin(), r.held_tokens().end());
}

/// Every channel of the client, so every call carries the bearer token (Dial adds it).
static std::shared_ptr<grpc::Channel> NewChannel(
    const std::string& endpoint, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const std::string& bearer_token) {
  grpc::ChannelArguments args;
  // gRPC's default reconnect back-off grows to minutes; a restarted node must be usable again
  // within a lease's validity.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A batched renewal's answer lists every held token of up to 1,000 leases: more than gRPC's
  // default 4 MiB for leases that hold many locks each (a refused read would break the stream on
  // every endpoint, and every lease would run out).
  args.SetMaxReceiveMessageSize(64 << 20);
  return Dial(endpoint, credentials, bearer_token, args);
}

ClientCore::ClientCore(ClientOptions options, std::shared_ptr<grpc::ChannelCredentials> credentials,
                       std::string bearer_token)
    : options_(std::move(options)),
      credentials_(credentials ? std::move(credentials) : grpc::InsecureChannelCredentials()),
      bearer_token_(std::move(bearer_token)) {
  std::random_device rd;
  rng_.seed((uint64_t{rd()} << 32) | rd());
  client_hi_ = rng_();
  client_lo_ = rng_();
  endpoints_ = options_.endpoints;
  for (const auto& e : endpoints_) {
    channels_.push_back(NewChannel(e, credentials_, bearer_token_));
    stubs_.push_back(pb::LockService::NewStub(channels_.back()));
  }
}

ClientCore::~ClientCore() {
  Shutdown();
}

void ClientCore::Start() {
  renewer_ = std::make_unique<Renewer>(*this);
  cleanup_thread_ = std::thread([this] { CleanupLoop(); });
  dispatch_thread_ = std::thread([this] {
    NameThisThread(kCallbackThreadName);
    DispatchLoop();
  });
  cleanup_thread_id_ = cleanup_thread_.get_id();
  dispatch_thread_id_ = dispatch_thread_.get_id();
}

void ClientCore::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    if (renewer_) renewer_->Stop();
    // Orderly shutdown frees this process's locks at once instead of after their TTL.
    const auto deadline = std::chrono::steady_clock::now() + options_.call_timeout;
    for (auto& lease : Leases()) {
      if (lease->loss().lost() || !lease->MarkRevoked()) continue;
      pb::RevokeLeaseRequest req;
      *req.mutable_header() = NewHeader();
      req.set_lease_id(lease->id());
      pb::RevokeLeaseResponse resp;
      if (std::chrono::steady_clock::now() < deadline) {
        (void)Call(&pb::LockService::Stub::RevokeLease, req, &resp, deadline,
                   options_.call_timeout);
      }
      EndRequest(req.header().id().seq());
      lease->Lose("revoked: the client shut down");
    }
    // Asynchronous calls still in flight are cancelled and their answers awaited: their `done`
    // callbacks run on the callback thread below, and once this returns no gRPC thread holds a
    // reference to this client's channels (a channel released last on a gRPC callback thread
    // aborts gRPC: seen as "assertion failed: prior > 0").
    std::vector<std::function<void()>> cancels;
    {
      std::lock_guard lock(mu_);
      async_stopping_ = true;
      for (const auto& [id, cancel] : async_) cancels.push_back(cancel);
    }
    for (const auto& cancel : cancels) cancel();
    cancels.clear();
    {
      std::unique_lock lock(mu_);
      async_cv_.wait(lock, [this] { return async_.empty(); });
    }
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      dropped.swap(cleanup_);  // the revokes above dropped every wait and grant they were for
    }
    // Destroyed outside mu_: a task may hold the last handle of a Lease, whose destructor
    // calls Enqueue (which takes mu_).
    dropped.clear();
    cleanup_cv_.notify_all();
    if (cleanup_thread_.joinable()) cleanup_thread_.join();
    // Last: the callbacks already posted still run (their results are the callers' to drop).
    {
      std::lock_guard lock(mu_);
      dispatch_stopping_ = true;
    }
    dispatch_cv_.notify_all();
    if (dispatch_thread_.joinable()) dispatch_thread_.join();
  });
}

size_t ClientCore::endpoint_count() const {
  std::lock_guard lock(mu_);
  return endpoints_.size();
}

size_t ClientCore::PickEndpoint() {
  std::lock_guard lock(mu_);
  if (!leader_.empty()) {
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      if (endpoints_[i] == leader_) return i;
    }
    if (endpoints_.size() < kMaxEndpoints) {
      endpoints_.push_back(leader_);
      channels_.push_back(NewChannel(leader_, credentials_, bearer_token_));
      stubs_.push_back(pb::LockService::NewStub(channels_.back()));
      return endpoints_.size() - 1;
    }
  }
  return rotation_ % endpoints_.size();
}

void ClientCore::EndpointFailed(size_t failed) {
  std::lock_guard lock(mu_);
  if (failed < endpoints_.size() && endpoints_[failed] == leader_) leader_.clear();
  if (rotation_ % endpoints_.size() == failed % endpoints_.size()) ++rotation_;
}

pb::LockService::Stub& ClientCore::stub(size_t endpoint) {
  std::lock_guard lock(mu_);
  return *stubs_[endpoint % stubs_.size()];
}

void ClientCore::ObserveMetadata(const grpc::ClientContext& ctx) {
  const auto& md = ctx.GetServerInitialMetadata();
  std::string leader, cluster;
  if (auto it = md.find("lockd-leader"); it != md.end()) {
    leader.assign(it->second.data(), it->second.size());
  }
  if (auto it = md.find("lockd-cluster"); it != md.end()) {
    cluster.assign(it->second.data(), it->second.size());
  }
  ObserveHeaders(leader, cluster);
}

void ClientCore::ObserveHeaders(const std::string& leader, const std::string& cluster) {
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    if (!leader.empty()) leader_ = leader;
    if (!cluster.empty() && cluster != cluster_id_) {
      changed = !cluster_id_.empty();
      cluster_id_ = cluster;
    }
  }
  if (changed) LoseAllLeases("the cluster id changed to " + cluster + " (a restored cluster)");
}

std::string ClientCore::cluster_id() const {
  std::lock_guard lock(mu_);
  return cluster_id_;
}

std::string ClientCore::leader() const {
  std::lock_guard lock(mu_);
  return leader_;
}

pb::RequestHeader ClientCore::NewHeader() {
  std::lock_guard lock(mu_);
  const uint64_t seq = ++last_seq_;
  pending_.insert(seq);
  pb::RequestHeader h;
  h.mutable_id()->set_client_hi(client_hi_);
  h.mutable_id()->set_client_lo(client_lo_);
  h.mutable_id()->set_seq(seq);
  h.set_attempt(1);
  // The lowest still-pending sequence number: the server may forget outcomes below it.
  h.set_watermark(*pending_.begin());
  return h;
}

void ClientCore::EndRequest(uint64_t seq) {
  std::lock_guard lock(mu_);
  pending_.erase(seq);
  claims_.erase(seq);
}

void ClientCore::ClaimAcquire(uint64_t seq, uint64_t lease_id, const std::string& name) {
  std::lock_guard lock(mu_);
  claims_[seq] = Claim{lease_id, name, 0};
}

void ClientCore::ClaimRelease(uint64_t seq, uint64_t lease_id, uint64_t token) {
  std::lock_guard lock(mu_);
  claims_[seq] = Claim{lease_id, "", token};
}

// Linear scans: claims are the requests in flight right now, and they are looked at only when a
// renewal answer lists a grant no Lock owns.
bool ClientCore::AcquirePending(uint64_t lease_id, const std::string& name) const {
  std::lock_guard lock(mu_);
  return std::any_of(claims_.begin(), claims_.end(), [&](const auto& c) {
    return c.second.token == 0 && c.second.lease_id == lease_id && c.second.name == name;
  });
}

bool ClientCore::ReleasePending(uint64_t lease_id, uint64_t token) const {
  std::lock_guard lock(mu_);
  return std::any_of(claims_.begin(), claims_.end(), [&](const auto& c) {
    return c.second.token == token && c.second.lease_id == lease_id;
  });
}

void ClientCore::Log(const std::string& line) {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "lockd client: %s\n", line.c_str());
  }
}

void ClientCore::ReleaseUnowned(const std::shared_ptr<LeaseCore>& lease) {
  const uint64_t id = lease->id();
  {
    std::lock_guard lock(mu_);
    if (!sweeping_.insert(id).second) return;
  }
  const bool queued = Enqueue([this, lease] {
    SweepUnowned(*lease);
    std::lock_guard lock(mu_);
    sweeping_.erase(lease->id());
  });
  if (!queued) {
    std::lock_guard lock(mu_);
    sweeping_.erase(id);
  }
}

void ClientCore::SweepUnowned(LeaseCore& lease) {
  if (lease.Lost()) return;
  const auto timeout = std::min<std::chrono::milliseconds>(options_.call_timeout, lease.ttl() / 3);
  pb::GetLeaseRequest lreq;
  lreq.set_lease_id(lease.id());
  pb::GetLeaseResponse lresp;
  if (!Call(&pb::LockService::Stub::GetLease, lreq, &lresp,
            std::chrono::steady_clock::now() + timeout, timeout)
           .ok()) {
    return;  // the next renewal answer that lists the grant tries again
  }
  const auto& info = lresp.lease();
  // The token of each held name: listed by the lease itself (a server that predates
  // held_tokens: asked of each lock, which needs `read` on its name under access control).
  const bool listed = info.held_tokens_size() == info.held_size();
  for (int i = 0; i < info.held_size(); ++i) {
    const std::string& name = info.held(i);
    // A name a Lock of this lease holds is that Lock's (a lease holds a name at most once).
    if (lease.OwnsName(name) || AcquirePending(lease.id(), name)) continue;
    std::vector<uint64_t> tokens;
    if (listed) {
      tokens.push_back(info.held_tokens(i));
    } else {
      pb::GetLockRequest req;
      req.set_name(name);
      pb::GetLockResponse resp;
      if (!Call(&pb::LockService::Stub::GetLock, req, &resp,
                std::chrono::steady_clock::now() + timeout, timeout)
               .ok()) {
        continue;
      }
      for (const auto& h : resp.lock().holders()) {
        if (h.lease_id() == lease.id()) tokens.push_back(h.token());
      }
    }
    for (const uint64_t token : tokens) {
      // In this order: an Acquire registers its Lock before its request (and claim) ends, and a
      // Release claims the token before its Lock leaves the lease; so a grant this client owns
      // is always seen by one of the three checks.
      if (AcquirePending(lease.id(), name) || lease.OwnsToken(token) ||
          ReleasePending(lease.id(), token)) {
        continue;
      }
      pb::ReleaseRequest rel;
      *rel.mutable_header() = NewHeader();
      ClaimRelease(rel.header().id().seq(), lease.id(), token);
      rel.set_name(name);
      rel.set_lease_id(lease.id());
      rel.set_token(token);
      pb::ReleaseResponse rr;
      const grpc::Status s = Settle(&pb::LockService::Stub::Release, rel, &rr);
      EndRequest(rel.header().id().seq());
      Log("released '" + name + "' (token " + std::to_string(token) + ") held by lease " +
          std::to_string(lease.id()) +
          ": no Lock of this client owns it and no Acquire of it is pending (a grant that came "
          "after its Acquire was given up and withdrawn); release " +
          (s.ok() ? std::string("done") : "answered " + s.error_message()));
    }
  }
}

std::chrono::milliseconds ClientCore::Backoff(int failures) {
  auto base = options_.initial_backoff;
  for (int i = 1; i < failures && base < options_.max_backoff; ++i) base *= 2;
  base = std::min(base, options_.max_backoff);
  std::lock_guard lock(mu_);
  // Jitter in [base/2, base], so clients that failed together do not retry together.
  std::uniform_int_distribution<int64_t> d(base.count() / 2, base.count());
  return std::chrono::milliseconds(d(rng_));
}

std::shared_ptr<Lease> ClientCore::AdoptLease(uint64_t id, std::chrono::milliseconds ttl,
                                              TimePoint anchor, bool renewed) {
  auto core = std::make_shared<LeaseCore>(
      // The lease's own copy of the clock: its handles may outlive this client.
      id, ttl, SafetyMargin(ttl, options_.drift, options_.margin_floor), options_.clock, renewed);
  core->client = weak_from_this();
  core->Anchor(anchor);
  {
    std::lock_guard lock(mu_);
    leases_[id] = core;
  }
  // Every lease, renewed or not: the renewal thread fires its loss at valid_until.
  if (renewer_) renewer_->Add(core, anchor);
  return detail::Access::MakeLease(core);
}

Status ClientCore::Revoke(LeaseCore& lease) {
  Status result = Status::Ok();
  if (lease.MarkRevoked() && !lease.Lost()) {
    pb::RevokeLeaseRequest req;
    *req.mutable_header() = NewHeader();
    req.set_lease_id(lease.id());
    pb::RevokeLeaseResponse resp;
    const auto deadline = std::chrono::steady_clock::now() + options_.call_timeout;
    const grpc::Status s =
        Call(&pb::LockService::Stub::RevokeLease, req, &resp, deadline, options_.call_timeout);
    result = FromGrpc(s);
    const bool again = RetryableCode(s.error_code()) ||
                       s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                       s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
    // Unanswered, or refused by the identity's rate: the lease may still hold locks (a one-call
    // lock's TTL may be an hour). Revoke it in the background, with the same request id.
    if (again && Enqueue([this, req]() mutable {
          pb::RevokeLeaseResponse r;
          (void)Settle(&pb::LockService::Stub::RevokeLease, req, &r);
          EndRequest(req.header().id().seq());
        })) {
      result = Status(result.code(), result.message() +
                                         "; the revoke goes on in the background with the same "
                                         "request id");
    } else {
      EndRequest(req.header().id().seq());
    }
  }
  lease.Lose("revoked by this client");
  ForgetLease(lease.id());
  return result;
}

void ClientCore::LoseAllLeases(const std::string& reason) {
  for (auto& l : Leases()) {
    l->Lose(reason);
    ForgetLease(l->id());
  }
}

std::vector<std::shared_ptr<LeaseCore>> ClientCore::Leases() {
  std::vector<std::shared_ptr<LeaseCore>> out;
  std::lock_guard lock(mu_);
  for (auto& [_, w] : leases_) {
    if (auto l = w.lock()) out.push_back(std::move(l));
  }
  return out;
}

void ClientCore::ForgetLease(uint64_t id) {
  {
    std::lock_guard lock(mu_);
    leases_.erase(id);
  }
  if (renewer_) renewer_->Remove(id);
}

bool ClientCore::Enqueue(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    cleanup_.push_back(std::move(task));
  }
  cleanup_cv_.notify_all();
  return true;
}

void ClientCore::CancelAcquire(const std::string& name, uint64_t lease_id,
                               const pb::RequestId& acquire_id) {
  const bool queued = Enqueue([this, name, lease_id, acquire_id] {
    pb::CancelRequest req;
    *req.mutable_header() = NewHeader();
    req.set_name(name);
    req.set_lease_id(lease_id);
    *req.mutable_acquire_id() = acquire_id;
    pb::CancelResponse resp;
    (void)Settle(&pb::LockService::Stub::Cancel, req, &resp);
    EndRequest(req.header().id().seq());
    // The Acquire's own id stayed pending until now, so the watermark did not pass it while a
    // retry of it could still be in flight.
    EndRequest(acquire_id.seq());
  });
  if (!queued) EndRequest(acquire_id.seq());
}

void ClientCore::Dispatch(std::function<void()> f) {
  {
    std::lock_guard lock(mu_);
    if (!dispatch_stopping_) {
      dispatch_.push_back(std::move(f));
      dispatch_cv_.notify_all();
      return;
    }
  }
  // The client shut down: its callback thread is gone. No gRPC thread gets here (Shutdown waits
  // for every asynchronous call, whose answer is dispatched before it ends, before it stops the
  // callback thread), nor do the library's other threads (joined before). So this is an
  // application thread racing the Client's destruction: `f` runs here, at once, rather than on
  // a detached thread that could outlive main.
  f();
}

uint64_t ClientCore::BeginAsync(std::function<void()> cancel) {
  std::lock_guard lock(mu_);
  if (async_stopping_) return 0;
  const uint64_t id = ++next_async_;
  async_.emplace(id, std::move(cancel));
  return id;
}

void ClientCore::EndAsync(uint64_t id) {
  std::function<void()> cancel;  // destroyed outside mu_: it may hold a call's last reference
  {
    std::lock_guard lock(mu_);
    auto it = async_.find(id);
    if (it == async_.end()) return;
    cancel = std::move(it->second);
    async_.erase(it);
    // Under mu_: once it is released, Shutdown may see the map empty, return, and the client
    // (this condition variable with it) may be destroyed.
    async_cv_.notify_all();
  }
}

namespace {
/// Set while this thread runs one of the library's gRPC callbacks (an asynchronous call's
/// answer): a Client destroyed there (by a lost callback run on it) must not wait for that very
/// callback to finish.
thread_local int g_in_grpc_callback = 0;
}  // namespace

ClientCore::InGrpcCallback::InGrpcCallback() {
  ++g_in_grpc_callback;
}
ClientCore::InGrpcCallback::~InGrpcCallback() {
  --g_in_grpc_callback;
}

bool ClientCore::OnOwnThread() const {
  const auto me = std::this_thread::get_id();
  return g_in_grpc_callback > 0 || me == dispatch_thread_id_.load() ||
         me == cleanup_thread_id_.load() || (renewer_ && renewer_->OnRenewalThread());
}

void ClientCore::DispatchLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    dispatch_cv_.wait(lock, [this] { return dispatch_stopping_ || !dispatch_.empty(); });
    if (dispatch_.empty()) return;  // stopping, and everything posted has run
    auto f = std::move(dispatch_.front());
    dispatch_.pop_front();
    lock.unlock();
    f();
    // Destroyed before mu_ is taken again: the closure may hold the last handle of a Lease,
    // whose destructor calls Enqueue (which takes mu_).
    f = nullptr;
    lock.lock();
  }
}

void ClientCore::CleanupLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cleanup_cv_.wait(lock, [this] { return stopping_ || !cleanup_.empty(); });
    if (stopping_) return;
    auto task = std::move(cleanup_.front());
    cleanup_.pop_front();
    lock.unlock();
    task();
    task = nullptr;  // outside mu_, as in DispatchLoop
    lock.lock();
  }
}

}  // namespace lockd::client
