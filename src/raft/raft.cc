// Roles, time and elections: construction, Tick, the term rules of Step, (pre-)votes, the vote
// refusal window and CheckQuorum.
#include "raft/raft.h"

#include "base/check.h"

namespace lockd::raft {

const char* RoleName(Role r) {
  switch (r) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

Raft::Raft(Config config, const LogStorage& storage)
    : id_(config.id),
      cfg_(std::move(config)),
      log_(storage, cfg_.applied),
      rng_(cfg_.seed * 0x9E3779B97F4A7C15ull + id_.value()) {
  LOCKD_CHECK(!id_.zero() && cfg_.election_tick > cfg_.heartbeat_tick && cfg_.heartbeat_tick > 0);
  LOCKD_CHECK(cfg_.max_inflight > 0 && cfg_.max_pending_rounds > 0);
  const InitialState init = storage.Initial();
  term_ = init.hard.term;
  vote_ = init.hard.vote;
  persisted_hard_ = init.hard;
  std::set<NodeId> voters(init.conf.voters.begin(), init.conf.voters.end());
  if (voters.empty()) voters.insert(cfg_.peers.begin(), cfg_.peers.end());
  std::set<NodeId> outgoing(init.conf.voters_outgoing.begin(), init.conf.voters_outgoing.end());
  config_ = JointConfig(MajorityConfig(voters), MajorityConfig(outgoing));
  // A planted bug may damage committed entries; let the simulator's checkers report it.
  if (cfg_.knobs.any()) log_.AllowCommittedOverwriteForTesting();
  BecomeFollower(term_, NodeId());
  // A restarted voter has forgotten its leader: it refuses votes for E_min, as if it had just
  // heard from one.
  since_leader_ = cfg_.knobs.no_vote_refusal_after_restart ? cfg_.election_tick : 0;
}

const Progress* Raft::progress(NodeId id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

// --- roles -------------------------------------------------------------------------------------

void Raft::ResetRandomizedTimeout() {
  randomized_timeout_ = cfg_.election_tick + static_cast<int>(rng_() % cfg_.election_tick);
}

void Raft::Reset(Term term) {
  if (term != term_) {
    term_ = term;
    vote_ = NodeId();
    lease_time_branch_ended_ = false;
  }
  leader_ = NodeId();
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedTimeout();
  votes_.clear();
  progress_.clear();
  transfer_target_ = NodeId();
  transfer_elapsed_ = 0;
  uncommitted_bytes_ = 0;
  uncommitted_.clear();
  round_acks_.clear();
  confirmed_round_ = 0;
  // Reads waiting on this leadership cannot be answered by it any more: the runtime fails them
  // with a retryable error.
  for (const auto& r : waiting_for_commit_) dropped_reads_.push_back(r.ctx);
  for (const auto& r : pending_reads_) dropped_reads_.push_back(r.ctx);
  waiting_for_commit_.clear();
  pending_reads_.clear();
}

void Raft::BecomeFollower(Term term, NodeId leader) {
  if (role_ == Role::kLeader) since_leader_ = 0;  // stopped being leader: refuse votes for E_min
  Reset(term);
  role_ = Role::kFollower;
  leader_ = leader;
}

void Raft::BecomePreCandidate() {
  LOCKD_CHECK(role_ != Role::kLeader);
  // The term does not change: a pre-vote disturbs nobody.
  votes_.clear();
  leader_ = NodeId();
  role_ = Role::kPreCandidate;
}

void Raft::BecomeCandidate() {
  LOCKD_CHECK(role_ != Role::kLeader);
  Reset(term_.next());
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::BecomeLeader() {
  LOCKD_CHECK(role_ == Role::kCandidate);
  role_ = Role::kLeader;
  leader_ = id_;
  for (NodeId p : config_.ids()) {
    auto [it, _] = progress_.emplace(p, Progress(log_.last_index().next(), cfg_.max_inflight));
    if (p == id_) {
      // Only what its disk has counts for the leader's own vote in the commit quorum.
      it->second.MaybeUpdate(log_.stable_last());
      it->second.BecomeReplicate();
    }
  }
  AppendEntries({Entry{term_, LogIndex(), EntryType::kNormal, ""}});  // the term's no-op
}

void Raft::Campaign(bool pre, bool transfer) {
  if (pre) {
    BecomePreCandidate();
  } else {
    BecomeCandidate();
  }
  votes_[id_] = true;
  if (config_.Vote(votes_) == VoteResult::kWon) {
    if (pre) return Campaign(false, transfer);
    BecomeLeader();
    return;
  }
  for (NodeId p : config_.ids()) {
    if (p == id_) continue;
    Message m;
    m.type = pre ? MessageType::kPreVote : MessageType::kVote;
    m.to = p;
    m.term = pre ? term_.next() : term_;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    m.transfer = transfer;
    Send(std::move(m));
  }
}

// The vote-refusal window: a leader always refuses; anyone else until E_min ticks after it last
// heard from a leader, stopped leading, or started.
bool Raft::InLease() const {
  return role_ == Role::kLeader || since_leader_ < cfg_.election_tick;
}

// --- time --------------------------------------------------------------------------------------

void Raft::Tick() {
  // Both counters saturate (a learner or a long-lived follower ticks forever).
  constexpr int kSaturated = 1 << 30;
  if (since_leader_ < kSaturated) ++since_leader_;
  if (role_ == Role::kLeader) return TickLeader();
  // election_elapsed_ is reset whenever since_leader_ is, so a campaign (outside a transfer)
  // never starts inside the refusal window: the node would otherwise vote for itself there.
  if (election_elapsed_ < kSaturated) ++election_elapsed_;
  if (election_elapsed_ >= randomized_timeout_ && Voter(id_)) {
    election_elapsed_ = 0;
    Campaign(cfg_.pre_vote, /*transfer=*/false);
  }
}

void Raft::TickLeader() {
  if (!transfer_target_.zero() && ++transfer_elapsed_ >= cfg_.election_tick) {
    transfer_target_ = NodeId();  // the transfer did not finish in time: abandon it
    transfer_elapsed_ = 0;
  }
  if (++election_elapsed_ >= cfg_.election_tick) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum) {
      const bool active = config_.Majority([&](NodeId p) {
        auto it = progress_.find(p);
        return p == id_ || (it != progress_.end() && it->second.recent_active());
      });
      for (auto& [p, pr] : progress_) pr.set_recent_active(p == id_);
      if (!active) {
        BecomeFollower(term_, NodeId());  // CheckQuorum: a leader cut off from a majority
        return;
      }
    }
  }
  if (++heartbeat_elapsed_ >= cfg_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    StartRound();
  }
}

// --- messages ----------------------------------------------------------------------------------

void Raft::Send(Message m) {
  m.from = id_;
  if (m.term.zero()) m.term = term_;
  // A leader's appends, heartbeats and TimeoutNow promise nothing that the pending write makes
  // durable (its term and vote were durable before it could win), so they leave before the write.
  const bool from_leader_now =
      role_ == Role::kLeader && (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat ||
                                 m.type == MessageType::kTimeoutNow);
  (from_leader_now ? msgs_now_ : msgs_).push_back(std::move(m));
}

Status Raft::Step(const Message& m) {
  if (Status s = ValidateMessage(m); !s.ok()) return s;
  if (m.to != id_) return InvalidArgument("message for node " + std::to_string(m.to.value()));
  const bool vote_request = m.type == MessageType::kVote || m.type == MessageType::kPreVote;
  if (m.term > term_) {
    // Inside the refusal window a vote request is ignored altogether: it must not even raise the
    // term, or a partitioned node could depose a healthy leader.
    if (vote_request && !m.transfer && InLease()) return Status::Ok();
    if (m.type == MessageType::kPreVote || (m.type == MessageType::kPreVoteResp && !m.reject)) {
      // A pre-vote never changes terms; a granted pre-vote carries the candidate's future term.
    } else {
      const bool from_leader = m.type == MessageType::kApp || m.type == MessageType::kHeartbeat;
      BecomeFollower(m.term, from_leader ? m.from : NodeId());
    }
  } else if (m.term < term_) {
    if (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat) {
      // Tell a stale leader our term, so it steps down (with CheckQuorum and PreVote it would not
      // otherwise learn of it: we never raise our term by campaigning against it).
      Message r;
      r.type = MessageType::kAppResp;
      r.to = m.from;
      Send(std::move(r));
    } else if (m.type == MessageType::kPreVote) {
      Message r;
      r.type = MessageType::kPreVoteResp;
      r.to = m.from;
      r.reject = true;
      Send(std::move(r));
    }
    return Status::Ok();
  }
  if (vote_request) {
    HandleVoteRequest(m);
    return Status::Ok();
  }
  switch (role_) {
    case Role::kLeader:
      StepLeader(m);
      break;
    case Role::kPreCandidate:
    case Role::kCandidate:
      StepCandidate(m);
      break;
    case Role::kFollower:
      StepFollower(m);
      break;
  }
  return Status::Ok();
}

void Raft::HandleVoteRequest(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  // One vote per term; a pre-vote for a later term binds nothing.
  const bool can_vote =
      vote_ == m.from || (vote_.zero() && leader_.zero()) || (pre && m.term > term_);
  const bool up_to_date =
      cfg_.knobs.grant_votes_to_shorter_logs || log_.IsUpToDate(m.index, m.log_term);
  const bool refused = !m.transfer && InLease();
  Message r;
  r.type = pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  r.to = m.from;
  if (can_vote && up_to_date && !refused) {
    r.term = m.term;
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;  // durable before the grant leaves: the grant goes in `messages`
    }
  } else {
    r.reject = true;
  }
  Send(std::move(r));
}

void Raft::StepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::kApp:
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      since_leader_ = 0;  // heard from a leader: the refusal window restarts
      leader_ = m.from;
      if (m.type == MessageType::kApp) {
        HandleAppend(m);
      } else {
        HandleHeartbeat(m);
      }
      break;
    case MessageType::kTimeoutNow:
      if (Voter(id_)) Campaign(/*pre=*/false, /*transfer=*/true);
      break;
    default:
      break;
  }
}

