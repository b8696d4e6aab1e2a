// Backup files and restore seeds: a round trip, and every kind of damage refused with an error
// that names it (truncated at byte N, checksum mismatch, unknown format version, not a lockd
// backup, trailing bytes) — guarantee 9: bad input changes nothing.
#include "storage/backup_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "storage/crc32c.h"
#include "support/process.h"

namespace lockd::storage {
namespace {

namespace fs = std::filesystem;

Backup Sample(size_t state_bytes) {
  Backup b;
  b.header.index = 12345;
  b.header.term = 7;
  b.header.cluster_id = "0123456789abcdef0123456789abcdef";
  b.header.node_id = 2;
  b.header.token_counter = 99'000;
  b.header.lease_counter = 4'000;
  b.header.taken_unix_seconds = 1'790'000'000;
  std::mt19937_64 rng(42);
  b.state.resize(state_bytes);
  for (auto& c : b.state) c = static_cast<char>(rng());
  return b;
}

TEST(BackupFile, RoundTrips) {
  const Backup b = Sample(3 * kBackupChunkBytes + 17);
  const std::string file = EncodeBackup(b);
  auto got = DecodeBackup(file);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->header, b.header);
  EXPECT_EQ(got->state, b.state);
  // The trailer is the SHA-256 of everything before it, the value the Backup RPC reports.
  EXPECT_EQ(BackupDigestHex(file), Sha256Hex(std::string_view(file).substr(0, file.size() - 32)));
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(BackupFile, AnEmptyStateRoundTrips) {
  const Backup b = Sample(0);
  auto got = DecodeBackup(EncodeBackup(b));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->header, b.header);
  EXPECT_TRUE(got->state.empty());
}

TEST(BackupFile, TruncatedAtEveryChunkBoundaryIsRefusedNamingTheByte) {
  const std::string file = EncodeBackup(Sample(3 * kBackupChunkBytes + 17));
  for (size_t cut = kBackupChunkBytes; cut < file.size(); cut += kBackupChunkBytes) {
    auto got = DecodeBackup(std::string_view(file).substr(0, cut));
    ASSERT_FALSE(got.ok()) << cut;
    EXPECT_NE(got.status().message().find("truncated at byte " + std::to_string(cut)),
              std::string::npos)
        << got.status().message();
  }
}

TEST(BackupFile, TruncatedAtRandomBytesIsRefused) {
  const std::string file = EncodeBackup(Sample(2 * kBackupChunkBytes));
  std::mt19937_64 rng(7);
  std::vector<size_t> cuts = {0, 1, 7, 8, 11, 15, 16, 20, 40, file.size() - 32, file.size() - 1};
  for (int i = 0; i < 200; ++i) cuts.push_back(rng() % file.size());
  for (size_t cut : cuts) {
    auto got = DecodeBackup(std::string_view(file).substr(0, cut));
    ASSERT_FALSE(got.ok()) << cut;
    const std::string& m = got.status().message();
    // Within the magic, a prefix of it is still named a truncation; an empty file is not a backup.
    if (cut == 0) {
      EXPECT_NE(m.find("not a lockd backup"), std::string::npos) << m;
    } else {
      EXPECT_NE(m.find("truncated at byte " + std::to_string(cut)), std::string::npos)
          << cut << ": " << m;
    }
  }
}

TEST(BackupFile, EveryFlippedBitIsRefused) {
  const std::string file = EncodeBackup(Sample(300));
  for (size_t byte = 0; byte < file.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = file;
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
      auto got = DecodeBackup(bad);
      ASSERT_FALSE(got.ok()) << "byte " << byte << " bit " << bit;
      const std::string& m = got.status().message();
      const bool named = m.find("checksum mismatch") != std::string::npos ||
                         m.find("not a lockd backup") != std::string::npos ||
                         m.find("unknown backup format version") != std::string::npos ||
                         m.find("truncated at byte") != std::string::npos ||
                         m.find("impossible") != std::string::npos;
      EXPECT_TRUE(named) << "byte " << byte << " bit " << bit << ": " << m;
    }
  }
}

