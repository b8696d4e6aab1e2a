// Replica: one member's share of the replicated lock service. It owns the Raft core, the lock
// state machine and the leader's lease and wait bookkeeping, and drives them from one thread
// (the loop); gRPC threads talk to it only through its queues.
//
// Each pass of the loop, in this order:
//   1. a detected stall raises every deadline to at least its end + TTL/3 (etcd#15247), then
//      the renewals that arrived are answered or parked; a renewal is refused only if its
//      lease's expiry is decided or its deadline was at or before the renewal arrived;
//   2. leases past their deadline get their expiry proposed, ahead of any other entry proposed
//      in this pass (a lease past its deadline is never granted anything: etcd#11456);
//   3. peer messages, client proposals and reads are handed to the core;
//   4. one tick if T_tick has passed since the last one (missed ticks are dropped), waits past
//      their time get their timeout proposed, and old outcomes their retirement;
//   5. every Ready is carried out in the core's order: send what needs no sync, persist (one
//      synced batch: group commit), send the rest, apply what is committed, answer callers.
//
// Answers: a proposal is answered when its entry applies. When leadership is lost, or the entry
// at its index turns out to be another leader's, the call is answered UNAVAILABLE — the proposal
// may or may not commit later, and the client's retry with the same request id is answered
// exactly once by the state machine. An Acquire that waits is answered when its wait ends.
//
// Leases (design brief, guarantee 4): renewals never touch the log. The leader acknowledges a
// renewal received at r once LeaderLease allows it (a confirmed heartbeat round begun at or after
// r, or the time branch); deadlines live in LeaseDeadlines on CLOCK_BOOTTIME, start only once the
// leader applied the first entry of its term, and expiry is proposed through the log.
//
// Owned by Node; Start() and Stop() from one thread, everything else thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "lock/exactly_once_retirement.h"
#include "lock/state_machine.h"
#include "raft/raft.h"
#include "server/leader_lease.h"
#include "server/lease_deadlines.h"
#include "server/metrics.h"
#include "server/options.h"
#include "server/restore_seed.h"
#include "storage/backup_file.h"

namespace lockd::storage {
class NodeStorage;
}

