// Messages between Raft peers. Plain values; the runtime encodes them for the wire (with the
// format version) and the simulator moves them as they are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "raft/types.h"

namespace lockd::raft {

enum class MessageType : uint8_t {
  kPreVote = 1,
  kPreVoteResp,
  kVote,
  kVoteResp,
  kApp,  ///< append entries (also the probe)
  kAppResp,
  kHeartbeat,  ///< carries a round id, echoed by the response
  kHeartbeatResp,
  kTimeoutNow,  ///< leadership transfer: campaign now, bypassing the vote refusal
  /// The leader's snapshot at `snapshot` (its payload travels beside the message: see raft.h).
  /// The follower answers with a kAppResp for `snapshot.index` (or its commit index).
  kSnapshot,
};

const char* TypeName(MessageType t);

struct Message {
  uint32_t version = kFormatVersion;
  MessageType type = MessageType::kApp;
  NodeId from, to;
  Term term;
  /// kApp: index and term of the entry before `entries`. kVote/kPreVote: the candidate's last.
  /// kAppResp: the index the follower now matches (or, rejecting, the index it rejected).
  Term log_term;
  LogIndex index;
  std::vector<Entry> entries;
  LogIndex commit;
  bool reject = false;
  LogIndex reject_hint;   ///< kAppResp reject: the follower's last index, bounded by `index`
  Term hint_term;         ///< kAppResp reject: the follower's term at reject_hint
  uint64_t round = 0;     ///< kHeartbeat / kHeartbeatResp: the leader's round id
  bool transfer = false;  ///< kVote: campaign caused by a leadership transfer
  SnapshotMeta snapshot;  ///< kSnapshot: what the snapshot covers

  bool operator==(const Message&) const = default;
};

}  // namespace lockd::raft
