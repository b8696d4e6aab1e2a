#include "raft/conf_change.h"

#include <algorithm>
#include <sstream>

namespace lockd::raft {
namespace {

using IdSet = std::set<NodeId>;

IdSet ToSet(const std::vector<NodeId>& v) {
  return IdSet(v.begin(), v.end());
}
std::vector<NodeId> ToVec(const IdSet& s) {
  return std::vector<NodeId>(s.begin(), s.end());
}

std::string Id(NodeId id) {
  return std::to_string(id.value());
}

constexpr uint8_t kEntryVersion = 1;

}  // namespace

bool IsJoint(const ConfState& cs) {
  return !cs.voters_outgoing.empty();
}

Status CheckConfState(const ConfState& cs) {
  const IdSet voters = ToSet(cs.voters), out = ToSet(cs.voters_outgoing),
              learners = ToSet(cs.learners), next = ToSet(cs.learners_next);
  if (voters.size() != cs.voters.size() || out.size() != cs.voters_outgoing.size() ||
      learners.size() != cs.learners.size() || next.size() != cs.learners_next.size()) {
    return InvalidArgument("a node is listed twice in one role");
  }
  if (voters.empty()) return InvalidArgument("no voter left");
  if (voters.count(NodeId()) || out.count(NodeId()) || learners.count(NodeId()) ||
      next.count(NodeId())) {
    return InvalidArgument("node id 0 is not a node");
  }
  for (NodeId l : learners) {
    if (voters.count(l) || out.count(l))
      return InvalidArgument("node " + Id(l) + " is both a voter and a learner");
  }
  for (NodeId l : next) {
    if (!out.count(l) || voters.count(l) || learners.count(l))
      return InvalidArgument("node " + Id(l) + " in learners_next is not only an outgoing voter");
  }
  if (out.empty() && (!next.empty() || cs.auto_leave))
    return InvalidArgument("learners_next or auto_leave outside a joint configuration");
  return Status::Ok();
}

size_t VoterDelta(const ConfState& a, const ConfState& b) {
  const IdSet x = ToSet(a.voters), y = ToSet(b.voters);
  size_t d = 0;
  for (NodeId id : x) d += y.count(id) ? 0 : 1;
  for (NodeId id : y) d += x.count(id) ? 0 : 1;
  return d;
}

Result<ConfState> ApplyConfChange(const ConfState& cur, const ConfChange& cc) {
  if (IsJoint(cur)) return FailedPrecondition("leave the joint configuration first");
  if (cc.changes.empty()) return InvalidArgument("an empty membership change");
  IdSet voters = ToSet(cur.voters), learners = ToSet(cur.learners), seen;
  for (const auto& c : cc.changes) {
    if (c.node.zero()) return InvalidArgument("node id 0 is not a node");
    if (!seen.insert(c.node).second)
      return InvalidArgument("node " + Id(c.node) + " is changed twice");
    switch (c.type) {
      case ConfChangeType::kAddVoter:
        learners.erase(c.node);
        voters.insert(c.node);
        break;
      case ConfChangeType::kAddLearner:
        voters.erase(c.node);
        learners.insert(c.node);
        break;
      case ConfChangeType::kRemove:
        if (!voters.count(c.node) && !learners.count(c.node))
          return InvalidArgument("node " + Id(c.node) + " is not a member");
        voters.erase(c.node);
        learners.erase(c.node);
        break;
    }
  }
  ConfState next;
  next.voters = ToVec(voters);
  const size_t delta = VoterDelta(cur, next);
  if (delta <= 1 && !cc.force_joint) {
    next.learners = ToVec(learners);
  } else {
    // Joint: the old voters stay voters (outgoing) until the joint configuration is left; those
    // that become learners wait in learners_next meanwhile.
    next.voters_outgoing = cur.voters;
    const IdSet out = ToSet(cur.voters);
    IdSet now_learners, later_learners;
    for (NodeId l : learners) (out.count(l) ? later_learners : now_learners).insert(l);
    next.learners = ToVec(now_learners);
    next.learners_next = ToVec(later_learners);
    next.auto_leave = true;
  }
  if (Status s = CheckConfState(next); !s.ok()) return s;
  return next;
}

Result<ConfState> LeaveJoint(const ConfState& cur) {
  if (!IsJoint(cur)) return FailedPrecondition("not in a joint configuration");
  ConfState next;
  next.voters = cur.voters;
  IdSet learners = ToSet(cur.learners);
  learners.insert(cur.learners_next.begin(), cur.learners_next.end());
  next.learners = ToVec(learners);
  if (Status s = CheckConfState(next); !s.ok()) return s;
  return next;
}

JointConfig ToJointConfig(const ConfState& cs) {
  return JointConfig(MajorityConfig(ToSet(cs.voters)), MajorityConfig(ToSet(cs.voters_outgoing)));
}

std::set<NodeId> Members(const ConfState& cs) {
  IdSet s = ToSet(cs.voters);
  s.insert(cs.voters_outgoing.begin(), cs.voters_outgoing.end());
  s.insert(cs.learners.begin(), cs.learners.end());
  s.insert(cs.learners_next.begin(), cs.learners_next.end());
  return s;
}

bool IsVoter(const ConfState& cs, NodeId id) {
  return std::count(cs.voters.begin(), cs.voters.end(), id) > 0 ||
         std::count(cs.voters_outgoing.begin(), cs.voters_outgoing.end(), id) > 0;
}

void PutConfState(Writer& w, const ConfState& cs) {
  for (const auto* list : {&cs.voters, &cs.voters_outgoing, &cs.learners, &cs.learners_next}) {
    w.Varint(list->size());
    for (NodeId id : *list) w.Varint(id.value());
  }
  w.U8(cs.auto_leave ? 1 : 0);
}

bool GetConfState(Reader& r, ConfState* cs) {
  for (auto* list : {&cs->voters, &cs->voters_outgoing, &cs->learners, &cs->learners_next}) {
    uint64_t n = 0;
    // Each id takes at least one byte: a larger count is a lie, not an allocation.
    if (!r.Varint(&n) || n > r.remaining()) return false;
    list->clear();
    list->reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t id = 0;
      if (!r.Varint(&id)) return false;
      list->push_back(NodeId(id));
    }
  }
  uint8_t auto_leave = 0;
  if (!r.U8(&auto_leave) || auto_leave > 1) return false;
  cs->auto_leave = auto_leave != 0;
  return true;
}

