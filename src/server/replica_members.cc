// Replica: membership changes. Every node applies membership entries (the member table, the
// peers to dial, its own removal); the leader runs one AddMember or RemoveMember at a time.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "server/cluster_identity.h"
#include "server/member_table.h"
#include "server/peer_transport.h"
#include "server/replica.h"

namespace lockd::server {

namespace {

std::string Node(uint64_t id) {
  return "node " + std::to_string(id);
}

}  // namespace

bool Replica::NamesSelf(const std::vector<MemberSpec>& table) const {
  return std::any_of(table.begin(), table.end(),
                     [this](const MemberSpec& m) { return m.id == options_.node_id; });
}

void Replica::TakeMemberTable(const std::vector<MemberSpec>& table, uint64_t index) {
  // A joiner stays one until a table names it: catching up, it applies older entries first.
  if (NamesSelf(table)) options_.identity->SetJoining(false);
  for (const auto& m : table) {
    if (m.id != options_.node_id) transport_.SetPeer(m.id, m.peer_addr);
  }
  transport_.ForgetLearnedPeers(table, index);
}

Status Replica::ApplyMembership(const raft::Entry& entry) {
  auto cc = raft::DecodeConfChangeEntry(entry.data);
  if (!cc.ok()) {
    return Status(cc.status().code(), "cannot apply membership entry " +
                                          std::to_string(entry.index.value()) + ": " +
                                          cc.status().message());
  }
  const auto old_members = raft::Members(applied_conf_);
  const auto new_members = raft::Members(cc->target);
  applied_conf_ = cc->target;
  if (!options_.identity) return Status::Ok();
  if (entry.index.value() <= options_.identity->membership_index()) {
    // Replayed at a restart: the identity file records this entry's effects and later ones
    // (the table, forgotten incarnations, this node's removal mark). Acting again on an old
    // entry would undo later ones: an added node would see the entry from before it was added
    // as its removal, an old node would forget a peer added since.
    return Status::Ok();
  }
  auto table = MemberTableAfter(options_.identity->members(), cc->target, cc->context);
  if (!table.ok()) {
    return Status(table.status().code(), "membership entry " + std::to_string(entry.index.value()) +
                                             ": " + table.status().message());
  }
  // The removal names the incarnation the leader knew (empty: none; the identity store then
  // takes the one this node knows). It is recorded as removed, so it stays refused.
  auto named = DecodeRemovedIncarnation(cc->context);
  std::vector<RemovedMember> removed;
  for (raft::NodeId id : old_members) {
    if (!new_members.count(id)) removed.push_back({id.value(), named.ok() ? *named : ""});
  }
  const raft::NodeId self(options_.node_id);
  // Whether this data dir is the one removed: a replacement under the same id replays its
  // predecessor's removal and is not it.
  bool self_removed = old_members.count(self) && !new_members.count(self);
  if (self_removed) {
    self_removed = named.ok() && *named == options_.identity->incarnation();
    if (!self_removed) {
      spdlog::info(
          "node {}: membership entry {} removed an earlier data dir under this id, not "
          "this one",
          options_.node_id, entry.index.value());
    }
  }
  if (Status s =
          options_.identity->SetMembers(*table, removed, entry.index.value(), NamesSelf(*table));
      !s.ok()) {
    return s;
  }
  TakeMemberTable(*table, entry.index.value());
  // Their streams are retired once this pass's Readies are sent (HandleReadies): the core sends
  // a removed member its last append when it takes the new configuration, after this apply.
  for (const RemovedMember& r : removed) {
    if (r.id != options_.node_id) peers_leaving_.insert(r.id);
  }
  spdlog::info("node {}: membership entry {} applied: {}", options_.node_id, entry.index.value(),
               raft::ToString(cc->target));
  if (self_removed && !removed_) {
    removed_ = true;
    const std::string why = "this node (" + Node(options_.node_id) +
                            ") was removed from the cluster by membership entry " +
                            std::to_string(entry.index.value());
    spdlog::warn("{}; it stops serving and never campaigns again (docs/operations.md)", why);
    options_.identity->MarkRemoved(why);
  }
  return Status::Ok();
}

Status Replica::ApplySnapshotMembers(const raft::SnapshotMeta& meta) {
  if (!options_.identity) return Status::Ok();
  // Without a readable table the Raft membership still says whether this node is in: a joiner
  // it names is one no more (else it would admit every peer, and rejoin at a restart, for good).
  const auto members = raft::Members(meta.conf);
  const bool conf_names_self = members.count(raft::NodeId(options_.node_id)) > 0;
  const std::string encoded = options_.identity->TakeSnapshotMembers(meta.index.value());
  if (encoded.empty()) {
    return conf_names_self ? options_.identity->EndJoining() : Status::Ok();
  }
  auto table = MemberTableAfter(options_.identity->members(), meta.conf, encoded);
  if (!table.ok()) {
    // The sender's table is advisory (the log decides membership): keep the one we have.
    spdlog::warn("node {}: the member table sent with the snapshot at {} is unreadable: {}",
                 options_.node_id, meta.index.value(), table.status().ToString());
    return conf_names_self ? options_.identity->EndJoining() : Status::Ok();
  }
  if (Status s = options_.identity->SetMembers(*table, {}, meta.index.value(), NamesSelf(*table));
      !s.ok()) {
    return s;
  }
  TakeMemberTable(*table, meta.index.value());
  spdlog::info("node {}: member table from the snapshot at {}: {} members", options_.node_id,
               meta.index.value(), table->size());
  return Status::Ok();
}

bool Replica::MemberChangeInProgress() const {
  return change_.has_value() || raft::IsJoint(raft_->conf_state()) ||
         raft_->conf_index().value() > applied_;
}

void Replica::EndMemberChange(const Status& s) {
  if (!change_) return;
  MemberChange c = std::move(*change_);
  change_.reset();
  if (c.added) c.added(s);
  if (c.removed) c.removed(s);
}

void Replica::AddMember(MemberSpec member, Deadline deadline,
                        std::function<void(Result<MemberAdded>)> done) {
  Enqueue([this, member = std::move(member), deadline, done = std::move(done)]() mutable {
    if (stopping_ || !leader_) return done(Unavailable("not the leader; retry"));
    if (!options_.identity) return done(Internal("no member table"));
    if (MemberChangeInProgress()) {
      return done(FailedPrecondition(
          "another membership change is in progress; retry once it finished (lockctl member "
          "list shows it)"));
    }
    const raft::ConfState& conf = raft_->conf_state();
    const raft::NodeId id(member.id);
    const bool learner = std::count(conf.learners.begin(), conf.learners.end(), id) > 0;
    MemberChange c{MemberChange::Phase::kLearner,
                   member,
                   raft::LogIndex(),
                   deadline,
                   std::move(done),
                   nullptr,
                   BootTime(),
                   {}};
    if (learner) {
      // An earlier add that timed out: promote it if it is the same node.
      std::vector<MemberSpec> others;
      for (const auto& m : options_.identity->members()) {
        if (m.id == member.id && m == member) continue;
        others.push_back(m);
      }
      if (Status s = CheckNewMember(others, member); !s.ok()) return c.added(s);
      c.index = raft_->conf_index();
      spdlog::info("node {}: {} is a learner already; promoting it once it caught up",
                   options_.node_id, Node(member.id));
    } else {
      std::vector<MemberSpec> table = options_.identity->members();
      if (Status s = CheckNewMember(table, member); !s.ok()) return c.added(s);
      if (raft::Members(conf).count(id)) {
        return c.added(FailedPrecondition(Node(member.id) + " is already a member"));
      }
      table.push_back(member);
      raft::ConfChange cc;
      cc.changes.push_back({raft::ConfChangeType::kAddLearner, id});
      cc.context = EncodeMemberTable(table);
      auto index = raft_->ProposeConfChange(cc);
      if (!index.ok()) return c.added(index.status());
      c.index = *index;
      spdlog::info("node {}: adding {} (peer {}, client {}) as a learner at index {}",
                   options_.node_id, Node(member.id), member.peer_addr, member.client_addr,
                   index->value());
    }
    change_ = std::move(c);
  });
}

void Replica::RemoveMember(uint64_t id, Deadline deadline,
                           std::function<void(Result<uint64_t>)> done) {
  Enqueue([this, id, deadline, done = std::move(done)]() mutable {
    if (stopping_ || !leader_) return done(Unavailable("not the leader; retry"));
    if (MemberChangeInProgress()) {
      return done(FailedPrecondition(
          "another membership change is in progress; retry once it finished (lockctl member "
          "list shows it)"));
    }
    const raft::ConfState& conf = raft_->conf_state();
    if (!raft::Members(conf).count(raft::NodeId(id))) {
      return done(FailedPrecondition(Node(id) + " is not a member"));
    }
    if (id == options_.node_id) {
      return done(
          FailedPrecondition("the leader cannot remove itself; hand leadership over first"));
    }
    // Whether the voters are reachable is judged over a while (the core forgets who answered
    // at every quorum check): proposed by AdvanceMemberChange as soon as it is allowed.
    MemberChange c{MemberChange::Phase::kCheckingRemoval,
                   MemberSpec{id, {}, {}},
                   raft::LogIndex(),
                   deadline,
                   nullptr,
                   std::move(done),
                   BootTime(),
                   {}};
    // A voter that is up answers within a few ticks, unless this leader's stream to it is
    // still being set up (a new leader, a reconnect's back-off): up to 2·E_min.
    c.check_until = clock_.Now() + 2 * options_.timing.election_min;
    change_ = std::move(c);
    AdvanceMemberChange(clock_.Now());
  });
}

Status Replica::RemovalRefusal(uint64_t id, const std::set<uint64_t>& seen) const {
  const raft::ConfState& conf = raft_->conf_state();
  const raft::NodeId node(id);
  if (!raft::IsVoter(conf, node)) return Status::Ok();
  // The change is committed by the current voters and the cluster then runs on the remaining
  // ones: both need a majority this leader reaches, and at least one voter must remain.
  size_t remaining = 0, reachable = 0, current_reachable = 0;
  for (raft::NodeId v : conf.voters) {
    const bool up = v.value() == options_.node_id || seen.count(v.value());
    current_reachable += up ? 1 : 0;
    if (v == node) continue;
    ++remaining;
    reachable += up ? 1 : 0;
  }
  if (remaining == 0) {
    return FailedPrecondition("removing " + Node(id) +
                              " would leave no voter; a cluster keeps at least one");
  }
  if (current_reachable <= conf.voters.size() / 2) {
    return FailedPrecondition("only " + std::to_string(current_reachable) + " of the " +
                              std::to_string(conf.voters.size()) +
                              " voters are reachable, not a majority: the removal could not be "
                              "committed. Bring a voter back first");
  }
  if (reachable <= remaining / 2) {
    return FailedPrecondition(
        "removing " + Node(id) + " would leave " + std::to_string(remaining) +
        " voters of which only " + std::to_string(reachable) +
        " are reachable, not a majority: the cluster would stop. Bring the others back, or "
        "remove an unreachable member first");
  }
  return Status::Ok();
}

void Replica::ProposeRemoval(BootTime now) {
  MemberChange& c = *change_;
  for (raft::NodeId v : raft_->conf_state().voters) {
    const raft::Progress* pr = raft_->progress(v);
    if (pr && pr->recent_active() && transport_.Stats(v.value()).connected) {
      c.seen_active.insert(v.value());
    }
  }
  Status refusal = RemovalRefusal(c.member.id, c.seen_active);
  if (!refusal.ok()) {
    if (now < c.check_until) return;  // more answers may come
    return EndMemberChange(refusal);
  }
  std::vector<MemberSpec> table =
      options_.identity ? options_.identity->members() : std::vector<MemberSpec>{};
  const uint64_t id = c.member.id;
  std::erase_if(table, [id](const MemberSpec& m) { return m.id == id; });
  std::string incarnation;
  if (options_.identity) {
    const auto known = options_.identity->Recorded().known_peers;
    if (auto it = known.find(id); it != known.end()) incarnation = it->second;
  }
  raft::ConfChange cc;
  cc.changes.push_back({raft::ConfChangeType::kRemove, raft::NodeId(id)});
  cc.context = EncodeMemberTable(table, incarnation);
  auto index = raft_->ProposeConfChange(cc);
  if (!index.ok()) return EndMemberChange(index.status());
  spdlog::info("node {}: removing {} at index {}", options_.node_id, Node(id), index->value());
  c.phase = MemberChange::Phase::kRemoving;
  c.index = *index;
}

void Replica::AdvanceMemberChange(BootTime now) {
  if (!change_ || !leader_) return;
  MemberChange& c = *change_;
  if (c.phase == MemberChange::Phase::kCheckingRemoval) return ProposeRemoval(now);
  const raft::NodeId id(c.member.id);
  if (applied_ >= c.index.value()) {
    const raft::ConfState& conf = raft_->conf_state();
    switch (c.phase) {
      case MemberChange::Phase::kLearner: {
        if (!raft::Members(conf).count(id)) {
          return EndMemberChange(
              Unavailable("the learner entry was lost in a leader change; retry"));
        }
        const raft::Progress* pr = raft_->progress(id);
        const uint64_t last = raft_->log().last_index().value();
        if (!pr || !pr->recent_active() ||
            pr->match().value() + options_.max_promotion_lag < last) {
          break;  // not caught up yet
        }
        raft::ConfChange cc;
        cc.changes.push_back({raft::ConfChangeType::kAddVoter, id});
        auto index = raft_->ProposeConfChange(cc);
        if (!index.ok()) break;  // e.g. lagging again: tried next pass
        spdlog::info("node {}: {} caught up (match {}, last {}); promoting it to voter at {}",
                     options_.node_id, Node(c.member.id), pr->match().value(), last,
                     index->value());
        c.phase = MemberChange::Phase::kPromoting;
        c.index = *index;
        return;
      }
      case MemberChange::Phase::kPromoting: {
        if (!raft::IsVoter(conf, id)) {
          return EndMemberChange(
              Unavailable("the promotion was lost in a leader change; add the node again"));
        }
        if (raft::IsJoint(conf)) return;  // left by the core's own entry
        promotions_.fetch_add(1);
        spdlog::info("node {}: {} is a voter since index {}", options_.node_id, Node(c.member.id),
                     c.index.value());
        auto done = std::move(c.added);
        const MemberAdded added{c.index.value(), std::chrono::system_clock::now()};
        change_.reset();
        done(added);
        return;
      }
      case MemberChange::Phase::kCheckingRemoval:
        return;
      case MemberChange::Phase::kRemoving: {
        if (raft::Members(conf).count(id)) {
          return EndMemberChange(Unavailable("the removal was lost in a leader change; retry"));
        }
        if (raft::IsJoint(conf)) return;
        spdlog::info("node {}: {} removed at index {}", options_.node_id, Node(c.member.id),
                     c.index.value());
        auto done = std::move(c.removed);
        const uint64_t index = c.index.value();
        change_.reset();
        done(index);
        return;
      }
    }
  }
  if (std::chrono::system_clock::now() >= c.deadline) {
    if (c.phase == MemberChange::Phase::kLearner) {
      return EndMemberChange(Status(
          StatusCode::kDeadlineExceeded,
          Node(c.member.id) + " was added as a learner but did not catch up in time; it stays "
                              "a learner. Check that it runs (lockd --join ...), then add it "
                              "again to promote it, or remove it"));
    }
    EndMemberChange(Status(StatusCode::kDeadlineExceeded,
                           "the membership entry did not apply in time; check `lockctl member "
                           "list`"));
  }
}

}  // namespace lockd::server
