// The two streaming calls of LockServiceImpl: KeepAlive (bidi: renewals in, answers out) and
// Watch (server stream: replayed history, then live events). Both are bounded: a stream whose
// reader does not keep up is ended RESOURCE_EXHAUSTED (counted in /metrics) instead of queueing
// without limit on the node, and both end UNAVAILABLE when the node stops.
#include <spdlog/spdlog.h>

#include <deque>

#include "lock/validate.h"
#include "server/convert.h"
#include "server/lock_service.h"
#include "server/watch_hub.h"

namespace lockd::server {

namespace pb = lockd::v1;
using Async = pb::LockService::StubInterface::async_interface;

namespace {

/// Ends a call now with `s`, even with a write in flight that a client who stopped reading will
/// never complete. Finish alone queues the status behind that write (HTTP/2 trailers follow the
/// stream's data, which the client's flow-control window holds back), so the client would see
/// nothing until the server's shutdown deadline cancels the call (CANCELLED). Cancelling the call
/// with a status makes the transport send the trailers with this status at once, dropping the
/// unsent message; the write then completes not ok. Finish is still required by the reactor API.
template <typename Reactor>
void FinishDroppingWrite(Reactor& reactor, grpc::CallbackServerContext* ctx, bool writing,
                         const grpc::Status& s) {
  if (writing && ctx != nullptr) {
    grpc_call_cancel_with_status(ctx->c_call(), static_cast<grpc_status_code>(s.error_code()),
                                 s.error_message().c_str(), nullptr);
  }
  reactor.Finish(s);
}

/// KeepAlive: reads renewals, answers each (in the order answers are ready, each echoing its own
/// seq), one write in flight at a time. A failed renewal is an answer with a code, not the end of
/// the stream. A message may renew a batch of leases (more_lease_ids): one answer, with one entry
/// per lease. Backpressure: at most kMaxKeepAliveBacklog renewals (leases, not messages) are read
/// and not yet written back, give or take the one message read below the bound; at the bound the
/// reactor stops reading (the client's writes block in flow control) and reads again as writes
/// complete, so a client renewing thousands of leases in one burst is answered every one, and
/// the node's memory per stream stays bounded. Only a client whose
/// answers make no progress for kStuckWriteTimeout (it stopped reading) is ended
/// RESOURCE_EXHAUSTED, counted in lockd_keepalive_overflows_total.
class KeepAliveReactor final : public grpc::ServerBidiReactor<pb::RenewRequest, pb::RenewResponse>,
                               public LockServiceImpl::Stream {
 public:
  KeepAliveReactor(LockServiceImpl& service, grpc::CallbackServerContext* ctx)
      : service_(service), ctx_(ctx), alive_(std::make_shared<Alive>()) {
    alive_->self = this;
    // Once per stream: its renewals are then held to this identity's own leases (renewals write
    // no log entry and are not counted against the identity's rate). Before Register, so a
    // reload's Recheck never sees the stream half-built.
    AccessControl::Who who;
    if (auto denied = service_.Authorize(*ctx, Needs(), &who)) {
      FinishOnce(*denied);
      return;
    }
    principal_ = AccessControl::CallerOf(who).principal;
    if (!service_.Register(this)) {
      FinishOnce(LockServiceImpl::Stopping("keep the leases alive through another node"));
      return;
    }
    // A reload between the check and Register: its RecheckStreams did not see this stream.
    auto* access = service_.context().access;
    if (access && who.policy != access->policy() && Refused()) return;
    StartRead(&in_);
  }

  void End() override {
    FinishOnce(LockServiceImpl::Stopping("keep the leases alive through another node"));
  }

  /// A reload that removed the stream's identity, or moved its credentials to another one, or
  /// withdrew `lock`, ends it: its renewals would otherwise keep that identity's leases alive.
  void Recheck() override {
    if (service_.context().access) (void)Refused();
  }

  void CheckProgress(BootTime now) override {
    std::lock_guard lock(alive_->mu);
    if (finished_ || !writing_ || now - write_started_ < LockServiceImpl::kStuckWriteTimeout) {
      return;
    }
    // The client has not taken one answer for kStuckWriteTimeout: it stopped reading. Its
    // renewals are not read either (backpressure), so end the stream rather than hold it.
    if (auto* c = service_.context().keepalive_overflows) c->Increment();
    const auto secs =
        std::chrono::duration_cast<std::chrono::seconds>(LockServiceImpl::kStuckWriteTimeout);
    FinishLocked(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        "this KeepAlive stream's client read no answer for " + std::to_string(secs.count()) +
            " s, with " + std::to_string(Unanswered()) + " renewals unanswered (at most " +
            std::to_string(LockServiceImpl::kMaxKeepAliveBacklog) +
            " per stream); read the answers as they come, then open a new stream"));
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed, or the stream broke
      std::lock_guard lock(alive_->mu);
      reading_done_ = true;
      MaybeFinishLocked();
      return;
    }
    pb::RenewRequest req = in_;
    const size_t weight = Weight(req);
    {
      std::lock_guard lock(alive_->mu);
      if (finished_) return;  // no more reads: the stream is ending
      outstanding_ += weight;
      read_paused_ = true;
      MaybeReadLocked();
    }
    Handle(req, weight);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(alive_->mu);
    writing_ = false;
    unwritten_bytes_ -= out_bytes_;
    if (!ok) {
      reading_done_ = true;
      pending_.clear();
      pending_weight_ = 0;
    }
    WriteNextLocked();
    MaybeReadLocked();
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

