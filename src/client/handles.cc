// The public Lease and Lock handles: queries on the loss bookkeeping (lease_core.h), revoke,
// release. A Lock is never reported held past its lease's valid_until.
#include <optional>
#include <thread>
#include <utility>

#include "client/acquire.h"
#include "client/client_core.h"
#include "lockd/client.h"

namespace lockd::client {

// ------------------------------------------------------------------------------------------
// Lease
// ------------------------------------------------------------------------------------------

Lease::Lease(std::shared_ptr<LeaseCore> core) : core_(std::move(core)) {}

Lease::~Lease() {
  // Disarmed first: the revoke below loses the lease, and no callback may run for a handle that
  // is gone (one running now is waited for).
  core_->loss().Disarm();
  // The last handle is gone: nobody can use the lease's locks any more, so free them now.
  auto client = core_->client.lock();
  if (!client || core_->loss().lost()) return;
  auto core = core_;
  if (!client->Enqueue([c = client.get(), core] { (void)c->Revoke(*core); })) return;
}

uint64_t Lease::id() const {
  return core_->id();
}
std::chrono::milliseconds Lease::ttl() const {
  return core_->ttl();
}
bool Lease::valid() const {
  return core_->Valid();
}
BootClock::time_point Lease::valid_until() const {
  return core_->ValidUntil();
}
std::string Lease::lost_reason() const {
  (void)core_->Valid();
  return core_->loss().reason();
}
void Lease::OnLost(std::function<void(const std::string&)> f) {
  core_->loss().OnLost(std::move(f));
}
std::stop_token Lease::stop_token() const {
  return core_->loss().token();
}
Status Lease::Revoke() {
  core_->loss().Disarm();  // the owner knows: its own revoke is not reported as a loss
  auto client = core_->client.lock();
  if (!client) return Status(StatusCode::kFailedPrecondition, "the client was destroyed");
  return client->Revoke(*core_);
}

// ------------------------------------------------------------------------------------------
// Lock
// ------------------------------------------------------------------------------------------

Lock::Lock(std::shared_ptr<LockCore> core) : core_(std::move(core)) {}

Lock& Lock::operator=(Lock&& other) noexcept {
  if (this != &other) {
    if (core_) (void)Release();
    core_ = std::move(other.core_);
  }
  return *this;
}

Lock::~Lock() {
  if (core_) (void)Release();
}

bool Lock::acquired() const {
  return core_ && core_->acquired;
}

bool Lock::held() const {
  if (!acquired() || core_->loss.lost()) return false;
  {
    std::lock_guard lock(core_->mu);
    if (core_->released) return false;
  }
  // Never held past the lease's deadline, whether or not the renewer has looked yet.
  return detail::Access::Core(*core_->lease)->Valid() && !core_->loss.lost();
}

static const std::string kEmpty;
static const std::vector<uint64_t> kNoHolders;

const std::string& Lock::name() const {
  return core_ ? core_->name : kEmpty;
}
Mode Lock::mode() const {
  return core_ ? core_->mode : Mode::kExclusive;
}
uint64_t Lock::lease_id() const {
  return core_ ? core_->lease_id : 0;
}
uint64_t Lock::token() const {
  return core_ ? core_->token : 0;
}
uint64_t Lock::fence() const {
  return core_ ? core_->fence : 0;
}
const std::string& Lock::cluster_id() const {
  return core_ ? core_->cluster_id : kEmpty;
}
const std::vector<uint64_t>& Lock::holder_leases() const {
  return core_ ? core_->holder_leases : kNoHolders;
}
BootClock::time_point Lock::valid_until() const {
  if (!core_ || !core_->lease) return {};
  return core_->lease->valid_until();
}
std::string Lock::lost_reason() const {
  if (!core_) return "";
  if (core_->lease) (void)detail::Access::Core(*core_->lease)->Valid();
  return core_->loss.reason();
}
void Lock::OnLost(std::function<void(const std::string&)> f) {
  if (core_) core_->loss.OnLost(std::move(f));
}
std::stop_token Lock::stop_token() const {
  return core_ ? core_->loss.token() : std::stop_token();
}

namespace {

/// What a Release still has to do after its local part.
struct ReleaseWork {
  std::shared_ptr<ClientCore> client;
  bool revoke = false;  ///< the one-call form: revoke its own lease
  std::shared_ptr<LeaseCore> lease;
  pb::ReleaseRequest req;
};

/// The local part of a release: disarm, mark released, stop judging the lock. nullopt (with
/// `*done` set) when nothing is left to send.
std::optional<ReleaseWork> BeginRelease(LockCore& lock, const std::shared_ptr<Lease>& lease,
                                        Status* done) {
  *done = Status::Ok();
  // Disarmed before anything else: no lost callback starts once the owner lets go, and one
  // running on another thread is waited for (DESIGN: a callback never outlives its object).
  lock.loss.Disarm();
  if (!lock.acquired) return std::nullopt;
  {
    std::lock_guard g(lock.mu);
    if (std::exchange(lock.released, true)) return std::nullopt;
  }
  LeaseCore& lc = *detail::Access::Core(*lease);
  ReleaseWork w;
  w.client = lock.client.lock();
  if (!w.client) {
    lc.RemoveLock(&lock);
    *done = Status(StatusCode::kFailedPrecondition, "the client was destroyed");
    return std::nullopt;
  }
  w.lease = detail::Access::Core(*lease);
  if (lock.one_call) {
    lc.RemoveLock(&lock);
    w.revoke = true;  // the lease was this lock's own
    return w;
  }
  // Nothing of ours left to release once the lock or its lease is lost. The lease counts from
  // the moment its loss is decided, before its callbacks run: a lost callback that releases
  // the lease's locks runs on the renewal thread, exactly when the cluster may be unreachable,
  // and must not send (and wait for) a Release there.
  if (lock.loss.lost() || lc.Lost()) {
    lc.RemoveLock(&lock);
    return std::nullopt;
  }
  *w.req.mutable_header() = w.client->NewHeader();
  // Claimed before the Lock leaves the lease: the token is owned by one or the other throughout,
  // so a renewal answer listing it never finds it unowned (ClientCore::ReleaseUnowned).
  w.client->ClaimRelease(w.req.header().id().seq(), lock.lease_id, lock.token);
  lc.RemoveLock(&lock);
  w.req.set_name(lock.name);
  w.req.set_lease_id(lock.lease_id);
  w.req.set_token(lock.token);
  return w;
}

/// A Release answer that is not definitive (an election, a hung node): the lock may still be
/// held. Keep releasing in the background with the same request id, across elections, rather
/// than leave it held for the rest of the lease.
Status FinishRelease(ClientCore& client, const pb::ReleaseRequest& req, const grpc::Status& s) {
  // Unanswered, or refused by the identity's request rate (access control): the lock has left
  // its handle, so the release must still happen; it goes on in the background.
  if (RetryableCode(s.error_code()) || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
      s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    const bool queued = client.Enqueue([c = &client, again = req]() mutable {
      pb::ReleaseResponse r;
      (void)c->Settle(&pb::LockService::Stub::Release, again, &r);
      c->EndRequest(again.header().id().seq());
    });
    if (queued) {
      return Status(
          s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ? StatusCode::kResourceExhausted
                                                                 : StatusCode::kUnavailable,
          s.error_message() + "; the release goes on in the background with the same request id");
    }
  }
  client.EndRequest(req.header().id().seq());
  return FromGrpc(s);
}

}  // namespace

Status Lock::Release() {
  if (!core_) return Status::Ok();
  Status local;
  auto w = BeginRelease(*core_, core_->lease, &local);
  if (!w) return local;
  if (w->revoke) return w->client->Revoke(*w->lease);
  pb::ReleaseResponse resp;
  const auto& o = w->client->options();
  grpc::Status s =
      w->client->Call(&pb::LockService::Stub::Release, w->req, &resp,
                      std::chrono::steady_clock::now() + o.call_timeout, AttemptTimeout(o));
  return FinishRelease(*w->client, w->req, s);
}

namespace {

/// The `done` of a release queued on the cleanup thread: answered once, on the callback thread,
/// by the task; or, when the client's shutdown drops the task unrun (it revokes every lease
/// itself), CANCELLED when the last copy of the task is destroyed.
class QueuedAnswer {
 public:
  QueuedAnswer(std::function<void(Status)> done, const std::shared_ptr<ClientCore>& client)
      : done_(std::move(done)), client_(client) {}
  QueuedAnswer(const QueuedAnswer&) = delete;
  QueuedAnswer& operator=(const QueuedAnswer&) = delete;
  ~QueuedAnswer() {
    Answer(Status(StatusCode::kCancelled, "the client shut down; it revokes its leases"));
  }
  void Answer(const Status& s) {
    auto done = std::exchange(done_, nullptr);
    if (!done) return;
    if (auto client = client_.lock()) {
      client->Dispatch([done = std::move(done), s] { done(s); });
    } else {
      done(s);
    }
  }

