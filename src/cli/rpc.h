// How lockctl's commands call the cluster: the first endpoint that answers (any node serves any
// call and forwards to the leader), and the request header of a one-shot mutating call.
#pragma once

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::cli {

/// Calls `rpc(stub, ctx, attempt)` on each endpoint in turn until one answers with something
/// other than UNAVAILABLE; returns that answer (or the last UNAVAILABLE). `attempt` counts from 1,
/// for the request header of a mutating call (a retry keeps its request id).
template <typename Service, typename Rpc>
grpc::Status CallAny(const CommandContext& c, std::chrono::milliseconds timeout, Rpc rpc) {
  grpc::Status last;
  uint32_t attempt = 0;
  for (const auto& e : c.endpoints) {
    auto stub = Service::NewStub(grpc::CreateChannel(e, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    last = rpc(*stub, ctx, ++attempt);
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  return last;
}

/// CallAny, asked again (every endpoint, a pause between rounds) while the answer is UNAVAILABLE
/// and `timeout` has not passed: no endpoint answers, or the one that did is not the leader or
/// lost leadership (an election after a leader was lost takes a few seconds). Only for calls whose
/// request header id makes a retry idempotent (the cluster answers an id once): membership
/// changes. Each attempt gets the time left.
template <typename Service, typename Rpc>
grpc::Status CallUntilAnswered(const CommandContext& c, std::chrono::milliseconds timeout,
                               Rpc rpc) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  grpc::Status last;
  uint32_t attempt = 0;
  for (;;) {
    for (const auto& e : c.endpoints) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) return last;
      auto stub = Service::NewStub(grpc::CreateChannel(e, grpc::InsecureChannelCredentials()));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + left);
      last = rpc(*stub, ctx, ++attempt);
      if (last.error_code() != grpc::StatusCode::UNAVAILABLE) return last;
    }
    std::this_thread::sleep_for(
        std::min<Clock::duration>(std::chrono::milliseconds(300),
                                  std::max(deadline - Clock::now(), Clock::duration::zero())));
  }
}

/// A request header for a one-shot command: a fresh client id, sequence 1, attempt 1.
lockd::v1::RequestHeader OneShotHeader();

}  // namespace lockd::cli
