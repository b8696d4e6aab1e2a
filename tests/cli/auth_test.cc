// lockctl's bearer token (--auth-token, --auth-token-file, $LOCKD_AUTH_TOKEN,
// $LOCKD_AUTH_TOKEN_FILE): an in-process node whose server interceptor records each call's
// method and `authorization` metadata shows that every command's calls carry it (unary and
// streaming, the health check, the client library's calls for acquire and run), that none does
// without a token, and that the lockctl binary reads the flags and the environment, refuses an
// unreadable file and warns when the token would cross the network in plaintext.
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "cli/backup.h"
#include "cli/commands.h"
#include "cli/endpoints.h"
#include "cli/health.h"
#include "cli/hold.h"
#include "cli/watch.h"
#include "lockd/v1/lockd.grpc.pb.h"
#include "support/process.h"

namespace lockd::cli {
namespace {

namespace pb = lockd::v1;
using namespace std::chrono_literals;

/// Every call's method ("/lockd.v1.LockService/GetLock") and `authorization` header ("" none).
struct CallLog {
  std::mutex mu;  ///< gRPC's threads add, the test reads
  std::vector<std::pair<std::string, std::string>> calls;

  std::map<std::string, std::set<std::string>> ByMethod() {
    std::lock_guard lock(mu);
    std::map<std::string, std::set<std::string>> out;
    for (const auto& [method, value] : calls) out[method].insert(value);
    return out;
  }
  size_t size() {
    std::lock_guard lock(mu);
    return calls.size();
  }
};

class Recorder final : public grpc::experimental::Interceptor {
 public:
  Recorder(std::string method, CallLog& log) : method_(std::move(method)), log_(log) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      std::string value;
      for (const auto& [k, v] : *m->GetRecvInitialMetadata()) {
        if (k == "authorization") value.assign(v.data(), v.size());
      }
      std::lock_guard lock(log_.mu);
      log_.calls.emplace_back(method_, value);
    }
    m->Proceed();
  }

 private:
  const std::string method_;
  CallLog& log_;
};

class RecorderFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RecorderFactory(CallLog& log) : log_(log) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new Recorder(info->method(), log_);
  }

 private:
  CallLog& log_;
};

/// Enough of a LockService for lockctl's commands and the client library's acquire.
class Locks final : public pb::LockService::Service {
 public:
  grpc::Status GrantLease(grpc::ServerContext*, const pb::GrantLeaseRequest* req,
                          pb::GrantLeaseResponse* resp) override {
    resp->set_lease_id(100);
    resp->set_ttl_ms(req->ttl_ms());
    return grpc::Status::OK;
  }
  grpc::Status KeepAlive(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<pb::RenewResponse, pb::RenewRequest>* stream) override {
    pb::RenewRequest req;
    while (stream->Read(&req)) {
      pb::RenewResponse resp;
      resp.set_lease_id(req.lease_id());
      resp.set_seq(req.seq());
      resp.set_remaining_ms(10'000);
      if (!stream->Write(resp)) break;
    }
    return grpc::Status::OK;
  }
  grpc::Status RevokeLease(grpc::ServerContext*, const pb::RevokeLeaseRequest*,
                           pb::RevokeLeaseResponse*) override {
    return grpc::Status::OK;
  }
  grpc::Status Acquire(grpc::ServerContext*, const pb::AcquireRequest* req,
                       pb::AcquireResponse* resp) override {
    resp->set_acquired(true);
    resp->set_lease_id(req->lease_id());
    resp->set_token(1);
    resp->set_fence(1);
    resp->set_mode(req->mode());
    return grpc::Status::OK;
  }
  grpc::Status Release(grpc::ServerContext*, const pb::ReleaseRequest*,
                       pb::ReleaseResponse*) override {
    return grpc::Status::OK;
  }
  grpc::Status GetLock(grpc::ServerContext*, const pb::GetLockRequest* req,
                       pb::GetLockResponse* resp) override {
    resp->mutable_lock()->set_name(req->name());
    return grpc::Status::OK;
  }
  grpc::Status Watch(grpc::ServerContext*, const pb::WatchRequest* req,
                     grpc::ServerWriter<pb::WatchResponse>* writer) override {
    pb::WatchResponse resp;
    auto* e = resp.add_events();
    e->set_type(pb::LockEvent::ACQUIRED);
    e->set_name(req->name());
    e->mutable_position()->set_index(req->after().index() + 1);
    writer->Write(resp);
    return grpc::Status::OK;
  }
};

class Cluster final : public pb::ClusterService::Service {
 public:
  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*,
                      pb::StatusResponse* resp) override {
    resp->set_cluster_id("c-1");
    resp->set_node_id(1);
    resp->set_applied_index(10);
    return grpc::Status::OK;
  }
  grpc::Status Snapshot(grpc::ServerContext*, const pb::SnapshotRequest*,
                        pb::SnapshotResponse* resp) override {
    resp->set_index(10);
    return grpc::Status::OK;
  }
};

