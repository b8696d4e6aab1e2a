// Test support for tests that run real processes: spawn a child with its output captured to a
// file, signal it, wait for it with a bound, and pick free loopback ports. Every Process kills
// (SIGKILL) and reaps its child in its destructor, so a failing test never leaves one behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace lockd::testing {

/// How a Process's child is set up between fork and exec (all optional).
struct SpawnOptions {
  /// Sent to the child when the thread that started it dies (PR_SET_PDEATHSIG): a crashed or
  /// timed-out test takes its servers with it instead of leaving them running. 0: none.
  int death_signal = 0;
  /// Run as this user and group (setgid/setuid, supplementary groups dropped); -1: unchanged.
  int uid = -1;
  int gid = -1;
  /// Its own process group (pgid = pid), so the test can signal it and everything it starts.
  bool own_process_group = false;
  /// Working directory of the child; "" keeps the test's.
  std::string cwd;
  /// "NAME=value" entries added to (or replacing in) the inherited environment.
  std::vector<std::string> env;
};

class Process {
 public:
  /// Starts `argv[0]` with `argv`; stdout and stderr go to `log_path` (appended).
  Process(std::vector<std::string> argv, std::string log_path);
  Process(std::vector<std::string> argv, std::string log_path, const SpawnOptions& options);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int sig);
  /// Sends `sig` to the child's process group (SpawnOptions::own_process_group).
  void SignalGroup(int sig);
  /// Waits up to `timeout` for exit; the exit code (128+signal if killed), or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  /// SIGKILL and reap.
  void Kill();
  const std::string& log_path() const { return log_path_; }
  std::string ReadLog() const;

 private:
  pid_t pid_ = -1;
  bool own_group_ = false;
  std::optional<int> exit_code_;
  std::string log_path_;
};

/// Runs a command to completion (bounded by `timeout`), returning exit code and stdout+stderr.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

/// `n` distinct loopback ports that were free a moment ago (bound, then released).
std::vector<int> FreePorts(int n);

/// A fresh directory under $TMPDIR (or /tmp), removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Polls `pred` every 20 ms until it holds or `timeout` passes.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    struct timespec ts {
      0, 20'000'000
    };
    nanosleep(&ts, nullptr);
  }
  return pred();
}

}  // namespace lockd::testing