namespace lockd::server {

class PeerTransport;
class WatchHub;

class IdentityStore;

struct ReplicaOptions {
  uint64_t node_id = 0;
  /// Where the cluster id's decision goes (not owned; outlives the replica). A leader of a
  /// cluster whose id is undecided proposes one; the first such entry committed decides it.
  IdentityStore* identity = nullptr;
  std::vector<MemberSpec> members;  ///< the initial voters, with their addresses
  LeaseTiming timing;
  std::chrono::milliseconds forward_timeout{10'000};  ///< F_fwd
  lock::Limits limits;
  uint64_t seed = 1;
  /// A snapshot is taken (and the log compacted to it) once this many entries applied since the
  /// last one; 0: never.
  uint64_t snapshot_entries = 10'000;
  /// A node started with --join: it has no membership until the leader's log gives it one, and
  /// never bootstraps (no initial voters).
  bool joining = false;
  /// How long a leader may leave a follower without the newest commit index before it sends the
  /// index alone (an empty append, and its answer); the next append or heartbeat usually carries it
  /// sooner (raft::Config::defer_commit_only_appends). Zero: sent the moment it advances.
  std::chrono::microseconds commit_flush_delay{2000};
  /// AddMember promotes a learner only once its log is within this many entries of the leader's.
  uint64_t max_promotion_lag = 1000;
  /// Set on a member `lockd restore` made: while the cluster id is undecided, its leader proposes
  /// the id together with the restored starting state (server/restore_seed.h).
  std::optional<RestorePlan> restore;
  /// A member `lockd restore` made (with a plan, or one whose identity file records the restore):
  /// until it applied the entry that starts the restored cluster (or a snapshot, taken only after
  /// it), its state is not the cluster's, so Backup and Status refuse (UNAVAILABLE).
  bool restored = false;
  /// Runs on the loop after each snapshot is saved (its size, and how long it took); may be empty.
  std::function<void(uint64_t bytes, double seconds)> on_snapshot;
  /// What applying entries counts (null members: not counted).
  ApplyMetrics apply_metrics;
};

/// What AddMember answers: when the new node became a voter.
struct MemberAdded {
  uint64_t voter_index = 0;
  std::chrono::system_clock::time_point voter_at;
};

/// What a read sees, on the loop thread: the state machine and the leader's deadlines.
struct ReadView {
  const lock::LockStateMachine& state;
  /// Time left on a lease as the leader sees it; nullopt on a follower or when unknown.
  std::function<std::optional<std::chrono::milliseconds>(lock::LeaseId)> lease_remaining;
  /// How long ago this node applied the entry at an index (to within a second); nullopt when
  /// it applied before this process started.
  std::function<std::optional<std::chrono::milliseconds>(lock::LogIndex)> since_applied;
};

/// The node's Raft role and position, for Status and health.
struct ReplicaStatus {
  uint64_t node_id = 0;
  uint64_t leader_id = 0;
  uint64_t term = 0;
  raft::Role role = raft::Role::kFollower;
  uint64_t commit = 0;
  uint64_t applied = 0;
  uint64_t first_index = 0;
  uint64_t last_index = 0;
  uint64_t token_counter = 0;
  uint64_t lease_count = 0;
  uint64_t lock_count = 0;
  /// The cluster's commit index as far as this node knows it: its own, or the larger one the
  /// leader last sent with entries (a follower's own is clamped to what it has).
  uint64_t cluster_commit = 0;
  uint64_t holder_count = 0;         ///< grants held, over every lock
  uint64_t waiter_count = 0;         ///< Acquires waiting, over every lock
  uint64_t proposals_in_flight = 0;  ///< leader: proposed, not yet applied
  uint64_t try_locks_by_read = 0;    ///< failed try-locks answered after a ReadIndex (this run)
  uint64_t campaigns = 0;            ///< pre-vote and vote campaigns this node started (this run)
  bool leases_ready = false;         ///< leader: first entry of its term applied, deadlines running
  /// Leader of a restored cluster whose id is undecided: why it cannot propose the restored
  /// start (its clock is behind the backup's, the counters would overflow); empty otherwise.
  std::string restore_problem;
  /// A restored member that has not applied the restored cluster's starting entry yet: its
  /// counters are not the cluster's (Status answers UNAVAILABLE).
  bool restored_start_pending = false;
  struct Member {
    uint64_t id = 0;
    bool voter = true;
    uint64_t match = 0;  ///< leader's view
    bool active = false;
  };
  std::vector<Member> members;
};

class Replica {
 public:
  using Deadline = std::chrono::system_clock::time_point;
  /// The outcome of a client command, or UNAVAILABLE / DEADLINE_EXCEEDED when it cannot tell.
  using CommandDone = std::function<void(Result<lock::Outcome>)>;
  /// An acknowledged renewal: the time left on the lease as the leader sees it, and the tokens
  /// of every grant the lease holds now (a holder that misses one of its tokens learns that an
  /// operator force-released it or the lease was revoked and re-granted nothing: issue 14).
  struct Renewed {
    std::chrono::milliseconds remaining{0};
    std::vector<uint64_t> held_tokens;
  };
  using RenewDone = std::function<void(Result<Renewed>)>;
  using ReadFn = std::function<void(const ReadView&)>;
  using FailFn = std::function<void(const Status&)>;

  Replica(ReplicaOptions options, storage::NodeStorage& storage, PeerTransport& transport,
          WatchHub& watch, const Clock& clock);
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  /// Restores the state machine from the recovered snapshot and starts the loop (the log after
  /// it is applied by the loop, as the core hands it back).
  Status Start();
  /// Leader: hands leadership to the most caught-up voter and waits up to `bound` for it to lead.
  void TransferAway(std::chrono::milliseconds bound);
  /// Answers every waiting caller UNAVAILABLE and joins the loop.
  void Stop();

