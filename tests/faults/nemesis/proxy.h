// PeerProxy: the fault tests' delay and reordering on the Raft peer links (the kernel here has no
// netem qdisc). The member list names a proxy listener as each node's peer address; every
// connection a node opens to a peer is accepted here and forwarded to that peer's real address.
//
// Each direction of each connection is a queue of chunks, each stamped with the time it may be
// delivered: read time + delay + a random jitter in [0, jitter], but never before the chunk
// before it on the same connection (so one TCP stream's bytes keep their order and are never
// altered). Different connections do not wait for each other, so with jitter a message sent
// later on one link is often delivered before an earlier one on another: reordering across
// connections, as a real network does.
//
// Thread per direction and connection (a handful of peer streams); Stop() ends them all.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lockd::faults {

class PeerProxy {
 public:
  /// One listener on `listen_ip` (an ephemeral port) per target "ip:port".
  PeerProxy(std::string listen_ip, std::vector<std::string> targets);
  ~PeerProxy();
  PeerProxy(const PeerProxy&) = delete;
  PeerProxy& operator=(const PeerProxy&) = delete;

  /// Binds every listener and starts accepting; empty on success, else the error.
  std::string Start();
  void Stop();
  /// "ip:port" of the listener for target i.
  std::string listen_addr(int i) const;

  /// From now on every chunk is held `delay` + random [0, jitter] (0, 0: forwarded at once).
  void SetDelay(std::chrono::milliseconds delay, std::chrono::milliseconds jitter);
  std::chrono::milliseconds delay() const { return std::chrono::milliseconds(delay_ms_.load()); }
  uint64_t bytes_forwarded() const { return bytes_.load(); }
  uint64_t connections() const { return connections_.load(); }
  /// Proxied connections not yet reaped (a finished one is reaped within ~50 ms: its two pump
  /// threads joined, its fds closed), so a soak with many reconnects holds no more than it uses.
  size_t live_links();

 private:
  struct Link;
  void AcceptLoop(int target);
  void Pump(std::shared_ptr<Link> link, int from, int to);

  const std::string listen_ip_;
  const std::vector<std::string> targets_;
  std::vector<int> listen_fds_;
  std::vector<int> ports_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> delay_ms_{0}, jitter_ms_{0};
  std::atomic<uint64_t> bytes_{0}, connections_{0};
  /// A proxied connection and its two pump threads (one per direction).
  struct Piped {
    std::shared_ptr<Link> link;
    std::thread pumps[2];
  };
  /// Joins and drops the links whose pumps both ended. Called with mu_ held.
  void ReapLocked();

  std::mutex mu_;                     ///< guards threads_ and links_
  std::vector<std::thread> threads_;  ///< the accept loops
  std::vector<Piped> links_;
};

}  // namespace lockd::faults
