// Deadlines and abandoned waits against a real cluster (issue 14, defect 1): no call outlives the
// caller's deadline by more than the stated margin (docs/client.md: wait + 500 ms answer
// allowance; we allow 1 s more for a loaded machine), and a wait given up by deadline, stop_token
// or across a leader kill leaves nothing held or queued (checked with GetLock).
#include <gtest/gtest.h>

#include "cluster_harness.h"
#include "lockd/client.h"

namespace lockd::e2e {
namespace {

namespace lc = ::lockd::client;

constexpr Ms kMargin = 500ms + 1000ms;

std::unique_ptr<lc::Client> Connect(Cluster& c) {
  lc::ClientOptions o;
  for (int i = 0; i < c.size(); ++i) o.endpoints.push_back(c.client_addr(i));
  o.call_timeout = 3s;
  auto client = lc::Client::Connect(o);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return std::move(client).value();
}

lc::LockOptions Wait(Ms wait, std::stop_token stop = {}) {
  lc::LockOptions o;
  o.wait = wait;
  o.stop = std::move(stop);
  return o;
}

/// Nothing of `lease` on `name`, neither holding nor waiting, as the leader sees it (waits for
/// the library's background Cancel).
bool NothingOf(lc::Client& c, const std::string& name, uint64_t lease) {
  return testing::WaitFor(
      [&] {
        auto info = c.GetLock(name);
        if (!info.ok()) return false;
        for (const auto& h : info->holders) {
          if (h.lease_id == lease) return false;
        }
        for (const auto& w : info->waiters) {
          if (w.lease_id == lease) return false;
        }
        return true;
      },
      10s);
}

class ClientAbandon : public ::testing::Test {
 protected:
  void SetUp() override {
    leader_ = cluster_.WaitForReady();
    ASSERT_GE(leader_, 0) << cluster_.StatusSummary();
    holder_ = Connect(cluster_);
    waiter_ = Connect(cluster_);
    auto hl = holder_->GrantLease(10s, "holder");
    auto wl = waiter_->GrantLease(10s, "waiter");
    ASSERT_TRUE(hl.ok() && wl.ok());
    holder_lease_ = *hl;
    waiter_lease_ = *wl;
  }

  Cluster cluster_;
  int leader_ = -1;
  std::unique_ptr<lc::Client> holder_, waiter_;
  std::shared_ptr<lc::Lease> holder_lease_, waiter_lease_;
};

TEST_F(ClientAbandon, ATryAndATimedWaitAnswerWithinTheirDeadline) {
  auto held = holder_->Acquire("deadline/a", holder_lease_);
  ASSERT_TRUE(held.ok() && held->held());
  auto start = std::chrono::steady_clock::now();
  auto tried = waiter_->Acquire("deadline/a", waiter_lease_);
  ASSERT_TRUE(tried.ok()) << tried.status().ToString();
  EXPECT_FALSE(tried->acquired());
  EXPECT_EQ(tried->holder_leases(), std::vector<uint64_t>{holder_lease_->id()});
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s) << "call_timeout";

  start = std::chrono::steady_clock::now();
  auto waited = waiter_->Acquire("deadline/a", waiter_lease_, Wait(800ms));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, 800ms + kMargin);
  EXPECT_GE(took, 700ms) << "it waited";
  if (waited.ok()) {
    EXPECT_FALSE(waited->acquired());
  }
  // The holder lets go: the abandoned wait must not be handed the lock.
  ASSERT_TRUE(held->Release().ok());
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(NothingOf(*waiter_, "deadline/a", waiter_lease_->id()));
}

TEST_F(ClientAbandon, AWaitStoppedByItsStopTokenIsWithdrawn) {
  auto held = holder_->Acquire("stop/a", holder_lease_);
  ASSERT_TRUE(held.ok() && held->held());
  std::stop_source stop;
  std::thread stopper([&] {
    Client raw(cluster_);
    EXPECT_TRUE(WaitForWaiters(raw, "stop/a", 1));
    stop.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  auto waited = waiter_->Acquire("stop/a", waiter_lease_, Wait(60s, stop.get_token()));
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 15s);
  ASSERT_FALSE(waited.ok());
  EXPECT_EQ(waited.status().code(), lc::StatusCode::kCancelled) << waited.status().ToString();
  EXPECT_TRUE(NothingOf(*waiter_, "stop/a", waiter_lease_->id()));
  ASSERT_TRUE(held->Release().ok());
  std::this_thread::sleep_for(300ms);
  auto info = waiter_->GetLock("stop/a");
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->holders.empty()) << "the withdrawn wait was not granted";
}

TEST_F(ClientAbandon, AWaitAcrossALeaderKillEndsByItsDeadlineAndLeavesNothing) {
  auto held = holder_->Acquire("kill/a", holder_lease_);
  ASSERT_TRUE(held.ok() && held->held());
  std::atomic<bool> done{false};
  lc::Status status;
  bool acquired = false;
  const Ms wait = 4000ms;
  const auto start = std::chrono::steady_clock::now();
  std::thread waiting([&] {
    auto r = waiter_->Acquire("kill/a", waiter_lease_, Wait(wait));
    status = r.ok() ? lc::Status::Ok() : r.status();
    acquired = r.ok() && r->acquired();
    if (r.ok()) (void)r->Release();
    done = true;
  });
  {
    Client raw(cluster_);
    ASSERT_TRUE(WaitForWaiters(raw, "kill/a", 1));
  }
  cluster_.Kill(leader_);
  waiting.join();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, wait + kMargin) << status.ToString();
  EXPECT_FALSE(acquired);
  ASSERT_GE(cluster_.WaitForReady(), 0) << cluster_.StatusSummary();
  ASSERT_TRUE(held->Release().ok());
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(NothingOf(*waiter_, "kill/a", waiter_lease_->id()));
}

}  // namespace
}  // namespace lockd::e2e