/// A node on a loopback port the kernel picks, with the health service and the recorder.
struct RecordingNode {
  CallLog log;
  Locks locks;
  Cluster cluster;
  std::string endpoint;
  std::unique_ptr<grpc::Server> server;
  RecordingNode() {
    grpc::EnableDefaultHealthCheckService(true);
    int port = 0;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&locks);
    b.RegisterService(&cluster);
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> rec;
    rec.push_back(std::make_unique<RecorderFactory>(log));
    b.experimental().SetInterceptorCreators(std::move(rec));
    server = b.BuildAndStart();
    endpoint = "127.0.0.1:" + std::to_string(port);
  }
  ~RecordingNode() { server->Shutdown(std::chrono::system_clock::now() + 1s); }
};

/// Makes every kind of call lockctl makes, with `c`.
void RunEveryKindOfCommand(const CommandContext& c) {
  auto health =
      CheckHealth(c.endpoints, c.timeout, [&c](const std::string& e) { return c.Channel(e); });
  ASSERT_EQ(health.size(), 1u);
  EXPECT_TRUE(health[0].serving()) << health[0].error;
  EXPECT_EQ(RunStatus(c, /*ask_leader=*/false), 0) << "status";
  EXPECT_EQ(RunLocksGet(c, "seat/42", false), 0) << "locks get";
  EXPECT_EQ(RunRelease(c, "seat/42", 100, 1), 0) << "release";
  EXPECT_EQ(RunSnapshot(c), 0) << "snapshot";
  WatchArgs w;
  w.target = "seat/42";
  w.count = 1;
  w.duration = 5s;
  EXPECT_EQ(RunLocksWatch(c, w), 0) << "locks watch";
  // acquire and run: through the client library.
  AcquireArgs a;
  a.name = "seat/42";
  a.ttl = 10s;
  HeldLock held;
  ASSERT_EQ(AcquireToHold(c, a, held), 0) << "acquire";
  EXPECT_TRUE(held.lock.Release().ok());
  EXPECT_TRUE(held.lease->Revoke().ok());
}

TEST(AuthToken, EveryCommandsCallsCarryTheBearerHeader) {
  RecordingNode node;
  std::stringstream out, err;
  CommandContext c{{node.endpoint}, false, 5000ms, out, err};
  c.auth_token = "lockctl.t0ken";
  RunEveryKindOfCommand(c);
  const auto seen = node.log.ByMethod();
  for (const char* method : {"/grpc.health.v1.Health/Check", "/lockd.v1.ClusterService/Status",
                             "/lockd.v1.LockService/GetLock", "/lockd.v1.LockService/Release",
                             "/lockd.v1.ClusterService/Snapshot", "/lockd.v1.LockService/Watch",
                             "/lockd.v1.LockService/GrantLease", "/lockd.v1.LockService/Acquire",
                             "/lockd.v1.LockService/RevokeLease"}) {
    ASSERT_TRUE(seen.contains(method)) << method << " was not called; stderr: " << err.str();
  }
  for (const auto& [method, values] : seen) {
    EXPECT_EQ(values, std::set<std::string>{"Bearer lockctl.t0ken"}) << method;
  }
  EXPECT_EQ(err.str().find("warning"), std::string::npos) << "loopback: no warning";
}