std::string EncodeConfChangeEntry(const ConfChangeEntry& e) {
  Writer w;
  w.U8(kEntryVersion);
  PutConfState(w, e.target);
  w.Bytes(e.context);
  return w.Take();
}

Result<ConfChangeEntry> DecodeConfChangeEntry(std::string_view in) {
  Reader r(in);
  uint8_t version = 0;
  if (!r.U8(&version)) return DataLoss("an empty membership entry");
  if (version > kEntryVersion) {
    return FailedPrecondition("membership entry format " + std::to_string(version) +
                              " is newer than " + std::to_string(kEntryVersion));
  }
  ConfChangeEntry e;
  if (!GetConfState(r, &e.target) || !r.Bytes(&e.context) || !r.done()) {
    return DataLoss("a truncated or damaged membership entry");
  }
  if (Status s = CheckConfState(e.target); !s.ok()) {
    return DataLoss("a membership entry with a malformed membership: " + s.message());
  }
  return e;
}

std::string ToString(const ConfState& cs) {
  std::ostringstream s;
  auto list = [&](const std::vector<NodeId>& v) {
    s << "(";
    for (size_t i = 0; i < v.size(); ++i) s << (i ? " " : "") << v[i].value();
    s << ")";
  };
  s << "voters";
  list(cs.voters);
  if (IsJoint(cs)) {
    s << "&&";
    list(cs.voters_outgoing);
  }
  if (!cs.learners.empty()) {
    s << " learners";
    list(cs.learners);
  }
  if (!cs.learners_next.empty()) {
    s << " learners_next";
    list(cs.learners_next);
  }
  if (cs.auto_leave) s << " auto_leave";
  return s.str();
}

}  // namespace lockd::raft
