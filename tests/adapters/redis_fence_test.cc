// adapters/redis/lockd_fence.lua (EVALSHA) and its Redis 7 function form against a real
// redis-server and a real lockd cluster (issue 20): the GC-pause scenario, the concurrent
// counter, bad input, and fences of another cluster. One redis-server and one 3-node cluster
// serve the whole binary.
#include <gtest/gtest.h>
#include <lockd/fence_adapters.h>

#include <fstream>
#include <sstream>

#include "adapters/fence_workload.h"
#include "adapters/resource_servers.h"

namespace lockd::adapters_test {
namespace {

class RedisFence : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!RedisServer::Missing().empty()) return;
    server_ = new RedisServer();
    e2e::ClusterOptions options;
    options.nodes = 3;
    cluster_ = new e2e::Cluster(options);
  }
  static void TearDownTestSuite() {
    delete cluster_;
    delete server_;
    cluster_ = nullptr;
    server_ = nullptr;
  }
  void SetUp() override {
    if (const std::string missing = RedisServer::Missing(); !missing.empty()) {
      GTEST_SKIP() << "Redis adapter tests skipped: " << missing;
    }
    ASSERT_TRUE(server_->ok()) << server_->error();
    ASSERT_GE(cluster_->WaitForReady(), 0) << cluster_->LogTails();
    ctx_ = server_->Connect();
    ASSERT_NE(ctx_, nullptr);
    const std::string script = SourceFile("adapters/redis/lockd_fence.lua");
    ASSERT_FALSE(script.empty());
    RedisAnswer sha = Command(ctx_, {"SCRIPT", "LOAD", script});
    ASSERT_FALSE(sha.error) << sha.text;
    sha_ = sha.text;
  }
  void TearDown() override {
    if (ctx_) redisFree(ctx_);
  }
  RedisAnswer Run(const client::Result<fence::RedisArgs>& args) {
    EXPECT_TRUE(args.ok()) << args.status().ToString();
    return args.ok() ? Command(ctx_, args->argv) : RedisAnswer{true, false, "builder refused"};
  }
  /// The raw EVALSHA with the given script arguments (after the two keys).
  RedisAnswer Eval(const std::string& name, const std::vector<std::string>& args,
                   const std::string& data_key = "data") {
    std::vector<std::string> argv = {"EVALSHA", sha_, "2", fence::RedisFenceKey(name), data_key};
    argv.insert(argv.end(), args.begin(), args.end());
    return Command(ctx_, argv);
  }
  std::string Recorded(const std::string& name) {
    RedisAnswer f = Command(ctx_, {"HGET", fence::RedisFenceKey(name), "fence"});
    RedisAnswer c = Command(ctx_, {"HGET", fence::RedisFenceKey(name), "cluster"});
    return f.nil ? "" : f.text + " " + c.text;
  }

  static RedisServer* server_;
  static e2e::Cluster* cluster_;
  redisContext* ctx_ = nullptr;
  std::string sha_;
};
RedisServer* RedisFence::server_ = nullptr;
e2e::Cluster* RedisFence::cluster_ = nullptr;

TEST_F(RedisFence, AWorkerPausedPastItsLeaseHasItsStaleWriteRejectedAndBsWriteStands) {
  const std::string key = "{wallet/alice}:balance";
  ASSERT_FALSE(Command(ctx_, {"SET", key, "100"}).error);
  testing::TempDir dir;
  PausedWorker a(*cluster_, dir.path(), {"A", "redis", server_->address(), "alice", "70", "3000"});
  ASSERT_TRUE(a.stopped()) << a.log();
  EXPECT_NE(a.log().find("A: balance -> OK 100"), std::string::npos) << a.log();

  auto client = ConnectClient(*cluster_);
  ASSERT_NE(client, nullptr);
  auto lease = client->GrantLease(4s, "B");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  client::LockOptions wait;
  wait.wait = 20s;
  auto lock = client->Acquire("wallet/alice", *lease, wait);
  ASSERT_TRUE(lock.ok() && lock->held()) << (lock.ok() ? "not acquired" : lock.status().ToString());
  ASSERT_GT(lock->fence(), a.fence());
  RedisAnswer read = Run(fence::RedisGet(*lock, sha_, key));
  ASSERT_FALSE(read.error) << read.text;
  EXPECT_EQ(read.text, "100");
  RedisAnswer write = Run(fence::RedisSet(*lock, sha_, key, "50"));
  ASSERT_FALSE(write.error) << write.text;

  const std::string out = a.ResumeAndFinish();
  const std::string stale = "A: withdraw 70 with fence " + std::to_string(a.fence()) +
                            " (balance 100 -> 30) -> REJECTED LOCKD_STALE lockd_fence: stale "
                            "fence " +
                            std::to_string(a.fence()) +
                            " on lock 'wallet/alice': a "
                            "holder with fence " +
                            std::to_string(lock->fence()) + " came since";
  EXPECT_NE(out.find(stale), std::string::npos) << out;
  EXPECT_NE(out.find("A: LOST the lock"), std::string::npos) << out;
  EXPECT_EQ(Command(ctx_, {"GET", key}).text, "50");
  EXPECT_EQ(Recorded("wallet/alice"), std::to_string(lock->fence()) + " " + client->cluster_id());
}

