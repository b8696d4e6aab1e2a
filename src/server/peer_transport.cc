#include "server/peer_transport.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <random>
#include <string_view>

#include "base/thread_name.h"
#include "raft/wire.h"
#include "server/member_table.h"
#include "storage/crc32c.h"

namespace lockd::server {

using lockd::peer::v1::Frame;
using lockd::peer::v1::Hello;
using lockd::peer::v1::PeerService;
using lockd::peer::v1::Reply;
using lockd::peer::v1::SnapshotChunk;
using lockd::peer::v1::SnapshotReply;

namespace {
/// In the refusal of a joiner not added yet: the normal first step, which both ends log at info
/// (the refusal travels as text: the opener knows it by this phrase).
constexpr std::string_view kWaitsToBeAdded = "it waits to be added";

bool SaysWaitsToBeAdded(const std::string& refusal) {
  return refusal.find(kWaitsToBeAdded) != std::string::npos;
}
}  // namespace

// ------------------------------------------------------------------------------------------------
// Outbound: one peer's queue, its sender thread and, while connected, a reader thread.

class PeerTransport::Outbound {
 public:
  Outbound(const PeerTransport& owner, uint64_t id, std::string addr)
      : owner_(owner),
        id_(id),
        addr_(std::move(addr)),
        stub_(PeerService::NewStub(grpc::CreateChannel(addr_, owner.CredentialsTo(id)))),
        jitter_(static_cast<uint32_t>(owner.self_.node_id * 1'000'003 + id)) {
    sender_ = std::thread([this] {
      NameThisThread("peer-send-" + std::to_string(id_));
      SenderLoop();
    });
  }
  ~Outbound() { Stop(); }

  const std::string& addr() const { return addr_; }

  bool Enqueue(std::string msg) {
    std::lock_guard lock(mu_);
    // A node marked replaced or removed takes no part: nothing it produces from then on leaves.
    // What it queued before still goes out (checked here, not at the write): the last thing a
    // leader that committed its own removal queues is that commit, and the members that stay
    // must get it (docs/raft.md, "Telling followers the commit index").
    if (stopping_ || retiring_ || owner_.identity_.replaced() ||
        (reachable_ && (queue_.size() >= owner_.options_.max_queued_messages ||
                        queued_bytes_ + msg.size() > owner_.options_.max_queued_bytes))) {
      ++stats_.dropped;
      return false;
    }
    queued_bytes_ += msg.size();
    queue_.push_back(std::move(msg));
    if (!reachable_) TrimForUnreachable();
    cv_.notify_all();
    return true;
  }

  void Stop() {
    Cut();
    if (sender_.joinable()) sender_.join();
  }

  /// Stop() without the join: the stream is cancelled and the sender ends soon (any thread).
  void Cut() {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (active_ctx_) active_ctx_->TryCancel();
    cv_.notify_all();
  }

  /// The peer left the configuration. What is already queued still goes out on the live stream
  /// (the announcement that commits its removal is among it: the leader queues it just before it
  /// applies the removal), nothing new is taken, and the sender ends once the queue is empty,
  /// the stream breaks, or Stop()/Cut().
  void Retire() {
    std::lock_guard lock(mu_);
    retiring_ = true;
    cv_.notify_all();
  }

  /// Waits until the sender ended or `deadline` passed.
  void AwaitSenderEnd(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline, [this] { return sender_ended_ || stopping_; });
  }

  PeerStats Stats() const {
    std::lock_guard lock(mu_);
    PeerStats s = stats_;
    s.queued = queue_.size();
    s.queued_bytes = queued_bytes_;
    return s;
  }

 private:
  void SenderLoop() {
    SendUntilStopped();
    std::lock_guard lock(mu_);
    sender_ended_ = true;
    cv_.notify_all();
  }

  void SendUntilStopped() {
    int backoff_ms = owner_.options_.backoff_initial_ms;
    while (true) {
      const bool was_accepted = RunStream();
      if (was_accepted && owner_.options_.on_peer_lost) {
        bool ending;
        {
          std::lock_guard lock(mu_);
          ending = stopping_ || retiring_;
        }
        if (!ending) owner_.options_.on_peer_lost(id_);
      }
      std::unique_lock lock(mu_);
      if (stopping_ || retiring_) return;  // a retired peer's sender does not reconnect
      // Unreachable until a stream is accepted again: only the newest few messages wait.
      reachable_ = false;
      TrimForUnreachable();
      ++stats_.reconnects;
      backoff_ms = was_accepted ? owner_.options_.backoff_initial_ms
                                : std::min(backoff_ms * 2, owner_.options_.backoff_max_ms);
      // Full jitter on the upper half, so peers that lost a node together do not retry in step.
      const int wait = backoff_ms / 2 + static_cast<int>(jitter_() % (backoff_ms / 2 + 1));
      cv_.wait_for(lock, std::chrono::milliseconds(wait),
                   [this] { return stopping_ || retiring_; });
      if (stopping_ || retiring_) return;
    }
  }

