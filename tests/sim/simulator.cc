#include "simulator.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "raft/conf_change.h"
#include "raft/memory_storage.h"
#include "server/leader_lease.h"

namespace lockd::sim {
namespace {

using raft::ConfState;
using raft::Entry;
using raft::LogIndex;
using raft::Message;
using raft::NodeId;
using raft::Role;
using raft::Term;

constexpr int64_t kMs = 1000;         // the simulator's time unit is the microsecond
constexpr int64_t kTick = 100 * kMs;  // T_tick
/// A leader deferring commit-only appends sends them this long after the commit went unsent
/// (server::Replica's commit_flush_delay).
constexpr int64_t kCommitFlush = 2 * kMs;
constexpr int kElectionTicks = 10;  // E_min = 1 s
constexpr double kDrift = 0.01;     // ρ

struct Node {
  NodeId id;
  std::unique_ptr<raft::MemoryLogStorage> storage;  // what survives a crash
  std::unique_ptr<raft::Raft> raft;
  double rate = 1.0;  // local clock = offset + rate · global
  int64_t offset = 0;
  int64_t last_tick_local = 0;
  int64_t started_local = 0;
  bool up = true;
  int64_t restart_at = 0;
  int64_t stalled_until = 0;
  int64_t commit_flush_local = -1;  // when the runtime sends the unsent commit (-1: not armed)
  server::LeaderLease lease{server::LeaseTiming{std::chrono::milliseconds(kElectionTicks * 100),
                                                std::chrono::milliseconds(100), kDrift}};
  uint64_t lease_term = 0;
  uint64_t seen_round = 0;
  uint64_t led_term = 0;  // the term in which it last became leader (leader completeness check)
  bool applied_own_term = false;
  std::vector<Entry> applied;
  LogIndex commit_seen;
  raft::HardState durable;
  std::map<uint64_t, std::string> proposals;  // index -> data, proposed while leader
  uint64_t incarnation = 0;                   // bumped at every start: a crash ends streams
  // The durable snapshot file: the state machine (the applied entries) at storage->Snapshot().
  std::shared_ptr<const std::vector<Entry>> snap_file;
  // Payloads of kSnapshot messages received in full, by index, until the core takes or drops one.
  std::map<uint64_t, std::shared_ptr<const std::vector<Entry>>> received;
  uint64_t conf_index_seen = 0;  // the core's conf_index(), never backwards within an incarnation
  ConfState peers;               // the runtime's membership: from the start, then Ready::conf_state
};

using Payload = std::shared_ptr<const std::vector<Entry>>;

/// A snapshot on its way from a leader's runtime to a follower's, chunk by chunk, then the report
/// back to the sender's core.
struct Transfer {
  uint64_t id = 0;
  NodeId from, to;
  uint64_t from_inc = 0, to_inc = 0;  // the incarnations the stream belongs to
  Message m;
  Payload payload;
  int chunks_left = 0;
  bool report = false;  // a report to the sender (ok), not a chunk
  bool ok = false;
};

/// Whether b may follow a in force: a simple change moves at most one voter, a joint
/// configuration is entered from exactly its outgoing voters and left to exactly its incoming
/// ones. Any two configurations one such step apart have intersecting quorums.
bool AllowedStep(const ConfState& a, const ConfState& b) {
  const bool ja = raft::IsJoint(a), jb = raft::IsJoint(b);
  if (!ja && !jb) return raft::VoterDelta(a, b) <= 1;
  if (!ja && jb) return b.voters_outgoing == a.voters;
  if (ja && !jb) return b.voters == a.voters;
  return false;
}

/// Whether every quorum of `a` meets every quorum of `b` (a quorum of a joint configuration is a
/// majority of each half), checked by brute force over their voters: for each set S that is a
/// quorum of a, the nodes outside S must not be a quorum of b. Independent of AllowedStep, so it
/// checks that rule as well as the configurations.
bool QuorumsMeet(const ConfState& a, const ConfState& b) {
  std::set<NodeId> all;
  for (const auto* list : {&a.voters, &a.voters_outgoing, &b.voters, &b.voters_outgoing}) {
    all.insert(list->begin(), list->end());
  }
  const std::vector<NodeId> u(all.begin(), all.end());
  LOCKD_CHECK(u.size() < 20);
  auto quorum = [&](const ConfState& c, uint32_t mask) {
    auto majority = [&](const std::vector<NodeId>& voters) {
      if (voters.empty()) return true;
      size_t in = 0;
      for (NodeId v : voters) {
        const size_t bit = std::lower_bound(u.begin(), u.end(), v) - u.begin();
        in += (mask >> bit) & 1;
      }
      return 2 * in > voters.size();
    };
    return majority(c.voters) && majority(c.voters_outgoing);
  };
  const uint32_t full = (uint32_t{1} << u.size()) - 1;
  for (uint32_t s = 0; s <= full; ++s) {
    if (quorum(a, s) && quorum(b, full & ~s)) return false;
  }
  return true;
}

struct Read {
  NodeId node;
  uint64_t min_index;  // every write acknowledged before the read began is at or below this
};

struct Renewal {
  NodeId node;
  uint64_t term;
  int64_t received_global;
  BootTime received_local;
};

class Sim {
 public:
  explicit Sim(const SimOptions& o) : o_(o), rng_(o.seed) {
    for (int i = 1; i <= o.nodes; ++i) initial_.push_back(NodeId(i));
    ConfState initial;
    initial.voters = initial_;
    conf_hist_[0] = initial;
    for (NodeId id : initial_) Create(id);
  }

  SimResult Run() {
    for (step_ = 1; step_ <= static_cast<uint64_t>(o_.safety_steps) && failure_.empty(); ++step_) {
      now_ += static_cast<int64_t>(rng_() % (20 * kMs));
      Act();
      Advance();
      Check();
      Trace();
    }
    if (failure_.empty()) Liveness();
    SimResult r;
    r.failure = failure_;
    r.trace_hash = hash_;
    r.steps = step_;
    r.committed = history_.size();
    r.acked = acked_;
    r.reads = reads_done_;
    r.renewals = renewals_done_;
    r.snapshots = snapshots_;
    r.installs = installs_;
    r.commit_flushes = commit_flushes_;
    r.transfers_failed = transfers_failed_;
    r.conf_changes = conf_hist_.size() - 1;
    if (o_.trace)
      std::printf("appends whose previous entry existed with another term: %llu\n",
                  (unsigned long long)mismatched_appends_);
    return r;
  }

 private:
  // --- nodes ---------------------------------------------------------------------------------

  raft::Config ConfigFor(NodeId id) {
    raft::Config c;
    c.id = id;
    // A node added later starts with no membership: it learns it from the log or a snapshot.
    if (id.value() <= static_cast<uint64_t>(o_.nodes)) c.peers = initial_;
    c.max_promotion_lag = 64;
    c.election_tick = kElectionTicks;
    c.heartbeat_tick = 1;
    c.max_inflight = 8;
    c.max_msg_bytes = 512;  // small, so catching up takes several appends
    c.seed = o_.seed * 131 + id.value() * 7 + restarts_;
    c.knobs = o_.knobs;
    // Without CheckQuorum a cut-off leader keeps accepting proposals for as long as the partition
    // lasts, which grows long divergent logs (the aggressive mode wants them).
    c.check_quorum = !(o_.aggressive && o_.seed % 2 == 0);
    // Half the default runs defer commit-only appends as lockd does (the runtime's flush is in
    // Advance); the hunts for planted bugs keep the sequences their seeds were chosen with.
    c.defer_commit_only_appends = !o_.aggressive && !o_.knobs.any() && o_.seed % 2 == 1;
    return c;
  }

