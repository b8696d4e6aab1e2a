// A tiny synchronous cluster for the Raft unit tests: nodes with in-memory storage, messages
// delivered in order unless a link is cut, and the Ready contract followed exactly.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <set>

#include "raft/memory_storage.h"
#include "raft/raft.h"

namespace lockd::raft::testing {

class Cluster {
 public:
  explicit Cluster(int n, TestingKnobs knobs = {}, size_t max_inflight = 256) {
    for (int i = 1; i <= n; ++i) ids_.push_back(NodeId(i));
    for (NodeId id : ids_) {
      storage_[id] = std::make_unique<MemoryLogStorage>();
      Config c;
      c.id = id;
      c.peers = ids_;
      c.seed = id.value();
      c.knobs = knobs;
      c.max_inflight = max_inflight;
      configs_[id] = c;
      nodes_[id] = std::make_unique<Raft>(c, *storage_[id]);
    }
  }

  Raft& node(int i) { return *nodes_.at(NodeId(i)); }
  MemoryLogStorage& storage(int i) { return *storage_.at(NodeId(i)); }
  std::vector<Entry>& applied(int i) { return applied_[NodeId(i)]; }
  std::vector<ReadState>& reads(int i) { return reads_[NodeId(i)]; }
  std::vector<Message>& sent() { return sent_; }

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
      while (!queue_.empty()) {
        Message m = std::move(queue_.front());
        queue_.pop_front();
        moved = true;
        if (cut_.count({m.from, m.to})) continue;
        (void)nodes_.at(m.to)->Step(m);
        nodes_.at(m.to)->CheckInvariants();
      }
      if (!moved) return;
    }
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
      for (NodeId id : ids_) {
        if (nodes_.at(id)->role() == Role::kLeader) return static_cast<int>(id.value());
      }
    }
    return 0;
  }

  /// Crash: the node loses everything not persisted and restarts from its storage.
  void Restart(int i) {
    NodeId id(i);
    nodes_[id] = std::make_unique<Raft>(configs_.at(id), *storage_.at(id));
    applied_[id].clear();
  }

 private:
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
  std::deque<Message> queue_;
  std::vector<Message> sent_;
  std::set<std::pair<NodeId, NodeId>> cut_;
};

}  // namespace lockd::raft::testing
