#include "server/lock_service.h"

#include <spdlog/spdlog.h>

#include <charconv>

#include "base/thread_name.h"
#include "lock/validate.h"
#include "server/cluster_identity.h"
#include "server/convert.h"
#include "server/watch_hub.h"

namespace lockd::server {

namespace pb = lockd::v1;
using Async = pb::LockService::StubInterface::async_interface;
using ClusterAsync = pb::ClusterService::StubInterface::async_interface;

namespace {

/// The callback that answers a submitted command's call: its status, or the filled response.
template <typename Resp>
Replica::CommandDone AnswerCommand(grpc::ServerUnaryReactor* reactor, Resp* resp) {
  return [reactor, resp](Result<lock::Outcome> r) {
    if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
    if (!r->ok()) return reactor->Finish(ToGrpc(*r));
    FillResponse(*r, resp);
    reactor->Finish(grpc::Status::OK);
  };
}

grpc::Status Unavail(const std::string& m) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, m);
}

ViewClock ClockOf(const ReadView& v) {
  return ViewClock{v.since_applied, v.lease_remaining};
}

uint32_t PageSize(uint32_t asked, uint32_t max) {
  if (asked == 0) return std::min<uint32_t>(100, max);
  return std::min(asked, max);
}

/// Every client command's header learns who called (the leader's view of it).
void SetCaller(lock::Command& command, const lock::Caller& caller) {
  std::visit(
      [&](auto& c) {
        if constexpr (requires { c.header; }) c.header.caller = caller;
      },
      command);
}

// What each mutating call needs of access control. The lease a call names must also be the
// caller's own: the state machine checks that at apply (lock/state_machine.h).
LockServiceImpl::Needs NeedsOf(const pb::GrantLeaseRequest&) {
  return {Permission::kLock, "", true, "GrantLease"};
}
// Any identity may revoke its own leases (revoking frees); another's needs admin on every name.
// Calls that free may overdraw the rate: a throttled client must still give its locks back.
LockServiceImpl::Needs NeedsOf(const pb::RevokeLeaseRequest&) {
  return {Permission::kLock, "", true, "RevokeLease", /*identity_only=*/true, Metering::kFrees};
}
LockServiceImpl::Needs NeedsOf(const pb::AcquireRequest& r) {
  return {Permission::kLock, r.name(), false, "Acquire"};
}
LockServiceImpl::Needs NeedsOf(const pb::CancelRequest& r) {
  // Identity only: Cancel and Release free what the caller's own lease holds or waits for (the
  // lease's owner is checked at apply), so a permission withdrawn meanwhile cannot trap a lock.
  return {Permission::kLock, r.name(), false, "Cancel", /*identity_only=*/true, Metering::kFrees};
}
LockServiceImpl::Needs NeedsOf(const pb::ReleaseRequest& r) {
  return {Permission::kLock, r.name(), false, "Release", /*identity_only=*/true, Metering::kFrees};
}

constexpr const char* kLockPage = "locks-after:";
constexpr const char* kLeasePage = "leases-after:";

}  // namespace

std::string ServiceContext::ClientAddr(uint64_t id) const {
  return identity ? identity->ClientAddr(id) : std::string();
}

std::vector<MemberSpec> ServiceContext::Members() const {
  return identity ? identity->members() : std::vector<MemberSpec>{};
}

std::string ServiceContext::RemovedReason() const {
  return identity ? identity->removed_reason() : std::string();
}

LockServiceImpl::LockServiceImpl(ServiceContext ctx) : ctx_(std::move(ctx)) {
  watchdog_ = std::thread([this] {
    NameThisThread("stream-watch");
    WatchStreams();
  });
}

void LockServiceImpl::WatchStreams() {
  std::unique_lock lock(mu_);
  while (!shutdown_) {
    stop_cv_.wait_for(lock, kWatchdogPeriod);
    if (shutdown_) break;
    const BootTime now = ctx_.clock.Now();
    for (Stream* s : streams_) s->CheckProgress(now);
  }
}

LockServiceImpl::~LockServiceImpl() {
  Shutdown();
}

bool LockServiceImpl::Register(Stream* s) {
  std::lock_guard lock(mu_);
  if (shutdown_) return false;
  streams_.insert(s);
  return true;
}

