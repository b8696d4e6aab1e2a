// lockctl's output (tables and JSON that parses back) and its commands against a scripted
// in-process LockService: endpoint fall-back on UNAVAILABLE, errors and exit codes; member add and
// remove against a scripted ClusterService whose first answer is lost.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <sstream>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/format.h"
#include "cli/member.h"
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

/// Answers each membership call with the next scripted status (the last one repeats); Status
/// with a leader (itself, node 1) and `members` before the first membership call, `members_after`
/// (if set) once one was made.
class FakeCluster final : public pb::ClusterService::Service {
 public:
  using Table = std::vector<std::pair<uint64_t, pb::Member::Role>>;
  std::vector<grpc::Status> answers;
  Table members;
  std::optional<Table> members_after;
  std::atomic<int> calls = 0;
  grpc::Status AddMember(grpc::ServerContext*, const pb::AddMemberRequest*,
                         pb::AddMemberResponse*) override {
    return Next();
  }
  grpc::Status RemoveMember(grpc::ServerContext*, const pb::RemoveMemberRequest*,
                            pb::RemoveMemberResponse*) override {
    return Next();
  }
  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*,
                      pb::StatusResponse* resp) override {
    resp->set_node_id(1);
    resp->set_leader_id(1);
    for (const auto& [id, role] : calls > 0 && members_after ? *members_after : members) {
      auto* m = resp->add_members();
      m->set_id(id);
      m->set_role(role);
    }
    return grpc::Status::OK;
  }

 private:
  grpc::Status Next() {
    const size_t i = std::min<size_t>(static_cast<size_t>(calls++), answers.size() - 1);
    return answers[i];
  }
};

struct ServedCluster {
  FakeCluster service;
  std::string endpoint;
  std::unique_ptr<grpc::Server> server;
  ServedCluster() {
    endpoint = "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]);
    grpc::ServerBuilder b;
    b.AddListeningPort(endpoint, grpc::InsecureServerCredentials());
    b.RegisterService(&service);
    server = b.BuildAndStart();
  }
  ~ServedCluster() { server->Shutdown(std::chrono::system_clock::now() + 1s); }
};

const grpc::Status kLost(grpc::StatusCode::UNAVAILABLE, "the leader's stream was cut");
const grpc::Status kInProgress(grpc::StatusCode::FAILED_PRECONDITION,
                               "another membership change is in progress; retry once it finished "
                               "(lockctl member list shows it)");
const grpc::Status kNotAMember(grpc::StatusCode::FAILED_PRECONDITION, "node 2 is not a member");

// The leader committed the removal, then its answer was lost: the retry's "not a member" (after
// "in progress" while the entry was applied) is this command's own change.
TEST(MemberChanges, ARemoveWhoseAnswerWasLostIsConfirmedByTheRetry) {
  ServedCluster s;
  s.service.answers = {kLost, kInProgress, kNotAMember};
  s.service.members = {
      {1, pb::Member::LEADER}, {2, pb::Member::FOLLOWER}, {3, pb::Member::FOLLOWER}};
  s.service.members_after = {{1, pb::Member::LEADER}, {3, pb::Member::FOLLOWER}};
  std::stringstream out, err;
  CommandContext c{{s.endpoint}, false, 5000ms, out, err};
  EXPECT_EQ(RunMemberRemove(c, 2), 0) << err.str();
  EXPECT_EQ(s.service.calls, 3);
  EXPECT_NE(out.str().find("node 2 removed (confirmed after a retry)"), std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("follower"), std::string::npos) << out.str();

  std::stringstream jout, jerr;
  CommandContext j{{s.endpoint}, true, 5000ms, jout, jerr};
  s.service.calls = 0;
  ASSERT_EQ(RunMemberRemove(j, 2), 0) << jerr.str();
  pb::RemoveMemberResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(jout.str(), &parsed).ok()) << jout.str();
  EXPECT_EQ(parsed.members_size(), 2);
  EXPECT_EQ(parsed.removed_index(), 0u);
}

