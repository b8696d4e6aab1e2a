// Replica: the loop, leadership changes and the Ready cycle. Leases, waits and retirement are in
// replica_leases.cc.
#include "server/replica.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <random>

#include "base/thread_name.h"
#include "base/unsafe_faults.h"
#include "raft/wire.h"
#include "server/cluster_identity.h"
#include "server/logging.h"
#include "server/peer_transport.h"
#include "server/watch_hub.h"
#include "storage/node_storage.h"

namespace lockd::server {

namespace {

lock::LogIndex ToLockIndex(raft::LogIndex i) {
  return lock::LogIndex(i.value());
}

WatchEvent::Type ToWatchType(lock::Event::Type t) {
  switch (t) {
    case lock::Event::Type::kAcquired:
      return WatchEvent::Type::kAcquired;
    case lock::Event::Type::kReleased:
      return WatchEvent::Type::kReleased;
    case lock::Event::Type::kExpired:
      return WatchEvent::Type::kExpired;
    case lock::Event::Type::kWaiting:
      return WatchEvent::Type::kWaiting;
    case lock::Event::Type::kCancelled:
      return WatchEvent::Type::kCancelled;
  }
  return WatchEvent::Type::kAcquired;
}

Status NotLeader() {
  return Unavailable(
      "this node lost leadership before the call finished; retry with the same "
      "request id");
}

}  // namespace

Replica::Replica(ReplicaOptions options, storage::NodeStorage& storage, PeerTransport& transport,
                 WatchHub& watch, const Clock& clock)
    : options_(std::move(options)),
      storage_(storage),
      transport_(transport),
      watch_(watch),
      clock_(clock),
      state_(options_.limits),
      lease_(options_.timing),
      retirement_(lock::RetirementPlanner::Timing{
          static_cast<uint64_t>(options_.forward_timeout.count()),
          // W, never below F_fwd (options validation says so too).
          std::max<uint64_t>(static_cast<uint64_t>(options_.forward_timeout.count()),
                             options_.limits.outcome_retention_ms),
          options_.timing.drift}) {}

Replica::~Replica() {
  Stop();
}

Status Replica::Start() {
  restored_start_pending_ = options_.restored;
  if (const auto& snap = storage_.recovered_snapshot(); snap.has_value()) {
    restored_start_pending_ = false;  // no snapshot is taken before the start applied
    auto restored = lock::LockStateMachine::Restore(snap->payload, options_.limits);
    if (!restored.ok()) return restored.status();
    state_ = std::move(restored).value();
    applied_ = snap->meta.index.value();
    snapshot_index_ = applied_;
    snapshot_bytes_ = snap->payload.size();  // Snapshot answers it without reading the file again
    applied_conf_ = snap->meta.conf;
    // The events up to the snapshot are not replayed: resuming inside them is OUT_OF_RANGE.
    watch_.CutHistory(applied_);
  } else if (!options_.joining) {
    // No snapshot: the log starts at the bootstrap membership (a joiner's, empty, comes from
    // the leader's entries). A restart recorded more members since, but replaying the entries
    // up to the identity file's membership index steps this to the right one before any entry
    // is acted on.
    for (const auto& m : options_.members) applied_conf_.voters.push_back(raft::NodeId(m.id));
  }
  raft::Config cfg;
  cfg.id = raft::NodeId(options_.node_id);
  // A joining node has no initial voters: its membership comes from the leader's log.
  if (!options_.joining) {
    for (const auto& m : options_.members) cfg.peers.push_back(raft::NodeId(m.id));
  }
  cfg.max_promotion_lag = options_.max_promotion_lag;
  const auto tick = options_.timing.tick;
  cfg.election_tick = static_cast<int>(options_.timing.election_min / tick);
  cfg.heartbeat_tick = 1;
  cfg.seed = options_.seed;
  cfg.defer_commit_only_appends = options_.commit_flush_delay.count() > 0;
  raft_ = std::make_unique<raft::Raft>(cfg, storage_.log());
  counted_from_ = raft_->log().committed().value();
  const BootTime now = clock_.Now();
  last_tick_ = now;
  expected_wake_ = now;
  SyncRole();
  loop_ = std::thread([this] {
    NameThisThread("replica-loop");
    Loop();
  });
  return Status::Ok();
}

void Replica::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !loop_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (loop_.joinable()) loop_.join();
  // A snapshot file being written: its completion lands in the queue drained below (or runs
  // there, seeing stopping_); the log is compacted to it at the next start.
  JoinSnapshotWriter();
  // The loop is gone: answer whatever still waits, so no RPC outlives the node.
  const Status gone =
      Unavailable("this node is stopping; retry on another node with the same request id");
  AnswerEveryCaller(gone, gone);
  EndMemberChange(gone);
  for (auto& done : snapshot_senders_) done(gone);
  snapshot_senders_.clear();
  if (transfer_) transfer_->done(gone);
  transfer_.reset();
  std::vector<ParkedRenewal> renewals;
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(mu_);
    renewals.swap(renewals_in_);
    work.swap(work_in_);
  }
  for (auto& r : renewals) r.done(gone);
  // Queued work holds callbacks; running it now (with stopping_ set) answers them UNAVAILABLE.
  for (auto& w : work) w();
}

