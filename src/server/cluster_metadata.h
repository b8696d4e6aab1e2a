// ClusterMetadata: stamps `lockd-leader` and `lockd-cluster` on the initial metadata of every
// response the client port sends (design brief: every response carries them; a client that sees
// the cluster id change must treat its leases as lost). A gRPC server interceptor, so no handler
// can forget it, health and reflection included.
//
// While the cluster id is not decided yet (a new cluster before its first leader decided it, or a
// node its peers refuse), every lockd.v1 call answers UNAVAILABLE with the undecided reason,
// whatever the handler answered: nothing is known to be this cluster's yet, and a retry with the
// same request id is always safe. Health and reflection answer as usual.
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
  /// The UNAVAILABLE message while the cluster id is empty (default: a generic one).
  void SetUndecidedReason(std::function<std::string()> reason);
  std::string UndecidedReason() const;
  std::string leader() const;
  std::string cluster() const;

  /// An interceptor factory for ServerBuilder::experimental().SetInterceptorCreators. The
  /// ClusterMetadata must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Factory();

 private:
  mutable std::mutex mu_;  ///< guards the two strings and the two sources
  std::string leader_;
  std::string cluster_;
  std::function<std::string()> leader_source_;
  std::function<std::string()> undecided_reason_;
};

}  // namespace lockd::server
