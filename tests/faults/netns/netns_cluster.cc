#include "faults/netns/netns_cluster.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "faults/nemesis/proxy.h"

namespace lockd::faults {

using namespace std::chrono_literals;

namespace {

/// Whether something accepts TCP connections at "ip:port" (a bounded connect: a partition that
/// drops the SYN must not hang the caller).
bool Listening(const std::string& host_port) {
  const auto colon = host_port.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  if (inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr) != 1) return false;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{0, 200'000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

std::unique_ptr<NetnsCluster> NetnsCluster::Create(NetnsClusterOptions options,
                                                   std::string* error) {
  std::unique_ptr<NetnsCluster> c(new NetnsCluster());
  c->options_ = std::move(options);
  for (const auto& removed : CleanLeftovers()) {
    std::cerr << "[faults] removed a leftover of an earlier run: " << removed << "\n";
  }
  c->net_ = Network::Create(c->options_.nodes + c->options_.spare_slots, error);
  if (!c->net_) return nullptr;
  c->dir_ = std::make_unique<testing::TempDir>();
  c->slow_dir_ = std::make_unique<testing::TempDir>();
  if (c->options_.peer_proxy) {
    std::vector<std::string> targets;
    for (int i = 0; i < c->net_->size(); ++i) {
      targets.push_back(c->net_->node_ip(i) + ":" + std::to_string(kPeerPort));
    }
    c->proxy_ = std::make_unique<PeerProxy>(c->net_->host_ip(), targets);
    if (std::string e = c->proxy_->Start(); !e.empty()) {
      if (error) *error = e;
      return nullptr;
    }
  }
  if (c->proxy_) {
    if (std::string e = c->RoutePeersThroughProxy(); !e.empty()) {
      if (error) *error = e;
      return nullptr;
    }
  }
  for (int i = 0; i < c->options_.nodes; ++i) {
    Node n;
    n.id = static_cast<uint64_t>(i) + 1;
    n.slot = i;
    c->nodes_.push_back(std::move(n));
  }
  for (int i = 0; i < c->size(); ++i) {
    if (auto it = c->options_.tmpfs_mb.find(i); it != c->options_.tmpfs_mb.end()) {
      if (std::string e = c->net_->MountTmpfs(c->data_dir(i), it->second); !e.empty()) {
        if (error) *error = e;
        return nullptr;
      }
    }
    std::filesystem::create_directories(c->data_dir(i));
    c->Connect(i);
  }
  for (int i = 0; i < c->size(); ++i) c->Start(i);
  return c;
}

NetnsCluster::~NetnsCluster() {
  SaveLogsIfFailed();
  for (auto& n : nodes_) {
    n.lock.reset();
    n.cluster.reset();
    n.channel.reset();
  }
  retired_channels_.clear();
  for (auto& n : nodes_) {
    if (!n.process) continue;
    if (n.paused) n.process->Signal(SIGCONT);
    n.process->Signal(SIGTERM);
  }
  for (auto& n : nodes_) {
    if (!n.process) continue;
    if (!n.process->Wait(10s)) n.process->Kill();
    net_->Unregister(n.process->pid());
    n.process.reset();
  }
  proxy_.reset();
  net_.reset();  // namespaces, bridge, tmpfs mounts
}

void NetnsCluster::SaveLogsIfFailed() {
  if (!::testing::Test::HasFailure() || !dir_) return;
  const char* base = std::getenv("TMPDIR");
  const std::string keep = std::string(base && *base ? base : "/tmp") + "/lockd-faults-logs/" +
                           net_->prefix() + "-" + std::to_string(time(nullptr));
  std::error_code ec;
  std::filesystem::create_directories(keep, ec);
  for (int i = 0; i < size(); ++i) std::filesystem::copy(log_path(i), keep, ec);
  std::cerr << LogTails(25) << "[faults] node logs kept in " << keep << "\n";
}

int NetnsCluster::IndexOf(uint64_t node_id) const {
  for (int i = size() - 1; i >= 0; --i) {
    if (nodes_[i].id == node_id) return i;
  }
  return -1;
}

std::string NetnsCluster::client_addr(int i) const {
  return net_->node_ip(nodes_[i].slot) + ":" + std::to_string(kClientPort);
}

std::string NetnsCluster::advertised_peer_addr(int i) const {
  return net_->node_ip(nodes_[i].slot) + ":" + std::to_string(kPeerPort);
}

std::string NetnsCluster::RoutePeersThroughProxy() {
  // A node must listen on the peer address the member list gives it, so the detour is made by
  // DNAT in each dialling namespace: to <peer j>:7501 becomes to <proxy listener j>. The table is
  // the harness's own (the nemesis replaces `inet lkf` only).
  for (int i = 0; i < net_->size(); ++i) {
    std::string rules;
    for (int j = 0; j < net_->size(); ++j) {
      if (j == i) continue;
      rules += "    ip daddr " + net_->node_ip(j) + " tcp dport " + std::to_string(kPeerPort) +
               " dnat to " + proxy_->listen_addr(j) + "\n";
    }
    const std::string file = dir_->path() + "/proxy-nat-" + std::to_string(i) + ".rules";
    std::ofstream(file) << "table ip lkfproxy {\n  chain out {\n    type nat hook output priority "
                           "-100; policy accept;\n"
                        << rules << "  }\n}\n";
    auto r = net_->RunIn(i, {"/usr/sbin/nft", "-f", file});
    if (r.exit_code != 0) return "nft (proxy route) in " + net_->ns(i) + ": " + r.output;
  }
  return "";
}

void NetnsCluster::Retire(int i) {
  nodes_[i].retired = true;
  if (net_->IsHarnessTmpfs(data_dir(i))) net_->UnmountTmpfs(data_dir(i));
}

std::string NetnsCluster::slot_endpoints() const {
  std::string out;
  for (int s = 0; s < net_->size(); ++s) {
    out += (s ? "," : "") + net_->node_ip(s) + ":" + std::to_string(kClientPort);
  }
  return out;
}

std::string NetnsCluster::data_dir(int i) const {
  // A tmpfs data dir is named for the leftover cleaner: <prefix>t<slot>.
  return dir_->path() + "/" + net_->prefix() + "t" + std::to_string(nodes_[i].slot + 1) + "-" +
         std::to_string(nodes_[i].id);
}

std::string NetnsCluster::log_path(int i) const {
  return dir_->path() + "/node" + std::to_string(nodes_[i].id) + ".log";
}

std::string NetnsCluster::LogTail(int i, size_t lines) const {
  std::ifstream in(log_path(i));
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t k = all.size() > lines ? all.size() - lines : 0; k < all.size(); ++k) {
    out += all[k] + "\n";
  }
  return out;
}

std::string NetnsCluster::LogTails(size_t lines) const {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    out += "----- node " + std::to_string(id(i)) + " (" + log_path(i) + ")\n" + LogTail(i, lines);
  }
  return out;
}

std::string NetnsCluster::endpoints() const {
  std::string s;
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i].retired) continue;
    s += (s.empty() ? "" : ",") + client_addr(i);
  }
  return s;
}