void Replica::TransferAway(std::chrono::milliseconds bound) {
  if (!is_leader()) return;
  auto outcome = std::make_shared<std::promise<Status>>();
  auto answered = outcome->get_future();
  TransferLeadership(0, [outcome](const Status& s) { outcome->set_value(s); });
  if (answered.wait_for(bound) != std::future_status::ready) {
    spdlog::warn("node {}: leadership transfer at shutdown did not finish within {} ms",
                 options_.node_id, bound.count());
  } else if (Status s = answered.get(); !s.ok()) {
    spdlog::warn("node {}: leadership transfer at shutdown: {}", options_.node_id, s.ToString());
  }
}

void Replica::Enqueue(std::function<void()> work) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      work_in_.push_back(std::move(work));
      work = nullptr;
    }
  }
  if (work) {
    work();  // stopping: the work sees stopping_ and answers UNAVAILABLE itself
    return;
  }
  wake_.notify_one();
}

ReplicaStatus Replica::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

Status Replica::fatal() const {
  std::lock_guard lock(mu_);
  return fatal_;
}

void Replica::Fail(const Status& s) {
  spdlog::critical("node {}: stopping: {}", options_.node_id, s.ToString());
  std::lock_guard lock(mu_);
  if (fatal_.ok()) fatal_ = s;
  stopping_ = true;
}

// --- the loop ---------------------------------------------------------------------------------

void Replica::Loop() {
  std::vector<ParkedRenewal> renewals;
  std::vector<std::function<void()>> work;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      const BootTime now = clock_.Now();
      const BootTime wake_at = NextWake(now);
      expected_wake_ = wake_at;
      if (renewals_in_.empty() && work_in_.empty() && !stopping_ && wake_at > now) {
        wake_.wait_for(lock, wake_at - now);
      }
      if (stopping_) return;
      renewals.swap(renewals_in_);
      work.swap(work_in_);
    }
    const BootTime start = clock_.Now();
    // A stall: the loop woke more than a heartbeat interval late (the process was stopped, the
    // machine paused it) or the previous pass ran longer than one (a slow disk).
    const bool stalled =
        start - expected_wake_ > options_.timing.tick || last_pass_ > options_.timing.tick;

    // 1. The stall rule and the renewals that arrived, before any expiry is decided. Both only
    // raise deadlines, so their order changes no deadline; raising first means no renewal that
    // arrived during the stall is refused for a deadline the stall itself let pass.
    // Planted bug for the fault tests only (base/unsafe_faults.h): renewals before the stall rule.
    const bool old_order = unsafe::Enabled(unsafe::Fault::kStallRuleOldOrder);
    if (old_order) {
      for (auto& r : renewals) HandleRenewal(std::move(r), start);
      renewals.clear();
    }
    if (stalled && leader_ && deadlines_.active()) {
      spdlog::warn(
          "node {}: loop stalled ({} ms late, last pass {} ms); lease deadlines moved "
          "to at least now + TTL/3",
          options_.node_id,
          std::chrono::duration_cast<std::chrono::milliseconds>(start - expected_wake_).count(),
          std::chrono::duration_cast<std::chrono::milliseconds>(last_pass_).count());
      deadlines_.Stalled(start);
    }
    for (auto& r : renewals) HandleRenewal(std::move(r), start);
    renewals.clear();
    // 2. Expiries ahead of anything that could promote a waiter.
    ProposeExpiries(start);
    // 3. Peer messages, proposals, reads.
    for (auto& w : work) w();
    work.clear();
    // 4. Time.
    TickIfDue(clock_.Now());
    ProposeWaitTimeouts(clock_.Now());
    ProposeRetirement(clock_.Now());
    if (raft_->role() == raft::Role::kLeader && (round_for_renewals_ || raft_->round_wanted())) {
      StartRoundNow();
    }
    round_for_renewals_ = false;
    FlushCommitIfDue(clock_.Now());
    // 5. The Ready cycle, then (rarely) a snapshot of what it applied.
    HandleReadies();
    AdvanceMemberChange(clock_.Now());
    CheckTransfer(clock_.Now());
    AnswerSnapshotSenders();
    MaybeTakeSnapshot();
    RetryParkedRenewals(clock_.Now());
    ArmCommitFlush(clock_.Now());  // after everything this pass proposed and sent
    {
      ReplicaStatus fresh = CurrentStatus();  // before mu_, which the transport's callbacks need
      std::lock_guard lock(mu_);
      status_ = std::move(fresh);
    }
    last_pass_ = clock_.Now() - start;
  }
}

