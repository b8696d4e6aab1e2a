// The protected resources of the adapter tests, started and stopped by the tests: a PostgreSQL
// instance (initdb + postgres in a temporary directory, on a unix socket there, no TCP) and a
// redis-server on a free loopback port. Each reports why it could not start; a test skips only
// when the server's binaries are absent (Missing()), and fails on any other start-up problem.
//
// Both servers run in the foreground as children of the test with a parent-death signal, so a
// test that crashes, aborts or is killed by its ctest timeout takes them with it.
//
// PostgreSQL refuses to run as root, and CI runs the tests as root: then the data directory is
// handed to the unprivileged user "nobody" and initdb and postgres run as that user (setuid in
// the forked child). fsync is off: these instances hold only test data.
#pragma once

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/process.h"

namespace lockd::adapters_test {

class PostgresServer {
 public:
  /// Why the binaries are unusable ("" when present); the test skips with this message.
  static std::string Missing();
  /// Starts an instance and installs adapters/postgresql/lockd_fence.sql; `error()` says why not.
  PostgresServer();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  /// libpq connection string of the instance.
  std::string conninfo() const;
  /// A new connection (the caller PQfinish()es it); nullptr with a failed assertion if refused.
  PGconn* Connect() const;

 private:
  testing::SpawnOptions Spawn() const;  ///< as nobody when root, with a death signal
  testing::TempDir dir_;
  std::unique_ptr<testing::Process> postgres_;
  std::string error_;
};

/// One libpq result: the SQLSTATE ("" on success), the primary message, the first value.
struct PgAnswer {
  std::string sqlstate;
  std::string message;
  std::string value;
  bool ok() const { return sqlstate.empty(); }
};
PgAnswer Exec(PGconn* conn, const std::string& sql, const std::vector<std::string>& params = {});

class RedisServer {
 public:
  static std::string Missing();
  RedisServer();
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  /// A new connection (the caller redisFree()s it).
  redisContext* Connect() const;

 private:
  testing::TempDir dir_;
  std::unique_ptr<testing::Process> process_;
  int port_ = 0;
  std::string error_;
};

/// One hiredis reply flattened: an error ("LOCKD_STALE ..."), a string, nil, or an integer.
struct RedisAnswer {
  bool error = false;
  bool nil = false;
  std::string text;
};
RedisAnswer Command(redisContext* ctx, const std::vector<std::string>& argv);

/// The contents of a file of the source tree (adapters/...), "" if unreadable.
std::string SourceFile(const std::string& relative);

}  // namespace lockd::adapters_test
