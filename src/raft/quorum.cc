#include "raft/quorum.h"

#include <algorithm>
#include <vector>

namespace lockd::raft {

LogIndex MajorityConfig::CommittedIndex(const std::function<LogIndex(NodeId)>& acked) const {
  if (voters_.empty()) return LogIndex(UINT64_MAX);
  std::vector<LogIndex> m;
  for (NodeId id : voters_) m.push_back(acked(id));
  std::sort(m.begin(), m.end(), std::greater<>());
  return m[voters_.size() / 2];  // the (n/2+1)-th largest: reached by a majority
}

VoteResult MajorityConfig::Vote(const std::map<NodeId, bool>& votes) const {
  if (voters_.empty()) return VoteResult::kWon;
  size_t yes = 0, missing = 0;
  for (NodeId id : voters_) {
    auto it = votes.find(id);
    if (it == votes.end()) {
      ++missing;
    } else if (it->second) {
      ++yes;
    }
  }
  const size_t q = voters_.size() / 2 + 1;
  if (yes >= q) return VoteResult::kWon;
  if (yes + missing >= q) return VoteResult::kPending;
  return VoteResult::kLost;
}

bool MajorityConfig::Majority(const std::function<bool(NodeId)>& yes) const {
  if (voters_.empty()) return true;
  size_t n = 0;
  for (NodeId id : voters_) n += yes(id) ? 1 : 0;
  return n >= voters_.size() / 2 + 1;
}

std::set<NodeId> JointConfig::ids() const {
  std::set<NodeId> s = incoming_.voters();
  s.insert(outgoing_.voters().begin(), outgoing_.voters().end());
  return s;
}

LogIndex JointConfig::CommittedIndex(const std::function<LogIndex(NodeId)>& acked) const {
  return std::min(incoming_.CommittedIndex(acked), outgoing_.CommittedIndex(acked));
}

VoteResult JointConfig::Vote(const std::map<NodeId, bool>& votes) const {
  const VoteResult a = incoming_.Vote(votes), b = outgoing_.Vote(votes);
  if (a == b) return a;
  if (a == VoteResult::kLost || b == VoteResult::kLost) return VoteResult::kLost;
  return VoteResult::kPending;
}

bool JointConfig::Majority(const std::function<bool(NodeId)>& yes) const {
  return incoming_.Majority(yes) && outgoing_.Majority(yes);
}

}  // namespace lockd::raft