ReplicaStatus Replica::CurrentStatus() const {
  // Reachability: the leader's Raft view (a recent answer), elsewhere whether this node's stream
  // to the peer is up.
  ReplicaStatus st;
  for (raft::NodeId member : raft::Members(raft_->conf_state())) {
    const struct { uint64_t id; } m{member.value()};
    ReplicaStatus::Member mm;
    mm.id = m.id;
    mm.voter = raft::IsVoter(raft_->conf_state(), member);
    if (m.id == options_.node_id) {
      mm.active = true;
    } else if (!leader_) {
      mm.active = transport_.Stats(m.id).connected;
    }
    if (leader_) {
      const auto& progress = raft_->progress();
      if (auto it = progress.find(raft::NodeId(m.id)); it != progress.end()) {
        mm.match = it->second.match().value();
        mm.active = mm.active || it->second.recent_active();
      }
    }
    st.members.push_back(mm);
  }
  st.node_id = options_.node_id;
  st.leader_id = raft_->leader().value();
  st.term = raft_->term().value();
  st.role = raft_->role();
  st.commit = raft_->log().committed().value();
  st.applied = applied_;
  st.first_index = raft_->log().first_index().value();
  st.last_index = raft_->log().last_index().value();
  st.token_counter = state_.token_counter().value();
  st.lease_count = state_.lease_count();
  st.lock_count = state_.lock_count();
  st.cluster_commit = std::max(st.commit, leader_commit_seen_);
  st.holder_count = state_.holder_count();
  st.waiter_count = state_.waiter_count();
  st.proposals_in_flight = proposals_.size();
  st.try_locks_by_read = reads_for_try_locks_;
  st.campaigns = campaigns_;
  st.leases_ready = leader_ && deadlines_.active();
  st.restore_problem = restore_problem_;
  st.restored_start_pending = restored_start_pending_;
  return st;
}

void Replica::FreshStatus(std::function<void(ReplicaStatus)> done) {
  Enqueue([this, done = std::move(done)] {
    // Stopping: Enqueue runs this on the caller's thread, where only the last copy may be read.
    done(stopping_ ? status() : CurrentStatus());
  });
}

BootTime Replica::NextWake(BootTime now) const {
  BootTime next = last_tick_ + options_.timing.tick;
  if (leader_ && deadlines_.active()) {
    if (auto d = deadlines_.NextDeadline(); d && *d < next) next = *d;
    if (!wait_order_.empty() && wait_order_.begin()->first < next) {
      next = wait_order_.begin()->first;
    }
  }
  if (commit_flush_at_ && *commit_flush_at_ < next) next = *commit_flush_at_;
  return next < now ? now : next;
}

void Replica::FlushCommitIfDue(BootTime now) {
  if (!commit_flush_at_ || now < *commit_flush_at_) return;
  commit_flush_at_.reset();
  raft_->SendCommit();  // every follower it counted is sent the index: no longer counted
}

void Replica::ArmCommitFlush(BootTime now) {
  // At low load the next entry's append carries the commit index to the followers, well within
  // the delay; only a commit with nothing after it costs its own append (and answer).
  if (!raft_->commit_unsent()) {
    commit_flush_at_.reset();
  } else if (!commit_flush_at_) {
    commit_flush_at_ = now + options_.commit_flush_delay;
  }
}

void Replica::TickIfDue(BootTime now) {
  if (now - last_tick_ < options_.timing.tick) return;
  // One tick however long it has been: n ticks then span more than (n-1)·T_tick.
  last_tick_ = now;
  // A removed or replaced node takes no part in Raft: its messages are dropped, and a follower's
  // tick could only time out and campaign (counted, and a disturbance if its messages ever got
  // through). The leader the core announces its removal to has usually told it already; this
  // covers a node that missed that. A leader still ticks: check-quorum steps it down.
  if (options_.identity && options_.identity->replaced() && raft_->role() != raft::Role::kLeader) {
    return;
  }
  const uint64_t before = raft_->newest_round();
  const BootTime stamp = clock_.Now();  // taken before the call that may start a round
  raft_->Tick();
  StampRounds(before, stamp);
  SyncRole();
  ProposeClusterId();  // a proposal the core refused is tried again a tick later
}

void Replica::StartRoundNow() {
  const uint64_t before = raft_->newest_round();
  const BootTime stamp = clock_.Now();
  if (raft_->RequestRound().ok()) StampRounds(before, stamp);
}

void Replica::StampRounds(uint64_t before, BootTime at) {
  if (!leader_) return;
  for (uint64_t id = before + 1; id <= raft_->newest_round(); ++id) lease_.RoundStarted(id, at);
}

// --- leadership -------------------------------------------------------------------------------

void Replica::SyncRole() {
  const raft::Role role = raft_->role();
  if (role != last_role_ && (role == raft::Role::kPreCandidate || role == raft::Role::kCandidate)) {
    ++campaigns_;
  }
  last_role_ = role;
  const bool leading = role == raft::Role::kLeader;
  if (leader_ && (!leading || raft_->term() != leader_term_)) OnLostLeadership();
  if (leading && !leader_) OnBecameLeader();
  is_leader_ = leader_;
  leader_id_ = raft_->leader().value();
}

void Replica::OnBecameLeader() {
  leader_ = true;
  leader_term_ = raft_->term();
  SetLogTerm(leader_term_.value());
  lease_.BecomeLeader(leader_term_.value());
  spdlog::info("node {}: leader of term {}", options_.node_id, leader_term_.value());
  ProposeClusterId();
}