void Raft::StepCandidate(const Message& m) {
  const bool pre = role_ == Role::kPreCandidate;
  switch (m.type) {
    case MessageType::kApp:
    case MessageType::kHeartbeat:  // a leader of this term exists: follow it
      BecomeFollower(m.term, m.from);
      StepFollower(m);
      break;
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp: {
      if ((m.type == MessageType::kPreVoteResp) != pre) break;  // a response to another phase
      votes_[m.from] = !m.reject;
      const VoteResult result = config_.Vote(votes_);
      if (result == VoteResult::kWon) {
        if (pre) {
          Campaign(/*pre=*/false, /*transfer=*/false);
        } else {
          BecomeLeader();
          BroadcastAppend();
        }
      } else if (result == VoteResult::kLost) {
        BecomeFollower(term_, NodeId());
      }
      break;
    }
    default:
      break;
  }
}

void Raft::StepLeader(const Message& m) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  switch (m.type) {
    case MessageType::kAppResp:
      pr.set_recent_active(true);
      HandleAppendResponse(m);
      break;
    case MessageType::kHeartbeatResp:
      pr.set_recent_active(true);
      pr.OnHeartbeatResponse();
      if (pr.match() < log_.last_index()) SendAppend(m.from);
      HandleHeartbeatResponse(m);
      break;
    default:
      break;
  }
}

}  // namespace lockd::raft
