// The receiving half of a snapshot transfer: resuming an interrupted transfer, starting over for a
// different one, and refusing chunks out of order, past the end, over the limit or failing the
// checksum.
#include "server/snapshot_assembler.h"

#include <gtest/gtest.h>

#include "storage/crc32c.h"

namespace lockd::server {
namespace {

std::string Payload(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7 + 3);
  return s;
}

SnapshotTransferId IdOf(const std::string& payload, uint64_t index = 100) {
  return SnapshotTransferId{index, 3, payload.size(), storage::Crc32c(payload)};
}

TEST(SnapshotAssembler, AssemblesChunksInOrder) {
  const std::string p = Payload(10'000);
  SnapshotAssembler a(1 << 20);
  ASSERT_EQ(*a.Begin(2, IdOf(p)), 0u);
  for (size_t off = 0; off < p.size(); off += 3000) {
    auto r = a.Add(2, off, std::string_view(p).substr(off, 3000));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, off + 3000 >= p.size());
  }
  EXPECT_EQ(a.Take(2), p);
  EXPECT_EQ(a.held(2), 0u) << "a finished transfer is forgotten";
}

TEST(SnapshotAssembler, AnInterruptedTransferResumesWhereItStopped) {
  const std::string p = Payload(8'000);
  SnapshotAssembler a(1 << 20);
  ASSERT_EQ(*a.Begin(2, IdOf(p)), 0u);
  ASSERT_FALSE(*a.Add(2, 0, std::string_view(p).substr(0, 5'000)));
  // The stream broke; the same transfer begins again and continues at byte 5000.
  ASSERT_EQ(*a.Begin(2, IdOf(p)), 5'000u);
  ASSERT_TRUE(*a.Add(2, 5'000, std::string_view(p).substr(5'000)));
  EXPECT_EQ(a.Take(2), p);
}

TEST(SnapshotAssembler, ADifferentTransferFromTheSameSenderStartsOver) {
  const std::string p = Payload(8'000), q = Payload(9'000);
  SnapshotAssembler a(1 << 20);
  ASSERT_EQ(*a.Begin(2, IdOf(p)), 0u);
  ASSERT_FALSE(*a.Add(2, 0, std::string_view(p).substr(0, 4'000)));
  ASSERT_EQ(*a.Begin(2, IdOf(q, 200)), 0u) << "a newer snapshot replaces the partial one";
  // Another sender's transfer is kept apart.
  ASSERT_EQ(*a.Begin(3, IdOf(p)), 0u);
  ASSERT_TRUE(*a.Add(2, 0, q));
  ASSERT_TRUE(*a.Add(3, 0, p));
  EXPECT_EQ(a.Take(2), q);
  EXPECT_EQ(a.Take(3), p);
}

TEST(SnapshotAssembler, RefusesBadChunksAndKeepsWhatWasGood) {
  const std::string p = Payload(6'000);
  SnapshotAssembler a(1 << 20);
  EXPECT_EQ(a.Add(2, 0, "x").status().code(), StatusCode::kFailedPrecondition)
      << "a chunk before Begin";
  ASSERT_EQ(*a.Begin(2, IdOf(p)), 0u);
  ASSERT_FALSE(*a.Add(2, 0, std::string_view(p).substr(0, 1'000)));
  EXPECT_EQ(a.Add(2, 2'000, "x").status().code(), StatusCode::kInvalidArgument) << "a gap";
  EXPECT_EQ(a.Add(2, 500, "x").status().code(), StatusCode::kInvalidArgument) << "an overlap";
  EXPECT_EQ(a.Add(2, 1'000, std::string(5'001, 'x')).status().code(), StatusCode::kInvalidArgument)
      << "past the end";
  EXPECT_EQ(a.held(2), 1'000u) << "refused chunks change nothing";
}

TEST(SnapshotAssembler, ACorruptPayloadIsDiscardedWhole) {
  std::string p = Payload(4'000);
  const SnapshotTransferId id = IdOf(p);
  p[1234] ^= 1;  // damaged on the way
  SnapshotAssembler a(1 << 20);
  ASSERT_EQ(*a.Begin(2, id), 0u);
  EXPECT_EQ(a.Add(2, 0, p).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(a.held(2), 0u);
  EXPECT_EQ(*a.Begin(2, id), 0u) << "the sender starts over from byte 0";
}

TEST(SnapshotAssembler, RefusesAPayloadAboveTheLimit) {
  SnapshotAssembler a(1000);
  auto r = a.Begin(2, SnapshotTransferId{5, 1, 1001, 0});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("--max-snapshot-bytes"), std::string::npos);
  EXPECT_EQ(a.held(2), 0u);
}

}  // namespace
}  // namespace lockd::server