 private:
  std::function<void(Status)> done_;
  std::weak_ptr<ClientCore> client_;
};

}  // namespace

void Lock::ReleaseAsync(std::function<void(Status)> done) {
  if (!done) done = [](Status) {};
  Status local;
  auto w = core_ ? BeginRelease(*core_, core_->lease, &local) : std::nullopt;
  if (!w) {
    // Nothing to send; answered on the callback thread, never on the caller's, while the client
    // lives. Once it is destroyed there is no library thread left: `done` runs here, at once
    // (not on a detached thread that could outlive main).
    auto client = core_ ? core_->client.lock() : nullptr;
    if (client) {
      client->Dispatch([done = std::move(done), local] { done(local); });
    } else {
      done(local);
    }
    return;
  }
  auto client = w->client;
  if (w->revoke) {
    // A revoke waits for the cluster: the cleanup thread does it, the callback thread answers.
    auto work = std::make_shared<ReleaseWork>(std::move(*w));
    auto answer = std::make_shared<QueuedAnswer>(std::move(done), client);
    const bool queued =
        client->Enqueue([work, answer] { answer->Answer(work->client->Revoke(*work->lease)); });
    // Not queued (the client is shutting down), or dropped unrun by the shutdown: the answer is
    // given when the last copy of the task goes (QueuedAnswer's destructor).
    (void)queued;
    return;
  }
  // One attempt on gRPC's callback API (no thread waits); an answer that is not definitive
  // hands the release to the background, as Release() does after its attempts.
  struct Pending {
    ReleaseWork work;
    grpc::ClientContext ctx;
    pb::ReleaseResponse resp;
    std::function<void(Status)> done;
  };
  auto call = std::make_shared<Pending>();
  call->work = std::move(*w);
  call->done = std::move(done);
  const auto& o = client->options();
  call->ctx.set_deadline(GrpcDeadline(std::chrono::steady_clock::now() + o.call_timeout));
  // The client's shutdown cancels the call and waits for its answer.
  const uint64_t async_id = client->BeginAsync([weak = std::weak_ptr<Pending>(call)] {
    if (auto p = weak.lock()) p->ctx.TryCancel();
  });
  if (async_id == 0) {
    Status result = FinishRelease(
        *client, call->work.req, grpc::Status(grpc::StatusCode::CANCELLED, "the client shut down"));
    client->Dispatch([call = std::move(call), result] { call->done(result); });
    return;
  }
  client->stub(client->PickEndpoint())
      .async()
      ->Release(&call->ctx, &call->work.req, &call->resp, [call, async_id](grpc::Status s) mutable {
        ClientCore::InGrpcCallback in_callback;
        ClientCore& c = *call->work.client;
        c.ObserveMetadata(call->ctx);
        Status result = FinishRelease(c, call->work.req, s);
        // The last references (to the client and its channels) go to the callback thread, not
        // this gRPC one. `c` outlives EndAsync: the shutdown waiting for it holds the client.
        c.Dispatch([call = std::move(call), result] { call->done(result); });
        c.EndAsync(async_id);
      });
}

}  // namespace lockd::client
