#include "support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace lockd::testing {
namespace {

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

Process::Process(std::vector<std::string> argv, std::string log_path)
    : Process(std::move(argv), std::move(log_path), SpawnOptions{}) {}

Process::Process(std::vector<std::string> argv, std::string log_path, const SpawnOptions& options)
    : own_group_(options.own_process_group), log_path_(std::move(log_path)) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<std::string> env_entries;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('=') + 1);
    bool replaced = false;
    for (const auto& extra : options.env) replaced |= extra.rfind(name, 0) == 0;
    if (!replaced) env_entries.push_back(entry);
  }
  env_entries.insert(env_entries.end(), options.env.begin(), options.env.end());
  std::vector<char*> envp;
  for (auto& e : env_entries) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // The log is opened before any change of user, so it can stay where the test wants it.
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    if (options.own_process_group) setpgid(0, 0);
    if (options.gid >= 0 && (setgroups(0, nullptr) != 0 || setgid(options.gid) != 0)) _exit(126);
    if (options.uid >= 0 && setuid(options.uid) != 0) _exit(126);
    // After the change of user: a credential change clears the death signal.
    if (options.death_signal != 0) {
      prctl(PR_SET_PDEATHSIG, options.death_signal);
      if (getppid() != parent) _exit(127);  // the parent died before the prctl
    }
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) _exit(126);
    // Unblock everything the test runner may have blocked, so SIGTERM reaches the child.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  // Also from the parent, so a signal to the group right after this cannot miss the child.
  if (options.own_process_group) setpgid(pid_, pid_);
}

Process::~Process() {
  Kill();
}

bool Process::running() {
  if (exit_code_) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = DecodeWaitStatus(status);
    return false;
  }
  return true;
}

void Process::Signal(int sig) {
  if (running()) kill(pid_, sig);
}

void Process::SignalGroup(int sig) {
  if (own_group_ && pid_ > 0) kill(-pid_, sig);
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  WaitFor([this] { return !running(); }, timeout);
  return exit_code_;
}

void Process::Kill() {
  if (pid_ <= 0 || exit_code_) return;
  kill(pid_, SIGKILL);
  int status = 0;
  if (waitpid(pid_, &status, 0) == pid_) exit_code_ = DecodeWaitStatus(status);
}

std::string Process::ReadLog() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  TempDir dir;
  const std::string log = dir.path() + "/out";
  Process p(argv, log);
  CommandResult r;
  auto code = p.Wait(timeout);
  if (!code) {
    p.Kill();
    r.exit_code = -1;
  } else {
    r.exit_code = *code;
  }
  r.output = p.ReadLog();
  return r;
}

std::vector<int> FreePorts(int n) {
  std::vector<int> fds, ports;
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("cannot bind a loopback port");
    }
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  return ports;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/lockd-test-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace lockd::testing
