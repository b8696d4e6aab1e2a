#include "faults/netns/network.h"

#include <linux/magic.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>

namespace lockd::faults {
namespace {

constexpr const char* kIp = "/usr/sbin/ip";
constexpr const char* kNft = "/usr/sbin/nft";

// --- the signal handler's view of the live network --------------------------------------------
// A SIGINT/SIGTERM handler may only use async-signal-safe calls: it SIGKILLs the registered pids
// and runs a teardown script prepared here in advance (_Fork + execve + waitpid), then re-raises.
constexpr size_t kMaxPids = 64;
std::array<std::atomic<pid_t>, kMaxPids> g_pids{};
char g_script[8192];
std::atomic<bool> g_script_set{false};
std::mutex g_handler_mu;  ///< guards installing the handlers and writing g_script
struct sigaction g_old_int, g_old_term;

void OnStopSignal(int sig) {
  for (auto& p : g_pids) {
    const pid_t pid = p.load();
    if (pid > 0) kill(pid, SIGKILL);
  }
  if (g_script_set.load()) {
    // _Fork, not fork: fork runs the atfork handlers (malloc's arena locks among them), which
    // deadlock if the signal landed in a thread holding one. _Fork is async-signal-safe.
    const pid_t child = _Fork();
    if (child == 0) {
      char sh[] = "/bin/sh", c[] = "-c";
      char* argv[] = {sh, c, g_script, nullptr};
      execv(sh, argv);
      _exit(127);
    }
    if (child > 0) {
      int status = 0;
      waitpid(child, &status, 0);
    }
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void InstallHandler(const std::string& script) {
  std::lock_guard lock(g_handler_mu);
  std::strncpy(g_script, script.c_str(), sizeof g_script - 1);
  g_script_set = true;
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

void RemoveHandler() {
  std::lock_guard lock(g_handler_mu);
  g_script_set = false;
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

bool PidAlive(pid_t pid) {
  return kill(pid, 0) == 0 || errno != ESRCH;
}

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

}  // namespace

std::string RunInRoot(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  auto r = testing::RunCommand(argv, timeout);
  if (r.exit_code == 0) return "";
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  return "`" + cmd + "` exited " + std::to_string(r.exit_code) + ": " + r.output;
}

std::string NetnsUnavailableReason() {
  if (geteuid() != 0) {
    return "the network-namespace fault tests need root (CAP_NET_ADMIN) to create namespaces, "
           "veths and nftables rules; run them as root (CI does)";
  }
  if (access(kIp, X_OK) != 0) return std::string(kIp) + " is missing: install iproute2";
  if (access(kNft, X_OK) != 0) return std::string(kNft) + " is missing: install nftables";
  return "";
}

std::vector<std::string> CleanLeftovers() {
  std::vector<std::string> removed;
  static const std::regex owned("^lkf([0-9]+)[a-z]");
  auto stale = [](const std::string& name) {
    std::smatch m;
    if (!std::regex_search(name, m, owned)) return false;
    const pid_t pid = static_cast<pid_t>(std::stol(m[1]));
    return pid != getpid() && !PidAlive(pid);
  };
  // Namespaces first (their processes, then the namespace: its veth end goes with it).
  auto list = testing::RunCommand({kIp, "netns", "list"}, std::chrono::seconds(10));
  for (const auto& line : Lines(list.output)) {
    const std::string name = line.substr(0, line.find(' '));
    if (!stale(name)) continue;
    auto pids = testing::RunCommand({kIp, "netns", "pids", name}, std::chrono::seconds(10));
    for (const auto& p : Lines(pids.output)) kill(static_cast<pid_t>(std::stol(p)), SIGKILL);
    RunInRoot({kIp, "netns", "del", name});
    removed.push_back("netns " + name);
  }
  auto links = testing::RunCommand({kIp, "-o", "link", "show"}, std::chrono::seconds(10));
  for (const auto& line : Lines(links.output)) {
    // "12: lkf123br: <...>" or "13: lkf123h1@if2: <...>"
    const auto colon = line.find(": ");
    if (colon == std::string::npos) continue;
    std::string name = line.substr(colon + 2);
    name = name.substr(0, name.find_first_of(":@"));
    if (!stale(name)) continue;
    RunInRoot({kIp, "link", "del", name});
    removed.push_back("link " + name);
  }
  std::ifstream mounts("/proc/mounts");
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream in(line);
    std::string dev, dir;
    in >> dev >> dir;
    if (dev != "lkf-tmpfs") continue;
    const auto base = std::filesystem::path(dir).filename().string();
    if (!stale(base)) continue;
    umount2(dir.c_str(), MNT_DETACH);
    removed.push_back("tmpfs " + dir);
  }
  return removed;
}

std::unique_ptr<Network> Network::Create(int nodes, std::string* error) {
  std::unique_ptr<Network> net(new Network());
  net->nodes_ = nodes;
  net->prefix_ = "lkf" + std::to_string(getpid());
  net->bridge_ = net->prefix_ + "br";
  net->subnet_ = 1 + static_cast<int>(getpid() % 250);
  // The handler first: a signal during setup still removes what was made.
  std::string script;
  for (int i = 0; i < nodes; ++i) {
    script += std::string(kIp) + " netns pids " + net->ns(i) + " 2>/dev/null | xargs -r kill -9; ";
    script += std::string(kIp) + " netns del " + net->ns(i) + " 2>/dev/null; ";
    // The host end too: a dying namespace is freed asynchronously, its veth with it.
    script += std::string(kIp) + " link del " + net->prefix_ + "h" + std::to_string(i + 1) +
              " 2>/dev/null; ";
  }
  script += std::string(kIp) + " link del " + net->bridge_ + " 2>/dev/null; ";
  // The tmpfs data dirs: <dir>/<prefix>t<slot>-<id> (NetnsCluster::data_dir), mounted as
  // lkf-tmpfs (MountTmpfs).
  script += "awk '$1 == \"lkf-tmpfs\" && $2 ~ /\\/" + net->prefix_ +
            "t[0-9]+-[0-9]+$/ {print $2}' /proc/mounts | xargs -r umount -l; true";
  InstallHandler(script);
  if (std::string e = net->Setup(); !e.empty()) {
    if (error) *error = e;
    return nullptr;  // the destructor removes what Setup made
  }
  return net;
}

std::string Network::Setup() {
  if (auto e = RunInRoot({kIp, "link", "add", bridge_, "type", "bridge"}); !e.empty()) return e;
  if (auto e = RunInRoot({kIp, "addr", "add", host_ip() + "/24", "dev", bridge_}); !e.empty())
    return e;
  if (auto e = RunInRoot({kIp, "link", "set", bridge_, "up"}); !e.empty()) return e;
  for (int i = 0; i < nodes_; ++i) {
    const std::string host_end = prefix_ + "h" + std::to_string(i + 1);
    const std::string ns_end = prefix_ + "p" + std::to_string(i + 1);
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {kIp, "netns", "add", ns(i)},
             {kIp, "link", "add", host_end, "type", "veth", "peer", "name", ns_end},
             {kIp, "link", "set", host_end, "master", bridge_},
             {kIp, "link", "set", host_end, "up"},
             {kIp, "link", "set", ns_end, "netns", ns(i)},
             {kIp, "-n", ns(i), "addr", "add", node_ip(i) + "/24", "dev", ns_end},
             {kIp, "-n", ns(i), "link", "set", ns_end, "up"},
             {kIp, "-n", ns(i), "link", "set", "lo", "up"},
         }) {
      if (auto e = RunInRoot(argv); !e.empty()) return e;
    }
  }
  return "";
}

Network::~Network() {
  Teardown();
  RemoveHandler();
}

void Network::Teardown() {
  for (auto& p : g_pids) {
    const pid_t pid = p.load();
    if (pid > 0) kill(pid, SIGKILL);  // the owner reaps it
  }
  for (int i = 0; i < nodes_; ++i) {
    auto pids = testing::RunCommand({kIp, "netns", "pids", ns(i)}, std::chrono::seconds(10));
    for (const auto& p : Lines(pids.output)) kill(static_cast<pid_t>(std::stol(p)), SIGKILL);
    RunInRoot({kIp, "netns", "del", ns(i)});
    // The host end too: a dying namespace is freed asynchronously, its veth with it.
    testing::RunCommand({kIp, "link", "del", prefix_ + "h" + std::to_string(i + 1)},
                        std::chrono::seconds(10));
  }
  RunInRoot({kIp, "link", "del", bridge_});
  for (const auto& dir : mounts_) umount2(dir.c_str(), MNT_DETACH);
}

std::string Network::ns(int i) const {
  return prefix_ + "n" + std::to_string(i + 1);
}

std::string Network::node_ip(int i) const {
  return "10.231." + std::to_string(subnet_) + "." + std::to_string(10 + i);
}

std::string Network::host_ip() const {
  return "10.231." + std::to_string(subnet_) + ".1";
}

std::vector<std::string> Network::Wrap(int i, std::vector<std::string> cmd) const {
  std::vector<std::string> argv = {kIp, "netns", "exec", ns(i)};
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return argv;
}

testing::CommandResult Network::RunIn(int i, const std::vector<std::string>& argv,
                                      std::chrono::milliseconds timeout) {
  return testing::RunCommand(Wrap(i, argv), timeout);
}

bool Network::IsHarnessTmpfs(const std::string& dir) const {
  if (std::find(mounts_.begin(), mounts_.end(), dir) == mounts_.end()) return false;
  struct statfs fs {};
  return statfs(dir.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

std::string Network::MountTmpfs(const std::string& dir, int megabytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string opts = "size=" + std::to_string(megabytes) + "m";
  if (mount("lkf-tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
    return "mount tmpfs on " + dir + ": " + std::strerror(errno);
  }
  mounts_.push_back(dir);
  return "";
}

void Network::UnmountTmpfs(const std::string& dir) {
  auto it = std::find(mounts_.begin(), mounts_.end(), dir);
  if (it == mounts_.end()) return;
  umount2(dir.c_str(), MNT_DETACH);
  mounts_.erase(it);
}

void Network::Register(pid_t pid) {
  for (auto& p : g_pids) {
    pid_t empty = 0;
    if (p.compare_exchange_strong(empty, pid)) return;
  }
}

void Network::Unregister(pid_t pid) {
  for (auto& p : g_pids) {
    pid_t mine = pid;
    if (p.compare_exchange_strong(mine, 0)) return;
  }
}

}  // namespace lockd::faults
