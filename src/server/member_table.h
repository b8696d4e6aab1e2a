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

/// Versioned encoding of a member table for a membership entry's context. A removal also names
/// the data dir incarnation of the member it removes (as the leader knows it; empty when the
/// leader never heard from it), so that a later node under the same id (a replacement) that
/// replays the entry knows it is not the one removed.
std::string EncodeMemberTable(const std::vector<MemberSpec>& members,
                              const std::string& removed_incarnation = {});
/// Refuses damage, a newer version, an id 0 and an id twice, and an address that is not a
/// plain host:port (ValidMemberAddr): a table comes from a peer or the log, never trusted.
Result<std::vector<MemberSpec>> DecodeMemberTable(std::string_view data);
/// The incarnation a removal's context names (empty when it names none).
Result<std::string> DecodeRemovedIncarnation(std::string_view data);

/// Whether `addr` is host:port with a port in 1..65535 and a host of hostname characters, an
/// IPv4 address or a bracketed IPv6 address, at most 255 characters: nothing that could break
/// a line of the identity file or a log line.
Status ValidMemberAddr(const std::string& addr);

/// The table after applying a membership entry that leads to `target` with `context`: the
/// context's table (or `current` when it has none), keeping only members of `target`.
Result<std::vector<MemberSpec>> MemberTableAfter(const std::vector<MemberSpec>& current,
                                                 const raft::ConfState& target,
                                                 std::string_view context);

/// Why `candidate` cannot join a cluster whose table is `members` (an id or an address already
/// used), or OK.
Status CheckNewMember(const std::vector<MemberSpec>& members, const MemberSpec& candidate);

}  // namespace lockd::server