  /// One connection's life: Hello, then batches until the stream breaks or Stop(). Returns whether
  /// the peer accepted the Hello (a rejected or unreachable peer backs off further).
  bool RunStream() {
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(mu_);
      // A retired sender not connected yet still connects, once: what it holds for the removed
      // peer is its removal's commit. It never reconnects (SendUntilStopped); the grace bounds it.
      if (stopping_) return false;
      active_ctx_ = &ctx;
    }
    auto stream = stub_->Stream(&ctx);
    bool accepted = Handshake(*stream);
    std::thread reader;
    bool broken = !accepted;
    if (accepted) {
      {
        std::lock_guard lock(mu_);
        stats_.connected = true;
        reachable_ = true;
        stats_.last_error.clear();
      }
      reader = std::thread([&] {
        NameThisThread("peer-read-" + std::to_string(id_));
        Reply reply;
        while (stream->Read(&reply)) {
          if (!reply.error().empty()) SetError("peer closed the stream: " + reply.error());
        }
        std::lock_guard lock(mu_);
        broken = true;
        cv_.notify_all();
      });
      SendBatches(*stream, broken);
      std::unique_lock lock(mu_);
      if (retiring_ && !stopping_ && !broken) {
        // Retired and drained. A write that returned has only reached the wire: a cancel now
        // could still cost the peer the last frames (the commit of its removal is the last).
        // Half-close, and let the peer end the stream once it read everything; the reaper's
        // deadline (Cut) bounds the wait.
        lock.unlock();
        stream->WritesDone();
        lock.lock();
        cv_.wait(lock, [&] { return stopping_ || broken; });
      }
    }
    ctx.TryCancel();
    if (reader.joinable()) reader.join();
    grpc::Status status = stream->Finish();
    std::lock_guard lock(mu_);
    active_ctx_ = nullptr;
    stats_.connected = false;
    if (!status.ok() && stats_.last_error.empty() && !stopping_) {
      stats_.last_error = "stream to " + addr_ + " ended: " + status.error_message();
    }
    return accepted;
  }

  bool Handshake(grpc::ClientReaderWriter<Frame, Reply>& stream) {
    if (const std::string replaced = owner_.identity_.replaced_reason(); !replaced.empty()) {
      MarkUnreachable("this node takes no part in the cluster: " + replaced);
      return false;
    }
    Frame frame;
    *frame.mutable_hello() = owner_.MakeHello(id_);
    Reply reply;
    if (!stream.Write(frame) || !stream.Read(&reply)) {
      MarkUnreachable("cannot reach peer " + std::to_string(id_) + " at " + addr_);
      return false;
    }
    if (!reply.accepted()) {
      MarkUnreachable("peer " + std::to_string(id_) + " refused us: " + reply.error());
      owner_.identity_.NotePeerRefusal(id_, reply.error());
      if (reply.removed()) {
        // It applied our removal, which this node may never learn from the log (the leader
        // stops replicating to a member once it removed it).
        owner_.identity_.MarkRemoved("peer " + std::to_string(id_) + " says: " + reply.error());
      }
      if (reply.replaced()) {
        owner_.identity_.MarkReplaced("peer " + std::to_string(id_) +
                                      " refused us: " + reply.error());
      }
      // Retried every few seconds: the same refusal is logged again only every 30 s. A joiner
      // is refused until it is added, as its start-up line says: that one is no error.
      const auto now = std::chrono::steady_clock::now();
      if (reply.error() != last_refusal_ || now - last_refusal_at_ >= std::chrono::seconds(30)) {
        last_refusal_ = reply.error();
        last_refusal_at_ = now;
        const bool waiting = owner_.identity_.joining() && SaysWaitsToBeAdded(reply.error());
        spdlog::log(waiting ? spdlog::level::info : spdlog::level::err,
                    "peer {} at {} refused our hello: {}", id_, addr_, reply.error());
      }
      return false;
    }
    owner_.identity_.NotePeerRefusal(id_, {});
    // The check is two-way: the peer accepted us, now we check who it is.
    std::string why = owner_.CheckCluster(reply.cluster_id(), owner_.identity_.bootstrap_id());
    if (why.empty()) why = owner_.MergeRemoved(reply.removed_peers());
    if (why.empty()) {
      why = owner_.AcceptPeer(id_, reply.cluster_id(), reply.incarnation(), true,
                              reply.membership_index());
    }
    if (!why.empty()) {
      MarkUnreachable("we refuse peer " + std::to_string(id_) + ": " + why);
      spdlog::error("refusing peer {} at {}: {}", id_, addr_, why);
      return false;
    }
    return true;
  }

  void SendBatches(grpc::ClientReaderWriter<Frame, Reply>& stream, bool& broken) {
    while (true) {
      Frame frame;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || broken || retiring_ || !queue_.empty(); });
        if (stopping_ || broken || queue_.empty()) return;  // empty: retired and drained
        size_t bytes = 0;
        auto* batch = frame.mutable_batch();
        while (!queue_.empty() &&
               (batch->messages_size() == 0 ||
                bytes + queue_.front().size() <= owner_.options_.max_batch_bytes)) {
          bytes += queue_.front().size();
          queued_bytes_ -= queue_.front().size();
          batch->add_messages(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      const int n = frame.batch().messages_size();
      if (!stream.Write(frame)) {
        // The batch is lost with the stream; Raft retransmits what matters.
        std::lock_guard lock(mu_);
        stats_.dropped += n;
        return;
      }
      std::lock_guard lock(mu_);
      stats_.sent += n;
    }
  }

  /// Drops the oldest messages beyond the unreachable bounds (mu_ held).
  void TrimForUnreachable() {
    const auto& o = owner_.options_;
    const size_t most = std::min(o.max_queued_while_unreachable, o.max_queued_messages);
    while (!queue_.empty() &&
           (queue_.size() > most || queued_bytes_ > o.max_queued_bytes_while_unreachable)) {
      queued_bytes_ -= queue_.front().size();
      queue_.pop_front();
      ++stats_.dropped;
    }
  }

  /// The error and the unreachable state together, so whoever sees the one sees the other.
  void MarkUnreachable(std::string e) {
    std::lock_guard lock(mu_);
    stats_.last_error = std::move(e);
    reachable_ = false;
    TrimForUnreachable();
  }

  void SetError(std::string e) {
    std::lock_guard lock(mu_);
    stats_.last_error = std::move(e);
  }

  std::string last_refusal_;  ///< the refusal last logged, and when (sender thread only)
  std::chrono::steady_clock::time_point last_refusal_at_;

  const PeerTransport& owner_;
  const uint64_t id_;
  const std::string addr_;
  const std::unique_ptr<PeerService::Stub> stub_;

  mutable std::mutex mu_;  ///< guards everything below
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  /// False from a failed or broken stream until the next accepted one (see the file comment).
  bool reachable_ = true;
  bool stopping_ = false;
  bool retiring_ = false;                      ///< see Retire()
  bool sender_ended_ = false;                  ///< the sender thread left its loop
  grpc::ClientContext* active_ctx_ = nullptr;  ///< the live stream's context, to cancel on Stop
  PeerStats stats_;
  std::minstd_rand jitter_;
  std::thread sender_;
};

