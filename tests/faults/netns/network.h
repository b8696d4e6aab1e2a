// The fault tests' network: one Linux network namespace per node, joined by veth pairs to a
// bridge this harness creates, with an address for the root namespace on the bridge so test
// clients in the root namespace reach every node. Partitions and loss are nftables rules inside
// the node namespaces (tests/faults/nemesis); no `tc netem` here (the kernel has none).
//
// Names carry a fixed prefix and this process's pid (`lkf<pid>br`, `lkf<pid>n<k>`, veths
// `lkf<pid>h<k>`), and addresses a private /24 chosen from the pid (10.231.<b>.0/24), so two
// harnesses never collide and a leftover can be traced to the process that made it. Everything
// created is removed by the destructor, by a SIGINT/SIGTERM handler (which also SIGKILLs the
// processes registered with it), and at the next start by CleanLeftovers() when its creator no
// longer runs (a kill -9 of the test).
//
// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for tmpfs), `ip` (iproute2) and `nft` (nftables).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "support/process.h"

namespace lockd::faults {

/// Empty when namespace tests can run here; otherwise why not (for GTEST_SKIP).
std::string NetnsUnavailableReason();

/// Removes namespaces, links and tmpfs mounts of earlier harness runs whose pid no longer runs,
/// after SIGKILLing the processes still inside those namespaces. Returns what it removed.
std::vector<std::string> CleanLeftovers();

class Network {
 public:
  /// Creates the bridge and `nodes` namespaces. nullptr (and `error`) if any step fails; what
  /// was made is removed again.
  static std::unique_ptr<Network> Create(int nodes, std::string* error);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  int size() const { return nodes_; }
  const std::string& prefix() const { return prefix_; }
  const std::string& bridge() const { return bridge_; }
  /// Namespace of node slot i (0-based).
  std::string ns(int i) const;
  /// Node slot i's address (10.231.<b>.<10+i>).
  std::string node_ip(int i) const;
  /// The root namespace's address on the bridge (10.231.<b>.1).
  std::string host_ip() const;

  /// Runs `argv` inside node slot i's namespace (`ip netns exec`), bounded by `timeout`.
  testing::CommandResult RunIn(int i, const std::vector<std::string>& argv,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// argv that starts `cmd` inside node slot i's namespace (the pid stays the command's).
  std::vector<std::string> Wrap(int i, std::vector<std::string> cmd) const;

  /// Mounts a tmpfs of `megabytes` on `dir` (created), unmounted by the teardown. Empty on
  /// success, else the error.
  std::string MountTmpfs(const std::string& dir, int megabytes);
  /// Unmounts a tmpfs MountTmpfs made (lazily: a process may still hold files there).
  void UnmountTmpfs(const std::string& dir);
  /// Whether `dir` is a tmpfs this harness mounted (and it is still a tmpfs): the only place a
  /// nemesis may fill to the last byte.
  bool IsHarnessTmpfs(const std::string& dir) const;

  /// Processes the signal handler SIGKILLs before it removes the namespaces (node processes).
  void Register(pid_t pid);
  void Unregister(pid_t pid);

 private:
  Network() = default;
  std::string Setup();
  void Teardown();

  int nodes_ = 0;
  int subnet_ = 0;  ///< the third octet
  std::string prefix_, bridge_;
  std::vector<std::string> mounts_;
};

/// Runs a command in the root namespace; its output on failure is in `error` (empty when it
/// exited 0).
std::string RunInRoot(const std::vector<std::string>& argv,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace lockd::faults
