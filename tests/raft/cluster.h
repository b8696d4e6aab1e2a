// A tiny synchronous cluster for the Raft unit tests: nodes with in-memory storage, the Ready
// contract followed exactly, and messages delivered in order unless a link is cut or a test's
// filter drops them. Tests may also hold messages and deliver them one by one.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include "raft/memory_storage.h"
#include "raft/raft.h"

namespace lockd::raft::testing {

struct ClusterOptions {
  TestingKnobs knobs;
  size_t max_inflight = 256;
  uint64_t max_msg_bytes = 1 << 20;
  uint64_t max_uncommitted_bytes = 64 << 20;
  bool pre_vote = true;
  bool check_quorum = true;
};

class Cluster {
 public:
  /// `prefill(i, storage)` may write node i's durable state before it starts.
  explicit Cluster(int n, ClusterOptions o = {},
                   std::function<void(int, MemoryLogStorage&)> prefill = nullptr) {
    for (int i = 1; i <= n; ++i) ids_.push_back(NodeId(i));
    for (NodeId id : ids_) {
      storage_[id] = std::make_unique<MemoryLogStorage>();
      if (prefill) prefill(static_cast<int>(id.value()), *storage_[id]);
      Config c;
      c.id = id;
      c.peers = ids_;
      c.seed = id.value();
      c.knobs = o.knobs;
      c.max_inflight = o.max_inflight;
      c.max_msg_bytes = o.max_msg_bytes;
      c.max_uncommitted_bytes = o.max_uncommitted_bytes;
      c.pre_vote = o.pre_vote;
      c.check_quorum = o.check_quorum;
      configs_[id] = c;
      nodes_[id] = std::make_unique<Raft>(c, *storage_[id]);
    }
  }

  Raft& node(int i) { return *nodes_.at(NodeId(i)); }
  MemoryLogStorage& storage(int i) { return *storage_.at(NodeId(i)); }
  std::vector<Entry>& applied(int i) { return applied_[NodeId(i)]; }
  std::vector<ReadState>& reads(int i) { return reads_[NodeId(i)]; }
  std::vector<uint64_t>& dropped_reads(int i) { return dropped_reads_[NodeId(i)]; }
  std::vector<uint64_t>& rounds(int i) { return rounds_[NodeId(i)]; }
  /// Every message sent so far (delivered or not).
  std::vector<Message>& sent() { return sent_; }
  /// Messages sent and not yet delivered.
  std::deque<Message>& queue() { return queue_; }
  /// Messages for which `drop` holds are lost on the way.
  void SetDrop(std::function<bool(const Message&)> drop) { drop_ = std::move(drop); }
  /// While held, Stabilize() only processes Readies; messages wait in queue().
  void Hold(bool held) { held_ = held; }

  void Cut(int a, int b) {
    cut_.insert({NodeId(a), NodeId(b)});
    cut_.insert({NodeId(b), NodeId(a)});
  }
  void Isolate(int a) {
    for (NodeId id : ids_) {
      if (id != NodeId(a)) Cut(a, static_cast<int>(id.value()));
    }
  }
  void Heal() { cut_.clear(); }

  /// Processes Readies and delivers messages until nothing moves.
  void Stabilize(int max_rounds = 10'000) {
    for (int round = 0; round < max_rounds; ++round) {
      bool moved = false;
      for (NodeId id : ids_) moved |= HandleReady(id);
      while (!held_ && !queue_.empty()) {
        Message m = std::move(queue_.front());
        queue_.pop_front();
        moved = true;
        Deliver(m);
      }
      if (!moved) return;
    }
  }

  /// Delivers (and removes) the held messages for which `pred` holds, then handles Readies.
  int DeliverIf(const std::function<bool(const Message&)>& pred) {
    int n = 0;
    std::deque<Message> keep;
    std::deque<Message> now;
    for (auto& m : queue_) (pred(m) ? now : keep).push_back(std::move(m));
    queue_ = std::move(keep);
    for (auto& m : now) {
      Deliver(m);
      ++n;
    }
    for (NodeId id : ids_) HandleReady(id);
    return n;
  }

