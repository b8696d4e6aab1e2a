// Node: one running lockd process. It owns the data directory and the listeners: the client gRPC
// server (health, reflection, and the lockd services) and the HTTP endpoint (/healthz, /metrics).
// Start() binds everything or fails with the reason; Shutdown() stops accepting, lets in-flight
// calls finish within a bound, and releases the data directory.
#pragma once

#include <atomic>
#include <memory>
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
class RaftStore;
}  // namespace lockd::storage

namespace lockd::server {

class Node {
 public:
  explicit Node(NodeOptions options);
  ~Node();

  Status Start();
  void Shutdown();

  const NodeOptions& options() const { return options_; }

 private:
  Status StartHttp();

  NodeOptions options_;
  std::unique_ptr<storage::DataDir> data_dir_;
  std::unique_ptr<storage::RaftStore> raft_store_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<httplib::Server> http_server_;
  std::thread http_thread_;
  std::atomic<bool> serving_{false};  ///< What /healthz and grpc.health.v1 report.
  MetricsRegistry metrics_;
  Gauge& up_ = metrics_.AddGauge("lockd_up", "Whether this node is serving (1) or not (0).");
};

}  // namespace lockd::server