// ------------------------------------------------------------------------------------------------
// SnapshotSend: one snapshot transfer to one peer, on its own thread and stream.

class PeerTransport::SnapshotSend {
 public:
  SnapshotSend(const PeerTransport& owner, uint64_t to, std::string addr, std::string message,
               std::shared_ptr<const std::string> payload, std::function<void(bool)> done)
      : owner_(owner),
        to_(to),
        addr_(std::move(addr)),
        message_(std::move(message)),
        payload_(std::move(payload)),
        done_(std::move(done)) {
    thread_ = std::thread([this] {
      NameThisThread("snap-send-" + std::to_string(to_));
      Run();
    });
  }
  ~SnapshotSend() {
    Cancel();
    if (thread_.joinable()) thread_.join();
  }

  void Cancel() {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    ctx_.TryCancel();
  }

 private:
  void Run() {
    std::string error = Transfer();
    const bool ok = error.empty();
    if (ok) {
      spdlog::info("sent a snapshot of {} bytes to node {}", payload_->size(), to_);
    } else {
      spdlog::warn("snapshot transfer to node {} at {} failed: {}", to_, addr_, error);
    }
    done_(ok);
  }

  /// The whole transfer; returns why it failed, or empty.
  std::string Transfer() {
    {
      std::lock_guard lock(mu_);
      if (cancelled_) return "cancelled";
      ctx_.set_deadline(std::chrono::system_clock::now() + owner_.options_.snapshot_timeout);
    }
    auto stub = PeerService::NewStub(grpc::CreateChannel(addr_, owner_.CredentialsTo(to_)));
    auto stream = stub->InstallSnapshot(&ctx_);
    const std::string& payload = *payload_;
    SnapshotChunk first;
    *first.mutable_hello() = owner_.MakeHello(to_);
    first.set_message(message_);
    first.set_total_bytes(payload.size());
    first.set_crc32c(storage::Crc32c(payload));
    first.set_members(EncodeMemberTable(owner_.identity_.members()));
    SnapshotReply reply;
    if (!stream->Write(first) || !stream->Read(&reply)) return Finish(*stream, "no answer");
    if (!reply.error().empty()) return Finish(*stream, "refused: " + reply.error());
    if (std::string why = owner_.AcceptPeer(to_, {}, reply.incarnation(), false); !why.empty()) {
      spdlog::error("refusing to send a snapshot to node {}: {}", to_, why);
      stream->WritesDone();  // the receiver stops waiting for chunks
      return Finish(*stream, "refused the receiver: " + why);
    }
    uint64_t offset = reply.resume_offset();
    if (offset > payload.size()) return Finish(*stream, "resume offset past the payload");
    if (offset > 0) spdlog::info("snapshot to node {} resumes at byte {}", to_, offset);
    const size_t chunk = std::max<size_t>(1, owner_.options_.snapshot_chunk_bytes);
    while (offset < payload.size()) {
      SnapshotChunk c;
      c.set_offset(offset);
      const size_t n = std::min<size_t>(chunk, payload.size() - offset);
      c.set_data(payload.substr(offset, n));
      if (!stream->Write(c))
        return Finish(*stream, "stream broke at byte " + std::to_string(offset));
      offset += n;
    }
    stream->WritesDone();
    if (!stream->Read(&reply)) return Finish(*stream, "no confirmation");
    if (!reply.error().empty()) return Finish(*stream, reply.error());
    if (!reply.done()) return Finish(*stream, "not confirmed");
    std::string rest = Finish(*stream, "");
    return rest;
  }