class RedisCounter : public CounterAccess {
 public:
  RedisCounter(redisContext* ctx, std::string sha) : ctx_(ctx), sha_(std::move(sha)) {}
  ~RedisCounter() override { redisFree(ctx_); }
  Access Read(const std::string& name, uint64_t f, const std::string& cluster) override {
    return Run(fence::RedisCall("GET", name, f, cluster, sha_, "{" + name + "}:n"));
  }
  Access Write(const std::string& name, uint64_t f, const std::string& cluster,
               long value) override {
    return Run(
        fence::RedisCall("SET", name, f, cluster, sha_, "{" + name + "}:n", std::to_string(value)));
  }

 private:
  Access Run(const client::Result<fence::RedisArgs>& args) {
    Access out;
    if (!args.ok()) {
      out.detail = args.status().ToString();
      return out;
    }
    RedisAnswer a = Command(ctx_, args->argv);
    if (!a.error) {
      out.outcome = Access::Outcome::kOk;
      out.value = a.nil ? 0 : std::atol(a.text.c_str());
    } else {
      out.outcome = a.text.rfind("LOCKD_STALE ", 0) == 0 ? Access::Outcome::kRejected
                                                         : Access::Outcome::kFailed;
      out.detail = a.text;
    }
    return out;
  }
  redisContext* ctx_;
  std::string sha_;
};

TEST_F(RedisFence, ConcurrentWorkersWithStaleTailsNeverLoseAnIncrement) {
  const char* soak = std::getenv("LOCKD_ADAPTERS_SOAK_SECONDS");
  // Soak: as many operations as fit in the given seconds.
  const int64_t target = soak ? INT64_MAX : 3000;
  const auto duration = soak ? std::chrono::milliseconds(std::atol(soak) * 1000) : 15000ms;
  WorkloadResult r = RunCounterWorkload(*cluster_, "counter/redis", 6, target, duration,
                                        [&]() -> std::unique_ptr<CounterAccess> {
                                          redisContext* c = server_->Connect();
                                          if (!c) return nullptr;
                                          return std::make_unique<RedisCounter>(c, sha_);
                                        });
  RedisAnswer n = Command(ctx_, {"GET", "{counter/redis}:n"});
  CheckCounterWorkload(r, n.nil ? 0 : std::atol(n.text.c_str()));
  EXPECT_GE(r.operations(), 1000) << "the workload should run thousands of operations";
}

