// Every response from the client port carries lockd-leader and lockd-cluster, health included.
#include "server/cluster_metadata.h"

#include <gtest/gtest.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "lockd/v1/lockd.grpc.pb.h"
#include "support/process.h"

namespace lockd::server {
namespace {

TEST(ClusterMetadata, IsStampedOnEveryResponseAndFollowsUpdates) {
  ClusterMetadata md;
  md.Set("127.0.0.1:7401", "cluster-1");
  const std::string addr = "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder b;
  b.AddListeningPort(addr, grpc::InsecureServerCredentials());
  // A callback service with no handlers: every call is UNIMPLEMENTED, and still stamped.
  lockd::v1::LockService::CallbackService unimplemented;
  b.RegisterService(&unimplemented);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(md.Factory());
  b.experimental().SetInterceptorCreators(std::move(creators));
  auto server = b.BuildAndStart();
  ASSERT_TRUE(server);

  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  auto call = [&] {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_TRUE(stub->Check(&ctx, req, &resp).ok());
    auto& got = ctx.GetServerInitialMetadata();
    auto leader = got.find("lockd-leader");
    auto cluster = got.find("lockd-cluster");
    EXPECT_NE(leader, got.end());
    EXPECT_NE(cluster, got.end());
    return std::make_pair(std::string(leader->second.data(), leader->second.size()),
                          std::string(cluster->second.data(), cluster->second.size()));
  };
  EXPECT_EQ(call(), std::make_pair(std::string("127.0.0.1:7401"), std::string("cluster-1")));
  md.Set("", "cluster-1");  // leader unknown
  EXPECT_EQ(call(), std::make_pair(std::string(""), std::string("cluster-1")));

  auto lock_stub = lockd::v1::LockService::NewStub(
      grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  lockd::v1::GetLockResponse resp;
  EXPECT_EQ(lock_stub->GetLock(&ctx, lockd::v1::GetLockRequest(), &resp).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(ctx.GetServerInitialMetadata().count("lockd-cluster"), 1u)
      << "an error response is stamped too";
  server->Shutdown();
}

}  // namespace
}  // namespace lockd::server