void Replica::ProposeClusterId() {
  if (!leader_ || cluster_id_proposed_ || !options_.identity || options_.identity->decided()) {
    return;
  }
  // After this term's first entry, so the id is decided within one commit of the election.
  // Another leader's proposal may commit first: the first committed wins (ApplyClusterId).
  const std::string id = NewRandomId();
  auto index =
      options_.restore ? ProposeRestoredClusterId(id) : raft_->Propose(EncodeClusterIdEntry(id));
  if (!index.ok()) {
    spdlog::warn("node {}: cannot propose a cluster id: {}", options_.node_id,
                 index.status().ToString());
    return;
  }
  cluster_id_proposed_ = true;  // it commits, or this leadership ends (and the next leader tries)
  spdlog::info("node {}: proposed cluster id {} at index {}", options_.node_id, id, index->value());
}

Status Replica::ApplyClusterId(const raft::Entry& entry) {
  if (entry.type != raft::EntryType::kNormal || !IsClusterIdEntry(entry.data)) return Status::Ok();
  if (IsRestoredClusterIdEntry(entry.data)) return ApplyRestoredClusterId(entry);
  auto id = DecodeClusterIdEntry(entry.data);
  if (!id.ok()) {
    return Status(id.status().code(), "cannot apply committed entry " +
                                          std::to_string(entry.index.value()) + ": " +
                                          id.status().message());
  }
  if (!options_.identity) return Status::Ok();
  auto decided = options_.identity->Decide(*id);
  if (!decided.ok()) return decided.status();
  if (*decided) {
    spdlog::info("node {}: cluster id {} decided by entry {}", options_.node_id, *id,
                 entry.index.value());
  }
  return Status::Ok();
}

void Replica::OnLostLeadership() {
  spdlog::info("node {}: no longer leader (term {})", options_.node_id, raft_->term().value());
  leader_ = false;
  cluster_id_proposed_ = false;
  restore_refusal_logged_ = false;
  restore_problem_.clear();  // the next leader says its own
  lease_.StepDown();
  deadlines_.Deactivate();
  wait_timers_.clear();
  wait_order_.clear();
  expiries_to_propose_.clear();
  retirement_.Stop();
  EndMemberChange(Unavailable(
      "leadership changed during the membership change; it may or may not have taken effect: "
      "check `lockctl member list`, then retry"));
  // Nothing waiting on this node can be answered by it any more; every retry is safe.
  AnswerEveryCaller(NotLeader(),
                    Unavailable("leadership changed while the Acquire waited; retry with the "
                                "same request id to rejoin the wait"));
}

void Replica::AnswerEveryCaller(const Status& s, const Status& waits) {
  for (auto& [i, p] : proposals_) p.done(s);
  proposals_.clear();
  for (auto& [id, done] : waiting_acquires_) done(waits);
  waiting_acquires_.clear();
  for (auto& r : parked_renewals_) r.done(s);
  parked_renewals_.clear();
  for (auto& [c, r] : reads_awaiting_index_) r.fail(s);
  reads_awaiting_index_.clear();
  for (auto& [i, r] : reads_awaiting_apply_) r.fail(s);
  reads_awaiting_apply_.clear();
}

// --- entry points -----------------------------------------------------------------------------

void Replica::Submit(lock::Command command, Deadline deadline, CommandDone done) {
  Enqueue([this, command = std::move(command), deadline, done = std::move(done)]() mutable {
    const auto* acquire = std::get_if<lock::Acquire>(&command);
    // A first attempt at a try-lock that fails changes nothing: a ReadIndex round answers it
    // without a log entry or an fsync (design brief, "Exactly once"; guarantee 7).
    if (acquire && acquire->header.attempt == 1 && leader_ && !stopping_ &&
        state_.FailedTryLock(*acquire).has_value()) {
      TryLockByRead(std::move(command), deadline, std::move(done));
      return;
    }
    ProposeCommand(std::move(command), deadline, std::move(done));
  });
}

void Replica::ProposeCommand(lock::Command command, Deadline deadline, CommandDone done) {
  if (stopping_ || !leader_) {
    done(Unavailable("not the leader; retry with the same request id"));
    return;
  }
  // Nothing but the cluster id entry may apply first: in a restored cluster that entry carries the
  // starting state (guarantee 8), and a command applied before it would be lost or mis-counted.
  if (options_.identity && !options_.identity->decided()) {
    done(Unavailable("the cluster id is not decided yet; retry with the same request id"));
    return;
  }
  if (std::chrono::system_clock::now() >= deadline) {
    done(
        Status(StatusCode::kDeadlineExceeded, "the call's deadline passed before it was proposed"));
    return;
  }
  auto index = raft_->Propose(lock::Encode(command, WallSeconds()));
  if (!index.ok()) {
    done(index.status());
    return;
  }
  proposals_[*index] = PendingProposal{raft_->term(), std::move(done)};
}

void Replica::TryLockByRead(lock::Command command, Deadline deadline, CommandDone done) {
  const uint64_t ctx = next_read_ctx_++;
  if (!raft_->ReadIndex(ctx).ok()) {
    ProposeCommand(std::move(command), deadline, std::move(done));
    return;
  }
  // fn or fail runs, never both: they share the one callback.
  auto shared = std::make_shared<CommandDone>(std::move(done));
  ReadFn fn = [this, command = std::move(command), deadline, shared](const ReadView& view) mutable {
    if (auto outcome = view.state.FailedTryLock(std::get<lock::Acquire>(command))) {
      ++reads_for_try_locks_;
      (*shared)(std::move(*outcome));
      return;
    }
    // Between the check and the read index the lock came free (or the request id was used):
    // the log decides.
    ProposeCommand(std::move(command), deadline, std::move(*shared));
  };
  FailFn fail = [shared](const Status& s) { (*shared)(s); };
  reads_awaiting_index_.emplace(ctx, PendingRead{std::move(fn), std::move(fail)});
}