  // --- thread-safe entry points ---
  /// Proposes a client command (leader only; the caller forwards otherwise).
  void Submit(lock::Command command, Deadline deadline, CommandDone done);
  /// A renewal received at `received` (leader only). `principal`: the identity renewing (empty:
  /// access control is off); a lease another identity owns is PERMISSION_DENIED and not renewed.
  void Renew(uint64_t lease, BootTime received, std::string principal, RenewDone done);
  /// Runs `fn` on the loop: `linearizable` after a ReadIndex round (leader only), else at once.
  void Read(bool linearizable, ReadFn fn, FailFn fail);
  /// Encoded Raft messages from peer `from`.
  void DeliverPeerMessages(uint64_t from, std::vector<std::string> messages);
  /// A whole snapshot from peer `from` (its encoded kSnapshot message and checked payload);
  /// `done` once it is installed (or was not needed), or with why it failed.
  void DeliverSnapshot(uint64_t from, std::string message, std::string payload,
                       std::function<void(Status)> done);
  /// The transport's stream to peer `id` broke (raft::Raft::PeerUnreachable, on the loop).
  void PeerUnreachable(uint64_t id);
  /// Asks the leader to hand leadership to `to` (0: the most caught-up voter). `done` once `to`
  /// leads (OK), leadership went elsewhere (ABORTED), or it did not happen within 3·E_min
  /// (DEADLINE_EXCEEDED).
  void TransferLeadership(uint64_t to, FailFn done);

  /// Leader: adds `member` as a learner, promotes it to voter once its log is within
  /// max_promotion_lag of the leader's, and answers when the promotion applied. Refused while
  /// another change is in progress, for an id or address already used. A learner of the same
  /// addresses (an earlier add that timed out) is promoted. Past `deadline` the answer is
  /// DEADLINE_EXCEEDED and the node stays a learner.
  void AddMember(MemberSpec member, Deadline deadline,
                 std::function<void(Result<MemberAdded>)> done);
  /// Leader: removes `id` (not this node: hand leadership over first); answers the index of the
  /// entry once applied. Refused while another change is in progress, for a non-member, and
  /// when the remaining voters would not include a reachable majority (or none would be left).
  void RemoveMember(uint64_t id, Deadline deadline, std::function<void(Result<uint64_t>)> done);
  /// Membership changes this node promoted (this run), for metrics.
  uint64_t promotions() const { return promotions_.load(); }

  bool is_leader() const { return is_leader_.load(); }
  uint64_t leader_id() const { return leader_id_.load(); }
  /// The status as of the end of the loop's last pass (may lag an answer this node just gave).
  ReplicaStatus status() const;
  /// The status read on the loop, so it reflects every answer this node gave before the call
  /// (Status RPC: a client that just got a grant sees its token in the counter).
  void FreshStatus(std::function<void(ReplicaStatus)> done);
  const ReplicaOptions& options() const { return options_; }
  /// The fatal error that stopped the loop (OK while running), e.g. a malformed committed entry.
  Status fatal() const;

  // --- snapshots on demand and backups (replica_backup.cc) ---
  struct SnapshotTaken {
    uint64_t index = 0;
    uint64_t bytes = 0;  ///< of the state machine's encoding
  };
  /// Compacts this node's log now: a snapshot at the applied index (answered with the newest one
  /// when nothing was applied since it). FAILED_PRECONDITION when nothing was applied yet.
  void SnapshotNow(std::function<void(Result<SnapshotTaken>)> done);
  /// A consistent copy of this node's applied state for a backup, taken on the loop (one
  /// encoding of the state, as a snapshot costs); `done` runs on the loop and must not block.
  void CaptureBackup(std::function<void(Result<storage::Backup>)> done);

 private:
  struct PendingProposal {
    raft::Term term;
    CommandDone done;
  };
  struct ParkedRenewal {
    uint64_t lease;
    BootTime received;
    std::string principal;
    RenewDone done;
  };
  struct PendingRead {
    ReadFn fn;
    FailFn fail;
  };
  struct WaitTimer {
    std::string name;
    BootTime deadline;
  };

