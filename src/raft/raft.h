// Raft: the consensus core. A pure, deterministic state machine in the style of etcd's raft: no
// threads, sockets, clocks or disk. The runtime (or the simulator) feeds it Tick(), peer messages
// and proposals, takes a Ready — what to persist, what to send, what is committed, which reads and
// heartbeat rounds are confirmed — and reports back with Advance().
//
// The contract, per Ready, in this order:
//   1. send `messages_now` (a leader's appends and heartbeats: they need nothing persisted);
//   2. persist `hard_state` and `entries` durably (one synced batch);
//   3. send `messages` (votes and acknowledgements: they promise what step 2 made durable);
//   4. apply `committed`;
//   5. Advance(ready).
// No Step/Tick/Propose may happen between GetReady and Advance.
//
// Heartbeat rounds are started only by Tick() and RequestRound(). The runtime takes the time on
// its clock just before each such call and stamps every round that call started (newest_round()
// tells which): the stamp is then never later than any of the round's heartbeats is sent, and a
// round requested after a renewal arrived is stamped after it.
//
// What the runtime needs for the leader lease (design brief, guarantee 4, rule (c)): heartbeat
// rounds carry ids that acknowledgements echo; `rounds_confirmed` lists each round a majority of
// the voters of every configuration acknowledged (credited to that round, not a newer one);
// `lease_time_branch_ended` turns true once this leader sent TimeoutNow, or appended a membership
// that removes it from the voters (for the rest of its term).
//
// Snapshots and compaction (Raft core II). The runtime owns every snapshot:
//   - Taking one: at any applied index i (rd.committed applied up to i), the runtime snapshots the
//     state machine, saves the file with SnapshotMetaAt(i) (term and membership at i), then
//     compacts the durable log (storage::RaftStore::Compact(meta), MemoryLogStorage::Compact).
//     The core reads the new FirstIndex()/Snapshot() through LogStorage; no call is needed.
//   - Sending one: a follower whose next entry is compacted gets a kSnapshot message in
//     `messages_now` naming the SnapshotMeta (the latest durable snapshot, LogStorage::Snapshot()).
//     The core sends no appends to that follower meanwhile. The runtime streams the snapshot file
//     covering that meta in chunks (resumable, bounded memory) beside the message and calls
//     ReportSnapshot(to, ok) once the follower's runtime confirmed receipt (ok) or the transfer
//     failed (ok = false: the core retries after the follower's next heartbeat response).
//   - Receiving one: the follower's runtime receives and checks the whole payload first, then
//     Step()s the kSnapshot message. If the core takes it, the next Ready carries `snapshot` (the
//     same meta): in step 2, before persisting `hard_state` and `entries`, the runtime installs the
//     payload as its state machine and replaces the log with the snapshot
//     (storage::RaftStore::ResetToSnapshot(meta), after saving the file); `committed` then starts
//     after meta.index. If no Ready carries it (the follower already had those entries), the
//     payload is discarded. The follower answers the leader (kAppResp) in `messages`, after step 2.
//
// Membership (Raft core II): ProposeConfChange appends a kConfChange entry carrying the whole
// membership it leads to (conf_change.h). The core applies it itself when the runtime applied the
// entry (the Advance after a Ready whose `committed` holds it), in log order; the next Ready then
// carries `conf_state`, the membership in force, for the runtime's peer set (persisting it with
// storage::PersistBatch::conf_state is optional: at start the core rebuilds the membership from
// the snapshot's and the committed kConfChange entries). A joint membership is left by an entry
// the leader proposes itself. Commit, elections, CheckQuorum, ReadIndex and heartbeat rounds need
// a majority of both halves of a joint membership; learners receive the log and heartbeats, never
// campaign and are never counted (they do answer vote requests: a promoted learner may not know it
// yet, and the other voters may need its vote). A leader removed from the voters steps down once
// it applied its removal; a node that is not a voter never campaigns.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "raft/conf_change.h"
#include "raft/log_storage.h"
#include "raft/message.h"
#include "raft/progress.h"
#include "raft/quorum.h"
#include "raft/raft_log.h"

