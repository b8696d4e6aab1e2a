// The exactly-once table stays bounded (issue 13, defect 1): one-shot clients, raw clients that
// never send a watermark, and Cancels in advance of arbitrary ids, applied with RetireOutcomes
// entries interleaved the way the leader proposes them. Prints the table size, the snapshot size
// and the process RSS as it goes, and the state machine's bytes per record.
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <fstream>

#include "harness.h"
#include "lock/exactly_once_retirement.h"

namespace lockd::lock {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr uint64_t kScale = 10;  // sanitizers are ~10x slower: a tenth of the counts
#else
constexpr uint64_t kScale = 1;
#endif

double RssMiB() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return double(resident) * double(sysconf(_SC_PAGESIZE)) / 1048576.0;
}

/// A state machine driven on a simulated clock (1 ms per entry), with the leader's retirement.
struct Driver {
  // Scaled with the counts, so a sanitizer run spans as many windows.
  static constexpr uint64_t kFwdMs = 10'000 / kScale;
  static constexpr uint64_t kWindowMs = 20'000 / kScale;  ///< W, small: the run spans many

  explicit Driver(Limits limits) : sm(limits), leader({kFwdMs, kWindowMs, 0.01}) {
    leader.Start(0, 0);
  }

  ApplyResult Do(const Command& c) {
    ApplyResult r = sm.ApplyCommand(LogIndex(++index), c);
    // The leader's side, as Replica::ProposeRetirement runs it.
    if (auto retire = leader.Due(index, LogIndex(index), sm.exactly_once().age_samples())) {
      sm.ApplyCommand(LogIndex(++index), *retire);
      ++retirements;
    }
    return r;
  }
  uint64_t now_ms() const { return index; }

  LockStateMachine sm;
  RetirementPlanner leader;
  uint64_t index = 0;
  uint64_t retirements = 0;
};

void Report(const char* phase, uint64_t requests, const Driver& d) {
  std::printf(
      "%-28s requests %8llu  records %7zu  clients %7zu  snapshot %6.1f MiB  RSS %6.1f MiB\n",
      phase, static_cast<unsigned long long>(requests), d.sm.exactly_once().records(),
      d.sm.exactly_once().clients(), d.sm.Snapshot().size() / 1048576.0, RssMiB());
}

