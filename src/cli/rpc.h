// How lockctl's commands call the cluster: the first endpoint that answers (any node serves any
// call and forwards to the leader), and the request header of a one-shot mutating call.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>

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

/// A request header for a one-shot command: a fresh client id, sequence 1, attempt 1.
lockd::v1::RequestHeader OneShotHeader();

}  // namespace lockd::cli