void Replica::Renew(uint64_t lease, BootTime received, std::string principal, RenewDone done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      renewals_in_.push_back(ParkedRenewal{lease, received, std::move(principal), std::move(done)});
      done = nullptr;
    }
  }
  if (done) {
    done(Unavailable("this node is stopping; retry on another node with the same request id"));
    return;
  }
  wake_.notify_one();
}

void Replica::Read(bool linearizable, ReadFn fn, FailFn fail) {
  Enqueue([this, linearizable, fn = std::move(fn), fail = std::move(fail)]() mutable {
    if (stopping_) {
      fail(Unavailable("this node is stopping"));
      return;
    }
    if (!linearizable) {
      fn(View());
      return;
    }
    if (!leader_) {
      fail(Unavailable("not the leader; a linearizable read needs the leader"));
      return;
    }
    const uint64_t ctx = next_read_ctx_++;
    if (Status s = raft_->ReadIndex(ctx); !s.ok()) {
      fail(s);
      return;
    }
    reads_awaiting_index_.emplace(ctx, PendingRead{std::move(fn), std::move(fail)});
  });
}

void Replica::DeliverPeerMessages(uint64_t from, std::vector<std::string> messages) {
  Enqueue([this, from, messages = std::move(messages)] {
    if (stopping_) return;
    for (const auto& bytes : messages) {
      auto m = raft::DecodeMessage(bytes);
      if (!m.ok()) {
        spdlog::warn("node {}: dropped a message from node {}: {}", options_.node_id, from,
                     m.status().ToString());
        continue;
      }
      if (m->from.value() != from || m->to.value() != options_.node_id) {
        spdlog::warn(
            "node {}: dropped a message that claims to be from {} to {} on node {}'s "
            "stream",
            options_.node_id, m->from.value(), m->to.value(), from);
        continue;
      }
      // The leader's own commit index, unclamped (heartbeats carry min(match, commit)): how far
      // this member is behind the cluster, for readiness.
      if (m->type == raft::MessageType::kApp && m->commit.value() > leader_commit_seen_) {
        leader_commit_seen_ = m->commit.value();
      }
      const uint64_t before = raft_->newest_round();
      const BootTime stamp = clock_.Now();
      last_heard_[from] = stamp;
      if (Status s = raft_->Step(*m); !s.ok()) {
        spdlog::warn("node {}: refused a {} from node {}: {}", options_.node_id,
                     raft::TypeName(m->type), from, s.ToString());
      }
      StampRounds(before, stamp);
      SyncRole();
    }
  });
}

void Replica::DeliverSnapshot(uint64_t from, std::string message, std::string payload,
                              std::function<void(Status)> done) {
  Enqueue([this, from, message = std::move(message), payload = std::move(payload),
           done = std::move(done)]() mutable {
    if (stopping_) {
      done(Unavailable("this node is stopping"));
      return;
    }
    auto m = raft::DecodeMessage(message);
    if (!m.ok() || m->type != raft::MessageType::kSnapshot || m->from.value() != from ||
        m->to.value() != options_.node_id) {
      done(InvalidArgument("not a kSnapshot from node " + std::to_string(from) + " to this node"));
      return;
    }
    incoming_ = IncomingSnapshot{m->snapshot, std::move(payload)};
    const uint64_t before = raft_->newest_round();
    const BootTime stamp = clock_.Now();
    if (Status s = raft_->Step(*m); !s.ok()) {
      incoming_.reset();
      done(s);
      return;
    }
    StampRounds(before, stamp);
    SyncRole();
    // Answered once this pass's Ready installed it (or showed it was not needed).
    snapshot_senders_.push_back(std::move(done));
  });
}

void Replica::TransferLeadership(uint64_t to, FailFn done) {
  Enqueue([this, to, done = std::move(done)] {
    if (stopping_ || !leader_) {
      done(Unavailable("not the leader"));
      return;
    }
    raft::NodeId target(to);
    if (target.zero()) {
      // The most caught-up voter that is up: its stream is connected and it answered recently.
      // A peer that just stopped may still have the best match index; handing over to it only
      // waits out the bound (issue 13, defect 10). "Recently" is Raft's flag or a message within
      // the shortest election timeout: the flag alone is false for every peer right after an
      // election and after each check-quorum round, until the next answers arrive.
      const BootTime now = clock_.Now();
      auto heard_recently = [&](uint64_t id) {
        auto it = last_heard_.find(id);
        return it != last_heard_.end() && now - it->second < options_.timing.election_min;
      };
      raft::LogIndex best;
      for (const auto& [id, pr] : raft_->progress()) {
        // Incoming voters only: in a joint phase an outgoing one would be refused the transfer.
        if (id.value() == options_.node_id || !raft_->config().incoming().contains(id)) continue;
        if (!pr.recent_active() && !heard_recently(id.value())) continue;
        if (!transport_.Stats(id.value()).connected) continue;
        if (target.zero() || pr.match() > best) {
          target = id;
          best = pr.match();
        }
      }
      if (target.zero()) {
        done(FailedPrecondition("no other voter is reachable to hand leadership to"));
        return;
      }
    }
    if (transfer_) {
      done(FailedPrecondition("a transfer to node " + std::to_string(transfer_->to.value()) +
                              " is in progress"));
      return;
    }
    if (Status s = raft_->TransferLeadership(target); !s.ok()) {
      done(s);
      return;
    }
    spdlog::info("node {}: handing leadership to node {}", options_.node_id, target.value());
    transfer_ =
        PendingTransfer{target, clock_.Now() + 3 * options_.timing.election_min, std::move(done)};
  });
}

