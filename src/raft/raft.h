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
// `lease_time_branch_ended` turns true once this leader sent TimeoutNow (for the rest of its term).
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
  int election_tick = 10;  ///< E_min in ticks; timeouts are random in [E_min, 2·E_min)
  int heartbeat_tick = 1;
  uint64_t max_msg_bytes = 1 << 20;
  size_t max_inflight = 256;
  uint64_t max_uncommitted_bytes = 64 << 20;
  bool pre_vote = true;
  bool check_quorum = true;
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
  /// The id of the newest round started (0: none this term).
  uint64_t newest_round() const { return next_round_ - 1; }
  /// Hands leadership to `to` once it has caught up (TimeoutNow).
  Status TransferLeadership(NodeId to);

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
  void HandleVoteRequest(const Message& m);
  void HandleAppend(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleAppendResponse(const Message& m);
  void HandleHeartbeatResponse(const Message& m);

  void Send(Message m);
  void SendAppend(NodeId to, bool allow_empty = true);
  void BroadcastAppend();
  void StartRound();
  bool MaybeCommit();
  void AppendEntries(std::vector<Entry> entries);
  void ReleasePendingReads();
  bool InLease() const;
  bool Voter(NodeId id) const { return config_.contains(id); }

  const NodeId id_;
  Config cfg_;
  RaftLog log_;
  Term term_;
  NodeId vote_;
  NodeId leader_;
  Role role_ = Role::kFollower;
  JointConfig config_;
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
