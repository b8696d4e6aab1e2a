// The member table: every member's id, peer address and client address, as the replicated log
// decides it. A membership entry (raft::ConfChangeEntry) carries in its context the whole table
// the change leads to, so every node that applies the entry — including a node that joins and
// learns the log from the leader — knows how to reach every member and what `lockd-leader` to
// name, without any flag. An entry with an empty context (leaving a joint configuration) keeps
// the table, trimmed to the members of its configuration. The table in force is recorded in the
// data dir's identity file (IdentityStore::SetMembers) each time it changes, so a restart and a
// snapshot (which covers the entries that made it) keep it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "raft/conf_change.h"
#include "server/options.h"

namespace lockd::server {

/// Versioned encoding of a member table for a membership entry's context.
std::string EncodeMemberTable(const std::vector<MemberSpec>& members);
/// Refuses damage, a newer version, an id 0 and an id twice.
Result<std::vector<MemberSpec>> DecodeMemberTable(std::string_view data);

/// The table after applying a membership entry that leads to `target` with `context`: the
/// context's table (or `current` when it has none), keeping only members of `target`.
Result<std::vector<MemberSpec>> MemberTableAfter(const std::vector<MemberSpec>& current,
                                                 const raft::ConfState& target,
                                                 std::string_view context);

/// Why `candidate` cannot join a cluster whose table is `members` (an id or an address already
/// used), or OK.
Status CheckNewMember(const std::vector<MemberSpec>& members, const MemberSpec& candidate);

}  // namespace lockd::server
