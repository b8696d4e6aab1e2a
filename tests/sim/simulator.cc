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

#include "raft/memory_storage.h"
#include "server/leader_lease.h"

namespace lockd::sim {
namespace {

using raft::Entry;
using raft::LogIndex;
using raft::Message;
using raft::NodeId;
using raft::Role;
using raft::Term;

constexpr int64_t kMs = 1000;         // the simulator's time unit is the microsecond
constexpr int64_t kTick = 100 * kMs;  // T_tick
constexpr int kElectionTicks = 10;    // E_min = 1 s
constexpr double kDrift = 0.01;       // ρ

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
};

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
    for (int i = 1; i <= o.nodes; ++i) ids_.push_back(NodeId(i));
    for (NodeId id : ids_) {
      auto n = std::make_unique<Node>();
      n->id = id;
      n->storage = std::make_unique<raft::MemoryLogStorage>();
      n->rate = 1.0 + kDrift * (static_cast<double>(rng_() % 2001) / 1000.0 - 1.0);
      n->offset = static_cast<int64_t>(rng_() % (1000 * kMs));
      nodes_[id] = std::move(n);
      Start(*nodes_[id]);
    }
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
    c.peers = ids_;
    c.election_tick = kElectionTicks;
    c.heartbeat_tick = 1;
    c.max_inflight = 8;
    c.max_msg_bytes = 512;  // small, so catching up takes several appends
    c.seed = o_.seed * 131 + id.value() * 7 + restarts_;
    c.knobs = o_.knobs;
    // Without CheckQuorum a cut-off leader keeps accepting proposals for as long as the partition
    // lasts, which grows long divergent logs (the aggressive mode wants them).
    c.check_quorum = !(o_.aggressive && o_.seed % 2 == 0);
    return c;
  }

  void Start(Node& n) {
    n.raft = std::make_unique<raft::Raft>(ConfigFor(n.id), *n.storage);
    n.up = true;
    n.applied.clear();
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
    }
  }

  void Pump(Node& n) {
    for (int guard = 0; n.up && n.raft->HasReady() && guard < 1000; ++guard) {
      raft::Ready rd = n.raft->GetReady();
      for (auto& m : rd.messages_now) Send(std::move(m));
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
        if (acks.size() < ids_.size() / 2 + 1) {
          Fail("node " + std::to_string(n.id.value()) + " confirmed round " +
               std::to_string(round) + " of term " + std::to_string(rd.term.value()) + " with " +
               std::to_string(acks.size()) + " acknowledgements of it");
        }
        n.lease.RoundConfirmed(round);
      }
      n.raft->Advance(rd);
      CheckCommit(n);
      SyncLease(n);
      if (!o_.knobs.any()) n.raft->CheckInvariants();
    }
  }

  void Crash(Node& n, const char* why) {
    n.up = false;
    // Often back quickly (a process restart), sometimes after a while (a reboot).
    n.restart_at =
        now_ + static_cast<int64_t>(rng_() % 2 ? 20 + rng_() % 300 : 300 + rng_() % 3000) * kMs;
    n.raft.reset();
    ++restarts_;
    Log(std::string("crash ") + std::to_string(n.id.value()) + " (" + why + ")");
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
      Node& to = *nodes_.at(m.to);
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
    for (NodeId id : ids_) {
      Node& n = *nodes_.at(id);
      // A tick only once T_tick has passed on its own clock since the last; missed ticks drop.
      if (Running(n) && Local(n) - n.last_tick_local >= kTick) {
        n.last_tick_local = Local(n);
        Call(n, [](raft::Raft& r) { r.Tick(); });
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
        bool matched_above = false;
        for (LogIndex i = last; i >= LogIndex(1); i = i.prev()) {
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
      bool all = true;
      for (const auto& [_, n] : nodes_) all &= n->raft->log().committed().value() >= target;
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
      Fail("liveness: no leader committed a new entry on every node within 30 s of healing");
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
  std::vector<NodeId> ids_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
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

SimResult RunSimulation(const SimOptions& options) {
  return Sim(options).Run();
}

std::string ReplayCommand(const SimOptions& o) {
  return "LOCKD_SIM_SEED=" + std::to_string(o.seed) +
         " LOCKD_SIM_NODES=" + std::to_string(o.nodes) +
         " LOCKD_SIM_TRACE=1 build/release/tests/sim/sim_test --gtest_filter=Sim.Replay";
}

}  // namespace lockd::sim
