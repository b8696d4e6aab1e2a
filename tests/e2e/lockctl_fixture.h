// lockctl as a child process, and the fixture of one 3-node cluster shared by a test binary
// (tests/e2e/lockctl_*_test.cc). Every lockctl a test starts is killed and reaped by its
// LockctlProcess's destructor, and every run is bounded by a timeout.
#pragma once

#include <fcntl.h>
#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "e2e/cluster_harness.h"

extern char** environ;

namespace lockd::e2e {

constexpr uint64_t kLongTtl = 120'000;
constexpr v1::LockMode kEx = v1::EXCLUSIVE;
constexpr v1::LockMode kSh = v1::SHARED;

// ------------------------------------------------------------------------------------------
// lockctl as a child process
// ------------------------------------------------------------------------------------------

/// One lockctl process: stdout and stderr each captured through a pipe by a reader thread.
/// The destructor SIGKILLs it if it still runs, reaps it and joins the reader.
class LockctlProcess {
 public:
  /// Starts LOCKCTL_BINARY with `args`. `env_endpoints`: the LOCKD_ENDPOINTS it sees (nullopt:
  /// none; the test process's own value is never passed on).
  /// `stdin_fd`: its standard input (a terminal, for a confirmation); -1: /dev/null.
  explicit LockctlProcess(const std::vector<std::string>& args,
                          std::optional<std::string> env_endpoints = std::nullopt,
                          int stdin_fd = -1) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (stdin_fd >= 0) {
      posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
    } else {
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGINT, SIGTERM, SIGPIPE}) sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<std::string> argv_s{LOCKCTL_BINARY};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e) {
      if (std::strncmp(*e, "LOCKD_ENDPOINTS=", 16) != 0) env_s.emplace_back(*e);
    }
    if (env_endpoints) env_s.push_back("LOCKD_ENDPOINTS=" + *env_endpoints);
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);

    const int rc = posix_spawn(&pid_, LOCKCTL_BINARY, &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
      ADD_FAILURE() << "posix_spawn " << LOCKCTL_BINARY << ": " << std::strerror(rc);
      pid_ = -1;
      close(out[0]);
      close(err[0]);
      return;
    }
    reader_ = std::thread([this, o = out[0], e = err[0]] { Read(o, e); });
  }

  ~LockctlProcess() {
    if (pid_ > 0 && !exit_code_) {
      kill(pid_, SIGKILL);
      int status = 0;
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
    if (reader_.joinable()) reader_.join();
  }
  LockctlProcess(const LockctlProcess&) = delete;
  LockctlProcess& operator=(const LockctlProcess&) = delete;

  void Signal(int sig) {
    if (pid_ > 0 && !exit_code_) kill(pid_, sig);
  }

  /// Waits up to `timeout` for the exit; its code (128 + signal if killed by one), or nullopt.
  /// After the exit, everything it wrote has been read.
  std::optional<int> Wait(Ms timeout) {
    if (pid_ <= 0) return std::nullopt;
    const auto deadline = Clock::now() + timeout;
    while (!exit_code_) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(10ms);
    }
    if (reader_.joinable()) reader_.join();  // the pipes close with the process
    return exit_code_;
  }

  bool running() {
    if (pid_ <= 0 || exit_code_) return false;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return false;
    }
    return true;
  }

  /// Waits until stdout holds a complete line (up to `timeout`); the first line, or "".
  std::string WaitFirstLine(Ms timeout) {
    std::string line;
    testing::WaitFor(
        [&] {
          std::lock_guard lock(mu_);
          const auto nl = out_.find('\n');
          if (nl == std::string::npos) return false;
          line = out_.substr(0, nl);
          return true;
        },
        timeout);
    return line;
  }

  std::string out() {
    std::lock_guard lock(mu_);
    return out_;
  }
  std::string err() {
    std::lock_guard lock(mu_);
    return err_;
  }

 private:
  void Read(int out_fd, int err_fd) {
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open = 2;
    char buf[4096];
    while (open > 0) {
      if (poll(fds, 2, 1000) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = read(fds[i].fd, buf, sizeof buf);
        if (n > 0) {
          std::lock_guard lock(mu_);
          (i == 0 ? out_ : err_).append(buf, static_cast<size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          close(fds[i].fd);
          fds[i].fd = -1;
          --open;
        }
      }
    }
    for (auto& f : fds) {
      if (f.fd >= 0) close(f.fd);
    }
  }

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::thread reader_;
  std::mutex mu_;
  std::string out_, err_;
};

struct RunResult {
  int code = -1;  ///< -1: it did not exit within the timeout (and was killed)
  std::string out, err;
};

inline std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  return os << "exit " << r.code << "\n--- stdout ---\n" << r.out << "--- stderr ---\n" << r.err;
}