pid_t NetnsCluster::pid(int i) const {
  return nodes_[i].process ? nodes_[i].process->pid() : -1;
}

std::string NetnsCluster::InitialCluster() const {
  std::string s;
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i].joins) continue;
    s += (s.empty() ? "" : ",") + std::to_string(id(i)) + "=" + advertised_peer_addr(i) + "/" +
         client_addr(i);
  }
  return s;
}

std::vector<std::string> NetnsCluster::Argv(int i) const {
  const std::string ip = net_->node_ip(nodes_[i].slot);
  std::vector<std::string> cmd = {
      "/usr/bin/env",
      std::string("LD_PRELOAD=") + LOCKD_SLOW_SYNC_LIB,
      "LOCKD_SLOW_SYNC_DIR=" + slow_dir_->path(),
      LOCKD_BINARY,
      "--id",
      std::to_string(id(i)),
      "--client-addr",
      client_addr(i),
      "--peer-addr",
      ip + ":" + std::to_string(kPeerPort),
      "--http-addr",
      ip + ":" + std::to_string(kHttpPort),
      "--data-dir",
      data_dir(i),
      "--plaintext",  // on addresses of the namespaces this harness made (lockd warns)
      "--cluster-token",
      "faults-" + net_->prefix(),
      "--tick-ms",
      std::to_string(options_.tick_ms),
      "--election-min-ms",
      std::to_string(options_.election_min_ms),
      "--min-ttl-ms",
      std::to_string(options_.min_ttl_ms),
  };
  if (nodes_[i].joins) {
    // Every node in service, joined ones too: after a few replacements the bootstrap members may
    // all be gone (an empty --join once made a node bootstrap a cluster of its own).
    std::string join;
    for (int j = 0; j < size(); ++j) {
      if (j == i || nodes_[j].retired || client_addr(j) == client_addr(i)) continue;
      join += (join.empty() ? "" : ",") + client_addr(j);
    }
    cmd.insert(cmd.end(), {"--join", join});
  } else {
    cmd.insert(cmd.end(), {"--initial-cluster", InitialCluster()});
  }
  for (const auto& f : options_.extra_flags) cmd.push_back(f);
  return net_->Wrap(nodes_[i].slot, cmd);
}

