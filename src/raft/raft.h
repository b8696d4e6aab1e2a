// Raft: the consensus core. A pure, deterministic state machine in the style of etcd's raft: no
// threads, sockets, clocks or disk. The runtime (or the simulator) feeds it Tick(), peer messages
// and proposals, takes a Ready — what to persist, what to send, what is committed, which reads and
// heartbeat rounds are confirmed — and reports back with Advance().
//
// The contract, per Ready, in this order:
//   1. send `messages_now` (a leader's appends and heartbeats: they need nothing persisted);
//   2. persist `hard_state` and `entries` durably (one synced batch; `must_sync` says whether a
//      sync is needed at all);
//   3. send `messages` (votes and acknowledgements: they promise what step 2 made durable);
//   4. apply `committed`, answer `read_states`, fail `dropped_reads` (retryable), give
//      `rounds_confirmed` to the leader lease;
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
// `lease_time_branch_ended` turns true once this leader sent TimeoutNow (for the rest of its term).
//
// The implementation is split by responsibility: raft.cc (roles, time, elections, message
// dispatch), replication.cc (appends, progress, commit, proposals), read_index.cc (heartbeat
// rounds, ReadIndex, leadership transfer), ready.cc (Ready/Advance and the invariants).
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "raft/log_storage.h"
#include "raft/message.h"
#include "raft/progress.h"
#include "raft/quorum.h"
#include "raft/raft_log.h"

namespace lockd::raft {

/// Test-only switches, each breaking one rule, so the simulator can show it catches the bug (in
/// the manner of CockroachDB's TestingKnobs). All false in production.
struct TestingKnobs {
  bool count_old_term_entries_for_commit = false;
  bool skip_vote_persist = false;
  bool grant_votes_to_shorter_logs = false;
  bool skip_log_matching_check = false;
  bool read_index_before_term_commit = false;
  bool keep_time_lease_after_timeout_now = false;
  bool no_vote_refusal_after_restart = false;
  bool credit_ack_to_newest_round = false;
  bool any() const {
    return count_old_term_entries_for_commit || skip_vote_persist || grant_votes_to_shorter_logs ||
           skip_log_matching_check || read_index_before_term_commit ||
           keep_time_lease_after_timeout_now || no_vote_refusal_after_restart ||
           credit_ack_to_newest_round;
  }
};

struct Config {
  NodeId id;
  /// Voters when the storage has no membership yet (bootstrap).
  std::vector<NodeId> peers;
  /// The index the application has already applied (its snapshot's index after a restart);
  /// committed entries are handed out from the one after it. 0: from the storage's first index.
  LogIndex applied;
  int election_tick = 10;  ///< E_min in ticks; timeouts are random in [E_min, 2·E_min)
  int heartbeat_tick = 1;
  uint64_t max_msg_bytes = 1 << 20;  ///< entries per append (at least one is always sent)
  size_t max_inflight = 256;         ///< appends in flight per follower in replicate state
  uint64_t max_uncommitted_bytes = 64 << 20;
  uint64_t max_apply_bytes = 64 << 20;  ///< committed entries per Ready (at least one)
  /// Heartbeat rounds kept waiting for acknowledgements; older ones are forgotten (a read that
  /// waited on one is then confirmed by a newer round).
  size_t max_pending_rounds = 64;
  bool pre_vote = true;
  bool check_quorum = true;
  uint64_t seed = 1;  ///< for the randomized election timeout
  TestingKnobs knobs;
};

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role r);

/// A read confirmed by a quorum: serve it once the applied index reaches `index`.
struct ReadState {
  LogIndex index;
  uint64_t ctx = 0;
  bool operator==(const ReadState&) const = default;
};

/// A batch of work for the runtime; see the contract at the top of this file.
struct Ready {
  std::optional<HardState> hard_state;  ///< set when it changed since the last Ready
  std::vector<Entry> entries;           ///< to append (may replace a conflicting suffix)
  bool must_sync = false;               ///< term, vote or entries changed: the write must sync
  std::vector<Message> messages_now;    ///< send before persisting
  std::vector<Message> messages;        ///< send only after persisting
  std::vector<Entry> committed;         ///< to apply, in order
  std::vector<ReadState> read_states;
  std::vector<uint64_t> dropped_reads;  ///< ctx of reads lost with leadership (retry elsewhere)
  std::vector<uint64_t> rounds_confirmed;
  bool lease_time_branch_ended = false;
  // Soft state: not persisted.
  Role role = Role::kFollower;
  NodeId leader;
  Term term;
};

/// The consensus core of one node. Owned by the runtime's loop thread (or the simulator); it reads
/// `storage` (which must outlive it) and never writes it. Not thread-safe.
class Raft {
 public:
  Raft(Config config, const LogStorage& storage);

