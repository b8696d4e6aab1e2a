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
    auto stub = Service::NewStub(c.Channel(e));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    last = rpc(*stub, ctx, ++attempt);
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  return last;
}

/// What CallUntilAnswered settled on: the last answer, and whether an earlier attempt came back
/// UNAVAILABLE or DEADLINE_EXCEEDED. Such an attempt may still have been carried out (the leader
/// committed the change, then lost leadership or the forward's stream, before answering), so the
/// caller must read a later refusal that describes the state it asked for as its own success.
struct Answered {
  grpc::Status status;
  bool earlier_attempt_lost = false;
};

/// CallAny, asked again (every endpoint, a pause between rounds) while `timeout` has not passed
/// and the answer is UNAVAILABLE (no endpoint answers, or the one that did is not the leader or
/// lost leadership: an election after a leader was lost takes a few seconds), or while
/// `again(answer, earlier_attempt_lost)` says so. Each attempt gets the time left. For membership
/// changes, which the cluster does not de-duplicate (they carry no request id in its
/// exactly-once table): a change may be made by an attempt whose answer is lost, and a retry is
/// then refused ("not a member", "already a member"), never made twice.
template <typename Service, typename Rpc, typename Again>
Answered CallUntilAnswered(const CommandContext& c, std::chrono::milliseconds timeout, Rpc rpc,
                           Again again) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  Answered a;
  uint32_t attempt = 0;
  for (;;) {
    for (const auto& e : c.endpoints) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) return a;
      auto stub = Service::NewStub(c.Channel(e));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + left);
      a.status = rpc(*stub, ctx, ++attempt);
      const auto code = a.status.error_code();
      if (code != grpc::StatusCode::UNAVAILABLE && !again(a.status, a.earlier_attempt_lost)) {
        return a;
      }
      if (code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED) {
        a.earlier_attempt_lost = true;
      }
      // Asked again by `again`: after a pause, not at once on the next endpoint.
      if (code != grpc::StatusCode::UNAVAILABLE) break;
    }
    std::this_thread::sleep_for(
        std::min<Clock::duration>(std::chrono::milliseconds(300),
                                  std::max(deadline - Clock::now(), Clock::duration::zero())));
  }
}

/// A request header for a one-shot command: a fresh client id, sequence 1, attempt 1.
lockd::v1::RequestHeader OneShotHeader();

}  // namespace lockd::cli
