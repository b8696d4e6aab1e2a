#include "cli/member.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "cli/exit_codes.h"
#include "cli/format.h"
#include "cli/rpc.h"
#include "cli/table.h"
#include "lockd/client.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::cli {

namespace pb = lockd::v1;

namespace {

std::string Members(const google::protobuf::RepeatedPtrField<pb::Member>& members) {
  Table t({"ID", "ROLE", "CLIENT", "PEER"});
  for (const auto& m : members) {
    t.AddRow({std::to_string(m.id()), RoleName(m.role()), m.client_addr(), m.peer_addr()});
  }
  return t.Render();
}

}  // namespace

int RunMemberAdd(const CommandContext& c, uint64_t id, const std::string& peer_addr,
                 const std::string& client_addr) {
  pb::AddMemberRequest req;
  *req.mutable_header() = OneShotHeader();
  req.set_id(id);
  req.set_peer_addr(peer_addr);
  req.set_client_addr(client_addr);
  pb::AddMemberResponse resp;
  // A retry keeps the request id: the cluster answers it once. Retried through a leader change.
  grpc::Status s = CallUntilAnswered<pb::ClusterService>(
      c, std::max(c.timeout, std::chrono::milliseconds(90'000)),
      [&](auto& stub, auto& ctx, uint32_t n) {
        req.mutable_header()->set_attempt(n);
        return stub.AddMember(&ctx, req, &resp);
      });
  if (!s.ok()) return ReportError(c.err, s);
  if (c.json) {
    c.out << ToJson(resp);
    return 0;
  }
  c.out << "node " << id << " is a voter since log index " << resp.voter_index() << " (unix ms "
        << resp.voter_unix_ms() << ")\n\n"
        << Members(resp.members());
  return 0;
}

int RunMemberRemove(const CommandContext& c, uint64_t id) {
  pb::RemoveMemberRequest req;
  *req.mutable_header() = OneShotHeader();
  req.set_id(id);
  pb::RemoveMemberResponse resp;
  // Retried through a leader change (a member is often removed right after its node was lost).
  grpc::Status s = CallUntilAnswered<pb::ClusterService>(
      c, std::max(c.timeout, std::chrono::milliseconds(30'000)),
      [&](auto& stub, auto& ctx, uint32_t n) {
        req.mutable_header()->set_attempt(n);
        return stub.RemoveMember(&ctx, req, &resp);
      });
  if (!s.ok()) return ReportError(c.err, s);
  if (c.json) {
    c.out << ToJson(resp);
    return 0;
  }
  c.out << "node " << id << " removed at log index " << resp.removed_index() << "\n\n"
        << Members(resp.members());
  return 0;
}

int RunMemberList(const CommandContext& c) {
  // The member table as the leader sees it: a follower that has not yet applied the entry a
  // `member add` just waited for would still show the new member as a learner.
  return RunStatus(c);
}

}  // namespace lockd::cli