  /// One tick: the runtime delivers one only when T_tick has passed since the last (missed ticks
  /// are dropped), so n ticks span more than (n-1)·T_tick.
  void Tick();
  /// A message from a peer. A message of a newer format is FAILED_PRECONDITION; a malformed one
  /// INVALID_ARGUMENT; either is dropped without changing any state.
  Status Step(const Message& m);
  /// Appends a command on the leader. UNAVAILABLE (retry, possibly elsewhere) when not leader,
  /// during a transfer, or over the uncommitted-bytes cap. Returns the entry's index.
  Result<LogIndex> Propose(std::string data);
  /// A linearizable read: answered by a ReadState once a quorum confirmed leadership after it
  /// and the term's first entry is committed. UNAVAILABLE when not leader.
  Status ReadIndex(uint64_t ctx);
  /// Starts a heartbeat round now: for reads waiting on one (round_wanted()), or a renewal that
  /// needs a round begun after it arrived. UNAVAILABLE when not leader.
  Status RequestRound();
  /// Reads are waiting for a round that has not started yet.
  bool round_wanted() const;
  /// The id of the newest round started (ids grow across terms; 0: none yet).
  uint64_t newest_round() const { return next_round_ - 1; }
  /// Hands leadership to `to` once it has caught up (TimeoutNow). Proposals are refused until the
  /// transfer ends; it is abandoned after an election timeout.
  Status TransferLeadership(NodeId to);

  bool HasReady() const;
  Ready GetReady();
  void Advance(const Ready& rd);

  /// Aborts if the core's own structure is inconsistent (the simulator calls it after each step).
  void CheckInvariants() const;

  NodeId id() const { return id_; }
  Term term() const { return term_; }
  Role role() const { return role_; }
  NodeId leader() const { return leader_; }
  NodeId vote() const { return vote_; }
  const RaftLog& log() const { return log_; }
  const JointConfig& config() const { return config_; }
  /// The leader's view of a peer (nullptr when not leader or unknown peer).
  const Progress* progress(NodeId id) const;
  NodeId transfer_target() const { return transfer_target_; }
  bool lease_time_branch_ended() const { return lease_time_branch_ended_; }
  /// Whether this node would refuse a (non-transfer) vote now.
  bool refusing_votes() const { return InLease(); }
  /// Whether the leader has committed an entry of its own term.
  bool committed_current_term() const;
  uint64_t uncommitted_bytes() const { return uncommitted_bytes_; }

 private:
  // raft.cc: roles, time, elections.
  void BecomeFollower(Term term, NodeId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Campaign(bool pre, bool transfer);
  void Reset(Term term);
  void ResetRandomizedTimeout();
  void TickLeader();
  void StepFollower(const Message& m);
  void StepCandidate(const Message& m);
  void StepLeader(const Message& m);
  void HandleVoteRequest(const Message& m);
  bool InLease() const;
  bool Voter(NodeId id) const { return config_.contains(id); }
  void Send(Message m);

  // replication.cc: appends, progress, commit.
  void HandleAppend(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleAppendResponse(const Message& m);
  void SendAppend(NodeId to, bool allow_empty = true);
  void BroadcastAppend();
  bool MaybeCommit();
  void AppendEntries(std::vector<Entry> entries);

  // read_index.cc: rounds, reads, transfer.
  void StartRound();
  void ConfirmRound(uint64_t round);
  void HandleHeartbeatResponse(const Message& m);
  void ReleasePendingReads();
  void OnFirstCommitOfTerm();
  void MaybeSendTimeoutNow(NodeId to);

  const NodeId id_;
  Config cfg_;
  RaftLog log_;
  Term term_;
  NodeId vote_;
  NodeId leader_;
  Role role_ = Role::kFollower;
  JointConfig config_;
  std::map<NodeId, Progress> progress_;  ///< leader only; includes itself
  std::map<NodeId, bool> votes_;         ///< (pre-)candidate only

  int election_elapsed_ = 0;  ///< ticks towards this node's own election timeout
  int since_leader_ = 0;      ///< ticks since it heard a leader, stopped leading, or started
  int heartbeat_elapsed_ = 0;
  int randomized_timeout_ = 0;
  std::mt19937_64 rng_;

  NodeId transfer_target_;
  int transfer_elapsed_ = 0;
  bool lease_time_branch_ended_ = false;  ///< this term: TimeoutNow was sent
  uint64_t uncommitted_bytes_ = 0;
  std::deque<std::pair<LogIndex, uint64_t>> uncommitted_;  ///< (index, bytes), this term's

  // Heartbeat rounds and the reads waiting on them.
  uint64_t next_round_ = 1;
  std::map<uint64_t, std::set<NodeId>> round_acks_;  ///< rounds not yet confirmed, by id
  uint64_t confirmed_round_ = 0;                     ///< newest confirmed this term
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
  std::vector<uint64_t> dropped_reads_;
  std::vector<uint64_t> rounds_confirmed_;
  HardState persisted_hard_;
};

}  // namespace lockd::raft