namespace lockd::raft {

/// Test-only switches, each breaking one rule, so the simulator can show it catches the bug.
struct TestingKnobs {
  bool count_old_term_entries_for_commit = false;
  bool skip_vote_persist = false;
  bool grant_votes_to_shorter_logs = false;
  bool skip_log_matching_check = false;
  bool read_index_before_term_commit = false;
  bool keep_time_lease_after_timeout_now = false;
  bool no_vote_refusal_after_restart = false;
  bool credit_ack_to_newest_round = false;
  /// A new leader may propose a membership change before it committed an entry of its term (so
  /// before an earlier term's uncommitted change in its log is settled).
  bool conf_change_without_term_commit = false;
  /// During a joint membership, decisions count only the incoming voters.
  bool ignore_old_majority_in_joint = false;
  bool any() const {
    return count_old_term_entries_for_commit || skip_vote_persist || grant_votes_to_shorter_logs ||
           skip_log_matching_check || read_index_before_term_commit ||
           keep_time_lease_after_timeout_now || no_vote_refusal_after_restart ||
           credit_ack_to_newest_round || conf_change_without_term_commit ||
           ignore_old_majority_in_joint;
  }
};

struct Config {
  NodeId id;
  /// Voters when the storage has no membership yet (bootstrap).
  std::vector<NodeId> peers;
  int election_tick = 10;  ///< E_min in ticks; timeouts are random in [E_min, 2·E_min)
  int heartbeat_tick = 1;
  uint64_t max_msg_bytes = 1 << 20;
  size_t max_inflight = 256;
  uint64_t max_uncommitted_bytes = 64 << 20;
  bool pre_vote = true;
  /// When the commit index advances and a follower has no entries to be sent, the leader does not
  /// send it an empty append for the commit index alone: the next append or heartbeat carries it,
  /// or SendCommit() when the runtime decides (it bounds how long followers lag behind). At low
  /// load that saves an append and its answer per entry and follower (issue 18); safety does not
  /// depend on when followers learn the commit index. Off: sent at once, as the paper's leader.
  bool defer_commit_only_appends = false;
  bool check_quorum = true;
  /// A node becomes a voter only if the leader's log is at most this many entries ahead of it.
  uint64_t max_promotion_lag = 1000;
  uint64_t seed = 1;  ///< for the randomized election timeout
  TestingKnobs knobs;
};

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role r);

struct ReadState {
  LogIndex index;
  uint64_t ctx = 0;
  bool operator==(const ReadState&) const = default;
};

struct Ready {
  /// A snapshot from the leader to install before persisting `hard_state` and `entries` (see the
  /// contract above); its payload is the one the runtime received with the kSnapshot message.
  std::optional<SnapshotMeta> snapshot;
  std::optional<HardState> hard_state;
  std::vector<Entry> entries;
  std::vector<Message> messages_now;
  std::vector<Message> messages;
  std::vector<Entry> committed;
  std::vector<ReadState> read_states;
  std::vector<uint64_t> rounds_confirmed;
  bool lease_time_branch_ended = false;
  Role role = Role::kFollower;
  NodeId leader;
  Term term;
  /// The membership in force changed (a kConfChange entry was applied, or a snapshot restored).
  std::optional<ConfState> conf_state;
};

class Raft {
 public:
  Raft(Config config, const LogStorage& storage);

