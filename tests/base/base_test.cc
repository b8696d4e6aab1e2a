#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/codec.h"
#include "base/host_port.h"
#include "base/status.h"
#include "base/strong_int.h"

namespace lockd {
namespace {

using IdA = StrongInt<struct IdATag>;

TEST(StrongInt, OrdersStepsAndMeasuresDistance) {
  IdA a(5), b(9);
  EXPECT_LT(a, b);
  EXPECT_EQ(a.next(), IdA(6));
  EXPECT_EQ(b - a, 4u);
  EXPECT_EQ(a + 4, b);
  EXPECT_TRUE(IdA().zero());
  static_assert(!std::is_convertible_v<uint64_t, IdA>, "construction must be explicit");
  static_assert(!std::is_convertible_v<StrongInt<struct OtherTag>, IdA>, "tags must not mix");
}

TEST(Status, CarriesCodeAndMessage) {
  Status s = NotFound("lease 42 is unknown");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.ToString(), "NOT_FOUND: lease 42 is unknown");
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(Result, HoldsValueOrError) {
  Result<int> v = 7;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 7);
  Result<int> e = InvalidArgument("bad");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
}

TEST(HostPort, ParsesHostAndPort) {
  auto hp = ParseHostPort("127.0.0.1:7401");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 7401);
  auto v6 = ParseHostPort("[::1]:80");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  for (const char* good :
       {"lock-1.example.com:7401", "node_2:1", "10.0.0.1:65535", "[fe80::1]:7"}) {
    EXPECT_TRUE(ParseHostPort(good).ok()) << good;
  }
}

TEST(HostPort, RejectsMalformedAddressesWithTheReason) {
  const std::string long_host(300, 'a');
  for (const std::string& bad :
       {std::string(), std::string("7401"), std::string("host:"), std::string(":80"),
        std::string("h:0"), std::string("h:65536"), std::string("h:12x"), std::string("[::1:80"),
        // Hosts that would break a whitespace-separated line, or are not hosts at all.
        std::string("a b:7504"), std::string("a\nknown-peer 2 ab:7504"), std::string("a\t:1"),
        std::string("h\0x:1", 4), std::string("a/b:1"), std::string("a%b:1"), std::string("::1:80"),
        std::string("[]:80"), std::string("[a::g]:80"), std::string("[::1]x:80"),
        long_host + ":80"}) {
    auto hp = ParseHostPort(bad);
    EXPECT_FALSE(hp.ok()) << bad;
    EXPECT_EQ(hp.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Clock, BootTimeNeverGoesBackwards) {
  const auto& clock = SystemClock::Instance();
  BootTime prev = clock.Now();
  for (int i = 0; i < 1000; ++i) {
    BootTime now = clock.Now();
    EXPECT_GE(now, prev);
    prev = now;
  }
}

TEST(Clock, ManualClockMovesOnlyWhenTold) {
  ManualClock c;
  BootTime t0 = c.Now();
  EXPECT_EQ(c.Now(), t0);
  c.Advance(std::chrono::milliseconds(5));
  EXPECT_EQ(c.Now() - t0, std::chrono::milliseconds(5));
}

// Found by the lock_snapshot fuzz target: a ten-byte varint whose last byte had bits past the
// 64th was read as 2^64-1 (the high bits dropped), which restored a counter about to wrap.
TEST(Codec, AVarintPast64BitsIsMalformedAndTheLargestOneReads) {
  Writer w;
  w.Varint(UINT64_MAX);
  std::string max = w.Take();
  ASSERT_EQ(max.size(), 10u);
  EXPECT_EQ(static_cast<uint8_t>(max.back()), 1);
  uint64_t v = 0;
  Reader ok(max);
  ASSERT_TRUE(ok.Varint(&v));
  EXPECT_EQ(v, UINT64_MAX);
  for (uint8_t last : {0x02, 0x7f}) {
    std::string past = max;
    past.back() = static_cast<char>(last);
    Reader r(past);
    EXPECT_FALSE(r.Varint(&v)) << int(last);
  }
}

}  // namespace
}  // namespace lockd