void LockServiceImpl::Unregister(Stream* s) {
  std::lock_guard lock(mu_);
  streams_.erase(s);
}

void LockServiceImpl::RecheckStreams() {
  std::lock_guard lock(mu_);  // as for End(): a stream finishing meanwhile waits in Unregister
  for (Stream* s : streams_) s->Recheck();
}

void LockServiceImpl::Shutdown() {
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
    stopping_ = true;
  }
  // Forwards in flight end UNAVAILABLE now, not CANCELLED when the server's shutdown deadline
  // cancels the calls they answer.
  ctx_.forwarder.Stop();
  // With mu_ held: a stream that finishes meanwhile runs OnDone on a gRPC thread, whose
  // Unregister waits here, so End() never runs on a deleted stream (gRPC runs neither OnDone
  // nor OnCancel inside Finish or grpc_call_cancel_with_status, for reactors that are not
  // inlineable; no stream takes mu_ while holding its own lock). The watchdog relies on the same.
  {
    std::lock_guard lock(mu_);
    for (Stream* s : streams_) s->End();
  }
  stop_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

grpc::Status LockServiceImpl::Stopping(const std::string& what_to_do) {
  return Unavail("this node is stopping; " + what_to_do);
}

std::optional<grpc::Status> LockServiceImpl::Refuse(const google::protobuf::Message& req) const {
  if (stopping_) return Stopping("retry on another node with the same request id");
  if (const std::string removed = ctx_.RemovedReason(); !removed.empty()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "this node was removed from the cluster (" + removed +
                            "); retry on another node with the same request id");
  }
  // gRPC's own receive limit sits above this one (see Node), so that an oversize request is
  // refused here, with the response metadata, rather than by gRPC without it.
  if (const size_t size = req.ByteSizeLong(); size > ctx_.max_request_bytes) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "request of " + std::to_string(size) +
                            " bytes is larger than the limit of " +
                            std::to_string(ctx_.max_request_bytes) + " (--max-request-bytes)");
  }
  return std::nullopt;
}

std::optional<grpc::Status> LockServiceImpl::Authorize(const grpc::ServerContextBase& ctx,
                                                       const Needs& needs,
                                                       AccessControl::Who* who) const {
  if (!ctx_.access) return std::nullopt;
  auto checked = needs.identity_only
                     ? ctx_.access->Authenticate(ctx)
                     : ctx_.access->Check(ctx, needs.permission, needs.name, needs.what,
                                          needs.anywhere, needs.metering);
  if (needs.identity_only && checked.ok()) {
    if (Status s = ctx_.access->Admit(*checked, needs.metering); !s.ok()) checked = s;
  }
  if (!checked.ok()) return ToGrpc(checked.status());
  if (who) *who = std::move(checked).value();
  return std::nullopt;
}

Replica::CommandDone LockServiceImpl::CountRefusals(Replica::CommandDone done) const {
  if (!ctx_.access) return done;
  return [access = ctx_.access, done = std::move(done)](Result<lock::Outcome> r) {
    if (r.ok() && !r->ok()) access->CountOutcome(Status(r->code, r->message));
    done(std::move(r));
  };
}

// --- the shapes every call takes ----------------------------------------------------------------

template <typename Svc, typename Req, typename Resp>
void LockServiceImpl::Forward(
    grpc::CallbackServerContext* ctx,
    void (Svc::StubInterface::async_interface::*method)(grpc::ClientContext*, const Req*, Resp*,
                                                        std::function<void(grpc::Status)>),
    const Req& req, Resp* resp, std::function<void(grpc::Status)> done, ForwardOptions options) {
  if (WasForwarded(*ctx) && !options.internal_hop) {
    // Forwarded once already: a second hop could loop between nodes with stale views.
    done(
        Unavail("forwarded to a node that is not the leader (leadership is moving); retry "
                "with the same request id"));
    return;
  }
  const uint64_t leader = ctx_.replica.leader_id();
  const std::string addr = ctx_.ClientAddr(leader);
  if (leader == 0 || leader == ctx_.replica.options().node_id || addr.empty()) {
    done(
        Unavail("no leader is known right now (election in progress, or no quorum); retry "
                "with the same request id"));
    return;
  }
  if (ctx_.metrics && ctx_.metrics->forwarded) ctx_.metrics->forwarded->Increment();
  ctx_.forwarder.Forward<Svc>(
      addr, method, req, resp, std::chrono::system_clock::now(), ctx->deadline(), options.max_age,
      std::move(done), ctx_.access ? ctx_.access->ForwardMetadata(*ctx) : Forwarder::Metadata{});
}