  /// The renewals a message stands for: 1, or the batch's size (a batch over the limit is
  /// answered as one refusal).
  static size_t Weight(const pb::RenewRequest& req) {
    const size_t n = 1 + static_cast<size_t>(req.more_lease_ids_size());
    return n > LockServiceImpl::kMaxRenewalsPerMessage ? 1 : n;
  }

  /// One lease's renewal: the leader renews it; a follower passes it to the leader as a unary
  /// Renew. `done` gets the status and what a renewal answers (remaining_ms, held_tokens).
  using RenewedFn = std::function<void(const grpc::Status&, pb::RenewResponse)>;
  void RenewOne(uint64_t lease, uint64_t seq, BootTime received, RenewedFn done) {
    if (lease == 0) {
      done(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lease_id is missing"), {});
      return;
    }
    auto& ctx = service_.context();
    if (ctx.replica.is_leader()) {
      ctx.replica.Renew(
          lease, received, principal_,
          [done = std::move(done), &service = service_](Result<Replica::Renewed> renewed) {
            service.CountRenewal(renewed);
            if (!renewed.ok()) {
              if (auto* access = service.context().access) access->CountOutcome(renewed.status());
              return done(ToGrpc(renewed.status()), {});
            }
            pb::RenewResponse r;
            r.set_remaining_ms(renewed->remaining.count());
            for (uint64_t t : renewed->held_tokens) r.add_held_tokens(t);
            r.set_holdings_listed(true);
            done(grpc::Status::OK, std::move(r));
          });
      return;
    }
    pb::RenewRequest one;
    one.set_lease_id(lease);
    one.set_seq(seq);
    auto resp = std::make_shared<pb::RenewResponse>();
    service_.Forward<pb::LockService>(ctx_, &Async::Renew, one, resp.get(),
                                      [done = std::move(done), resp](grpc::Status s) {
                                        done(s, s.ok() ? std::move(*resp) : pb::RenewResponse());
                                      });
  }

  /// Judges the stream under the policy in force: true (and ended) if its caller may no longer
  /// keep it open.
  bool Refused() {
    AccessControl::Who who;
    if (auto denied = service_.Authorize(*ctx_, Needs(), &who)) {
      FinishOnce(*denied);
      return true;
    }
    if (AccessControl::CallerOf(who).principal != principal_) {
      FinishOnce(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                              "the access policy was reloaded and this stream's credentials now "
                              "name another identity; open a new stream"));
      return true;
    }
    return false;
  }

  /// What a KeepAlive stream needs of access control: lock anywhere, no rate (no log entry).
  static LockServiceImpl::Needs Needs() {
    return {Permission::kLock, "", true, "KeepAlive", false, Metering::kUnmetered};
  }

  static void Stamp(pb::RenewResponse& r, uint64_t lease, const grpc::Status& s) {
    r.set_lease_id(lease);
    r.set_code(s.error_code());
    r.set_message(s.error_message());
  }