TEST_F(RedisFence, BadInputIsAClearErrorAndWritesNothing) {
  auto client = ConnectClient(*cluster_);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->AcquireWithTtl("bad/redis", 10s).ok());
  auto lock = client->AcquireWithTtl("bad/redis", 10s);
  ASSERT_TRUE(lock.ok() && lock->held());
  ASSERT_GE(lock->fence(), 2u);
  const std::string cluster = client->cluster_id();
  const std::string f = std::to_string(lock->fence());
  ASSERT_FALSE(Eval("bad/redis", {"SET", "bad/redis", f, cluster, "before"}).error);
  const std::string recorded = Recorded("bad/redis");
  const std::string keys_before = Command(ctx_, {"DBSIZE"}).text;

  struct Case {
    std::string what;
    std::vector<std::string> args;
    std::string error;
  };
  const std::string other(32, 'e'), name = "bad/redis";
  const std::vector<Case> cases = {
      {"fence 0",
       {"SET", name, "0", cluster, "after"},
       "LOCKD_BADARG lockd_fence: fence 0 on lock 'bad/redis' is not a lockd fence"},
      {"a negative fence",
       {"SET", name, "-3", cluster, "after"},
       "LOCKD_BADARG lockd_fence: fence -3 on lock"},
      {"a non-numeric fence",
       {"SET", name, "12abc", cluster, "after"},
       "LOCKD_BADARG lockd_fence: fence '12abc' is not a number"},
      {"a fractional fence", {"SET", name, "1.5", cluster, "after"}, "is not a number"},
      {"a fence above 2^64-1",
       {"SET", name, "18446744073709551616", cluster, "after"},
       "is not a lockd fence"},
      {"a malformed cluster id",
       {"SET", name, f, "not-hex!", "after"},
       "LOCKD_BADARG lockd_fence: cluster id 'not-hex!' is not a lockd cluster id"},
      {"an empty cluster id", {"SET", name, f, "", "after"}, "is not a lockd cluster id"},
      {"another cluster's fence not above",
       {"SET", name, f, other, "after"},
       "LOCKD_CLUSTER lockd_fence: fence " + f + " of cluster " + other +
           " on lock 'bad/redis' is not above the largest fence " + f},
      {"an overlong name",
       {"SET", std::string(513, 'n'), f, cluster, "after"},
       "LOCKD_BADARG lockd_fence: lock name must be 1..512 bytes, got 513"},
      {"an empty name", {"SET", "", f, cluster, "after"}, "lock name must be 1..512 bytes, got 0"},
      {"a name with a NUL",
       {"SET", std::string("bad\0redis", 9), f, cluster, "after"},
       "LOCKD_BADARG lockd_fence: lock name holds a NUL byte"},
      {"a stale fence",
       {"SET", name, "1", cluster, "after"},
       "LOCKD_STALE lockd_fence: stale fence 1 on lock 'bad/redis'"},
      {"an unknown operation", {"DEL", name, f, cluster}, "operation must be SET or GET"},
      {"a SET without a value", {"SET", name, f, cluster}, "SET takes lock name, fence"},
      {"a GET with a value", {"GET", name, f, cluster, "x"}, "GET takes lock name, fence"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    RedisAnswer a = Eval(name, c.args);
    EXPECT_TRUE(a.error) << a.text;
    EXPECT_NE(a.text.find(c.error), std::string::npos) << a.text;
    if (c.args[0] == "SET" && c.args.size() == 5) {
      std::vector<std::string> get = c.args;
      get[0] = "GET";
      get.pop_back();
      SCOPED_TRACE("as a GET");
      RedisAnswer g = Eval(name, get);
      EXPECT_TRUE(g.error) << g.text;
      EXPECT_NE(g.text.find(c.error), std::string::npos) << g.text;
    }
  }
  // Three keys instead of two.
  RedisAnswer keys = Command(ctx_, {"EVALSHA", sha_, "3", fence::RedisFenceKey(name), "data", "x",
                                    "SET", name, f, cluster, "after"});
  EXPECT_NE(keys.text.find("LOCKD_BADARG lockd_fence: needs 2 keys"), std::string::npos)
      << keys.text;
  // Nothing was written.
  EXPECT_EQ(Command(ctx_, {"GET", "data"}).text, "before");
  EXPECT_EQ(Recorded(name), recorded);
  EXPECT_EQ(Command(ctx_, {"DBSIZE"}).text, keys_before);

  EXPECT_EQ(
      fence::RedisCall("SET", name, lock->fence(), "not-hex!", sha_, "data", "x").status().code(),
      client::StatusCode::kInvalidArgument);
  // A Lock carries the cluster that granted it, which the builders present.
  EXPECT_EQ(lock->cluster_id(), cluster);
  auto from_lock = fence::RedisGet(*lock, sha_, "data");
  ASSERT_TRUE(from_lock.ok());
  EXPECT_EQ(from_lock->argv[8], cluster);
  EXPECT_EQ(fence::RedisGet(client::Lock(), sha_, "data").status().code(),
            client::StatusCode::kInvalidArgument);
}