// The KeepAlive stream (lock_service_streams.cc) forwards its renewals with this one.
template void LockServiceImpl::Forward<pb::LockService, pb::RenewRequest, pb::RenewResponse>(
    grpc::CallbackServerContext*,
    void (Async::*)(grpc::ClientContext*, const pb::RenewRequest*, pb::RenewResponse*,
                    std::function<void(grpc::Status)>),
    const pb::RenewRequest&, pb::RenewResponse*, std::function<void(grpc::Status)>, ForwardOptions);

// ClusterService's membership calls (cluster_membership.cc) forward with these.
template void
LockServiceImpl::Forward<pb::ClusterService, pb::AddMemberRequest, pb::AddMemberResponse>(
    grpc::CallbackServerContext*,
    void (ClusterAsync::*)(grpc::ClientContext*, const pb::AddMemberRequest*,
                           pb::AddMemberResponse*, std::function<void(grpc::Status)>),
    const pb::AddMemberRequest&, pb::AddMemberResponse*, std::function<void(grpc::Status)>,
    ForwardOptions);
template void
LockServiceImpl::Forward<pb::ClusterService, pb::RemoveMemberRequest, pb::RemoveMemberResponse>(
    grpc::CallbackServerContext*,
    void (ClusterAsync::*)(grpc::ClientContext*, const pb::RemoveMemberRequest*,
                           pb::RemoveMemberResponse*, std::function<void(grpc::Status)>),
    const pb::RemoveMemberRequest&, pb::RemoveMemberResponse*, std::function<void(grpc::Status)>,
    ForwardOptions);

template <typename Req, typename Resp>
grpc::ServerUnaryReactor* LockServiceImpl::Mutate(
    grpc::CallbackServerContext* ctx, const Req* req, Resp* resp,
    void (Async::*method)(grpc::ClientContext*, const Req*, Resp*,
                          std::function<void(grpc::Status)>)) {
  auto* reactor = ctx->DefaultReactor();
  if (auto refused = Refuse(*req)) {
    reactor->Finish(*refused);
    return reactor;
  }
  AccessControl::Who who;
  if (auto denied = Authorize(*ctx, NeedsOf(*req), &who)) {
    reactor->Finish(*denied);
    return reactor;
  }
  auto command = ToCommand(*req, ctx_.limits);
  if (!command.ok()) {
    reactor->Finish(ToGrpc(command.status()));
    return reactor;
  }
  if (!ctx_.replica.is_leader()) {
    Forward<pb::LockService>(ctx, method, *req, resp,
                             [reactor](grpc::Status s) { reactor->Finish(s); });
    return reactor;
  }
  SetCaller(command.value(), AccessControl::CallerOf(who));
  // Nothing is proposed past the caller's deadline or more than F_fwd after it arrived here.
  const auto deadline =
      std::min(ctx->deadline(), std::chrono::system_clock::now() + ctx_.forward_timeout);
  auto done = CountRefusals(AnswerCommand(reactor, resp));
  // First attempts only: a retry is answered from the exactly-once record (or joins the wait
  // in progress), and timing it again would skew the histograms.
  if constexpr (std::is_same_v<Req, pb::AcquireRequest>) {
    if (req->header().attempt() <= 1) done = TimeAcquire(std::move(done), req->wait_ms() > 0);
  }
  ctx_.replica.Submit(std::move(command).value(), deadline, std::move(done));
  return reactor;
}