  void Tick(int i, int n = 1) {
    for (int k = 0; k < n; ++k) node(i).Tick();
  }
  void TickAll(int n = 1) {
    for (int k = 0; k < n; ++k) {
      for (NodeId id : ids_) nodes_.at(id)->Tick();
      Stabilize();
    }
  }

  /// Ticks until some node leads; returns its number (0 if none within the bound).
  int ElectLeader(int max_ticks = 200) {
    for (int t = 0; t < max_ticks; ++t) {
      TickAll();
      if (int l = Leader()) return l;
    }
    return 0;
  }
  int Leader() {
    for (NodeId id : ids_) {
      if (nodes_.at(id)->role() == Role::kLeader) return static_cast<int>(id.value());
    }
    return 0;
  }
  int CountLeaders() {
    int n = 0;
    for (NodeId id : ids_) n += nodes_.at(id)->role() == Role::kLeader;
    return n;
  }

  /// Makes node i campaign now, as if its election timeout had passed (pre-vote first if on).
  void Campaign(int i) {
    Raft& r = node(i);
    const Term t = r.term();
    for (int k = 0; k < 100 && r.role() != Role::kPreCandidate && r.role() != Role::kCandidate &&
                    r.role() != Role::kLeader && r.term() == t;
         ++k) {
      r.Tick();
    }
  }

  /// Crash: the node loses everything not persisted and restarts from its storage.
  void Restart(int i) {
    NodeId id(i);
    nodes_[id] = std::make_unique<Raft>(configs_.at(id), *storage_.at(id));
    applied_[id].clear();
  }

  /// Sends `m` to its node as if from the network; returns the Step status.
  Status Inject(const Message& m) {
    Status s = nodes_.at(m.to)->Step(m);
    nodes_.at(m.to)->CheckInvariants();
    return s;
  }

 private:
  void Deliver(const Message& m) {
    if (cut_.count({m.from, m.to}) || (drop_ && drop_(m))) return;
    (void)nodes_.at(m.to)->Step(m);
    nodes_.at(m.to)->CheckInvariants();
  }

  bool HandleReady(NodeId id) {
    Raft& r = *nodes_.at(id);
    if (!r.HasReady()) return false;
    Ready rd = r.GetReady();
    for (auto& m : rd.messages_now) Enqueue(std::move(m));
    MemoryLogStorage& s = *storage_.at(id);
    s.Append(rd.entries);
    if (rd.hard_state) s.SetHardState(*rd.hard_state);
    for (auto& m : rd.messages) Enqueue(std::move(m));
    for (const auto& e : rd.committed) applied_[id].push_back(e);
    for (const auto& rs : rd.read_states) reads_[id].push_back(rs);
    for (uint64_t ctx : rd.dropped_reads) dropped_reads_[id].push_back(ctx);
    for (uint64_t round : rd.rounds_confirmed) rounds_[id].push_back(round);
    r.Advance(rd);
    r.CheckInvariants();
    return true;
  }
  void Enqueue(Message m) {
    sent_.push_back(m);
    queue_.push_back(std::move(m));
  }

  std::vector<NodeId> ids_;
  std::map<NodeId, Config> configs_;
  std::map<NodeId, std::unique_ptr<MemoryLogStorage>> storage_;
  std::map<NodeId, std::unique_ptr<Raft>> nodes_;
  std::map<NodeId, std::vector<Entry>> applied_;
  std::map<NodeId, std::vector<ReadState>> reads_;
  std::map<NodeId, std::vector<uint64_t>> dropped_reads_;
  std::map<NodeId, std::vector<uint64_t>> rounds_;
  std::deque<Message> queue_;
  std::vector<Message> sent_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::function<bool(const Message&)> drop_;
  bool held_ = false;
};

/// Entries with the given terms at indices 1, 2, ... (payload "t<term>i<index>").
inline std::vector<Entry> EntriesWithTerms(const std::vector<uint64_t>& terms) {
  std::vector<Entry> out;
  for (size_t k = 0; k < terms.size(); ++k) {
    out.push_back(Entry{Term(terms[k]), LogIndex(k + 1), EntryType::kNormal,
                        "t" + std::to_string(terms[k]) + "i" + std::to_string(k + 1)});
  }
  return out;
}

}  // namespace lockd::raft::testing