TEST_F(RedisFence, AnotherClustersFenceIsAdmittedOnlyAboveTheLargest) {
  const std::string old_cluster(32, 'a'), restored(32, 'b');
  const std::string name = "seat/42";
  ASSERT_FALSE(Eval(name, {"SET", name, "1000", old_cluster, "v1"}, "seat").error);
  EXPECT_NE(Eval(name, {"SET", name, "999", old_cluster, "v0"}, "seat").text.find("LOCKD_STALE"),
            std::string::npos);
  EXPECT_NE(Eval(name, {"SET", name, "1000", restored, "v2"}, "seat").text.find("LOCKD_CLUSTER"),
            std::string::npos);
  // Fences are compared exactly above 2^53, where Lua's doubles would round.
  ASSERT_FALSE(Eval(name, {"SET", name, "9007199254740993", restored, "v3"}, "seat").error);
  EXPECT_NE(Eval(name, {"SET", name, "9007199254740992", restored, "v4"}, "seat")
                .text.find("LOCKD_STALE"),
            std::string::npos);
  EXPECT_NE(Eval(name, {"GET", name, "1001", old_cluster}, "seat").text.find("LOCKD_CLUSTER"),
            std::string::npos);
  EXPECT_EQ(Recorded(name), "9007199254740993 " + restored);
  EXPECT_EQ(Command(ctx_, {"GET", "seat"}).text, "v3");
  // Leading zeros and upper-case hex name the same fence and cluster.
  RedisAnswer same = Eval(name, {"GET", name, "09007199254740993", std::string(32, 'B')}, "seat");
  EXPECT_FALSE(same.error) << same.text;
  EXPECT_EQ(same.text, "v3");
}

