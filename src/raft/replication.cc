// Log replication: a follower's handling of appends and heartbeats, the leader's progress per
// follower (probe / replicate, bounded in-flight appends, fast back-off on conflicts), the
// current-term commit rule, proposals and the uncommitted-bytes cap.
#include <algorithm>

#include "base/check.h"
#include "raft/raft.h"

namespace lockd::raft {

// --- follower ----------------------------------------------------------------------------------

void Raft::HandleAppend(const Message& m) {
  Message r;
  r.type = MessageType::kAppResp;
  r.to = m.from;
  if (m.index < log_.committed()) {
    // Everything up to our commit index matches any leader's log: say where we are.
    r.index = log_.committed();
    Send(std::move(r));
    return;
  }
  const bool matches = cfg_.knobs.skip_log_matching_check
                           ? (m.index >= log_.first_index().prev() && m.index <= log_.last_index())
                           : log_.MatchTerm(m.index, m.log_term);
  if (matches) {
    const LogIndex last_new = log_.MaybeAppend(m.index, m.entries);
    // Only what is known to match the leader's log may be committed: up to the last new entry.
    log_.CommitTo(std::min(m.commit, last_new));
    r.index = last_new;
  } else {
    // The conflict hint (as etcd): the last index at or below the leader's probe whose term is
    // at most the leader's term there. Every entry after it conflicts or is missing, so the
    // leader can skip back a whole term per round trip instead of one entry.
    r.reject = true;
    r.index = m.index;
    r.reject_hint = log_.FindConflictByTerm(std::min(m.index, log_.last_index()), m.log_term);
    r.hint_term = log_.TermOr(r.reject_hint, Term());
  }
  Send(std::move(r));
}

void Raft::HandleHeartbeat(const Message& m) {
  // The leader sends min(our match, its commit), so this never commits an unmatched entry.
  log_.CommitTo(std::min(m.commit, log_.last_index()));
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  r.round = m.round;
  Send(std::move(r));
}

// --- leader ------------------------------------------------------------------------------------

void Raft::HandleAppendResponse(const Message& m) {
  Progress& pr = progress_.at(m.from);
  if (m.reject) {
    // The follower's hint is its last entry whose term is at most our term at the probe; we skip
    // to our own last entry at or below it whose term is at most the follower's term there.
    const LogIndex hint = log_.FindConflictByTerm(m.reject_hint, m.hint_term);
    if (pr.MaybeDecrease(m.index, hint)) {
      if (pr.state() == Progress::State::kReplicate) pr.BecomeProbe();
      SendAppend(m.from);
    }
    return;
  }
  if (!pr.MaybeUpdate(m.index)) return;
  if (pr.state() == Progress::State::kProbe) pr.BecomeReplicate();
  if (MaybeCommit()) {
    BroadcastAppend();
  } else {
    SendAppend(m.from, /*allow_empty=*/false);
  }
  if (m.from == transfer_target_) MaybeSendTimeoutNow(m.from);
}

void Raft::SendAppend(NodeId to, bool allow_empty) {
  if (to == id_) return;
  Progress& pr = progress_.at(to);
  if (!pr.CanSend()) return;
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
  Send(std::move(m));
}

void Raft::BroadcastAppend() {
  // An empty append only carries the commit index; while appends are in flight to a follower, the
  // next one (or a heartbeat) carries it, so commit propagation does not bypass the in-flight
  // bound. (A heartbeat response still sends an empty append, which repairs lost ones.)
  for (const auto& [p, pr] : progress_) SendAppend(p, /*allow_empty=*/pr.inflight() == 0);
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
  const LogIndex idx = config_.CommittedIndex([&](NodeId p) {
    auto it = progress_.find(p);
    return it == progress_.end() ? LogIndex() : it->second.match();
  });
  if (idx <= log_.committed() || idx > log_.last_index()) return false;
  // Raft §5.4.2: replicas of an earlier term's entry may still be overwritten; only an entry of
  // the leader's own term commits by counting (the earlier ones commit with it).
  if (!cfg_.knobs.count_old_term_entries_for_commit && log_.TermOr(idx, Term()) != term_)
    return false;
  const bool first_in_term = !committed_current_term();
  log_.CommitTo(idx);
  while (!uncommitted_.empty() && uncommitted_.front().first <= idx) {
    uncommitted_bytes_ -= uncommitted_.front().second;
    uncommitted_.pop_front();
  }
  if (first_in_term && committed_current_term()) OnFirstCommitOfTerm();
  return true;
}

Result<LogIndex> Raft::Propose(std::string data) {
  if (role_ != Role::kLeader) {
    return Unavailable("not the leader (leader: " +
                       (leader_.zero() ? std::string("unknown") : std::to_string(leader_.value())) +
                       ")");
  }
  if (!transfer_target_.zero()) return Unavailable("leadership transfer in progress");
  Entry e{term_, LogIndex(), EntryType::kNormal, std::move(data)};
  // One entry larger than the cap still goes through when nothing else is pending, or it could
  // never be proposed at all (request size limits belong to the server).
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + e.ByteSize() > cfg_.max_uncommitted_bytes) {
    return Unavailable("too many uncommitted bytes; retry later");
  }
  AppendEntries({std::move(e)});
  // Appends go out when the runtime next takes a Ready: every proposal made until then shares
  // one append per follower.
  broadcast_pending_ = true;
  return log_.last_index();
}

}  // namespace lockd::raft
