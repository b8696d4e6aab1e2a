#include "cli/member.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <random>

#include "cli/format.h"
#include "cli/table.h"
#include "lockd/client.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::cli {

namespace pb = lockd::v1;

namespace {

/// The first answer other than UNAVAILABLE from the endpoints, in turn; prints a failure.
template <typename Rpc>
bool CallCluster(const CommandContext& c, std::chrono::milliseconds timeout, Rpc rpc) {
  grpc::Status last;
  for (const auto& e : c.endpoints) {
    auto stub =
        pb::ClusterService::NewStub(grpc::CreateChannel(e, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    last = rpc(*stub, ctx);
    if (last.ok()) return true;
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  c.err << "lockctl: " << client::StatusCodeName(static_cast<client::StatusCode>(last.error_code()))
        << ": " << last.error_message() << "\n";
  return false;
}

pb::RequestHeader Header() {
  std::random_device rd;
  pb::RequestHeader h;
  h.mutable_id()->set_client_hi((uint64_t{rd()} << 32) | rd());
  h.mutable_id()->set_client_lo((uint64_t{rd()} << 32) | rd());
  h.mutable_id()->set_seq(1);
  h.set_attempt(1);
  h.set_watermark(1);
  return h;
}

const char* Role(pb::Member::Role r) {
  switch (r) {
    case pb::Member::LEADER:
      return "leader";
    case pb::Member::FOLLOWER:
      return "follower";
    case pb::Member::CANDIDATE:
      return "candidate";
    case pb::Member::LEARNER:
      return "learner";
    default:
      return "?";
  }
}

std::string Members(const google::protobuf::RepeatedPtrField<pb::Member>& members) {
  Table t({"ID", "ROLE", "CLIENT", "PEER"});
  for (const auto& m : members) {
    t.AddRow({std::to_string(m.id()), Role(m.role()), m.client_addr(), m.peer_addr()});
  }
  return t.Render();
}

}  // namespace

int RunMemberAdd(const CommandContext& c, uint64_t id, const std::string& peer_addr,
                 const std::string& client_addr) {
  pb::AddMemberRequest req;
  *req.mutable_header() = Header();
  req.set_id(id);
  req.set_peer_addr(peer_addr);
  req.set_client_addr(client_addr);
  pb::AddMemberResponse resp;
  if (!CallCluster(c, std::max(c.timeout, std::chrono::milliseconds(90'000)),
                   [&](auto& stub, auto& ctx) { return stub.AddMember(&ctx, req, &resp); })) {
    return 1;
  }
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
  *req.mutable_header() = Header();
  req.set_id(id);
  pb::RemoveMemberResponse resp;
  if (!CallCluster(c, std::max(c.timeout, std::chrono::milliseconds(30'000)),
                   [&](auto& stub, auto& ctx) { return stub.RemoveMember(&ctx, req, &resp); })) {
    return 1;
  }
  if (c.json) {
    c.out << ToJson(resp);
    return 0;
  }
  c.out << "node " << id << " removed at log index " << resp.removed_index() << "\n\n"
        << Members(resp.members());
  return 0;
}

int RunMemberList(const CommandContext& c) {
  pb::StatusResponse resp;
  if (!CallCluster(c, c.timeout, [&](auto& stub, auto& ctx) {
        return stub.Status(&ctx, pb::StatusRequest(), &resp);
      })) {
    return 1;
  }
  c.out << FormatStatus(resp, c.json);
  return 0;
}

}  // namespace lockd::cli
