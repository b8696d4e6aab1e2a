// The loss rules of design guarantee 5 on a fake clock (LeaseCore, src/client/lease_core.h): late
// answers after valid_until, replayed and out-of-order answers, loss decided once, and a Lock lost
// when a renewal sent after its grant no longer lists its token (issue 14, defects 2 and 4).
#include "client/lease_core.h"

#include <gtest/gtest.h>

#include <atomic>

namespace lockd::client {
namespace {

using namespace std::chrono_literals;

class FakeClock {
 public:
  TimePoint now() const { return TimePoint(std::chrono::nanoseconds(nanos_.load())); }
  void Advance(std::chrono::nanoseconds d) { nanos_ += d.count(); }
  NowFn fn() {
    return [this] { return now(); };
  }

 private:
  std::atomic<int64_t> nanos_{1'000'000'000};
};

constexpr auto kTtl = 2000ms;
constexpr auto kMargin = 140ms;  // 2 · 1% · 2 s + 100 ms

class LeaseCoreTest : public ::testing::Test {
 protected:
  LeaseCoreTest() : lease_(7, kTtl, kMargin, clock_.fn(), true) {
    t0_ = clock_.now();
    lease_.Anchor(t0_);
    lease_.loss().OnLost([this](const std::string& r) {
      ++fired_;
      reason_ = r;
    });
  }

  std::shared_ptr<LockCore> MakeLock(uint64_t token) {
    auto l = std::make_shared<LockCore>();
    l->name = "seat/" + std::to_string(token);
    l->token = l->fence = token;
    l->acquired = true;
    return l;
  }