  void Loop();
  void RunPass();
  void Enqueue(std::function<void()> work);

  // Leadership.
  void SyncRole();
  void OnBecameLeader();
  /// A new leader of a cluster whose id is not decided yet proposes a random one.
  void ProposeClusterId();
  /// The cluster id entry `entry` carries takes effect if it is the first committed (OK for any
  /// other entry); an error only when the entry is unreadable or the id cannot be recorded.
  Status ApplyClusterId(const raft::Entry& entry);
  void OnLostLeadership();
  void ActivateLeases(BootTime now);
  void CheckTransfer(BootTime now);
  /// Retires the peer streams of members that membership entries applied in this pass removed
  /// (after the pass's messages, among them the core's last append to each, were queued).
  void RetireLeavingPeers();
  /// Answers every proposal, renewal and read with `s`, and every waiting Acquire with `waits`.
  void AnswerEveryCaller(const Status& s, const Status& waits);

  // The core.
  void TickIfDue(BootTime now);
  /// Sends the commit index to followers still without it once the flush delay has passed since
  /// it went unsent (ArmCommitFlush, at the end of the pass that left it unsent).
  void FlushCommitIfDue(BootTime now);
  void ArmCommitFlush(BootTime now);
  void StartRoundNow();
  void StampRounds(uint64_t before, BootTime at);
  void HandleReadies();
  void Send(const std::vector<raft::Message>& messages);
  void Apply(const raft::Entry& entry);
  void ServeReads();
  bool Propose(const lock::Command& command);
  /// A client command into the log (leader only), answered when it applies.
  void ProposeCommand(lock::Command command, Deadline deadline, CommandDone done);
  /// A try-lock that fails at this moment: answered after a ReadIndex if it still fails then.
  void TryLockByRead(lock::Command command, Deadline deadline, CommandDone done);

  // Membership (replica_members.cc).
  /// A committed membership entry: the member table it leads to, the peers to dial, and this
  /// node's own removal.
  Status ApplyMembership(const raft::Entry& entry);
  /// Moves the leader's membership change on: promotion once caught up, answers, timeouts.
  void AdvanceMemberChange(BootTime now);
  void EndMemberChange(const Status& s);
  /// The member table that came with an installed snapshot (the sender's), trimmed to the
  /// snapshot's membership: the addresses of members added by entries this node never applied.
  Status ApplySnapshotMembers(const raft::SnapshotMeta& meta);
  bool NamesSelf(const std::vector<MemberSpec>& table) const;
  /// After the identity recorded the table of the membership at `index`: the joining flag, the
  /// streams to its peers, and the end of streams to peers it no longer explains.
  void TakeMemberTable(const std::vector<MemberSpec>& table, uint64_t index);
  bool MemberChangeInProgress() const;
  /// Why removing `id` is refused, given the voters that answered lately (`seen`), or OK.
  Status RemovalRefusal(uint64_t id, const std::set<uint64_t>& seen) const;
  /// kCheckingRemoval: proposes the removal once allowed, or refuses it after check_until.
  void ProposeRemoval(BootTime now);

  // Snapshots.
  void MaybeTakeSnapshot();
  using SnapshotDone = std::function<void(Result<SnapshotTaken>)>;
  /// A snapshot at the applied index: the state is encoded on the loop, the file written and
  /// synced on a thread of its own (the slow part, tens of MB at a million locks), and the log
  /// compacted to it back on the loop, where `done` runs. One at a time: UNAVAILABLE while one
  /// is being written.
  void TakeSnapshot(SnapshotDone done);
  /// On the loop, once the file of the snapshot at `meta` is written (`written`).
  void FinishSnapshot(const raft::SnapshotMeta& meta, std::shared_ptr<const std::string> payload,
                      const Status& written, BootTime started, double encode_ms, SnapshotDone done);
  /// Waits for a snapshot file being written (before a snapshot is installed, or at Stop).
  void JoinSnapshotWriter();
  /// Answers the Snapshot calls that waited for the one being written: with it (or a newer one
  /// installed meanwhile) if it covers what they asked for, else with a new one.
  void AnswerSnapshotWaiters();
  /// Proposes the cluster id of a restored cluster with its starting state (leader only).
  Result<raft::LogIndex> ProposeRestoredClusterId(const std::string& id);
  /// A restored cluster's id entry: decides the id and, if it is the one decided, starts the
  /// state machine from the state it carries.
  Status ApplyRestoredClusterId(const raft::Entry& entry);
  /// Installs the received snapshot the core asked for (Ready::snapshot).
  Status InstallSnapshot(const raft::SnapshotMeta& meta);
  /// Streams the snapshot a kSnapshot message names to its follower.
  void SendSnapshot(const raft::Message& m);
  std::shared_ptr<const std::string> SnapshotPayload(const raft::SnapshotMeta& meta);
  void AnswerSnapshotSenders();

