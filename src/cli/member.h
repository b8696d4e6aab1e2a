// lockctl member add|remove|list: membership changes through ClusterService (any node forwards
// them to the leader). docs/operations.md walks through them.
#pragma once

#include <cstdint>
#include <string>

#include "cli/commands.h"

namespace lockd::cli {

/// Adds node `id` (started with `lockd --join`) and waits until it is a voter: prints when it
/// became one. Waits at least 90 s whatever --timeout-ms says (the new node catches up first).
/// After an attempt whose answer was lost, "already a member" with these addresses is success
/// once the leader shows the node as a voter (docs/cli.md).
int RunMemberAdd(const CommandContext& c, uint64_t id, const std::string& peer_addr,
                 const std::string& client_addr);
/// Removes node `id` (the leader hands over first when it is the one leaving). After an attempt
/// whose answer was lost, "not a member" is success.
int RunMemberRemove(const CommandContext& c, uint64_t id);
/// Every member: id, role, addresses, match, lag, reachability.
int RunMemberList(const CommandContext& c);

}  // namespace lockd::cli