Replica::CommandDone LockServiceImpl::TimeAcquire(Replica::CommandDone done, bool waits) const {
  if (!ctx_.metrics) return done;
  Histogram* const* by_outcome =
      waits ? ctx_.metrics->acquire_wait : ctx_.metrics->acquire_duration;
  const auto start = std::chrono::steady_clock::now();
  return [done = std::move(done), by_outcome, start](Result<lock::Outcome> r) {
    const size_t outcome = !r.ok() || !r->ok() ? ServiceMetrics::kError
                           : r->acquired       ? ServiceMetrics::kAcquired
                                               : ServiceMetrics::kNotAcquired;
    if (Histogram* h = by_outcome[outcome]) {
      h->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    done(std::move(r));
  };
}

void LockServiceImpl::CountRenewal(const Result<Replica::Renewed>& renewed) const {
  if (!ctx_.metrics) return;
  Counter* c = renewed.ok() ? ctx_.metrics->renewals_ok
               : renewed.status().code() == StatusCode::kNotFound
                   ? ctx_.metrics->renewals_refused
                   : ctx_.metrics->renewals_unavailable;
  if (c) c->Increment();
}

template <typename Req, typename Resp>
grpc::ServerUnaryReactor* LockServiceImpl::Inspect(
    grpc::CallbackServerContext* ctx, const Req* req, Resp* resp, bool stale,
    void (Async::*method)(grpc::ClientContext*, const Req*, Resp*,
                          std::function<void(grpc::Status)>),
    std::function<grpc::Status(const ReadView&, Resp*)> fill) {
  auto* reactor = ctx->DefaultReactor();
  if (!stale && !ctx_.replica.is_leader()) {
    Forward<pb::LockService>(ctx, method, *req, resp,
                             [reactor](grpc::Status s) { reactor->Finish(s); });
    return reactor;
  }
  ctx_.replica.Read(
      !stale,
      [reactor, resp, fill = std::move(fill)](const ReadView& v) {
        reactor->Finish(fill(v, resp));
      },
      [reactor](const lockd::Status& s) { reactor->Finish(ToGrpc(s)); });
  return reactor;
}

// --- mutating calls -----------------------------------------------------------------------------

grpc::ServerUnaryReactor* LockServiceImpl::GrantLease(grpc::CallbackServerContext* ctx,
                                                      const pb::GrantLeaseRequest* req,
                                                      pb::GrantLeaseResponse* resp) {
  return Mutate(ctx, req, resp, &Async::GrantLease);
}

grpc::ServerUnaryReactor* LockServiceImpl::RevokeLease(grpc::CallbackServerContext* ctx,
                                                       const pb::RevokeLeaseRequest* req,
                                                       pb::RevokeLeaseResponse* resp) {
  return Mutate(ctx, req, resp, &Async::RevokeLease);
}

grpc::ServerUnaryReactor* LockServiceImpl::Acquire(grpc::CallbackServerContext* ctx,
                                                   const pb::AcquireRequest* req,
                                                   pb::AcquireResponse* resp) {
  return Mutate(ctx, req, resp, &Async::Acquire);
}

grpc::ServerUnaryReactor* LockServiceImpl::Cancel(grpc::CallbackServerContext* ctx,
                                                  const pb::CancelRequest* req,
                                                  pb::CancelResponse* resp) {
  return Mutate(ctx, req, resp, &Async::Cancel);
}

grpc::ServerUnaryReactor* LockServiceImpl::Release(grpc::CallbackServerContext* ctx,
                                                   const pb::ReleaseRequest* req,
                                                   pb::ReleaseResponse* resp) {
  return Mutate(ctx, req, resp, &Async::Release);
}

// --- renewals -----------------------------------------------------------------------------------

grpc::ServerUnaryReactor* LockServiceImpl::Renew(grpc::CallbackServerContext* ctx,
                                                 const pb::RenewRequest* req,
                                                 pb::RenewResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  const BootTime received = ctx_.clock.Now();
  if (auto refused = Refuse(*req)) {
    reactor->Finish(*refused);
    return reactor;
  }
  if (req->lease_id() == 0) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lease_id is missing (0 names no lease)"));
    return reactor;
  }
  if (req->more_lease_ids_size() > 0) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "more_lease_ids is for KeepAlive streams; a unary Renew renews "
                                 "lease_id alone"));
    return reactor;
  }
  AccessControl::Who who;
  if (auto denied = Authorize(
          *ctx, {Permission::kLock, "", true, "Renew", false, Metering::kUnmetered}, &who)) {
    reactor->Finish(*denied);
    return reactor;
  }
  if (!ctx_.replica.is_leader()) {
    Forward<pb::LockService>(ctx, &Async::Renew, *req, resp,
                             [reactor](grpc::Status s) { reactor->Finish(s); });
    return reactor;
  }
  const uint64_t lease = req->lease_id(), seq = req->seq();
  ctx_.replica.Renew(lease, received, AccessControl::CallerOf(who).principal,
                     [this, reactor, resp, lease, seq](Result<Replica::Renewed> renewed) {
                       CountRenewal(renewed);
                       if (!renewed.ok() && ctx_.access) {
                         ctx_.access->CountOutcome(renewed.status());
                       }
                       if (!renewed.ok()) return reactor->Finish(ToGrpc(renewed.status()));
                       resp->set_lease_id(lease);
                       resp->set_seq(seq);
                       resp->set_remaining_ms(renewed->remaining.count());
                       for (uint64_t t : renewed->held_tokens) resp->add_held_tokens(t);
                       resp->set_holdings_listed(true);
                       reactor->Finish(grpc::Status::OK);
                     });
  return reactor;
}

