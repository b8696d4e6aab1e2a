// The exactly-once table's review fixes: what a retirement costs at a million records (issue 13,
// the review's third finding).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "harness.h"

namespace lockd::lock {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr uint64_t kScale = 20;  // sanitizers are ~10x slower and fatter: a twentieth
#else
constexpr uint64_t kScale = 1;
#endif

double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// A RetireOutcomes touches what it retires and the clients whose watermark moved, not the whole
// table: at a million records, one that retires 1% costs about 1% of a full scan. Prints the
// figures docs/benchmarks.md quotes.
TEST(RetireCost, ARetirementTouchesWhatItRetiresNotTheWholeTable) {
  const uint64_t clients = 100'000 / kScale, per_client = 10;
  const uint64_t n = clients * per_client;
  Limits limits;
  limits.max_outcomes = 2 * n + 10;
  auto sm = std::make_unique<LockStateMachine>(limits);
  uint64_t index = 0;
  const LeaseId lease =
      sm->ApplyCommand(LogIndex(++index), GrantLease{{{{1, 1}, 1}, 1, 0}, 60'000, ""})
          .outcome.lease;
  // Every client sends its requests with watermark 0, round by round, so each client's records
  // are spread over the whole range of indices.
  const uint64_t first = index + 1;
  for (uint64_t s = 1; s <= per_client; ++s) {
    for (uint64_t c = 0; c < clients; ++c) {
      sm->ApplyCommand(LogIndex(++index),
                       Release{{{{2, c + 1}, s}, 1, 0}, "n", lease, FencingToken(9)});
    }
  }
  ASSERT_EQ(sm->exactly_once().records(), n + 1);

  auto start = std::chrono::steady_clock::now();
  sm->ApplyCommand(LogIndex(++index), RetireOutcomes{LogIndex(), LogIndex(), LogIndex(), 0});
  const double nothing_ms = MillisSince(start);
  EXPECT_EQ(sm->exactly_once().records(), n + 1);

  // The oldest 1% by age (and the GrantLease's record, older still).
  start = std::chrono::steady_clock::now();
  sm->ApplyCommand(LogIndex(++index), RetireOutcomes{LogIndex(first - 1),
                                                     LogIndex(first + n / 100 - 1), LogIndex(), 0});
  const double age_ms = MillisSince(start);
  EXPECT_EQ(sm->exactly_once().records(), n - n / 100);

  // 1% of the clients report every request answered (watermark past them all): their records,
  // 1% of the table, go below the watermark.
  const uint64_t movers = clients / 100;
  for (uint64_t c = 0; c < movers; ++c) {
    sm->ApplyCommand(
        LogIndex(++index),
        Release{{{{2, c + 1}, per_client + 1}, 1, per_client + 1}, "n", lease, FencingToken(9)});
  }
  const size_t before = sm->exactly_once().records();
  start = std::chrono::steady_clock::now();
  sm->ApplyCommand(LogIndex(++index),
                   RetireOutcomes{LogIndex(index - 1), LogIndex(), LogIndex(), 0});
  const double watermark_ms = MillisSince(start);
  // Their old records go, less those the age retirement took already; their newest stays (it is
  // at the watermark, not below it).
  const size_t gone = before - sm->exactly_once().records();
  EXPECT_GE(gone, movers * (per_client - 1));
  EXPECT_LE(gone, movers * per_client);
  std::printf(
      "retire at %llu records: %.3f ms retiring nothing, %.3f ms retiring the oldest 1%% by age, "
      "%.3f ms retiring the records of 1%% of the clients below their watermark\n",
      static_cast<unsigned long long>(n), nothing_ms, age_ms, watermark_ms);
}

}  // namespace
}  // namespace lockd::lock
