// Heartbeat rounds (the core's part of the leader lease), ReadIndex, and leadership transfer.
//
// A round is one heartbeat to every follower under one id; a response echoes the id and counts for
// that round only. A round is confirmed once a majority of the voters of every configuration in
// force (the leader included) echoed it; confirming a round retires every older one. A read waits
// for the first round that began after it, and is answered only once the leader has committed an
// entry of its own term (before that, the commit index might miss entries of earlier terms).
#include <algorithm>

#include "raft/raft.h"

namespace lockd::raft {

void Raft::StartRound() {
  const uint64_t round = next_round_++;
  round_acks_[round] = {id_};
  // Rounds nobody answers (a leader cut off without CheckQuorum) must not pile up; a read that
  // waited on a forgotten round is confirmed by any newer one.
  while (round_acks_.size() > cfg_.max_pending_rounds) round_acks_.erase(round_acks_.begin());
  for (const auto& [p, pr] : progress_) {
    if (p == id_) continue;
    Message h;
    h.type = MessageType::kHeartbeat;
    h.to = p;
    h.round = round;
    h.commit = std::min(pr.match(), log_.committed());
    Send(std::move(h));
  }
  if (config_.Majority([&](NodeId p) { return p == id_; })) ConfirmRound(round);  // one voter
}

void Raft::ConfirmRound(uint64_t round) {
  auto it = round_acks_.find(round);
  if (it == round_acks_.end()) return;
  confirmed_round_ = std::max(confirmed_round_, round);
  rounds_confirmed_.push_back(round);
  round_acks_.erase(round_acks_.begin(), std::next(it));
  ReleasePendingReads();
}

void Raft::HandleHeartbeatResponse(const Message& m) {
  uint64_t round = m.round;
  if (cfg_.knobs.credit_ack_to_newest_round) round = next_round_ - 1;
  auto it = round_acks_.find(round);
  if (it == round_acks_.end()) return;    // confirmed, retired or forgotten already
  if (!config_.contains(m.from)) return;  // learners never confirm leadership
  it->second.insert(m.from);
  const auto& acks = it->second;
  if (config_.Majority([&](NodeId p) { return acks.count(p) > 0; })) ConfirmRound(round);
}

void Raft::ReleasePendingReads() {
  if (!committed_current_term() && !cfg_.knobs.read_index_before_term_commit) return;
  auto ready =
      std::stable_partition(pending_reads_.begin(), pending_reads_.end(),
                            [&](const PendingRead& r) { return r.round > confirmed_round_; });
  for (auto it = ready; it != pending_reads_.end(); ++it)
    read_states_.push_back({it->index, it->ctx});
  pending_reads_.erase(ready, pending_reads_.end());
}

void Raft::OnFirstCommitOfTerm() {
  // Reads that arrived before the term's first commit take today's commit index, and a round that
  // begins from now on.
  for (auto& r : waiting_for_commit_) {
    r.index = log_.committed();
    r.round = next_round_;
    pending_reads_.push_back(r);
  }
  waiting_for_commit_.clear();
}

Status Raft::ReadIndex(uint64_t ctx) {
  if (role_ != Role::kLeader) return Unavailable("not the leader");
  if (!committed_current_term() && !cfg_.knobs.read_index_before_term_commit) {
    waiting_for_commit_.push_back({LogIndex(), ctx, 0});
    return Status::Ok();
  }
  pending_reads_.push_back({log_.committed(), ctx, next_round_});  // the next round confirms it
  return Status::Ok();
}

bool Raft::round_wanted() const {
  return std::any_of(pending_reads_.begin(), pending_reads_.end(),
                     [&](const PendingRead& r) { return r.round >= next_round_; });
}

Status Raft::RequestRound() {
  if (role_ != Role::kLeader) return Unavailable("not the leader");
  StartRound();
  return Status::Ok();
}

// --- leadership transfer -----------------------------------------------------------------------

void Raft::MaybeSendTimeoutNow(NodeId to) {
  if (progress_.at(to).match() != log_.last_index()) return;
  Message t;
  t.type = MessageType::kTimeoutNow;
  t.to = to;
  Send(std::move(t));
  // The target's campaign bypasses every voter's refusal window, so from now on, for the rest of
  // this term, no renewal may be confirmed by the time branch of the lease (rule (c)).
  if (!cfg_.knobs.keep_time_lease_after_timeout_now) lease_time_branch_ended_ = true;
}

Status Raft::TransferLeadership(NodeId to) {
  if (role_ != Role::kLeader) return Unavailable("not the leader");
  if (to == id_ || !config_.incoming().contains(to)) {
    return InvalidArgument("node " + std::to_string(to.value()) + " is not another voter");
  }
  if (transfer_target_ == to) return Status::Ok();  // already under way
  transfer_target_ = to;
  transfer_elapsed_ = 0;
  if (progress_.at(to).match() == log_.last_index()) {
    MaybeSendTimeoutNow(to);
  } else {
    SendAppend(to);  // catch it up first; its acknowledgement sends TimeoutNow
  }
  return Status::Ok();
}

}  // namespace lockd::raft
