#include "server/lock_service.h"

#include <spdlog/spdlog.h>

#include <deque>

#include "lock/validate.h"
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

constexpr const char* kLockPage = "locks-after:";
constexpr const char* kLeasePage = "leases-after:";

}  // namespace

std::string ServiceContext::ClientAddr(uint64_t id) const {
  for (const auto& m : members) {
    if (m.id == id) return m.client_addr;
  }
  return "";
}

LockServiceImpl::LockServiceImpl(ServiceContext ctx) : ctx_(std::move(ctx)) {}

LockServiceImpl::~LockServiceImpl() {
  Shutdown();
}

void LockServiceImpl::Register(Stream* s) {
  std::lock_guard lock(mu_);
  streams_.insert(s);
}

void LockServiceImpl::Unregister(Stream* s) {
  std::lock_guard lock(mu_);
  streams_.erase(s);
}

void LockServiceImpl::Shutdown() {
  std::set<Stream*> streams;
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
    streams = streams_;
  }
  for (Stream* s : streams) s->End();
}

// --- the shapes every call takes ----------------------------------------------------------------

template <typename Svc, typename Req, typename Resp>
void LockServiceImpl::Forward(
    grpc::CallbackServerContext* ctx,
    void (Svc::StubInterface::async_interface::*method)(grpc::ClientContext*, const Req*, Resp*,
                                                        std::function<void(grpc::Status)>),
    const Req& req, Resp* resp, std::function<void(grpc::Status)> done) {
  if (WasForwarded(*ctx)) {
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
  ctx_.forwarder.Forward<Svc>(addr, method, req, resp, std::chrono::system_clock::now(),
                              ctx->deadline(), std::move(done));
}

template <typename Req, typename Resp>
grpc::ServerUnaryReactor* LockServiceImpl::Mutate(
    grpc::CallbackServerContext* ctx, const Req* req, Resp* resp,
    void (Async::*method)(grpc::ClientContext*, const Req*, Resp*,
                          std::function<void(grpc::Status)>)) {
  auto* reactor = ctx->DefaultReactor();
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
  // Nothing is proposed past the caller's deadline or more than F_fwd after it arrived here.
  const auto deadline =
      std::min(ctx->deadline(), std::chrono::system_clock::now() + ctx_.forward_timeout);
  ctx_.replica.Submit(std::move(command).value(), deadline, AnswerCommand(reactor, resp));
  return reactor;
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
  if (req->lease_id() == 0) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lease_id is missing (0 names no lease)"));
    return reactor;
  }
  if (!ctx_.replica.is_leader()) {
    Forward<pb::LockService>(ctx, &Async::Renew, *req, resp,
                             [reactor](grpc::Status s) { reactor->Finish(s); });
    return reactor;
  }
  const uint64_t lease = req->lease_id(), seq = req->seq();
  ctx_.replica.Renew(lease, received,
                     [reactor, resp, lease, seq](Result<std::chrono::milliseconds> left) {
                       if (!left.ok()) return reactor->Finish(ToGrpc(left.status()));
                       resp->set_lease_id(lease);
                       resp->set_seq(seq);
                       resp->set_remaining_ms(left->count());
                       reactor->Finish(grpc::Status::OK);
                     });
  return reactor;
}

