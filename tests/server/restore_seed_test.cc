// The restored cluster's start (guarantee 8): the counters RestoredState computes from a backup
// and the time, and the cluster id entry that carries the starting state.
#include "server/restore_seed.h"

#include <gtest/gtest.h>

#include "lock/state_machine.h"
#include "server/cluster_identity.h"

namespace lockd::server {
namespace {

constexpr uint64_t k2to32 = uint64_t{1} << 32;

/// A plan from a state whose entries were stamped at `stamp`, backed up at `taken`: one lease and
/// one grant, so both counters are 1.
RestorePlan Plan(int64_t stamp, int64_t taken, uint64_t floor = 0) {
  lock::LockStateMachine sm;
  const lock::RequestHeader h1{{{1, 1}, 1}, 1, 0};
  const lock::RequestHeader h2{{{1, 1}, 2}, 1, 0};
  auto granted = sm.ApplyCommand(lock::LogIndex(1), lock::GrantLease{h1, 10'000, "x"}, stamp);
  sm.ApplyCommand(lock::LogIndex(2),
                  lock::Acquire{h2, "n", granted.outcome.lease, lock::Mode::kExclusive, 0, 0, ""},
                  stamp);
  RestorePlan p;
  p.state = sm.Snapshot();
  p.backup.index = 2;
  p.backup.token_counter = sm.token_counter().value();
  p.backup.lease_counter = sm.lease_counter().value();
  p.backup.taken_unix_seconds = taken;
  p.token_floor = floor;
  p.restored_unix_seconds = taken;
  return p;
}

TEST(RestoredState, RaisesBothCountersBy2To32PerWholeSecondPlusOneAndDropsEverything) {
  const RestorePlan p = Plan(1000, 1000);
  auto s = RestoredState(p, {}, 1010);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->token_counter().value(), 1 + 11 * k2to32);
  EXPECT_EQ(s->lease_counter().value(), 1 + 11 * k2to32);
  EXPECT_EQ(s->lease_count(), 0u);
  EXPECT_EQ(s->lock_count(), 0u);
}

TEST(RestoredState, CountsFromTheEarlierOfTheBackupClockAndTheLeaderStamp) {
  // The backup node's clock ran ahead of the leader's stamps: count from the stamp.
  auto ahead = RestoredState(Plan(1000, 1005), {}, 1010);
  ASSERT_TRUE(ahead.ok());
  EXPECT_EQ(ahead->token_counter().value(), 1 + 11 * k2to32);
  // Behind: count from the backup's own clock.
  auto behind = RestoredState(Plan(1000, 990), {}, 1010);
  ASSERT_TRUE(behind.ok());
  EXPECT_EQ(behind->token_counter().value(), 1 + 21 * k2to32);
}

TEST(RestoredState, NeverCountsFromBeforeTheRestoreNorBelowTheFloor) {
  RestorePlan p = Plan(1000, 1000);
  p.restored_unix_seconds = 1020;  // the leader's clock (1010) is behind the restoring machine's
  EXPECT_EQ(RestoredState(p, {}, 1010)->token_counter().value(), 1 + 21 * k2to32);
  p.token_floor = 100 * k2to32;
  EXPECT_EQ(RestoredState(p, {}, 1010)->token_counter().value(), 100 * k2to32);
  EXPECT_EQ(RestoredState(p, {}, 1010)->lease_counter().value(), 100 * k2to32);
}

TEST(RestoredState, AHeaderThatDisagreesWithItsStateIsRefused) {
  RestorePlan p = Plan(1000, 1000);
  p.backup.token_counter = 7;
  EXPECT_FALSE(RestoredState(p, {}, 1010).ok());
  p = Plan(1000, 1000);
  p.state = "garbage";
  EXPECT_FALSE(RestoredState(p, {}, 1010).ok());
}

TEST(RestoredState, ACounterThatWouldOverflowIsRefused) {
  // 2^32 × 2^32 seconds is past 64 bits.
  EXPECT_FALSE(RestoredState(Plan(1, 1), {}, int64_t{1} << 33).ok());
}

TEST(RestoredClusterIdEntry, RoundTripsAndIsAClusterIdEntryTheOldDecoderRefuses) {
  const std::string id = NewRandomId();
  const std::string state = std::string("\x02\x00binary\nstate", 14);
  const std::string e = EncodeRestoredClusterIdEntry(id, state);
  EXPECT_TRUE(IsClusterIdEntry(e));  // never reaches the lock state machine
  EXPECT_TRUE(IsRestoredClusterIdEntry(e));
  EXPECT_FALSE(IsRestoredClusterIdEntry(EncodeClusterIdEntry(id)));
  EXPECT_FALSE(DecodeClusterIdEntry(e).ok()) << "a node reading only version 1 must refuse it";
  auto got = DecodeRestoredClusterIdEntry(e);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->cluster_id, id);
  EXPECT_EQ(got->state, state);
  EXPECT_FALSE(DecodeRestoredClusterIdEntry(EncodeRestoredClusterIdEntry("not hex!", state)).ok());
  EXPECT_FALSE(DecodeRestoredClusterIdEntry(EncodeRestoredClusterIdEntry("", state)).ok());
}

TEST(PlanFromSeed, DecodesTheSeedsBackup) {
  storage::Backup b;
  b.header.index = 9;
  b.header.token_counter = 1;
  b.header.lease_counter = 1;
  b.header.cluster_id = "ab";
  b.state = Plan(1000, 1000).state;
  storage::RestoreSeed seed{5, 1234, storage::EncodeBackup(b)};
  auto plan = PlanFromSeed(seed);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->backup, b.header);
  EXPECT_EQ(plan->state, b.state);
  EXPECT_EQ(plan->token_floor, 5u);
  EXPECT_EQ(plan->restored_unix_seconds, 1234);
  EXPECT_EQ(plan->digest, storage::BackupDigestHex(seed.backup));
  seed.backup.pop_back();
  EXPECT_FALSE(PlanFromSeed(seed).ok());
}

}  // namespace
}  // namespace lockd::server
