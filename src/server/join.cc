#include "server/join.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <set>
#include <thread>

#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::server {

namespace {

Result<lockd::v1::StatusResponse> AskStatus(
    const std::string& addr, const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  auto channel = grpc::CreateChannel(addr, credentials);
  auto stub = lockd::v1::ClusterService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  lockd::v1::StatusResponse resp;
  grpc::Status s = stub->Status(&ctx, lockd::v1::StatusRequest(), &resp);
  if (!s.ok()) return Unavailable(s.error_message());
  if (resp.cluster_id().empty()) return Unavailable("its cluster id is not decided yet");
  return resp;
}

/// The client address `resp` gives for the leader it names (empty when none).
std::string LeaderAddr(const lockd::v1::StatusResponse& resp) {
  for (const auto& m : resp.members()) {
    if (m.id() == resp.leader_id() && resp.leader_id() != 0) return m.client_addr();
  }
  return {};
}

/// The leader's own answer as the join's source: a follower may lag behind membership changes,
/// and a removed node keeps the table of its removal. Every member must have both addresses
/// (the joiner dials them and names the leader to clients).
Result<JoinedCluster> FromLeader(const std::string& addr, const lockd::v1::StatusResponse& resp) {
  JoinedCluster out;
  out.cluster_id = resp.cluster_id();
  for (const auto& m : resp.members()) {
    if (m.peer_addr().empty() || m.client_addr().empty()) {
      return Unavailable("the leader at " + addr + " has no address for member " +
                         std::to_string(m.id()));
    }
    out.members.push_back(MemberSpec{m.id(), m.peer_addr(), m.client_addr()});
  }
  spdlog::info("--join: the leader (node {}) at {} answered: cluster {}, {} members",
               resp.node_id(), addr, out.cluster_id, out.members.size());
  return out;
}

}  // namespace

Result<JoinedCluster> AskCluster(const std::vector<std::string>& addrs,
                                 std::chrono::milliseconds total,
                                 std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (addrs.empty()) return InvalidArgument("--join names no address");
  if (!credentials) credentials = grpc::InsecureChannelCredentials();
  const auto give_up = std::chrono::steady_clock::now() + total;
  std::string failures;
  for (;;) {
    failures.clear();
    std::vector<std::string> ask = addrs;
    std::set<std::string> asked;
    for (size_t i = 0; i < ask.size(); ++i) {
      const std::string addr = ask[i];
      if (!asked.insert(addr).second) continue;
      auto resp = AskStatus(addr, credentials);
      if (!resp.ok()) {
        failures += "; " + addr + ": " + resp.status().message();
        continue;
      }
      if (resp->leader_id() != 0 && resp->leader_id() == resp->node_id()) {
        auto joined = FromLeader(addr, *resp);
        if (joined.ok()) return joined;
        failures += "; " + joined.status().message();
        continue;
      }
      // A follower (or a removed node): ask the leader it names too, after the others.
      if (const std::string leader = LeaderAddr(*resp); !leader.empty()) ask.push_back(leader);
      failures += "; " + addr + ": node " + std::to_string(resp->node_id()) + " is not the leader";
    }
    if (std::chrono::steady_clock::now() >= give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return Unavailable("--join: no leader answered with the cluster's id and members" + failures);
}

}  // namespace lockd::server