namespace {

/// KeepAlive: reads renewals as they come, answers each (in the order answers are ready, each
/// echoing its own seq), one write in flight at a time. A failed renewal is an answer with a
/// code, not the end of the stream.
class KeepAliveReactor final : public grpc::ServerBidiReactor<pb::RenewRequest, pb::RenewResponse>,
                               public LockServiceImpl::Stream {
 public:
  KeepAliveReactor(LockServiceImpl& service, grpc::CallbackServerContext* ctx)
      : service_(service), ctx_(ctx), alive_(std::make_shared<Alive>()) {
    alive_->self = this;
    service_.Register(this);
    StartRead(&in_);
  }

  void End() override { FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "node stopping")); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed, or the stream broke
      std::lock_guard lock(alive_->mu);
      reading_done_ = true;
      MaybeFinishLocked();
      return;
    }
    pb::RenewRequest req = in_;
    {
      std::lock_guard lock(alive_->mu);
      ++outstanding_;
    }
    StartRead(&in_);
    Handle(req);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(alive_->mu);
    writing_ = false;
    if (!ok) {
      reading_done_ = true;
      pending_.clear();
    }
    WriteNextLocked();
    MaybeFinishLocked();
  }

  void OnDone() override {
    service_.Unregister(this);
    {
      std::lock_guard lock(alive_->mu);
      alive_->self = nullptr;
    }
    delete this;
  }

 private:
  /// Outlives the reactor: answers that arrive after the stream ended find self == nullptr.
  struct Alive {
    std::mutex mu;  ///< guards the reactor's state below and self
    KeepAliveReactor* self = nullptr;
  };

  void Handle(const pb::RenewRequest& req) {
    auto alive = alive_;
    auto answer = [alive, lease = req.lease_id(), seq = req.seq()](const grpc::Status& s,
                                                                   uint64_t remaining_ms) {
      std::lock_guard lock(alive->mu);
      if (!alive->self) return;
      pb::RenewResponse r;
      r.set_lease_id(lease);
      r.set_seq(seq);
      r.set_remaining_ms(remaining_ms);
      r.set_code(s.error_code());
      r.set_message(s.error_message());
      alive->self->Queue(std::move(r));
    };
    auto& ctx = service_.context();
    if (req.lease_id() == 0) {
      answer(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lease_id is missing"), 0);
      return;
    }
    const BootTime received = ctx.clock.Now();
    if (ctx.replica.is_leader()) {
      ctx.replica.Renew(req.lease_id(), received, [answer](Result<std::chrono::milliseconds> left) {
        if (!left.ok()) return answer(ToGrpc(left.status()), 0);
        answer(grpc::Status::OK, left->count());
      });
      return;
    }
    // A follower passes each renewal to the leader as a unary Renew.
    auto resp = std::make_shared<pb::RenewResponse>();
    service_.Forward<pb::LockService>(
        ctx_, &Async::Renew, req, resp.get(),
        [answer, resp](grpc::Status s) { answer(s, s.ok() ? resp->remaining_ms() : 0); });
  }

  void Queue(pb::RenewResponse r) {  // alive_->mu held
    --outstanding_;
    if (finished_) return;
    pending_.push_back(std::move(r));
    WriteNextLocked();
  }

  void WriteNextLocked() {
    if (writing_ || pending_.empty() || finished_) return;
    out_ = std::move(pending_.front());
    pending_.pop_front();
    writing_ = true;
    StartWrite(&out_);
  }

  void MaybeFinishLocked() {
    if (reading_done_ && !writing_ && pending_.empty() && outstanding_ == 0 && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  void FinishOnce(const grpc::Status& s) {
    std::lock_guard lock(alive_->mu);
    if (finished_) return;
    finished_ = true;
    pending_.clear();
    Finish(s);
  }

  LockServiceImpl& service_;
  grpc::CallbackServerContext* ctx_;
  std::shared_ptr<Alive> alive_;
  pb::RenewRequest in_;
  pb::RenewResponse out_;
  std::deque<pb::RenewResponse> pending_;
  bool writing_ = false;
  bool reading_done_ = false;
  bool finished_ = false;
  int outstanding_ = 0;
};

}  // namespace

grpc::ServerBidiReactor<pb::RenewRequest, pb::RenewResponse>* LockServiceImpl::KeepAlive(
    grpc::CallbackServerContext* ctx) {
  return new KeepAliveReactor(*this, ctx);
}

// --- inspection ---------------------------------------------------------------------------------

grpc::ServerUnaryReactor* LockServiceImpl::GetLock(grpc::CallbackServerContext* ctx,
                                                   const pb::GetLockRequest* req,
                                                   pb::GetLockResponse* resp) {
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
  auto fail = [ctx](const std::string& m) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, m));
    return reactor;
  };
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
  uint64_t after = 0;
  if (!req->page_token().empty()) {
    const std::string& t = req->page_token();
    bool ok = t.rfind(kLeasePage, 0) == 0 && t.size() > std::string(kLeasePage).size() &&
              t.size() <= std::string(kLeasePage).size() + 20;
    if (ok) {
      for (char c : t.substr(std::string(kLeasePage).size())) ok = ok && c >= '0' && c <= '9';
    }
    if (!ok) {
      auto* reactor = ctx->DefaultReactor();
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "page_token is not one this service returned for ListLeases"));
      return reactor;
    }
    after = std::stoull(t.substr(std::string(kLeasePage).size()));
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
  if (req->lease_id() == 0) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lease_id is missing (0 names no lease)"));
    return reactor;
  }
  return Inspect<pb::GetLeaseRequest, pb::GetLeaseResponse>(
      ctx, req, resp, req->stale(), &Async::GetLease,
      [id = req->lease_id()](const ReadView& v, pb::GetLeaseResponse* out) {
        auto view = v.state.GetLease(lock::LeaseId(id));
        if (!view) {
          return grpc::Status(grpc::StatusCode::NOT_FOUND,
                              "lease " + std::to_string(id) + " is unknown or has expired");
        }
        ToProto(*view, ClockOf(v), out->mutable_lease());
        return grpc::Status::OK;
      });
}

