#include "raft/raft.h"

#include <algorithm>

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

const char* TypeName(MessageType t) {
  static constexpr const char* kNames[] = {
      "?",       "PreVote",   "PreVoteResp",   "Vote",       "VoteResp", "App",
      "AppResp", "Heartbeat", "HeartbeatResp", "TimeoutNow", "Snapshot"};
  return kNames[static_cast<int>(t)];
}

Raft::Raft(Config config, const LogStorage& storage)
    : id_(config.id),
      cfg_(std::move(config)),
      log_(storage),
      rng_(cfg_.seed * 0x9E3779B97F4A7C15ull + id_.value()) {
  LOCKD_CHECK(!id_.zero() && cfg_.election_tick > cfg_.heartbeat_tick && cfg_.heartbeat_tick > 0);
  const InitialState init = storage.Initial();
  term_ = init.hard.term;
  vote_ = init.hard.vote;
  persisted_hard_ = init.hard;
  // The membership: the snapshot's (exactly the one at its index), else the stored one (the
  // bootstrap membership), else the configured peers; then every committed kConfChange entry
  // after the snapshot, in log order (each carries the whole membership it leads to).
  const SnapshotMeta snap = storage.Snapshot();
  ConfState base;
  if (!snap.index.zero() && !snap.conf.voters.empty()) {
    base = snap.conf;
  } else if (!init.conf.voters.empty()) {
    base = init.conf;
  } else {
    std::set<NodeId> peers(cfg_.peers.begin(), cfg_.peers.end());
    base.voters.assign(peers.begin(), peers.end());
  }
  SetConf(base, snap.index);
  for (LogIndex lo = log_.first_index(); lo <= log_.committed();) {
    const std::vector<Entry> es = log_.Slice(lo, log_.committed().next(), 1 << 20);
    for (const Entry& e : es) {
      if (e.type != EntryType::kConfChange) continue;
      auto cc = DecodeConfChangeEntry(e.data);
      LOCKD_CHECK_MSG(cc.ok(), "a committed membership entry is damaged");
      SetConf(cc->target, e.index);
    }
    lo = es.back().index.next();
  }
  conf_changed_ = false;
  // A planted bug may damage committed entries; let the simulator's checkers report it.
  if (cfg_.knobs.any()) log_.AllowCommittedOverwriteForTesting();
  BecomeFollower(term_, NodeId());
  // A restarted voter has forgotten its leader: it refuses votes for E_min, as if it had just
  // heard from one.
  since_leader_ = cfg_.knobs.no_vote_refusal_after_restart ? cfg_.election_tick : 0;
}

// --- roles -----------------------------------------------------------------------------------

void Raft::ResetRandomizedTimeout() {
  randomized_timeout_ = cfg_.election_tick + static_cast<int>(rng_() % cfg_.election_tick);
}

void Raft::PeerUnreachable(NodeId peer) {
  if (role_ != Role::kFollower || peer.zero() || peer != leader_) return;
  const int spread = std::max(2, cfg_.election_tick / 5);
  randomized_timeout_ =
      std::min(randomized_timeout_, cfg_.election_tick + static_cast<int>(rng_() % spread));
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
  waiting_for_commit_.clear();
  pending_reads_.clear();
}

void Raft::BecomeFollower(Term term, NodeId leader) {
  if (role_ == Role::kLeader) since_leader_ = 0;  // stopped being leader
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
  AddProgressForMembers();
  AppendEntries({Entry{term_, LogIndex(), EntryType::kNormal, ""}});  // the term's no-op
  // No membership change until this term's no-op is applied: an entry of this term is then
  // committed, and any earlier term's change still in the log is settled (applied or gone).
  pending_conf_index_ = cfg_.knobs.conf_change_without_term_commit ? LogIndex() : log_.last_index();
}

