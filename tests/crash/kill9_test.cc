// kill -9 at random moments: a child appends synced batches and reports each acknowledged index;
// the parent SIGKILLs it after a random number of acknowledgements, reopens the store, and checks
// that every acknowledged entry is there with its content, that the log is contiguous, and that
// the hard state agrees with it. Hundreds of rounds on one growing log. LOCKD_CRASH_POINTS sets
// how many.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <random>
#include <sstream>

#include "storage/raft_store.h"
#include "support/process.h"

namespace lockd::storage {
namespace {

using namespace std::chrono_literals;

uint64_t LastAck(const std::string& log) {
  std::istringstream in(log);
  std::string line;
  uint64_t last = 0;
  while (std::getline(in, line)) {
    if (line.rfind("ack ", 0) == 0 && in.good())
      last = std::strtoull(line.c_str() + 4, nullptr, 10);
  }
  return last;
}

size_t Acks(const std::string& log) {
  size_t n = 0;
  for (size_t p = log.find("ack "); p != std::string::npos; p = log.find("ack ", p + 1)) ++n;
  return n;
}

TEST(Kill9, EveryAcknowledgedEntrySurvives) {
  const char* env = std::getenv("LOCKD_CRASH_POINTS");
  const int rounds = env && *env ? std::atoi(env) : 200;
  lockd::testing::TempDir dir;
  const std::string path = dir.path() + "/raft";
  std::mt19937_64 rng(42);
  uint64_t acked = 0;
  for (int round = 1; round <= rounds; ++round) {
    const std::string log = dir.path() + "/child" + std::to_string(round) + ".log";
    const size_t kill_after = 1 + rng() % 40;
    lockd::testing::Process child(
        {STORAGE_CRASH_CHILD, path, std::to_string(round), std::to_string(rng())}, log);
    const bool reached = lockd::testing::WaitFor(
        [&] { return Acks(child.ReadLog()) >= kill_after || !child.running(); }, 30s);
    ASSERT_TRUE(reached) << "round " << round << ": the child made no progress\n"
                         << child.ReadLog();
    // Some rounds are killed after a short random delay instead, mid-batch.
    if (rng() % 2) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
    child.Kill();
    ASSERT_NE(child.ReadLog().find("ack"), std::string::npos) << child.ReadLog();
    const uint64_t last = LastAck(child.ReadLog());
    ASSERT_GE(last, acked) << "acknowledgements never go backwards";
    acked = last;

    auto store = RaftStore::Open(path);
    ASSERT_TRUE(store.ok()) << "round " << round << ": " << store.status().ToString();
    const auto& s = **store;
    ASSERT_GE(s.LastIndex().value(), acked) << "round " << round << ": acknowledged entries lost";
    ASSERT_GE(s.Initial().hard.commit.value(), acked > 0 ? acked : 0)
        << "round " << round << ": the acknowledged hard state was lost";
    ASSERT_LE(s.Initial().hard.commit, s.LastIndex());
    auto all = s.Entries(raft::LogIndex(1), s.LastIndex().next(), UINT64_MAX);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    ASSERT_EQ(all->size(), s.LastIndex().value()) << "the log is contiguous from 1";
    for (const auto& e : *all) {
      ASSERT_EQ(e.data,
                "i" + std::to_string(e.index.value()) + "t" + std::to_string(e.term.value()))
          << "round " << round << " entry " << e.index.value();
    }
  }
  std::printf("kill -9: %d rounds, %llu entries acknowledged and found\n", rounds,
              static_cast<unsigned long long>(acked));
}

}  // namespace
}  // namespace lockd::storage