  FakeClock clock_;
  LeaseCore lease_;
  TimePoint t0_;
  int fired_ = 0;
  std::string reason_;
};

TEST_F(LeaseCoreTest, ValidUntilIsTheGrantsSendTimePlusTtlMinusMargin) {
  EXPECT_EQ(lease_.ValidUntil(), t0_ + kTtl - kMargin);
  clock_.Advance(kTtl - kMargin - 1ns);
  EXPECT_TRUE(lease_.Valid());
  clock_.Advance(1ns);  // exactly at valid_until: lost
  EXPECT_FALSE(lease_.Valid());
  EXPECT_EQ(fired_, 1);
}

TEST_F(LeaseCoreTest, ARenewalIsCountedFromItsSendNotItsAnswer) {
  clock_.Advance(600ms);
  lease_.RenewalSent(1, clock_.now());
  clock_.Advance(400ms);  // the answer takes 400 ms
  EXPECT_EQ(lease_.Acknowledged(1, clock_.now(), std::nullopt), LeaseCore::Answer::kApplied);
  EXPECT_EQ(lease_.ValidUntil(), t0_ + 600ms + kTtl - kMargin);
}

TEST_F(LeaseCoreTest, ALateAnswerAfterValidUntilIsIgnoredAndTheLossIsFinal) {
  clock_.Advance(600ms);
  lease_.RenewalSent(1, clock_.now());
  // Nobody looked at the lease when valid_until passed; the answer arrives after it.
  clock_.Advance(kTtl);
  EXPECT_EQ(lease_.Acknowledged(1, clock_.now(), std::nullopt), LeaseCore::Answer::kLateLost);
  EXPECT_FALSE(lease_.Valid());
  EXPECT_EQ(lease_.ValidUntil(), t0_ + kTtl - kMargin) << "a late answer must not extend it";
  EXPECT_TRUE(lease_.loss().token().stop_requested());
  // Later renewals and answers change nothing; the signal fired once.
  lease_.RenewalSent(2, clock_.now());
  EXPECT_EQ(lease_.Acknowledged(2, clock_.now(), std::nullopt), LeaseCore::Answer::kLateLost);
  EXPECT_FALSE(lease_.Valid());
  EXPECT_EQ(fired_, 1);
  EXPECT_NE(reason_.find("in time"), std::string::npos) << reason_;
}

TEST_F(LeaseCoreTest, AReplayedOrUnknownAnswerIsNotARenewal) {
  clock_.Advance(500ms);
  lease_.RenewalSent(1, clock_.now());
  ASSERT_EQ(lease_.Acknowledged(1, clock_.now(), std::nullopt), LeaseCore::Answer::kApplied);
  const auto until = lease_.ValidUntil();
  clock_.Advance(500ms);
  EXPECT_EQ(lease_.Acknowledged(1, clock_.now(), std::nullopt), LeaseCore::Answer::kUnknownSeq);
  EXPECT_EQ(lease_.Acknowledged(99, clock_.now(), std::nullopt), LeaseCore::Answer::kUnknownSeq);
  EXPECT_EQ(lease_.ValidUntil(), until);
}

TEST_F(LeaseCoreTest, OutOfOrderAnswersKeepTheLatestSend) {
  clock_.Advance(300ms);
  lease_.RenewalSent(1, clock_.now());
  clock_.Advance(300ms);
  lease_.RenewalSent(2, clock_.now());
  EXPECT_EQ(lease_.Acknowledged(2, clock_.now(), std::nullopt), LeaseCore::Answer::kApplied);
  EXPECT_EQ(lease_.Acknowledged(1, clock_.now(), std::nullopt), LeaseCore::Answer::kApplied);
  EXPECT_EQ(lease_.ValidUntil(), t0_ + 600ms + kTtl - kMargin);
}

TEST_F(LeaseCoreTest, LoseIsOnceAndLosesEveryLock) {
  auto a = MakeLock(5), b = MakeLock(6);
  lease_.AddLock(a, 5, 0);
  lease_.AddLock(b, 6, 0);
  int lock_fired = 0;
  a->loss.OnLost([&](const std::string&) { ++lock_fired; });
  lease_.Lose("NOT_FOUND from the server");
  lease_.Lose("again");
  EXPECT_EQ(fired_, 1);
  EXPECT_EQ(lease_.loss().reason(), "NOT_FOUND from the server");
  EXPECT_TRUE(a->loss.lost());
  EXPECT_TRUE(b->loss.lost());
  EXPECT_EQ(lock_fired, 1);
  // A lock registered after the loss (its grant raced it) is lost at once.
  auto c = MakeLock(7);
  lease_.AddLock(c, 7, 0);
  EXPECT_TRUE(c->loss.lost());
}

TEST_F(LeaseCoreTest, AMissingTokenLosesTheLockOnlyForARenewalSentAfterTheGrantArrived) {
  auto lock = MakeLock(42);
  clock_.Advance(100ms);
  lease_.RenewalSent(4, clock_.now());  // in flight when the grant answer arrives
  lease_.AddLock(lock, 42, /*seq_floor=*/4);
  // Renewal 4 may have been answered before the grant was applied: its silence proves nothing.
  ASSERT_EQ(lease_.Acknowledged(4, clock_.now(), std::vector<uint64_t>{}),
            LeaseCore::Answer::kApplied);
  EXPECT_FALSE(lock->loss.lost());
  lease_.RenewalSent(5, clock_.now());
  ASSERT_EQ(lease_.Acknowledged(5, clock_.now(), std::vector<uint64_t>{42, 43}),
            LeaseCore::Answer::kApplied);
  EXPECT_FALSE(lock->loss.lost());
  // The server does not say: nothing is judged.
  lease_.RenewalSent(6, clock_.now());
  ASSERT_EQ(lease_.Acknowledged(6, clock_.now(), std::nullopt), LeaseCore::Answer::kApplied);
  EXPECT_FALSE(lock->loss.lost());
  // An operator force-released it: the next renewal's answer lacks the token.
  lease_.RenewalSent(7, clock_.now());
  ASSERT_EQ(lease_.Acknowledged(7, clock_.now(), std::vector<uint64_t>{43}),
            LeaseCore::Answer::kApplied);
  EXPECT_TRUE(lock->loss.lost());
  EXPECT_NE(lock->loss.reason().find("force-released"), std::string::npos);
  EXPECT_TRUE(lease_.Valid()) << "the lease itself is still renewed";
}

TEST_F(LeaseCoreTest, ARemovedLockIsNotJudged) {
  auto lock = MakeLock(42);
  lease_.AddLock(lock, 42, 0);
  lease_.RemoveLock(lock.get());
  lease_.RenewalSent(1, clock_.now());
  ASSERT_EQ(lease_.Acknowledged(1, clock_.now(), std::vector<uint64_t>{}),
            LeaseCore::Answer::kApplied);
  EXPECT_FALSE(lock->loss.lost());
}

TEST(LossSignalTest, CallbacksAddedAfterTheLossRunAtOnce) {
  LossSignal s;
  EXPECT_TRUE(s.Lose("why"));
  EXPECT_FALSE(s.Lose("again"));
  std::string got;
  s.OnLost([&](const std::string& r) { got = r; });
  EXPECT_EQ(got, "why");
  EXPECT_TRUE(s.token().stop_requested());
}

TEST(LossSignalTest, ADisarmedSignalRunsNoCallbackButStillSignalsItsStopToken) {
  LossSignal s;
  bool ran = false;
  s.OnLost([&](const std::string&) { ran = true; });
  s.Disarm();
  s.OnLost([&](const std::string&) { ran = true; });
  EXPECT_TRUE(s.Lose("why"));
  EXPECT_FALSE(ran);
  EXPECT_TRUE(s.token().stop_requested());
}

TEST(LossSignalTest, ACallbackMayDisarmItsOwnSignal) {
  LossSignal s;
  int ran = 0;
  s.OnLost([&](const std::string&) {
    ++ran;
    s.Disarm();  // e.g. a callback that releases its own lock: must not wait for itself
  });
  s.OnLost([&](const std::string&) { ++ran; });
  EXPECT_TRUE(s.Lose("why"));
  EXPECT_EQ(ran, 1) << "the second callback came after the disarm";
}

TEST_F(LeaseCoreTest, NoRenewalIsRecordedAfterTheLossAndValidUntilIsFrozen) {
  clock_.Advance(300ms);
  ASSERT_TRUE(lease_.RenewalSent(1, clock_.now()));
  lease_.Lose("revoked");
  const auto until = lease_.ValidUntil();
  EXPECT_FALSE(lease_.RenewalSent(2, clock_.now())) << "no renewal goes out after the loss";
  EXPECT_EQ(lease_.Acknowledged(1, clock_.now(), std::nullopt), LeaseCore::Answer::kLateLost);
  EXPECT_EQ(lease_.ValidUntil(), until);
  EXPECT_TRUE(lease_.Lost());
}

}  // namespace
}  // namespace lockd::client