  void Create(NodeId id) {
    auto n = std::make_unique<Node>();
    n->id = id;
    n->storage = std::make_unique<raft::MemoryLogStorage>();
    n->rate = 1.0 + kDrift * (static_cast<double>(rng_() % 2001) / 1000.0 - 1.0);
    n->offset = static_cast<int64_t>(rng_() % (1000 * kMs));
    nodes_[id] = std::move(n);
    ids_.push_back(id);
    Start(*nodes_[id]);
  }

  void Start(Node& n) {
    n.raft = std::make_unique<raft::Raft>(ConfigFor(n.id), *n.storage);
    n.up = true;
    n.commit_flush_local = -1;
    ++n.incarnation;
    n.received.clear();
    // The state machine comes back from the durable snapshot file; the core replays the rest.
    const uint64_t snap = n.storage->Snapshot().index.value();
    if (snap != (n.snap_file ? n.snap_file->size() : 0)) {
      Fail("node " + std::to_string(n.id.value()) + " has a snapshot file that does not match " +
           "its log's snapshot at " + std::to_string(snap));
    }
    n.applied = n.snap_file ? *n.snap_file : std::vector<Entry>();
    n.conf_index_seen = 0;
    n.peers = n.raft->conf_state();
    CheckConf(n);
    n.commit_seen = n.raft->log().committed();
    n.lease.StepDown();
    n.lease_term = 0;
    n.seen_round = 0;
    n.applied_own_term = false;
    n.proposals.clear();
    n.last_tick_local = Local(n);
    n.started_local = Local(n);
  }

  int64_t Local(const Node& n) const { return n.offset + static_cast<int64_t>(n.rate * now_); }
  BootTime LocalBoot(const Node& n) const { return BootTime{Local(n) * 1000}; }
  bool Running(const Node& n) const { return n.up && n.stalled_until <= now_; }

  /// Calls `f` on the node's core, then stamps any round it started and processes its Readies.
  template <typename F>
  void Call(Node& n, F f) {
    const BootTime before = LocalBoot(n);
    f(*n.raft);
    if (!n.raft) return;
    CheckCommit(n);
    SyncLease(n);
    for (uint64_t r = n.seen_round + 1; r <= n.raft->newest_round(); ++r)
      n.lease.RoundStarted(r, before);
    n.seen_round = std::max(n.seen_round, n.raft->newest_round());
    Pump(n);
  }

  void SyncLease(Node& n) {
    raft::Raft& r = *n.raft;
    term_start_.emplace(r.term().value(), now_);
    if (r.role() == Role::kLeader && n.lease_term != r.term().value()) {
      n.lease.BecomeLeader(r.term().value());
      n.lease_term = r.term().value();
      n.seen_round = r.newest_round();  // rounds of an earlier term are not this lease's
      n.applied_own_term = false;
    } else if (r.role() != Role::kLeader && n.lease_term != 0) {
      n.lease.StepDown();
      n.lease_term = 0;
    }
    if (r.role() == Role::kLeader && r.lease_time_branch_ended()) n.lease.EndTimeBranch();
    if (r.role() == Role::kLeader && n.led_term != r.term().value()) {
      n.led_term = r.term().value();
      CheckLeaderCompleteness(n);
      // Elected by a majority of each half of its configuration (the votes it was granted).
      const auto& grants = vote_grants_[{n.id, r.term().value()}];
      if (!r.config().Majority([&](NodeId p) { return p == n.id || grants.count(p) > 0; })) {
        Fail("election quorum: node " + std::to_string(n.id.value()) + " leads term " +
             std::to_string(r.term().value()) + " without votes from a majority of each half of " +
             raft::ToString(r.conf_state()));
      }
    }
  }

  void Pump(Node& n) {
    for (int guard = 0; n.up && n.raft->HasReady() && guard < 1000; ++guard) {
      raft::Ready rd = n.raft->GetReady();
      // Ready::conf_state reports every change of the membership in force, and only those.
      if (rd.conf_state) n.peers = *rd.conf_state;
      if (n.peers != n.raft->conf_state()) {
        Fail("node " + std::to_string(n.id.value()) + ": the membership in force changed to " +
             raft::ToString(n.raft->conf_state()) + " but no Ready carried it");
      }
      for (auto& m : rd.messages_now) Send(std::move(m));
      if (rd.snapshot && !Install(n, *rd.snapshot)) return;
      // A crash in the middle of the write: a prefix of the entries reaches the disk, nothing is
      // sent that depends on it.
      if (faults_ && !rd.entries.empty() && rng_() % 400 == 0) {
        std::vector<Entry> prefix(
            rd.entries.begin(),
            rd.entries.begin() + static_cast<ptrdiff_t>(rng_() % rd.entries.size()));
        n.storage->Append(prefix);
        Crash(n, "torn write");
        return;
      }
      n.storage->Append(rd.entries);
      if (rd.hard_state) {
        n.storage->SetHardState(*rd.hard_state);
        CheckDurable(n, *rd.hard_state);
      }
      for (auto& m : rd.messages) Send(std::move(m));
      for (const auto& e : rd.committed) Apply(n, e);
      for (const auto& rs : rd.read_states) CheckRead(rs);
      for (uint64_t round : rd.rounds_confirmed) {
        // Credited to its own round: a majority of voters echoed this round's id.
        auto acks = round_acks_[{n.id, rd.term.value(), round}];
        acks.insert(n.id);
        if (!n.raft->config().Majority([&](NodeId p) { return acks.count(p) > 0; })) {
          Fail("node " + std::to_string(n.id.value()) + " confirmed round " +
               std::to_string(round) + " of term " + std::to_string(rd.term.value()) + " with " +
               std::to_string(acks.size()) + " acknowledgements of it");
        }
        n.lease.RoundConfirmed(round);
      }
      n.raft->Advance(rd);
      CheckCommit(n);
      SyncLease(n);
      CheckConf(n);
      if (!o_.knobs.any()) n.raft->CheckInvariants();
    }
  }

  void Crash(Node& n, const char* why) {
    n.up = false;
    // Often back quickly (a process restart), sometimes after a while (a reboot).
    n.restart_at =
        now_ + static_cast<int64_t>(rng_() % 2 ? 20 + rng_() % 300 : 300 + rng_() % 3000) * kMs;
    n.raft.reset();
    n.received.clear();
    ++restarts_;
    Log(std::string("crash ") + std::to_string(n.id.value()) + " (" + why + ")");
    // Its connections reset: every running peer hears that its stream to it broke (the runtime's
    // failover hint, Raft::PeerUnreachable; it only changes an election timeout, so no Ready).
    for (NodeId id : ids_) {
      Node& m = *nodes_.at(id);
      if (id != n.id && m.up && m.raft) m.raft->PeerUnreachable(n.id);
    }
  }

  // --- network -------------------------------------------------------------------------------

