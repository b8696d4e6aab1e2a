// Forwarder: the leader sees the caller's deadline (cut to F_fwd) and the forwarded-by mark; a
// forward cut short by F_fwd is UNAVAILABLE, the caller's own deadline DEADLINE_EXCEEDED.
#include "server/forwarder.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "support/process.h"

namespace lockd::server {
namespace {

namespace pb = lockd::v1;
using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

class FakeLeader final : public pb::LockService::Service {
 public:
  std::mutex mu;
  int calls = 0;
  std::string forwarded_by;
  Clock::time_point deadline;
  std::chrono::milliseconds delay{0};
  grpc::Status GetLock(grpc::ServerContext* ctx, const pb::GetLockRequest* req,
                       pb::GetLockResponse* resp) override {
    {
      std::lock_guard lock(mu);
      ++calls;
      auto it = ctx->client_metadata().find(kForwardedByHeader);
      if (it != ctx->client_metadata().end())
        forwarded_by.assign(it->second.data(), it->second.size());
      deadline = ctx->deadline();
    }
    std::this_thread::sleep_for(delay);
    resp->mutable_lock()->set_name(req->name());
    return grpc::Status::OK;
  }
};

class ForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    addr_ = "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]);
    grpc::ServerBuilder b;
    b.AddListeningPort(addr_, grpc::InsecureServerCredentials());
    b.RegisterService(&leader_);
    server_ = b.BuildAndStart();
  }
  void TearDown() override { server_->Shutdown(Clock::now() + 1s); }

  grpc::Status Forward(Forwarder& f, Clock::time_point received, Clock::time_point deadline,
                       pb::GetLockResponse* resp,
                       std::chrono::milliseconds max_age = std::chrono::milliseconds(0)) {
    pb::GetLockRequest req;
    req.set_name("seat/1");
    std::promise<grpc::Status> p;
    f.Forward<pb::LockService>(addr_, &pb::LockService::StubInterface::async_interface::GetLock,
                               req, resp, received, deadline, max_age,
                               [&](grpc::Status s) { p.set_value(s); });
    return p.get_future().get();
  }

  FakeLeader leader_;
  std::string addr_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(ForwarderTest, CarriesTheCallersDeadlineAndMarksTheCallForwarded) {
  Forwarder f(3, 10s);
  const auto now = Clock::now();
  pb::GetLockResponse resp;
  ASSERT_TRUE(Forward(f, now, now + 2s, &resp).ok());
  EXPECT_EQ(resp.lock().name(), "seat/1");
  std::lock_guard lock(leader_.mu);
  EXPECT_EQ(leader_.forwarded_by, "3");
  EXPECT_LE(leader_.deadline, now + 2s + 50ms);
  EXPECT_GT(leader_.deadline, now + 1s);
}

TEST_F(ForwarderTest, ADeadlineIsCutToFfwdAndItsExpiryIsUnavailable) {
  Forwarder f(3, 300ms);
  leader_.delay = 2s;
  const auto now = Clock::now();
  pb::GetLockResponse resp;
  const grpc::Status s = Forward(f, now, now + 30s, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_LT(Clock::now() - now, 1500ms);
}

TEST_F(ForwarderTest, AMembershipCallsLongerBoundReplacesFfwd) {
  // AddMember waits for a learner to catch up (--member-add-timeout-ms, 60 s): cut to F_fwd
  // through a follower it failed where the same call to the leader succeeded.
  Forwarder f(3, 300ms);
  leader_.delay = 800ms;
  const auto now = Clock::now();
  pb::GetLockResponse resp;
  const grpc::Status s = Forward(f, now, now + 30s, &resp, 5000ms);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::lock_guard lock(leader_.mu);
  EXPECT_GT(leader_.deadline, now + 4s);
  EXPECT_LE(leader_.deadline, now + 5s + 50ms);
}

TEST_F(ForwarderTest, AnOldRequestOrAnExpiredCallerIsNotForwarded) {
  Forwarder f(3, 500ms);
  const auto now = Clock::now();
  pb::GetLockResponse resp;
  EXPECT_EQ(Forward(f, now - 1s, now + 30s, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Forward(f, now, now - 1ms, &resp).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  std::lock_guard lock(leader_.mu);
  EXPECT_EQ(leader_.calls, 0);
}

TEST_F(ForwarderTest, StopAnswersEveryForwardInFlightAndEveryNewOneUnavailable) {
  Forwarder f(3, 10s);
  leader_.delay = 1500ms;  // the leader is slow: the forward is in flight when the node stops
  const auto now = Clock::now();
  pb::GetLockRequest req;
  req.set_name("seat/1");
  pb::GetLockResponse resp;
  std::promise<grpc::Status> p;
  f.Forward<pb::LockService>(addr_, &pb::LockService::StubInterface::async_interface::GetLock, req,
                             &resp, now, now + 30s, 0ms, [&](grpc::Status s) { p.set_value(s); });
  for (int i = 0; i < 200; ++i) {  // until the leader has the call
    {
      std::lock_guard lock(leader_.mu);
      if (leader_.calls > 0) break;
    }
    std::this_thread::sleep_for(10ms);
  }
  f.Stop();
  auto answered = p.get_future();
  ASSERT_EQ(answered.wait_for(2s), std::future_status::ready) << "Stop ends the forward now";
  const grpc::Status s = answered.get();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_NE(s.error_message().find("stopping"), std::string::npos) << s.error_message();
  const grpc::Status later = Forward(f, Clock::now(), Clock::now() + 30s, &resp);
  EXPECT_EQ(later.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(later.error_message().find("stopping"), std::string::npos) << later.error_message();
}

}  // namespace
}  // namespace lockd::server
