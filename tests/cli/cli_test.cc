// lockctl's output (tables and JSON that parses back) and its commands against a scripted
// in-process LockService: endpoint fall-back on UNAVAILABLE, errors and exit codes.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <sstream>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/format.h"
#include "cli/table.h"
#include "lockd/v1/lockd.grpc.pb.h"
#include "support/process.h"

namespace lockd::cli {
namespace {

namespace pb = lockd::v1;
using namespace std::chrono_literals;

pb::LockInfo SampleLock() {
  pb::LockInfo l;
  l.set_name("seat/42");
  auto* h = l.add_holders();
  h->set_lease_id(7);
  h->set_lease_label("worker-1");
  h->set_mode(pb::EXCLUSIVE);
  h->set_token(1234);
  h->set_fence(1234);
  h->set_held_ms(1500);
  h->set_lease_remaining_ms(8000);
  auto* w = l.add_waiters();
  w->set_lease_id(9);
  w->set_mode(pb::SHARED);
  w->set_wait_ms(5000);
  w->set_waited_ms(200);
  return l;
}

TEST(Table, AlignsColumnsWithoutTrailingSpaces) {
  Table t({"A", "LONGER"});
  t.AddRow({"wide cell", "x"});
  EXPECT_EQ(t.Render(), "A          LONGER\nwide cell  x\n");
}

TEST(HumanDuration, PicksAReadableUnit) {
  EXPECT_EQ(HumanDuration(250), "250ms");
  EXPECT_EQ(HumanDuration(1500), "1.5s");
  EXPECT_EQ(HumanDuration(200'000), "3m20s");
  EXPECT_EQ(HumanDuration(7'500'000), "2h5m");
}

TEST(Format, LockTableShowsHoldersAndWaitersInOrder) {
  const std::string out = FormatLock(SampleLock(), false);
  EXPECT_NE(out.find("seat/42"), std::string::npos);
  EXPECT_NE(out.find("worker-1"), std::string::npos);
  EXPECT_NE(out.find("1234"), std::string::npos);
  EXPECT_NE(out.find("1.5s"), std::string::npos);
  EXPECT_NE(out.find("shared"), std::string::npos);
  EXPECT_LT(out.find("HOLDER"), out.find("WAITER"));
}

TEST(Format, JsonParsesBackToTheSameMessage) {
  const pb::LockInfo lock = SampleLock();
  pb::LockInfo parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(FormatLock(lock, true), &parsed).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(lock, parsed));

  pb::StatusResponse s;
  s.set_cluster_id("c-1");
  s.set_leader_id(2);
  auto* m = s.add_members();
  m->set_id(2);
  m->set_role(pb::Member::LEADER);
  pb::StatusResponse s2;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(FormatStatus(s, true), &s2).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(s, s2));
  EXPECT_NE(FormatStatus(s, false).find("leader"), std::string::npos);
}

/// Answers GetLock with SampleLock(), or UNAVAILABLE when told to; Release refuses wrong tokens.
class FakeService final : public pb::LockService::Service {
 public:
  bool unavailable = false;
  int calls = 0;
  grpc::Status GetLock(grpc::ServerContext*, const pb::GetLockRequest* req,
                       pb::GetLockResponse* resp) override {
    ++calls;
    if (unavailable) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no leader");
    *resp->mutable_lock() = SampleLock();
    resp->mutable_lock()->set_name(req->name());
    return grpc::Status::OK;
  }
  grpc::Status Release(grpc::ServerContext*, const pb::ReleaseRequest* req,
                       pb::ReleaseResponse*) override {
    ++calls;
    if (req->token() != 1234 || !req->header().has_id() || req->header().id().seq() == 0) {
      return grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          "lease 7 does not hold seat/42 with token " + std::to_string(req->token()));
    }
    return grpc::Status::OK;
  }
};

struct Served {
  FakeService service;
  std::string endpoint;
  std::unique_ptr<grpc::Server> server;
  Served() {
    endpoint = "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]);
    grpc::ServerBuilder b;
    b.AddListeningPort(endpoint, grpc::InsecureServerCredentials());
    b.RegisterService(&service);
    server = b.BuildAndStart();
  }
  ~Served() { server->Shutdown(std::chrono::system_clock::now() + 1s); }
};

TEST(Commands, FallBackToTheNextEndpointWhenOneIsUnavailable) {
  Served down, up;
  down.service.unavailable = true;
  std::stringstream out, err;
  CommandContext c{{down.endpoint, up.endpoint}, false, 5000ms, out, err};
  EXPECT_EQ(RunLocksGet(c, "seat/42", false), 0) << err.str();
  EXPECT_EQ(down.service.calls, 1);
  EXPECT_EQ(up.service.calls, 1);
  EXPECT_NE(out.str().find("seat/42"), std::string::npos);
}

TEST(Commands, ReleaseWithAWrongTokenExitsThreeWithTheServersReason) {
  Served s;
  std::stringstream out, err;
  CommandContext c{{s.endpoint}, false, 5000ms, out, err};
  EXPECT_EQ(RunRelease(c, "seat/42", 7, 99), 3);  // FAILED_PRECONDITION: refused
  EXPECT_NE(err.str().find("FAILED_PRECONDITION"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("token 99"), std::string::npos);
  std::stringstream out2, err2;
  CommandContext c2{{s.endpoint}, true, 5000ms, out2, err2};
  EXPECT_EQ(RunRelease(c2, "seat/42", 7, 1234), 0) << err2.str();
  EXPECT_EQ(out2.str(), "{\"released\":true}\n");
}

TEST(Commands, AnUnreachableClusterIsExitFour) {
  std::stringstream out, err;
  const std::string dead = "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]);
  CommandContext c{{dead}, false, 1000ms, out, err};
  EXPECT_EQ(RunStatus(c), 4);
  EXPECT_NE(err.str().find("UNAVAILABLE"), std::string::npos) << err.str();
}

TEST(ExitCodes, EachGrpcCodeMapsToTheDocumentedExitCode) {
  using C = client::StatusCode;
  EXPECT_EQ(ExitCodeFor(C::kOk), 0);
  EXPECT_EQ(ExitCodeFor(C::kNotFound), 1);
  for (C code : {C::kInvalidArgument, C::kFailedPrecondition, C::kPermissionDenied,
                 C::kResourceExhausted, C::kUnauthenticated, C::kOutOfRange}) {
    EXPECT_EQ(ExitCodeFor(code), 3) << client::StatusCodeName(code);
  }
  for (C code : {C::kUnavailable, C::kDeadlineExceeded, C::kAborted}) {
    EXPECT_EQ(ExitCodeFor(code), 4) << client::StatusCodeName(code);
  }
  for (C code : {C::kInternal, C::kUnknown, C::kDataLoss, C::kUnimplemented}) {
    EXPECT_EQ(ExitCodeFor(code), 5) << client::StatusCodeName(code);
  }
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::FAILED_PRECONDITION), 3);
}

}  // namespace
}  // namespace lockd::cli