  // Leases and waits.
  void HandleRenewal(ParkedRenewal r, BootTime now);
  /// Counts one applied event in options_.apply_metrics.
  void CountEvent(lock::Event::Type type) const;
  void RetryParkedRenewals(BootTime now);
  void ProposeExpiries(BootTime now);
  /// The answer to a caller whose Acquire's outcome is `o`: a grant to a lease that this leader
  /// decided expired, or that no longer exists, is NOT_FOUND instead (issue 13, defect 8).
  lock::Outcome GrantAnswer(lock::Outcome o) const;
  void ProposeWaitTimeouts(BootTime now);
  void ProposeRetirement(BootTime now);
  void ArmWait(const std::string& name, const lock::RequestId& id, uint64_t wait_ms, BootTime now);
  void DisarmWait(const lock::RequestId& id);
  std::optional<std::chrono::milliseconds> LeaseRemaining(lock::LeaseId id) const;
  std::optional<std::chrono::milliseconds> SinceApplied(lock::LogIndex index) const;
  ReadView View();
  BootTime NextWake(BootTime now) const;
  /// Loop thread only.
  ReplicaStatus CurrentStatus() const;

  void Fail(const Status& s);

  const ReplicaOptions options_;
  storage::NodeStorage& storage_;
  PeerTransport& transport_;
  WatchHub& watch_;
  const Clock& clock_;

