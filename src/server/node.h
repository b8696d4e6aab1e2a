// Node: one running lockd process. It owns the data directory, the storage, the Replica (Raft
// core + lock state machine + the leader's lease and wait bookkeeping), the peer transport and
// the listeners: the client gRPC server (LockService, ClusterService, health, reflection), the
// peer gRPC server and the HTTP endpoint (/healthz, /metrics).
//
// Start() recovers the data dir (or bootstraps a new cluster from --initial-cluster), binds
// everything or fails with the reason. The cluster id may be decided after Start() (the first
// leader decides it through the log; IdentityStore): until then client calls answer UNAVAILABLE.
// Shutdown() (SIGTERM): health goes NOT_SERVING, a leader hands leadership to the most caught-up
// voter, then every new call, every forward in flight and every open stream is answered
// UNAVAILABLE ("this node is stopping"), the loop finishes its pass and answers what still waits
// UNAVAILABLE, the listeners stop, and the data dir is released. So no call a stopping node cannot
// finish ends CANCELLED: its retry goes to another node.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/status.h"
#include "server/metrics.h"
#include "server/options.h"

namespace grpc {
class Server;
}
namespace httplib {
class Server;
}

namespace lockd::storage {
class DataDir;
class NodeStorage;
}  // namespace lockd::storage

namespace lockd::server {

class ClusterMetadata;
class ClusterServiceImpl;
class Forwarder;
class IdentityStore;
class LockServiceImpl;
class PeerTransport;
class Replica;
class WatchHub;

class Node {
 public:
  explicit Node(NodeOptions options);
  ~Node();

  Status Start();
  void Shutdown();

  const NodeOptions& options() const { return options_; }
  /// Empty while not decided yet.
  std::string cluster_id() const;

 private:
  Status StartHttp();
  void WatchLeadership();  ///< keeps metadata, health and gauges current

  NodeOptions options_;
  std::unique_ptr<storage::DataDir> data_dir_;
  std::unique_ptr<IdentityStore> identity_;
  std::unique_ptr<storage::NodeStorage> storage_;
  std::unique_ptr<WatchHub> watch_;
  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<Replica> replica_;
  std::unique_ptr<ClusterMetadata> metadata_;
  std::unique_ptr<Forwarder> forwarder_;
  std::unique_ptr<LockServiceImpl> lock_service_;
  std::unique_ptr<ClusterServiceImpl> cluster_service_;
  std::unique_ptr<grpc::Server> peer_server_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<httplib::Server> http_server_;
  std::thread http_thread_;
  std::thread watcher_;
  std::mutex watcher_mu_;  ///< guards stop_watcher_
  std::condition_variable watcher_cv_;
  bool stop_watcher_ = false;
  std::atomic<bool> serving_{false};  ///< What /healthz and grpc.health.v1 report.
  MetricsRegistry metrics_;
  Gauge& up_ = metrics_.AddGauge("lockd_up", "Whether this node is serving (1) or not (0).");
  Gauge& is_leader_ = metrics_.AddGauge("lockd_is_leader", "Whether this node leads (1) or not.");
  Gauge& term_ = metrics_.AddGauge("lockd_raft_term", "The node's current Raft term.");
  Gauge& commit_ = metrics_.AddGauge("lockd_raft_commit_index", "The node's commit index.");
  Gauge& applied_ = metrics_.AddGauge("lockd_raft_applied_index", "The node's applied index.");
  Gauge& leases_ = metrics_.AddGauge("lockd_leases", "Leases in the replicated state.");
  Gauge& locks_ = metrics_.AddGauge("lockd_locks", "Locks held or waited for.");
  Gauge& tokens_ = metrics_.AddGauge("lockd_token_counter", "The last fencing token granted.");
  Gauge& snapshot_index_ =
      metrics_.AddGauge("lockd_snapshot_index", "The index of the node's newest snapshot.");
  Gauge& members_ = metrics_.AddGauge(
      "lockd_members", "Members (voters and learners) of the membership this node applied.");
  Gauge& learners_ =
      metrics_.AddGauge("lockd_learners", "Learners (members not yet voting) among them.");
  Counter& promotions_ = metrics_.AddCounter(
      "lockd_promotions_total", "Learners this node, as leader, promoted to voter (this run).");
  Counter& campaigns_ = metrics_.AddCounter(
      "lockd_campaigns_total",
      "Elections (pre-vote or vote) this node started (this run); a removed node starts none.");
  Counter& try_locks_by_read_ = metrics_.AddCounter(
      "lockd_try_locks_by_read_total",
      "Try-locks that failed and were answered after a ReadIndex round, with no log entry.");
  Counter& keepalive_overflows_ = metrics_.AddCounter(
      "lockd_keepalive_overflows_total",
      "KeepAlive streams ended RESOURCE_EXHAUSTED because their client did not read the answers.");
  Counter& watch_overflows_ = metrics_.AddCounter(
      "lockd_watch_overflows_total",
      "Watch streams ended RESOURCE_EXHAUSTED because their client fell too far behind.");
  // Snapshots and backups (issue 15).
  Gauge& snapshot_bytes_ = metrics_.AddGauge(
      "lockd_snapshot_bytes", "Size of the newest snapshot this node took (its state encoding).");
  Histogram& snapshot_duration_ =
      metrics_.AddHistogram("lockd_snapshot_duration_seconds",
                            "Time to encode and durably save a snapshot.", LatencyBuckets());
  Counter& snapshots_ =
      metrics_.AddCounter("lockd_snapshots_total", "Snapshots this node took (periodic or asked).");
  Counter& backup_bytes_ =
      metrics_.AddCounter("lockd_backup_bytes_total", "Bytes of backup files this node streamed.");
  Counter& backups_ =
      metrics_.AddCounter("lockd_backups_total", "Backups this node streamed whole.");
  Counter& backups_failed_ = metrics_.AddCounter(
      "lockd_backups_failed_total", "Backups that ended early (reader gone, node stopping).");
  Counter& backups_refused_ = metrics_.AddCounter("lockd_backups_refused_total",
                                                  "Backups refused because too many ran at once.");
  Gauge& backups_in_progress_ =
      metrics_.AddGauge("lockd_backups_in_progress", "Backups this node is streaming now.");
};

}  // namespace lockd::server