  static std::string Finish(grpc::ClientReaderWriter<SnapshotChunk, SnapshotReply>& stream,
                            std::string error) {
    grpc::Status s = stream.Finish();
    if (!error.empty()) {
      if (!s.ok()) error += " (" + s.error_message() + ")";
      return error;
    }
    return s.ok() ? std::string() : "stream ended: " + s.error_message();
  }

  const PeerTransport& owner_;
  const uint64_t to_;
  const std::string addr_;
  const std::string message_;
  const std::shared_ptr<const std::string> payload_;
  const std::function<void(bool)> done_;
  std::mutex mu_;
  bool cancelled_ = false;
  grpc::ClientContext ctx_;
  std::thread thread_;
};

// ------------------------------------------------------------------------------------------------
// Inbound.

class PeerTransport::InboundService final : public PeerService::Service {
 public:
  explicit InboundService(PeerTransport& owner) : owner_(owner) {}

  grpc::Status Stream(grpc::ServerContext* ctx,
                      grpc::ServerReaderWriter<Reply, Frame>* stream) override {
    Frame frame;
    if (!stream->Read(&frame)) return grpc::Status::OK;
    if (!frame.has_hello())
      return Reject(ctx, stream, "the first frame of a peer stream must be a Hello");
    if (std::string why = owner_.CheckClaim(*ctx, frame.hello().from()); !why.empty()) {
      return Reject(ctx, stream, why);
    }
    if (const std::string replaced = owner_.identity_.replaced_reason(); !replaced.empty()) {
      return Reject(ctx, stream, "this node takes no part in the cluster: " + replaced);
    }
    const std::string why = owner_.CheckHello(frame.hello());
    if (!why.empty()) {
      if (owner_.identity_.WasRemoved(frame.hello().from(), frame.hello().incarnation())) {
        return RejectRemoved(ctx, stream, frame.hello().from());
      }
      bool log = owner_.RefusalWorthLogging(frame.hello().from(), why);
      if (log && SaysWaitsToBeAdded(why)) {
        spdlog::info("peer stream from {}: {}", ctx->peer(), why);  // the normal first step
        log = false;
      }
      return Reject(ctx, stream, why, owner_.RefusalMeansReplaced(frame.hello()), log);
    }
    const uint64_t from = frame.hello().from();
    const std::string incarnation = frame.hello().incarnation();
    Reply ok;
    ok.set_accepted(true);
    ok.set_cluster_id(owner_.identity_.cluster_id());
    ok.set_incarnation(owner_.identity_.incarnation());
    ok.set_membership_index(owner_.identity_.membership_index());
    for (const RemovedMember& r : owner_.identity_.removed_members()) {
      auto* p = ok.add_removed_peers();
      p->set_id(r.id);
      p->set_incarnation(r.incarnation);
    }
    if (!stream->Write(ok)) return grpc::Status::OK;
    owner_.LearnPeerAddr(from, frame.hello().peer_addr(), frame.hello().membership_index());

    while (stream->Read(&frame)) {
      if (!frame.has_batch()) {
        return Reject(ctx, stream,
                      "peer " + std::to_string(from) + " sent a frame that is not a batch");
      }
      if (owner_.identity_.replaced()) {
        return Reject(
            ctx, stream,
            "this node takes no part in the cluster: " + owner_.identity_.replaced_reason());
      }
      if (owner_.identity_.WasRemoved(from, incarnation)) return RejectRemoved(ctx, stream, from);
      auto* messages = frame.mutable_batch()->mutable_messages();
      std::vector<std::string> batch;
      batch.reserve(messages->size());
      for (auto& m : *messages) batch.push_back(std::move(m));
      owner_.handler_(from, std::move(batch));
    }
    return grpc::Status::OK;
  }

