// Membership changes, kept apart from the core so their rules are small and testable alone (as
// etcd's confchange). A ConfChange names what an operator asks for; Apply turns it into the
// ConfState it leads to, from the ConfState in force. A change of at most one voter is applied
// directly (a "simple" change); a change of more voters, or one that asks for it, goes through a
// joint configuration (old and new voters must both agree on every decision) that is left by a
// second entry (LeaveJoint), proposed by the leader itself once the joint one is applied.
//
// The entry a leader appends carries the whole resulting ConfState, not the delta: applying an
// entry twice (a restart replays the log after the snapshot) gives the same membership, and a
// node that learns the log from index 1 needs no bootstrap membership to follow it.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/codec.h"
#include "base/status.h"
#include "raft/quorum.h"
#include "raft/types.h"

namespace lockd::raft {

enum class ConfChangeType : uint8_t {
  kAddVoter = 0,    ///< a new voter, or a learner promoted
  kAddLearner = 1,  ///< a new learner, or a voter demoted
  kRemove = 2,      ///< leaves the cluster (voter or learner)
};

struct ConfChangeSingle {
  ConfChangeType type = ConfChangeType::kAddVoter;
  NodeId node;
  bool operator==(const ConfChangeSingle&) const = default;
};

struct ConfChange {
  std::vector<ConfChangeSingle> changes;
  /// Go through a joint configuration even for a single voter change.
  bool force_joint = false;
  /// Opaque to the core (e.g. the new node's address): carried in the entry for the runtime.
  std::string context;
};

/// What a kConfChange entry carries: the membership it leads to, and the operator's context.
struct ConfChangeEntry {
  ConfState target;
  std::string context;
  bool operator==(const ConfChangeEntry&) const = default;
};

/// Whether `cs` is well formed: no id twice in a role, voters and learners disjoint, learners_next
/// only in a joint configuration and only among outgoing voters, at least one voter.
Status CheckConfState(const ConfState& cs);
bool IsJoint(const ConfState& cs);
/// The membership `cc` leads to from `cur` (which must not be joint). INVALID_ARGUMENT for a
/// change that makes no sense (removing an unknown node, no voter left, ...).
Result<ConfState> ApplyConfChange(const ConfState& cur, const ConfChange& cc);
/// The membership after leaving the joint configuration `cur`.
Result<ConfState> LeaveJoint(const ConfState& cur);
/// Voters removed or added between two non-joint memberships (a simple change has at most one).
size_t VoterDelta(const ConfState& a, const ConfState& b);

JointConfig ToJointConfig(const ConfState& cs);
/// Every member that receives the log: voters (both halves), learners and learners_next.
std::set<NodeId> Members(const ConfState& cs);
bool IsVoter(const ConfState& cs, NodeId id);

/// The one binary form of a ConfState (in membership entries, snapshot metadata on disk and on the
/// wire): four id lists then the auto_leave flag. GetConfState checks only framing; callers that
/// need a well-formed membership also run CheckConfState.
void PutConfState(Writer& w, const ConfState& cs);
bool GetConfState(Reader& r, ConfState* cs);

/// Versioned encoding of a kConfChange entry's data; decoding refuses damage and newer versions.
std::string EncodeConfChangeEntry(const ConfChangeEntry& e);
Result<ConfChangeEntry> DecodeConfChangeEntry(std::string_view data);

std::string ToString(const ConfState& cs);

}  // namespace lockd::raft