void Raft::Campaign(bool pre, bool transfer) {
  if (pre) {
    BecomePreCandidate();
  } else {
    BecomeCandidate();
  }
  votes_[id_] = true;
  if (quorum_.Vote(votes_) == VoteResult::kWon) {
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

bool Raft::InLease() const {
  return role_ == Role::kLeader || since_leader_ < cfg_.election_tick;
}

// --- time --------------------------------------------------------------------------------------

void Raft::Tick() {
  ++since_leader_;
  if (role_ != Role::kLeader) {
    if (++election_elapsed_ >= randomized_timeout_ && Voter(id_) && !log_.pending_snapshot()) {
      election_elapsed_ = 0;
      Campaign(cfg_.pre_vote, /*transfer=*/false);
    }
    return;
  }
  if (transfer_target_ != NodeId() && ++transfer_elapsed_ >= cfg_.election_tick) {
    transfer_target_ = NodeId();  // the transfer did not finish in time: abort it
  }
  if (++election_elapsed_ >= cfg_.election_tick) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum) {
      const bool active = quorum_.Majority([&](NodeId p) {
        return p == id_ || (progress_.count(p) && progress_.at(p).recent_active());
      });
      for (auto& [p, pr] : progress_) pr.set_recent_active(p == id_);
      if (!active) {
        BecomeFollower(term_, NodeId());
        return;
      }
    }
  }
  if (++heartbeat_elapsed_ >= cfg_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    StartRound();
  }
  MaybeAutoLeave();  // retried here when a transfer or an earlier change held it back
}

// --- messages ----------------------------------------------------------------------------------

void Raft::Send(Message m) {
  m.from = id_;
  if (m.term.zero()) m.term = term_;
  const bool from_leader_now =
      role_ == Role::kLeader &&
      (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat ||
       m.type == MessageType::kTimeoutNow || m.type == MessageType::kSnapshot);
  (from_leader_now ? msgs_now_ : msgs_).push_back(std::move(m));
}

Status Raft::Step(const Message& m) {
  if (m.version > kFormatVersion) {
    return FailedPrecondition("message format " + std::to_string(m.version) + " is newer than " +
                              std::to_string(kFormatVersion));
  }
  if (m.to != id_ || m.from.zero() || m.from == id_) return InvalidArgument("misaddressed message");
  const bool vote_request = m.type == MessageType::kVote || m.type == MessageType::kPreVote;
  if (m.term > term_) {
    if (vote_request && !m.transfer && InLease()) return Status::Ok();  // refused, term unchanged
    if (m.type == MessageType::kPreVote || (m.type == MessageType::kPreVoteResp && !m.reject)) {
      // A pre-vote never changes terms.
    } else {
      const bool from_leader = m.type == MessageType::kApp || m.type == MessageType::kHeartbeat ||
                               m.type == MessageType::kSnapshot;
      BecomeFollower(m.term, from_leader ? m.from : NodeId());
    }
  } else if (m.term < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat ||
         m.type == MessageType::kSnapshot)) {
      Message r;
      r.type = MessageType::kAppResp;  // tells a stale leader our term
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
  const bool can_vote =
      vote_ == m.from || (vote_.zero() && leader_.zero()) || (pre && m.term > term_);
  const bool up_to_date =
      cfg_.knobs.grant_votes_to_shorter_logs || log_.IsUpToDate(m.index, m.log_term);
  // A learner (or a node outside the membership) answers too: it may have been promoted without
  // knowing it yet (the promotion committed on the other voters), and the remaining voters may
  // need its vote. The candidate's membership decides whether the vote counts (as in etcd).
  const bool refused = !m.transfer && InLease();
  Message r;
  r.type = pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  r.to = m.from;
  if (can_vote && up_to_date && !refused) {
    r.term = m.term;
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.reject = true;
  }
  Send(std::move(r));
}

void Raft::HeardFromLeader(NodeId leader) {
  election_elapsed_ = 0;
  since_leader_ = 0;
  leader_ = leader;
}

void Raft::StepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::kApp:
      HeardFromLeader(m.from);
      HandleAppend(m);
      break;
    case MessageType::kHeartbeat:
      HeardFromLeader(m.from);
      HandleHeartbeat(m);
      break;
    case MessageType::kSnapshot:
      HeardFromLeader(m.from);
      HandleSnapshot(m);
      break;
    case MessageType::kTimeoutNow:
      if (Voter(id_) && !log_.pending_snapshot()) Campaign(/*pre=*/false, /*transfer=*/true);
      break;
    default:
      break;
  }
}

