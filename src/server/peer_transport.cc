#include "server/peer_transport.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <random>

namespace lockd::server {

using lockd::peer::v1::Frame;
using lockd::peer::v1::Hello;
using lockd::peer::v1::PeerService;
using lockd::peer::v1::Reply;

// ------------------------------------------------------------------------------------------------
// Outbound: one peer's queue, its sender thread and, while connected, a reader thread.

class PeerTransport::Outbound {
 public:
  Outbound(const PeerTransport& owner, uint64_t id, std::string addr)
      : owner_(owner),
        id_(id),
        addr_(std::move(addr)),
        stub_(PeerService::NewStub(grpc::CreateChannel(addr_, grpc::InsecureChannelCredentials()))),
        jitter_(static_cast<uint32_t>(owner.self_.node_id * 1'000'003 + id)) {
    sender_ = std::thread([this] { SenderLoop(); });
  }
  ~Outbound() { Stop(); }

  const std::string& addr() const { return addr_; }

  bool Enqueue(std::string msg) {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= owner_.options_.max_queued_messages) {
      ++stats_.dropped;
      return false;
    }
    queue_.push_back(std::move(msg));
    cv_.notify_all();
    return true;
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_ && !sender_.joinable()) return;
      stopping_ = true;
      if (active_ctx_) active_ctx_->TryCancel();
      cv_.notify_all();
    }
    if (sender_.joinable()) sender_.join();
  }

  PeerStats Stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  void SenderLoop() {
    int backoff_ms = owner_.options_.backoff_initial_ms;
    while (true) {
      const bool was_accepted = RunStream();
      std::unique_lock lock(mu_);
      if (stopping_) return;
      ++stats_.reconnects;
      backoff_ms = was_accepted ? owner_.options_.backoff_initial_ms
                                : std::min(backoff_ms * 2, owner_.options_.backoff_max_ms);
      // Full jitter on the upper half, so peers that lost a node together do not retry in step.
      const int wait = backoff_ms / 2 + static_cast<int>(jitter_() % (backoff_ms / 2 + 1));
      cv_.wait_for(lock, std::chrono::milliseconds(wait), [this] { return stopping_; });
      if (stopping_) return;
    }
  }

  /// One connection's life: Hello, then batches until the stream breaks or Stop(). Returns whether
  /// the peer accepted the Hello (a rejected or unreachable peer backs off further).
  bool RunStream() {
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(mu_);
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
        stats_.last_error.clear();
      }
      reader = std::thread([&] {
        Reply reply;
        while (stream->Read(&reply)) {
          if (!reply.error().empty()) SetError("peer closed the stream: " + reply.error());
        }
        std::lock_guard lock(mu_);
        broken = true;
        cv_.notify_all();
      });
      SendBatches(*stream, broken);
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
    Frame frame;
    Hello* hello = frame.mutable_hello();
    const PeerIdentity& self = owner_.self_;
    hello->set_cluster_id(self.cluster_id);
    hello->set_from(self.node_id);
    hello->set_to(id_);
    hello->set_format_version(self.format_version);
    hello->set_election_min_ms(self.election_min_ms);
    hello->set_tick_ms(self.tick_ms);
    hello->set_drift_ppm(self.drift_ppm);
    Reply reply;
    if (!stream.Write(frame) || !stream.Read(&reply)) {
      SetError("cannot reach peer " + std::to_string(id_) + " at " + addr_);
      return false;
    }
    if (!reply.accepted()) {
      SetError("peer " + std::to_string(id_) + " refused us: " + reply.error());
      spdlog::warn("peer {} at {} refused our hello: {}", id_, addr_, reply.error());
      return false;
    }
    return true;
  }

  void SendBatches(grpc::ClientReaderWriter<Frame, Reply>& stream, bool& broken) {
    while (true) {
      Frame frame;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || broken || !queue_.empty(); });
        if (stopping_ || broken) return;
        size_t bytes = 0;
        auto* batch = frame.mutable_batch();
        while (!queue_.empty() &&
               (batch->messages_size() == 0 ||
                bytes + queue_.front().size() <= owner_.options_.max_batch_bytes)) {
          bytes += queue_.front().size();
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

  void SetError(std::string e) {
    std::lock_guard lock(mu_);
    stats_.last_error = std::move(e);
  }

  const PeerTransport& owner_;
  const uint64_t id_;
  const std::string addr_;
  const std::unique_ptr<PeerService::Stub> stub_;

  mutable std::mutex mu_;  ///< guards everything below
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool stopping_ = false;
  grpc::ClientContext* active_ctx_ = nullptr;  ///< the live stream's context, to cancel on Stop
  PeerStats stats_;
  std::minstd_rand jitter_;
  std::thread sender_;
};

