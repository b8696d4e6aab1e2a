// The client library against a scripted in-process LockService: the lease-safety rules of the
// design brief (guarantee 5), retries with one request id, and the cluster-id check.
#include "lockd/client.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "lockd/v1/lockd.grpc.pb.h"
#include "support/process.h"

namespace lockd::client {
namespace {

namespace pb = lockd::v1;
using namespace std::chrono_literals;

/// A LockService whose answers the test scripts. It records what it received, with the time on
/// the same clock (CLOCK_BOOTTIME) the client uses.
class FakeLockService final : public pb::LockService::Service {
 public:
  std::mutex mu;
  std::string cluster_id = "cluster-a";
  int fail_acquires_unavailable = 0;
  bool renew_not_found = false;
  bool renew_unavailable = false;
  std::chrono::milliseconds grant_delay{0};
  std::chrono::milliseconds acquire_delay{0};
  std::vector<pb::RequestHeader> acquire_headers;
  std::vector<uint64_t> released_tokens;
  BootTime last_ok_renewal_received;
  uint64_t next_lease = 100;
  uint64_t next_token = 1;

  grpc::Status GrantLease(grpc::ServerContext* ctx, const pb::GrantLeaseRequest* req,
                          pb::GrantLeaseResponse* resp) override {
    Tag(ctx);
    std::this_thread::sleep_for(grant_delay);
    std::lock_guard lock(mu);
    resp->set_lease_id(next_lease++);
    resp->set_ttl_ms(req->ttl_ms());
    return grpc::Status::OK;
  }

  grpc::Status Renew(grpc::ServerContext* ctx, const pb::RenewRequest* req,
                     pb::RenewResponse* resp) override {
    const BootTime received = SystemClock::Instance().Now();
    Tag(ctx);
    std::lock_guard lock(mu);
    if (renew_not_found) return grpc::Status(grpc::StatusCode::NOT_FOUND, "lease expired");
    if (renew_unavailable) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no leader");
    last_ok_renewal_received = received;
    resp->set_lease_id(req->lease_id());
    resp->set_seq(req->seq());
    return grpc::Status::OK;
  }

  grpc::Status Acquire(grpc::ServerContext* ctx, const pb::AcquireRequest* req,
                       pb::AcquireResponse* resp) override {
    Tag(ctx);
    {
      std::lock_guard lock(mu);
      acquire_headers.push_back(req->header());
      if (fail_acquires_unavailable > 0) {
        --fail_acquires_unavailable;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "leader changed");
      }
    }
    std::this_thread::sleep_for(acquire_delay);
    std::lock_guard lock(mu);
    resp->set_acquired(true);
    resp->set_token(next_token);
    resp->set_fence(next_token++);
    resp->set_mode(req->mode());
    resp->set_lease_id(req->lease_id());
    return grpc::Status::OK;
  }

  grpc::Status Release(grpc::ServerContext* ctx, const pb::ReleaseRequest* req,
                       pb::ReleaseResponse*) override {
    Tag(ctx);
    std::lock_guard lock(mu);
    released_tokens.push_back(req->token());
    return grpc::Status::OK;
  }

  grpc::Status RevokeLease(grpc::ServerContext* ctx, const pb::RevokeLeaseRequest*,
                           pb::RevokeLeaseResponse*) override {
    Tag(ctx);
    return grpc::Status::OK;
  }

 private:
  void Tag(grpc::ServerContext* ctx) {
    std::lock_guard lock(mu);
    ctx->AddInitialMetadata("lockd-cluster", cluster_id);
    ctx->AddInitialMetadata("lockd-leader", "");
  }
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const int port = testing::FreePorts(1)[0];
    endpoint_ = "127.0.0.1:" + std::to_string(port);
    grpc::ServerBuilder b;
    b.AddListeningPort(endpoint_, grpc::InsecureServerCredentials());
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now() + 1s); }

  std::unique_ptr<Client> Connect() {
    ClientOptions o;
    o.endpoints = {endpoint_};
    o.call_timeout = 5s;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c).value();
  }

  FakeLockService fake_;
  std::string endpoint_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(ClientTest, LeaseIsAnchoredAtTheFirstSendNotTheAnswer) {
  fake_.grant_delay = 400ms;
  auto client = Connect();
  const BootTime before = SystemClock::Instance().Now();
  auto lease = client->GrantLease(3000ms, "t");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  const auto margin = SafetyMargin(3000ms, 0.01, 100ms);
  // Sent after `before`, answered ≥ 400 ms later: validity is measured from the send.
  EXPECT_LE((*lease)->valid_until(), before + 3000ms - margin + 50ms);
  EXPECT_GE((*lease)->valid_until(), before + 3000ms - margin);
  EXPECT_TRUE((*lease)->valid());
}

TEST_F(ClientTest, RenewalsKeepALeaseValidPastItsTtl) {
  auto client = Connect();
  auto lease = client->GrantLease(3000ms, "t");
  ASSERT_TRUE(lease.ok());
  std::this_thread::sleep_for(6500ms);  // over two TTLs; renewals run every second
  EXPECT_TRUE((*lease)->valid()) << (*lease)->lost_reason();
}