  void Handle(const pb::RenewRequest& req, size_t weight) {
    auto alive = alive_;
    // `r` carries what a renewal answers (remaining_ms, held_tokens, more); the rest is set here.
    auto answer = [alive, weight, lease = req.lease_id(), seq = req.seq()](const grpc::Status& s,
                                                                           pb::RenewResponse r) {
      std::lock_guard lock(alive->mu);
      if (!alive->self) return;
      Stamp(r, lease, s);
      r.set_seq(seq);
      alive->self->Queue(std::move(r), weight);
    };
    if (req.lease_id() == 0) {
      answer(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lease_id is missing"), {});
      return;
    }
    if (1 + static_cast<size_t>(req.more_lease_ids_size()) >
        LockServiceImpl::kMaxRenewalsPerMessage) {
      answer(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "a KeepAlive message renews at most " +
                              std::to_string(LockServiceImpl::kMaxRenewalsPerMessage) +
                              " leases (lease_id and more_lease_ids); this one names " +
                              std::to_string(1 + req.more_lease_ids_size())),
             {});
      return;
    }
    if (auto refused = service_.Refuse(req)) {
      answer(*refused, {});
      return;
    }
    const BootTime received = service_.context().clock.Now();
    if (req.more_lease_ids_size() == 0) {
      RenewOne(req.lease_id(), req.seq(), received, std::move(answer));
      return;
    }
    // A batch: every lease renewed as received now; one answer once the last is decided.
    struct Batch {
      std::mutex mu;
      size_t left;
      grpc::Status first_status;
      pb::RenewResponse first;
      std::vector<pb::RenewResponse> more;
    };
    auto batch = std::make_shared<Batch>();
    batch->left = weight;
    batch->more.resize(static_cast<size_t>(req.more_lease_ids_size()));
    auto settle = [batch, answer](size_t index, uint64_t lease, const grpc::Status& s,
                                  pb::RenewResponse r) {
      {
        std::lock_guard lock(batch->mu);
        if (index == 0) {
          batch->first_status = s;
          batch->first = std::move(r);
        } else {
          Stamp(r, lease, s);
          batch->more[index - 1] = std::move(r);
        }
        if (--batch->left > 0) return;
      }
      for (auto& m : batch->more) *batch->first.add_more() = std::move(m);
      answer(batch->first_status, std::move(batch->first));
    };
    RenewOne(req.lease_id(), req.seq(), received,
             [settle, lease = req.lease_id()](const grpc::Status& s, pb::RenewResponse r) {
               settle(0, lease, s, std::move(r));
             });
    for (int k = 0; k < req.more_lease_ids_size(); ++k) {
      const uint64_t lease = req.more_lease_ids(k);
      RenewOne(lease, req.seq(), received,
               [settle, lease, index = static_cast<size_t>(k) + 1](const grpc::Status& s,
                                                                   pb::RenewResponse r) {
                 settle(index, lease, s, std::move(r));
               });
    }
  }

  void Queue(pb::RenewResponse r, size_t weight) {  // alive_->mu held
    outstanding_ -= weight;
    if (finished_) return;
    // No bound check here: the reads stop at the bound, so pending_ stays within it (plus the
    // one message read below it).
    unwritten_bytes_ += r.ByteSizeLong();
    pending_weight_ += weight;
    pending_.emplace_back(std::move(r), weight);
    WriteNextLocked();
  }

  /// Starts the next read unless the stream is ending, a read is in flight, or the renewals read
  /// and not yet written back are at the bound, in number or in bytes of the answers (then a
  /// completed write calls this again). Bytes too: an answer lists the lease's held tokens, and
  /// no cap on locks per lease keeps 1,024 of them small.
  void MaybeReadLocked() {
    if (!read_paused_ || finished_ || reading_done_) return;
    if (Unanswered() >= LockServiceImpl::kMaxKeepAliveBacklog) return;
    if (unwritten_bytes_ >= LockServiceImpl::kMaxKeepAliveBacklogBytes) return;
    read_paused_ = false;
    StartRead(&in_);
  }

  void WriteNextLocked() {
    if (writing_ || pending_.empty() || finished_) return;
    out_ = std::move(pending_.front().first);
    out_weight_ = pending_.front().second;
    pending_weight_ -= out_weight_;
    pending_.pop_front();
    out_bytes_ = out_.ByteSizeLong();
    writing_ = true;
    write_started_ = service_.context().clock.Now();
    StartWrite(&out_);
  }

  /// Renewals read and not yet written back: the quantity kMaxKeepAliveBacklog bounds.
  size_t Unanswered() const {
    return outstanding_ + pending_weight_ + (writing_ ? out_weight_ : 0);
  }

