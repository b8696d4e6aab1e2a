// TermIndex (terms held as runs) and the record codec's checksum.
#include "storage/term_index.h"

#include <gtest/gtest.h>

#include <random>

#include "storage/crc32c.h"
#include "storage/records.h"

namespace lockd::storage {
namespace {

using raft::LogIndex;
using raft::Term;

TEST(TermIndex, AgreesWithAPlainVectorUnderRandomAppendsTruncationsAndCompactions) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    TermIndex idx;
    idx.Reset(LogIndex(round));
    uint64_t after = round;
    std::vector<uint64_t> terms;  // terms[k] is entry after + 1 + k
    uint64_t term = 1;
    for (int step = 0; step < 100; ++step) {
      const int op = static_cast<int>(rng() % 10);
      if (op < 6) {
        if (rng() % 4 == 0) ++term;
        idx.Append(Term(term));
        terms.push_back(term);
      } else if (op < 8 && !terms.empty()) {
        const size_t keep = rng() % (terms.size() + 1);
        idx.TruncateFrom(LogIndex(after + 1 + keep));
        terms.resize(keep);
      } else if (!terms.empty()) {
        const size_t drop = rng() % (terms.size() + 1);
        idx.CompactTo(LogIndex(after + drop));
        terms.erase(terms.begin(), terms.begin() + static_cast<ptrdiff_t>(drop));
        after += drop;
      }
      ASSERT_EQ(idx.first(), LogIndex(after + 1));
      ASSERT_EQ(idx.last(), LogIndex(after + terms.size()));
      for (size_t k = 0; k < terms.size(); ++k) {
        ASSERT_EQ(idx.At(LogIndex(after + 1 + k)), Term(terms[k])) << "round " << round;
      }
      ASSERT_FALSE(idx.At(LogIndex(after)));
      ASSERT_FALSE(idx.At(LogIndex(after + terms.size() + 1)));
      ASSERT_LE(idx.runs(), terms.size());
    }
  }
}

TEST(Crc32c, MatchesTheStandardCheckValueOnBothPaths) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cPortableForTesting("123456789"), 0xE3069283u);
  std::string big(100'003, '\0');
  std::mt19937 rng(1);
  for (auto& c : big) c = static_cast<char>(rng());
  EXPECT_EQ(Crc32c(big), Crc32cPortableForTesting(big));
  EXPECT_EQ(Crc32c(big.substr(10)), Crc32c(big.substr(15), Crc32c(big.substr(10, 5))));
}

TEST(Records, EntriesRoundTripAndEveryFlippedBitAndTruncationIsDetected) {
  const raft::Entry e{Term(3), LogIndex(77), raft::EntryType::kConfChange, "conf-bytes"};
  const std::string rec = EncodeEntry(e);
  auto back = DecodeEntry(LogIndex(77), rec);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, e);
  for (size_t byte = 0; byte < rec.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = rec;
      bad[byte] ^= static_cast<char>(1 << bit);
      EXPECT_FALSE(DecodeEntry(LogIndex(77), bad).ok()) << "byte " << byte << " bit " << bit;
    }
  }
  for (size_t len = 0; len < rec.size(); ++len) {
    EXPECT_FALSE(DecodeEntry(LogIndex(77), rec.substr(0, len)).ok()) << "truncated to " << len;
  }
}

TEST(Records, KeysAreBigEndianSoByteOrderIsIndexOrder) {
  EXPECT_LT(IndexKey(LogIndex(255)), IndexKey(LogIndex(256)));
  EXPECT_LT(IndexKey(LogIndex(1)), IndexKey(LogIndex(1ull << 40)));
  EXPECT_EQ(KeyIndex(IndexKey(LogIndex(0x0102030405060708))), LogIndex(0x0102030405060708));
}

}  // namespace
}  // namespace lockd::storage