// --- inspection ---------------------------------------------------------------------------------

grpc::ServerUnaryReactor* LockServiceImpl::GetLock(grpc::CallbackServerContext* ctx,
                                                   const pb::GetLockRequest* req,
                                                   pb::GetLockResponse* resp) {
  if (auto refused = Refuse(*req)) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(*refused);
    return reactor;
  }
  if (auto denied = Authorize(*ctx, {Permission::kRead, req->name(), false, "GetLock"})) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(*denied);
    return reactor;
  }
  if (Status s = lock::ValidateName(req->name(), ctx_.limits); !s.ok()) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  return Inspect<pb::GetLockRequest, pb::GetLockResponse>(
      ctx, req, resp, req->stale(), &Async::GetLock,
      [name = req->name()](const ReadView& v, pb::GetLockResponse* out) {
        auto view = v.state.GetLock(name);
        if (view) {
          ToProto(*view, ClockOf(v), out->mutable_lock());
        } else {
          out->mutable_lock()->set_name(name);
        }
        return grpc::Status::OK;
      });
}

grpc::ServerUnaryReactor* LockServiceImpl::ListLocks(grpc::CallbackServerContext* ctx,
                                                     const pb::ListLocksRequest* req,
                                                     pb::ListLocksResponse* resp) {
  if (auto refused = Refuse(*req)) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(*refused);
    return reactor;
  }
  auto fail = [ctx](const std::string& m) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, m));
    return reactor;
  };
  // Every name the prefix covers must be readable: read on a prefix of the prefix.
  if (auto denied = Authorize(*ctx, {Permission::kRead, req->prefix(), false, "ListLocks"})) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(*denied);
    return reactor;
  }
  if (req->prefix().size() > ctx_.limits.max_name_bytes || !lock::IsValidUtf8(req->prefix())) {
    return fail("prefix must be valid UTF-8 of at most " +
                std::to_string(ctx_.limits.max_name_bytes) + " bytes");
  }
  std::string after;
  if (!req->page_token().empty()) {
    if (req->page_token().rfind(kLockPage, 0) != 0) {
      return fail("page_token is not one this service returned for ListLocks");
    }
    after = req->page_token().substr(std::string(kLockPage).size());
  }
  const uint32_t limit = PageSize(req->page_size(), ctx_.max_page_size);
  return Inspect<pb::ListLocksRequest, pb::ListLocksResponse>(
      ctx, req, resp, req->stale(), &Async::ListLocks,
      [prefix = req->prefix(), after, limit](const ReadView& v, pb::ListLocksResponse* out) {
        auto page = v.state.ListLocks(prefix, after, limit);
        for (const auto& l : page.items) ToProto(l, ClockOf(v), out->add_locks());
        if (!page.next.empty()) out->set_next_page_token(kLockPage + page.next);
        return grpc::Status::OK;
      });
}

