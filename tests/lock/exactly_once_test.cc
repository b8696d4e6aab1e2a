// The exactly-once table's review fixes (issue 13, after review): a flood of new clients that
// fills the table cannot stop releases, revokes, cancels or force-releases; the age clock is
// carried in the log, so leader changes do not restart the retention window; and what a
// retirement costs at a million records.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <deque>

#include "harness.h"
#include "lock/exactly_once_retirement.h"

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

// --- 1. the reserve for requests that free state ---------------------------------------------

TEST(Reserve, AFloodOfNewClientsStopsNewWorkButNotReleaseRevokeCancelOrForceRelease) {
  Limits limits;
  limits.max_outcomes = 1'000;
  testing::Harness h(limits);
  // A holder with a grant, a wait and a spare lease, before the flood.
  const ClientId holder{9, 9};
  uint64_t seq = 0;
  const auto hd = [&] { return RequestHeader{{holder, ++seq}, 1, 0}; };
  // Another client with a lease takes the last slots, and a third grants the leases revoked at
  // the end: the holder keeps within its share of the reserve (OutcomeReserveShare).
  const ClientId filler{9, 10}, granter{9, 11};
  uint64_t filler_seq = 0, granter_seq = 0;
  const auto fd = [&] { return RequestHeader{{filler, ++filler_seq}, 1, 0}; };
  const auto gd = [&] { return RequestHeader{{granter, ++granter_seq}, 1, 0}; };
  ASSERT_TRUE(h.Do(GrantLease{fd(), 60'000, "f"}).outcome.ok());
  const LeaseId a = h.Do(GrantLease{hd(), 60'000, "h"}).outcome.lease;
  const LeaseId b = h.Do(GrantLease{hd(), 60'000, "h"}).outcome.lease;
  const LeaseId spare = h.Do(GrantLease{hd(), 60'000, "h"}).outcome.lease;
  const auto held = h.Do(Acquire{hd(), "x", a, Mode::kExclusive, 0, 0, ""});
  const auto forced = h.Do(Acquire{hd(), "y", a, Mode::kExclusive, 0, 0, ""});
  const RequestHeader wait_header = hd();
  ASSERT_TRUE(h.Do(Acquire{wait_header, "y", b, Mode::kExclusive, 60'000, 0, ""}).outcome.waiting);
  ASSERT_TRUE(held.outcome.acquired && forced.outcome.acquired);
  std::vector<LeaseId> more;  // to revoke later, each from a new client
  for (int i = 0; i < 40; ++i) more.push_back(h.Do(GrantLease{gd(), 60'000, "m"}).outcome.lease);

  // The flood: one-shot clients, each a record and a client, until their share (half the table)
  // refuses them.
  uint64_t flooded = 0;
  Outcome refusal;
  for (uint64_t c = 1; c <= limits.max_outcomes; ++c) {
    auto r = h.Do(Release{{{{7, c}, 1}, 1, 0}, "x", a, FencingToken(999)});
    if (r.outcome.code == StatusCode::kResourceExhausted) {
      refusal = r.outcome;
      break;
    }
    ++flooded;
  }
  ASSERT_EQ(refusal.code, StatusCode::kResourceExhausted) << "the flood never filled the table";
  EXPECT_NE(refusal.message.find("--max-outcomes=1000"), std::string::npos) << refusal.message;
  EXPECT_GT(flooded, 200u);
  const size_t full = h.sm.exactly_once().size();
  // The last slots, by a client with a lease whose requests free nothing.
  while (h.Do(Release{fd(), "x", a, FencingToken(12345)}).outcome.code !=
         StatusCode::kResourceExhausted) {
  }
  EXPECT_EQ(h.sm.exactly_once().size(), limits.max_outcomes);
  EXPECT_GE(h.sm.exactly_once().size(), full);

  // New work is refused, naming the flag: an Acquire of a known client, a new client's lease.
  auto acquire = h.Do(Acquire{hd(), "z", a, Mode::kExclusive, 0, 0, ""});
  EXPECT_EQ(acquire.outcome.code, StatusCode::kResourceExhausted);
  EXPECT_NE(acquire.outcome.message.find("--max-outcomes=1000"), std::string::npos);
  EXPECT_FALSE(h.sm.GetLock("z").has_value());
  EXPECT_EQ(h.Do(GrantLease{{{{6, 1}, 1}, 1, 0}, 60'000, ""}).outcome.code,
            StatusCode::kResourceExhausted);
  // So is a request that would free nothing (a wrong token), even a freeing kind.
  EXPECT_EQ(h.Do(Release{hd(), "x", a, FencingToken(12345)}).outcome.code,
            StatusCode::kResourceExhausted);

  // Requests that free state are admitted and run.
  const RequestHeader cancel_header = hd();
  auto cancel = h.Do(Cancel{cancel_header, "y", LeaseId(), wait_header.id});
  ASSERT_TRUE(cancel.outcome.ok()) << cancel.outcome.message;
  EXPECT_EQ(cancel.outcome.effect, CancelEffect::kWithdrewWait);
  auto release = h.Do(Release{hd(), "x", a, held.outcome.token});
  ASSERT_TRUE(release.outcome.ok()) << release.outcome.message;
  EXPECT_FALSE(h.sm.GetLock("x").has_value());
  // An operator's revoke, from a client the table has never seen.
  auto revoke = h.Do(RevokeLease{{{{8, 9}, 1}, 1, 0}, spare});
  ASSERT_TRUE(revoke.outcome.ok()) << revoke.outcome.message;
  EXPECT_FALSE(h.sm.GetLease(spare).has_value());
  // An operator's ForceRelease, from a client the table has never seen.
  auto force = h.Do(ForceRelease{{{{8, 8}, 1}, 1, 0}, "y", LeaseId(), "stuck"});
  ASSERT_TRUE(force.outcome.ok()) << force.outcome.message;
  ASSERT_EQ(force.outcome.holders.size(), 1u);
  EXPECT_EQ(force.outcome.holders[0].token, forced.outcome.token);
  EXPECT_FALSE(h.sm.GetLock("y").has_value());
  // A retry is answered from its record, as always.
  auto retry = h.Do(Cancel{{cancel_header.id, 2, 0}, "y", LeaseId(), wait_header.id});
  EXPECT_EQ(retry.outcome, cancel.outcome);

  // The reserve is bounded too: revokes from new clients (two records each) stop at the cap
  // plus the reserve, RESOURCE_EXHAUSTED naming both.
  size_t revoked = 0;
  Outcome last;
  for (size_t i = 0; i < more.size(); ++i) {
    last = h.Do(RevokeLease{{{{5, i + 1}, 1}, 1, 0}, more[i]}).outcome;
    if (!last.ok()) break;
    ++revoked;
  }
  EXPECT_EQ(last.code, StatusCode::kResourceExhausted);
  EXPECT_NE(last.message.find("reserve of " + std::to_string(OutcomeReserve(limits))),
            std::string::npos)
      << last.message;
  EXPECT_GT(revoked, 0u);
  EXPECT_LT(revoked, more.size());
  EXPECT_LE(h.sm.exactly_once().size(), limits.max_outcomes + OutcomeReserve(limits));
  EXPECT_GT(h.sm.exactly_once().size(), limits.max_outcomes);
}

TEST(Reserve, AFormatTwoEntryAtTheCapIsRefusedAsItWasWhenWritten) {
  Limits limits;
  limits.max_outcomes = 40;
  testing::Harness h(limits);
  const LeaseId lease = h.Lease();
  const auto held = h.Acquire("x", lease);
  ASSERT_TRUE(held.outcome.acquired);
  // The last slots go to another client with a lease (the holder stays within its reserve
  // share); it takes its lease before the flood, which leaves no room to a new client.
  const ClientId filler{1, 2};
  ASSERT_TRUE(h.Do(GrantLease{h.Header(filler), 60'000, ""}).outcome.ok());
  for (uint64_t c = 1; c <= limits.max_outcomes; ++c) {
    h.Do(Release{{{{7, c}, 1}, 1, 0}, "x", lease, FencingToken(999)});
  }
  while (h.Do(Release{h.Header(filler), "x", lease, FencingToken(999)}).outcome.code !=
         StatusCode::kResourceExhausted) {
  }
  ASSERT_EQ(h.sm.exactly_once().size(), limits.max_outcomes);
  // A node that applied this entry before the upgrade refused it: so does this one.
  const Release release{h.Header(), "x", lease, held.outcome.token};
  auto old = h.sm.Apply(LogIndex(++h.index), Encode(release, 0, 2));
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->outcome.code, StatusCode::kResourceExhausted);
  EXPECT_TRUE(h.sm.GetLock("x").has_value());
  auto now = h.sm.Apply(LogIndex(++h.index), Encode(release, 0, 3));
  ASSERT_TRUE(now.ok());
  EXPECT_TRUE(now->outcome.ok()) << now->outcome.message;
  EXPECT_FALSE(h.sm.GetLock("x").has_value());
}

/// Fills a table of `limits` the way the review's scenarios do: one-shot clients (no lease) up to
/// their share, then a client with a lease that frees nothing up to the cap.
void FillToTheCap(testing::Harness& h, const Limits& limits, LeaseId lease) {
  // The filler takes its lease first: once the flood is in, a new client cannot.
  const ClientId filler{7, 0};
  ASSERT_TRUE(h.Do(GrantLease{h.Header(filler), 60'000, "filler"}).outcome.ok());
  for (uint64_t c = 1; c <= limits.max_outcomes; ++c) {
    if (h.Do(Release{{{{7, c}, 1}, 1, 0}, "none", lease, FencingToken(999)}).outcome.code ==
        StatusCode::kResourceExhausted) {
      break;
    }
  }
  while (h.Do(Release{h.Header(filler), "none", lease, FencingToken(999)}).outcome.code !=
         StatusCode::kResourceExhausted) {
  }
  ASSERT_EQ(h.sm.exactly_once().size(), limits.max_outcomes);
}

TEST(Reserve, OneClientUsesAtMostItsShareOfTheReserveAndOthersStillRelease) {
  // The review's scenario, scaled down: a client with many holds fills the table, then releases
  // them all with watermark 0 from one client id, each release really freeing a hold.
  Limits limits;
  limits.max_outcomes = 4'000;  // a reserve of 200, a share of 12
  const size_t share = OutcomeReserveShare(limits);
  ASSERT_EQ(share, 12u);
  testing::Harness h(limits);
  const LeaseId big = h.Lease(600'000);
  std::vector<FencingToken> holds;
  for (int i = 0; i < 60; ++i) {
    holds.push_back(h.Acquire("h" + std::to_string(i), big).outcome.token);
  }
  const ClientId other{4, 4};
  const LeaseId small = h.Do(GrantLease{h.Header(other), 600'000, ""}).outcome.lease;
  const auto kept = h.Do(Acquire{h.Header(other), "o", small, Mode::kExclusive, 0, 0, ""});
  ASSERT_TRUE(kept.outcome.acquired);
  FillToTheCap(h, limits, big);

  const ClientId releaser{4, 5};
  size_t released = 0;
  Outcome refusal;
  for (size_t i = 0; i < holds.size(); ++i) {
    auto r = h.Do(Release{h.Header(releaser), "h" + std::to_string(i), big, holds[i]});
    if (!r.outcome.ok()) {
      refusal = r.outcome;
      break;
    }
    ++released;
  }
  EXPECT_EQ(released, share);
  EXPECT_EQ(refusal.code, StatusCode::kResourceExhausted);
  EXPECT_NE(refusal.message.find("share of the reserve"), std::string::npos) << refusal.message;
  EXPECT_NE(refusal.message.find("--max-outcomes=4000"), std::string::npos) << refusal.message;
  EXPECT_TRUE(h.sm.GetLock("h" + std::to_string(share)).has_value());
  // The reserve is far from used up: another client's release, a revoke, still run.
  EXPECT_LE(h.sm.exactly_once().size(), limits.max_outcomes + share + 1);
  auto release = h.Do(Release{h.Header(other), "o", small, kept.outcome.token});
  EXPECT_TRUE(release.outcome.ok()) << release.outcome.message;
  EXPECT_FALSE(h.sm.GetLock("o").has_value());
  EXPECT_TRUE(h.Do(RevokeLease{{{{4, 6}, 1}, 1, 0}, small}).outcome.ok());
  h.sm.CheckInvariants();
}

// --- the share of clients holding no lease --------------------------------------------------

TEST(LeaselessShare, AFloodOfFreshIdsLeavesHalfTheTableToClientsHoldingALease) {
  Limits limits;
  limits.max_outcomes = 1'000;
  testing::Harness h(limits);
  const LeaseId lease = h.Lease(600'000);  // client {1, 1}
  // One source, fresh ids: one-shot clients, raw ids (a known client, watermark 0).
  uint64_t flooded = 0;
  Outcome refusal;
  for (uint64_t c = 1; c <= limits.max_outcomes; ++c) {
    const RequestHeader hd =
        c % 2 ? RequestHeader{{{7, c}, 1}, 1, 0} : RequestHeader{{{7, 1}, c + 1}, 1, 0};
    auto r = h.Do(Release{hd, "x", lease, FencingToken(999)});
    if (r.outcome.code == StatusCode::kResourceExhausted) {
      refusal = r.outcome;
      break;
    }
    ++flooded;
  }
  ASSERT_EQ(refusal.code, StatusCode::kResourceExhausted);
  EXPECT_NE(refusal.message.find("no lease"), std::string::npos) << refusal.message;
  EXPECT_NE(refusal.message.find("--max-outcomes=1000"), std::string::npos) << refusal.message;
  EXPECT_GT(flooded, 250u);
  EXPECT_LE(h.sm.exactly_once().leaseless_size(), LeaselessOutcomeShare(limits));
  EXPECT_GT(h.sm.exactly_once().leaseless_size(), LeaselessOutcomeShare(limits) - 2);
  // A client that holds a lease still does new work: it acquires, and grants more leases.
  const auto got = h.Acquire("x", lease);
  EXPECT_TRUE(got.outcome.acquired) << got.outcome.message;
  const auto more = h.Do(GrantLease{h.Header(), 600'000, ""});
  EXPECT_TRUE(more.outcome.ok()) << more.outcome.message;
  // Freeing requests of lease-less clients are not held to the share (an operator's revoke).
  EXPECT_TRUE(h.Do(RevokeLease{{{{8, 1}, 1}, 1, 0}, more.outcome.lease}).outcome.ok());
  // A format-2 entry is admitted as it was written: the share came with format 3.
  std::string entry = Encode(Release{{{{6, 1}, 1}, 1, 0}, "x", lease, FencingToken(999)}, 0, 2);
  auto old = h.sm.Apply(LogIndex(++h.index), entry);
  ASSERT_TRUE(old.ok());
  EXPECT_NE(old->outcome.code, StatusCode::kResourceExhausted) << old->outcome.message;
  entry = Encode(Release{{{{6, 2}, 1}, 1, 0}, "x", lease, FencingToken(999)}, 0);
  auto now = h.sm.Apply(LogIndex(++h.index), entry);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->outcome.code, StatusCode::kResourceExhausted);
  // The count is derived from the lease table, so a restored snapshot has the same.
  h.sm.CheckInvariants();
  auto restored = LockStateMachine::Restore(h.sm.Snapshot(), limits);
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(restored->exactly_once().leaseless_size(), h.sm.exactly_once().leaseless_size());
  restored->CheckInvariants();
}

// --- 2. the age clock is carried in the log -------------------------------------------------

struct AgeRun {
  uint64_t retired = 0;
  uint64_t youngest_retired_ms = UINT64_MAX;  ///< the least age at which a record was retired
  uint64_t oldest_live_ms = 0;                ///< the greatest age a live record reached
  size_t most_records = 0;
};

/// Leaders of `term_ms` each, an election of `gap_ms` between them, one raw request (watermark 0,
/// so only age retires it) every 20 ms of simulated time. `carried`: each leader starts its age
/// clock from the mark the log carries (as Replica does); otherwise from zero, as every leader's
/// clock did when the samples were its own.
/// The faults a leader's clock and log may add: its clock runs fast by `fast` (1.01: by ρ), a
/// RetireOutcomes applies `lag_ms` after it is proposed, and one proposed in the last `lag_ms`
/// of a term is lost with the office (never committed).
struct ClockFaults {
  double fast = 1.0;
  uint64_t lag_ms = 0;
};

AgeRun RunLeaders(bool carried, uint64_t window_ms, uint64_t forward_ms, uint64_t term_ms,
                  uint64_t gap_ms, uint64_t duration_ms, ClockFaults faults = {}) {
  Limits limits;
  limits.outcome_retention_ms = window_ms;
  auto sm = std::make_unique<LockStateMachine>(limits);
  RetirementPlanner planner({forward_ms, window_ms, 0.01});
  struct Made {
    uint64_t at_ms;
    RequestId id;
  };
  std::deque<Made> live;
  AgeRun run;
  uint64_t index = 0, now = 0, next_client = 0, terms = 0;
  // The leader's own clock: real time × fast (each leader's starts anywhere; only its rate counts).
  const auto leader_clock = [&](uint64_t t) { return static_cast<uint64_t>(t * faults.fast); };
  std::deque<std::pair<uint64_t, RetireOutcomes>> proposed;  // by when it applies
  while (now < duration_ms) {
    now += gap_ms;     // no leader: nothing commits
    proposed.clear();  // the last leader's uncommitted proposals are lost
    planner.Start(leader_clock(now), carried ? sm->exactly_once().age_mark_ms() : 0);
    for (const uint64_t end = now + term_ms; now < end; now += 20) {
      const RequestId id{{3, ++next_client}, 1};
      sm->ApplyCommand(LogIndex(++index), Release{{id, 1, 0}, "n", LeaseId(99), FencingToken(1)});
      live.push_back({now, id});
      if (auto due =
              planner.Due(leader_clock(now), LogIndex(index), sm->exactly_once().age_samples())) {
        proposed.emplace_back(now + faults.lag_ms, *due);
      }
      if (proposed.empty() || proposed.front().first > now) continue;
      const RetireOutcomes retire = proposed.front().second;
      proposed.pop_front();
      sm->ApplyCommand(LogIndex(++index), retire);
      // Age retirement goes oldest first: what is gone is a prefix of `live`.
      while (!live.empty() && !sm->exactly_once().Known(live.front().id)) {
        run.youngest_retired_ms = std::min(run.youngest_retired_ms, now - live.front().at_ms);
        ++run.retired;
        live.pop_front();
      }
      if (!live.empty())
        run.oldest_live_ms = std::max(run.oldest_live_ms, now - live.front().at_ms);
      run.most_records = std::max(run.most_records, sm->exactly_once().records());
    }
    planner.Stop();
    if (++terms == 5) {
      // Once, through a snapshot, as a node that installs one before it leads.
      auto restored = LockStateMachine::Restore(sm->Snapshot(), limits);
      EXPECT_TRUE(restored.ok() && *restored == *sm);
      sm = std::make_unique<LockStateMachine>(std::move(*restored));
      sm->CheckInvariants();
    }
  }
  return run;
}

TEST(AgeClock, WithALeaderChangeEveryHalfWindowRecordsRetireAtAboutTheWindowAndNeverEarlier) {
  const uint64_t w = 60'000, f = 10'000, gap = 2'000;
  const AgeRun run = RunLeaders(/*carried=*/true, w, f, w / 2, gap, 20 * w);
  std::printf(
      "leader every W/2 (W = %llu s, F_fwd = %llu s, %llu s elections): %llu retired, youngest "
      "retired %.1f s, oldest live %.1f s, at most %zu records\n",
      static_cast<unsigned long long>(w / 1000), static_cast<unsigned long long>(f / 1000),
      static_cast<unsigned long long>(gap / 1000), static_cast<unsigned long long>(run.retired),
      run.youngest_retired_ms / 1000.0, run.oldest_live_ms / 1000.0, run.most_records);
  EXPECT_GT(run.retired, 0u);
  EXPECT_GE(run.youngest_retired_ms, w) << "a record was retired before it was W old";
  // Each change loses at most a retire period and the election, so the age clock runs at
  // (term − period) / (term + election) of real time at worst, and slower by ρ; a record waits
  // up to a retire period for its sample and one more for the entry.
  const double period = double(RetirementPlanner({f, w, 0.01}).period_ms());
  const double rate = (w / 2.0 - period) / (w / 2.0 + gap) * 0.99;
  const double bound = w / rate + 2 * period + 1'000;
  EXPECT_LE(double(run.oldest_live_ms), bound);
  EXPECT_LE(double(run.most_records), bound / 20 + 1);
}

TEST(AgeClock, FastClocksLostProposalsAndApplyLagNeverRetireEarly) {
  // Every leader's clock fast by ρ, each RetireOutcomes applied 300 ms after it is proposed (the
  // requests in between are applied first), the ones in flight at a leader change lost, and a
  // change every W/3: still no record retired before W, and all retire within a bound.
  const uint64_t w = 60'000, f = 10'000;
  const AgeRun run = RunLeaders(/*carried=*/true, w, f, w / 3, 1'000, 10 * w, {1.01, 300});
  EXPECT_GT(run.retired, 0u);
  EXPECT_GE(run.youngest_retired_ms, w) << "a record was retired before it was W old";
  EXPECT_LE(run.oldest_live_ms, 2 * w);
  // One stable leader, fast by ρ: no leader change hides anything, records retire just past W.
  const AgeRun stable = RunLeaders(/*carried=*/true, w, f, 10 * w, 1'000, 10 * w, {1.01, 300});
  EXPECT_GT(stable.retired, 0u);
  EXPECT_GE(stable.youngest_retired_ms, w) << "a record was retired before it was W old";
  // The control: a clock fast by 5%, past the ρ the planner allows for, does retire early, so
  // the runs above would see it.
  const AgeRun beyond = RunLeaders(/*carried=*/true, w, f, 10 * w, 1'000, 10 * w, {1.05, 300});
  EXPECT_LT(beyond.youngest_retired_ms, w);
}

TEST(AgeClock, LeadersChangingFasterThanTheRetirePeriodStillAdvanceTheClock) {
  // A leader every 1.5 s (0.5 s elections) with a retire period of W/32 = 1.875 s: each leader's
  // first sample comes 1 s after it takes office, so the clock runs at about half real time.
  // When the first came only a period after, no leader ever proposed and nothing retired.
  const uint64_t w = 60'000, f = 10'000;
  ASSERT_GT(RetirementPlanner({f, w, 0.01}).period_ms(), 1'500u);
  const AgeRun run = RunLeaders(/*carried=*/true, w, f, 1'500, 500, 6 * w);
  EXPECT_GT(run.retired, 0u);
  EXPECT_GE(run.youngest_retired_ms, w) << "a record was retired before it was W old";
  EXPECT_LE(run.oldest_live_ms, 3 * w);
}

TEST(AgeClock, ALongWindowKeepsItsSamplesEvenlySpacedAndBounded) {
  // W = 1 day, F_fwd = 10 s: the period is W/512, not 10 s, and a leader's own samples are W/512
  // apart, so a window needs at most 512 of either.
  const uint64_t day = 86'400'000;
  RetirementPlanner p({10'000, day, 0.01});
  EXPECT_EQ(p.period_ms(), day / 512);
  EXPECT_EQ(p.local_spacing_ms(), day / 512);
  p.Start(0, 1);
  size_t proposals = 0;
  for (uint64_t now = 0; now <= 2 * day; now += 1'000) {
    if (p.Due(now, LogIndex(now / 1'000 + 1), {})) ++proposals;
  }
  EXPECT_LE(p.local_samples().size(), 520u);
  EXPECT_LE(proposals, 2 * 512u + 2);
  // The state machine, fed more samples than it keeps (as many leader changes would): it drops
  // the inner sample whose neighbours are closest, so the old ones stay evenly spaced. Thinning
  // to every other sample left gaps of 4 and more at the old end.
  LockStateMachine sm{Limits{}};
  uint64_t index = 1;  // sample index 0 would be pruned as "at or below expired_at_or_before" 0
  for (uint64_t i = 0; i < 3 * ExactlyOnce::kMaxAgeSamples; ++i) {
    const LogIndex sampled(index);
    sm.ApplyCommand(LogIndex(++index),
                    RetireOutcomes{LogIndex(), LogIndex(), sampled, 1'000 * (i + 1)});
  }
  const auto& ages = sm.exactly_once().age_samples();
  ASSERT_EQ(ages.size(), ExactlyOnce::kMaxAgeSamples);
  EXPECT_EQ(ages.front().mark_ms, 1'000u);
  EXPECT_EQ(ages.back().mark_ms, 3'000 * ExactlyOnce::kMaxAgeSamples);
  uint64_t widest = 0;
  for (size_t i = 1; i < ages.size(); ++i) {
    widest = std::max(widest, ages[i].mark_ms - ages[i - 1].mark_ms);
  }
  EXPECT_LE(widest, 4'000u) << "3 samples to 1 evenly: gaps of 3 or 4";
  sm.CheckInvariants();
}

TEST(AgeClock, LeaderLocalClocksNeverRetireForAgeWhenLeadersChangeFasterThanTheWindow) {
  // What the carried clock fixes: each leader counting from zero never sees a record W old.
  const uint64_t w = 60'000;
  const AgeRun run = RunLeaders(/*carried=*/false, w, 10'000, w / 2, 2'000, 6 * w);
  EXPECT_EQ(run.retired, 0u);
  EXPECT_GT(run.oldest_live_ms, 5 * w);
}

TEST(AgeClock, ANewLeaderContinuesFromTheReplicatedMarkAndCountsItsOwnTimeSlowedByDrift) {
  RetirementPlanner p({10'000, 60'000, 0.01});
  EXPECT_FALSE(p.Due(1'000, LogIndex(5), {}).has_value()) << "not leading";
  p.Start(1'000'000, 45'000);
  EXPECT_EQ(p.MarkAt(1'000'000), 45'000u);
  EXPECT_EQ(p.MarkAt(1'010'000), 45'000u + 9'900u);
  EXPECT_EQ(p.period_ms(), 60'000u / 32);
  EXPECT_FALSE(p.Due(1'000'999, LogIndex(7), {}).has_value()) << "the first 1 s after Start";
  // Replicated samples from earlier leaders: index 3 at mark 0 is W old by mark 60'000.
  const std::deque<AgeSample> replicated = {{LogIndex(3), 1}, {LogIndex(6), 40'000}};
  auto r = p.Due(1'010'000, LogIndex(9), replicated);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->sampled_index, LogIndex(9));
  EXPECT_EQ(r->age_mark_ms, 54'900u);
  EXPECT_EQ(r->expired_at_or_before, LogIndex()) << "index 3 is 54.9 s old, not 60";
  EXPECT_EQ(r->recorded_at_or_before, LogIndex(6)) << "F_fwd old by the replicated samples";
  r = p.Due(1'011'000, LogIndex(12), replicated);
  EXPECT_FALSE(r.has_value());
  r = p.Due(1'020'000, LogIndex(12), replicated);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->expired_at_or_before, LogIndex(3));
  EXPECT_EQ(r->recorded_at_or_before, LogIndex(7)) << "its own sample of index 7, at 49.95 s";
}

TEST(AgeClock, TheStateMachineKeepsSamplesInOrderDropsUsedOnesAndIgnoresBackwardOnes) {
  LockStateMachine sm;
  sm.ApplyCommand(LogIndex(1), RetireOutcomes{LogIndex(), LogIndex(), LogIndex(0), 500});
  sm.ApplyCommand(LogIndex(2), RetireOutcomes{LogIndex(), LogIndex(), LogIndex(1), 1'000});
  sm.ApplyCommand(LogIndex(3), RetireOutcomes{LogIndex(), LogIndex(), LogIndex(2), 900});
  sm.ApplyCommand(LogIndex(4), RetireOutcomes{LogIndex(), LogIndex(), LogIndex(9), 2'000});
  sm.ApplyCommand(LogIndex(5), RetireOutcomes{LogIndex(), LogIndex(1), LogIndex(4), 3'000});
  const std::deque<AgeSample> want = {{LogIndex(4), 3'000}};
  EXPECT_EQ(sm.exactly_once().age_samples(), want)
      << "0 and 1 used up by the bound 1; a mark going back and a sample past its own entry "
         "ignored";
  EXPECT_EQ(sm.exactly_once().age_mark_ms(), 3'000u);
  // A format-2 entry (no sample) retires as before and leaves the clock alone.
  const std::string v2 = {2, 7, 9, 0, 0};
  ASSERT_TRUE(sm.Apply(LogIndex(6), v2).ok());
  EXPECT_EQ(sm.exactly_once().age_samples(), want);
  // Thinned, never unbounded.
  for (uint64_t i = 7; i < 7 + 3 * ExactlyOnce::kMaxAgeSamples; ++i) {
    sm.ApplyCommand(LogIndex(i),
                    RetireOutcomes{LogIndex(), LogIndex(), LogIndex(i - 1), 3'000 + i * 10});
  }
  EXPECT_LE(sm.exactly_once().age_samples().size(), ExactlyOnce::kMaxAgeSamples);
  EXPECT_GT(sm.exactly_once().age_samples().size(), ExactlyOnce::kMaxAgeSamples / 2);
  sm.CheckInvariants();
  auto back = LockStateMachine::Restore(sm.Snapshot(), {});
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == sm);
}

// --- 3. what a retirement costs ----------------------------------------------------------------

// A RetireOutcomes touches what it retires and the clients whose watermark moved, not the whole
// table: at a million records, one that retires 1% costs about 1% of a full scan. Prints the
// figures docs/benchmarks.md quotes.
TEST(RetireCost, ARetirementTouchesWhatItRetiresNotTheWholeTable) {
  const uint64_t clients = 100'000 / kScale, per_client = 10;
  const uint64_t n = clients * per_client;
  Limits limits;
  limits.max_outcomes = 4 * n + 10;  // the raw clients hold no lease: half of it is theirs
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
  EXPECT_EQ(sm->exactly_once().last_retire_steps(), 0u) << "retiring nothing looks at nothing";

  // The oldest 1% by age (and the GrantLease's record, older still).
  start = std::chrono::steady_clock::now();
  sm->ApplyCommand(LogIndex(++index), RetireOutcomes{LogIndex(first - 1),
                                                     LogIndex(first + n / 100 - 1), LogIndex(), 0});
  const double age_ms = MillisSince(start);
  EXPECT_EQ(sm->exactly_once().records(), n - n / 100);
  EXPECT_EQ(sm->exactly_once().last_retire_steps(), n / 100 + 1) << "only what it retires";

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
  // Each listed client once, and its records up to its watermark: no other client or record.
  EXPECT_LE(sm->exactly_once().last_retire_steps(), movers * (per_client + 1));
  EXPECT_GE(sm->exactly_once().last_retire_steps(), gone);
  EXPECT_GE(gone, movers * (per_client - 1));
  EXPECT_LE(gone, movers * per_client);
  std::printf(
      "retire at %llu records: %.3f ms retiring nothing, %.3f ms retiring the oldest 1%% by age, "
      "%.3f ms retiring the records of 1%% of the clients below their watermark\n",
      static_cast<unsigned long long>(n), nothing_ms, age_ms, watermark_ms);
}

}  // namespace
}  // namespace lockd::lock
