// Every metric a node exports (docs/operations.md, "Metrics"), registered once when the node is
// built. The parts of the node update their handles directly (ServiceMetrics, ApplyMetrics,
// BackupMetrics, the fsync histogram); the gauges that mirror the replica's state and the peer
// streams are refreshed by the node's watcher (Mirror, MirrorPeer).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "server/access_control.h"
#include "server/lock_service.h"
#include "server/metrics.h"
#include "server/peer_transport.h"
#include "server/replica.h"

namespace lockd::server {

class NodeMetrics {
 public:
  NodeMetrics();

  std::string Render() const { return registry_.Render(); }
  /// The gauges and counters that follow the replica's state (every watcher pass).
  void Mirror(const ReplicaStatus& st, uint64_t promotions);
  /// A new leader was seen (a different, non-zero leader id).
  void LeaderChanged() { leader_changes.Increment(); }
  /// The outbound stream to peer `id`, and (on the leader) how far its log is behind.
  void MirrorPeer(uint64_t id, const PeerStats& s, std::optional<uint64_t> lag);
  /// Drops the series of peers that are no longer members (a removed member's stream series
  /// would otherwise keep their last values, and its alert fire, forever).
  void ForgetPeersExcept(const std::set<uint64_t>& members);

 private:
  MetricsRegistry registry_;  // first: every handle below is registered in it

 public:
  ServiceMetrics service;
  AccessMetrics access;
  ApplyMetrics apply;
  BackupMetrics backup;

  Gauge& up;
  Gauge& is_leader;
  Gauge& term;
  Counter& leader_changes;
  Gauge& commit;
  Gauge& cluster_commit;
  Gauge& applied;
  Gauge& proposals_in_flight;
  Gauge& leases;
  Gauge& locks;
  Gauge& holders;
  Gauge& waiters;
  Gauge& tokens;
  Gauge& members;
  Gauge& learners;
  Counter& promotions;
  Counter& campaigns;
  Counter& try_locks_by_read;
  Counter& keepalive_overflows;
  Counter& watch_overflows;
  Histogram& fsync_duration;
  Gauge& snapshot_index;
  Gauge& snapshot_bytes;
  Histogram& snapshot_duration;
  Counter& snapshots;

 private:
  /// A counter that follows a per-stream total which starts again at 0 when the stream to the
  /// peer is recreated: each raw value is added as a delta, so the counter never goes back.
  struct Following {
    Counter* counter = nullptr;
    uint64_t last_raw = 0;
    void Follow(uint64_t raw) {
      counter->Increment(static_cast<double>(raw >= last_raw ? raw - last_raw : raw));
      last_raw = raw;
    }
  };
  struct Peer {
    Gauge* connected;
    Gauge* queued_messages;
    Gauge* queued_bytes;
    Gauge* match_lag;
    Following sent, dropped, reconnects;
  };
  std::map<uint64_t, Peer> peers_;  ///< watcher thread only
};

}  // namespace lockd::server