  void Send(Message m) {
    // Term and vote are durable before any vote, or request for one, leaves the node.
    const raft::HardState durable = nodes_.at(m.from)->storage->Initial().hard;
    if (m.type == raft::MessageType::kVote && (durable.term != m.term || durable.vote != m.from)) {
      Fail("node " + std::to_string(m.from.value()) + " asked for votes in term " +
           std::to_string(m.term.value()) + " before its term and vote were durable");
    }
    const bool grant =
        (m.type == raft::MessageType::kVoteResp || m.type == raft::MessageType::kPreVoteResp) &&
        !m.reject;
    if (grant && !transfer_votes_.count({m.from, m.to, m.term.value()})) {
      const Node& voter = *nodes_.at(m.from);
      if (Local(voter) - voter.started_local < kElectionTicks * kTick) {
        Fail("node " + std::to_string(m.from.value()) + " granted a vote " +
             std::to_string((Local(voter) - voter.started_local) / kMs) +
             " ms after it started (E_min is " + std::to_string(kElectionTicks * kTick / kMs) +
             " ms)");
      }
    }
    if (m.type == raft::MessageType::kVoteResp && !m.reject &&
        (durable.term != m.term || durable.vote != m.to)) {
      Fail("node " + std::to_string(m.from.value()) + " granted a vote in term " +
           std::to_string(m.term.value()) + " before the vote was durable");
    }
    if (m.type == raft::MessageType::kVoteResp && !m.reject)
      vote_grants_[{m.to, m.term.value()}].insert(m.from);
    if (m.type == raft::MessageType::kVote || m.type == raft::MessageType::kPreVote) {
      // A node that is not a voter (removed, a learner, not yet added) never campaigns.
      const raft::Raft& r = *nodes_.at(m.from)->raft;
      if (!raft::IsVoter(r.conf_state(), m.from)) {
        Fail("node " + std::to_string(m.from.value()) + " campaigned in term " +
             std::to_string(m.term.value()) + " while not a voter of " +
             raft::ToString(r.conf_state()));
      }
    }
    if (m.type == raft::MessageType::kSnapshot) return StartTransfer(std::move(m));
    if (m.type == raft::MessageType::kTimeoutNow)
      timeout_now_sent_.insert({m.from, m.term.value()});
    if (m.type == raft::MessageType::kAppResp) app_resp_[m.from] = m;  // for the log-matching check
    if (faults_ && rng_() % 100 < 3) return;                           // dropped
    int64_t delay = static_cast<int64_t>(1 + rng_() % 10) * kMs;
    if (faults_ && rng_() % 50 == 0)
      delay += static_cast<int64_t>(rng_() % 500) * kMs;  // reordered
    // A TimeoutNow that arrives late: often after the leader abandoned the transfer (one election
    // timeout), sometimes after other leaders came and went.
    if (faults_ && m.type == raft::MessageType::kTimeoutNow && rng_() % 3 == 0) {
      delay += static_cast<int64_t>(500 + rng_() % 2500) * kMs;
    }
    const bool dup = faults_ && rng_() % 100 < 2;
    if (dup)
      net_.emplace(
          std::make_pair(now_ + delay + static_cast<int64_t>(rng_() % 30) * kMs, ++msg_seq_), m);
    net_.emplace(std::make_pair(now_ + delay, ++msg_seq_), std::move(m));
  }

  void Deliver() {
    while (!net_.empty() && net_.begin()->first.first <= now_ && failure_.empty()) {
      Message m = std::move(net_.begin()->second);
      net_.erase(net_.begin());
      auto dest = nodes_.find(m.to);
      if (dest == nodes_.end()) continue;  // no such node (yet): the network delivers nothing
      Node& to = *dest->second;
      if (!to.up || blocked_.count({m.from, m.to})) continue;
      if (to.stalled_until > now_) {  // it reads its socket after the stall
        net_.emplace(
            std::make_pair(to.stalled_until + static_cast<int64_t>(rng_() % kMs), ++msg_seq_),
            std::move(m));
        continue;
      }
      if (m.type == raft::MessageType::kVote && m.transfer)
        transfer_votes_.insert({m.to, m.from, m.term.value()});
      if (m.type == raft::MessageType::kHeartbeatResp && to.raft->role() == Role::kLeader &&
          m.term == to.raft->term()) {
        round_acks_[{to.id, m.term.value(), m.round}].insert(m.from);
      }
      // Log matching: a follower accepts an append only if it has the entry before the new ones.
      const bool prev_matches = m.type != raft::MessageType::kApp ||
                                m.index < to.raft->log().committed() ||
                                to.raft->log().MatchTerm(m.index, m.log_term);
      if (!prev_matches && m.index <= to.raft->log().last_index()) ++mismatched_appends_;
      app_resp_.erase(to.id);
      Call(to, [&](raft::Raft& r) { (void)r.Step(m); });
      auto resp = app_resp_.find(to.id);
      if (!prev_matches && resp != app_resp_.end() && !resp->second.reject &&
          resp->second.index >= m.index) {
        Fail("log matching: node " + std::to_string(to.id.value()) +
             " accepted an append after index " + std::to_string(m.index.value()) +
             " although its entry there is not of term " + std::to_string(m.log_term.value()));
      }
    }
  }

  // --- snapshot transfers ----------------------------------------------------------------------

  /// The runtime streams the leader's durable snapshot file beside the kSnapshot message. One
  /// stream per follower: a newer one replaces an older one, which then reports nothing.
  void StartTransfer(Message m) {
    Node& from = *nodes_.at(m.from);
    if (!from.snap_file || from.snap_file->size() != m.snapshot.index.value() ||
        from.storage->Snapshot() != m.snapshot) {
      Fail("node " + std::to_string(m.from.value()) + " sent a snapshot at " +
           std::to_string(m.snapshot.index.value()) + " that is not its durable snapshot");
      return;
    }
    Transfer t;
    t.id = ++xfer_seq_;
    t.from = m.from;
    t.to = m.to;
    t.from_inc = from.incarnation;
    auto dest = nodes_.find(m.to);
    t.to_inc = dest == nodes_.end() ? 0 : dest->second->incarnation;
    t.payload = from.snap_file;
    t.chunks_left = 1 + static_cast<int>(std::min<size_t>(15, t.payload->size() / 32));
    t.m = std::move(m);
    active_xfer_[{t.from, t.to}] = t.id;
    Log("snapshot " + std::to_string(t.m.snapshot.index.value()) + " " +
        std::to_string(t.from.value()) + "->" + std::to_string(t.to.value()) + " in " +
        std::to_string(t.chunks_left) + " chunks");
    xfers_.emplace(std::make_pair(now_ + static_cast<int64_t>(1 + rng_() % 10) * kMs, ++msg_seq_),
                   std::move(t));
  }

  void Reschedule(Transfer t, int64_t at) {
    xfers_.emplace(std::make_pair(at, ++msg_seq_), std::move(t));
  }

  void FailTransfer(Transfer t, const char* why) {
    Log("snapshot transfer " + std::to_string(t.from.value()) + "->" +
        std::to_string(t.to.value()) + " failed: " + why);
    t.report = true;
    t.ok = false;
    // The sender's stream times out (or sees the error) a while later.
    Reschedule(std::move(t), now_ + static_cast<int64_t>(50 + rng_() % 950) * kMs);
  }

