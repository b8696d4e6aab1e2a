// A tiny synchronous cluster for the Raft unit tests: nodes with in-memory storage, messages
// delivered in order unless a link is cut, and the Ready contract followed exactly.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <set>

#include "raft/memory_storage.h"
#include "raft/raft.h"

namespace lockd::raft::testing {

class Cluster {
 public:
  /// The nodes defer commit-only appends by default, as lockd's do (no runtime flushes them
  /// here: the next append or a heartbeat carries the commit index, or a test's SendCommit).
  explicit Cluster(int n, TestingKnobs knobs = {}, size_t max_inflight = 256,
                   bool defer_commit_only_appends = true) {
    for (int i = 1; i <= n; ++i) ids_.push_back(NodeId(i));
    for (NodeId id : ids_) {
      storage_[id] = std::make_unique<MemoryLogStorage>();
      Config c;
      c.id = id;
      c.peers = ids_;
      c.seed = id.value();
      c.knobs = knobs;
      c.max_inflight = max_inflight;
      c.defer_commit_only_appends = defer_commit_only_appends;
      configs_[id] = c;
      nodes_[id] = std::make_unique<Raft>(c, *storage_[id]);
    }
  }

  /// A node that joins later: empty storage, no membership of its own (it learns it from the log
  /// or a snapshot), so it never campaigns until it is made a voter.
  void AddNode(int i) {
    NodeId id(i);
    ids_.push_back(id);
    storage_[id] = std::make_unique<MemoryLogStorage>();
    Config c = configs_.begin()->second;
    c.id = id;
    c.peers = {};
    c.seed = id.value();
    configs_[id] = c;
    nodes_[id] = std::make_unique<Raft>(c, *storage_[id]);
  }

  /// The state machine snapshot at node i's applied index `index`; its log is compacted up to it.
  Status Compact(int i, LogIndex index) {
    NodeId id(i);
    auto meta = nodes_.at(id)->SnapshotMetaAt(index);
    if (!meta.ok()) return meta.status();
    snapshot_data_[id].assign(applied_[id].begin(),
                              applied_[id].begin() + static_cast<ptrdiff_t>(index.value()));
    return storage_.at(id)->Compact(*meta);
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
  /// Drops what `from` sends to `to` only.
  void CutOneWay(int from, int to) { cut_.insert({NodeId(from), NodeId(to)}); }
  void Isolate(int a) {
    for (NodeId id : ids_) {
      if (id != NodeId(a)) Cut(a, static_cast<int>(id.value()));
    }
  }
  void Heal() { cut_.clear(); }
  /// Every snapshot transfer fails (and is reported so) until turned off.
  void FailSnapshots(bool v) { fail_snapshots_ = v; }

  /// Processes Readies and delivers messages until nothing moves.
  void Stabilize(int max_rounds = 10'000) {
    for (int round = 0; round < max_rounds; ++round) {
      bool moved = false;
      for (NodeId id : ids_) moved |= HandleReady(id);
      while (!queue_.empty()) {
        Message m = std::move(queue_.front());
        queue_.pop_front();
        moved = true;
        if (cut_.count({m.from, m.to}) || (fail_snapshots_ && m.type == MessageType::kSnapshot)) {
          if (m.type == MessageType::kSnapshot) nodes_.at(m.from)->ReportSnapshot(m.to, false);
          continue;
        }
        if (m.type == MessageType::kSnapshot) received_[m.to] = snapshot_data_[m.from];
        (void)nodes_.at(m.to)->Step(m);
        if (m.type == MessageType::kSnapshot) nodes_.at(m.from)->ReportSnapshot(m.to, true);
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
    applied_[id] = snapshot_data_[id];
  }

 private:
  bool HandleReady(NodeId id) {
    Raft& r = *nodes_.at(id);
    if (!r.HasReady()) return false;
    Ready rd = r.GetReady();
    for (auto& m : rd.messages_now) Enqueue(std::move(m));
    MemoryLogStorage& s = *storage_.at(id);
    if (rd.snapshot) {
      EXPECT_EQ(received_[id].size(), rd.snapshot->index.value());
      applied_[id] = snapshot_data_[id] = received_[id];
      s.ResetToSnapshot(*rd.snapshot);
    }
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
  std::map<NodeId, std::vector<Entry>> snapshot_data_;  ///< the durable snapshot's payload
  std::map<NodeId, std::vector<Entry>> received_;       ///< the payload of the last kSnapshot
  std::deque<Message> queue_;
  std::vector<Message> sent_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  bool fail_snapshots_ = false;
};

}  // namespace lockd::raft::testing