  /// One tick: the runtime delivers one only when T_tick has passed since the last (missed ticks
  /// are dropped), so n ticks span more than (n-1)·T_tick.
  void Tick();
  /// A message from a peer. A message of a newer format is refused.
  Status Step(const Message& m);
  /// Appends a command on the leader. UNAVAILABLE (retry elsewhere) when not leader, during a
  /// transfer, or over the uncommitted-bytes cap. Returns the entry's index.
  Result<LogIndex> Propose(std::string data);
  /// A linearizable read: answered by a ReadState once a quorum confirmed leadership after it
  /// and the term's first entry is committed. UNAVAILABLE when not leader.
  Status ReadIndex(uint64_t ctx);
  /// Starts a heartbeat round now: for reads waiting on one (round_wanted()), or a renewal that
  /// needs a round begun after it arrived. UNAVAILABLE when not leader.
  Status RequestRound();
  /// Reads are waiting for a round that has not started yet.
  bool round_wanted() const;
  /// On a leader that defers commit-only appends: a follower in the replicate state with nothing
  /// in flight has not been sent the commit index yet (SendCommit would send it an append).
  bool commit_unsent() const;
  /// Sends the commit index to each follower commit_unsent() counts (an empty append each).
  void SendCommit();
  /// The id of the newest round started (0: none this term).
  uint64_t newest_round() const { return next_round_ - 1; }
  /// Hands leadership to `to` once it has caught up (TimeoutNow).
  Status TransferLeadership(NodeId to);

  /// Appends a membership change on the leader; returns the entry's index. UNAVAILABLE when not
  /// leader, during a transfer, while an earlier change is not yet applied or the leader has not
  /// committed an entry of its term, or while a promoted node lags more than max_promotion_lag;
  /// INVALID_ARGUMENT / FAILED_PRECONDITION for a change that does not apply to the membership.
  Result<LogIndex> ProposeConfChange(const ConfChange& cc);
  /// The runtime finished streaming the snapshot of a kSnapshot message to `to` (ok), or gave up.
  void ReportSnapshot(NodeId to, bool ok);
  /// The runtime's connection to `peer` broke (its process died, its machine went away). A
  /// follower whose leader that is draws its election timeout again from [E_min, E_min + s),
  /// s = max(2 ticks, E_min/5), instead of [E_min, 2·E_min): it still waits at least E_min since
  /// it last heard from the leader (the leader lease and the renewal rule rest on that), but not
  /// a random extra second for a leader it cannot hear. A hint only: a wrong one (a stream that
  /// broke and reconnects) costs an early pre-vote, which a voter that still hears from the
  /// leader refuses; it lasts until the next term or the next reset of the timeout.
  void PeerUnreachable(NodeId peer);
  /// What a snapshot of the state machine at applied index `index` covers: its term and the
  /// membership then. OUT_OF_RANGE unless durable snapshot index <= index <= applied;
  /// FAILED_PRECONDITION where the membership is not known (a node added later, before the first
  /// membership entry it applied: it never had the bootstrap membership).
  Result<SnapshotMeta> SnapshotMetaAt(LogIndex index) const;

  bool HasReady() const;
  Ready GetReady();
  void Advance(const Ready& rd);

  /// Aborts if the core's own structure is inconsistent.
  void CheckInvariants() const;

  NodeId id() const { return id_; }
  Term term() const { return term_; }
  Role role() const { return role_; }
  NodeId leader() const { return leader_; }
  NodeId vote() const { return vote_; }
  const RaftLog& log() const { return log_; }
  const JointConfig& config() const { return config_; }
  /// The leader's view of every member's log (empty unless leader).
  const std::map<NodeId, Progress>& progress() const { return progress_; }
  /// The membership in force (as of conf_index()).
  const ConfState& conf_state() const { return conf_; }
  LogIndex conf_index() const { return conf_index_; }
  /// The leader's view of `id` (nullptr when not leader or not a member).
  const Progress* progress(NodeId id) const;
  bool lease_time_branch_ended() const { return lease_time_branch_ended_; }
  /// Whether the leader has committed an entry of its own term.
  bool committed_current_term() const;