void NetnsCluster::Connect(int i) {
  Node& n = nodes_[i];
  if (n.channel) retired_channels_.push_back(n.channel);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  args.SetString("lockd-faults-channel", net_->prefix() + "/" + std::to_string(i) + "/" +
                                             std::to_string(retired_channels_.size()));
  n.channel = grpc::CreateCustomChannel(client_addr(i), grpc::InsecureChannelCredentials(), args);
  n.lock = v1::LockService::NewStub(n.channel);
  n.cluster = v1::ClusterService::NewStub(n.channel);
}

void NetnsCluster::Start(int i) {
  Node& n = nodes_[i];
  if (n.process && n.process->running()) return;
  if (n.process) net_->Unregister(n.process->pid());
  {
    std::ofstream log(log_path(i), std::ios::app);
    log << "===== faults harness: start of node " << n.id << " in " << net_->ns(n.slot)
        << " =====\n";
  }
  n.process = std::make_unique<testing::Process>(Argv(i), log_path(i));
  n.paused = false;
  net_->Register(n.process->pid());
  // A fresh channel once it listens: one that failed to connect backs off for a while.
  testing::WaitFor([&] { return !n.process->running() || Listening(client_addr(i)); }, 10s);
  Connect(i);
}

void NetnsCluster::Kill(int i) {
  if (nodes_[i].process) {
    nodes_[i].process->Kill();
    // Reaped: its pid may be reused, so the signal handler must not kill it any more.
    net_->Unregister(nodes_[i].process->pid());
  }
  nodes_[i].paused = false;
}

void NetnsCluster::Pause(int i) {
  if (running(i)) {
    nodes_[i].process->Signal(SIGSTOP);
    nodes_[i].paused = true;
  }
}

void NetnsCluster::Resume(int i) {
  if (nodes_[i].process) nodes_[i].process->Signal(SIGCONT);
  nodes_[i].paused = false;
}

std::optional<int> NetnsCluster::Stop(int i, Ms timeout) {
  Node& n = nodes_[i];
  if (!n.process) return std::nullopt;
  if (n.paused) Resume(i);
  n.process->Signal(SIGTERM);
  auto code = n.process->Wait(timeout);
  if (!code) n.process->Kill();
  net_->Unregister(n.process->pid());
  return code;
}

void NetnsCluster::Restart(int i) {
  Stop(i);
  Start(i);
}

void NetnsCluster::Wipe(int i) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(data_dir(i), ec)) {
    std::filesystem::remove_all(e.path(), ec);
  }
}

bool NetnsCluster::running(int i) {
  return nodes_[i].process && nodes_[i].process->running();
}

bool NetnsCluster::live(int i) {
  return running(i) && !nodes_[i].paused;
}

std::optional<int> NetnsCluster::ExitCode(int i, Ms wait) {
  if (!nodes_[i].process) return std::nullopt;
  return nodes_[i].process->Wait(wait);
}

