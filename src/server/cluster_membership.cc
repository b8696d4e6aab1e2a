// ClusterService.AddMember and RemoveMember: validated here, run by the leader's Replica
// (replica_members.cc), forwarded to the leader from any other node. A leader asked to remove
// itself hands leadership over first and forwards the request to the new leader.
#include <spdlog/spdlog.h>

#include "base/host_port.h"
#include "server/convert.h"
#include "server/lock_service.h"

namespace lockd::server {

namespace pb = lockd::v1;
using ClusterAsync = pb::ClusterService::StubInterface::async_interface;

namespace {

grpc::Status Invalid(const std::string& m) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, m);
}

}  // namespace

grpc::ServerUnaryReactor* ClusterServiceImpl::AddMember(grpc::CallbackServerContext* ctx,
                                                        const pb::AddMemberRequest* req,
                                                        pb::AddMemberResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto& c = locks_.context();
  if (auto refused = locks_.Refuse(*req)) {
    reactor->Finish(*refused);
    return reactor;
  }
  if (req->id() == 0) {
    reactor->Finish(Invalid("id must be a positive integer"));
    return reactor;
  }
  for (const auto& [what, addr] :
       {std::pair<const char*, const std::string&>{"peer_addr", req->peer_addr()},
        {"client_addr", req->client_addr()}}) {
    if (auto hp = ParseHostPort(addr); !hp.ok()) {
      reactor->Finish(Invalid(std::string(what) + ": " + hp.status().message()));
      return reactor;
    }
  }
  if (!c.replica.is_leader()) {
    locks_.Forward<pb::ClusterService>(ctx, &ClusterAsync::AddMember, *req, resp,
                                       [reactor](grpc::Status s) { reactor->Finish(s); });
    return reactor;
  }
  const auto deadline =
      std::min(ctx->deadline(), std::chrono::system_clock::now() + member_add_timeout_);
  MemberSpec member{req->id(), req->peer_addr(), req->client_addr()};
  c.replica.AddMember(
      std::move(member), deadline, [this, reactor, resp, &c](Result<MemberAdded> added) {
        if (!added.ok()) return reactor->Finish(ToGrpc(added.status()));
        resp->set_voter_index(added->voter_index);
        resp->set_voter_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    added->voter_at.time_since_epoch())
                                    .count());
        c.replica.FreshStatus([this, reactor, resp](ReplicaStatus st) {
          FillMembers(st, resp->mutable_members());
          reactor->Finish(grpc::Status::OK);
        });
      });
  return reactor;
}

grpc::ServerUnaryReactor* ClusterServiceImpl::RemoveMember(grpc::CallbackServerContext* ctx,
                                                           const pb::RemoveMemberRequest* req,
                                                           pb::RemoveMemberResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto& c = locks_.context();
  if (auto refused = locks_.Refuse(*req)) {
    reactor->Finish(*refused);
    return reactor;
  }
  if (req->id() == 0) {
    reactor->Finish(Invalid("id must be a positive integer"));
    return reactor;
  }
  if (!c.replica.is_leader()) {
    locks_.Forward<pb::ClusterService>(ctx, &ClusterAsync::RemoveMember, *req, resp,
                                       [reactor](grpc::Status s) { reactor->Finish(s); });
    return reactor;
  }
  const uint64_t self = c.replica.options().node_id;
  if (req->id() == self) {
    // The leader leaves: it hands over first (its removal must be committed by the others),
    // then the new leader removes it.
    spdlog::info("node {}: asked to remove itself; handing leadership over first", self);
    c.replica.TransferLeadership(0, [this, ctx, req, resp, reactor](const lockd::Status& s) {
      if (!s.ok()) {
        return reactor->Finish(ToGrpc(lockd::Status(
            s.code(), "could not hand leadership over before leaving: " + s.message())));
      }
      locks_.Forward<pb::ClusterService>(ctx, &ClusterAsync::RemoveMember, *req, resp,
                                         [reactor](grpc::Status st) { reactor->Finish(st); });
    });
    return reactor;
  }
  const auto deadline =
      std::min(ctx->deadline(), std::chrono::system_clock::now() + c.forward_timeout);
  c.replica.RemoveMember(req->id(), deadline, [this, reactor, resp, &c](Result<uint64_t> index) {
    if (!index.ok()) return reactor->Finish(ToGrpc(index.status()));
    resp->set_removed_index(*index);
    c.replica.FreshStatus([this, reactor, resp](ReplicaStatus st) {
      FillMembers(st, resp->mutable_members());
      reactor->Finish(grpc::Status::OK);
    });
  });
  return reactor;
}

}  // namespace lockd::server
