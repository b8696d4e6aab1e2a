// The Acquire protocol shared by the blocking and the asynchronous call: building the request
// (request id, wait, deadline) and turning the final answer into a Lock, withdrawing with Cancel
// every Acquire the caller cannot use (issue 14, defect 1).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "client/client_core.h"
#include "lockd/client.h"

namespace lockd::client {

/// How long after a waiting Acquire's `wait` its answer may still arrive: the server answers
/// "not acquired" when the wait ends, and the answer needs a round trip (docs/client.md).
inline constexpr std::chrono::milliseconds kAnswerAllowance{500};

/// The attempt timeout of a call without a wait: a hung node costs part of the deadline, not all.
inline std::chrono::milliseconds AttemptTimeout(const ClientOptions& o) {
  return std::clamp<std::chrono::milliseconds>(o.call_timeout / 2, std::chrono::milliseconds(300),
                                               o.call_timeout);
}

/// One Acquire call: what it asked, and everything needed to turn its answer into a Lock.
struct AcquireCall {
  std::string name;
  std::shared_ptr<Lease> lease;  ///< null for the one-call form
  std::chrono::milliseconds one_call_ttl{0};
  LockOptions options;
  pb::AcquireRequest req;
  SteadyTime deadline;
  TimePoint first_send{};
};

/// Checks the arguments and builds the request with a new request id (pending from now on).
Result<AcquireCall> PrepareAcquire(ClientCore& core, const std::string& name,
                                   const std::shared_ptr<Lease>& lease,
                                   std::chrono::milliseconds ttl, const LockOptions& o);
/// The caller's result for the final answer `s`/`resp`; ends or hands over the request id.
Result<Lock> FinishAcquire(ClientCore& core, AcquireCall& c, const grpc::Status& s,
                           const pb::AcquireResponse& resp);
/// A waiting attempt is not cut short before its wait ends; a try gets AttemptTimeout.
std::chrono::milliseconds AcquireAttemptTimeout(const ClientOptions& o, const AcquireCall& c);

/// Runs `c` on gRPC's callback API (no thread waits for it) with the same retries, deadline,
/// stop_token and withdrawal as the blocking call; `done` runs once, on a gRPC thread.
void StartAsyncAcquire(std::shared_ptr<ClientCore> core, AcquireCall c,
                       std::function<void(Result<Lock>)> done);

}  // namespace lockd::client