void Raft::StepCandidate(const Message& m) {
  const bool pre = role_ == Role::kPreCandidate;
  switch (m.type) {
    case MessageType::kApp:
    case MessageType::kSnapshot:
    case MessageType::kHeartbeat:  // a leader of this term exists: follow it
      BecomeFollower(m.term, m.from);
      StepFollower(m);
      break;
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp: {
      if ((m.type == MessageType::kPreVoteResp) != pre) break;  // a response to another phase
      votes_[m.from] = !m.reject;
      const VoteResult result = quorum_.Vote(votes_);
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

void Raft::HandleAppend(const Message& m) {
  Message r;
  r.type = MessageType::kAppResp;
  r.to = m.from;
  LogIndex prev = m.index;
  const std::vector<Entry>* entries = &m.entries;
  std::vector<Entry> past_commit;
  bool matches;
  if (m.index < log_.committed()) {
    // It starts below what this node has committed. Those entries are committed, so the
    // leader's log holds them as they are here (leader completeness): whatever the append carries
    // past the commit index is taken from there (a leader's last append to a member it removes
    // starts where it last heard of it; SendFarewell).
    const LogIndex committed = log_.committed();
    if (m.index.value() + m.entries.size() <= committed.value()) {
      r.index = committed;
      Send(std::move(r));
      return;
    }
    const auto skip = static_cast<std::ptrdiff_t>(committed.value() - m.index.value());
    past_commit.assign(m.entries.begin() + skip, m.entries.end());
    prev = committed;
    entries = &past_commit;
    matches = true;
  } else {
    matches = cfg_.knobs.skip_log_matching_check
                  ? (m.index >= log_.first_index().prev() && m.index <= log_.last_index())
                  : log_.MatchTerm(m.index, m.log_term);
  }
  if (matches) {
    const LogIndex last_new = log_.MaybeAppend(prev, *entries);
    log_.CommitTo(std::min(m.commit, last_new));
    r.index = last_new;
  } else {
    r.reject = true;
    r.index = m.index;
    r.reject_hint = std::min(m.index, log_.last_index());
    r.hint_term = log_.TermOr(r.reject_hint, Term());
  }
  Send(std::move(r));
}

void Raft::HandleSnapshot(const Message& m) {
  Message r;
  r.type = MessageType::kAppResp;
  r.to = m.from;
  const SnapshotMeta& snap = m.snapshot;
  if (snap.index.zero() || !CheckConfState(snap.conf).ok()) return;  // malformed: ignored
  if (snap.index <= log_.committed()) {
    r.index = log_.committed();  // it has all of it already
  } else if (log_.MatchTerm(snap.index, snap.term)) {
    log_.CommitTo(snap.index);  // the log has the entries: commit them, drop the payload
    r.index = snap.index;
  } else {
    log_.Restore(snap);
    conf_history_.clear();
    SetConf(snap.conf, snap.index);
    r.index = snap.index;
  }
  Send(std::move(r));
}

void Raft::HandleHeartbeat(const Message& m) {
  log_.CommitTo(std::min(m.commit, log_.last_index()));
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  r.round = m.round;
  Send(std::move(r));
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

void Raft::HandleAppendResponse(const Message& m) {
  Progress& pr = progress_.at(m.from);
  if (m.reject) {
    const LogIndex hint = log_.FindConflictByTerm(m.reject_hint, m.hint_term);
    if (pr.MaybeDecrease(m.index, hint)) {
      if (pr.state() == Progress::State::kReplicate) pr.BecomeProbe();
      SendAppend(m.from);
    }
    return;
  }
  if (!pr.MaybeUpdate(m.index)) return;
  if (pr.state() == Progress::State::kProbe ||
      (pr.state() == Progress::State::kSnapshot && pr.match() >= pr.pending_snapshot())) {
    pr.BecomeReplicate();
  }
  if (MaybeCommit()) {
    BroadcastCommit();
  } else {
    SendAppend(m.from, /*allow_empty=*/false);
  }
  if (m.from == transfer_target_ && pr.match() == log_.last_index()) {
    Message t;
    t.type = MessageType::kTimeoutNow;
    t.to = m.from;
    Send(std::move(t));
    if (!cfg_.knobs.keep_time_lease_after_timeout_now) lease_time_branch_ended_ = true;
  }
}

void Raft::HandleHeartbeatResponse(const Message& m) {
  uint64_t round = m.round;
  if (cfg_.knobs.credit_ack_to_newest_round) round = next_round_ - 1;
  auto it = round_acks_.find(round);
  if (it == round_acks_.end()) return;
  if (!config_.contains(m.from)) return;  // learners never confirm leadership
  it->second.insert(m.from);
  const auto& acks = it->second;
  if (!quorum_.Majority([&](NodeId p) { return acks.count(p) > 0; })) return;
  confirmed_round_ = std::max(confirmed_round_, round);
  rounds_confirmed_.push_back(round);
  round_acks_.erase(round_acks_.begin(), std::next(it));
  ReleasePendingReads();
}

void Raft::StartRound() {
  const uint64_t round = next_round_++;
  round_acks_[round] = {id_};
  for (auto& [p, pr] : progress_) {
    if (p == id_) continue;
    Message h;
    h.type = MessageType::kHeartbeat;
    h.to = p;
    h.round = round;
    h.commit = std::min(pr.match(), log_.committed());
    pr.CommitSent(h.commit);
    Send(std::move(h));
  }
  if (quorum_.Majority([&](NodeId p) { return p == id_; })) {  // a single voter confirms alone
    confirmed_round_ = round;
    rounds_confirmed_.push_back(round);
    round_acks_.erase(round);
    ReleasePendingReads();
  }
}

void Raft::SendAppend(NodeId to, bool allow_empty) {
  if (to == id_) return;
  Progress& pr = progress_.at(to);
  if (!pr.CanSend()) return;
  if (pr.next() < log_.first_index()) return SendSnapshot(to, pr);  // compacted away
  const LogIndex prev = pr.next().prev();
  std::vector<Entry> entries = log_.Slice(pr.next(), log_.last_index().next(), cfg_.max_msg_bytes);
  if (entries.empty() && !allow_empty) return;
  Message m;
  m.type = MessageType::kApp;
  m.to = to;
  m.index = prev;
  m.log_term = log_.TermOr(prev, Term());
  m.commit = log_.committed();
  const LogIndex last = entries.empty() ? prev : entries.back().index;
  m.entries = std::move(entries);
  pr.Sent(last);
  pr.CommitSent(m.commit);
  Send(std::move(m));
}

void Raft::SendFarewell(NodeId to, const Progress& pr) {
  // A member this configuration leaves out learns so only from the commit of the entry that
  // removes it, and its progress is dropped now: no later append or heartbeat would carry that
  // commit, and a paused probe or a full window may have held the last broadcast back. So,
  // whatever the window says: the entries from the last index it is known to hold (a bounded
  // number of messages), then an empty append at the commit index, which alone suffices when it
  // holds the entries already and only its answers were lost. (These are only messages: a
  // follower that has moved on ignores them.)
  constexpr int kMaxFarewellMessages = 2;
  const LogIndex committed = log_.committed();
  auto append = [&](LogIndex prev, std::vector<Entry> entries) {
    Message m;
    m.type = MessageType::kApp;
    m.to = to;
    m.index = prev;
    m.log_term = log_.TermOr(prev, Term());
    m.commit = committed;
    m.entries = std::move(entries);
    Send(std::move(m));
  };
  LogIndex prev = pr.match();
  // A match of 0 says nothing (a new leader has not heard from it); a compacted start needs a
  // snapshot. Then only the empty append goes.
  if (!prev.zero() && prev.next() >= log_.first_index()) {
    for (int k = 0; k < kMaxFarewellMessages && prev < committed; ++k) {
      std::vector<Entry> entries = log_.Slice(prev.next(), committed.next(), cfg_.max_msg_bytes);
      const LogIndex last = entries.back().index;
      append(prev, std::move(entries));
      prev = last;
    }
  }
  if (committed >= log_.first_index()) append(committed, {});  // redundant if prev reached it
}

void Raft::SendSnapshot(NodeId to, Progress& pr) {
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.snapshot = log_.snapshot();
  LOCKD_CHECK_MSG(!m.snapshot.index.zero(), "entries were compacted without a snapshot");
  m.commit = log_.committed();
  pr.BecomeSnapshot(m.snapshot.index);
  Send(std::move(m));
}

void Raft::ReportSnapshot(NodeId to, bool ok) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(to);
  if (it != progress_.end()) it->second.SnapshotDone(ok);
}

void Raft::BroadcastAppend(bool empty_ok) {
  // An empty append only carries the commit index; while appends are in flight to a follower, the
  // next one (or a heartbeat) carries it, so commit propagation does not bypass the in-flight
  // bound. (A heartbeat response still sends an empty append, which repairs lost ones.)
  for (const auto& [p, pr] : progress_)
    SendAppend(p, /*allow_empty=*/empty_ok && pr.inflight() == 0);
}

bool Raft::CommitUnsentTo(const Progress& pr) const {
  return pr.state() == Progress::State::kReplicate && pr.inflight() == 0 && pr.CanSend() &&
         pr.commit_sent() < log_.committed();
}

bool Raft::commit_unsent() const {
  if (role_ != Role::kLeader || !cfg_.defer_commit_only_appends) return false;
  for (const auto& [p, pr] : progress_) {
    if (p != id_ && CommitUnsentTo(pr)) return true;
  }
  return false;
}

void Raft::SendCommit() {
  if (role_ != Role::kLeader) return;
  for (const auto& [p, pr] : progress_) {
    if (p != id_ && CommitUnsentTo(pr)) SendAppend(p, /*allow_empty=*/true);
  }
}

void Raft::AppendEntries(std::vector<Entry> entries) {
  LogIndex next = log_.last_index().next();
  for (auto& e : entries) {
    e.term = term_;
    e.index = next;
    next = next.next();
    uncommitted_bytes_ += e.ByteSize();
    uncommitted_.emplace_back(e.index, e.ByteSize());
  }
  log_.Append(entries);
}

bool Raft::committed_current_term() const {
  return log_.TermOr(log_.committed(), Term()) == term_;
}

bool Raft::MaybeCommit() {
  const LogIndex idx = quorum_.CommittedIndex([&](NodeId p) {
    auto it = progress_.find(p);
    return it == progress_.end() ? LogIndex() : it->second.match();
  });
  if (idx <= log_.committed() || idx > log_.last_index()) return false;
  if (!cfg_.knobs.count_old_term_entries_for_commit && log_.TermOr(idx, Term()) != term_)
    return false;
  const bool first_in_term = !committed_current_term();
  log_.CommitTo(idx);
  while (!uncommitted_.empty() && uncommitted_.front().first <= idx) {
    uncommitted_bytes_ -= uncommitted_.front().second;
    uncommitted_.pop_front();
  }
  if (first_in_term && committed_current_term()) {
    for (auto& r : waiting_for_commit_) {
      r.index = log_.committed();
      r.round = next_round_;
      pending_reads_.push_back(r);
    }
    waiting_for_commit_.clear();
  }
  return true;
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

// --- client calls ------------------------------------------------------------------------------

Result<LogIndex> Raft::Propose(std::string data) {
  if (role_ != Role::kLeader) {
    return Unavailable("not the leader (leader: " + std::to_string(leader_.value()) + ")");
  }
  if (!transfer_target_.zero()) return Unavailable("leadership transfer in progress");
  Entry e{term_, LogIndex(), EntryType::kNormal, std::move(data)};
  if (uncommitted_bytes_ + e.ByteSize() > cfg_.max_uncommitted_bytes) {
    return Unavailable("too many uncommitted bytes; retry later");
  }
  AppendEntries({std::move(e)});
  // Appends go out when the runtime next takes a Ready: every proposal made until then shares
  // one append per follower.
  broadcast_pending_ = true;
  return log_.last_index();
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

Status Raft::TransferLeadership(NodeId to) {
  if (role_ != Role::kLeader) return Unavailable("not the leader");
  if (to == id_ || !config_.incoming().contains(to)) {
    return InvalidArgument("node " + std::to_string(to.value()) + " is not another voter");
  }
  transfer_target_ = to;
  transfer_elapsed_ = 0;
  if (progress_.at(to).match() == log_.last_index()) {
    Message t;
    t.type = MessageType::kTimeoutNow;
    t.to = to;
    Send(std::move(t));
    if (!cfg_.knobs.keep_time_lease_after_timeout_now) lease_time_branch_ended_ = true;
  } else {
    SendAppend(to);
  }
  return Status::Ok();
}

// --- membership --------------------------------------------------------------------------------

void Raft::SetConf(const ConfState& cs, LogIndex index) {
  conf_ = cs;
  conf_index_ = index;
  config_ = ToJointConfig(cs);
  quorum_ = cfg_.knobs.ignore_old_majority_in_joint ? JointConfig(config_.incoming(), {}) : config_;
  conf_history_.emplace_back(index, cs);
  conf_changed_ = true;
  if (role_ != Role::kLeader) return;
  // Rounds begun under the old membership never confirm; newer ones (and the reads) carry on.
  round_acks_.clear();
  const std::set<NodeId> members = Members(cs);
  for (const auto& [p, pr] : progress_) {
    if (p != id_ && !members.count(p)) SendFarewell(p, pr);
  }
  for (auto it = progress_.begin(); it != progress_.end();) {
    it = members.count(it->first) || it->first == id_ ? std::next(it) : progress_.erase(it);
  }
  if (!transfer_target_.zero() && !config_.incoming().contains(transfer_target_))
    transfer_target_ = NodeId();
  if (!Voter(id_)) {
    BecomeFollower(term_, NodeId());  // its removal is committed: it leads no more
    return;
  }
  AddProgressForMembers();
  if (MaybeCommit()) BroadcastCommit();
  MaybeAutoLeave();
}

void Raft::AddProgressForMembers() {
  for (NodeId p : Members(conf_)) {
    auto [it, fresh] = progress_.emplace(p, Progress(log_.last_index().next(), cfg_.max_inflight));
    if (fresh && p == id_) {
      it->second.MaybeUpdate(log_.stable_last());
      it->second.BecomeReplicate();
    }
  }
}

bool Raft::CanProposeConfChange() const {
  return role_ == Role::kLeader && transfer_target_.zero() && pending_conf_index_ <= log_.applied();
}

void Raft::MaybeAutoLeave() {
  if (!IsJoint(conf_) || !conf_.auto_leave || !CanProposeConfChange()) return;
  auto target = LeaveJoint(conf_);
  LOCKD_CHECK(target.ok());
  (void)AppendConfEntry(*target, "");
}

Result<LogIndex> Raft::AppendConfEntry(const ConfState& target, std::string context) {
  Entry e{term_, LogIndex(), EntryType::kConfChange,
          EncodeConfChangeEntry({target, std::move(context)})};
  if (uncommitted_bytes_ + e.ByteSize() > cfg_.max_uncommitted_bytes) {
    return Unavailable("too many uncommitted bytes; retry later");
  }
  if (std::find(target.voters.begin(), target.voters.end(), id_) == target.voters.end() &&
      !cfg_.knobs.keep_time_lease_after_timeout_now) {
    lease_time_branch_ended_ = true;  // a membership without this leader may elect another
  }
  AppendEntries({std::move(e)});
  pending_conf_index_ = log_.last_index();
  broadcast_pending_ = true;
  return log_.last_index();
}

Result<LogIndex> Raft::ProposeConfChange(const ConfChange& cc) {
  if (role_ != Role::kLeader) return Unavailable("not the leader");
  if (!transfer_target_.zero()) return Unavailable("leadership transfer in progress");
  if (pending_conf_index_ > log_.applied()) {
    return Unavailable("a membership change (or this term's first commit) is still pending");
  }
  auto target = ApplyConfChange(conf_, cc);
  if (!target.ok()) return target.status();
  for (const auto& c : cc.changes) {
    if (c.type != ConfChangeType::kAddVoter || IsVoter(conf_, c.node)) continue;
    auto it = progress_.find(c.node);
    const LogIndex match = it == progress_.end() ? LogIndex() : it->second.match();
    if (log_.last_index() - match > cfg_.max_promotion_lag) {
      return Unavailable("node " + std::to_string(c.node.value()) + " lags " +
                         std::to_string(log_.last_index() - match) +
                         " entries behind: add it as a learner and promote it once caught up");
    }
  }
  return AppendConfEntry(*target, cc.context);
}

Result<SnapshotMeta> Raft::SnapshotMetaAt(LogIndex index) const {
  const SnapshotMeta cur = log_.snapshot();
  if (index < cur.index || index > log_.applied()) {
    return OutOfRange("a snapshot can cover only applied entries after the last snapshot");
  }
  if (index == cur.index) return cur;
  SnapshotMeta meta;
  meta.index = index;
  meta.term = log_.TermOr(index, Term());
  for (const auto& [at, cs] : conf_history_) {
    if (at <= index) meta.conf = cs;
  }
  // A node added later learns the log without the bootstrap membership: before it applied its
  // first membership entry it knows none, and a snapshot without voters is refused everywhere.
  if (meta.conf.voters.empty()) {
    return FailedPrecondition("the membership at " + std::to_string(index.value()) +
                              " is not known here (this node joined later)");
  }
  return meta;
}

const Progress* Raft::progress(NodeId id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

// --- Ready -------------------------------------------------------------------------------------

bool Raft::HasReady() const {
  const HardState hs{term_, vote_, log_.committed()};
  return broadcast_pending_ || conf_changed_ || log_.pending_snapshot().has_value() ||
         !msgs_now_.empty() || !msgs_.empty() || !log_.unstable().empty() ||
         hs != persisted_hard_ || log_.committed() > log_.applied() || !read_states_.empty() ||
         !rounds_confirmed_.empty();
}

Ready Raft::GetReady() {
  if (broadcast_pending_) {
    broadcast_pending_ = false;
    if (role_ == Role::kLeader) BroadcastAppend();
  }
  Ready rd;
  rd.snapshot = log_.pending_snapshot();
  if (conf_changed_) rd.conf_state = conf_;
  conf_changed_ = false;
  HardState hs{term_, vote_, log_.committed()};
  if (cfg_.knobs.skip_vote_persist) hs.vote = persisted_hard_.vote;
  if (hs != persisted_hard_) rd.hard_state = hs;
  rd.entries = log_.unstable();
  rd.messages_now = std::move(msgs_now_);
  rd.messages = std::move(msgs_);
  msgs_now_.clear();
  msgs_.clear();
  rd.committed = log_.NextToApply(UINT64_MAX);
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.rounds_confirmed = std::move(rounds_confirmed_);
  rounds_confirmed_.clear();
  rd.lease_time_branch_ended = lease_time_branch_ended_;
  rd.role = role_;
  rd.leader = leader_;
  rd.term = term_;
  return rd;
}

void Raft::Advance(const Ready& rd) {
  if (rd.snapshot) log_.SnapshotInstalled(*rd.snapshot);
  if (rd.hard_state) persisted_hard_ = *rd.hard_state;
  if (!rd.entries.empty()) {
    log_.StableTo(rd.entries.back().index, rd.entries.back().term);
    if (role_ == Role::kLeader) {
      // The leader's own vote in the commit quorum counts only now that its disk has the entries.
      progress_.at(id_).MaybeUpdate(log_.stable_last());
      if (MaybeCommit()) BroadcastCommit();
    }
  }
  if (!rd.committed.empty()) {
    log_.AppliedTo(rd.committed.back().index);
    // Membership changes take effect as they are applied, in log order.
    for (const Entry& e : rd.committed) {
      if (e.type != EntryType::kConfChange || e.index <= conf_index_) continue;
      auto cc = DecodeConfChangeEntry(e.data);
      LOCKD_CHECK_MSG(cc.ok(), "a committed membership entry is damaged");
      SetConf(cc->target, e.index);
    }
  }
  const LogIndex snap = log_.snapshot().index;
  while (conf_history_.size() > 1 && conf_history_[1].first <= snap)
    conf_history_.erase(conf_history_.begin());
}

// --- invariants --------------------------------------------------------------------------------

void Raft::CheckInvariants() const {
  LOCKD_CHECK(log_.applied() <= log_.committed());
  LOCKD_CHECK(log_.committed() <= log_.last_index());
  LOCKD_CHECK(persisted_hard_.term <= term_);
  const auto& u = log_.unstable();
  for (size_t i = 1; i < u.size(); ++i) {
    LOCKD_CHECK(u[i].index == u[i - 1].index.next());
    LOCKD_CHECK(u[i].term >= u[i - 1].term);
  }
  if (!conf_.voters.empty()) LOCKD_CHECK(CheckConfState(conf_).ok());
  LOCKD_CHECK(conf_index_ <= log_.committed());
  if (role_ == Role::kLeader) {
    LOCKD_CHECK(leader_ == id_ && vote_ == id_ && Voter(id_) && !log_.pending_snapshot());
    for (NodeId p : Members(conf_)) LOCKD_CHECK(progress_.count(p));
    LOCKD_CHECK(progress_.size() == Members(conf_).size());
    for (const auto& [p, pr] : progress_) {
      LOCKD_CHECK(pr.match() <= log_.last_index());
      LOCKD_CHECK(pr.next() > pr.match() && pr.next() <= log_.last_index().next());
    }
    LOCKD_CHECK(progress_.at(id_).match() <= log_.stable_last());
  } else {
    LOCKD_CHECK(progress_.empty() && pending_reads_.empty());
  }
  if (role_ == Role::kCandidate) LOCKD_CHECK(vote_ == id_);
}

}  // namespace lockd::raft