TEST_F(ClientTest, ValidityNeverOutlivesTheLastAcknowledgedRenewalByMoreThanTtlMinusMargin) {
  auto client = Connect();
  auto lease = client->GrantLease(2000ms, "t");
  ASSERT_TRUE(lease.ok());
  std::this_thread::sleep_for(1000ms);  // at least one renewal acknowledged
  BootTime last_ok;
  {
    std::lock_guard lock(fake_.mu);
    fake_.renew_unavailable = true;
  }
  std::this_thread::sleep_for(100ms);  // let an in-flight renewal land first
  {
    std::lock_guard lock(fake_.mu);
    last_ok = fake_.last_ok_renewal_received;
  }
  // The server received that renewal after the client sent it, so the server's deadline is at
  // least last_ok + TTL; the client must give the lease up strictly before that, by the margin.
  const auto margin = SafetyMargin(2000ms, 0.01, 100ms);
  EXPECT_LE((*lease)->valid_until(), last_ok + 2000ms - margin);
  ASSERT_TRUE(testing::WaitFor([&] { return !(*lease)->valid(); }, 5s));
  EXPECT_LT(SystemClock::Instance().Now(), last_ok + 2000ms + 1000ms);
}

TEST_F(ClientTest, NotFoundLosesTheLeaseForGoodAndFiresOnLostOnce) {
  auto client = Connect();
  auto lease = client->GrantLease(3000ms, "t");
  ASSERT_TRUE(lease.ok());
  std::atomic<int> fired{0};
  (*lease)->OnLost([&](const std::string&) { ++fired; });
  {
    std::lock_guard lock(fake_.mu);
    fake_.renew_not_found = true;
  }
  ASSERT_TRUE(testing::WaitFor([&] { return !(*lease)->valid(); }, 5s));
  {
    std::lock_guard lock(fake_.mu);
    fake_.renew_not_found = false;  // the server "recovers": the lease must stay lost
  }
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE((*lease)->valid());
  EXPECT_EQ(fired.load(), 1);
  EXPECT_NE((*lease)->lost_reason().find("no longer knows"), std::string::npos);
}

TEST_F(ClientTest, RetriesAfterUnavailableReuseTheRequestId) {
  auto client = Connect();
  auto lease = client->GrantLease(5000ms, "t");
  ASSERT_TRUE(lease.ok());
  fake_.fail_acquires_unavailable = 2;
  auto grant = client->Acquire("seat/1", **lease);
  ASSERT_TRUE(grant.ok()) << grant.status().ToString();
  EXPECT_TRUE(grant->acquired);
  std::lock_guard lock(fake_.mu);
  ASSERT_EQ(fake_.acquire_headers.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(fake_.acquire_headers[i].id().seq(), fake_.acquire_headers[0].id().seq());
    EXPECT_EQ(fake_.acquire_headers[i].id().client_lo(), fake_.acquire_headers[0].id().client_lo());
    EXPECT_EQ(fake_.acquire_headers[i].attempt(), i + 1);
    // While this call is pending, the watermark may not pass its sequence number.
    EXPECT_LE(fake_.acquire_headers[i].watermark(), fake_.acquire_headers[i].id().seq());
  }
}

TEST_F(ClientTest, AGrantThatArrivesAfterTheLeaseIsLostIsReleasedNotReturned) {
  auto client = Connect();
  auto lease = client->GrantLease(2000ms, "t");
  ASSERT_TRUE(lease.ok());
  {
    std::lock_guard lock(fake_.mu);
    fake_.renew_unavailable = true;  // no renewal is acknowledged from now on
    fake_.acquire_delay = 2500ms;    // the grant arrives after the lease ran out
  }
  auto grant = client->Acquire("seat/2", **lease, {.mode = Mode::kExclusive, .wait = 3000ms});
  EXPECT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().code(), StatusCode::kFailedPrecondition);
  std::lock_guard lock(fake_.mu);
  ASSERT_EQ(fake_.released_tokens.size(), 1u) << "the late grant must be given back";
}

TEST_F(ClientTest, AChangedClusterIdLosesEveryLease) {
  auto client = Connect();
  auto lease = client->GrantLease(5000ms, "t");
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(client->cluster_id(), "cluster-a");
  {
    std::lock_guard lock(fake_.mu);
    fake_.cluster_id = "cluster-b";  // e.g. restored from a backup
  }
  ASSERT_TRUE(testing::WaitFor([&] { return !(*lease)->valid(); }, 5s));
  EXPECT_NE((*lease)->lost_reason().find("cluster id changed"), std::string::npos);
}

TEST(SafetyMarginTest, IsTwoRhoTtlPlusTheFloor) {
  EXPECT_EQ(SafetyMargin(10'000ms, 0.01, 100ms), 300ms);
  EXPECT_EQ(SafetyMargin(2'000ms, 0.0, 50ms), 50ms);
}

TEST(ClientConnect, RejectsBadOptions) {
  ClientOptions o;
  o.endpoints.clear();
  EXPECT_FALSE(Client::Connect(o).ok());
  o.endpoints = {"127.0.0.1:1"};
  o.drift = 0.7;
  EXPECT_EQ(Client::Connect(o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lockd::client