grpc::ServerUnaryReactor* LockServiceImpl::ListLeases(grpc::CallbackServerContext* ctx,
                                                      const pb::ListLeasesRequest* req,
                                                      pb::ListLeasesResponse* resp) {
  if (auto refused = Refuse(*req)) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(*refused);
    return reactor;
  }
  // Leases are not named: listing them all needs read on every name.
  if (auto denied = Authorize(*ctx, {Permission::kRead, "", false, "ListLeases"})) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(*denied);
    return reactor;
  }
  uint64_t after = 0;
  if (!req->page_token().empty()) {
    // from_chars, not stoull: a token of 20+ digits must be a bad token, not an exception.
    const std::string& t = req->page_token();
    const std::string_view prefix(kLeasePage);
    const char* first = t.data() + prefix.size();
    const char* last = t.data() + t.size();
    bool ok = t.size() > prefix.size() && t.compare(0, prefix.size(), prefix) == 0 &&
              *first >= '0' && *first <= '9';
    if (ok) {
      auto [end, ec] = std::from_chars(first, last, after);
      ok = ec == std::errc() && end == last;
    }
    if (!ok) {
      auto* reactor = ctx->DefaultReactor();
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "page_token is not one this service returned for ListLeases"));
      return reactor;
    }
  }
  const uint32_t limit = PageSize(req->page_size(), ctx_.max_page_size);
  return Inspect<pb::ListLeasesRequest, pb::ListLeasesResponse>(
      ctx, req, resp, req->stale(), &Async::ListLeases,
      [after, limit](const ReadView& v, pb::ListLeasesResponse* out) {
        auto page = v.state.ListLeases(lock::LeaseId(after), limit);
        for (const auto& l : page.items) ToProto(l, ClockOf(v), out->add_leases());
        if (!page.next.empty()) out->set_next_page_token(kLeasePage + page.next);
        return grpc::Status::OK;
      });
}

grpc::ServerUnaryReactor* LockServiceImpl::GetLease(grpc::CallbackServerContext* ctx,
                                                    const pb::GetLeaseRequest* req,
                                                    pb::GetLeaseResponse* resp) {
  if (auto refused = Refuse(*req)) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(*refused);
    return reactor;
  }
  if (req->lease_id() == 0) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lease_id is missing (0 names no lease)"));
    return reactor;
  }
  // One's own lease, or any with read on every name (checked below, against its owner).
  AccessControl::Who who;
  if (auto denied = Authorize(*ctx, {Permission::kRead, "", false, "GetLease", true}, &who)) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(*denied);
    return reactor;
  }
  return Inspect<pb::GetLeaseRequest, pb::GetLeaseResponse>(
      ctx, req, resp, req->stale(), &Async::GetLease,
      [id = req->lease_id(), who, access = ctx_.access](const ReadView& v,
                                                        pb::GetLeaseResponse* out) {
        auto view = v.state.GetLease(lock::LeaseId(id));
        if (!view) {
          return grpc::Status(grpc::StatusCode::NOT_FOUND,
                              "lease " + std::to_string(id) + " is unknown or has expired");
        }
        if (who.identity && view->owner != who.identity->name) {
          if (Status s = access->Require(who, Permission::kRead, "",
                                         "GetLease of another "
                                         "identity's lease");
              !s.ok()) {
            return ToGrpc(s);
          }
        }
        ToProto(*view, ClockOf(v), out->mutable_lease());
        return grpc::Status::OK;
      });
}

// --- ClusterService -----------------------------------------------------------------------------