  grpc::Status InstallSnapshot(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<SnapshotReply, SnapshotChunk>* stream) override {
    SnapshotChunk chunk;
    if (!stream->Read(&chunk)) return grpc::Status::OK;
    if (!chunk.has_hello()) {
      return Refuse(ctx, stream, "the first chunk of a snapshot must carry a Hello");
    }
    if (std::string why = owner_.CheckClaim(*ctx, chunk.hello().from()); !why.empty()) {
      return Refuse(ctx, stream, why);
    }
    if (owner_.identity_.replaced()) {
      return Refuse(
          ctx, stream,
          "this node takes no part in the cluster: " + owner_.identity_.replaced_reason());
    }
    if (std::string why = owner_.CheckHello(chunk.hello()); !why.empty()) {
      return Refuse(ctx, stream, why);
    }
    const uint64_t from = chunk.hello().from();
    const std::string message = chunk.message();
    const std::string members = chunk.members();
    auto m = raft::DecodeMessage(message);
    if (!m.ok()) return Refuse(ctx, stream, m.status().message());
    if (m->type != raft::MessageType::kSnapshot || m->from.value() != from ||
        m->to.value() != owner_.self_.node_id) {
      return Refuse(ctx, stream, "the first chunk must carry a kSnapshot from its sender to us");
    }
    if (!owner_.snapshot_handler_) return Refuse(ctx, stream, "this node takes no snapshots");
    const SnapshotTransferId id{m->snapshot.index.value(), m->snapshot.term.value(),
                                chunk.total_bytes(), chunk.crc32c()};
    SnapshotAssembler& assembler = *owner_.assembler_;
    auto resume = assembler.Begin(from, id);
    if (!resume.ok()) return Refuse(ctx, stream, resume.status().message());
    SnapshotReply reply;
    reply.set_resume_offset(*resume);
    reply.set_incarnation(owner_.identity_.incarnation());
    if (!stream->Write(reply)) return grpc::Status::OK;
    bool whole = *resume == id.total_bytes;
    if (whole) {
      // Everything was held already (a transfer broken just before its confirmation): the
      // checksum still has to hold.
      auto r = assembler.Add(from, *resume, {});
      if (!r.ok()) return Refuse(ctx, stream, r.status().message());
    }
    while (!whole && stream->Read(&chunk)) {
      auto r = assembler.Add(from, chunk.offset(), chunk.data());
      if (!r.ok()) return Refuse(ctx, stream, r.status().message());
      whole = *r;
    }
    // A stream that broke early keeps its bytes for the sender's next attempt.
    if (!whole) return grpc::Status::OK;
    std::string payload = assembler.Take(from);
    spdlog::info("received a snapshot of {} bytes at index {} from node {}", payload.size(),
                 id.index, from);
    if (!members.empty()) owner_.identity_.NoteSnapshotMembers(id.index, members);
    auto outcome = std::make_shared<std::promise<Status>>();
    std::future<Status> installed = outcome->get_future();
    owner_.snapshot_handler_(from, message, std::move(payload),
                             [outcome](Status s) { outcome->set_value(s); });
    if (installed.wait_for(owner_.options_.snapshot_timeout) != std::future_status::ready) {
      return Refuse(ctx, stream, "the install did not finish in time");
    }
    const Status s = installed.get();
    if (!s.ok()) return Refuse(ctx, stream, s.ToString());
    SnapshotReply done;
    done.set_done(true);
    stream->Write(done);
    return grpc::Status::OK;
  }

 private:
  static grpc::Status Refuse(grpc::ServerContext* ctx,
                             grpc::ServerReaderWriter<SnapshotReply, SnapshotChunk>* stream,
                             const std::string& why) {
    spdlog::warn("refused a snapshot from {}: {}", ctx->peer(), why);
    SnapshotReply reply;
    reply.set_error(why);
    stream->Write(reply);
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why);
  }

  static grpc::Status RejectRemoved(grpc::ServerContext* ctx,
                                    grpc::ServerReaderWriter<Reply, Frame>* stream, uint64_t from) {
    const std::string why = "node " + std::to_string(from) +
                            " was removed from the cluster; it must not take part again "
                            "(docs/operations.md)";
    spdlog::warn("rejected peer stream from {}: {}", ctx->peer(), why);
    Reply reply;
    reply.set_error(why);
    reply.set_removed(true);
    stream->Write(reply);
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why);
  }

  static grpc::Status Reject(grpc::ServerContext* ctx,
                             grpc::ServerReaderWriter<Reply, Frame>* stream, const std::string& why,
                             bool replaced = false, bool log = true) {
    if (log) spdlog::error("rejected peer stream from {}: {}", ctx->peer(), why);
    Reply reply;
    reply.set_error(why);
    reply.set_replaced(replaced);
    stream->Write(reply);
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why);
  }

  PeerTransport& owner_;
};

// ------------------------------------------------------------------------------------------------

PeerTransport::PeerTransport(PeerIdentity self, IdentityStore& identity, Handler handler,
                             MembershipCheck is_member, PeerTransportOptions options)
    : self_(std::move(self)),
      identity_(identity),
      handler_(std::move(handler)),
      is_member_(std::move(is_member)),
      options_(options),
      inbound_(std::make_unique<InboundService>(*this)),
      assembler_(std::make_unique<SnapshotAssembler>(options.max_snapshot_bytes)) {}