TEST(AuthToken, NoTokenSendsNoHeader) {
  RecordingNode node;
  std::stringstream out, err;
  CommandContext c{{node.endpoint}, false, 5000ms, out, err};
  EXPECT_EQ(RunLocksGet(c, "seat/42", false), 0);
  EXPECT_EQ(RunSnapshot(c), 0);
  for (const auto& [method, values] : node.log.ByMethod()) {
    EXPECT_EQ(values, std::set<std::string>{""}) << method;
  }
}

TEST(AuthToken, APlaintextTokenBeyondLoopbackIsWarnedOfOnce) {
  std::stringstream out, err;
  // TEST-NET-1: never dialed here (a channel connects on its first call).
  CommandContext c{{"192.0.2.1:7401"}, false, 5000ms, out, err};
  c.auth_token = "secret-token";
  (void)c.Channel("192.0.2.1:7401");
  (void)c.At({"192.0.2.2:7401"}).Channel("192.0.2.2:7401");
  const std::string e = err.str();
  EXPECT_NE(e.find("warning: the bearer token goes to 192.0.2.1:7401 over plaintext"),
            std::string::npos)
      << e;
  EXPECT_EQ(e.find("warning", e.find("warning") + 1), std::string::npos) << "warned twice: " << e;
  EXPECT_EQ(e.find("secret"), std::string::npos);

  std::stringstream none;
  CommandContext local{{"127.0.0.1:7401"}, false, 5000ms, out, none};
  local.auth_token = "t";
  (void)local.Channel("127.0.0.1:7401");
  (void)local.Channel("localhost:7401");
  (void)local.Channel("[::1]:7401");
  CommandContext tls{{"192.0.2.1:7401"}, false, 5000ms, out, none};
  tls.auth_token = "t";
  tls.tls = grpc::SslCredentialsOptions();
  tls.WarnIfTokenInClear("192.0.2.1:7401");
  CommandContext no_token{{"192.0.2.1:7401"}, false, 5000ms, out, none};
  (void)no_token.Channel("192.0.2.1:7401");
  EXPECT_EQ(none.str(), "");
}

TEST(Endpoints, LoopbackIsThisMachineOnly) {
  for (const char* e : {"127.0.0.1:7401", "127.1.2.3:1", "localhost:7401", "LOCALHOST:1",
                        "[::1]:7401", "[::ffff:127.0.0.1]:7401"}) {
    EXPECT_TRUE(IsLoopback(e)) << e;
  }
  for (const char* e :
       {"10.0.0.1:7401", "192.0.2.1:1", "lockd-0.example.org:7401", "127.example.org:1",
        "localhost.example.org:1", "[::2]:1", "[fe80::1]:1", "0.0.0.0:7401", "not an address"}) {
    EXPECT_FALSE(IsLoopback(e)) << e;
  }
}

// ---- the lockctl binary: flags, environment, errors ----