  void MaybeFinishLocked() {
    if (reading_done_ && !writing_ && pending_.empty() && outstanding_ == 0 && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  void FinishOnce(const grpc::Status& s) {
    std::lock_guard lock(alive_->mu);
    FinishLocked(s);
  }

  /// Ends the stream now, even with a write in flight that a non-reading client never completes.
  void FinishLocked(const grpc::Status& s) {
    if (finished_) return;
    finished_ = true;
    pending_.clear();
    pending_weight_ = 0;
    FinishDroppingWrite(*this, ctx_, writing_, s);
  }

  LockServiceImpl& service_;
  grpc::CallbackServerContext* ctx_;
  std::shared_ptr<Alive> alive_;
  std::string principal_;  ///< who renews (empty: access control is off)
  pb::RenewRequest in_;
  pb::RenewResponse out_;
  size_t out_weight_ = 0;  ///< renewals out_ answers
  /// Answers ready to write, each with the number of renewals it answers.
  std::deque<std::pair<pb::RenewResponse, size_t>> pending_;
  size_t pending_weight_ = 0;  ///< renewals pending_ answers
  bool writing_ = false;
  BootTime write_started_{};  ///< when the write in flight started (writing_)
  /// No read in flight: the last one completed and the next waits for room under the bound.
  bool read_paused_ = false;
  bool reading_done_ = false;
  bool finished_ = false;
  size_t outstanding_ = 0;      ///< renewals read whose answers have not arrived yet
  size_t unwritten_bytes_ = 0;  ///< ByteSizeLong of pending_ and of the write in flight
  size_t out_bytes_ = 0;        ///< ByteSizeLong of out_ (the write in flight)
};

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
/// at a time. A resume replays the hub's history one chunk at a time, pulling the next chunk
/// only when the previous one is written, so the replay is paced by the watcher and never holds
/// the hub (and the apply loop's Publish) for more than one chunk. A live watcher that falls
/// more than kMaxQueued entries behind is ended with RESOURCE_EXHAUSTED; it resumes from the last
/// position it saw.
class WatchReactor final : public grpc::ServerWriteReactor<pb::WatchResponse>,
                           public LockServiceImpl::Stream {
 public:
  static constexpr size_t kMaxQueued = 4096;
  static constexpr size_t kReplayChunk = 256;  ///< entries per replay step, well below kMaxQueued

  WatchReactor(LockServiceImpl& service, grpc::CallbackServerContext* ctx, WatchHub& hub,
               std::string cluster_id)
      : service_(service), ctx_(ctx), hub_(hub), cluster_id_(std::move(cluster_id)) {}

  void Start(WatchFilter filter, const WatchPosition* after) {
    if (!service_.Register(this)) {
      std::lock_guard lock(mu_);
      FinishLocked(LockServiceImpl::Stopping("watch on another node from your last position"));
      return;
    }
    // A reload between the check (LockServiceImpl::Watch) and Register: its RecheckStreams did
    // not see this stream.
    if (auto* access = service_.context().access; access && policy_ != access->policy()) {
      Recheck();
      std::lock_guard lock(mu_);
      if (finishing_) return;
    }
    auto id = hub_.Subscribe(std::move(filter), after,
                             [this](const WatchEntry& e) { return Deliver(e); });
    {
      std::lock_guard lock(mu_);
      if (!id.ok()) {
        FinishLocked(ToGrpc(id.status()));
        return;
      }
      subscription_ = *id;
      replaying_ = after != nullptr;
    }
    PumpReplay();
  }

  /// Finishes at once, not after the write in flight: a watcher that stopped reading would hold
  /// it until the server's shutdown deadline cancelled the call (CANCELLED, not UNAVAILABLE).
  void End() override {
    std::lock_guard lock(mu_);
    FinishLocked(LockServiceImpl::Stopping("resume on another node from your last position"));
  }

  /// What the watch was authorized for (read on its name or prefix, under `policy`), checked
  /// again on reload.
  void Guard(std::string target, std::shared_ptr<const AccessPolicy> policy) {
    target_ = std::move(target);
    policy_ = std::move(policy);
  }
  void Recheck() override {
    if (!service_.context().access) return;
    if (auto denied = service_.Authorize(
            *ctx_, {Permission::kRead, target_, false, "Watch", false, Metering::kUnmetered})) {
      std::lock_guard lock(mu_);
      FinishLocked(*denied);
    }
  }

  void OnWriteDone(bool ok) override {
    bool pump = false;
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) {
        // The stream broke, or a finish dropped this write (then this is a no-op).
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
        return;
      }
      WriteNextLocked();
      pump = replaying_ && !writing_ && !finishing_;
    }
    if (pump) PumpReplay();
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
  /// Pulls replay chunks while nothing is left to write. Called without mu_: the hub calls the
  /// sink (which takes mu_) with its own mutex held, so mu_ is never held while calling the hub.
  void PumpReplay() {
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (!replaying_ || pulling_ || writing_ || finishing_ || !queue_.empty()) return;
        pulling_ = true;
      }
      auto live = hub_.Replay(subscription_, kReplayChunk);
      std::lock_guard lock(mu_);
      pulling_ = false;
      if (!live.ok()) {
        FinishLocked(ToGrpc(live.status()));
        return;
      }
      if (*live) replaying_ = false;
      // Otherwise: a chunk was queued (and its write started), or the scanned entries held
      // nothing for this filter and the loop pulls again.
    }
  }

