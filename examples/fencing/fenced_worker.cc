// The wallet worker of examples/wallet, with the wallet kept in PostgreSQL or Redis and the fence
// checked there by lockd's adapters (adapters/, docs/fencing.md). It takes the lock
// "wallet/<account>", reads the balance with a fenced read, "thinks" for <think ms> (where the demo
// SIGSTOPs it past its lease), then writes balance − amount with a fenced write. A worker paused
// past its lease while another withdrew would overwrite that withdrawal; the fence check in the
// database refuses it instead. Endpoints come from $LOCKD_ENDPOINTS.
//
// Usage: fenced_worker <name> postgres <conninfo> <account> <amount> [think ms]
//        fenced_worker <name> redis <host:port> <account> <amount> [think ms]
// PostgreSQL: adapters/postgresql/lockd_fence.sql installed and a table
//   wallet(account text PRIMARY KEY, balance bigint). Redis: the balance at key
//   "{wallet/<account>}:balance"; the script is read from $LOCKD_FENCE_LUA (default: the
//   source tree's adapters/redis/lockd_fence.lua) and loaded with SCRIPT LOAD.
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <lockd/client.h>
#include <lockd/fence_adapters.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace {

/// "OK <value>" or "REJECTED <SQLSTATE>: <message>" / "REJECTED <Redis error>".
using Answer = std::string;

class Wallet {
 public:
  virtual ~Wallet() = default;
  // The builders present the lock's fence with the cluster that granted it (Lock::cluster_id()).
  virtual Answer Read(const lockd::client::Lock& lock) = 0;
  virtual Answer Write(const lockd::client::Lock& lock, long balance) = 0;
};

/// The check and the access in one transaction: the check's row lock is held until COMMIT.
class PostgresWallet : public Wallet {
 public:
  PostgresWallet(const std::string& conninfo, std::string account)
      : conn_(PQconnectdb(conninfo.c_str())), account_(std::move(account)) {}
  ~PostgresWallet() override { PQfinish(conn_); }
  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }

  Answer Read(const lockd::client::Lock& lock) override {
    return InTransaction(lock, lockd::fence::Access::kRead,
                         "SELECT balance FROM wallet WHERE account = $1", {account_});
  }
  Answer Write(const lockd::client::Lock& lock, long balance) override {
    return InTransaction(lock, lockd::fence::Access::kWrite,
                         "UPDATE wallet SET balance = $2 WHERE account = $1 RETURNING balance",
                         {account_, std::to_string(balance)});
  }

 private:
  Answer InTransaction(const lockd::client::Lock& lock, lockd::fence::Access access,
                       const char* sql, const std::vector<std::string>& params) {
    auto check = lockd::fence::PostgresCall(lock, access);
    if (!check.ok()) return "REJECTED " + check.status().ToString();
    Exec("BEGIN", {});
    std::string answer = Exec(check->sql.c_str(), check->params);
    if (answer.rfind("OK", 0) == 0) answer = Exec(sql, params);
    Exec(answer.rfind("OK", 0) == 0 ? "COMMIT" : "ROLLBACK", {});
    return answer;
  }
  Answer Exec(const char* sql, const std::vector<std::string>& params) {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    PGresult* r = PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr, values.data(),
                               nullptr, nullptr, 0);
    Answer answer;
    const auto status = PQresultStatus(r);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      answer = "OK";
      if (PQntuples(r) > 0) answer += std::string(" ") + PQgetvalue(r, 0, 0);
    } else {
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      const char* message = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
      answer = std::string("REJECTED ") + (state ? state : "?") + ": " +
               (message ? message : PQerrorMessage(conn_));
    }
    PQclear(r);
    return answer;
  }

  PGconn* conn_;
  std::string account_;
};

/// One EVALSHA per access: Redis runs the script atomically, check and command together.
class RedisWallet : public Wallet {
 public:
  RedisWallet(const std::string& host, int port, const std::string& account)
      : ctx_(redisConnect(host.c_str(), port)), key_("{wallet/" + account + "}:balance") {}
  ~RedisWallet() override {
    if (ctx_) redisFree(ctx_);
  }
  bool Load(const std::string& script_path) {
    if (!ctx_ || ctx_->err) return false;
    std::ifstream in(script_path);
    std::stringstream script;
    script << in.rdbuf();
    if (!in) return false;
    auto* r = static_cast<redisReply*>(
        redisCommand(ctx_, "SCRIPT LOAD %b", script.str().data(), script.str().size()));
    if (r && r->type == REDIS_REPLY_STRING) sha_.assign(r->str, r->len);
    if (r) freeReplyObject(r);
    return !sha_.empty();
  }