TEST(Retention, OneShotAndRawClientsLeaveTheTableTheSnapshotAndTheRssBounded) {
  Limits limits;
  Driver d(limits);
  // At 1 entry per simulated ms, what can be alive: everything of the last W + 2 F_fwd (a record
  // waits up to one F_fwd for the next RetireOutcomes), a lease's TTL more for its client.
  const uint64_t bound = Driver::kWindowMs + 2 * Driver::kFwdMs + 10'000 / kScale;

  // --- 100k one-shot clients: each a new client id sending one request (seq 1), as each
  // `lockctl` run or SET NX PX caller does. Per round: a one-lock Acquire (a lease of its own),
  // its Release by another one-shot client, a Release with a wrong token, a Cancel in advance
  // naming an arbitrary Acquire of yet another client. The one-lock leases expire after their TTL
  // (the leader's ExpireLease).
  const uint64_t one_shot = 100'000 / kScale;
  uint64_t next_client = 1'000'000;
  std::deque<std::pair<uint64_t, LeaseId>> to_expire;  // (deadline ms, lease)
  const auto fresh = [&] { return RequestHeader{{{7, ++next_client}, 1}, 1, 0}; };
  const auto expire_due = [&] {
    while (!to_expire.empty() && to_expire.front().first <= d.now_ms()) {
      d.Do(ExpireLease{to_expire.front().second});
      to_expire.pop_front();
    }
  };
  double rss_warm = 0;
  size_t records_warm = 0, snapshot_warm = 0;
  const auto warm_up = [&] {
    if (rss_warm == 0 && d.now_ms() > 2 * bound) {
      rss_warm = RssMiB();
      records_warm = d.sm.exactly_once().records();
      snapshot_warm = d.sm.Snapshot().size();
    }
  };
  uint64_t requests = 0;
  for (uint64_t i = 0; requests < one_shot; ++i) {
    const std::string name = "job/" + std::to_string(i % 1000);
    auto a = d.Do(Acquire{fresh(), name, LeaseId(), Mode::kExclusive, 0, 10'000, "once"});
    ASSERT_TRUE(a.outcome.acquired) << a.outcome.message;
    to_expire.emplace_back(d.now_ms() + 10'000 / kScale, a.outcome.lease);
    ASSERT_TRUE(d.Do(Release{fresh(), name, a.outcome.lease, a.outcome.token}).outcome.ok());
    ASSERT_EQ(d.Do(Release{fresh(), name, a.outcome.lease, FencingToken(1)}).outcome.code,
              StatusCode::kFailedPrecondition);
    const RequestHeader canceller = fresh();  // a one-shot client giving up an Acquire of its own
    const RequestId own_later{canceller.id.client, canceller.id.seq + 5};
    ASSERT_EQ(d.Do(Cancel{canceller, name, LeaseId(), own_later}).outcome.effect,
              CancelEffect::kCancelledInAdvance);
    requests += 4;
    expire_due();
    if (requests % (one_shot / 4) < 4) Report("one-shot clients", requests, d);
    warm_up();
    EXPECT_LE(d.sm.exactly_once().records(), 2 * bound) << "after " << requests;
  }
  Report("one-shot clients: done", requests, d);

  // --- 1M raw requests with watermark 0 from a handful of clients that hold a lease: Acquire /
  // Release pairs and failing try-locks. Now and then a retry inside the window (answered from
  // its record, not run again) and one far outside it (refused, not run again).
  const uint64_t raw = 1'000'000 / kScale;
  std::map<ClientId, uint64_t> seq;
  const auto raw_header = [&](const ClientId& c) { return RequestHeader{{c, ++seq[c]}, 1, 0}; };
  std::vector<ClientId> clients;
  std::vector<LeaseId> leases;
  for (uint64_t k = 0; k < 4; ++k) {
    clients.push_back({3, k + 1});
    auto g = d.Do(GrantLease{raw_header(clients.back()), 3'600'000, "raw"});
    ASSERT_TRUE(g.outcome.ok());
    leases.push_back(g.outcome.lease);
  }
  struct Sent {
    Command command;
    ApplyResult result;
    uint64_t at_ms;
  };
  std::deque<Sent> recent;  // the last W/2 of releases, for retries inside the window
  uint64_t retried_inside = 0, retried_outside = 0;
  std::optional<Sent> old;  // a release from long ago, retried after 3 W
  for (uint64_t n = 0; n < raw;) {
    const size_t k = n % clients.size();
    const std::string name = "raw/" + std::to_string(n % 100);
    auto a = d.Do(Acquire{raw_header(clients[k]), name, leases[k], Mode::kExclusive, 0, 0, ""});
    ASSERT_TRUE(a.outcome.acquired) << a.outcome.message;
    // Another client's try-lock on it fails (a logged, recorded answer: a retry or a raw client).
    auto t = d.Do(Acquire{raw_header(clients[(k + 1) % clients.size()]), name,
                          leases[(k + 1) % clients.size()], Mode::kExclusive, 0, 0, ""});
    ASSERT_FALSE(t.outcome.acquired);
    Command rel = Release{raw_header(clients[k]), name, leases[k], a.outcome.token};
    auto r = d.Do(rel);
    ASSERT_TRUE(r.outcome.ok()) << r.outcome.message;
    n += 3;
    expire_due();
    warm_up();
    recent.push_back({rel, r, d.now_ms()});
    while (d.now_ms() - recent.front().at_ms > Driver::kWindowMs / 2) recent.pop_front();
    if (!old) old = recent.back();
    if (n % 997 < 3) {
      // Inside the window: the first outcome, and nothing happens (no event, no token).
      const Sent& s = recent.front();
      const uint64_t tokens = d.sm.token_counter().value();
      auto again = d.Do(s.command);
      ASSERT_EQ(again.outcome, s.result.outcome) << "a retry inside the window";
      ASSERT_TRUE(again.events.empty()) << "a retry inside the window ran again";
      ASSERT_EQ(d.sm.token_counter().value(), tokens);
      ++retried_inside;
    }
    if (old && d.now_ms() - old->at_ms > 3 * Driver::kWindowMs) {
      // Far outside the window, from a client that still has its lease: refused, not run again.
      auto again = d.Do(old->command);
      ASSERT_EQ(again.outcome.code, StatusCode::kFailedPrecondition) << again.outcome.message;
      ASSERT_NE(again.outcome.message.find("retention window"), std::string::npos);
      ASSERT_TRUE(again.events.empty());
      ++retried_outside;
      old.reset();
    }
    if (n % (raw / 4) < 3) Report("raw clients, watermark 0", requests + n, d);
    EXPECT_LE(d.sm.exactly_once().records(), 2 * bound) << "after " << n << " raw requests";
  }
  Report("raw clients: done", requests + raw, d);
  const double rss_end = RssMiB();
  const size_t snapshot_end = d.sm.Snapshot().size();
  std::printf(
      "%llu RetireOutcomes; %llu retries inside the window answered once, %llu after it refused; "
      "RSS %.1f MiB after warm-up, %.1f MiB at the end; snapshot %zu B after warm-up, %zu B at "
      "the end\n",
      static_cast<unsigned long long>(d.retirements),
      static_cast<unsigned long long>(retried_inside),
      static_cast<unsigned long long>(retried_outside), rss_warm, rss_end, snapshot_warm,
      snapshot_end);
  EXPECT_GT(retried_inside, 0u);
  EXPECT_GT(retried_outside, 0u);
  EXPECT_GT(records_warm, 0u);
  // Bounded: a run many windows long ends where it was after two windows, within a factor that
  // does not grow with the count (the counts above are 1.1M requests, the bound ~50k records).
  EXPECT_LE(d.sm.exactly_once().records(), 2 * bound);
  EXPECT_LE(snapshot_end, 3 * snapshot_warm + (1 << 20));
  if (kScale == 1) {  // sanitizers hold freed memory in quarantine
    EXPECT_LE(rss_end, rss_warm + 128.0) << "RSS grew with the number of requests";
  }
}

TEST(Retention, WithoutRetirementTheCapsBoundTheTableAndRetriesAreStillAnswered) {
  Limits limits;
  limits.max_outcomes = 20'000;
  limits.max_outcomes_per_client = 5'000;
  testing::Harness h(limits);
  // One raw client (watermark 0): stops at its own cap.
  const ClientId raw{4, 4};
  LeaseId lease = h.Do(GrantLease{{{raw, 1}, 1, 0}, 60'000, ""}).outcome.lease;
  ApplyResult first;
  uint64_t refused = 0;
  for (uint64_t s = 2; s <= 6'000; ++s) {
    auto r = h.sm.ApplyCommand(LogIndex(++h.index),
                               Release{{{raw, s}, 1, 0}, "n", lease, FencingToken(s)});
    if (s == 2) first = r;
    if (r.outcome.code == StatusCode::kResourceExhausted) {
      ++refused;
      EXPECT_NE(r.outcome.message.find("--max-outcomes-per-client=5000"), std::string::npos)
          << r.outcome.message;
    }
  }
  EXPECT_EQ(h.sm.exactly_once().records(), 5'000u);
  EXPECT_EQ(refused, 1'000u);
  // At the cap, a retry of a recorded request is still answered from its record.
  auto retry = h.sm.ApplyCommand(LogIndex(++h.index),
                                 Release{{{raw, 2}, 2, 0}, "n", lease, FencingToken(2)});
  EXPECT_EQ(retry.outcome, first.outcome);
  // Many one-shot clients: stop at the global cap, and leave no trace when refused.
  uint64_t global_refused = 0;
  for (uint64_t c = 1; c <= 20'000; ++c) {
    auto r = h.sm.ApplyCommand(LogIndex(++h.index),
                               Release{{{{5, c}, 1}, 1, 0}, "n", lease, FencingToken(1)});
    if (r.outcome.code == StatusCode::kResourceExhausted) {
      ++global_refused;
      EXPECT_NE(r.outcome.message.find("--max-outcomes=20000"), std::string::npos)
          << r.outcome.message;
    }
  }
  EXPECT_GT(global_refused, 0u);
  EXPECT_LE(h.sm.exactly_once().size(), 20'000u);
  h.sm.CheckInvariants();
}

TEST(Retention, BytesPerRecordAndPerClient) {
  const uint64_t n = 100'000 / kScale;
  Limits limits;
  limits.max_outcomes = 4 * n;
  limits.max_outcomes_per_client = 2 * n;
  auto* sm = new LockStateMachine(limits);
  uint64_t index = 0;
  LeaseId lease = sm->ApplyCommand(LogIndex(++index), GrantLease{{{{1, 1}, 1}, 1, 0}, 60'000, ""})
                      .outcome.lease;
  const size_t before = mallinfo2().uordblks;
  // One client, n requests with watermark 0: a record each (a Release with a wrong token, whose
  // outcome carries a message, as most refusals do).
  for (uint64_t s = 2; s < n + 2; ++s) {
    sm->ApplyCommand(LogIndex(++index), Release{{{{1, 1}, s}, 1, 0}, "n", lease, FencingToken(9)});
  }
  const size_t one_client = mallinfo2().uordblks;
  // n one-shot clients: a client record and an outcome each.
  for (uint64_t c = 0; c < n; ++c) {
    sm->ApplyCommand(LogIndex(++index),
                     Release{{{{2, c + 1}, 1}, 1, 0}, "n", lease, FencingToken(9)});
  }
  const size_t one_shot = mallinfo2().uordblks;
  const double per_record = double(one_client - before) / double(n);
  const double per_client = double(one_shot - one_client) / double(n);
  std::printf(
      "memory: %.0f B per exactly-once record (one client, %llu requests), %.0f B per one-shot "
      "client (its record and its outcome); snapshot %.0f B per record\n",
      per_record, static_cast<unsigned long long>(n), per_client,
      double(sm->Snapshot().size()) / double(2 * n));
  EXPECT_EQ(sm->exactly_once().records(), 2 * n + 1);
  // Everything retired by age: the table is back to the lease's client alone.
  sm->ApplyCommand(LogIndex(index + 1),
                   RetireOutcomes{LogIndex(index), LogIndex(index), LogIndex(), 0});
  EXPECT_EQ(sm->exactly_once().records(), 0u);
  EXPECT_EQ(sm->exactly_once().clients(), 1u) << "the client with a lease keeps its record";
  if (kScale == 1) {
    EXPECT_GT(per_record, 0);  // sanitizers' allocators do not fill mallinfo2
  }
  delete sm;
}

TEST(Retention, ARecordOlderThanTheWindowIsRetiredWhateverTheWatermarkAndItsRetryIsNotRunAgain) {
  testing::Harness h;
  const ClientId raw{6, 6};
  auto g = h.Do(GrantLease{{{raw, 1}, 1, 0}, 60'000, ""});
  const LeaseId lease = g.outcome.lease;
  auto a = h.Do(Acquire{{{raw, 2}, 1, 0}, "n", lease, Mode::kExclusive, 0, 0, ""});
  ASSERT_TRUE(a.outcome.acquired);
  const LogIndex recorded(h.index);
  // Inside the window (the age bound below it): answered from the record, watermark 0 or not.
  h.Do(RetireOutcomes{LogIndex(h.index), LogIndex(recorded.value() - 1), LogIndex(), 0});
  auto inside = h.Do(Acquire{{{raw, 2}, 2, 0}, "n", lease, Mode::kExclusive, 0, 0, ""});
  EXPECT_EQ(inside.outcome, a.outcome);
  EXPECT_TRUE(inside.events.empty());
  // Past it: retired although the watermark never passed it; the retry is refused, not run.
  h.Do(RetireOutcomes{LogIndex(h.index), recorded, LogIndex(), 0});
  EXPECT_EQ(h.sm.exactly_once().records(), 0u);
  auto after = h.Do(Acquire{{{raw, 2}, 3, 0}, "n", lease, Mode::kExclusive, 0, 0, ""});
  EXPECT_EQ(after.outcome.code, StatusCode::kFailedPrecondition);
  EXPECT_NE(after.outcome.message.find("--outcome-retention-ms"), std::string::npos);
  EXPECT_TRUE(after.events.empty());
  EXPECT_EQ(h.sm.exactly_once().records(), 0u) << "a refusal is not recorded";
  // A new request of the same client runs as usual.
  EXPECT_TRUE(h.Do(Release{{{raw, 3}, 1, 0}, "n", lease, a.outcome.token}).outcome.ok());
}

TEST(Retention, APendingWaitKeepsItsRecordAndItsFinalAnswerGetsAWholeWindow) {
  testing::Harness h;
  LeaseId a = h.Lease(), b = h.Lease();
  auto held = h.Acquire("n", a);
  RequestHeader wh;
  ASSERT_TRUE(h.Acquire("n", b, Mode::kExclusive, 60'000, &wh).outcome.waiting);
  h.Do(RetireOutcomes{LogIndex(h.index), LogIndex(h.index), LogIndex(), 0});
  auto rejoin = h.Do(Acquire{wh, "n", b, Mode::kExclusive, 60'000, 0, ""});
  EXPECT_TRUE(rejoin.outcome.waiting) << "the retry rejoins the wait: its record was kept";
  EXPECT_EQ(h.sm.GetLock("n")->waiters.size(), 1u);
  auto rel = h.Release("n", a, held.outcome.token);
  ASSERT_EQ(rel.completions.size(), 1u);
  const LogIndex completed(h.index);
  h.Do(RetireOutcomes{LogIndex(h.index), LogIndex(completed.value() - 1), LogIndex(), 0});
  auto retry = h.Do(Acquire{wh, "n", b, Mode::kExclusive, 60'000, 0, ""});
  EXPECT_EQ(retry.outcome, rel.completions[0].outcome) << "aged from its completion";
}

TEST(Retention, AClientRecordLastsWhileItHasALeaseAndAWindowAfter) {
  testing::Harness h;
  const ClientId cl{8, 8};
  const LeaseId lease = h.Do(GrantLease{{{cl, 1}, 1, 1}, 60'000, ""}).outcome.lease;
  h.Do(Release{{{cl, 2}, 1, 2}, "n", lease, FencingToken(1)});
  h.Do(RetireOutcomes{LogIndex(h.index), LogIndex(h.index), LogIndex(), 0});
  EXPECT_EQ(h.sm.exactly_once().clients(), 1u) << "it has a lease";
  EXPECT_EQ(h.Do(GrantLease{{{cl, 1}, 2, 1}, 60'000, ""}).outcome.code,
            StatusCode::kFailedPrecondition)
      << "below its watermark: still refused";
  h.Do(ExpireLease{lease});
  const LogIndex ended(h.index);
  h.Do(RetireOutcomes{LogIndex(h.index), LogIndex(ended.value() - 1), LogIndex(), 0});
  EXPECT_EQ(h.sm.exactly_once().clients(), 1u) << "a window after the lease ended";
  h.Do(RetireOutcomes{LogIndex(h.index), ended, LogIndex(), 0});
  EXPECT_EQ(h.sm.exactly_once().clients(), 0u);
}

TEST(Retention, AVersion1SnapshotIsReadAndANewerOneRefused) {
  // Written by hand in the version 1 layout: one lease, no locks, one client with one record.
  Writer w;
  w.U8(1);
  w.Varint(0);  // token counter
  w.Varint(1);  // lease counter
  w.Varint(3);  // applied
  w.Varint(0);  // wall seconds
  w.Varint(1);  // leases
  w.Varint(1);  // id
  w.Varint(60'000);
  w.Bytes("");
  w.Fixed64(1);  // granted by {1,1}/1
  w.Fixed64(1);
  w.Varint(1);
  w.Varint(0);  // locks
  w.Varint(1);  // exactly-once clients
  w.Fixed64(1);
  w.Fixed64(1);
  w.Varint(1);    // watermark (no forgotten_through in version 1)
  w.Varint(3);    // last active
  w.Varint(1);    // records
  w.Varint(1);    // seq
  w.Fixed64(42);  // digest
  w.Varint(3);    // recorded at
  w.U8(0);
  Outcome o;
  o.lease = LeaseId(1);
  o.ttl_ms = 60'000;
  EncodeOutcome(w, o);
  auto sm = LockStateMachine::Restore(w.data(), {});
  ASSERT_TRUE(sm.ok()) << sm.status().ToString();
  EXPECT_EQ(sm->exactly_once().records(), 1u);
  EXPECT_EQ(sm->lease_count(), 1u);
  std::string now = sm->Snapshot();
  EXPECT_EQ(now[0], kSnapshotFormatVersion);
  auto back = LockStateMachine::Restore(now, {});
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == *sm);
  now[0] = kSnapshotFormatVersion + 1;
  auto newer = LockStateMachine::Restore(now, {});
  EXPECT_EQ(newer.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(newer.status().message().find("newer"), std::string::npos);
}

}  // namespace
}  // namespace lockd::lock
