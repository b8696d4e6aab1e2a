// Quorum arithmetic, kept apart from the rest of the core so its invariants are easy to check.
// A MajorityConfig is a set of voters; a JointConfig is the incoming and (during a membership
// change) outgoing majority, and every decision needs both.
#pragma once

#include <functional>
#include <map>
#include <set>

#include "raft/types.h"

namespace lockd::raft {

enum class VoteResult { kPending, kLost, kWon };

class MajorityConfig {
 public:
  MajorityConfig() = default;
  explicit MajorityConfig(std::set<NodeId> voters) : voters_(std::move(voters)) {}
  const std::set<NodeId>& voters() const { return voters_; }
  bool empty() const { return voters_.empty(); }
  bool contains(NodeId id) const { return voters_.count(id) > 0; }

  /// The largest index that a majority has reached (`acked` gives each voter's match index).
  /// An empty config commits anything (it does not constrain a joint decision).
  LogIndex CommittedIndex(const std::function<LogIndex(NodeId)>& acked) const;
  /// Given each voter's vote (absent: not yet voted).
  VoteResult Vote(const std::map<NodeId, bool>& votes) const;
  /// Whether the voters for which `yes` holds form a majority.
  bool Majority(const std::function<bool(NodeId)>& yes) const;

 private:
  std::set<NodeId> voters_;
};

class JointConfig {
 public:
  JointConfig() = default;
  JointConfig(MajorityConfig incoming, MajorityConfig outgoing)
      : incoming_(std::move(incoming)), outgoing_(std::move(outgoing)) {}
  const MajorityConfig& incoming() const { return incoming_; }
  const MajorityConfig& outgoing() const { return outgoing_; }
  bool contains(NodeId id) const { return incoming_.contains(id) || outgoing_.contains(id); }
  std::set<NodeId> ids() const;

  LogIndex CommittedIndex(const std::function<LogIndex(NodeId)>& acked) const;
  VoteResult Vote(const std::map<NodeId, bool>& votes) const;
  bool Majority(const std::function<bool(NodeId)>& yes) const;

 private:
  MajorityConfig incoming_;
  MajorityConfig outgoing_;
};

}  // namespace lockd::raft
