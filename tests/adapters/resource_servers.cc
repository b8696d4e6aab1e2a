#include "adapters/resource_servers.h"

#include <gtest/gtest.h>
#include <pwd.h>
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
  for (const char* b : {"initdb", "pg_ctl", "postgres"}) {
    if (!Executable(PgBin() + "/" + b)) {
      return PgBin() + "/" + b +
             " is absent: install postgresql-15 (scripts/install-deps.sh) or "
             "set LOCKD_PG_BINDIR";
    }
  }
  if (geteuid() == 0 && (!getpwnam("nobody") || !Executable("/usr/sbin/runuser"))) {
    return "running as root, and there is no user 'nobody' or no runuser to run postgres as";
  }
  return "";
}

std::string PostgresServer::Run(const std::vector<std::string>& argv) {
  std::vector<std::string> full;
  if (geteuid() == 0) full = {"/usr/sbin/runuser", "-u", "nobody", "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  auto r = testing::RunCommand(full, 60s);
  if (r.exit_code == 0) return "";
  return argv[0] + " exited " + std::to_string(r.exit_code) + ": " + r.output;
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
  error_ = Run({PgBin() + "/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                "--no-sync", "--no-instructions"});
  if (!ok()) return;
  // A unix socket in our own directory and no TCP listener: nothing to collide with.
  error_ =
      Run({PgBin() + "/pg_ctl", "-D", data, "-l", dir_.path() + "/postgres.log", "-w", "-t", "60",
           "-o", "-k " + dir_.path() + " -c listen_addresses='' -c fsync=off -c max_connections=60",
           "start"});
  if (!ok()) {
    std::ifstream log(dir_.path() + "/postgres.log");
    std::stringstream s;
    s << log.rdbuf();
    error_ += "\npostgres.log:\n" + s.str();
    return;
  }
  started_ = true;
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
  if (!started_) return;
  const std::string stopped =
      Run({PgBin() + "/pg_ctl", "-D", dir_.path() + "/data", "-m", "immediate", "-w", "stop"});
  if (!stopped.empty()) ADD_FAILURE() << "could not stop PostgreSQL: " << stopped;
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
  process_ = std::make_unique<testing::Process>(
      std::vector<std::string>{RedisServerBin(), "--port", std::to_string(port_), "--bind",
                               "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                               dir_.path(), "--daemonize", "no"},
      dir_.path() + "/redis.log");
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
