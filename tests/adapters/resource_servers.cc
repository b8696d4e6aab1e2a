#include "adapters/resource_servers.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace lockd::adapters_test {
namespace {

using namespace std::chrono_literals;

std::string PgBin() {
  const char* dir = std::getenv("LOCKD_PG_BINDIR");
  return dir && *dir ? dir : "/usr/lib/postgresql/15/bin";
}

bool Executable(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

std::string RedisServerBin() {
  for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
    if (Executable(p)) return p;
  }
  return "";
}

}  // namespace

std::string SourceFile(const std::string& relative) {
  std::ifstream in(std::string(LOCKD_SOURCE_DIR) + "/" + relative);
  std::stringstream out;
  out << in.rdbuf();
  return in ? out.str() : "";
}

// --- PostgreSQL ---

std::string PostgresServer::Missing() {
  for (const char* b : {"initdb", "postgres"}) {
    if (!Executable(PgBin() + "/" + b)) {
      return PgBin() + "/" + b +
             " is absent: install postgresql-15 (scripts/install-deps.sh) or "
             "set LOCKD_PG_BINDIR";
    }
  }
  if (geteuid() == 0 && !getpwnam("nobody")) {
    return "running as root, and there is no user 'nobody' to run postgres as";
  }
  return "";
}

testing::SpawnOptions PostgresServer::Spawn() const {
  testing::SpawnOptions options;
  // SIGQUIT is postgres's immediate shutdown: a dead test takes its postmaster with it.
  options.death_signal = SIGQUIT;
  options.cwd = dir_.path();
  if (geteuid() == 0) {
    const passwd* nobody = getpwnam("nobody");
    options.uid = static_cast<int>(nobody->pw_uid);
    options.gid = static_cast<int>(nobody->pw_gid);
  }
  return options;
}

PostgresServer::PostgresServer() {
  if (geteuid() == 0) {
    const passwd* nobody = getpwnam("nobody");
    if (!nobody || chown(dir_.path().c_str(), nobody->pw_uid, nobody->pw_gid) != 0) {
      error_ = "cannot hand " + dir_.path() + " to user nobody";
      return;
    }
  }
  const std::string data = dir_.path() + "/data";
  {
    testing::Process initdb({PgBin() + "/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E",
                             "UTF8", "--no-sync", "--no-instructions"},
                            dir_.path() + "/initdb.log", Spawn());
    const auto code = initdb.Wait(60s);
    if (code != std::optional<int>(0)) {
      error_ = "initdb " + (code ? "exited " + std::to_string(*code) : std::string("timed out")) +
               ": " + initdb.ReadLog();
      return;
    }
  }
  // In the foreground, as our child (pg_ctl would detach it from us): stopped by the destructor,
  // or by its death signal if the test dies first. A unix socket in our own directory and no TCP
  // listener: nothing to collide with.
  postgres_ = std::make_unique<testing::Process>(
      std::vector<std::string>{PgBin() + "/postgres", "-D", data, "-k", dir_.path(), "-c",
                               "listen_addresses=", "-c", "fsync=off", "-c", "max_connections=60"},
      dir_.path() + "/postgres.log", Spawn());
  const bool up = testing::WaitFor(
      [&] { return !postgres_->running() || PQping(conninfo().c_str()) == PQPING_OK; }, 60s);
  if (!up || !postgres_->running()) {
    error_ = std::string("postgres did not come up") + (up ? " (it exited)" : " in 60 s") +
             "\npostgres.log:\n" + postgres_->ReadLog();
    return;
  }
  PGconn* conn = PQconnectdb(conninfo().c_str());
  const std::string sql = SourceFile("adapters/postgresql/lockd_fence.sql");
  if (PQstatus(conn) != CONNECTION_OK) {
    error_ = std::string("cannot connect: ") + PQerrorMessage(conn);
  } else if (sql.empty()) {
    error_ = "adapters/postgresql/lockd_fence.sql is unreadable";
  } else {
    PGresult* r = PQexec(conn, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      error_ = std::string("lockd_fence.sql failed: ") + PQresultErrorMessage(r);
    }
    PQclear(r);
  }
  PQfinish(conn);
}

PostgresServer::~PostgresServer() {
  if (!postgres_) return;
  // SIGINT: fast shutdown (ends the sessions, no waiting for clients); SIGKILL if it hangs.
  postgres_->Signal(SIGINT);
  if (!postgres_->Wait(20s)) {
    ADD_FAILURE() << "PostgreSQL did not stop in 20 s; killed";
    postgres_->Kill();
  }
}

std::string PostgresServer::conninfo() const {
  return "host=" + dir_.path() + " user=postgres dbname=postgres connect_timeout=10";
}

PGconn* PostgresServer::Connect() const {
  PGconn* conn = PQconnectdb(conninfo().c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    ADD_FAILURE() << "PostgreSQL refused a connection: " << PQerrorMessage(conn);
    PQfinish(conn);
    return nullptr;
  }
  // The notices of idempotent DDL are noise in test output.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  return conn;
}

PgAnswer Exec(PGconn* conn, const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PGresult* r = PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0);
  PgAnswer a;
  const auto status = PQresultStatus(r);
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    if (PQntuples(r) > 0 && PQnfields(r) > 0) a.value = PQgetvalue(r, 0, 0);
  } else {
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char* message = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    a.sqlstate = state ? state : "?????";
    a.message = message ? message : PQerrorMessage(conn);
  }
  PQclear(r);
  return a;
}

// --- Redis ---

std::string RedisServer::Missing() {
  if (RedisServerBin().empty()) {
    return "redis-server is absent: install redis-server (scripts/install-deps.sh)";
  }
  return "";
}

RedisServer::RedisServer() {
  port_ = testing::FreePorts(1)[0];
  testing::SpawnOptions spawn;
  spawn.death_signal = SIGTERM;  // a dead test takes its redis-server with it
  process_ = std::make_unique<testing::Process>(
      std::vector<std::string>{RedisServerBin(), "--port", std::to_string(port_), "--bind",
                               "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                               dir_.path(), "--daemonize", "no"},
      dir_.path() + "/redis.log", spawn);
  const bool up = testing::WaitFor(
      [&] {
        if (!process_->running()) return true;
        redisContext* c = Connect();
        if (!c) return false;
        const RedisAnswer pong = Command(c, {"PING"});
        redisFree(c);
        return !pong.error && pong.text == "PONG";
      },
      20s);
  if (!up || !process_->running()) {
    error_ = "redis-server did not come up on port " + std::to_string(port_) + ": " +
             process_->ReadLog();
  }
}

RedisServer::~RedisServer() {
  if (!process_) return;
  process_->Signal(SIGTERM);
  if (!process_->Wait(10s)) process_->Kill();
}

redisContext* RedisServer::Connect() const {
  timeval timeout{5, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, timeout);
  if (c && c->err) {
    redisFree(c);
    return nullptr;
  }
  return c;
}

RedisAnswer Command(redisContext* ctx, const std::vector<std::string>& argv) {
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(args.size()), args.data(), lengths.data()));
  RedisAnswer a;
  if (!r) {
    a.error = true;
    a.text = std::string("connection: ") + ctx->errstr;
    return a;
  }
  switch (r->type) {
    case REDIS_REPLY_ERROR:
      a.error = true;
      a.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      a.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      a.text = std::to_string(r->integer);
      break;
    case REDIS_REPLY_NIL:
      a.nil = true;
      break;
    default:
      a.text = "(reply type " + std::to_string(r->type) + ")";
  }
  freeReplyObject(r);
  return a;
}

}  // namespace lockd::adapters_test
