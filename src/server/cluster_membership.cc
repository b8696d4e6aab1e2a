// ClusterService.AddMember and RemoveMember: validated here, run by the leader's Replica
// (replica_members.cc), forwarded to the leader from any other node. A leader asked to remove
// itself hands leadership over first and forwards the request to the new leader. Forwarded
// membership calls wait as long as the leader may take (MembershipForwardAge), not F_fwd.
#include <spdlog/spdlog.h>

#include <optional>

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

/// How long past its arrival a forwarded membership call may wait for the leader's answer:
/// the leader's own bound for the change plus a margin, so that its answer (DEADLINE_EXCEEDED
/// naming what to do) arrives before the forward gives up. Not F_fwd: these calls carry no
/// request id, are never retried by a forwarder, and the leader waits for a learner to catch up.
std::chrono::milliseconds MembershipForwardAge(std::chrono::milliseconds leader_bound) {
  return leader_bound + std::chrono::seconds(5);
}

/// The prologue AddMember and RemoveMember share: the call is refused (stopping, too large),
/// its id is 0, or this node is not the leader and forwards it. True when `reactor` is answered
/// (or will be, by the forward); false when the leader goes on with the call here.
template <typename Req, typename Resp>
bool AnsweredOrForwarded(LockServiceImpl& locks, grpc::CallbackServerContext* ctx, const Req& req,
                         Resp* resp,
                         void (ClusterAsync::*method)(grpc::ClientContext*, const Req*, Resp*,
                                                      std::function<void(grpc::Status)>),
                         grpc::ServerUnaryReactor* reactor, std::chrono::milliseconds bound,
                         const std::function<std::optional<grpc::Status>()>& validate = {}) {
  if (auto refused = locks.Refuse(req)) {
    reactor->Finish(*refused);
    return true;
  }
  const char* what = std::is_same_v<Req, pb::AddMemberRequest> ? "AddMember" : "RemoveMember";
  if (auto denied = locks.Authorize(*ctx, {Permission::kAdmin, "", false, what})) {
    reactor->Finish(*denied);
    return true;
  }
  if (req.id() == 0) {
    reactor->Finish(Invalid("id must be a positive integer"));
    return true;
  }
  if (validate) {
    if (auto invalid = validate()) {
      reactor->Finish(*invalid);
      return true;
    }
  }
  if (locks.context().replica.is_leader()) return false;
  locks.Forward<pb::ClusterService>(
      ctx, method, req, resp, [reactor](grpc::Status s) { reactor->Finish(s); },
      ForwardOptions{MembershipForwardAge(bound), false});
  return true;
}

}  // namespace

grpc::ServerUnaryReactor* ClusterServiceImpl::AddMember(grpc::CallbackServerContext* ctx,
                                                        const pb::AddMemberRequest* req,
                                                        pb::AddMemberResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto& c = locks_.context();
  const auto validate = [req]() -> std::optional<grpc::Status> {
    for (const auto& [what, addr] :
         {std::pair<const char*, const std::string&>{"peer_addr", req->peer_addr()},
          {"client_addr", req->client_addr()}}) {
      if (auto hp = ParseHostPort(addr); !hp.ok()) {
        return Invalid(std::string(what) + ": " + hp.status().message());
      }
    }
    return std::nullopt;
  };
  if (AnsweredOrForwarded(locks_, ctx, *req, resp, &ClusterAsync::AddMember, reactor,
                          member_add_timeout_, validate)) {
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
  // The leader's bound for a removal: its reachability check (up to 2·E_min) and the commit,
  // within F_fwd; a leader removing itself hands over first, then its successor takes as long.
  const std::chrono::milliseconds bound = 2 * c.forward_timeout;
  if (AnsweredOrForwarded(locks_, ctx, *req, resp, &ClusterAsync::RemoveMember, reactor, bound)) {
    return reactor;
  }
  const uint64_t self = c.replica.options().node_id;
  if (req->id() == self) {
    // The leader leaves: it hands over first (its removal must be committed by the others),
    // then passes the call to the new leader, which removes it and answers once the removal is
    // applied. That hop is allowed even when the call reached us forwarded (through a follower):
    // refusing it answered UNAVAILABLE for a removal that then happened anyway.
    spdlog::info("node {}: asked to remove itself; handing leadership over first", self);
    c.replica.TransferLeadership(0, [this, ctx, req, resp, reactor, bound](const lockd::Status& s) {
      if (!s.ok()) {
        return reactor->Finish(ToGrpc(lockd::Status(
            s.code(), "could not hand leadership over before leaving: " + s.message())));
      }
      locks_.Forward<pb::ClusterService>(
          ctx, &ClusterAsync::RemoveMember, *req, resp,
          [reactor](grpc::Status st) { reactor->Finish(st); },
          ForwardOptions{MembershipForwardAge(bound), true});
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
