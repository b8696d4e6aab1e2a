// --join's question to the cluster (AskCluster): the leader's answer is the one taken, a
// follower's (or a removed node's) only points to the leader; a leader's table that lacks a
// member's address is not taken.
#include "server/join.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>

#include "lockd/v1/lockd.grpc.pb.h"
#include "support/process.h"

namespace lockd::server {
namespace {

namespace pb = lockd::v1;
using namespace std::chrono_literals;

/// A node that answers Status with a fixed view.
class FakeNode final : public pb::ClusterService::Service {
 public:
  explicit FakeNode(pb::StatusResponse view) : view_(std::move(view)) {
    addr_ = "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]);
    grpc::ServerBuilder b;
    b.AddListeningPort(addr_, grpc::InsecureServerCredentials());
    b.RegisterService(this);
    server_ = b.BuildAndStart();
  }
  ~FakeNode() override { server_->Shutdown(std::chrono::system_clock::now() + 1s); }
  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*,
                      pb::StatusResponse* resp) override {
    *resp = view_;
    return grpc::Status::OK;
  }
  const std::string& addr() const { return addr_; }
  pb::StatusResponse& view() { return view_; }

 private:
  pb::StatusResponse view_;
  std::string addr_;
  std::unique_ptr<grpc::Server> server_;
};

pb::StatusResponse View(uint64_t self, uint64_t leader, std::vector<uint64_t> members) {
  pb::StatusResponse v;
  v.set_cluster_id("00112233445566778899aabbccddeeff");
  v.set_node_id(self);
  v.set_leader_id(leader);
  for (uint64_t id : members) {
    auto* m = v.add_members();
    m->set_id(id);
    m->set_peer_addr("10.0.0." + std::to_string(id) + ":7501");
    m->set_client_addr("10.0.0." + std::to_string(id) + ":7401");
  }
  return v;
}

TEST(Join, TakesTheLeadersTableNotTheFirstAnswer) {
  // A removed node answers first with the table of its removal (1, 2, 3); the leader's is
  // 1, 2, 4. The removed node names the leader at an address of its (stale) table: here the
  // fake leader's real address.
  FakeNode leader(View(2, 2, {1, 2, 4}));
  auto stale = View(3, 2, {1, 2, 3});
  stale.mutable_members(1)->set_client_addr(leader.addr());
  FakeNode removed(stale);
  auto joined = AskCluster({removed.addr()}, 10s);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  ASSERT_EQ(joined->members.size(), 3u);
  EXPECT_EQ(joined->members[2].id, 4u);
}

TEST(Join, RefusesALeadersTableThatLacksAnAddress) {
  auto view = View(1, 1, {1, 2, 3});
  view.mutable_members(2)->clear_peer_addr();
  FakeNode leader(view);
  auto joined = AskCluster({leader.addr()}, 1500ms);
  ASSERT_FALSE(joined.ok());
  EXPECT_EQ(joined.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(joined.status().message().find("no address for member 3"), std::string::npos)
      << joined.status().message();
}

TEST(Join, AFollowerAloneIsNotEnough) {
  FakeNode follower(View(3, 0, {1, 2, 3}));  // knows no leader
  auto joined = AskCluster({follower.addr()}, 1500ms);
  ASSERT_FALSE(joined.ok());
  EXPECT_NE(joined.status().message().find("not the leader"), std::string::npos)
      << joined.status().message();
}

}  // namespace
}  // namespace lockd::server