 private:
  void BecomeFollower(Term term, NodeId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Campaign(bool pre, bool transfer);
  void Reset(Term term);
  void ResetRandomizedTimeout();

  void StepLeader(const Message& m);
  void StepCandidate(const Message& m);
  void StepFollower(const Message& m);
  /// A follower heard from its leader: resets the election timer and the vote refusal's clock.
  void HeardFromLeader(NodeId leader);
  void HandleVoteRequest(const Message& m);
  void HandleAppend(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleAppendResponse(const Message& m);
  void HandleHeartbeatResponse(const Message& m);

  void Send(Message m);
  void SendAppend(NodeId to, bool allow_empty = true);
  /// Appends to every follower the window lets through; with `empty_ok`, an empty one (the commit
  /// index alone) to a follower with nothing in flight and nothing new.
  void BroadcastAppend(bool empty_ok = true);
  /// After the commit index advanced: BroadcastAppend, without the empty appends when deferred,
  /// except while a membership change is committed and not applied (as raft-rs's
  /// should_bcast_commit): its commit changes who votes, and a leader that committed its own
  /// removal steps down as it applies it and sends nothing after. Deferred, the members that stay
  /// would not learn it committed, and a two-voter cluster left with one would wait for the
  /// removed node's vote for good (found by review).
  void BroadcastCommit() {
    BroadcastAppend(!cfg_.defer_commit_only_appends || pending_conf_index_ > log_.applied());
  }
  /// Whether `pr` is a follower SendCommit() would send the commit index to.
  bool CommitUnsentTo(const Progress& pr) const;
  void StartRound();
  bool MaybeCommit();
  void AppendEntries(std::vector<Entry> entries);
  void ReleasePendingReads();
  bool InLease() const;
  bool Voter(NodeId id) const { return config_.contains(id); }
  void SendSnapshot(NodeId to, Progress& pr);
  /// The last append to a member the new configuration removes (SetConf).
  void SendFarewell(NodeId to, const Progress& pr);
  void HandleSnapshot(const Message& m);
  /// Puts `cs` (made by the entry at `index`, or a snapshot there) in force.
  void SetConf(const ConfState& cs, LogIndex index);
  void AddProgressForMembers();
  void MaybeAutoLeave();
  bool CanProposeConfChange() const;
  Result<LogIndex> AppendConfEntry(const ConfState& target, std::string context);

  const NodeId id_;
  Config cfg_;
  RaftLog log_;
  Term term_;
  NodeId vote_;
  NodeId leader_;
  Role role_ = Role::kFollower;
  JointConfig config_;
  JointConfig quorum_;  ///< config_, or what a planted bug makes of it
  ConfState conf_;
  LogIndex conf_index_;
  std::vector<std::pair<LogIndex, ConfState>> conf_history_;  ///< for SnapshotMetaAt
  LogIndex pending_conf_index_;  ///< leader: no new change until applied reaches it
  bool conf_changed_ = false;    ///< the next Ready carries conf_state
  std::map<NodeId, Progress> progress_;
  std::map<NodeId, bool> votes_;

  int election_elapsed_ = 0;  ///< ticks towards this node's own election timeout
  int since_leader_ = 0;      ///< ticks since it heard a leader, stopped leading, or started
  int heartbeat_elapsed_ = 0;
  int randomized_timeout_ = 0;
  std::mt19937_64 rng_;

  NodeId transfer_target_;
  int transfer_elapsed_ = 0;
  bool lease_time_branch_ended_ = false;
  uint64_t uncommitted_bytes_ = 0;
  std::deque<std::pair<LogIndex, uint64_t>>
      uncommitted_;  ///< (index, bytes) of this leader's entries

  // Heartbeat rounds and the reads waiting on them.
  uint64_t next_round_ = 1;
  std::map<uint64_t, std::set<NodeId>> round_acks_;  ///< rounds not yet confirmed
  uint64_t confirmed_round_ = 0;
  struct PendingRead {
    LogIndex index;
    uint64_t ctx;
    uint64_t round;  ///< confirmed by this round or a later one
  };
  std::vector<PendingRead> waiting_for_commit_;  ///< reads before the term's first commit
  std::vector<PendingRead> pending_reads_;

  // What the next Ready carries.
  bool broadcast_pending_ = false;  ///< proposals appended since the last Ready
  std::vector<Message> msgs_now_, msgs_;
  std::vector<ReadState> read_states_;
  std::vector<uint64_t> rounds_confirmed_;
  HardState persisted_hard_;
};

}  // namespace lockd::raft