void NetnsCluster::SetSyncDelay(int i, Ms delay) {
  const std::string knob = slow_dir_->path() + "/" + std::to_string(pid(i));
  if (delay.count() <= 0) {
    std::remove(knob.c_str());
    return;
  }
  // Written whole then renamed: the shim never reads half a number.
  const std::string tmp = knob + ".tmp";
  std::ofstream(tmp) << delay.count() << "\n";
  std::rename(tmp.c_str(), knob.c_str());
}

int NetnsCluster::AddJoiningNode(uint64_t new_id) {
  std::vector<bool> used(net_->size(), false);
  for (const auto& n : nodes_) {
    if (!n.retired) used[n.slot] = true;
  }
  int slot = -1;
  for (int s = 0; s < net_->size() && slot < 0; ++s) {
    if (!used[s]) slot = s;
  }
  if (slot < 0) return -1;
  Node n;
  n.id = new_id;
  n.slot = slot;
  n.joins = true;
  nodes_.push_back(std::move(n));
  const int i = size() - 1;
  // A slot given a tmpfs keeps one for every node that runs in it (the disk-full nemesis).
  if (auto it = options_.tmpfs_mb.find(slot); it != options_.tmpfs_mb.end()) {
    if (std::string e = net_->MountTmpfs(data_dir(i), it->second); !e.empty()) {
      std::cerr << "[netns] tmpfs for node " << new_id << ": " << e << "\n";
    }
  }
  std::filesystem::create_directories(data_dir(i));
  Connect(i);
  Start(i);
  return i;
}

grpc::Status NetnsCluster::Status(int i, v1::StatusResponse* out, Ms timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  return nodes_[i].cluster->Status(&ctx, v1::StatusRequest(), out);
}

int NetnsCluster::LeaderSeenBy(int i) {
  v1::StatusResponse s;
  if (!Status(i, &s, 1s).ok() || s.leader_id() == 0) return -1;
  return IndexOf(s.leader_id());
}

int NetnsCluster::WaitForLeader(Ms timeout, std::vector<int> among) {
  if (among.empty()) {
    for (int i = 0; i < size(); ++i) {
      if (!nodes_[i].retired) among.push_back(i);
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    uint64_t agreed = 0;
    bool ok = false;
    for (int i : among) {
      if (!live(i)) continue;
      v1::StatusResponse s;
      if (!Status(i, &s, 1s).ok() || s.leader_id() == 0 ||
          (agreed != 0 && s.leader_id() != agreed)) {
        ok = false;
        break;
      }
      agreed = s.leader_id();
      ok = true;
    }
    const int leader = ok ? IndexOf(agreed) : -1;
    if (leader >= 0 && live(leader)) return leader;
    std::this_thread::sleep_for(100ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return -1;
}

v1::LockService::Stub& NetnsCluster::lock(int i) {
  return *nodes_[i].lock;
}

v1::ClusterService::Stub& NetnsCluster::cluster(int i) {
  return *nodes_[i].cluster;
}

std::string NetnsCluster::StatusSummary() {
  std::ostringstream out;
  for (int i = 0; i < size(); ++i) {
    out << "node " << id(i) << " (" << client_addr(i) << "): ";
    if (!running(i)) {
      out << "not running\n";
      continue;
    }
    if (nodes_[i].paused) {
      out << "paused\n";
      continue;
    }
    v1::StatusResponse s;
    auto st = Status(i, &s, 1s);
    if (!st.ok()) {
      out << "Status failed: " << st.error_message() << "\n";
      continue;
    }
    out << "term " << s.term() << " leader " << s.leader_id() << " commit " << s.commit_index()
        << " applied " << s.applied_index() << "\n";
  }
  return out.str();
}

testing::CommandResult NetnsCluster::Lockctl(std::vector<std::string> args, std::string endpoint) {
  std::vector<std::string> argv = {LOCKCTL_BINARY, "--endpoints",
                                   endpoint.empty() ? endpoints() : endpoint};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::RunCommand(argv, 60s);
}

}  // namespace lockd::faults