void Replica::CheckTransfer(BootTime now) {
  if (!transfer_) return;
  const raft::NodeId leader = raft_->leader();
  Status outcome;
  if (!leader_ && leader == transfer_->to) {
    outcome = Status::Ok();
  } else if (!leader_ && !leader.zero() && leader.value() != options_.node_id) {
    outcome =
        Status(StatusCode::kAborted, "leadership went to node " + std::to_string(leader.value()) +
                                         ", not node " + std::to_string(transfer_->to.value()));
  } else if (now >= transfer_->deadline) {
    outcome =
        Status(StatusCode::kDeadlineExceeded,
               "node " + std::to_string(transfer_->to.value()) + " did not take over within " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      3 * options_.timing.election_min)
                                      .count()) +
                   " ms" + (leader_ ? "; this node still leads" : ""));
  } else {
    return;
  }
  FailFn done = std::move(transfer_->done);
  transfer_.reset();
  done(outcome);
}

// --- the Ready cycle --------------------------------------------------------------------------

void Replica::Send(const std::vector<raft::Message>& messages) {
  for (const auto& m : messages) {
    if (m.to.value() == options_.node_id) continue;
    if (m.type == raft::MessageType::kSnapshot) {
      SendSnapshot(m);
      continue;
    }
    transport_.Send(m.to.value(), raft::EncodeMessage(m));
  }
}

void Replica::HandleReadies() {
  // Also when the pass stops on a failure: the process stays up for its supervisor.
  struct Retire {
    Replica* r;
    ~Retire() { r->RetireLeavingPeers(); }
  } retire{this};
  while (raft_->HasReady()) {
    raft::Ready rd = raft_->GetReady();
    SetLogTerm(raft_->term().value());  // before this Ready's log lines
    if (rd.snapshot.has_value()) {
      // Before anything of this Ready is persisted (its entries follow the snapshot).
      if (Status s = InstallSnapshot(*rd.snapshot); !s.ok()) {
        Fail(s);
        return;
      }
    }
    Send(rd.messages_now);
    if (rd.hard_state.has_value() || !rd.entries.empty() || rd.conf_state.has_value()) {
      storage::PersistBatch batch;
      batch.hard_state = rd.hard_state;
      batch.entries = rd.entries;
      // A joined node has no bootstrap membership: the stored one is how it restarts.
      batch.conf_state = rd.conf_state;
      if (Status s = storage_.log().Append(batch); !s.ok()) {
        // Nothing that depends on this batch may leave the node: stop here.
        Fail(s);
        return;
      }
    }
    Send(rd.messages);
    for (const auto& e : rd.committed) {
      Apply(e);
      if (!fatal().ok()) return;
    }
    for (const auto& rs : rd.read_states) {
      auto it = reads_awaiting_index_.find(rs.ctx);
      if (it == reads_awaiting_index_.end()) continue;
      reads_awaiting_apply_.emplace(rs.index, std::move(it->second));
      reads_awaiting_index_.erase(it);
    }
    for (uint64_t id : rd.rounds_confirmed) lease_.RoundConfirmed(id);
    if (rd.lease_time_branch_ended) lease_.EndTimeBranch();
    raft_->Advance(rd);
    SyncRole();
    ServeReads();
  }
}

void Replica::RetireLeavingPeers() {
  std::set<uint64_t> later;
  for (uint64_t id : peers_leaving_) {
    // Added back meanwhile? The table decides: IsMember holds for every id while joining, and a
    // joiner replays the removals of its cluster's history.
    if (options_.identity && options_.identity->Names(id)) continue;
    // The leader this node follows now is never one that left: a catching-up node replaying an
    // old removal of a reused id (the replacement leads) needs its stream to answer the leader.
    // Looked at again after the next pass (until a table names it or another leads).
    if (raft::NodeId(id) == raft_->leader()) {
      later.insert(id);
      continue;
    }
    transport_.RemovePeer(id);
    last_heard_.erase(id);
  }
  peers_leaving_ = std::move(later);
}

void Replica::ServeReads() {
  while (!reads_awaiting_apply_.empty() &&
         reads_awaiting_apply_.begin()->first.value() <= applied_) {
    auto node = reads_awaiting_apply_.extract(reads_awaiting_apply_.begin());
    node.mapped().fn(View());
  }
}

