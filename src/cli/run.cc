#include "cli/run.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "cli/exit_codes.h"
#include "cli/hold.h"

extern char** environ;

namespace lockd::cli {

namespace {

/// The command's environment: ours, with the grant's LOCKD_* variables replacing any inherited.
std::vector<std::string> CommandEnvironment(const client::Lock& lock) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string_view v(*e);
    if (v.starts_with("LOCKD_LOCK=") || v.starts_with("LOCKD_LEASE=") ||
        v.starts_with("LOCKD_TOKEN=") || v.starts_with("LOCKD_FENCE=")) {
      continue;
    }
    env.emplace_back(v);
  }
  env.push_back("LOCKD_LOCK=" + lock.name());
  env.push_back("LOCKD_LEASE=" + std::to_string(lock.lease_id()));
  env.push_back("LOCKD_TOKEN=" + std::to_string(lock.token()));
  env.push_back("LOCKD_FENCE=" + std::to_string(lock.fence()));
  return env;
}

/// Starts the command in a new process group with the default signal mask and dispositions;
/// its pid, or -(errno) if it could not be started.
pid_t Spawn(const std::vector<std::string>& command, std::vector<std::string> env) {
  std::vector<std::string> args = command;
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGPIPE}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0], nullptr, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  return rc == 0 ? pid : -rc;
}

int StatusCode(int wstatus) {
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
}

/// Waits up to `limit` for `pid` to end; true (with its wait status) if it did.
bool WaitFor(pid_t pid, std::chrono::milliseconds limit, int* wstatus) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    const pid_t r = waitpid(pid, wstatus, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    usleep(10'000);
  }
}

}  // namespace

int RunUnderLock(const CommandContext& c, const RunArgs& a) {
  if (a.command.empty()) {
    c.err << "lockctl: run needs a command after --\n";
    return kExitUsage;
  }
  HeldLock h;
  if (int code = AcquireToHold(c, a.lock, h); code != kExitOk) {
    if (code == kExitNotFound) c.err << "lockctl: not acquired: " << a.lock.name << " is held\n";
    return code;
  }
  // The loss is told to the main loop below by a signal: an OnLost callback must not block.
  h.lock.OnLost([](const std::string&) { kill(getpid(), SIGUSR1); });

  const pid_t child = Spawn(a.command, CommandEnvironment(h.lock));
  if (child < 0) {
    c.err << "lockctl: cannot run " << a.command[0] << ": " << std::strerror(-child) << "\n";
    (void)h.lock.Release();
    (void)h.lease->Revoke();
    return -child == ENOENT ? kExitNoCommand : kExitCannotExec;
  }

  sigset_t wake;
  sigemptyset(&wake);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1}) sigaddset(&wake, s);
  // A safety net: held() also decides a loss at valid_until should a signal go astray.
  const timespec poll{0, 200'000'000};
  int wstatus = 0;
  while (true) {
    const int sig = sigtimedwait(&wake, nullptr, &poll);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      kill(-child, sig);  // the command decides what an interrupt means; we wait for it
      continue;
    }
    const pid_t r = waitpid(child, &wstatus, WNOHANG);
    if (r == child) break;
    if (!h.lock.held()) {
      c.err << "lockctl: lost " << a.lock.name << " (" << h.lock.lost_reason()
            << "); stopping the command\n";
      kill(-child, SIGTERM);
      if (!WaitFor(child, a.grace, &wstatus)) {
        c.err << "lockctl: the command did not stop within " << a.grace.count()
              << " ms of SIGTERM; SIGKILL\n";
        kill(-child, SIGKILL);
        (void)WaitFor(child, std::chrono::hours(1), &wstatus);
      }
      kill(-child, SIGKILL);  // whatever the command left running in its group
      (void)h.lease->Revoke();
      return kExitLockLost;
    }
  }
  const int code = StatusCode(wstatus);
  if (client::Status s = h.lock.Release(); !s.ok()) {
    c.err << "lockctl: release failed: " << s.ToString() << "\n";
  }
  (void)h.lease->Revoke();
  return code;
}

}  // namespace lockd::cli