  // --- loop thread only ---
  std::unique_ptr<raft::Raft> raft_;
  lock::LockStateMachine state_;
  LeaderLease lease_;
  LeaseDeadlines deadlines_;
  bool leader_ = false;
  bool cluster_id_proposed_ = false;     ///< this leadership proposed the undecided cluster id
  bool restore_refusal_logged_ = false;  ///< ProposeRestoredClusterId said why it cannot
  std::string restore_problem_;          ///< ReplicaStatus::restore_problem
  bool restored_start_pending_ = false;  ///< ReplicaStatus::restored_start_pending
  raft::Term leader_term_;
  uint64_t applied_ = 0;
  BootTime last_tick_;
  BootTime expected_wake_;
  std::optional<BootTime> commit_flush_at_;  ///< when FlushCommitIfDue sends (unset: nothing to)
  std::chrono::nanoseconds last_pass_{0};
  std::map<raft::LogIndex, PendingProposal> proposals_;
  uint64_t leader_commit_seen_ = 0;  ///< loop: largest commit index a leader's MsgApp carried
  /// loop: when a well-formed message from each peer last arrived. Raft's recent_active flags
  /// are all cleared at every check-quorum round and are false for every peer just after an
  /// election, so on their own they say "nobody is up" for a heartbeat interval at a time.
  std::unordered_map<uint64_t, BootTime> last_heard_;
  std::set<uint64_t> peers_leaving_;  ///< loop: see RetireLeavingPeers()
  /// Loop: entries up to this index were committed before this process started; their events
  /// were counted by the process that applied them first (metrics count each event once).
  uint64_t counted_from_ = 0;
  std::multimap<lock::RequestId, CommandDone> waiting_acquires_;
  std::vector<ParkedRenewal> parked_renewals_;
  bool round_for_renewals_ = false;
  uint64_t next_read_ctx_ = 1;
  uint64_t reads_for_try_locks_ = 0;
  /// Campaigns (pre-vote or vote) this node started, seen as the core's role entering one; an
  /// operator (and the test that a removed node never campaigns) reads it as a metric.
  uint64_t campaigns_ = 0;
  raft::Role last_role_ = raft::Role::kFollower;
  std::map<uint64_t, PendingRead> reads_awaiting_index_;
  std::multimap<raft::LogIndex, PendingRead> reads_awaiting_apply_;
  std::map<lock::RequestId, WaitTimer> wait_timers_;
  std::set<std::pair<BootTime, lock::RequestId>> wait_order_;
  std::vector<uint64_t> expiries_to_propose_;
  /// The leader's side of exactly-once retirement and its age clock, which continues from the
  /// one the log carries (active from ActivateLeases until leadership is lost).
  lock::RetirementPlanner retirement_;
  /// (first index applied, time) about once a second, for "held for" in inspection.
  std::deque<std::pair<uint64_t, BootTime>> apply_times_;
  uint64_t first_index_this_run_ = 0;
  struct PendingTransfer {
    raft::NodeId to;
    BootTime deadline;
    FailFn done;
  };
  /// A TransferLeadership call, answered once `to` leads (or it failed or timed out).
  std::optional<PendingTransfer> transfer_;
  uint64_t snapshot_index_ = 0;     ///< of the newest snapshot this node holds
  uint64_t snapshot_bytes_ = 0;     ///< its state's size (taken, installed or loaded at start)
  uint64_t snapshot_retry_at_ = 0;  ///< after a failed attempt, no new one before this index
  bool snapshot_writing_ = false;   ///< a snapshot's file is being written (until FinishSnapshot)
  std::thread snapshot_writer_;     ///< writes it; joined by the next one, an install, or Stop
  /// Snapshot calls made while one was being written: (the applied index then, their answer).
  std::vector<std::pair<uint64_t, SnapshotDone>> snapshot_waiters_;
  /// The payload of the snapshot the log starts after, once taken, installed or read: what a
  /// follower behind the log start is sent, also while the next one is being written (the file
  /// store is the writer's then). One encoding of the state in memory.
  raft::SnapshotMeta snapshot_meta_;
  std::shared_ptr<const std::string> snapshot_payload_;
  struct IncomingSnapshot {
    raft::SnapshotMeta meta;
    std::string payload;
  };
  std::optional<IncomingSnapshot> incoming_;
  std::vector<std::function<void(Status)>> snapshot_senders_;  ///< answered after the Ready
  /// The leader's membership change in progress (one at a time).
  struct MemberChange {
    enum class Phase { kLearner, kPromoting, kCheckingRemoval, kRemoving } phase;
    MemberSpec member;
    raft::LogIndex index;  ///< of the entry of the current phase
    Deadline deadline;
    std::function<void(Result<MemberAdded>)> added;
    std::function<void(Result<uint64_t>)> removed;
    BootTime check_until;            ///< kCheckingRemoval: decide by then
    std::set<uint64_t> seen_active;  ///< voters that answered since the removal was asked
  };
  std::optional<MemberChange> change_;
  bool removed_ = false;  ///< this node applied its own removal
  /// The membership as of the last applied entry (the snapshot's, then stepped by every applied
  /// membership entry): what an entry changes is judged against it, never against the core's
  /// conf_state(), which at a restart is already the final membership of the whole log.
  raft::ConfState applied_conf_;

  // --- shared with other threads ---
  mutable std::mutex mu_;  ///< guards the queues, status_ and fatal_; never held across I/O
  std::condition_variable wake_;
  std::vector<ParkedRenewal> renewals_in_;
  std::vector<std::function<void()>> work_in_;
  std::atomic<bool> stopping_{false};
  ReplicaStatus status_;
  Status fatal_;
  std::atomic<bool> is_leader_{false};
  std::atomic<uint64_t> leader_id_{0};
  std::atomic<uint64_t> promotions_{0};
  std::thread loop_;
};

}  // namespace lockd::server