ReadView Replica::View() {
  return ReadView{state_, [this](lock::LeaseId id) { return LeaseRemaining(id); },
                  [this](lock::LogIndex i) { return SinceApplied(i); }};
}

std::optional<std::chrono::milliseconds> Replica::SinceApplied(lock::LogIndex index) const {
  // The first sample at or after the index was taken no earlier than the entry applied.
  auto it = std::lower_bound(apply_times_.begin(), apply_times_.end(), index.value(),
                             [](const auto& sample, uint64_t i) { return sample.first < i; });
  if (index.value() < first_index_this_run_ || apply_times_.empty()) return std::nullopt;
  if (it == apply_times_.end()) --it;  // applied after the newest sample: within a second of it
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now() - it->second);
}

void Replica::Apply(const raft::Entry& entry) {
  const uint64_t index = entry.index.value();
  if (index <= applied_) return;  // covered by the restored snapshot
  const BootTime now = clock_.Now();
  if (first_index_this_run_ == 0) first_index_this_run_ = index;
  if (apply_times_.empty() || now - apply_times_.back().second >= std::chrono::seconds(1)) {
    apply_times_.emplace_back(index, now);
    if (apply_times_.size() > 100'000) apply_times_.pop_front();
  }
  auto pending = proposals_.find(entry.index);
  if (entry.type != raft::EntryType::kNormal || entry.data.empty() ||
      IsClusterIdEntry(entry.data)) {
    // A leader's no-op, the cluster id's decision (never the lock state machine's), or a
    // membership entry, once the core makes them.
    if (Status s = ApplyClusterId(entry); !s.ok()) {
      Fail(s);
      return;
    }
    if (entry.type == raft::EntryType::kConfChange) {
      if (Status s = ApplyMembership(entry); !s.ok()) {
        Fail(s);
        return;
      }
    }
    applied_ = index;
    if (pending != proposals_.end()) {
      pending->second.done(NotLeader());
      proposals_.erase(pending);
    }
    if (leader_ && entry.term == leader_term_ && !deadlines_.active()) ActivateLeases(now);
    watch_.Applied(index);
    return;
  }
  auto result = state_.Apply(ToLockIndex(entry.index), entry.data);
  if (!result.ok()) {
    Fail(Status(result.status().code(),
                "cannot apply committed entry " + std::to_string(index) +
                    " (the node would diverge from its peers): " + result.status().message()));
    return;
  }
  applied_ = index;
  lock::ApplyResult& r = *result;

  // The leader's own bookkeeping first, so that the answers below see it.
  if (leader_ && deadlines_.active()) {
    for (const auto& [lease, ttl] : r.leases_granted) {
      deadlines_.Added(lease.value(), std::chrono::milliseconds(ttl), now);
    }
    for (const auto& w : r.waits_started) ArmWait(w.name, w.acquire, w.wait_ms, now);
  }
  for (const auto& lease : r.leases_ended) deadlines_.Removed(lease.value());

  if (pending != proposals_.end()) {
    CommandDone done = std::move(pending->second.done);
    const bool ours = pending->second.term == entry.term;
    proposals_.erase(pending);
    if (!ours) {
      done(NotLeader());
    } else if (r.outcome.waiting) {
      auto env = lock::Decode(entry.data);
      const lock::RequestHeader* h = env.ok() ? lock::HeaderOf(env->command) : nullptr;
      if (h) {
        waiting_acquires_.emplace(h->id, std::move(done));
      } else {
        done(Internal("a waiting outcome for a command without a request id"));
      }
    } else {
      done(GrantAnswer(std::move(r.outcome)));
    }
  }
  for (auto& c : r.completions) {
    DisarmWait(c.acquire);
    auto [lo, hi] = waiting_acquires_.equal_range(c.acquire);
    for (auto it = lo; it != hi; ++it) it->second(GrantAnswer(c.outcome));
    waiting_acquires_.erase(lo, hi);
  }
  if (!r.events.empty()) {
    WatchEntry we;
    we.index = index;
    for (const auto& e : r.events) {
      if (index > counted_from_) CountEvent(e.type);
      WatchEvent w;
      w.type = ToWatchType(e.type);
      w.number = e.number;
      w.name = e.name;
      w.lease_id = e.lease.value();
      w.shared = e.mode == lock::Mode::kShared;
      w.token = e.token.value();
      w.fence = e.fence.value();
      we.events.push_back(std::move(w));
    }
    watch_.Publish(std::move(we));
  }
  watch_.Applied(index);
  if (leader_ && entry.term == leader_term_ && !deadlines_.active()) ActivateLeases(now);
}

// --- snapshots --------------------------------------------------------------------------------

void Replica::MaybeTakeSnapshot() {
  if (options_.snapshot_entries == 0 || applied_ < snapshot_index_ + options_.snapshot_entries ||
      applied_ < snapshot_retry_at_ || !fatal().ok()) {
    return;
  }
  if (snapshot_writing_ || stopping_) return;  // the next pass after it finished tries again
  TakeSnapshot([this, at = applied_](Result<SnapshotTaken> taken) {
    if (taken.ok() || !fatal().ok() || stopping_) return;
    // E.g. a node that joined later and does not know the membership at this index yet.
    snapshot_retry_at_ = at + options_.snapshot_entries;
    spdlog::warn("node {}: no snapshot at {} (next try at {}): {}", options_.node_id, at,
                 snapshot_retry_at_, taken.status().ToString());
  });
}

Status Replica::InstallSnapshot(const raft::SnapshotMeta& meta) {
  if (!incoming_.has_value() || incoming_->meta.index != meta.index ||
      incoming_->meta.term != meta.term) {
    return Internal("Raft asked to install a snapshot at index " +
                    std::to_string(meta.index.value()) + " that this node did not receive");
  }
  auto restored = lock::LockStateMachine::Restore(incoming_->payload, options_.limits);
  if (!restored.ok()) {
    return DataLoss("the leader's snapshot at index " + std::to_string(meta.index.value()) +
                    " does not restore: " + restored.status().message());
  }
  // A file of our own being written: the store is one thread's at a time, so the loop waits for
  // it (at most one write; the whole write used to run on the loop).
  JoinSnapshotWriter();
  if (Status s = storage_.InstallSnapshot(meta, incoming_->payload); !s.ok()) return s;
  if (Status s = ApplySnapshotMembers(meta); !s.ok()) return s;
  applied_conf_ = meta.conf;
  state_ = std::move(restored).value();
  applied_ = meta.index.value();
  snapshot_index_ = applied_;
  snapshot_bytes_ = incoming_->payload.size();  // Snapshot answers with this one's size now
  restored_start_pending_ = false;              // the sender took it after the start applied
  // What happened up to the snapshot is not known here event by event.
  first_index_this_run_ = applied_ + 1;
  apply_times_.clear();
  watch_.CutHistory(applied_);
  watch_.Applied(applied_);
  spdlog::info("node {}: installed the leader's snapshot at index {} (term {}, {} bytes)",
               options_.node_id, applied_, meta.term.value(), incoming_->payload.size());
  snapshot_meta_ = meta;
  snapshot_payload_ = std::make_shared<const std::string>(std::move(incoming_->payload));
  incoming_.reset();
  return Status::Ok();
}

void Replica::AnswerSnapshotSenders() {
  if (snapshot_senders_.empty()) return;
  // A snapshot the core did not ask for (it had those entries already) is simply dropped.
  incoming_.reset();
  const Status s = fatal();
  for (auto& done : snapshot_senders_) done(s);
  snapshot_senders_.clear();
}

std::shared_ptr<const std::string> Replica::SnapshotPayload(const raft::SnapshotMeta& meta) {
  if (snapshot_payload_ && snapshot_meta_ == meta) return snapshot_payload_;
  // The store is the writer's while a file is written (it replaces this one): the transfer is
  // reported failed, and the core asks again. Only before the first snapshot of this run.
  if (snapshot_writing_) return nullptr;
  auto loaded = storage_.snapshots().LoadLatest();
  if (!loaded.ok() || !loaded->has_value() || (*loaded)->meta.index != meta.index ||
      (*loaded)->meta.term != meta.term) {
    spdlog::warn("node {}: the snapshot at index {} to send is not the newest on disk{}",
                 options_.node_id, meta.index.value(),
                 loaded.ok() ? "" : ": " + loaded.status().ToString());
    return nullptr;
  }
  auto p = std::make_shared<const std::string>(std::move((*loaded)->payload));
  snapshot_meta_ = meta;
  snapshot_payload_ = p;
  return p;
}

void Replica::PeerUnreachable(uint64_t id) {
  Enqueue([this, id] {
    if (!stopping_) raft_->PeerUnreachable(raft::NodeId(id));
  });
}

void Replica::SendSnapshot(const raft::Message& m) {
  const uint64_t to = m.to.value();
  // The core hears the outcome on a later pass (never inside the Ready being handled).
  auto report = [this, to](bool ok) {
    Enqueue([this, to, ok] {
      if (!stopping_) raft_->ReportSnapshot(raft::NodeId(to), ok);
    });
  };
  auto payload = SnapshotPayload(m.snapshot);
  if (!payload) {
    report(false);
    return;
  }
  spdlog::info("node {}: sending node {} the snapshot at index {} ({} bytes)", options_.node_id, to,
               m.snapshot.index.value(), payload->size());
  transport_.SendSnapshot(to, raft::EncodeMessage(m), std::move(payload), report);
}

bool Replica::Propose(const lock::Command& command) {
  auto index = raft_->Propose(lock::Encode(command, WallSeconds()));
  if (!index.ok()) {
    spdlog::warn("node {}: could not propose {}: {}", options_.node_id, lock::KindName(command),
                 index.status().ToString());
    return false;
  }
  return true;
}

void Replica::CountEvent(lock::Event::Type type) const {
  const ApplyMetrics& m = options_.apply_metrics;
  Counter* c = nullptr;
  switch (type) {
    case lock::Event::Type::kAcquired:
      c = m.grants;
      break;
    case lock::Event::Type::kReleased:
      c = m.releases;
      break;
    case lock::Event::Type::kExpired:
      c = m.expiries;
      break;
    case lock::Event::Type::kWaiting:
      c = m.waits;
      break;
    case lock::Event::Type::kCancelled:
      c = m.cancels;
      break;
  }
  if (c) c->Increment();
}

}  // namespace lockd::server
