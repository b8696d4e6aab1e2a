// Joining a running cluster (lockd --join): before anything is written, the new node asks the
// members it was given for the cluster id and the member table (ClusterService.Status). It then
// records them as its identity, never bootstraps, and waits for the leader to add it
// (ClusterService.AddMember); everything else comes from the leader's log or snapshot.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "base/status.h"
#include "server/options.h"

namespace lockd::server {

struct JoinedCluster {
  std::string cluster_id;
  std::vector<MemberSpec> members;  ///< as the leader knows them
};

/// Asks each of `addrs` in turn (a few seconds each, for up to `total`) for its Status and
/// takes the leader's answer (a follower's answer only points to the leader, which is asked
/// next): UNAVAILABLE naming every failure when no leader answers with a decided cluster id, or
/// when the leader's table lacks a member's address.
/// `credentials`: how to dial a member's client port (server/tls.h; default plaintext).
Result<JoinedCluster> AskCluster(const std::vector<std::string>& addrs,
                                 std::chrono::milliseconds total,
                                 std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

}  // namespace lockd::server