  void Transfers() {
    while (!xfers_.empty() && xfers_.begin()->first.first <= now_ && failure_.empty()) {
      Transfer t = std::move(xfers_.begin()->second);
      xfers_.erase(xfers_.begin());
      auto act = active_xfer_.find({t.from, t.to});
      if (act == active_xfer_.end() || act->second != t.id) continue;  // superseded
      Node& from = *nodes_.at(t.from);
      if (!from.up || from.incarnation != t.from_inc) {  // the stream died with the sender
        active_xfer_.erase(act);
        continue;
      }
      if (from.stalled_until > now_) {
        Reschedule(std::move(t), from.stalled_until + static_cast<int64_t>(rng_() % kMs));
        continue;
      }
      if (t.report) {
        active_xfer_.erase(act);
        if (!t.ok) ++transfers_failed_;
        Log("report snapshot " + std::to_string(t.to.value()) + (t.ok ? " ok" : " failed") +
            " at " + std::to_string(t.from.value()));
        Call(from, [&](raft::Raft& r) { r.ReportSnapshot(t.to, t.ok); });
        continue;
      }
      auto dest = nodes_.find(t.to);
      // Either side may crash in the middle of the stream.
      const uint64_t crash = faults_ ? rng_() % 100 : 100;
      if (crash == 0) {
        Crash(from, "while sending a snapshot");
        active_xfer_.erase(act);
        continue;
      }
      if (crash == 1 && dest != nodes_.end() && dest->second->up)
        Crash(*dest->second, "while receiving a snapshot");
      if (dest == nodes_.end() || !dest->second->up || dest->second->incarnation != t.to_inc) {
        FailTransfer(std::move(t), "the receiver crashed");
        continue;
      }
      Node& to = *dest->second;
      if (blocked_.count({t.from, t.to})) {
        FailTransfer(std::move(t), "partitioned");
        continue;
      }
      if (faults_ && rng_() % 100 < 3) {
        FailTransfer(std::move(t), "connection reset");
        continue;
      }
      if (to.stalled_until > now_) {
        Reschedule(std::move(t), to.stalled_until + static_cast<int64_t>(rng_() % kMs));
        continue;
      }
      if (--t.chunks_left > 0) {
        int64_t delay = static_cast<int64_t>(5 + rng_() % 30) * kMs;
        if (faults_ && rng_() % 20 == 0) delay += static_cast<int64_t>(rng_() % 500) * kMs;
        Reschedule(std::move(t), now_ + delay);
        continue;
      }
      // The whole payload arrived (and was checked): the follower's runtime Steps the message and
      // installs Ready::snapshot from the payload if the core takes it.
      to.received[t.m.snapshot.index.value()] = t.payload;
      Call(to, [&](raft::Raft& r) { (void)r.Step(t.m); });
      to.received.clear();
      if (faults_ && rng_() % 100 < 3) {
        FailTransfer(std::move(t), "the receipt was lost");
        continue;
      }
      t.report = true;
      t.ok = true;
      Reschedule(std::move(t), now_ + static_cast<int64_t>(1 + rng_() % 10) * kMs);
    }
  }

  /// Step 2 of a Ready carrying a snapshot: save the payload as the snapshot file, restore the
  /// state machine from it, replace the log. A crash may come before or after. False if crashed.
  bool Install(Node& n, const raft::SnapshotMeta& meta) {
    auto it = n.received.find(meta.index.value());
    if (it == n.received.end()) {
      Fail("node " + std::to_string(n.id.value()) + " was asked to install a snapshot at " +
           std::to_string(meta.index.value()) + " it did not receive");
      return false;
    }
    const Payload payload = it->second;
    if (payload->size() != meta.index.value()) {
      Fail("snapshot payload size does not match its index");
      return false;
    }
    if (faults_ && rng_() % 25 == 0) {
      Crash(n, "before the snapshot install");  // the old file and log stay
      return false;
    }
    n.storage->ResetToSnapshot(meta);
    n.snap_file = payload;
    n.applied = *payload;
    n.durable.commit = std::max(n.durable.commit, meta.index);
    for (auto p = n.proposals.begin(); p != n.proposals.end() && p->first <= meta.index.value();)
      p = n.proposals.erase(p);
    ++installs_;
    Log("install snapshot " + std::to_string(meta.index.value()) + " at " +
        std::to_string(n.id.value()));
    // The restored state machine is the committed history's prefix.
    for (size_t k = 0; k < payload->size(); ++k) {
      const Entry& e = (*payload)[k];
      if (k >= history_.size() || e.index.value() != k + 1 || history_[k].term != e.term ||
          history_[k].data != e.data) {
        Fail("node " + std::to_string(n.id.value()) + " installed a snapshot at " +
             std::to_string(meta.index.value()) + " whose entry " + std::to_string(k + 1) +
             " is not the committed one");
        return false;
      }
    }
    if (ConfAt(meta.index.value()) != meta.conf) {
      Fail("snapshot at " + std::to_string(meta.index.value()) + " carries membership " +
           raft::ToString(meta.conf) + ", the log has " +
           raft::ToString(ConfAt(meta.index.value())) + " there");
    }
    if (faults_ && rng_() % 25 == 0) {
      Crash(n, "after the snapshot install");  // before the hard state and entries
      return false;
    }
    return true;
  }

  /// The runtime snapshots the state machine at a random applied index: the file is saved
  /// (durable), then the log compacted. A crash in between leaves the log uncompacted, and the
  /// restart uses the snapshot the log names (the orphan file is dropped).
  void TakeSnapshot(Node& n) {
    const LogIndex first = n.storage->Snapshot().index;
    const LogIndex applied = n.raft->log().applied();
    if (applied <= first) return;
    const LogIndex at = first + (1 + rng_() % (applied - first));
    auto meta = n.raft->SnapshotMetaAt(at);
    // A node added later knows no membership before its first membership entry.
    if (!meta.ok() && meta.status().code() == StatusCode::kFailedPrecondition &&
        n.id.value() > static_cast<uint64_t>(o_.nodes) && conf_hist_.size() > 1 &&
        at.value() < std::next(conf_hist_.begin())->first) {
      return;
    }
    if (!meta.ok()) {
      Fail("SnapshotMetaAt(" + std::to_string(at.value()) + ") on node " +
           std::to_string(n.id.value()) + ": " + meta.status().ToString());
      return;
    }
    if (n.applied.size() != applied.value()) {
      Fail("node " + std::to_string(n.id.value()) + " applied " + std::to_string(n.applied.size()) +
           " entries, its core says " + std::to_string(applied.value()));
      return;
    }
    if (meta->conf != ConfAt(at.value())) {
      Fail("SnapshotMetaAt(" + std::to_string(at.value()) + ") gives membership " +
           raft::ToString(meta->conf) + ", the log has " + raft::ToString(ConfAt(at.value())));
      return;
    }
    auto payload = std::make_shared<const std::vector<Entry>>(
        n.applied.begin(), n.applied.begin() + static_cast<ptrdiff_t>(at.value()));
    if (rng_() % 20 == 0) {
      Crash(n, "between the snapshot save and the compaction");
      return;
    }
    if (Status st = n.storage->Compact(*meta); !st.ok()) {
      Fail("compaction at " + std::to_string(at.value()) + " on node " +
           std::to_string(n.id.value()) + ": " + st.ToString());
      return;
    }
    n.snap_file = std::move(payload);
    ++snapshots_;
    Log("snapshot at " + std::to_string(n.id.value()) + " up to " + std::to_string(at.value()));
  }

  // --- the workload and the faults ------------------------------------------------------------

  /// The newest leader (for the liveness phase).
  Node* Leader() {
    Node* best = nullptr;
    for (auto& [_, n] : nodes_) {
      if (Running(*n) && n->raft->role() == Role::kLeader &&
          (!best || n->raft->term() > best->raft->term())) {
        best = n.get();
      }
    }
    return best;
  }

  /// A node that believes it leads, chosen at random: clients do not know which leader is the
  /// newest, so deposed leaders that have not noticed yet get requests too.
  Node* SomeLeader() {
    std::vector<Node*> leaders;
    for (auto& [_, n] : nodes_) {
      if (Running(*n) && n->raft->role() == Role::kLeader) leaders.push_back(n.get());
    }
    if (leaders.empty()) return nullptr;
    if (o_.aggressive && rng_() % 2) {  // clients stuck on the oldest leader they know
      return *std::min_element(leaders.begin(), leaders.end(),
                               [](Node* a, Node* b) { return a->raft->term() < b->raft->term(); });
    }
    return leaders[rng_() % leaders.size()];
  }

