// The child of the kill -9 test: takes the data dir's lock, recovers the node's storage, then
// runs the seeded workload (appends, truncations, snapshots, installs) from the recovered state,
// writing one byte to fd 3 (a pipe to the parent) after each op is acknowledged, until killed or
// after 3,000 ops.
//   storage_crash_child DATA_DIR SEED
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>

#include "storage/data_dir.h"
#include "storage/node_storage.h"
#include "workload.h"

int main(int argc, char** argv) {
  using namespace lockd::storage;
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s DATA_DIR SEED\n", argv[0]);
    return 2;
  }
  auto dir = DataDir::Open(argv[1]);
  if (!dir.ok()) {
    std::fprintf(stderr, "data dir: %s\n", dir.status().ToString().c_str());
    return 1;
  }
  auto storage = NodeStorage::Open(**dir);
  if (!storage.ok()) {
    std::fprintf(stderr, "recovery: %s\n", storage.status().ToString().c_str());
    return 1;
  }
  auto model = testing::Model::From(**storage);
  if (!model.ok()) {
    std::fprintf(stderr, "reading back: %s\n", model.status().ToString().c_str());
    return 1;
  }
  testing::Model m = *model;
  std::mt19937_64 rng(std::strtoull(argv[2], nullptr, 10));
  for (int i = 0; i < 3000; ++i) {
    const testing::Op op = testing::NextOp(m, rng);
    const lockd::Status s = testing::Execute(**storage, op);
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", op.Describe().c_str(), s.ToString().c_str());
      return 1;
    }
    m = testing::Apply(m, op);
    // The op is durable: acknowledge it. A kill before this write leaves it unacknowledged.
    if (::write(3, "a", 1) != 1) return 1;
  }
  return 0;
}