// Without a lost attempt, "not a member" is a refusal (exit 3), and so is "in progress": no wait.
TEST(MemberChanges, ARemoveOfANonMemberIsRefusedWhenNoAttemptWasLost) {
  ServedCluster s;
  s.service.answers = {kNotAMember};
  std::stringstream out, err;
  CommandContext c{{s.endpoint}, false, 5000ms, out, err};
  EXPECT_EQ(RunMemberRemove(c, 2), 3);
  EXPECT_NE(err.str().find("node 2 is not a member"), std::string::npos) << err.str();
  s.service.answers = {kInProgress, kNotAMember};
  s.service.calls = 0;
  EXPECT_EQ(RunMemberRemove(c, 2), 3);
  EXPECT_EQ(s.service.calls, 1);
}

// Found by review: an unreachable first endpoint counts as a lost attempt, so a mistyped id (never
// a member) answered "not a member" by the live node was reported removed. The table read before
// the first attempt decides: it did not name the node, so this is a refusal.
TEST(MemberChanges, ARemoveOfAnIdThatNeverWasAMemberIsRefusedEvenAfterALostAttempt) {
  ServedCluster s;
  s.service.answers = {kNotAMember};
  s.service.members = {{1, pb::Member::LEADER}, {3, pb::Member::FOLLOWER}};
  const std::string dead = "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]);
  std::stringstream out, err;
  CommandContext c{{dead, s.endpoint}, false, 5000ms, out, err};
  EXPECT_EQ(RunMemberRemove(c, 2), 3) << out.str();
  EXPECT_NE(err.str().find("node 2 is not a member"), std::string::npos) << err.str();
  EXPECT_EQ(out.str().find("confirmed"), std::string::npos) << out.str();
}

// An add whose answer was lost: "already a member" with the same addresses is success once the
// leader shows the node as a voter; while it shows a learner, the add is asked again (the leader
// resumes the promotion). Other addresses stay a refusal.
TEST(MemberChanges, AnAddWhoseAnswerWasLostIsConfirmedOnceTheNodeIsAVoter) {
  ServedCluster s;
  const grpc::Status same(grpc::StatusCode::FAILED_PRECONDITION,
                          "node 4 is already a member (peer 127.0.0.1:9, client 127.0.0.1:8)");
  s.service.answers = {kLost, same};
  s.service.members = {{1, pb::Member::LEADER}};
  s.service.members_after = FakeCluster::Table{{1, pb::Member::LEADER}, {4, pb::Member::FOLLOWER}};
  std::stringstream out, err;
  CommandContext c{{s.endpoint}, false, 5000ms, out, err};
  EXPECT_EQ(RunMemberAdd(c, 4, "127.0.0.1:9", "127.0.0.1:8"), 0) << err.str();
  EXPECT_EQ(s.service.calls, 2);
  EXPECT_NE(out.str().find("node 4 is a voter (confirmed after a retry)"), std::string::npos)
      << out.str();

  // Shown as a learner: asked again, then promoted (OK from the resumed add).
  s.service.calls = 0;
  s.service.answers = {kLost, same, grpc::Status::OK};
  s.service.members_after = FakeCluster::Table{{1, pb::Member::LEADER}, {4, pb::Member::LEARNER}};
  std::stringstream out2, err2;
  CommandContext c2{{s.endpoint}, false, 5000ms, out2, err2};
  EXPECT_EQ(RunMemberAdd(c2, 4, "127.0.0.1:9", "127.0.0.1:8"), 0) << err2.str();
  EXPECT_EQ(s.service.calls, 3);
  EXPECT_NE(out2.str().find("is a voter since log index"), std::string::npos) << out2.str();

  // Other addresses: not this command's change.
  s.service.calls = 0;
  s.service.answers = {kLost, same};
  std::stringstream out3, err3;
  CommandContext c3{{s.endpoint}, false, 5000ms, out3, err3};
  EXPECT_EQ(RunMemberAdd(c3, 4, "127.0.0.1:7", "127.0.0.1:8"), 3);
  EXPECT_NE(err3.str().find("already a member"), std::string::npos) << err3.str();

  // A voter before the first attempt: "already a member" is a refusal even after a lost attempt.
  s.service.calls = 0;
  s.service.answers = {kLost, same};
  s.service.members = {{1, pb::Member::LEADER}, {4, pb::Member::FOLLOWER}};
  s.service.members_after.reset();
  std::stringstream out4, err4;
  CommandContext c4{{s.endpoint}, false, 5000ms, out4, err4};
  EXPECT_EQ(RunMemberAdd(c4, 4, "127.0.0.1:9", "127.0.0.1:8"), 3) << out4.str();
  EXPECT_NE(err4.str().find("already a member"), std::string::npos) << err4.str();
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
