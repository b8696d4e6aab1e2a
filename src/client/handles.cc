// The public Lease and Lock handles: queries on the loss bookkeeping (lease_core.h), revoke,
// release. A Lock is never reported held past its lease's valid_until.
#include "client/acquire.h"
#include "client/client_core.h"
#include "lockd/client.h"

namespace lockd::client {

// ------------------------------------------------------------------------------------------
// Lease
// ------------------------------------------------------------------------------------------

Lease::Lease(std::shared_ptr<LeaseCore> core) : core_(std::move(core)) {}

Lease::~Lease() {
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
  return core_->lease->core()->Valid() && !core_->loss.lost();
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
const std::vector<uint64_t>& Lock::holder_leases() const {
  return core_ ? core_->holder_leases : kNoHolders;
}
BootClock::time_point Lock::valid_until() const {
  if (!core_ || !core_->lease) return {};
  return core_->lease->valid_until();
}
std::string Lock::lost_reason() const {
  if (!core_) return "";
  if (core_->lease) (void)core_->lease->core()->Valid();
  return core_->loss.reason();
}
void Lock::OnLost(std::function<void(const std::string&)> f) {
  if (core_) core_->loss.OnLost(std::move(f));
}
std::stop_token Lock::stop_token() const {
  return core_ ? core_->loss.token() : std::stop_token();
}

Status Lock::Release() {
  if (!acquired()) return Status::Ok();
  {
    std::lock_guard lock(core_->mu);
    if (std::exchange(core_->released, true)) return Status::Ok();
  }
  LeaseCore& lease = *core_->lease->core();
  lease.RemoveLock(core_.get());
  auto client = core_->client.lock();
  if (!client) return Status(StatusCode::kFailedPrecondition, "the client was destroyed");
  if (core_->one_call) return client->Revoke(lease);  // the lease was this lock's own
  if (core_->loss.lost()) return Status::Ok();        // nothing of ours left to release
  pb::ReleaseRequest req;
  *req.mutable_header() = client->NewHeader();
  req.set_name(core_->name);
  req.set_lease_id(core_->lease_id);
  req.set_token(core_->token);
  pb::ReleaseResponse resp;
  const auto& o = client->options();
  grpc::Status s =
      client->Call(&pb::LockService::Stub::Release, req, &resp,
                   std::chrono::system_clock::now() + o.call_timeout, AttemptTimeout(o));
  if (RetryableCode(s.error_code()) || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    // Not definitive (an election, a hung node): the lock may still be held. Keep releasing in
    // the background with the same request id, across elections, rather than leave it held for
    // the rest of the lease.
    const bool queued = client->Enqueue([c = client.get(), req]() mutable {
      pb::ReleaseResponse r;
      (void)c->Settle(&pb::LockService::Stub::Release, req, &r);
      c->EndRequest(req.header().id().seq());
    });
    if (queued) {
      return Status(
          StatusCode::kUnavailable,
          s.error_message() + "; the release goes on in the background with the same request id");
    }
  }
  client->EndRequest(req.header().id().seq());
  return FromGrpc(s);
}

}  // namespace lockd::client