TEST_F(RedisFence, AnUnknownClusterWithALargerFenceIsAdmittedUnpinnedAndRefusedPinned) {
  const std::string ours(32, 'a'), unknown(32, 'c'), restored(32, 'd');
  const std::string name = "seat/pin";
  ASSERT_FALSE(Eval(name, {"SET", name, "1000", ours, "v1"}, "pin").error);
  // Pinned to our cluster: an unknown cluster is refused whatever its fence, nothing written.
  const std::vector<std::string> pin = {"ADMIT", ours + "," + restored};
  std::vector<std::string> set = {"SET", name, "5000000000000", unknown, "foreign"};
  set.insert(set.end(), pin.begin(), pin.end());
  RedisAnswer refused = Eval(name, set, "pin");
  EXPECT_NE(refused.text.find("LOCKD_ADMIT lockd_fence: cluster " + unknown +
                              " on lock 'seat/pin' is not admitted"),
            std::string::npos)
      << refused.text;
  std::vector<std::string> get = {"GET", name, "5000000000000", unknown};
  get.insert(get.end(), pin.begin(), pin.end());
  EXPECT_NE(Eval(name, get, "pin").text.find("LOCKD_ADMIT"), std::string::npos);
  EXPECT_EQ(Recorded(name), "1000 " + ours);
  EXPECT_EQ(Command(ctx_, {"GET", "pin"}).text, "v1");
  // An admitted cluster (a restore the operator listed) passes pinned, through the builder too.
  auto admitted = fence::RedisCall("SET", name, 6000000000000, restored, sha_, "pin", "v2", {},
                                   {ours, restored});
  ASSERT_TRUE(admitted.ok());
  EXPECT_EQ(admitted->argv[admitted->argv.size() - 2], "ADMIT");
  EXPECT_FALSE(Run(admitted).error);
  EXPECT_EQ(Recorded(name), "6000000000000 " + restored);
  // The pin is stored in the record: a writer of a foreign cluster, which brings its own
  // configuration (no ADMIT, or an ADMIT listing itself), is refused whatever its fence.
  EXPECT_EQ(Command(ctx_, {"HGET", fence::RedisFenceKey(name), "admit"}).text,
            ours + "," + restored);
  for (const auto& foreign : std::vector<std::vector<std::string>>{
           {"SET", name, "7000000000000", unknown, "foreign"},
           {"SET", name, "7000000000000", unknown, "foreign", "ADMIT", unknown},
           {"GET", name, "7000000000000", unknown}}) {
    SCOPED_TRACE(foreign.back());
    RedisAnswer a = Eval(name, foreign, "pin");
    EXPECT_NE(a.text.find("LOCKD_ADMIT lockd_fence: cluster " + unknown +
                          " on lock 'seat/pin' is not admitted (pinned in the fence record"),
              std::string::npos)
        << a.text;
    EXPECT_EQ(Recorded(name), "6000000000000 " + restored);
    EXPECT_EQ(Command(ctx_, {"GET", "pin"}).text, "v2");
    EXPECT_EQ(Command(ctx_, {"HGET", fence::RedisFenceKey(name), "admit"}).text,
              ours + "," + restored);
  }
  // A listed cluster passes unpinned calls, and replaces the stored list with its own.
  EXPECT_FALSE(Eval(name, {"GET", name, "6000000000000", restored}, "pin").error);
  EXPECT_FALSE(
      Eval(name, {"SET", name, "6000000000000", restored, "v3", "ADMIT", restored}, "pin").error);
  EXPECT_NE(Eval(name, {"SET", name, "7000000000000", ours, "v4", "ADMIT", ours}, "pin")
                .text.find("LOCKD_ADMIT"),
            std::string::npos);
  EXPECT_EQ(Command(ctx_, {"GET", "pin"}).text, "v3");
  // Unpinned (the default: no call ever passed ADMIT), an unknown cluster with a larger fence is
  // admitted and the record relabelled: the documented cost of admitting restores unattended.
  const std::string free = "seat/unpinned";
  ASSERT_FALSE(Eval(free, {"SET", free, "6000000000000", restored, "v1"}, "free").error);
  EXPECT_FALSE(Eval(free, {"SET", free, "7000000000000", unknown, "foreign"}, "free").error);
  EXPECT_EQ(Recorded(free), "7000000000000 " + unknown);
  EXPECT_NE(
      Eval(free, {"SET", free, "6000000000001", restored, "v3"}, "free").text.find("LOCKD_CLUSTER"),
      std::string::npos);
  // A malformed ADMIT list is bad input.
  EXPECT_NE(Eval(name, {"GET", name, "7000000000000", unknown, "ADMIT", "xyz"}, "pin")
                .text.find("LOCKD_BADARG lockd_fence: ADMIT list 'xyz'"),
            std::string::npos);
  EXPECT_EQ(fence::RedisCall("GET", name, 1, ours, sha_, "pin", {}, {}, {"nothex"}).status().code(),
            client::StatusCode::kInvalidArgument);
}