PeerTransport::~PeerTransport() {
  Stop();
}

grpc::Service* PeerTransport::service() {
  return inbound_.get();
}

Hello PeerTransport::MakeHello(uint64_t to) const {
  Hello hello;
  hello.set_cluster_id(identity_.cluster_id());
  hello.set_bootstrap_id(identity_.bootstrap_id());
  hello.set_incarnation(identity_.incarnation());
  hello.set_from(self_.node_id);
  hello.set_to(to);
  hello.set_format_version(self_.format_version);
  hello.set_election_min_ms(self_.election_min_ms);
  hello.set_tick_ms(self_.tick_ms);
  hello.set_drift_ppm(self_.drift_ppm);
  hello.set_limits(self_.limits);
  hello.set_membership_index(identity_.membership_index());
  for (const RemovedMember& r : identity_.removed_members()) {
    auto* p = hello.add_removed();
    p->set_id(r.id);
    p->set_incarnation(r.incarnation);
  }
  // The address the cluster knows this node by (not --peer-addr, which may be a wildcard to
  // listen on); none while this node is not in its own table yet (joining).
  for (const auto& m : identity_.members()) {
    if (m.id == self_.node_id) hello.set_peer_addr(m.peer_addr);
  }
  return hello;
}

std::string PeerTransport::CheckClaim(const grpc::ServerContext& ctx, uint64_t from) const {
  if (!options_.check_claim) return {};
  return options_.check_claim(ctx, from);  // the refusal logs it
}

std::shared_ptr<grpc::ChannelCredentials> PeerTransport::CredentialsTo(uint64_t id) const {
  return options_.credentials_to ? options_.credentials_to(id) : grpc::InsecureChannelCredentials();
}

std::string PeerTransport::CheckHello(const Hello& h) const {
  if (std::string why = CheckCluster(h.cluster_id(), h.bootstrap_id()); !why.empty()) return why;
  if (h.to() != self_.node_id) {
    return "addressed to node " + std::to_string(h.to()) + " but this is node " +
           std::to_string(self_.node_id);
  }
  if (h.from() == 0 || h.from() == self_.node_id) {
    return "node " + std::to_string(h.from()) + " is not a member of this cluster";
  }
  if (!is_member_(h.from(), h.membership_index())) {
    std::string why = "node " + std::to_string(h.from()) +
                      " is not a member of this cluster (this node's member table, of membership "
                      "entry " +
                      std::to_string(identity_.membership_index()) +
                      ", does not name it, and it applied no later one)";
    if (h.membership_index() == 0 && h.peer_addr().empty()) {
      // A node started with --join that has not been added yet (its own table does not name it,
      // so it gives no address; a data dir started with bootstrap flags does): the normal first
      // step, also of a replacement under a removed id.
      return "node " + std::to_string(h.from()) +
             " is not a member of this cluster yet: " + std::string(kWaitsToBeAdded) +
             " (lockctl member add " + std::to_string(h.from()) + " --peer ... --client ...)";
    }
    if (identity_.WasRemovedId(h.from())) {
      why +=
          ": an id that was removed. A replacement started with --join is admitted once it is "
          "added (lockctl member add); a removed member cannot come back on its own (a wiped "
          "data dir started with bootstrap flags is refused): start it with an empty data dir "
          "and --join, then lockctl member add it (docs/operations.md, \"Replace a member\")";
    } else {
      why += ": add it first (lockctl member add), and start a new node with --join";
    }
    return why;
  }
  // Admitted, of this cluster: what it knows removed is fact (applied from committed entries),
  // taken before its own incarnation is judged (it may report the removal of the data dir this
  // node knows under its id). Not before: a refused Hello changes nothing, the file included.
  if (std::string why = MergeRemoved(h.removed()); !why.empty()) return why;
  if (identity_.WasRemoved(h.from(), h.incarnation())) {
    return "node " + std::to_string(h.from()) + " was removed from the cluster";
  }
  if (h.format_version() > self_.format_version) {
    return "format version " + std::to_string(h.format_version()) + " is newer than this node's " +
           std::to_string(self_.format_version) + "; upgrade it";
  }
  if (h.election_min_ms() != self_.election_min_ms || h.tick_ms() != self_.tick_ms ||
      h.drift_ppm() != self_.drift_ppm) {
    return "timing differs (E_min " + std::to_string(h.election_min_ms()) + " ms, tick " +
           std::to_string(h.tick_ms()) + " ms, drift " + std::to_string(h.drift_ppm()) +
           " ppm; here " + std::to_string(self_.election_min_ms) + ", " +
           std::to_string(self_.tick_ms) + ", " + std::to_string(self_.drift_ppm) +
           "): the leader lease requires equal values on every node";
  }
  if (h.limits() != self_.limits) {
    return "limits or access control differ (node " + std::to_string(h.from()) + ": " + h.limits() +
           "; here: " + self_.limits +
           "): members applying different limits could diverge, and every member needs the same "
           "--access-file setting (a member without one would serve anyone while it leads)";
  }
  // Last: it records what it accepts.
  return AcceptPeer(h.from(), h.cluster_id(), h.incarnation(), false, h.membership_index());
}

