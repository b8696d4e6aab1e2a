// A real lockd cluster whose nodes each run in their own network namespace (network.h), for the
// fault tests. Node i listens on <node_ip(i)>:7401 (clients), :7501 (peers), :7601 (HTTP); a
// test in the root namespace reaches the clients' ports through the bridge. endpoints() is the
// comma-separated client address list every client process finds the cluster by.
//
// With `peer_proxy` every node's connections to its peers' peer ports are redirected (nftables
// DNAT in the dialling node's namespace, table `ip lkfproxy`) to a proxy in the root namespace
// (nemesis/proxy.h), which forwards them to the real peer: every Raft message then passes
// through it, where delay and reordering are injected. The nemesis's partition rules match node
// addresses, so they do not cut proxied peer links: use one or the other in a run.
//
// Node lifecycle: Start, Kill (-9), Pause/Resume (SIGSTOP/SIGCONT), Restart (same data dir),
// Wipe (empty data dir), and replacement through the membership path (lockctl). Data dirs live in
// a per-cluster temp dir; a node created with a tmpfs size gets its data dir on a small tmpfs
// (the disk-full nemesis). Every node carries the slow-sync shim (tests/support/slow_sync.cc):
// SetSyncDelay switches its disk slow and back at run time.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "faults/netns/network.h"
#include "lockd/v1/lockd.grpc.pb.h"
#include "support/process.h"

namespace lockd::faults {

using Ms = std::chrono::milliseconds;
namespace v1 = ::lockd::v1;

struct NetnsClusterOptions {
  int nodes = 3;
  int spare_slots = 1;  ///< namespaces beyond `nodes` for replacement nodes
  uint64_t tick_ms = 50;
  uint64_t election_min_ms = 500;
  uint64_t min_ttl_ms = 1000;
  std::vector<std::string> extra_flags;  ///< appended to every node's command line
  bool peer_proxy = false;
  /// Node slot -> tmpfs size in MiB for the data dir of each node that runs in it (the
  /// disk-full nemesis).
  std::map<int, int> tmpfs_mb;
};

constexpr int kClientPort = 7401;
constexpr int kPeerPort = 7501;
constexpr int kHttpPort = 7601;

class PeerProxy;

class NetnsCluster {
 public:
  /// Builds the network and starts every node. nullptr and `error` if the network cannot be
  /// made (a failed node start shows in its log and in WaitForLeader).
  static std::unique_ptr<NetnsCluster> Create(NetnsClusterOptions options, std::string* error);
  ~NetnsCluster();
  NetnsCluster(const NetnsCluster&) = delete;
  NetnsCluster& operator=(const NetnsCluster&) = delete;

  Network& network() { return *net_; }
  PeerProxy* proxy() { return proxy_.get(); }
  /// Slots in use (nodes, plus replacements added later).
  int size() const { return static_cast<int>(nodes_.size()); }
  uint64_t id(int i) const { return nodes_[i].id; }
  int IndexOf(uint64_t id) const;
  std::string client_addr(int i) const;
  /// The address the member list gives for node i's peer port (where it listens; with
  /// peer_proxy the other nodes' connections to it are redirected to the proxy by DNAT).
  std::string advertised_peer_addr(int i) const;
  std::string data_dir(int i) const;
  std::string log_path(int i) const;
  std::string LogTail(int i, size_t lines = 30) const;
  std::string LogTails(size_t lines = 30) const;
  /// Client addresses of every node in the cluster now, comma-separated.
  std::string endpoints() const;
  /// The client address of every namespace slot, spare ones included: a client process given
  /// this list finds every node a replacement may put there (an empty slot refuses at once).
  std::string slot_endpoints() const;
  pid_t pid(int i) const;

  void Start(int i);
  void Kill(int i);
  void Pause(int i);
  void Resume(int i);
  /// SIGTERM (then SIGKILL after `timeout`); the exit code.
  std::optional<int> Stop(int i, Ms timeout = std::chrono::seconds(15));
  void Restart(int i);
  /// Empties node i's data dir (it must not run).
  void Wipe(int i);
  bool running(int i);
  bool live(int i);
  /// The exit code of a node that exited by itself (nullopt while it runs).
  std::optional<int> ExitCode(int i, Ms wait = Ms(0));
  /// The slow-sync shim's delay for node i's fsyncs from now on (0: full speed).
  void SetSyncDelay(int i, Ms delay);

  /// A replacement node in the next spare slot: `lockd --join`, id `new_id`, fresh data dir.
  /// Returns its index (-1 if no slot is left). The members still have to add it.
  int AddJoiningNode(uint64_t new_id);
  /// Retires node i from the endpoint list (it was removed from the cluster; it must not run).
  /// Its tmpfs, if it had one, is unmounted: replacements in a tmpfs slot would pile them up.
  void Retire(int i);
  bool retired(int i) const { return nodes_[i].retired; }
  /// The namespace slot node i runs in.
  int SlotOf(int i) const { return nodes_[i].slot; }

  grpc::Status Status(int i, v1::StatusResponse* out, Ms timeout = std::chrono::seconds(2));
  /// Polls the live nodes among `among` (all when empty) until they agree on one live leader;
  /// its index, or -1 after `timeout`.
  int WaitForLeader(Ms timeout, std::vector<int> among = {});
  /// The leader as node i sees it (-1 if unknown).
  int LeaderSeenBy(int i);
  v1::LockService::Stub& lock(int i);
  v1::ClusterService::Stub& cluster(int i);
  std::string StatusSummary();

  /// Runs lockctl against `endpoint` (default: endpoints()); exit code and output.
  testing::CommandResult Lockctl(std::vector<std::string> args, std::string endpoint = "");

 private:
  struct Node {
    uint64_t id = 0;
    int slot = 0;
    bool joins = false;
    bool retired = false;
    std::unique_ptr<testing::Process> process;
    bool paused = false;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::LockService::Stub> lock;
    std::unique_ptr<v1::ClusterService::Stub> cluster;
  };
  NetnsCluster() = default;
  std::vector<std::string> Argv(int i) const;
  std::string InitialCluster() const;
  /// Installs the DNAT rules that send every node's peer connections through the proxy.
  std::string RoutePeersThroughProxy();
  void Connect(int i);
  void SaveLogsIfFailed();

  NetnsClusterOptions options_;
  std::unique_ptr<testing::TempDir> dir_;
  std::unique_ptr<testing::TempDir> slow_dir_;
  std::unique_ptr<Network> net_;
  std::unique_ptr<PeerProxy> proxy_;
  std::vector<Node> nodes_;
  std::vector<std::shared_ptr<grpc::Channel>> retired_channels_;
};

}  // namespace lockd::faults