// What could fail is checked before the first write (Redis keeps a script's earlier writes when a
// later command fails), and a fence key serves one lock only.
TEST_F(RedisFence, KeyMisuseIsRefusedBeforeAnythingIsWritten) {
  const std::string cluster(16, 'a'), name = "keys/1", fk = fence::RedisFenceKey(name);
  ASSERT_FALSE(Eval(name, {"SET", name, "10", cluster, "v"}, "{keys/1}:data").error);
  ASSERT_FALSE(Command(ctx_, {"HSET", "{keys/1}:hash", "f", "x"}).error);
  const std::string recorded = Recorded(name);
  struct Case {
    std::string what, data_key;
    std::vector<std::string> args;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"fence key = data key",
       fk,
       {"SET", name, "11", cluster, "v"},
       "LOCKD_BADARG lockd_fence: the fence key and the data key are both '" + fk + "'"},
      {"a GET of a hash",
       "{keys/1}:hash",
       {"GET", name, "12", cluster},
       "LOCKD_BADARG lockd_fence: data key '{keys/1}:hash' holds a hash"},
      {"a SET over a hash",
       "{keys/1}:hash",
       {"SET", name, "12", cluster, "v"},
       "data key '{keys/1}:hash' holds a hash"},
      {"the record of another lock",
       "{keys/1}:data",
       {"SET", "keys/2", "13", cluster, "v"},
       "LOCKD_BADARG lockd_fence: fence key '" + fk + "' records lock 'keys/1', not 'keys/2'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    RedisAnswer a = Eval(name, c.args, c.data_key);
    EXPECT_TRUE(a.error) << a.text;
    EXPECT_NE(a.text.find(c.error), std::string::npos) << a.text;
    // The larger fence was not recorded.
    EXPECT_EQ(Recorded(name), recorded);
  }
  RedisAnswer f = Command(ctx_, {"HGET", fk, "lock"});
  EXPECT_EQ(f.text, name);
  EXPECT_EQ(Command(ctx_, {"GET", "{keys/1}:data"}).text, "v");
  EXPECT_EQ(Command(ctx_, {"TYPE", "{keys/1}:hash"}).text, "hash");
  // A hash that is not a lockd record (no lock field, or other fields) is not written into.
  for (const auto& fields : std::vector<std::vector<std::string>>{
           {"f", "x"},
           {"fence", "1", "cluster", cluster},
           {"fence", "1", "cluster", cluster, "lock", "keys/4", "f", "x"}}) {
    SCOPED_TRACE(fields.size());
    const std::string key = "{keys/4}:lockd-fence";
    ASSERT_FALSE(Command(ctx_, {"DEL", key}).error);
    std::vector<std::string> hset = {"HSET", key};
    hset.insert(hset.end(), fields.begin(), fields.end());
    ASSERT_FALSE(Command(ctx_, hset).error);
    RedisAnswer a = Eval("keys/4", {"SET", "keys/4", "5", cluster, "v"}, "{keys/4}:data");
    EXPECT_NE(a.text.find("LOCKD_BADARG lockd_fence: fence key '" + key + "' is a hash with"),
              std::string::npos)
        << a.text;
    EXPECT_NE(a.text.find("not a lockd fence record"), std::string::npos) << a.text;
    EXPECT_EQ(Command(ctx_, {"HLEN", key}).text, std::to_string(fields.size() / 2));
    EXPECT_TRUE(Command(ctx_, {"GET", "{keys/4}:data"}).nil);
  }
  // A fence key that is not a hash.
  ASSERT_FALSE(Command(ctx_, {"SET", "{keys/3}:lockd-fence", "x"}).error);
  EXPECT_NE(Eval("keys/3", {"SET", "keys/3", "1", cluster, "v"}, "{keys/3}:data")
                .text.find("fence key '{keys/3}:lockd-fence' holds a string"),
            std::string::npos);
  EXPECT_TRUE(Command(ctx_, {"GET", "{keys/3}:data"}).nil);
  // The builders refuse the same keys, and a name their fence key cannot hash-tag.
  EXPECT_EQ(fence::RedisCall("SET", name, 11, cluster, sha_, fk, "v").status().code(),
            client::StatusCode::kInvalidArgument);
  EXPECT_EQ(fence::RedisCall("GET", "}x", 11, cluster, sha_, "{}x}:d").status().code(),
            client::StatusCode::kInvalidArgument);
  EXPECT_TRUE(fence::RedisCall("GET", "}x", 11, cluster, sha_, "{x}:d", {}, "{x}:fence").ok());
}

TEST_F(RedisFence, TheFunctionFormBehavesAsTheScript) {
  std::ifstream in(LOCKD_REDIS_FUNCTION);
  std::stringstream library;
  library << in.rdbuf();
  ASSERT_TRUE(in) << LOCKD_REDIS_FUNCTION;
  RedisAnswer loaded = Command(ctx_, {"FUNCTION", "LOAD", "REPLACE", library.str()});
  ASSERT_FALSE(loaded.error) << loaded.text;
  EXPECT_EQ(loaded.text, "lockd_fence");
  const std::string cluster(8, 'f');
  auto set = fence::RedisCall("SET", "fn/1", 5, cluster, "", "fn-data", "x");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->argv[0], "FCALL");
  RedisAnswer ok = Run(set);
  EXPECT_FALSE(ok.error) << ok.text;
  RedisAnswer stale = Run(fence::RedisCall("SET", "fn/1", 4, cluster, "", "fn-data", "y"));
  EXPECT_NE(stale.text.find("LOCKD_STALE lockd_fence: stale fence 4 on lock 'fn/1'"),
            std::string::npos)
      << stale.text;
  RedisAnswer get = Run(fence::RedisCall("GET", "fn/1", 5, cluster, "", "fn-data"));
  EXPECT_EQ(get.text, "x");
}

}  // namespace
}  // namespace lockd::adapters_test
