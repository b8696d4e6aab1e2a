// The public Client: options, GrantLease and the Acquire protocol (request id, deadline,
// stop_token, withdrawal of an abandoned Acquire, late grants). Lease and Lock handles are in
// handles.cc, inspection and Watch in inspect.cc.
#include "lockd/client.h"

#include <cstdlib>
#include <sstream>

#include "client/acquire.h"
#include "client/client_core.h"
#include "client/credentials.h"
#include "client/renewer.h"

namespace lockd::client {

using namespace std::chrono_literals;

namespace {

std::vector<std::string> EndpointsFromEnv() {
  std::vector<std::string> out;
  const char* env = std::getenv("LOCKD_ENDPOINTS");
  if (!env) return out;
  std::stringstream ss(env);
  std::string e;
  while (std::getline(ss, e, ',')) {
    while (!e.empty() && e.front() == ' ') e.erase(e.begin());
    while (!e.empty() && e.back() == ' ') e.pop_back();
    if (!e.empty()) out.push_back(e);
  }
  return out;
}

/// Answers after which the Acquire is known not to be pending on the server: no Cancel needed.
/// RESOURCE_EXHAUSTED, PERMISSION_DENIED and UNAUTHENTICATED only to a first attempt (`attempt`:
/// the one the answer is to): access control answers them before the log (or at apply, having
/// changed nothing), so when they refuse a retry the first attempt may have run — the rate ran
/// out, or the policy was reloaded, between the two.
bool Definitive(const grpc::Status& s, uint32_t attempt) {
  const grpc::StatusCode c = s.error_code();
  if (c == grpc::StatusCode::RESOURCE_EXHAUSTED || c == grpc::StatusCode::PERMISSION_DENIED ||
      c == grpc::StatusCode::UNAUTHENTICATED) {
    return attempt <= 1;
  }
  return c == grpc::StatusCode::INVALID_ARGUMENT || c == grpc::StatusCode::FAILED_PRECONDITION ||
         c == grpc::StatusCode::NOT_FOUND;
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Status
// ------------------------------------------------------------------------------------------

const char* StatusCodeName(StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const auto i = static_cast<size_t>(code);
  return i < std::size(kNames) ? kNames[i] : "UNKNOWN";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

// ------------------------------------------------------------------------------------------
// Acquire
// ------------------------------------------------------------------------------------------

Result<AcquireCall> PrepareAcquire(ClientCore& core, const std::string& name,
                                   const std::shared_ptr<Lease>& lease,
                                   std::chrono::milliseconds ttl, const LockOptions& o) {
  if (name.empty()) return Status(StatusCode::kInvalidArgument, "empty lock name");
  if (o.wait < 0ms) return Status(StatusCode::kInvalidArgument, "negative wait");
  if (lease && !lease->valid()) {
    return Status(StatusCode::kFailedPrecondition,
                  "lease " + std::to_string(lease->id()) + " is lost: " + lease->lost_reason());
  }
  // A lock is judged by its lease's renewals (their sequence numbers are this client's), so a
  // lease of another Client would be misjudged.
  if (lease && detail::Access::Core(*lease)->client.lock().get() != &core) {
    return Status(StatusCode::kInvalidArgument,
                  "lease " + std::to_string(lease->id()) + " belongs to another Client");
  }
  AcquireCall c;
  c.name = name;
  c.lease = lease;
  c.one_call_ttl = ttl;
  c.options = o;
  const auto wait = o.wait;
  c.req.set_name(name);
  c.req.set_lease_id(lease ? lease->id() : 0);
  c.req.set_mode(o.mode == Mode::kShared ? pb::SHARED : pb::EXCLUSIVE);
  c.req.set_wait_ms(static_cast<uint64_t>(wait.count()));
  if (!lease) c.req.set_ttl_ms(static_cast<uint64_t>(ttl.count()));
  *c.req.mutable_header() = core.NewHeader();
  if (lease) core.ClaimAcquire(c.req.header().id().seq(), lease->id(), name);
  // A try answers within call_timeout; a wait answers by the end of the wait plus a round trip.
  c.deadline = std::chrono::steady_clock::now() +
               (wait == 0ms ? core.options().call_timeout : wait + kAnswerAllowance);
  return c;
}

/// Turns an Acquire's final answer into the caller's result. Anything the caller cannot use
/// (an error after which the Acquire may still be pending, a grant to a lease lost meanwhile)
/// is withdrawn with Cancel naming the Acquire's request id.
Result<Lock> FinishAcquire(ClientCore& core, AcquireCall& c, const grpc::Status& s,
                           const pb::AcquireResponse& resp) {
  const pb::RequestId& id = c.req.header().id();
  const uint64_t lease_id = c.lease ? c.lease->id() : resp.lease_id();
  if (!s.ok()) {
    if (Definitive(s, c.req.header().attempt())) {
      core.EndRequest(id.seq());
      return FromGrpc(s);
    }
    core.CancelAcquire(c.name, lease_id, id);
    return Status(static_cast<StatusCode>(s.error_code()),
                  s.error_message() + " (the Acquire of '" + c.name + "' is being withdrawn)");
  }
  std::shared_ptr<Lease> lease = c.lease;
  if (!lease && resp.lease_id() != 0) {
    // The one-call form: the lease came with the answer, anchored at the first send.
    lease = core.AdoptLease(resp.lease_id(), std::chrono::milliseconds(resp.lease_ttl_ms()),
                            c.first_send, /*renewed=*/false);
  }
  auto lc = std::make_shared<LockCore>();
  lc->name = c.name;
  lc->mode = resp.mode() == pb::SHARED ? Mode::kShared : Mode::kExclusive;
  lc->lease_id = lease_id;
  lc->client = core.weak_from_this();
  lc->one_call = !c.lease;
  if (!resp.acquired()) {
    core.EndRequest(id.seq());
    for (const auto& h : resp.holders()) lc->holder_leases.push_back(h.lease_id());
    return detail::Access::MakeLock(
        std::move(lc));  // a one-call lease granted anyway is revoked with its handle
  }
  if (!lease || !lease->valid()) {
    core.CancelAcquire(c.name, lease_id, id);
    return Status(StatusCode::kFailedPrecondition,
                  "the lease was lost before the grant of '" + c.name +
                      "' arrived; the grant is being released" +
                      (lease ? " (" + lease->lost_reason() + ")" : std::string()));
  }
  lc->acquired = true;
  lc->token = resp.token();
  lc->fence = resp.fence();
  // Observed from this answer's metadata just before (a change since loses the lease).
  lc->cluster_id = core.cluster_id();
  lc->lease = lease;
  // Renewals numbered above this one were sent after the grant answer arrived.
  detail::Access::Core(*lease)->AddLock(lc, lc->token, core.last_renew_seq());
  // Ended (with its claim) only now that the Lock owns the grant: in between, a renewal answer
  // listing the token must not find it unowned (ClientCore::ReleaseUnowned).
  core.EndRequest(id.seq());
  return detail::Access::MakeLock(std::move(lc));
}

std::chrono::milliseconds AcquireAttemptTimeout(const ClientOptions& o, const AcquireCall& c) {
  // A waiting attempt must not be cut short before its wait ends; a try gets the usual timeout.
  return c.req.wait_ms() == 0 ? AttemptTimeout(o)
                              : std::chrono::milliseconds(c.req.wait_ms()) + kAnswerAllowance;
}

// ------------------------------------------------------------------------------------------
// Client
// ------------------------------------------------------------------------------------------

Result<std::unique_ptr<Client>> Client::Connect(ClientOptions o) {
  if (o.endpoints.empty()) o.endpoints = EndpointsFromEnv();
  if (o.endpoints.empty()) o.endpoints = {"127.0.0.1:7401"};
  for (const auto& e : o.endpoints) {
    if (e.empty() || e.find(':') == std::string::npos) {
      return Status(StatusCode::kInvalidArgument, "endpoint '" + e + "' is not host:port");
    }
  }
  if (o.renew_divisor < 2) {
    return Status(StatusCode::kInvalidArgument, "renew_divisor must be at least 2");
  }
  if (o.drift < 0 || o.drift >= 0.25) {
    return Status(StatusCode::kInvalidArgument, "drift must be in [0, 0.25)");
  }
  if (o.call_timeout <= 0ms) return Status(StatusCode::kInvalidArgument, "call_timeout <= 0");
  if (o.max_attempts < 1) return Status(StatusCode::kInvalidArgument, "max_attempts < 1");
  if (o.initial_backoff <= 0ms || o.max_backoff < o.initial_backoff) {
    return Status(StatusCode::kInvalidArgument, "need 0 < initial_backoff <= max_backoff");
  }
  if (o.margin_floor < 0ms) return Status(StatusCode::kInvalidArgument, "margin_floor < 0");
  if (!o.clock) o.clock = [] { return BootClock::now(); };
  auto token = ReadBearerToken(BearerTokenSourceOrEnv({o.auth_token, o.auth_token_file}));
  if (!token.ok()) return token.status();
  const TlsFiles files = TlsFilesOrEnv({o.tls_ca_file, o.tls_cert_file, o.tls_key_file});
  auto credentials = ChannelCredentialsFor(files);
  if (!credentials.ok()) return credentials.status();
  auto core = std::make_shared<ClientCore>(std::move(o), std::move(credentials).value(),
                                           std::move(token).value());
  core->Start();
  return std::unique_ptr<Client>(new Client(std::move(core)));
}

Client::Client(std::shared_ptr<ClientCore> core) : core_(std::move(core)) {}

Client::~Client() {
  // Destroyed from a callback of this library: the shutdown cannot join the thread it runs on.
  // It goes on in a thread of its own, which holds the core until every thread is joined.
  if (core_->OnOwnThread()) {
    std::thread([core = core_] { core->Shutdown(); }).detach();
    return;
  }
  core_->Shutdown();
}

Result<std::shared_ptr<Lease>> Client::GrantLease(std::chrono::milliseconds ttl,
                                                  const std::string& label) {
  const auto& o = core_->options();
  if (SafetyMargin(ttl, o.drift, o.margin_floor) >= ttl / 2) {
    return Status(StatusCode::kInvalidArgument,
                  "ttl " + std::to_string(ttl.count()) +
                      " ms is too short for the safety margin (2ρ·TTL + margin_floor)");
  }
  pb::GrantLeaseRequest req;
  *req.mutable_header() = core_->NewHeader();
  req.set_ttl_ms(static_cast<uint64_t>(ttl.count()));
  req.set_label(label);
  pb::GrantLeaseResponse resp;
  TimePoint anchor{};
  grpc::Status s = core_->Call(&pb::LockService::Stub::GrantLease, req, &resp,
                               std::chrono::steady_clock::now() + o.call_timeout, AttemptTimeout(o),
                               {}, &anchor);
  core_->EndRequest(req.header().id().seq());
  if (!s.ok()) return FromGrpc(s);
  const auto granted_ttl = std::chrono::milliseconds(resp.ttl_ms());
  const auto valid_until =
      anchor + granted_ttl - SafetyMargin(granted_ttl, o.drift, o.margin_floor);
  if (core_->Now() >= valid_until) {
    // The answer came after the lease's validity (counted from the first attempt's send): the
    // cluster may already have expired it, so it is no lease to hand out. Revoke it so it holds
    // nothing until its TTL either.
    (void)core_->Enqueue([c = core_.get(), id = resp.lease_id()] {
      pb::RevokeLeaseRequest r;
      *r.mutable_header() = c->NewHeader();
      r.set_lease_id(id);
      pb::RevokeLeaseResponse rr;
      const auto timeout = c->options().call_timeout;
      (void)c->Call(&pb::LockService::Stub::RevokeLease, r, &rr,
                    std::chrono::steady_clock::now() + timeout, timeout);
      c->EndRequest(r.header().id().seq());
    });
    return Status(StatusCode::kDeadlineExceeded,
                  "lease " + std::to_string(resp.lease_id()) +
                      " was granted, but the answer came after its validity ran out (a slow or "
                      "retried GrantLease); it is being revoked");
  }
  return core_->AdoptLease(resp.lease_id(), granted_ttl, anchor, /*renewed=*/true);
}

Result<Lock> Client::Acquire(const std::string& name, const std::shared_ptr<Lease>& lease,
                             LockOptions options) {
  if (!lease) return Status(StatusCode::kInvalidArgument, "no lease");
  auto c = PrepareAcquire(*core_, name, lease, 0ms, options);
  if (!c.ok()) return c.status();
  pb::AcquireResponse resp;
  // A waiting attempt must not be cut short before its wait ends; a try gets the usual timeout.
  const auto attempt = AcquireAttemptTimeout(core_->options(), *c);
  grpc::Status s = core_->Call(&pb::LockService::Stub::Acquire, c->req, &resp, c->deadline, attempt,
                               options.stop, &c->first_send);
  return FinishAcquire(*core_, *c, s, resp);
}

Result<Lock> Client::AcquireWithTtl(const std::string& name, std::chrono::milliseconds ttl,
                                    LockOptions options) {
  const auto& o = core_->options();
  if (SafetyMargin(ttl, o.drift, o.margin_floor) >= ttl / 2) {
    return Status(StatusCode::kInvalidArgument,
                  "ttl " + std::to_string(ttl.count()) + " ms is too short for the safety margin");
  }
  auto c = PrepareAcquire(*core_, name, nullptr, ttl, options);
  if (!c.ok()) return c.status();
  pb::AcquireResponse resp;
  const auto attempt = AcquireAttemptTimeout(o, *c);
  grpc::Status s = core_->Call(&pb::LockService::Stub::Acquire, c->req, &resp, c->deadline, attempt,
                               options.stop, &c->first_send);
  return FinishAcquire(*core_, *c, s, resp);
}

void Client::AcquireAsync(const std::string& name, const std::shared_ptr<Lease>& lease,
                          LockOptions options, std::function<void(Result<Lock>)> done) {
  // Even a refusal is answered on the callback thread, never on the caller's.
  if (!lease) {
    core_->Dispatch(
        [done = std::move(done)] { done(Status(StatusCode::kInvalidArgument, "no lease")); });
    return;
  }
  auto c = PrepareAcquire(*core_, name, lease, 0ms, options);
  if (!c.ok()) {
    core_->Dispatch([done = std::move(done), status = c.status()] { done(status); });
    return;
  }
  StartAsyncAcquire(core_, std::move(c).value(), std::move(done));
}

std::string Client::cluster_id() const {
  return core_->cluster_id();
}
std::string Client::leader() const {
  return core_->leader();
}

}  // namespace lockd::client