  Answer Read(const lockd::client::Lock& lock) override {
    return Run(lockd::fence::RedisGet(lock, sha_, key_));
  }
  Answer Write(const lockd::client::Lock& lock, long balance) override {
    return Run(lockd::fence::RedisSet(lock, sha_, key_, std::to_string(balance)));
  }

 private:
  Answer Run(const lockd::client::Result<lockd::fence::RedisArgs>& call) {
    if (!call.ok()) return "REJECTED " + call.status().ToString();
    auto argv = call->Argv();  // hiredis 0.14 takes a non-const array
    const auto lengths = call->Lengths();
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lengths.data()));
    if (!r) return std::string("REJECTED connection: ") + ctx_->errstr;
    Answer answer;
    if (r->type == REDIS_REPLY_ERROR) {
      answer = "REJECTED " + std::string(r->str, r->len);
    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
      answer = r->type == REDIS_REPLY_STATUS && std::string(r->str, r->len) == "OK"
                   ? "OK"
                   : "OK " + std::string(r->str, r->len);
    } else {
      answer = "OK (nil)";
    }
    freeReplyObject(r);
    return answer;
  }

  redisContext* ctx_;
  std::string key_, sha_;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: fenced_worker <name> postgres|redis <conninfo|host:port> <account> "
                 "<amount> [think ms]\n");
    return 2;
  }
  const std::string me = argv[1], kind = argv[2], where = argv[3], account = argv[4];
  const long amount = std::atol(argv[5]);
  const auto think = std::chrono::milliseconds(argc > 6 ? std::atol(argv[6]) : 0);

  std::unique_ptr<Wallet> wallet;
  if (kind == "postgres") {
    auto pg = std::make_unique<PostgresWallet>(where, account);
    if (!pg->ok()) {
      std::printf("%s: cannot connect to PostgreSQL at '%s'\n", me.c_str(), where.c_str());
      return 2;
    }
    wallet = std::move(pg);
  } else if (kind == "redis") {
    const auto colon = where.rfind(':');
    auto redis = std::make_unique<RedisWallet>(where.substr(0, colon),
                                               std::atoi(where.substr(colon + 1).c_str()), account);
    const char* script = std::getenv("LOCKD_FENCE_LUA");
    if (!redis->Load(script ? script : LOCKD_FENCE_LUA)) {
      std::printf("%s: cannot load the fence script into Redis at %s\n", me.c_str(), where.c_str());
      return 2;
    }
    wallet = std::move(redis);
  } else {
    std::fprintf(stderr, "fenced_worker: unknown resource '%s'\n", kind.c_str());
    return 2;
  }

  auto client = lockd::client::Client::Connect({});
  if (!client.ok()) return 2;
  auto lease = (*client)->GrantLease(2s, "wallet-" + me);
  if (!lease.ok()) {
    std::printf("%s: no lease: %s\n", me.c_str(), lease.status().ToString().c_str());
    return 1;
  }
  lockd::client::LockOptions options;
  options.wait = 30s;
  auto lock = (*client)->Acquire("wallet/" + account, *lease, options);
  if (!lock.ok() || !lock->held()) {
    std::printf("%s: did not get the lock: %s\n", me.c_str(),
                lock.ok() ? "held by another worker" : lock.status().ToString().c_str());
    return 1;
  }
  lock->OnLost([me](const std::string& why) {
    std::printf("%s: LOST the lock: %s\n", me.c_str(), why.c_str());
    std::fflush(stdout);
  });
  std::printf("%s: acquired wallet/%s, fence %llu\n", me.c_str(), account.c_str(),
              static_cast<unsigned long long>(lock->fence()));
  const Answer read = wallet->Read(*lock);
  std::printf("%s: balance -> %s\n", me.c_str(), read.c_str());
  if (read.rfind("OK ", 0) != 0) return 1;
  const long balance = std::atol(read.c_str() + 3);
  if (lock->held()) {
    std::printf("%s: lock still held, withdrawing %ld after thinking %lld ms\n", me.c_str(), amount,
                static_cast<long long>(think.count()));
    std::fflush(stdout);
    std::this_thread::sleep_for(think);  // a GC pause would strike here, after the check
    const Answer done = wallet->Write(*lock, balance - amount);
    std::printf("%s: withdraw %ld with fence %llu (balance %ld -> %ld) -> %s\n", me.c_str(), amount,
                static_cast<unsigned long long>(lock->fence()), balance, balance - amount,
                done.c_str());
  }
  std::printf("%s: lock held at exit: %s\n", me.c_str(), lock->held() ? "yes" : "no");
  std::fflush(stdout);
  return 0;
}
