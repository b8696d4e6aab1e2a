// Every metric a node exports (docs/operations.md, "Metrics"), registered once when the node is
// built. The parts of the node update their handles directly (ServiceMetrics, ApplyMetrics,
// BackupMetrics, the fsync histogram); the gauges that mirror the replica's state and the peer
// streams are refreshed by the node's watcher (Mirror, MirrorPeer).
#pragma once

#include <cstdint>
#include <map>
#include <string>

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
  /// The outbound stream to peer `id`.
  void MirrorPeer(uint64_t id, const PeerStats& s);

 private:
  MetricsRegistry registry_;  // first: every handle below is registered in it

 public:
  ServiceMetrics service;
  ApplyMetrics apply;
  BackupMetrics backup;

  Gauge& up;
  Gauge& is_leader;
  Gauge& term;
  Counter& leader_changes;
  Gauge& commit;
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
  Counter& try_locks_by_read;
  Counter& keepalive_overflows;
  Counter& watch_overflows;
  Histogram& fsync_duration;
  Gauge& snapshot_index;
  Gauge& snapshot_bytes;
  Histogram& snapshot_duration;
  Counter& snapshots;

 private:
  struct Peer {
    Gauge* connected;
    Gauge* queued_messages;
    Gauge* queued_bytes;
    Counter* sent;
    Counter* dropped;
    Counter* reconnects;
  };
  std::map<uint64_t, Peer> peers_;  ///< watcher thread only
};

}  // namespace lockd::server
