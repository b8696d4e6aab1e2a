// Forwarder: a follower passes a client's call to the leader (the design brief: any node accepts
// any RPC and forwards it; no redirects).
//
// The forwarded call carries the caller's deadline, cut to F_fwd after this node received the
// request (no request is forwarded or proposed more than F_fwd after a node received it), and the
// metadata `lockd-forwarded-by: <node id>` so that a node that is not the leader either never
// forwards a forwarded call again: it answers UNAVAILABLE and the client retries (same request
// id, so safely). The call is asynchronous: no thread waits for the leader's answer.
//
// When the node stops (Stop), every forward in flight is cancelled and answered UNAVAILABLE
// ("this node is stopping"), and so is every new one: a stopping node finishes no call with
// CANCELLED, so a retry with the same request id goes elsewhere. A forward the leader itself
// cancelled (it was stopping) is UNAVAILABLE too.
//
// Thread-safe. Channels to the leader are cached by address and created on first use.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::server {

inline constexpr const char* kForwardedByHeader = "lockd-forwarded-by";

/// Whether a call arrived forwarded from another node.
bool WasForwarded(const grpc::CallbackServerContext& ctx);

class Forwarder {
 public:
  /// Metadata a forward carries besides `lockd-forwarded-by` (the caller's identity: access
  /// control, server/access_control.h).
  using Metadata = std::vector<std::pair<std::string, std::string>>;

  /// `credentials`: how to dial the leader's client port (server/tls.h; default plaintext).
  Forwarder(uint64_t node_id, std::chrono::milliseconds max_forward_age,
            std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr)
      : node_id_(node_id),
        max_forward_age_(max_forward_age),
        credentials_(credentials ? std::move(credentials) : grpc::InsecureChannelCredentials()) {}
  /// Waits for every forwarded call's callback to finish, so no call outlives its channel.
  ~Forwarder();

  /// Calls `method` of `Service` (LockService or ClusterService) at `leader_addr` with `req`,
  /// filling `resp`, then `done` with the leader's status. `received` is when this node got the
  /// call (system clock, as gRPC deadlines are); `caller_deadline` is the caller's. A call already
  /// older than F_fwd, or past its deadline, is answered at once. `max_age` (zero: F_fwd) bounds
  /// how long after `received` the leader may take: only membership calls, which carry no
  /// request id and whose leader waits for a learner to catch up, pass a longer one.
  template <typename Service, typename Req, typename Resp>
  void Forward(const std::string& leader_addr,
               void (Service::StubInterface::async_interface::*method)(
                   grpc::ClientContext*, const Req*, Resp*, std::function<void(grpc::Status)>),
               const Req& req, Resp* resp, std::chrono::system_clock::time_point received,
               std::chrono::system_clock::time_point caller_deadline,
               std::chrono::milliseconds max_age, std::function<void(grpc::Status)> done,
               const Metadata& metadata = {}) {
    auto call = std::make_shared<Call<Service, Req>>();
    call->req = req;
    if (!Prepare(call->ctx, received, caller_deadline, max_age, done)) return;
    for (const auto& [key, value] : metadata) call->ctx.AddMetadata(key, value);
    call->stub = Service::NewStub(ChannelFor(leader_addr));
    // Aliases the call: Stop may cancel the context while the callback drops its reference.
    if (!Started(std::shared_ptr<grpc::ClientContext>(call, &call->ctx))) {
      done(StoppingStatus());
      return;
    }
    (call->stub->async()->*method)(
        &call->ctx, &call->req, resp,
        [this, call, caller_deadline, done = std::move(done)](grpc::Status s) mutable {
          done(MapForwardStatus(s, caller_deadline, call->ctx.deadline()));
          Finished(&call->ctx);
          call.reset();  // the context goes before the channel can
          Idle();
        });
  }

  /// The node is stopping: cancels every forward in flight (each answers UNAVAILABLE) and
  /// refuses new ones the same way. Idempotent.
  void Stop();

 private:
  template <typename Service, typename Req>
  struct Call {
    std::unique_ptr<typename Service::Stub> stub;
    grpc::ClientContext ctx;
    Req req;
  };

  /// A forward cut short by F_fwd is UNAVAILABLE (retry), not the caller's DEADLINE_EXCEEDED;
  /// one cancelled (by Stop, or by the stopping leader) is UNAVAILABLE, not CANCELLED. A
  /// DEADLINE_EXCEEDED the leader answered itself before the forward's deadline (a membership
  /// call's own bound) is passed on as it is.
  grpc::Status MapForwardStatus(const grpc::Status& s,
                                std::chrono::system_clock::time_point caller_deadline,
                                std::chrono::system_clock::time_point forward_deadline) const;
  static grpc::Status StoppingStatus();
  /// Sets the deadline and metadata; false (after calling `done`) when the call must not go.
  bool Prepare(grpc::ClientContext& ctx, std::chrono::system_clock::time_point received,
               std::chrono::system_clock::time_point caller_deadline,
               std::chrono::milliseconds max_age, const std::function<void(grpc::Status)>& done);
  std::shared_ptr<grpc::Channel> ChannelFor(const std::string& addr);
  /// Registers a call about to start; false when stopping (the call must not go).
  bool Started(std::shared_ptr<grpc::ClientContext> ctx);
  /// The call's callback ran: Stop no longer cancels it.
  void Finished(grpc::ClientContext* ctx);
  /// The call and its context are gone.
  void Idle();

  const uint64_t node_id_;
  const std::chrono::milliseconds max_forward_age_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::mutex mu_;  ///< guards channels_, outstanding_, in_flight_ and stopping_
  std::condition_variable idle_;
  size_t outstanding_ = 0;
  /// Calls whose callback has not run yet.
  std::map<grpc::ClientContext*, std::shared_ptr<grpc::ClientContext>> in_flight_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

}  // namespace lockd::server