// ------------------------------------------------------------------------------------------------
// Inbound.

class PeerTransport::InboundService final : public PeerService::Service {
 public:
  explicit InboundService(const PeerTransport& owner) : owner_(owner) {}

  grpc::Status Stream(grpc::ServerContext* ctx,
                      grpc::ServerReaderWriter<Reply, Frame>* stream) override {
    Frame frame;
    if (!stream->Read(&frame)) return grpc::Status::OK;
    if (!frame.has_hello())
      return Reject(ctx, stream, "the first frame of a peer stream must be a Hello");
    const std::string why = owner_.CheckHello(frame.hello());
    if (!why.empty()) return Reject(ctx, stream, why);
    const uint64_t from = frame.hello().from();
    Reply ok;
    ok.set_accepted(true);
    if (!stream->Write(ok)) return grpc::Status::OK;

    while (stream->Read(&frame)) {
      if (!frame.has_batch()) {
        return Reject(ctx, stream,
                      "peer " + std::to_string(from) + " sent a frame that is not a batch");
      }
      auto* messages = frame.mutable_batch()->mutable_messages();
      std::vector<std::string> batch;
      batch.reserve(messages->size());
      for (auto& m : *messages) batch.push_back(std::move(m));
      owner_.handler_(from, std::move(batch));
    }
    return grpc::Status::OK;
  }

 private:
  static grpc::Status Reject(grpc::ServerContext* ctx,
                             grpc::ServerReaderWriter<Reply, Frame>* stream,
                             const std::string& why) {
    spdlog::warn("rejected peer stream from {}: {}", ctx->peer(), why);
    Reply reply;
    reply.set_error(why);
    stream->Write(reply);
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why);
  }

  const PeerTransport& owner_;
};

// ------------------------------------------------------------------------------------------------

PeerTransport::PeerTransport(PeerIdentity self, Handler handler, MembershipCheck is_member,
                             PeerTransportOptions options)
    : self_(std::move(self)),
      handler_(std::move(handler)),
      is_member_(std::move(is_member)),
      options_(options),
      inbound_(std::make_unique<InboundService>(*this)) {}

PeerTransport::~PeerTransport() {
  Stop();
}

grpc::Service* PeerTransport::service() {
  return inbound_.get();
}

std::string PeerTransport::CheckHello(const Hello& h) const {
  if (h.cluster_id() != self_.cluster_id) {
    return "cluster id " + h.cluster_id() + " is not this cluster's (" + self_.cluster_id + ")";
  }
  if (h.to() != self_.node_id) {
    return "addressed to node " + std::to_string(h.to()) + " but this is node " +
           std::to_string(self_.node_id);
  }
  if (h.from() == 0 || h.from() == self_.node_id || !is_member_(h.from())) {
    return "node " + std::to_string(h.from()) + " is not a member of this cluster";
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
  return {};
}

void PeerTransport::SetPeer(uint64_t id, const std::string& peer_addr) {
  std::unique_ptr<Outbound> old;
  {
    std::lock_guard lock(mu_);
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
  std::unique_ptr<Outbound> old;
  {
    std::lock_guard lock(mu_);
    auto it = outbound_.find(id);
    if (it == outbound_.end()) return;
    old = std::move(it->second);
    outbound_.erase(it);
  }
}

bool PeerTransport::Send(uint64_t to, std::string encoded) {
  std::lock_guard lock(mu_);
  auto it = outbound_.find(to);
  return it != outbound_.end() && it->second->Enqueue(std::move(encoded));
}

PeerStats PeerTransport::Stats(uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = outbound_.find(id);
  return it == outbound_.end() ? PeerStats{} : it->second->Stats();
}

void PeerTransport::Stop() {
  std::map<uint64_t, std::unique_ptr<Outbound>> all;
  {
    std::lock_guard lock(mu_);
    all.swap(outbound_);
  }
  all.clear();
}

}  // namespace lockd::server