  void Act() {
    if (o_.membership && (o_.aggressive || o_.membership_heavy) && faults_) {
      // An operator's tool retries its membership change on a new leader at once.
      Node* newest = Leader();
      if (newest && !newest->applied_own_term) ChangeMembership(/*voters_only=*/true);
    }
    const int roll = static_cast<int>(rng_() % 1000);
    Node* leader = SomeLeader();
    if (roll < 250 && leader) {
      const std::string data = "s" + std::to_string(o_.seed) + "-p" + std::to_string(++proposals_);
      Call(*leader, [&](raft::Raft& r) {
        auto idx = r.Propose(data);
        if (idx.ok()) leader->proposals[idx->value()] = data;
      });
      Log("propose " + data + " at " + std::to_string(leader->id.value()));
    } else if (roll < 330 && leader) {
      const uint64_t ctx = ++read_ctx_;
      reads_[ctx] = Read{leader->id, max_acked_index_};
      Call(*leader, [&](raft::Raft& r) {
        (void)r.ReadIndex(ctx);
        if (r.round_wanted() && rng_() % 2) (void)r.RequestRound();
      });
      Log("read " + std::to_string(ctx) + " at " + std::to_string(leader->id.value()));
    } else if (roll < 450 && leader) {
      Renewal rn{leader->id, leader->raft->term().value(), now_, LocalBoot(*leader)};
      renewals_.push_back(rn);
      if (leader->lease.NeedsRoundAfter(rn.received_local) && rng_() % 2) {
        Call(*leader, [&](raft::Raft& r) { (void)r.RequestRound(); });
      }
    } else if (!faults_) {
      return;
    } else if (roll < 470) {
      Partition();
    } else if (roll < (o_.aggressive ? 474 : 490)) {  // aggressive: partitions last longer
      blocked_.clear();
      Log("heal");
    } else if (roll < (o_.aggressive ? 520 : 497)) {
      NodeId victim = ids_[rng_() % ids_.size()];
      if (nodes_.at(victim)->up) Crash(*nodes_.at(victim), "kill");
    } else if (roll < (o_.aggressive ? 528 : 505)) {
      Node& n = *nodes_.at(ids_[rng_() % ids_.size()]);
      n.stalled_until =
          std::max(n.stalled_until, now_ + static_cast<int64_t>(200 + rng_() % 2800) * kMs);
      Log("stall " + std::to_string(n.id.value()));
    } else if (roll < (o_.aggressive ? 540 : 510) && leader) {
      const NodeId to = ids_[rng_() % ids_.size()];
      if (to != leader->id) Call(*leader, [&](raft::Raft& r) { (void)r.TransferLeadership(to); });
      Log("transfer " + std::to_string(leader->id.value()) + "->" + std::to_string(to.value()));
    } else if (roll >= 560 && roll < 575) {
      // A wrong failover hint: a stream that broke and reconnected, its peer alive.
      Node& n = *nodes_.at(ids_[rng_() % ids_.size()]);
      const NodeId peer = ids_[rng_() % ids_.size()];
      if (n.up && n.raft && peer != n.id) n.raft->PeerUnreachable(peer);
      Log("hint " + std::to_string(n.id.value()) + ": " + std::to_string(peer.value()) +
          " unreachable");
    } else if (roll >= 600 && roll < 630 && o_.snapshots) {
      Node& n = *nodes_.at(ids_[rng_() % ids_.size()]);
      if (Running(n)) TakeSnapshot(n);
    } else if (roll >= 650 &&
               roll < (o_.membership_heavy ? 750
                       : o_.aggressive     ? 700
                                           : 665) &&
               o_.membership) {
      ChangeMembership();
    }
  }

  /// The scenario driver: an operator asks the newest leader for a membership change that keeps
  /// 3 to 5 voters — add a learner (a node is created for a new id), promote a caught-up learner,
  /// remove a voter (a crashed one first), replace a crashed voter by a learner, 3 -> 5 and 5 -> 3
  /// in one joint change, demote a voter, remove a learner — simple or joint, and sometimes hands
  /// leadership over right after. `voters_only`: a change that moves a voter.
  void ChangeMembership(bool voters_only = false) {
    Node* leader = Leader();
    if (!leader) return;
    raft::Raft& r = *leader->raft;
    const ConfState cs = r.conf_state();
    if (raft::IsJoint(cs)) return;
    const std::set<NodeId> members = raft::Members(cs);
    std::vector<NodeId> outsiders, learners = cs.learners, down_voters, other_voters;
    for (int i = 1; i <= o_.max_nodes; ++i) {
      if (!members.count(NodeId(i))) outsiders.push_back(NodeId(i));
    }
    for (NodeId v : cs.voters) {
      auto it = nodes_.find(v);
      if (it != nodes_.end() && !it->second->up) down_voters.push_back(v);
      if (v != leader->id) other_voters.push_back(v);
    }
    auto caught_up = [&](NodeId id) {
      const raft::Progress* p = r.progress(id);
      return p && r.log().last_index() - p->match() <= 8;
    };
    std::vector<NodeId> ready_learners;
    for (NodeId l : learners) {
      if (caught_up(l) || rng_() % 4 == 0) ready_learners.push_back(l);  // sometimes too early
    }
    auto pick = [&](const std::vector<NodeId>& v) { return v[rng_() % v.size()]; };
    using raft::ConfChangeType;
    raft::ConfChange cc;
    cc.force_joint = rng_() % 3 == 0;
    const size_t voters = cs.voters.size();
    int kind = static_cast<int>(rng_() % 9);
    if (kind == 8) kind = voters == 3 && learners.size() >= 2 ? 5 : 0;  // 3 -> 5 at once
    if (voters_only) kind = 2 + static_cast<int>(rng_() % 5);           // a voter changes
    if (kind <= 1 && !outsiders.empty() && learners.size() < 2) {
      cc.changes.push_back({ConfChangeType::kAddLearner, pick(outsiders)});
    } else if (kind == 2 && !ready_learners.empty() && voters < 5) {
      cc.changes.push_back({ConfChangeType::kAddVoter, pick(ready_learners)});
    } else if (kind == 3 && voters > 3) {
      const NodeId v = !down_voters.empty() ? pick(down_voters)
                       : rng_() % 5 == 0    ? leader->id
                                            : pick(other_voters);
      cc.changes.push_back({ConfChangeType::kRemove, v});
    } else if (kind == 4 && !down_voters.empty() && !ready_learners.empty()) {
      cc.changes.push_back({ConfChangeType::kRemove, pick(down_voters)});  // replace a crashed node
      cc.changes.push_back({ConfChangeType::kAddVoter, pick(ready_learners)});
    } else if (kind == 5 && voters == 3 && learners.size() >= 2) {
      std::vector<NodeId> pool = learners;
      std::shuffle(pool.begin(), pool.end(), rng_);
      for (size_t k = 0; k < 2; ++k) cc.changes.push_back({ConfChangeType::kAddVoter, pool[k]});
    } else if (kind == 5 && voters == 5) {
      std::vector<NodeId> pool = down_voters.size() >= 2 ? down_voters : other_voters;
      std::shuffle(pool.begin(), pool.end(), rng_);
      for (size_t k = 0; k < 2; ++k) cc.changes.push_back({ConfChangeType::kRemove, pool[k]});
    } else if (kind == 6 && voters > 3) {
      cc.changes.push_back({ConfChangeType::kAddLearner, pick(other_voters)});  // a demotion
    } else if (kind == 7 && !learners.empty()) {
      cc.changes.push_back({ConfChangeType::kRemove, pick(learners)});
    } else {
      return;
    }
    std::string what = cc.force_joint ? "joint" : "";
    for (const auto& c : cc.changes) {
      what += std::string(c.type == ConfChangeType::kAddVoter     ? " +v"
                          : c.type == ConfChangeType::kAddLearner ? " +l"
                                                                  : " -") +
              std::to_string(c.node.value());
      if (!nodes_.count(c.node)) Create(c.node);  // the operator starts the new node first
    }
    Call(*leader, [&](raft::Raft& core) {
      auto idx = core.ProposeConfChange(cc);
      what += idx.ok() ? " at " + std::to_string(idx->value()) : " refused";
    });
    Log("membership" + what + " on " + std::to_string(leader->id.value()));
    if (leader->up && rng_() % (o_.aggressive || o_.membership_heavy ? 2 : 4) == 0 &&
        !other_voters.empty()) {
      const NodeId to = pick(other_voters);
      Call(*leader, [&](raft::Raft& core) { (void)core.TransferLeadership(to); });
      Log("transfer during the change " + std::to_string(leader->id.value()) + "->" +
          std::to_string(to.value()));
    }
  }