  bool Deliver(const WatchEntry& e) {
    std::lock_guard lock(mu_);
    if (finishing_) return false;
    if (queue_.size() >= kMaxQueued) {
      if (auto* c = service_.context().watch_overflows) c->Increment();
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "this watcher fell " + std::to_string(kMaxQueued) +
                                    " entries behind (the bound per stream); resume from its "
                                    "last position"));
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
    if (writing_ || finishing_ || queue_.empty()) return;
    out_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&out_);
  }

  /// Ends the stream now with `s`; queued entries and the write in flight (if any) are dropped.
  /// Never after the write in flight: a watcher that stopped reading never completes it, so the
  /// status (its RESOURCE_EXHAUSTED when it fell behind, or the node's UNAVAILABLE) would never
  /// be sent, and the stream would end CANCELLED by the server's shutdown deadline, if ever. Every
  /// status a Watch ends with is an error, after which the watcher resumes from the last position
  /// it saw, so the dropped entries are not lost to it.
  void FinishLocked(const grpc::Status& s) {
    if (finishing_) return;
    finishing_ = true;
    queue_.clear();
    FinishDroppingWrite(*this, ctx_, writing_, s);
  }

  LockServiceImpl& service_;
  grpc::CallbackServerContext* ctx_;
  WatchHub& hub_;
  const std::string cluster_id_;
  std::string target_;  ///< the name or prefix watched (set before Start, then constant)
  std::shared_ptr<const AccessPolicy> policy_;  ///< the policy it was authorized under
  std::mutex mu_;  ///< guards everything below (Deliver runs on the apply thread)
  std::deque<pb::WatchResponse> queue_;
  pb::WatchResponse out_;
  bool writing_ = false;
  bool finishing_ = false;  ///< Finish was called (at once, dropping any write in flight)
  bool replaying_ = false;  ///< the hub has more history for this watcher (pulled by PumpReplay)
  bool pulling_ = false;    ///< a PumpReplay is asking the hub right now
  uint64_t subscription_ = 0;
};

}  // namespace

grpc::ServerBidiReactor<pb::RenewRequest, pb::RenewResponse>* LockServiceImpl::KeepAlive(
    grpc::CallbackServerContext* ctx) {
  return new KeepAliveReactor(*this, ctx);
}

grpc::ServerWriteReactor<pb::WatchResponse>* LockServiceImpl::Watch(
    grpc::CallbackServerContext* call, const pb::WatchRequest* req) {
  // Once decided the id never changes, so the reactor's copy stays true.
  const std::string cluster_id = ctx_.cluster_id();
  auto* reactor = new WatchReactor(*this, call, ctx_.watch, cluster_id);
  if (auto refused = Refuse(*req)) {
    reactor->Finish(*refused);
    return reactor;
  }
  if (cluster_id.empty()) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "cluster id not decided yet; retry"));
    return reactor;
  }
  // A prefix needs read on a prefix of it: every name it can show must be readable.
  const std::string& target =
      req->target_case() == pb::WatchRequest::kName ? req->name() : req->prefix();
  AccessControl::Who who;
  if (auto denied = Authorize(*call, {Permission::kRead, target, false, "Watch"}, &who)) {
    reactor->Finish(*denied);
    return reactor;
  }
  reactor->Guard(target, who.policy);
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

}  // namespace lockd::server