/// Runs lockctl to completion, at most `timeout`.
inline RunResult RunLockctl(const std::vector<std::string>& args, Ms timeout = 30s,
                            std::optional<std::string> env_endpoints = std::nullopt) {
  LockctlProcess p(args, std::move(env_endpoints));
  RunResult r;
  auto code = p.Wait(timeout);
  if (!code) {
    p.Signal(SIGKILL);
    p.Wait(10s);
    ADD_FAILURE() << "lockctl did not exit within " << timeout.count() << " ms";
  }
  r.code = code.value_or(-1);
  r.out = p.out();
  r.err = p.err();
  return r;
}

/// Parses lockctl's JSON into `M`; a failed assertion (and an empty message) if it does not parse.
template <typename M>
M Parse(const std::string& json) {
  M m;
  auto s = google::protobuf::util::JsonStringToMessage(json, &m);
  EXPECT_TRUE(s.ok()) << "not a " << M::descriptor()->full_name() << ": " << s.ToString() << "\n"
                      << json;
  return m;
}

/// A string field of a JSON object (parsed as google.protobuf.Struct); "" if absent.
inline std::string Field(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end()) return "";
  if (it->second.has_string_value()) return it->second.string_value();
  if (it->second.has_bool_value()) return it->second.bool_value() ? "true" : "false";
  return "";
}

inline uint64_t U64(const std::string& s) {
  return s.empty() ? 0 : std::stoull(s);
}

// ------------------------------------------------------------------------------------------
// Fixture: one 3-node cluster for the whole suite (tests use distinct lock names)
// ------------------------------------------------------------------------------------------

class LockctlOnCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new Cluster();
    leader_ = cluster_->WaitForReady();
    // Every node has applied the leader's first entry, so whichever node lockctl asks knows a
    // commit index (a follower learns it with the next heartbeat).
    testing::WaitFor(
        [] {
          for (int i = 0; i < cluster_->size(); ++i) {
            v1::StatusResponse s;
            if (!cluster_->Status(i, &s).ok() || s.applied_index() == 0) return false;
          }
          return true;
        },
        20s);
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    ASSERT_GE(leader_, 0) << "no leader within 30 s\n" << cluster_->StatusSummary();
    client_ = std::make_unique<Client>(*cluster_);
  }

  Cluster& cluster() { return *cluster_; }
  Client& client() { return *client_; }

  /// Every node's client address, comma-separated.
  static std::string Endpoints() {
    std::string e;
    for (int i = 0; i < cluster_->size(); ++i) e += (i ? "," : "") + cluster_->client_addr(i);
    return e;
  }

  /// lockctl --endpoints <all nodes> [--json] args...
  RunResult Run(std::vector<std::string> args, bool json = false, Ms timeout = 30s) {
    args.insert(args.begin(), {"--endpoints", Endpoints()});
    if (json) args.insert(args.begin() + 2, "--json");
    return RunLockctl(args, timeout);
  }
  std::unique_ptr<LockctlProcess> Start(std::vector<std::string> args, bool json = false) {
    args.insert(args.begin(), {"--endpoints", Endpoints()});
    if (json) args.insert(args.begin() + 2, "--json");
    return std::make_unique<LockctlProcess>(args);
  }

  /// Acquires `name` through the API for a new lease with `label`; the grant.
  v1::AcquireResponse Hold(const std::string& name, const std::string& label,
                           v1::LockMode mode = kEx, uint64_t ttl = kLongTtl) {
    const uint64_t lease = client().MustGrantLease(ttl, label);
    v1::AcquireResponse a;
    auto info = client().Acquire(name, lease, mode, 0, &a);
    EXPECT_TRUE(info.status.ok()) << Describe(info.status);
    EXPECT_TRUE(a.acquired()) << name << " is held: " << ToString(client().MustGetLock(name));
    leases_.push_back(lease);
    return a;
  }

  /// Polls the API until `pred(lock)` holds for `name`.
  bool WaitLock(const std::string& name, const std::function<bool(const v1::LockInfo&)>& pred,
                Ms timeout = 20s) {
    return testing::WaitFor(
        [&] {
          v1::GetLockResponse r;
          return client().GetLock(name, &r).status.ok() && pred(r.lock());
        },
        timeout);
  }

  /// Labels of every lease the cluster knows.
  std::vector<std::string> LeaseLabels() {
    std::vector<v1::LeaseInfo> all;
    auto info = client().ListAllLeases(&all);
    EXPECT_TRUE(info.status.ok()) << Describe(info.status);
    std::vector<std::string> labels;
    for (const auto& l : all) labels.push_back(l.label());
    return labels;
  }

  void TearDown() override {
    for (uint64_t l : leases_) (void)client().Revoke(l);
    // The cluster outlives the test (it keeps the logs of a failed test only when its own
    // destructor sees the failure), so a failed test prints the nodes' logs here.
    if (HasFailure()) std::cerr << cluster().LogTails();
  }

  inline static Cluster* cluster_ = nullptr;
  inline static int leader_ = -1;
  std::unique_ptr<Client> client_;
  std::vector<uint64_t> leases_;  ///< revoked at the end of the test
};

}  // namespace lockd::e2e