  void Partition() {
    blocked_.clear();
    std::vector<NodeId> shuffled = ids_;
    std::shuffle(shuffled.begin(), shuffled.end(), rng_);
    const int kind = static_cast<int>(rng_() % 3);
    auto cut = [&](NodeId a, NodeId b) {
      blocked_.insert({a, b});
      blocked_.insert({b, a});
    };
    if (kind == 0) {  // symmetric split
      const size_t k = 1 + rng_() % (ids_.size() - 1);
      for (size_t i = 0; i < k; ++i) {
        for (size_t j = k; j < shuffled.size(); ++j) cut(shuffled[i], shuffled[j]);
      }
    } else if (kind == 1) {  // asymmetric: one direction only
      blocked_.insert({shuffled[0], shuffled[1]});
    } else {  // bridge: shuffled[1] talks to both sides, which cannot talk to each other
      for (size_t j = 2; j < shuffled.size(); ++j) cut(shuffled[0], shuffled[j]);
    }
    Log("partition kind " + std::to_string(kind));
  }

  void Advance() {
    for (NodeId id : ids_) {
      Node& n = *nodes_.at(id);
      if (!n.up && n.restart_at <= now_) {
        Start(n);
        Log("restart " + std::to_string(id.value()));
      }
    }
    Deliver();
    Transfers();
    for (NodeId id : ids_) {
      Node& n = *nodes_.at(id);
      // A tick only once T_tick has passed on its own clock since the last; missed ticks drop.
      if (Running(n) && Local(n) - n.last_tick_local >= kTick) {
        n.last_tick_local = Local(n);
        Call(n, [](raft::Raft& r) { r.Tick(); });
      }
    }
    for (NodeId id : ids_) {  // the runtime's commit flush (server::Replica::ArmCommitFlush)
      Node& n = *nodes_.at(id);
      if (!Running(n)) continue;
      if (!n.raft->commit_unsent()) {
        n.commit_flush_local = -1;
      } else if (n.commit_flush_local < 0) {
        n.commit_flush_local = Local(n) + kCommitFlush;
      } else if (Local(n) >= n.commit_flush_local) {
        n.commit_flush_local = -1;
        ++commit_flushes_;
        Call(n, [](raft::Raft& r) { r.SendCommit(); });
      }
    }
    ProcessRenewals();
  }

  void ProcessRenewals() {
    for (auto it = renewals_.begin(); it != renewals_.end();) {
      Node& n = *nodes_.at(it->node);
      if (!Running(n) || n.raft->role() != Role::kLeader || n.raft->term().value() != it->term) {
        it = renewals_.erase(it);
        continue;
      }
      // Rule (a): not before the leader applied the first entry of its term.
      if (n.applied_own_term && n.lease.CanAcknowledge(it->received_local, LocalBoot(n))) {
        // After TimeoutNow only a round begun after the renewal may confirm it.
        if (timeout_now_sent_.count({n.id, it->term}) &&
            !(n.lease.last_confirmed_start() &&
              *n.lease.last_confirmed_start() >= it->received_local)) {
          Fail("leader lease: the leader of term " + std::to_string(it->term) +
               " confirmed a renewal by the time branch after it sent TimeoutNow");
        }
        ++renewals_done_;
        confirmed_.emplace_back(it->term, it->received_global);
        for (const auto& [term, at] : first_apply_) {
          if (term > it->term && it->received_global >= at) {
            Fail("leader lease: a renewal received at " + std::to_string(it->received_global) +
                 " was confirmed by the leader of term " + std::to_string(it->term) +
                 ", but term " + std::to_string(term) + " first applied an entry at " +
                 std::to_string(at));
          }
        }
        it = renewals_.erase(it);
        continue;
      }
      ++it;
    }
  }

  // --- checkers --------------------------------------------------------------------------------

  void Fail(const std::string& why) {
    if (failure_.empty()) failure_ = "step " + std::to_string(step_) + ": " + why;
  }

  void Apply(Node& n, const Entry& e) {
    const uint64_t i = e.index.value();
    if (i != n.applied.size() + 1) {
      Fail("node " + std::to_string(n.id.value()) + " applied " + std::to_string(i) +
           " out of order");
      return;
    }
    n.applied.push_back(e);
    // State machine safety: one committed history; what any node applies is a prefix of it.
    if (i <= history_.size()) {
      if (history_[i - 1].term != e.term || history_[i - 1].data != e.data) {
        Fail("state machine safety: node " + std::to_string(n.id.value()) +
             " applied a different entry at " + std::to_string(i));
      }
    } else {
      history_.push_back(e);
      applied_at_.push_back(now_);
      if (e.type == raft::EntryType::kConfChange) CommittedConfChange(e);
    }
    if (!first_apply_.count(e.term.value())) {
      first_apply_[e.term.value()] = now_;
      for (const auto& [term, received] : confirmed_) {
        if (term < e.term.value() && received >= now_) {
          Fail("leader lease: term " + std::to_string(e.term.value()) +
               " applied its first entry before a renewal the leader of term " +
               std::to_string(term) + " confirmed was received");
        }
      }
    }
    if (n.raft->role() == Role::kLeader && e.term == n.raft->term()) n.applied_own_term = true;
    auto p = n.proposals.find(i);
    if (p != n.proposals.end()) {
      if (p->second == e.data) {
        ++acked_;
        max_acked_index_ = std::max(max_acked_index_, i);
        acked_data_[i] = e.data;
      }
      n.proposals.erase(p);
    }
  }

  /// A membership entry joined the committed history: it must follow the one before by an
  /// allowed step (no two configurations in force one after the other have disjoint quorums).
  void CommittedConfChange(const Entry& e) {
    auto cc = raft::DecodeConfChangeEntry(e.data);
    if (!cc.ok()) {
      Fail("committed membership entry " + std::to_string(e.index.value()) + " is damaged");
      return;
    }
    const ConfState& prev = conf_hist_.rbegin()->second;
    if (!QuorumsMeet(prev, cc->target)) {
      Fail("membership: committed entry " + std::to_string(e.index.value()) + " moves from " +
           raft::ToString(prev) + " to " + raft::ToString(cc->target) +
           ": two disjoint majorities exist across them");
    } else if (!AllowedStep(prev, cc->target)) {
      Fail("membership: committed entry " + std::to_string(e.index.value()) + " moves from " +
           raft::ToString(prev) + " to " + raft::ToString(cc->target) +
           ", not a simple change nor a joint step (their quorums need not intersect)");
    }
    conf_hist_[e.index.value()] = cc->target;
    Log("committed membership " + raft::ToString(cc->target) + " at " +
        std::to_string(e.index.value()));
  }

