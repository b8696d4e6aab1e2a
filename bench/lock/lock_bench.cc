// Lock state machine benchmark: apply throughput (decode + apply, commands/s) and memory per held
// lock with 1,000,000 held locks over 100,000 leases. Prints figures; see docs/benchmarks.md.
//   build/release/bench/lock/lock_bench [--locks N] [--leases N]
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lock/state_machine.h"

using namespace lockd::lock;
using Clock = std::chrono::steady_clock;

namespace {

RequestHeader H(uint64_t seq) {
  return RequestHeader{{{1, 1}, seq}, 1, seq};
}

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

/// Acquire/release pairs on 1,000 names by 1,000 leases, encoded ahead of time; times Apply.
void Throughput() {
  Limits limits;
  LockStateMachine sm(limits);
  uint64_t seq = 0, index = 0;
  constexpr int kLeases = 1000, kRounds = 200;
  for (int i = 0; i < kLeases; ++i) {
    sm.ApplyCommand(LogIndex(++index), GrantLease{H(++seq), 60000, "bench"});
  }
  std::vector<std::string> entries;
  for (int r = 0; r < kRounds; ++r) {
    for (int i = 0; i < kLeases; ++i) {
      entries.push_back(Encode(Acquire{H(++seq), "name/" + std::to_string(i), LeaseId(i + 1),
                                       Mode::kExclusive, 0, 0, ""},
                               0));
    }
    for (int i = 0; i < kLeases; ++i) {
      // Tokens are granted in order: round r, name i got token 1 + r*kLeases + i.
      entries.push_back(Encode(Release{H(++seq), "name/" + std::to_string(i), LeaseId(i + 1),
                                       FencingToken(1 + uint64_t(r) * kLeases + i)},
                               0));
    }
  }
  // Retirement keeps the exactly-once table bounded, as the leader's RetireOutcomes would.
  const auto start = Clock::now();
  size_t failures = 0;
  for (size_t k = 0; k < entries.size(); ++k) {
    auto r = sm.Apply(LogIndex(++index), entries[k]);
    if (!r.ok() || !r->outcome.ok()) ++failures;
    if (k % 10'000 == 9'999)
      sm.ApplyCommand(LogIndex(++index),
                      RetireOutcomes{LogIndex(index), LogIndex(), LogIndex(), 0});
  }
  const double secs = Seconds(Clock::now() - start);
  std::printf(
      "apply: %zu commands (acquire/release, exclusive, 1000 names) in %.3f s = %.0f commands/s "
      "(%zu failed)\n",
      entries.size(), secs, entries.size() / secs, failures);
}

void Memory(size_t locks, size_t leases) {
  Limits limits;
  limits.max_locks = locks;
  limits.max_leases = leases;
  limits.max_leases_per_label = leases;
  // One client sends every call here and retires nothing until the end.
  limits.max_outcomes_per_client = limits.max_outcomes = 2 * (locks + leases) + 2;
  const size_t before = mallinfo2().uordblks;
  auto* sm = new LockStateMachine(limits);
  uint64_t seq = 0, index = 0;
  for (size_t i = 0; i < leases; ++i) {
    sm->ApplyCommand(LogIndex(++index), GrantLease{H(++seq), 60'000, "worker"});
  }
  const size_t with_leases = mallinfo2().uordblks;
  for (size_t i = 0; i < locks; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "tenant-%zu/resource-%zu", i % 97, i);
    sm->ApplyCommand(LogIndex(++index),
                     Acquire{H(++seq), name, LeaseId(1 + i % leases), Mode::kExclusive, 0, 0, ""});
  }
  // The exactly-once records of these calls would be retired by the leader; measure without them.
  sm->ApplyCommand(LogIndex(++index), RetireOutcomes{LogIndex(index), LogIndex(), LogIndex(), 0});
  const size_t after = mallinfo2().uordblks;
  std::printf(
      "memory: %zu leases = %.1f MiB (%.0f B/lease); %zu held locks = %.1f MiB (%.0f B/held lock, "
      "names ~30 B)\n",
      leases, (with_leases - before) / 1048576.0, double(with_leases - before) / leases, locks,
      (after - with_leases) / 1048576.0, double(after - with_leases) / locks);
  std::printf("        records left in the exactly-once table: %zu\n",
              sm->exactly_once().records());
  // What a snapshot of this state costs the thread that takes it (docs/benchmarks.md, "Scale"):
  // serializing it, a deep copy of it (what serializing off the loop from a copy would cost the
  // loop), and restoring it (a restarted or installing node).
  const auto ms = [](Clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
  };
  auto t0 = Clock::now();
  const std::string payload = sm->Snapshot();
  auto t1 = Clock::now();
  auto* copy = new LockStateMachine(*sm);
  auto t2 = Clock::now();
  auto restored = LockStateMachine::Restore(payload, limits);
  auto t3 = Clock::now();
  std::printf("snapshot: %.1f MiB, serialize %.0f ms, deep copy %.0f ms, restore %.0f ms (%s)\n",
              payload.size() / 1048576.0, ms(t1 - t0), ms(t2 - t1), ms(t3 - t2),
              restored.ok() ? "ok" : restored.status().ToString().c_str());
  delete copy;
  delete sm;
}

}  // namespace

int main(int argc, char** argv) {
  size_t locks = 1'000'000, leases = 100'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--locks")) locks = std::strtoull(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--leases")) leases = std::strtoull(argv[i + 1], nullptr, 10);
  }
  Throughput();
  Memory(locks, leases);
}