class LockctlAuth : public ::testing::Test {
 protected:
  /// lockctl ARGS… against the node; exit code and output. `env`: added to its environment.
  testing::CommandResult Lockctl(std::vector<std::string> args, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {LOCKCTL_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    testing::SpawnOptions o;
    o.env = env;
    // Whatever the test's own environment holds, the child has only the token `env` gives.
    for (const std::string name : {"LOCKD_AUTH_TOKEN=", "LOCKD_AUTH_TOKEN_FILE="}) {
      if (std::none_of(env.begin(), env.end(),
                       [&](const std::string& e) { return e.starts_with(name); })) {
        o.env.push_back(name);
      }
    }
    testing::Process p(argv, dir_.path() + "/lockctl.log." + std::to_string(++runs_), o);
    testing::CommandResult r;
    auto code = p.Wait(20s);
    if (!code) p.Kill();
    r.exit_code = code.value_or(-1);
    r.output = p.ReadLog();
    return r;
  }
  std::string WriteFile(const std::string& name, const std::string& contents) {
    const std::string path = dir_.path() + "/" + name;
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }
  /// The one authorization value the node saw on GetLock, then the log is cleared.
  std::string SeenOnGetLock() {
    auto seen = node_.log.ByMethod()["/lockd.v1.LockService/GetLock"];
    {
      std::lock_guard lock(node_.log.mu);
      node_.log.calls.clear();
    }
    return seen.size() == 1 ? *seen.begin() : "<" + std::to_string(seen.size()) + " values>";
  }

  testing::TempDir dir_;
  RecordingNode node_;
  int runs_ = 0;
};

TEST_F(LockctlAuth, TheFlagsAndTheEnvironmentGiveTheToken) {
  const std::vector<std::string> get = {"--endpoints", node_.endpoint, "locks", "get", "seat/42"};
  auto with = [&](std::vector<std::string> flags) {
    flags.insert(flags.end(), get.begin(), get.end());
    return flags;
  };
  auto r = Lockctl(with({"--auth-token", "flag-token"}));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(SeenOnGetLock(), "Bearer flag-token");

  r = Lockctl(with({"--auth-token-file", WriteFile("token", "file-token\n")}));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(SeenOnGetLock(), "Bearer file-token");

  r = Lockctl(get, {"LOCKD_AUTH_TOKEN=env-token"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(SeenOnGetLock(), "Bearer env-token");

  r = Lockctl(get, {"LOCKD_AUTH_TOKEN_FILE=" + WriteFile("env-file", "env-file-token\r\n")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(SeenOnGetLock(), "Bearer env-file-token");

  // A flag wins over the environment.
  r = Lockctl(with({"--auth-token", "flag-token"}), {"LOCKD_AUTH_TOKEN=env-token"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(SeenOnGetLock(), "Bearer flag-token");

  r = Lockctl(get);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(SeenOnGetLock(), "");
  // `release --token` is the grant's token, not the bearer token.
  r = Lockctl(
      {"--endpoints", node_.endpoint, "release", "seat/42", "--lease", "100", "--token", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(node_.log.ByMethod()["/lockd.v1.LockService/Release"], std::set<std::string>{""});
}

TEST_F(LockctlAuth, AnUnreadableFileOrABadTokenIsAUsageErrorBeforeAnyCall) {
  const std::string missing = dir_.path() + "/no-such-token";
  auto r = Lockctl(
      {"--auth-token-file", missing, "--endpoints", node_.endpoint, "locks", "get", "seat/42"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cannot read the bearer token file " + missing), std::string::npos)
      << r.output;

  const std::string empty = WriteFile("empty", "\n");
  r = Lockctl({"--auth-token-file", empty, "--endpoints", node_.endpoint, "status"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(empty + " is empty"), std::string::npos) << r.output;

  r = Lockctl({"--endpoints", node_.endpoint, "locks", "get", "x"},
              {"LOCKD_AUTH_TOKEN=secret\ttoken"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("byte 0x09"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("secret"), std::string::npos) << r.output;

  r = Lockctl(
      {"--auth-token", "a", "--auth-token-file", empty, "--endpoints", node_.endpoint, "health"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("not both"), std::string::npos) << r.output;
  EXPECT_EQ(node_.log.size(), 0u) << "a call went out";
}

TEST_F(LockctlAuth, APlaintextTokenToAnotherMachineIsWarnedOfOnStderr) {
  // TEST-NET-1 does not answer: the call fails (exit 4) after the warning.
  auto r = Lockctl({"--auth-token", "secret-token", "--endpoints", "192.0.2.1:7401,192.0.2.2:7401",
                    "--timeout-ms", "300", "locks", "get", "x"});
  EXPECT_EQ(r.exit_code, 4) << r.output;
  const auto at = r.output.find("warning: the bearer token goes to 192.0.2.1:7401 over plaintext");
  EXPECT_NE(at, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("warning", at + 1), std::string::npos) << "warned twice: " << r.output;
  EXPECT_EQ(r.output.find("secret"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lockd::cli
