// Nemeses: the faults the fault tests inflict on a NetnsCluster, each recorded as one JSON line
// {"t_ns":..,"kind":..,"target":..,"detail":..} (t_ns on CLOCK_BOOTTIME, shared by every process
// on the machine) in an event log that the history checkers read to report availability per kind.
//
// - network: partitions as nftables rules inside the node namespaces (a table `inet lkf` per
//   node, replaced whole on every change): the leader isolated, majority/minority, a bridge (one
//   node sees both sides), one-way drop; packet loss (`numgen random mod 100 < P drop`). These
//   act on the direct node-to-node links; delay and reordering act on the proxied peer links
//   (a cluster made with peer_proxy, proxy.h).
// - processes: kill -9 and restart, SIGSTOP/SIGCONT.
// - disks: a slow disk (the slow-sync shim's delay), a full disk (filling the small tmpfs a node
//   was given: the node must fail stop), a wiped disk (refused by its peers; then replaced through
//   `lockctl member remove/add` and `lockd --join`).
// - membership: leadership transfer (`lockctl leader transfer`), a member replaced.
// Heal() undoes every fault that is still in force.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "faults/netns/netns_cluster.h"

namespace lockd::faults {

/// CLOCK_BOOTTIME now, in nanoseconds (the time base of every history and event log).
int64_t BootNanos();

/// Appends fault events as JSON lines; also echoes them to stderr for the test's log.
class EventLog {
 public:
  explicit EventLog(std::string path);
  void Record(const std::string& kind, const std::string& target, const std::string& detail);
  const std::string& path() const { return path_; }
  /// Every line recorded so far.
  std::vector<std::string> Lines();

 private:
  std::mutex mu_;  ///< one writer at a time, whole lines
  std::string path_;
  std::ofstream out_;
  std::vector<std::string> lines_;
};

class Nemesis {
 public:
  Nemesis(NetnsCluster& cluster, EventLog& log) : c_(cluster), log_(log) {}

  // --- network (nftables in the node namespaces) ---
  /// Node i exchanges nothing with any other node (clients in the root namespace still reach it).
  std::string Isolate(int i);
  /// Nodes talk only within their group.
  std::string Split(const std::vector<std::vector<int>> groups);
  /// `middle` sees both sides; the sides do not see each other.
  std::string Bridge(const std::vector<int>& left, int middle, const std::vector<int>& right);
  /// Packets from `from` to `to` are dropped; the other direction flows.
  std::string DropOneWay(int from, int to);
  /// Node i drops `percent` of the packets it receives from anyone but itself.
  std::string Loss(int i, int percent);
  // --- proxied peer links ---
  std::string Delay(Ms delay, Ms jitter);
  // --- processes ---
  void Kill(int i);
  void Restart(int i);
  void Pause(int i);
  void Resume(int i);
  // --- disks ---
  void SlowDisk(int i, Ms per_sync);
  /// Fills node i's tmpfs data dir (it needs one) to the last byte; empty on success.
  std::string FillDisk(int i);
  /// Removes the filler again (a restart of the node then recovers).
  void FreeDisk(int i);
  /// Stops node i, empties its data dir and starts it again under its old identity.
  void Wipe(int i);
  // --- membership ---
  /// `lockctl leader transfer [to]` (to < 0: the cluster picks); empty on success.
  std::string TransferLeadership(int to = -1);
  /// Removes node i (lockctl member remove), stops it, and adds a fresh node in its place under
  /// `new_id` (lockd --join, lockctl member add). The new node's index, or -1 and `error`.
  int Replace(int i, uint64_t new_id, std::string* error);

  /// Undoes every network rule, proxy delay, slow disk, pause and disk filler; restarts nodes the
  /// nemesis killed or that stopped (a node that failed stop gets its disk freed first).
  void Heal();

 private:
  std::string Apply();
  std::string NodeList(const std::set<int>& slots) const;

  NetnsCluster& c_;
  EventLog& log_;
  /// Per node index: the node indices it receives nothing from / sends nothing to.
  std::map<int, std::set<int>> no_input_, no_output_;
  std::map<int, int> loss_;
  std::set<int> slow_, filled_, paused_, killed_;
  bool delayed_ = false;
};

}  // namespace lockd::faults
