// ClusterMetadata: stamps `lockd-leader` and `lockd-cluster` on the initial metadata of every
// response the client port sends (design brief: every response carries them; a client that sees
// the cluster id change must treat its leases as lost). A gRPC server interceptor, so no handler
// can forget it, health and reflection included.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lockd::server {

/// The values to stamp, updated by the runtime when the leader or cluster id changes.
class ClusterMetadata {
 public:
  void Set(std::string leader_client_addr, std::string cluster_id);
  /// Where the leader's address comes from at each response (the runtime's current view), so
  /// the stamp is never older than what the node itself knows; overrides Set's leader.
  void SetLeaderSource(std::function<std::string()> source);
  std::string leader() const;
  std::string cluster() const;

  /// An interceptor factory for ServerBuilder::experimental().SetInterceptorCreators. The
  /// ClusterMetadata must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Factory();

 private:
  mutable std::mutex mu_;  ///< guards the two strings
  std::string leader_;
  std::string cluster_;
  std::function<std::string()> leader_source_;
};

}  // namespace lockd::server