  /// The membership the committed history puts in force at index i.
  const ConfState& ConfAt(uint64_t i) const { return std::prev(conf_hist_.upper_bound(i))->second; }

  /// Every committed membership entry is applied by every node, in log order: the core's
  /// membership in force is the history's at its conf_index (a membership entry, or the snapshot
  /// it restored), no committed membership entry at or below its applied index is skipped, and
  /// conf_index never moves back.
  void CheckConf(Node& n) {
    if (!n.up || !failure_.empty()) return;
    const raft::Raft& r = *n.raft;
    const uint64_t ci = r.conf_index().value();
    const uint64_t applied = r.log().applied().value();
    const std::string who = "membership on node " + std::to_string(n.id.value()) + ": ";
    if (n.id.value() > static_cast<uint64_t>(o_.nodes) && ci == 0) {
      if (!r.conf_state().voters.empty())
        Fail(who + "a node added later has a membership before it learned one");
      return;
    }
    if (ci < n.conf_index_seen) {
      Fail(who + "conf_index went back from " + std::to_string(n.conf_index_seen) + " to " +
           std::to_string(ci));
    }
    n.conf_index_seen = ci;
    if (ci > history_.size()) return;  // committed, not yet applied anywhere
    if (r.conf_state() != ConfAt(ci)) {
      Fail(who + "in force " + raft::ToString(r.conf_state()) + " as of " + std::to_string(ci) +
           ", the committed history has " + raft::ToString(ConfAt(ci)));
    }
    auto next = conf_hist_.upper_bound(ci);
    if (next != conf_hist_.end() && next->first <= applied) {
      Fail(who + "applied up to " + std::to_string(applied) + " but not the membership entry at " +
           std::to_string(next->first));
    }
  }

  void CheckRead(const raft::ReadState& rs) {
    auto it = reads_.find(rs.ctx);
    if (it == reads_.end()) return;
    ++reads_done_;
    if (rs.index.value() < it->second.min_index) {
      Fail("ReadIndex " + std::to_string(rs.ctx) + " answered index " +
           std::to_string(rs.index.value()) +
           " below a write acknowledged before the read began (" +
           std::to_string(it->second.min_index) + ")");
    }
    reads_.erase(it);
  }

  /// The commit index never decreases, and a leader moves it only to an entry of its own term.
  void CheckCommit(Node& n) {
    const raft::Raft& r = *n.raft;
    if (r.log().committed() < n.commit_seen) {
      Fail("commit index went backwards on node " + std::to_string(n.id.value()));
    }
    if (r.role() == Role::kLeader && r.log().committed() > n.commit_seen &&
        r.log().TermOr(r.log().committed(), Term()) != r.term()) {
      Fail("commit rule: the leader of term " + std::to_string(r.term().value()) +
           " committed index " + std::to_string(r.log().committed().value()) +
           " by counting replicas of an earlier term's entry");
    }
    if (r.role() == Role::kLeader && r.log().committed() > n.commit_seen) {
      // Commit quorum: the entry is durable on a majority of each half of the configuration.
      const LogIndex idx = r.log().committed();
      const Term t = r.log().TermOr(idx, Term());
      auto durable = [&](NodeId p) {
        auto it = nodes_.find(p);
        if (it == nodes_.end()) return false;
        const raft::MemoryLogStorage& st = *it->second->storage;
        if (st.Snapshot().index >= idx) return true;
        auto term = st.TermAt(idx);
        return term.ok() && *term == t;
      };
      if (!r.config().Majority(durable)) {
        Fail("commit quorum: the leader of term " + std::to_string(r.term().value()) +
             " committed index " + std::to_string(idx.value()) +
             " which is not durable on a majority of each half of " +
             raft::ToString(r.conf_state()));
      }
    }
    n.commit_seen = r.log().committed();
  }

  void CheckDurable(Node& n, const raft::HardState& hs) {
    if (hs.term < n.durable.term)
      Fail("durable term went backwards on node " + std::to_string(n.id.value()));
    if (hs.term == n.durable.term && !n.durable.vote.zero() && hs.vote != n.durable.vote) {
      Fail("node " + std::to_string(n.id.value()) + " changed its durable vote within term " +
           std::to_string(hs.term.value()));
    }
    if (hs.commit < n.durable.commit)
      Fail("durable commit went backwards on node " + std::to_string(n.id.value()));
    n.durable = hs;
  }

  /// Every entry committed in an earlier term is in the new leader's log. An entry first applied
  /// before any node reached term T was committed in a term below T.
  void CheckLeaderCompleteness(const Node& n) {
    const int64_t term_began = term_start_.at(n.raft->term().value());
    for (size_t k = 0; k < history_.size(); ++k) {
      const Entry& e = history_[k];
      if (applied_at_[k] >= term_began) break;
      if (e.index < n.raft->log().first_index().prev()) continue;  // in its snapshot
      if (!n.raft->log().MatchTerm(e.index, e.term)) {
        Fail("leader completeness: the leader of term " + std::to_string(n.raft->term().value()) +
             " lacks committed entry " + std::to_string(e.index.value()));
        return;
      }
    }
  }

  void Check() {
    for (NodeId id : ids_) {
      Node& n = *nodes_.at(id);
      if (!n.up) continue;
      const raft::Raft& r = *n.raft;
      if (r.role() == Role::kLeader) {
        auto [it, fresh] = leaders_.emplace(r.term().value(), id);
        if (!fresh && it->second != id) {
          Fail("election safety: two leaders in term " + std::to_string(r.term().value()));
        }
      }
      CheckCommit(n);
    }
    if (step_ % 25 == 0) CheckLogMatching();
    // No acknowledged entry is ever lost: it stays in the one history.
    for (const auto& [i, data] : acked_data_) {
      if (i > history_.size() || history_[i - 1].data != data)
        Fail("acknowledged entry " + std::to_string(i) + " was lost");
    }
  }

  void CheckLogMatching() {
    std::vector<const Node*> up;
    for (const auto& [_, n] : nodes_) {
      if (n->up) up.push_back(n.get());
    }
    for (size_t a = 0; a < up.size(); ++a) {
      for (size_t b = a + 1; b < up.size(); ++b) {
        const auto& la = up[a]->raft->log();
        const auto& lb = up[b]->raft->log();
        const LogIndex last = std::min(la.last_index(), lb.last_index());
        // Below a snapshot's index the entries are gone (and were committed).
        const LogIndex low =
            std::max({LogIndex(1), la.first_index().prev(), lb.first_index().prev()});
        bool matched_above = false;
        for (LogIndex i = last; i >= low; i = i.prev()) {
          const bool same = la.TermOr(i, Term()) == lb.TermOr(i, Term());
          if (matched_above && !same) {
            Fail("log matching: nodes " + std::to_string(up[a]->id.value()) + " and " +
                 std::to_string(up[b]->id.value()) + " agree on an entry but not on entry " +
                 std::to_string(i.value()));
            return;
          }
          matched_above |= same;
        }
      }
    }
  }

  // --- liveness ------------------------------------------------------------------------------