bool PeerTransport::RefusalMeansReplaced(const Hello& h) const {
  // A peer ahead of this node may be a replacement under the id, added after a removal this node
  // has not applied yet: told "replaced", it would take no part until restarted (third review).
  // It is refused for now and admitted once this node has caught up. An honest wiped data dir
  // has applied nothing, so it is never ahead.
  return identity_.KnowsAnotherIncarnation(h.from(), h.incarnation()) &&
         h.membership_index() <= identity_.membership_index();
}

bool PeerTransport::RefusalWorthLogging(uint64_t from, const std::string& why) const {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(refusals_mu_);
  auto it = refusals_logged_.find(from);
  if (it != refusals_logged_.end() && it->second.first == why &&
      now - it->second.second < std::chrono::seconds(30)) {
    return false;
  }
  if (refusals_logged_.size() >= 64) refusals_logged_.clear();  // bounded: ids are the caller's
  refusals_logged_[from] = {why, now};
  return true;
}

std::string PeerTransport::CheckCluster(const std::string& cluster_id,
                                        const std::string& bootstrap_id) const {
  const std::string ours = identity_.cluster_id();
  if (!ours.empty() && !cluster_id.empty()) {
    if (cluster_id == ours) return {};
    return "cluster id " + cluster_id + " is not this cluster's (" + ours + ")";
  }
  if (bootstrap_id != identity_.bootstrap_id()) {
    return "bootstrap id '" + bootstrap_id + "' is not this node's (" + identity_.bootstrap_id() +
           ") and the cluster id is not decided on both sides: another cluster, or another "
           "--cluster-token / --initial-cluster (a restored member: another backup file or "
           "--token-floor; restore every member from the same file with the same floor)";
  }
  return {};
}

std::string PeerTransport::AcceptPeer(uint64_t peer, const std::string& cluster_id,
                                      const std::string& incarnation, bool adopt,
                                      uint64_t peer_membership_index) const {
  if (incarnation.empty()) {
    // A build before incarnations: nothing to check it by (a node of this build always has one).
    spdlog::warn("node {} presents no data dir incarnation (an older lockd); upgrade it", peer);
  } else if (Status s = identity_.CheckPeer(peer, incarnation, peer_membership_index); !s.ok()) {
    return s.message();
  }
  if (!adopt || cluster_id.empty()) return {};
  auto decided = identity_.Decide(cluster_id);
  if (!decided.ok()) return "cannot record the cluster id: " + decided.status().ToString();
  if (*decided) {
    spdlog::info("node {}: took cluster id {} from node {}", self_.node_id, cluster_id, peer);
  }
  return {};
}

std::string PeerTransport::MergeRemoved(
    const google::protobuf::RepeatedPtrField<lockd::peer::v1::RemovedPeer>& removed) const {
  if (removed.empty()) return {};
  if (static_cast<size_t>(removed.size()) > kMaxRemovedMembers) {
    return "a removed list of " + std::to_string(removed.size()) + " members (at most " +
           std::to_string(kMaxRemovedMembers) + ")";
  }
  std::vector<RemovedMember> list;
  list.reserve(static_cast<size_t>(removed.size()));
  for (const auto& r : removed) list.push_back({r.id(), r.incarnation()});
  if (Status s = identity_.NoteRemoved(list); !s.ok()) {
    return "cannot take its removed members: " + s.ToString();
  }
  return {};
}

void PeerTransport::LearnPeerAddr(uint64_t id, const std::string& peer_addr,
                                  uint64_t membership_index) {
  if (peer_addr.empty() || !ValidMemberAddr(peer_addr).ok()) return;
  std::lock_guard lock(mu_);
  if (stopped_ || outbound_.count(id)) return;  // the member table's address wins
  // This node may have applied as far as the peer had since it was admitted: the table of that
  // entry decides. Checked under mu_, which ForgetLearnedPeers takes after the table is
  // recorded, so no stream learned here escapes it.
  if (membership_index <= identity_.membership_index()) return;
  if (learned_.size() >= kMaxOutsidePeers) {
    spdlog::warn(
        "node {}: not dialing node {} at {}: {} peers outside the member table dialed "
        "already",
        self_.node_id, id, peer_addr, learned_.size());
    return;
  }
  spdlog::info("node {}: dialing node {} at {}, the address it gave (not in our table yet)",
               self_.node_id, id, peer_addr);
  outbound_[id] = std::make_unique<Outbound>(*this, id, peer_addr);
  learned_[id] = membership_index;
}

