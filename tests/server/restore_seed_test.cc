// The restored cluster's start (guarantee 8): the counters RestoredState computes from a backup
// and the time, and the cluster id entry that carries the starting state.
#include "server/restore_seed.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/clock.h"
#include "lock/state_machine.h"
#include "server/cluster_identity.h"
#include "server/restore.h"
#include "support/process.h"

namespace lockd::server {
namespace {

constexpr uint64_t k2to32 = uint64_t{1} << 32;

/// A backup of a state whose entries were stamped at `stamp`, taken at `taken`: one lease and one
/// grant, so both counters are 1.
storage::Backup BackupOf(int64_t stamp, int64_t taken) {
  lock::LockStateMachine sm;
  const lock::RequestHeader h1{{{1, 1}, 1}, 1, 0};
  const lock::RequestHeader h2{{{1, 1}, 2}, 1, 0};
  auto granted = sm.ApplyCommand(lock::LogIndex(1), lock::GrantLease{h1, 10'000, "x"}, stamp);
  sm.ApplyCommand(lock::LogIndex(2),
                  lock::Acquire{h2, "n", granted.outcome.lease, lock::Mode::kExclusive, 0, 0, ""},
                  stamp);
  storage::Backup b;
  b.state = sm.Snapshot();
  b.header.index = 2;
  b.header.cluster_id = "ab";
  b.header.token_counter = sm.token_counter().value();
  b.header.lease_counter = sm.lease_counter().value();
  b.header.taken_unix_seconds = taken;
  return b;
}

/// The plan of a member restored at `taken` from BackupOf(stamp, taken).
RestorePlan Plan(int64_t stamp, int64_t taken, uint64_t floor = 0) {
  auto plan = PlanFromSeed({floor, taken, storage::EncodeBackup(BackupOf(stamp, taken))});
  EXPECT_TRUE(plan.ok()) << plan.status().ToString();
  return plan.ok() ? *plan : RestorePlan{};
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

TEST(RestoredState, TheLeadersStepNeedsOnlyTheCountersAndTheTime) {
  // Review finding 1: no state in the plan, nothing decoded at election time.
  RestorePlan p;
  p.backup.token_counter = 7;
  p.backup.lease_counter = 3;
  p.counted_from_unix_seconds = 1000;
  p.restored_unix_seconds = 1000;
  auto s = RestoredState(p, {}, 1002);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->token_counter().value(), 7 + 3 * k2to32);
  EXPECT_EQ(s->lease_counter().value(), 3 + 3 * k2to32);
  EXPECT_EQ(s->wall_seconds(), 1002);
  EXPECT_EQ(SecondsCounted(p, 1002), 2);
}

TEST(RestoredState, AClockBehindTheBackupIsRefusedUnlessAFloorIsGiven) {
  // Review finding 2: a clock behind the backup's must not count as zero seconds.
  RestorePlan p = Plan(1000, 1000);
  p.restored_unix_seconds = 900;
  auto behind = RestoredState(p, {}, 950);
  ASSERT_FALSE(behind.ok());
  EXPECT_EQ(behind.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(behind.status().message().find("--token-floor"), std::string::npos);
  // The restoring machine's clock was right: the leader counts from the restore.
  p.restored_unix_seconds = 1005;
  EXPECT_EQ(RestoredState(p, {}, 950)->token_counter().value(), 1 + 6 * k2to32);
  // With a floor, the floor carries the guarantee.
  p.restored_unix_seconds = 900;
  p.token_floor = 50 * k2to32;
  auto floored = RestoredState(p, {}, 950);
  ASSERT_TRUE(floored.ok()) << floored.status().ToString();
  EXPECT_EQ(floored->token_counter().value(), 50 * k2to32);
}

TEST(PlanFromSeed, AHeaderThatDisagreesWithItsStateIsRefused) {
  storage::Backup b = BackupOf(1000, 1000);
  b.header.token_counter = 7;
  EXPECT_FALSE(PlanFromSeed({0, 1000, storage::EncodeBackup(b)}).ok());
  b = BackupOf(1000, 1000);
  b.state = "garbage";
  EXPECT_FALSE(PlanFromSeed({0, 1000, storage::EncodeBackup(b)}).ok());
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

TEST(PlanFromSeed, KeepsTheCountersAndTheTimeCountedFromNotTheState) {
  const storage::Backup b = BackupOf(990, 1000);
  storage::RestoreSeed seed{5, 1234, storage::EncodeBackup(b)};
  auto plan = PlanFromSeed(seed);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->backup, b.header);
  EXPECT_EQ(plan->counted_from_unix_seconds, 990);
  EXPECT_EQ(plan->token_floor, 5u);
  EXPECT_EQ(plan->restored_unix_seconds, 1234);
  EXPECT_EQ(plan->digest, storage::BackupDigestHex(seed.backup));
  seed.backup.pop_back();
  EXPECT_FALSE(PlanFromSeed(seed).ok());
}

/// `lockd restore` of one member from `backup` into `dir`/data with `floor`.
Result<RestoreReport> RestoreMember(const std::string& dir, const storage::Backup& backup,
                                    uint64_t floor) {
  const std::string file = dir + "/backup";
  std::ofstream(file, std::ios::binary) << storage::EncodeBackup(backup);
  RestoreOptions o;
  o.backup_path = file;
  o.data_dir = dir + "/data";
  o.node_id = 1;
  o.initial_cluster = "1=127.0.0.1:1/127.0.0.1:2,2=127.0.0.1:3/127.0.0.1:4";
  o.token_floor = floor;
  return RestoreDataDir(o);
}

std::string BootstrapIdIn(const std::string& dir) {
  auto id = LoadClusterIdentity(dir + "/data");
  EXPECT_TRUE(id.ok() && id->has_value());
  return id.ok() && id->has_value() ? (*id)->bootstrap_id : "";
}

TEST(RestoreDataDir, TheTokenFloorIsPartOfTheBootstrapIdSoMembersMustAgreeOnIt) {
  // Review finding 3: only the first leader's floor is used, so members with different floors
  // must not form one cluster; their peers refuse a different bootstrap id by name.
  const storage::Backup b = BackupOf(WallSeconds() - 10, WallSeconds() - 10);
  testing::TempDir a, same, other;
  ASSERT_TRUE(RestoreMember(a.path(), b, 0).ok());
  ASSERT_TRUE(RestoreMember(same.path(), b, 0).ok());
  ASSERT_TRUE(RestoreMember(other.path(), b, 5 * k2to32).ok());
  EXPECT_EQ(BootstrapIdIn(a.path()), BootstrapIdIn(same.path()));
  EXPECT_NE(BootstrapIdIn(a.path()), BootstrapIdIn(other.path()));
  const std::vector<MemberSpec> members = {{1, "p", "c"}};
  EXPECT_NE(RestoredBootstrapId("lockd", "d", 0, members),
            RestoredBootstrapId("lockd", "d", 1, members));
}

TEST(RestoreDataDir, AClockBehindTheBackupIsRefusedWithNothingWrittenUnlessAFloorIsGiven) {
  // Review finding 2: the backup was taken an hour "later" than this machine's clock.
  const storage::Backup b = BackupOf(WallSeconds() + 3600, WallSeconds() + 3600);
  testing::TempDir dir;
  auto refused = RestoreMember(dir.path(), b, 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data"));
  auto floored = RestoreMember(dir.path(), b, 9 * k2to32);
  ASSERT_TRUE(floored.ok()) << floored.status().ToString();
  EXPECT_EQ(floored->token_counter_now, 9 * k2to32);
  EXPECT_EQ(floored->seconds_counted, 0);
}

TEST(RestoreDataDir, TheReportSaysTheSecondsCounted) {
  const storage::Backup b = BackupOf(WallSeconds() - 100, WallSeconds() - 100);
  testing::TempDir dir;
  auto r = RestoreMember(dir.path(), b, 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GE(r->seconds_counted, 100);
  EXPECT_LE(r->seconds_counted, 100 + 600);  // a slow machine, never an hour
  EXPECT_EQ(r->token_counter_now, 1 + (static_cast<uint64_t>(r->seconds_counted) + 1) * k2to32);
  RestoreOptions o;
  EXPECT_NE(
      FormatRestoreReport(o, *r).find("seconds counted: " + std::to_string(r->seconds_counted)),
      std::string::npos);
}

TEST(RestoreDataDir, TheIdentityRecordsTheBackupAndTheSeedIsRemovedDurablyOnce) {
  // Review finding 9: the node tells a restored data dir by its identity file, and the seed goes
  // once the cluster id is decided.
  const storage::Backup b = BackupOf(WallSeconds() - 10, WallSeconds() - 10);
  testing::TempDir dir;
  auto r = RestoreMember(dir.path(), b, 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto id = LoadClusterIdentity(dir.path() + "/data");
  ASSERT_TRUE(id.ok() && id->has_value());
  EXPECT_EQ((*id)->restored_from, r->digest);
  EXPECT_EQ((*id)->restored_from, storage::BackupDigestHex(storage::EncodeBackup(b)));
  ASSERT_TRUE(std::filesystem::exists(dir.path() + "/data/restore-seed"));
  EXPECT_TRUE(storage::RemoveRestoreSeed(dir.path() + "/data").ok());
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data/restore-seed"));
  EXPECT_TRUE(storage::RemoveRestoreSeed(dir.path() + "/data").ok());  // none: nothing to do
}

TEST(RestoreDataDir, AFolderHoldingAnythingElseIsRefusedAndKeptAsItWas) {
  // Review finding 10: only lost+found and an interrupted restore's identity may be there.
  const storage::Backup b = BackupOf(WallSeconds() - 10, WallSeconds() - 10);
  testing::TempDir dir;
  std::filesystem::create_directories(dir.path() + "/data/lost+found");
  std::ofstream(dir.path() + "/data/other") << "x";
  auto r = RestoreMember(dir.path(), b, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not empty"), std::string::npos) << r.status().ToString();
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/data/other"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data/cluster"));
  std::filesystem::remove(dir.path() + "/data/other");
  r = RestoreMember(dir.path(), b, 0);  // lost+found alone: built in place
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/data/lost+found"));
  // A completed restore (its seed written) is not an interrupted one: refused.
  EXPECT_FALSE(RestoreMember(dir.path(), b, 0).ok());
}

}  // namespace
}  // namespace lockd::server
