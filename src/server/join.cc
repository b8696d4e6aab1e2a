#include "server/join.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::server {

Result<JoinedCluster> AskCluster(const std::vector<std::string>& addrs,
                                 std::chrono::milliseconds total) {
  if (addrs.empty()) return InvalidArgument("--join names no address");
  const auto give_up = std::chrono::steady_clock::now() + total;
  std::string failures;
  for (;;) {
    failures.clear();
    for (const auto& addr : addrs) {
      auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
      auto stub = lockd::v1::ClusterService::NewStub(channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
      lockd::v1::StatusResponse resp;
      grpc::Status s = stub->Status(&ctx, lockd::v1::StatusRequest(), &resp);
      if (!s.ok()) {
        failures += "; " + addr + ": " + s.error_message();
        continue;
      }
      if (resp.cluster_id().empty()) {
        failures += "; " + addr + ": its cluster id is not decided yet";
        continue;
      }
      JoinedCluster out;
      out.cluster_id = resp.cluster_id();
      for (const auto& m : resp.members()) {
        if (m.peer_addr().empty()) continue;  // a member whose address the answerer lacks
        out.members.push_back(MemberSpec{m.id(), m.peer_addr(), m.client_addr()});
      }
      spdlog::info("--join: {} answered: cluster {}, {} members", addr, out.cluster_id,
                   out.members.size());
      return out;
    }
    if (std::chrono::steady_clock::now() >= give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return Unavailable("--join: no member answered with the cluster's id" + failures);
}

}  // namespace lockd::server