TEST(BackupFile, AFlippedStateBitIsAChecksumMismatch) {
  std::string file = EncodeBackup(Sample(1000));
  file[file.size() - 32 - 500] ^= 0x10;
  auto got = DecodeBackup(file);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("checksum mismatch"), std::string::npos);
}

TEST(BackupFile, AnotherVersionIsRefusedNamingIt) {
  std::string file = EncodeBackup(Sample(10));
  file[8] = 2;  // the version's low byte, in a header whose checksum holds
  const size_t header_len = static_cast<uint8_t>(file[12]) | (static_cast<uint8_t>(file[13]) << 8);
  const size_t crc_at = 16 + header_len + 8;
  const uint32_t crc = Crc32c(std::string_view(file).substr(0, crc_at));
  for (int i = 0; i < 4; ++i) file[crc_at + i] = static_cast<char>(crc >> (8 * i));
  auto got = DecodeBackup(file);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("unknown backup format version 2"), std::string::npos)
      << got.status().message();
}

TEST(BackupFile, AFlippedVersionBitIsDamageNotAnotherVersion) {
  // Review finding 12: the header checksum covers the version field.
  std::string file = EncodeBackup(Sample(10));
  file[8] ^= 0x02;
  auto got = DecodeBackup(file);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("checksum mismatch in its header"), std::string::npos)
      << got.status().message();
}

TEST(BackupFile, OtherFilesAreNotBackups) {
  for (std::string other : {std::string("LOCKDSNP\x01"), std::string("hello world, not a backup"),
                            std::string("\x89PNG\r\n")}) {
    auto got = DecodeBackup(other);
    ASSERT_FALSE(got.ok());
    EXPECT_NE(got.status().message().find("not a lockd backup"), std::string::npos)
        << got.status().message();
  }
}

TEST(BackupFile, TrailingBytesAreRefused) {
  const std::string file = EncodeBackup(Sample(10)) + "x";
  auto got = DecodeBackup(file);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("1 trailing bytes"), std::string::npos)
      << got.status().message();
}

TEST(BackupFile, ReadBackupFileNamesThePath) {
  lockd::testing::TempDir dir;
  const std::string path = dir.path() + "/b.lockdbak";
  std::string file = EncodeBackup(Sample(100));
  file.resize(file.size() - 5);
  std::ofstream(path, std::ios::binary) << file;
  auto got = ReadBackupFile(path);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find(path), std::string::npos);
  EXPECT_NE(got.status().message().find("truncated at byte"), std::string::npos);
  EXPECT_FALSE(ReadBackupFile(dir.path() + "/missing").ok());
}

TEST(RestoreSeed, RoundTripsThroughItsFile) {
  lockd::testing::TempDir dir;
  auto none = LoadRestoreSeed(dir.path());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  RestoreSeed seed{555, 1'790'000'100, EncodeBackup(Sample(100))};
  ASSERT_TRUE(WriteRestoreSeed(dir.path(), seed).ok());
  auto got = LoadRestoreSeed(dir.path());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->token_floor, 555u);
  EXPECT_EQ((*got)->restored_unix_seconds, 1'790'000'100);
  EXPECT_EQ((*got)->backup, seed.backup);
  EXPECT_FALSE(fs::exists(dir.path() + "/restore-seed.tmp"));
}

TEST(RestoreSeed, DamageIsRefused) {
  std::string data = EncodeRestoreSeed(RestoreSeed{1, 2, EncodeBackup(Sample(100))});
  for (size_t i = 0; i < data.size(); i += 7) {
    std::string bad = data;
    bad[i] ^= 0x01;
    EXPECT_FALSE(DecodeRestoreSeed(bad).ok()) << i;
  }
  EXPECT_FALSE(DecodeRestoreSeed(data.substr(0, data.size() - 1)).ok());
}

}  // namespace
}  // namespace lockd::storage