// --- Watch --------------------------------------------------------------------------------------

namespace {

pb::LockEvent::Type ToProto(WatchEvent::Type t) {
  switch (t) {
    case WatchEvent::Type::kAcquired:
      return pb::LockEvent::ACQUIRED;
    case WatchEvent::Type::kReleased:
      return pb::LockEvent::RELEASED;
    case WatchEvent::Type::kExpired:
      return pb::LockEvent::EXPIRED;
    case WatchEvent::Type::kWaiting:
      return pb::LockEvent::WAITING;
    case WatchEvent::Type::kCancelled:
      return pb::LockEvent::CANCELLED;
  }
  return pb::LockEvent::TYPE_UNSPECIFIED;
}

/// One Watch stream: entries queue here (from the apply thread, via the hub) and are written one
/// at a time. A watcher that falls more than kMaxQueued entries behind is ended with
/// RESOURCE_EXHAUSTED; it resumes from the last position it saw.
class WatchReactor final : public grpc::ServerWriteReactor<pb::WatchResponse>,
                           public LockServiceImpl::Stream {
 public:
  static constexpr size_t kMaxQueued = 4096;

  WatchReactor(LockServiceImpl& service, WatchHub& hub, std::string cluster_id)
      : service_(service), hub_(hub), cluster_id_(std::move(cluster_id)) {}

  void Start(WatchFilter filter, const WatchPosition* after) {
    service_.Register(this);
    auto id = hub_.Subscribe(std::move(filter), after,
                             [this](const WatchEntry& e) { return Deliver(e); });
    std::lock_guard lock(mu_);
    if (!id.ok()) {
      FinishLocked(ToGrpc(id.status()));
      return;
    }
    subscription_ = *id;
  }

  void End() override {
    std::lock_guard lock(mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "node stopping; resume on another node from your last position"));
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    // The sink may run on the apply thread until Unsubscribe returns; after it, never again.
    hub_.Unsubscribe(subscription_);
    service_.Unregister(this);
    delete this;
  }

 private:
  bool Deliver(const WatchEntry& e) {
    std::lock_guard lock(mu_);
    if (finishing_) return false;
    if (queue_.size() >= kMaxQueued) {
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "this watcher fell too far behind; resume from its last "
                                "position"));
      return false;
    }
    pb::WatchResponse r;
    for (const auto& ev : e.events) {
      auto* o = r.add_events();
      o->set_type(ToProto(ev.type));
      o->mutable_position()->set_cluster_id(cluster_id_);
      o->mutable_position()->set_index(e.index);
      o->mutable_position()->set_event(ev.number);
      o->set_name(ev.name);
      o->set_lease_id(ev.lease_id);
      o->set_mode(ev.shared ? pb::SHARED : pb::EXCLUSIVE);
      o->set_token(ev.token);
      o->set_fence(ev.fence);
    }
    queue_.push_back(std::move(r));
    WriteNextLocked();
    return true;
  }

  void WriteNextLocked() {
    if (writing_) return;
    if (queue_.empty()) {
      if (finishing_ && !finished_) {
        finished_ = true;
        Finish(final_);
      }
      return;
    }
    out_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&out_);
  }

  /// Ends the stream once the write in flight (if any) completes; queued entries are dropped.
  void FinishLocked(const grpc::Status& s) {
    if (finishing_) return;
    finishing_ = true;
    final_ = s;
    queue_.clear();
    WriteNextLocked();
  }

  LockServiceImpl& service_;
  WatchHub& hub_;
  const std::string cluster_id_;
  std::mutex mu_;  ///< guards everything below (Deliver runs on the apply thread)
  std::deque<pb::WatchResponse> queue_;
  pb::WatchResponse out_;
  bool writing_ = false;
  bool finishing_ = false;
  bool finished_ = false;
  grpc::Status final_;
  uint64_t subscription_ = 0;
};

}  // namespace

