// Raft core benchmark: committed entries per second for 3 nodes over an in-memory network with
// instant disks, 64-byte entries, proposals batched between Readies. Measures the core alone
// (message handling, log, commit), so it must never be the bottleneck (goal: 500,000 entries/s).
//   build/release/bench/raft/raft_bench [--entries N] [--batch B]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "raft/memory_storage.h"
#include "raft/raft.h"

using namespace lockd::raft;

namespace {

struct Node {
  std::unique_ptr<MemoryLogStorage> storage = std::make_unique<MemoryLogStorage>();
  std::unique_ptr<Raft> raft;
  uint64_t applied = 0;
};

}  // namespace

int main(int argc, char** argv) {
  uint64_t total = 2'000'000, batch = 256;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--entries")) total = std::strtoull(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--batch")) batch = std::strtoull(argv[i + 1], nullptr, 10);
  }
  const std::vector<NodeId> ids = {NodeId(1), NodeId(2), NodeId(3)};
  std::map<NodeId, Node> nodes;
  for (NodeId id : ids) {
    Config c;
    c.id = id;
    c.peers = ids;
    c.seed = id.value();
    c.max_inflight = 256;
    c.max_msg_bytes = 1 << 20;
    c.max_uncommitted_bytes = 1ull << 34;
    nodes[id].raft = std::make_unique<Raft>(c, *nodes[id].storage);
  }
  std::deque<Message> net;
  auto pump = [&](Node& n) {
    while (n.raft->HasReady()) {
      Ready rd = n.raft->GetReady();
      for (auto& m : rd.messages_now) net.push_back(std::move(m));
      n.storage->Append(rd.entries);
      if (rd.hard_state) n.storage->SetHardState(*rd.hard_state);
      for (auto& m : rd.messages) net.push_back(std::move(m));
      n.applied += rd.committed.size();
      n.raft->Advance(rd);
    }
  };
  auto settle = [&] {
    for (auto& [_, n] : nodes) pump(n);
    while (!net.empty()) {
      Message m = std::move(net.front());
      net.pop_front();
      Node& to = nodes.at(m.to);
      (void)to.raft->Step(m);
      pump(to);
    }
  };
  Raft* leader = nullptr;
  for (int t = 0; t < 100 && !leader; ++t) {
    for (auto& [_, n] : nodes) n.raft->Tick();
    settle();
    for (auto& [_, n] : nodes) {
      if (n.raft->role() == Role::kLeader) leader = n.raft.get();
    }
  }
  if (!leader) return 1;
  const std::string payload(64, 'x');
  const uint64_t start_commit = leader->log().committed().value();
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t proposed = 0;
  while (proposed < total) {
    for (uint64_t k = 0; k < batch && proposed < total; ++k, ++proposed) {
      if (!leader->Propose(payload).ok()) return 1;
    }
    settle();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t committed = leader->log().committed().value() - start_commit;
  std::printf(
      "raft core, 3 nodes, 64-byte entries, %llu proposals per Ready: %llu entries committed in "
      "%.3f s = %.0f entries/s\n",
      (unsigned long long)batch, (unsigned long long)committed, secs, committed / secs);
}
