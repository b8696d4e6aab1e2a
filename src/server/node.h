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
#include "server/node_metrics.h"
#include "server/options.h"
#include "server/tls.h"

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
  /// SIGHUP: reads the TLS certificate files again and serves them if they pass the checks a
  /// start makes; otherwise the old ones stay and the error says why (server/tls.h).
  Status ReloadCertificates();
  /// SIGHUP too: reads --access-file again; on an error the policy in force stays.
  Status ReloadAccessPolicy();

  const NodeOptions& options() const { return options_; }
  /// Empty while not decided yet.
  std::string cluster_id() const;

 private:
  Status StartHttp();
  /// Why the node is not ready (the first reason that applies), or empty when it is: what
  /// /readyz, grpc.health.v1 and lockd_up report.
  std::string NotReadyReason(const ReplicaStatus& st) const;
  void WatchLeadership();  ///< keeps metadata, health and gauges current

  NodeOptions options_;
  std::unique_ptr<storage::DataDir> data_dir_;
  std::shared_ptr<NodeSecurity> security_;
  std::unique_ptr<AccessControl> access_;  ///< null: no --access-file
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
  std::atomic<bool> serving_{false};  ///< What /readyz and grpc.health.v1 report.
  std::atomic<bool> stopping_{false};
  std::mutex not_ready_mu_;       ///< guards not_ready_reason_
  std::string not_ready_reason_;  ///< the watcher's last NotReadyReason (/readyz prints it)
  NodeMetrics metrics_;
};

}  // namespace lockd::server
