// Forwarder: a follower passes a client's call to the leader (the design brief: any node accepts
// any RPC and forwards it; no redirects).
//
// The forwarded call carries the caller's deadline, cut to F_fwd after this node received the
// request (no request is forwarded or proposed more than F_fwd after a node received it), and the
// metadata `lockd-forwarded-by: <node id>` so that a node that is not the leader either never
// forwards a forwarded call again: it answers UNAVAILABLE and the client retries (same request
// id, so safely). The call is asynchronous: no thread waits for the leader's answer.
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

#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::server {

inline constexpr const char* kForwardedByHeader = "lockd-forwarded-by";

/// Whether a call arrived forwarded from another node.
bool WasForwarded(const grpc::CallbackServerContext& ctx);

class Forwarder {
 public:
  Forwarder(uint64_t node_id, std::chrono::milliseconds max_forward_age)
      : node_id_(node_id), max_forward_age_(max_forward_age) {}
  /// Waits for every forwarded call's callback to finish, so no call outlives its channel.
  ~Forwarder();

  /// Calls `method` of `Service` (LockService or ClusterService) at `leader_addr` with `req`,
  /// filling `resp`, then `done` with the leader's status. `received` is when this node got the
  /// call (system clock, as gRPC deadlines are); `caller_deadline` is the caller's. A call already
  /// older than F_fwd, or past its deadline, is answered at once.
  template <typename Service, typename Req, typename Resp>
  void Forward(const std::string& leader_addr,
               void (Service::StubInterface::async_interface::*method)(
                   grpc::ClientContext*, const Req*, Resp*, std::function<void(grpc::Status)>),
               const Req& req, Resp* resp, std::chrono::system_clock::time_point received,
               std::chrono::system_clock::time_point caller_deadline,
               std::function<void(grpc::Status)> done) {
    auto call = std::make_shared<Call<Service, Req>>();
    call->req = req;
    if (!Prepare(call->ctx, received, caller_deadline, done)) return;
    call->stub = Service::NewStub(ChannelFor(leader_addr));
    Started();
    (call->stub->async()->*method)(
        &call->ctx, &call->req, resp,
        [this, call, caller_deadline, done = std::move(done)](grpc::Status s) mutable {
          done(MapForwardStatus(s, caller_deadline));
          call.reset();  // the context goes before the channel can
          Finished();
        });
  }

 private:
  template <typename Service, typename Req>
  struct Call {
    std::unique_ptr<typename Service::Stub> stub;
    grpc::ClientContext ctx;
    Req req;
  };

  /// A forward cut short by F_fwd is UNAVAILABLE (retry), not the caller's DEADLINE_EXCEEDED.
  static grpc::Status MapForwardStatus(const grpc::Status& s,
                                       std::chrono::system_clock::time_point caller_deadline);
  /// Sets the deadline and metadata; false (after calling `done`) when the call must not go.
  bool Prepare(grpc::ClientContext& ctx, std::chrono::system_clock::time_point received,
               std::chrono::system_clock::time_point caller_deadline,
               const std::function<void(grpc::Status)>& done);
  std::shared_ptr<grpc::Channel> ChannelFor(const std::string& addr);
  void Started();
  void Finished();

  const uint64_t node_id_;
  const std::chrono::milliseconds max_forward_age_;
  std::mutex mu_;  ///< guards channels_ and outstanding_
  std::condition_variable idle_;
  size_t outstanding_ = 0;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

}  // namespace lockd::server
