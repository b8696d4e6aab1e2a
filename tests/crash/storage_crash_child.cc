// The child of the kill -9 test: opens the store, appends synced batches from where the log ends,
// and prints "ack <last index> <commit>" after each one returns, until it is killed (or, bounded,
// after 5,000 batches). Entry i of term t carries "i<i>t<t>", so the parent can check contents.
//   storage_crash_child DIR TERM SEED
#include <cstdio>
#include <cstdlib>
#include <random>

#include "storage/raft_store.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DIR TERM SEED\n", argv[0]);
    return 2;
  }
  const uint64_t term = std::strtoull(argv[2], nullptr, 10);
  std::mt19937_64 rng(std::strtoull(argv[3], nullptr, 10));
  auto store = lockd::storage::RaftStore::Open(argv[1]);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
  }
  uint64_t next = (*store)->LastIndex().value() + 1;
  for (int batch = 0; batch < 5000; ++batch) {
    lockd::storage::PersistBatch b;
    const uint64_t n = 1 + rng() % 16;
    for (uint64_t k = 0; k < n; ++k, ++next) {
      b.entries.push_back(lockd::raft::Entry{
          lockd::raft::Term(term), lockd::raft::LogIndex(next), lockd::raft::EntryType::kNormal,
          "i" + std::to_string(next) + "t" + std::to_string(term)});
    }
    b.hard_state = lockd::raft::HardState{lockd::raft::Term(term), lockd::raft::NodeId(1),
                                          lockd::raft::LogIndex(next - 1)};
    const lockd::Status s = (*store)->Append(b);
    if (!s.ok()) {
      std::fprintf(stderr, "append: %s\n", s.ToString().c_str());
      return 1;
    }
    std::printf("ack %llu\n", static_cast<unsigned long long>(next - 1));
    std::fflush(stdout);
  }
  return 0;
}
