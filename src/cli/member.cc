#include "cli/member.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <optional>
#include <vector>

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

bool Refused(const grpc::Status& s, const std::string& message) {
  return s.error_code() == grpc::StatusCode::FAILED_PRECONDITION && s.error_message() == message;
}

/// The leader's refusal while a change is still being applied: after a lost attempt, that change
/// may be ours, so it is asked again until the deadline rather than reported.
bool ChangeInProgress(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
         s.error_message().starts_with("another membership change is in progress");
}

/// The member table as the leader sees it (a follower may not have applied the latest change
/// yet), or that of the first node that answers if the leader does not; nullopt if none does.
std::optional<pb::StatusResponse> LeaderStatus(const CommandContext& c) {
  pb::StatusResponse resp;
  const auto ask = [&](const std::vector<std::string>& endpoints, pb::StatusResponse* into) {
    const CommandContext at = c.At(endpoints);
    return CallAny<pb::ClusterService>(at, c.timeout, [&](auto& stub, auto& ctx, uint32_t) {
      return stub.Status(&ctx, pb::StatusRequest(), into);
    });
  };
  if (!ask(c.endpoints, &resp).ok()) return std::nullopt;
  if (resp.leader_id() == 0 || resp.leader_id() == resp.node_id()) return resp;
  for (const auto& m : resp.members()) {
    pb::StatusResponse from_leader;
    if (m.id() == resp.leader_id() && ask({m.client_addr()}, &from_leader).ok()) {
      return from_leader;
    }
  }
  return resp;
}

const pb::Member* FindMember(const pb::StatusResponse& st, uint64_t id) {
  for (const auto& m : st.members()) {
    if (m.id() == id) return &m;
  }
  return nullptr;
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
  // The leader's refusal of a node that is in its member table with exactly these addresses. A
  // learner with them is not refused: the add resumes and waits for its promotion.
  const std::string same = "node " + std::to_string(id) + " is already a member (peer " +
                           peer_addr + ", client " + client_addr + ")";
  // Read before the first attempt: a node that already was a voter is refused, whatever later
  // attempts hear (an unreachable first endpoint also counts as a lost attempt).
  const std::optional<pb::StatusResponse> before = LeaderStatus(c);
  const pb::Member* was = before ? FindMember(*before, id) : nullptr;
  const bool voter_before = was != nullptr && was->role() != pb::Member::LEARNER;
  std::optional<pb::StatusResponse> confirmed;
  // Retried through a leader change. A lost attempt may have added the node: then "already a
  // member" with these addresses is this command's own change, done once the node is a voter.
  const Answered a = CallUntilAnswered<pb::ClusterService>(
      c, std::max(c.timeout, std::chrono::milliseconds(90'000)),
      [&](auto& stub, auto& ctx, uint32_t n) {
        req.mutable_header()->set_attempt(n);
        return stub.AddMember(&ctx, req, &resp);
      },
      [&](const grpc::Status& s, bool lost) {
        if (!lost) return false;
        if (ChangeInProgress(s)) return true;
        if (voter_before || !Refused(s, same)) return false;
        auto st = LeaderStatus(c);
        const pb::Member* m = st ? FindMember(*st, id) : nullptr;
        if (m && m->role() != pb::Member::LEARNER) {
          confirmed = std::move(st);
          return false;
        }
        return true;  // a learner (or not known yet): asking again resumes the promotion
      });
  if (confirmed) {
    *resp.mutable_members() = confirmed->members();
    if (c.json) {
      c.out << ToJson(resp);  // without voter_index: the answer that named it was lost
      return 0;
    }
    c.out << "node " << id << " is a voter (confirmed after a retry)\n\n"
          << Members(resp.members());
    return 0;
  }
  if (!a.status.ok()) return ReportError(c.err, a.status);
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
  // Read before the first attempt: "not a member" can be this command's own change only if the
  // node was one (an id mistyped is refused even when an unreachable endpoint came first).
  const std::optional<pb::StatusResponse> before = LeaderStatus(c);
  const bool member_before = before && FindMember(*before, id) != nullptr;
  // Retried through a leader change (a member is often removed right after its node was lost).
  // A lost attempt may have removed it: then "not a member" is this command's own change.
  const Answered a = CallUntilAnswered<pb::ClusterService>(
      c, std::max(c.timeout, std::chrono::milliseconds(30'000)),
      [&](auto& stub, auto& ctx, uint32_t n) {
        req.mutable_header()->set_attempt(n);
        return stub.RemoveMember(&ctx, req, &resp);
      },
      [](const grpc::Status& s, bool lost) { return lost && ChangeInProgress(s); });
  if (a.earlier_attempt_lost && member_before &&
      Refused(a.status, "node " + std::to_string(id) + " is not a member")) {
    auto st = LeaderStatus(c);
    if (st) *resp.mutable_members() = st->members();
    if (c.json) {
      c.out << ToJson(resp);  // without removed_index: the answer that named it was lost
      return 0;
    }
    c.out << "node " << id << " removed (confirmed after a retry)\n";
    if (st) c.out << "\n" << Members(resp.members());
    return 0;
  }
  if (!a.status.ok()) return ReportError(c.err, a.status);
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