void PeerTransport::ForgetLearnedPeers(const std::vector<MemberSpec>& table, uint64_t index) {
  std::vector<std::unique_ptr<Outbound>> ended;
  {
    std::lock_guard lock(mu_);
    for (auto it = learned_.begin(); it != learned_.end();) {
      const uint64_t id = it->first;
      const bool named =
          std::any_of(table.begin(), table.end(), [id](const MemberSpec& m) { return m.id == id; });
      if (named) {
        it = learned_.erase(it);  // a table peer now (SetPeer keeps or re-targets its stream)
      } else if (it->second <= index) {
        // Applied as far as the peer had when it said hello, and no table names it: it left.
        spdlog::info(
            "node {}: closing the stream to node {}: the member table of entry {} does "
            "not name it",
            self_.node_id, id, index);
        if (auto o = outbound_.find(id); o != outbound_.end()) {
          ended.push_back(std::move(o->second));
          outbound_.erase(o);
        }
        it = learned_.erase(it);
      } else {
        ++it;
      }
    }
  }
  ended.clear();  // joins outside the map lock
}

void PeerTransport::SetPeer(uint64_t id, const std::string& peer_addr) {
  std::unique_ptr<Outbound> old;
  {
    std::lock_guard lock(mu_);
    learned_.erase(id);  // a table peer from now on
    auto it = outbound_.find(id);
    if (it != outbound_.end()) {
      if (it->second->addr() == peer_addr) return;
      old = std::move(it->second);
    }
    outbound_[id] = std::make_unique<Outbound>(*this, id, peer_addr);
  }
  old.reset();  // joins outside the map lock
}

void PeerTransport::RemovePeer(uint64_t id) {
  std::unique_ptr<SnapshotSend> send;
  std::vector<Retiree> finished;
  {
    std::lock_guard lock(mu_);
    if (auto s = snapshot_sends_.find(id); s != snapshot_sends_.end()) {
      send = std::move(s->second);
      snapshot_sends_.erase(s);
    }
    // Earlier retirements that are over: their reapers are joined below, outside the lock.
    for (auto it = retiring_.begin(); it != retiring_.end();) {
      if (it->done->load()) {
        finished.push_back(std::move(*it));
        it = retiring_.erase(it);
      } else {
        ++it;
      }
    }
    learned_.erase(id);
    auto it = outbound_.find(id);
    if (it != outbound_.end() && !stopped_) {
      // Not cut at once: a removed member learns its removal from the commit announcement
      // queued just before the leader applied the entry and called this. Cut, it could miss it,
      // count itself a voter, serve stale reads and campaign until a peer refuses its Hello.
      std::shared_ptr<Outbound> leaving = std::move(it->second);
      outbound_.erase(it);
      leaving->Retire();
      auto done = std::make_shared<std::atomic<bool>>(false);
      const auto deadline = std::chrono::steady_clock::now() + options_.retire_grace;
      std::thread reaper([leaving, done, deadline] {
        leaving->AwaitSenderEnd(deadline);
        leaving->Stop();
        done->store(true);
      });
      retiring_.push_back(Retiree{std::move(leaving), std::move(done), std::move(reaper)});
    }
  }
  for (auto& r : finished) r.reaper.join();
}

bool PeerTransport::Send(uint64_t to, std::string encoded) {
  std::lock_guard lock(mu_);
  auto it = outbound_.find(to);
  return it != outbound_.end() && it->second->Enqueue(std::move(encoded));
}

void PeerTransport::SetSnapshotHandler(SnapshotHandler handler) {
  snapshot_handler_ = std::move(handler);
}

void PeerTransport::SendSnapshot(uint64_t to, std::string message,
                                 std::shared_ptr<const std::string> payload,
                                 std::function<void(bool ok)> done) {
  std::unique_ptr<SnapshotSend> old;
  {
    std::lock_guard lock(mu_);
    auto peer = outbound_.find(to);
    if (!stopped_ && peer != outbound_.end()) {
      auto& slot = snapshot_sends_[to];
      old = std::move(slot);
      slot = std::make_unique<SnapshotSend>(*this, to, peer->second->addr(), std::move(message),
                                            std::move(payload), std::move(done));
      done = nullptr;
    }
  }
  old.reset();  // cancels and joins outside the lock (its done(false) runs now)
  if (done) done(false);
}

PeerStats PeerTransport::Stats(uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = outbound_.find(id);
  return it == outbound_.end() ? PeerStats{} : it->second->Stats();
}

void PeerTransport::Stop() {
  std::map<uint64_t, std::unique_ptr<Outbound>> all;
  std::map<uint64_t, std::unique_ptr<SnapshotSend>> sends;
  std::vector<Retiree> retirees;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    all.swap(outbound_);
    sends.swap(snapshot_sends_);
    retirees.swap(retiring_);
  }
  sends.clear();  // cancels each transfer; their done(false) run here
  all.clear();
  for (auto& r : retirees) {
    r.outbound->Cut();
    r.reaper.join();
  }
}

}  // namespace lockd::server