  void Liveness() {
    faults_ = false;
    blocked_.clear();
    for (auto& [_, n] : nodes_) {
      n->stalled_until = 0;
      if (!n->up) Start(*n);
    }
    Log("liveness phase");
    const int64_t start = now_;
    const int64_t deadline = now_ + 30'000 * kMs;
    uint64_t target = 0, target_term = 0;
    std::string data;
    while (now_ < deadline && failure_.empty()) {
      now_ += 5 * kMs;
      ++step_;
      Advance();
      Check();
      if (step_ % 50 == 0) Trace();
      Node* leader = Leader();
      if (!leader || !leader->raft->committed_current_term()) continue;
      if (target == 0) {
        data = "live-" + std::to_string(o_.seed);
        Call(*leader, [&](raft::Raft& r) {
          auto idx = r.Propose(data);
          if (idx.ok()) {
            target = idx->value();
            target_term = r.term().value();
            leader->proposals[target] = data;
          }
          Log("liveness propose at " + std::to_string(leader->id.value()) + ": " +
              (idx.ok() ? std::to_string(idx->value()) : idx.status().ToString()));
        });
        continue;
      }
      // Every member of the leader's membership (removed nodes and spares are not asked).
      bool all = true;
      for (NodeId p : raft::Members(leader->raft->conf_state())) {
        auto it = nodes_.find(p);
        all &= it != nodes_.end() && it->second->raft->log().committed().value() >= target;
      }
      if (all && acked_data_.count(target)) {
        Log("live after " + std::to_string((now_ - start) / kMs) + " ms");
        return;
      }
      if ((history_.size() >= target && history_[target - 1].data != data) ||
          leader->raft->term().value() != target_term) {
        target = 0;  // the proposal was lost to a leader change: propose again
      }
    }
    if (failure_.empty())
      Fail("liveness: no leader committed a new entry on every member within 30 s of healing");
  }

  // --- trace -----------------------------------------------------------------------------------

  void Log(const std::string& what) {
    if (o_.trace) std::printf("[%8.3f s] %s\n", now_ / 1e6, what.c_str());
    Mix(what);
  }

  void Trace() {
    std::ostringstream s;
    s << step_ << " " << now_;
    for (const auto& [id, n] : nodes_) {
      if (!n->up) {
        s << " " << id.value() << ":down";
        continue;
      }
      s << " " << id.value() << ":" << raft::RoleName(n->raft->role())[0] << n->raft->term().value()
        << "/" << n->raft->log().committed().value();
    }
    if (o_.trace) std::printf("%s\n", s.str().c_str());
    Mix(s.str());
  }

  void Mix(const std::string& s) {
    for (unsigned char c : s) {
      hash_ ^= c;
      hash_ *= 0x100000001b3ull;
    }
  }

  SimOptions o_;
  std::mt19937_64 rng_;
  std::vector<NodeId> initial_;  // the voters at the start
  std::vector<NodeId> ids_;      // every node created so far
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  std::map<std::pair<int64_t, uint64_t>, Transfer> xfers_;
  std::map<std::pair<NodeId, NodeId>, uint64_t> active_xfer_;  // (from, to) -> the current stream
  uint64_t xfer_seq_ = 0, snapshots_ = 0, installs_ = 0, transfers_failed_ = 0, commit_flushes_ = 0;
  std::map<uint64_t, ConfState> conf_hist_;  // index -> membership of the committed history
  // (candidate, term) -> the voters that granted it a vote.
  std::map<std::pair<NodeId, uint64_t>, std::set<NodeId>> vote_grants_;
  std::map<std::pair<int64_t, uint64_t>, Message> net_;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  int64_t now_ = 0;
  uint64_t step_ = 0, msg_seq_ = 0, restarts_ = 0, proposals_ = 0, read_ctx_ = 0;
  bool faults_ = true;
  std::vector<Entry> history_;
  std::vector<int64_t> applied_at_;         // when each history entry was first applied
  std::map<uint64_t, int64_t> term_start_;  // term -> when a node first reached it
  std::map<uint64_t, std::string> acked_data_;
  uint64_t acked_ = 0, max_acked_index_ = 0, reads_done_ = 0, renewals_done_ = 0;
  std::map<uint64_t, Read> reads_;
  std::vector<Renewal> renewals_;
  std::vector<std::pair<uint64_t, int64_t>> confirmed_;  // (term, received_global)
  std::map<uint64_t, int64_t> first_apply_;              // term -> global time
  std::map<uint64_t, NodeId> leaders_;
  // (voter, candidate, term) of vote requests caused by a leadership transfer.
  std::set<std::tuple<NodeId, NodeId, uint64_t>> transfer_votes_;
  // (leader, term) that sent TimeoutNow.
  std::set<std::pair<NodeId, uint64_t>> timeout_now_sent_;
  // (leader, term, round) -> the voters that echoed that round.
  std::map<std::tuple<NodeId, uint64_t, uint64_t>, std::set<NodeId>> round_acks_;
  // The append response a node sent while handling the message being delivered.
  std::map<NodeId, Message> app_resp_;
  uint64_t mismatched_appends_ = 0;
  std::string failure_;
  uint64_t hash_ = 0xcbf29ce484222325ull;
};

}  // namespace

bool QuorumsIntersect(const raft::ConfState& a, const raft::ConfState& b) {
  return QuorumsMeet(a, b);
}

SimResult RunSimulation(const SimOptions& options) {
  return Sim(options).Run();
}

namespace {

struct KnobName {
  const char* name;
  bool raft::TestingKnobs::*field;
};
constexpr KnobName kKnobs[] = {
    {"count_old_term_entries_for_commit", &raft::TestingKnobs::count_old_term_entries_for_commit},
    {"skip_vote_persist", &raft::TestingKnobs::skip_vote_persist},
    {"grant_votes_to_shorter_logs", &raft::TestingKnobs::grant_votes_to_shorter_logs},
    {"skip_log_matching_check", &raft::TestingKnobs::skip_log_matching_check},
    {"read_index_before_term_commit", &raft::TestingKnobs::read_index_before_term_commit},
    {"keep_time_lease_after_timeout_now", &raft::TestingKnobs::keep_time_lease_after_timeout_now},
    {"no_vote_refusal_after_restart", &raft::TestingKnobs::no_vote_refusal_after_restart},
    {"credit_ack_to_newest_round", &raft::TestingKnobs::credit_ack_to_newest_round},
    {"conf_change_without_term_commit", &raft::TestingKnobs::conf_change_without_term_commit},
    {"ignore_old_majority_in_joint", &raft::TestingKnobs::ignore_old_majority_in_joint},
};

}  // namespace

bool SetKnob(raft::TestingKnobs& knobs, const std::string& name) {
  for (const auto& k : kKnobs) {
    if (name == k.name) {
      knobs.*k.field = true;
      return true;
    }
  }
  return false;
}

std::string ReplayCommand(const SimOptions& o) {
  std::string env =
      "LOCKD_SIM_SEED=" + std::to_string(o.seed) + " LOCKD_SIM_NODES=" + std::to_string(o.nodes);
  if (o.aggressive) env += " LOCKD_SIM_AGGRESSIVE=1";
  if (o.membership_heavy) env += " LOCKD_SIM_MEMBERSHIP_HEAVY=1";
  if (!o.snapshots) env += " LOCKD_SIM_SNAPSHOTS=0";
  if (!o.membership) env += " LOCKD_SIM_MEMBERSHIP=0";
  if (o.safety_steps != SimOptions().safety_steps)
    env += " LOCKD_SIM_STEPS=" + std::to_string(o.safety_steps);
  for (const auto& k : kKnobs) {
    if (o.knobs.*k.field) env += std::string(" LOCKD_SIM_KNOB=") + k.name;
  }
  return env + " LOCKD_SIM_TRACE=1 build/release/tests/sim/sim_test --gtest_filter=Sim.Replay";
}

}  // namespace lockd::sim
