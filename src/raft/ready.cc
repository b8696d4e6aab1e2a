// The Ready/Advance handshake with the runtime, and the core's own invariants.
#include <numeric>

#include "base/check.h"
#include "raft/raft.h"

namespace lockd::raft {

bool Raft::HasReady() const {
  const HardState hs{term_, vote_, log_.committed()};
  return broadcast_pending_ || !msgs_now_.empty() || !msgs_.empty() || !log_.unstable().empty() ||
         hs != persisted_hard_ || log_.committed() > log_.applied() || !read_states_.empty() ||
         !dropped_reads_.empty() || !rounds_confirmed_.empty();
}

Ready Raft::GetReady() {
  if (broadcast_pending_) {
    broadcast_pending_ = false;
    if (role_ == Role::kLeader) BroadcastAppend();
  }
  Ready rd;
  HardState hs{term_, vote_, log_.committed()};
  if (cfg_.knobs.skip_vote_persist) hs.vote = persisted_hard_.vote;
  if (hs != persisted_hard_) rd.hard_state = hs;
  rd.entries = log_.unstable();
  // The commit index alone may be written lazily: a lost commit index is learned again.
  rd.must_sync =
      !rd.entries.empty() || hs.term != persisted_hard_.term || hs.vote != persisted_hard_.vote;
  rd.messages_now = std::move(msgs_now_);
  rd.messages = std::move(msgs_);
  msgs_now_.clear();
  msgs_.clear();
  rd.committed = log_.NextToApply(cfg_.max_apply_bytes);
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.dropped_reads = std::move(dropped_reads_);
  dropped_reads_.clear();
  rd.rounds_confirmed = std::move(rounds_confirmed_);
  rounds_confirmed_.clear();
  rd.lease_time_branch_ended = lease_time_branch_ended_;
  rd.role = role_;
  rd.leader = leader_;
  rd.term = term_;
  return rd;
}

void Raft::Advance(const Ready& rd) {
  if (rd.hard_state) persisted_hard_ = *rd.hard_state;
  if (!rd.entries.empty()) {
    log_.StableTo(rd.entries.back().index, rd.entries.back().term);
    if (role_ == Role::kLeader) {
      // The leader's own vote in the commit quorum counts only now that its disk has the entries.
      progress_.at(id_).MaybeUpdate(log_.stable_last());
      if (MaybeCommit()) BroadcastAppend();
    }
  }
  if (!rd.committed.empty()) log_.AppliedTo(rd.committed.back().index);
}

void Raft::CheckInvariants() const {
  LOCKD_CHECK(log_.applied() <= log_.committed());
  LOCKD_CHECK(log_.committed() <= log_.last_index());
  LOCKD_CHECK(log_.stable_last() <= log_.last_index());
  LOCKD_CHECK(persisted_hard_.term <= term_);
  LOCKD_CHECK(persisted_hard_.commit <= log_.committed());
  const auto& u = log_.unstable();
  for (size_t i = 1; i < u.size(); ++i) {
    LOCKD_CHECK(u[i].index == u[i - 1].index.next());
    LOCKD_CHECK(u[i].term >= u[i - 1].term);
  }
  if (!u.empty()) LOCKD_CHECK(u.back().term <= term_);
  LOCKD_CHECK(next_round_ > confirmed_round_);
  if (role_ == Role::kLeader) {
    LOCKD_CHECK(leader_ == id_ && vote_ == id_);
    LOCKD_CHECK(log_.last_term() == term_);  // its no-op, at least
    for (NodeId p : config_.ids()) LOCKD_CHECK(progress_.count(p) == 1);
    for (const auto& [p, pr] : progress_) {
      LOCKD_CHECK(pr.match() <= log_.last_index());
      LOCKD_CHECK(pr.next() > pr.match() && pr.next() <= log_.last_index().next());
      LOCKD_CHECK(pr.inflight() <= cfg_.max_inflight);
    }
    LOCKD_CHECK(progress_.at(id_).match() <= log_.stable_last());
    if (committed_current_term() && !cfg_.knobs.any()) {
      // What this leader committed in its term, a quorum of synced replicas holds.
      LOCKD_CHECK(config_.CommittedIndex([&](NodeId p) { return progress_.at(p).match(); }) >=
                  log_.committed());
    }
    uint64_t sum = 0;
    for (const auto& [index, bytes] : uncommitted_) {
      LOCKD_CHECK(index > log_.committed());
      sum += bytes;
    }
    LOCKD_CHECK(sum == uncommitted_bytes_);
    LOCKD_CHECK(round_acks_.size() <= cfg_.max_pending_rounds);
    for (const auto& [round, acks] : round_acks_) {
      LOCKD_CHECK(round > confirmed_round_ && round < next_round_);
      LOCKD_CHECK(acks.count(id_) == 1);
    }
    for (const auto& r : pending_reads_) {
      LOCKD_CHECK(r.round <= next_round_ && r.index <= log_.committed());
    }
    if (!transfer_target_.zero()) LOCKD_CHECK(config_.incoming().contains(transfer_target_));
  } else {
    LOCKD_CHECK(progress_.empty() && pending_reads_.empty() && waiting_for_commit_.empty());
    LOCKD_CHECK(round_acks_.empty() && transfer_target_.zero() && uncommitted_bytes_ == 0);
    // A node never campaigns (and votes for itself) inside its own vote-refusal window.
    LOCKD_CHECK(election_elapsed_ <= since_leader_);
  }
  if (role_ == Role::kCandidate) LOCKD_CHECK(vote_ == id_);
  if (role_ == Role::kCandidate || role_ == Role::kPreCandidate) {
    LOCKD_CHECK(votes_.count(id_) == 1 && leader_.zero());
  }
}

}  // namespace lockd::raft
