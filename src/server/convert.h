// The edge between the lockd.v1 protobuf messages and the lock state machine's types: requests
// become validated commands (bad input is INVALID_ARGUMENT here, before anything is proposed),
// outcomes and views become responses, Status becomes grpc::Status.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <optional>

#include "base/status.h"
#include "lock/command.h"
#include "lock/state_machine.h"
#include "lockd/v1/lockd.pb.h"

namespace lockd::server {

grpc::Status ToGrpc(const Status& s);
grpc::Status ToGrpc(const lock::Outcome& o);

Result<lock::RequestHeader> FromProto(const lockd::v1::RequestHeader& h);
lock::RequestId FromProto(const lockd::v1::RequestId& id);
void ToProto(const lock::RequestId& id, lockd::v1::RequestId* out);
Result<lock::Mode> ModeFromProto(int mode);
lockd::v1::LockMode ToProto(lock::Mode m);

// Requests to commands, validated against the limits.
Result<lock::Command> ToCommand(const lockd::v1::GrantLeaseRequest& r, const lock::Limits& l);
Result<lock::Command> ToCommand(const lockd::v1::RevokeLeaseRequest& r, const lock::Limits& l);
Result<lock::Command> ToCommand(const lockd::v1::AcquireRequest& r, const lock::Limits& l);
Result<lock::Command> ToCommand(const lockd::v1::CancelRequest& r, const lock::Limits& l);
Result<lock::Command> ToCommand(const lockd::v1::ReleaseRequest& r, const lock::Limits& l);
Result<lock::Command> ToCommand(const lockd::v1::ForceReleaseRequest& r, const lock::Limits& l);

// Outcomes to responses (only for OK outcomes).
void FillResponse(const lock::Outcome& o, lockd::v1::GrantLeaseResponse* out);
void FillResponse(const lock::Outcome& o, lockd::v1::RevokeLeaseResponse* out);
void FillResponse(const lock::Outcome& o, lockd::v1::AcquireResponse* out);
void FillResponse(const lock::Outcome& o, lockd::v1::CancelResponse* out);
void FillResponse(const lock::Outcome& o, lockd::v1::ReleaseResponse* out);
void FillResponse(const lock::Outcome& o, lockd::v1::ForceReleaseResponse* out);

/// What inspection adds to the replicated views: how long ago an index applied, and a lease's
/// time left, as the answering node knows them (nullopt: unknown here).
struct ViewClock {
  std::function<std::optional<std::chrono::milliseconds>(lock::LogIndex)> since_applied;
  std::function<std::optional<std::chrono::milliseconds>(lock::LeaseId)> lease_remaining;
};
void ToProto(const lock::HolderView& h, const ViewClock& c, lockd::v1::Holder* out);
void ToProto(const lock::LockView& v, const ViewClock& c, lockd::v1::LockInfo* out);
void ToProto(const lock::LeaseView& v, const ViewClock& c, lockd::v1::LeaseInfo* out);

}  // namespace lockd::server