grpc::ServerUnaryReactor* ClusterServiceImpl::Status(grpc::CallbackServerContext* ctx,
                                                     const pb::StatusRequest*,
                                                     pb::StatusResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  // Not authenticated: the cluster's shape (members, leader, term) is what a client needs before
  // anything else, and what a node joining with --join asks for before it is a member (with
  // --tls-client-ca the caller still needs a certificate to get a TLS session at all).
  locks_.context().replica.FreshStatus([this, reactor, resp](ReplicaStatus st) {
    if (st.restored_start_pending) {
      reactor->Finish(grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          "this node has not yet applied the entry that starts the restored cluster (its counters "
          "would be those from before the restore); retry in a moment"));
      return;
    }
    FillStatus(st, resp);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

void ClusterServiceImpl::FillStatus(const ReplicaStatus& st, pb::StatusResponse* resp) {
  auto& c = locks_.context();
  resp->set_cluster_id(c.cluster_id());
  resp->set_node_id(st.node_id);
  resp->set_leader_id(st.leader_id);
  resp->set_term(st.term);
  resp->set_commit_index(st.commit);
  resp->set_applied_index(st.applied);
  resp->set_token_counter(st.token_counter);
  resp->set_snapshot_index(st.first_index > 0 ? st.first_index - 1 : 0);
  FillMembers(st, resp->mutable_members());
}

void ClusterServiceImpl::FillMembers(const ReplicaStatus& st,
                                     google::protobuf::RepeatedPtrField<pb::Member>* out) {
  const std::vector<MemberSpec> specs = locks_.context().Members();
  for (const auto& m : st.members) {
    auto* o = out->Add();
    o->set_id(m.id);
    for (const auto& spec : specs) {
      if (spec.id == m.id) {
        o->set_client_addr(spec.client_addr);
        o->set_peer_addr(spec.peer_addr);
      }
    }
    if (!m.voter) {
      o->set_role(pb::Member::LEARNER);
    } else if (m.id == st.leader_id) {
      o->set_role(pb::Member::LEADER);
    } else if (m.id == st.node_id &&
               (st.role == raft::Role::kCandidate || st.role == raft::Role::kPreCandidate)) {
      o->set_role(pb::Member::CANDIDATE);
    } else {
      o->set_role(pb::Member::FOLLOWER);
    }
    if (st.role == raft::Role::kLeader) {
      o->set_match_index(m.match);
      o->set_lag(st.commit > m.match ? st.commit - m.match : 0);
    }
    o->set_reachable(m.active);
    const IdentityStore* identity = locks_.context().identity;
    o->set_incarnation_recorded(m.id == st.node_id ||
                                (identity != nullptr && identity->KnowsIncarnationOf(m.id)));
  }
}

grpc::ServerUnaryReactor* ClusterServiceImpl::TransferLeadership(
    grpc::CallbackServerContext* ctx, const pb::TransferLeadershipRequest* req,
    pb::TransferLeadershipResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto& c = locks_.context();
  if (auto refused = locks_.Refuse(*req)) {
    reactor->Finish(*refused);
    return reactor;
  }
  if (auto denied = locks_.Authorize(*ctx, {Permission::kAdmin, "", false, "TransferLeadership"})) {
    reactor->Finish(*denied);
    return reactor;
  }
  if (req->to() != 0 && c.ClientAddr(req->to()).empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "node " + std::to_string(req->to()) + " is not a member"));
    return reactor;
  }
  if (!c.replica.is_leader()) {
    locks_.Forward<pb::ClusterService>(ctx, &ClusterAsync::TransferLeadership, *req, resp,
                                       [reactor](grpc::Status s) { reactor->Finish(s); });
    return reactor;
  }
  c.replica.TransferLeadership(req->to(), [reactor, resp, &c](const lockd::Status& s) {
    if (!s.ok()) return reactor->Finish(ToGrpc(s));
    resp->set_leader_id(c.replica.leader_id());
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ClusterServiceImpl::ForceRelease(grpc::CallbackServerContext* ctx,
                                                           const pb::ForceReleaseRequest* req,
                                                           pb::ForceReleaseResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto& c = locks_.context();
  if (auto refused = locks_.Refuse(*req)) {
    reactor->Finish(*refused);
    return reactor;
  }
  AccessControl::Who who;
  if (auto denied =
          locks_.Authorize(*ctx, {Permission::kAdmin, req->name(), false, "ForceRelease"}, &who)) {
    reactor->Finish(*denied);
    return reactor;
  }
  auto command = ToCommand(*req, c.limits);
  if (!command.ok()) {
    reactor->Finish(ToGrpc(command.status()));
    return reactor;
  }
  if (!c.replica.is_leader()) {
    locks_.Forward<pb::ClusterService>(ctx, &ClusterAsync::ForceRelease, *req, resp,
                                       [reactor](grpc::Status s) { reactor->Finish(s); });
    return reactor;
  }
  SetCaller(command.value(), AccessControl::CallerOf(who));
  const auto deadline =
      std::min(ctx->deadline(), std::chrono::system_clock::now() + c.forward_timeout);
  // First attempts only: a retry's answer comes from the exactly-once record and lists the same
  // grants again.
  Counter* applied =
      c.metrics && req->header().attempt() <= 1 ? c.metrics->force_releases : nullptr;
  c.replica.Submit(std::move(command).value(), deadline,
                   [answer = locks_.CountRefusals(AnswerCommand(reactor, resp)),
                    applied](Result<lock::Outcome> r) {
                     // The answer lists the grants it released.
                     if (applied && r.ok() && r->ok()) {
                       applied->Increment(static_cast<double>(r->holders.size()));
                     }
                     answer(std::move(r));
                   });
  return reactor;
}

}  // namespace lockd::server