grpc::ServerWriteReactor<pb::WatchResponse>* LockServiceImpl::Watch(grpc::CallbackServerContext*,
                                                                    const pb::WatchRequest* req) {
  // Once decided the id never changes, so the reactor's copy stays true.
  const std::string cluster_id = ctx_.cluster_id();
  auto* reactor = new WatchReactor(*this, ctx_.watch, cluster_id);
  if (cluster_id.empty()) {
    reactor->Finish(Unavail("cluster id not decided yet; retry"));
    return reactor;
  }
  WatchFilter filter;
  std::string bad;
  if (req->target_case() == pb::WatchRequest::kName) {
    filter.key = req->name();
    if (Status s = lock::ValidateName(req->name(), ctx_.limits); !s.ok()) bad = s.message();
  } else if (req->target_case() == pb::WatchRequest::kPrefix) {
    filter.key = req->prefix();
    filter.prefix = true;
    if (req->prefix().size() > ctx_.limits.max_name_bytes || !lock::IsValidUtf8(req->prefix())) {
      bad = "prefix must be valid UTF-8 of at most " + std::to_string(ctx_.limits.max_name_bytes) +
            " bytes";
    }
  } else {
    bad = "give a name or a prefix to watch (an empty prefix watches every lock)";
  }
  {
    std::lock_guard lock(mu_);
    if (shutdown_) {
      reactor->Finish(Unavail("node stopping; watch on another node"));
      return reactor;
    }
  }
  if (!bad.empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, bad));
    return reactor;
  }
  WatchPosition after;
  const WatchPosition* from = nullptr;
  if (req->has_after()) {
    after.cluster_id = req->after().cluster_id();
    after.index = req->after().index();
    after.event = req->after().event();
    from = &after;
  }
  reactor->Start(std::move(filter), from);
  return reactor;
}

// --- ClusterService -----------------------------------------------------------------------------

grpc::ServerUnaryReactor* ClusterServiceImpl::Status(grpc::CallbackServerContext* ctx,
                                                     const pb::StatusRequest*,
                                                     pb::StatusResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto& c = locks_.context();
  const ReplicaStatus st = c.replica.status();
  resp->set_cluster_id(c.cluster_id());
  resp->set_node_id(st.node_id);
  resp->set_leader_id(st.leader_id);
  resp->set_term(st.term);
  resp->set_commit_index(st.commit);
  resp->set_applied_index(st.applied);
  resp->set_token_counter(st.token_counter);
  resp->set_snapshot_index(st.first_index > 0 ? st.first_index - 1 : 0);
  for (const auto& m : st.members) {
    auto* o = resp->add_members();
    o->set_id(m.id);
    for (const auto& spec : c.members) {
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
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ClusterServiceImpl::TransferLeadership(
    grpc::CallbackServerContext* ctx, const pb::TransferLeadershipRequest* req,
    pb::TransferLeadershipResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto& c = locks_.context();
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
  const auto deadline =
      std::min(ctx->deadline(), std::chrono::system_clock::now() + c.forward_timeout);
  c.replica.Submit(std::move(command).value(), deadline, AnswerCommand(reactor, resp));
  return reactor;
}

}  // namespace lockd::server
