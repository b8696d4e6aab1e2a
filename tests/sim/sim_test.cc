// The simulator's tests: many seeds safe and live, determinism, each planted bug caught, and a
// replay entry point. LOCKD_SIM_SEEDS sets the seed count, LOCKD_SIM_SOAK_SECONDS turns the seed
// run into a soak (LOCKD_SIM_AGGRESSIVE=1 / LOCKD_SIM_MEMBERSHIP_HEAVY=1 for every seed,
// LOCKD_SIM_STEPS for longer runs),
// LOCKD_SIM_SEED (+ the variables ReplayCommand prints) replays one seed.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "simulator.h"

namespace lockd::sim {
namespace {

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

uint64_t DefaultSeeds() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return 300;  // sanitizers run 3-10x slower; the release run covers the full count
#else
  return 2000;
#endif
}

TEST(Sim, TheDisjointMajorityCheckSeesWhatItShould) {
  auto conf = [](std::vector<uint64_t> in, std::vector<uint64_t> out = {}) {
    raft::ConfState c;
    for (uint64_t v : in) c.voters.push_back(raft::NodeId(v));
    for (uint64_t v : out) c.voters_outgoing.push_back(raft::NodeId(v));
    return c;
  };
  EXPECT_TRUE(QuorumsIntersect(conf({1, 2, 3}), conf({1, 2, 3, 4})));      // one voter added
  EXPECT_TRUE(QuorumsIntersect(conf({1, 2, 3}), conf({1, 2})));            // one voter removed
  EXPECT_FALSE(QuorumsIntersect(conf({1, 2, 3}), conf({1, 2, 3, 4, 5})));  // two at once
  EXPECT_FALSE(QuorumsIntersect(conf({1, 2, 3}), conf({3, 4, 5})));
  // Through a joint configuration every step meets the one before.
  EXPECT_TRUE(QuorumsIntersect(conf({1, 2, 3}), conf({3, 4, 5}, {1, 2, 3})));
  EXPECT_TRUE(QuorumsIntersect(conf({3, 4, 5}, {1, 2, 3}), conf({3, 4, 5})));
  // Counting only the incoming half of a joint configuration (a planted bug) would not.
  EXPECT_FALSE(QuorumsIntersect(conf({1, 2, 3}), conf({3, 4, 5}, {})));
}

TEST(Sim, ManySeedsAreSafeAndLive) {
  const uint64_t seeds = EnvOr("LOCKD_SIM_SEEDS", DefaultSeeds());
  const uint64_t soak = EnvOr("LOCKD_SIM_SOAK_SECONDS", 0);
  const auto start = std::chrono::steady_clock::now();
  uint64_t runs = 0, steps = 0, committed = 0, acked = 0, reads = 0, renewals = 0, snapshots = 0,
           installs = 0, failed_transfers = 0, conf_changes = 0, commit_flushes = 0;
  for (uint64_t seed = 1;; ++seed) {
    if (soak == 0 && seed > seeds) break;
    if (soak > 0 && std::chrono::steady_clock::now() - start > std::chrono::seconds(soak)) break;
    SimOptions o;
    o.seed = seed;
    o.nodes = seed % 5 < 3 ? 3 : 5;       // 60 % three-node, 40 % five-node clusters
    o.membership_heavy = seed % 10 == 9;  // one in ten: membership changes every few steps
    // For soaks: every seed aggressive, or membership-heavy.
    if (EnvOr("LOCKD_SIM_AGGRESSIVE", 0)) o.aggressive = true;
    if (EnvOr("LOCKD_SIM_MEMBERSHIP_HEAVY", 0)) o.membership_heavy = true;
    o.safety_steps = static_cast<int>(EnvOr("LOCKD_SIM_STEPS", o.safety_steps));
    const SimResult r = RunSimulation(o);
    ASSERT_TRUE(r.ok()) << "seed=" << seed << " nodes=" << o.nodes << ": " << r.failure
                        << "\nreplay: " << ReplayCommand(o);
    ++runs;
    steps += r.steps;
    committed += r.committed;
    acked += r.acked;
    reads += r.reads;
    renewals += r.renewals;
    snapshots += r.snapshots;
    installs += r.installs;
    failed_transfers += r.transfers_failed;
    conf_changes += r.conf_changes;
    commit_flushes += r.commit_flushes;
  }
  std::printf(
      "simulated %llu seeds, %llu steps: %llu entries committed, %llu proposals acknowledged, "
      "%llu reads and %llu renewals confirmed, %llu snapshots taken, %llu installed from a leader, "
      "%llu transfers failed, %llu membership changes committed, %llu deferred commit indexes "
      "flushed; every check held\n",
      (unsigned long long)runs, (unsigned long long)steps, (unsigned long long)committed,
      (unsigned long long)acked, (unsigned long long)reads, (unsigned long long)renewals,
      (unsigned long long)snapshots, (unsigned long long)installs,
      (unsigned long long)failed_transfers, (unsigned long long)conf_changes,
      (unsigned long long)commit_flushes);
}

TEST(Sim, TheSameSeedGivesTheSameTraceHash) {
  for (uint64_t seed : {7, 8}) {
    SimOptions o;
    o.seed = seed;
    o.nodes = seed == 7 ? 3 : 5;
    const SimResult r = RunSimulation(o);
    EXPECT_EQ(r.trace_hash, RunSimulation(o).trace_hash) << seed;
    o.aggressive = true;
    EXPECT_EQ(RunSimulation(o).trace_hash, RunSimulation(o).trace_hash) << seed << " aggressive";
    o.aggressive = false;
    o.membership_heavy = true;
    EXPECT_EQ(RunSimulation(o).trace_hash, RunSimulation(o).trace_hash) << seed << " heavy";
    o.membership_heavy = false;
    o.snapshots = o.membership = false;  // the Raft core I simulation
    EXPECT_EQ(RunSimulation(o).trace_hash, RunSimulation(o).trace_hash) << seed << " core I";
    EXPECT_NE(RunSimulation(o).trace_hash, r.trace_hash) << seed;
  }
  SimOptions a, b;
  a.seed = 1;
  b.seed = 2;
  EXPECT_NE(RunSimulation(a).trace_hash, RunSimulation(b).trace_hash);
}

TEST(Sim, Replay) {
  const uint64_t seed = EnvOr("LOCKD_SIM_SEED", 0);
  if (seed == 0) GTEST_SKIP() << "set LOCKD_SIM_SEED to replay a seed";
  SimOptions o;
  o.seed = seed;
  o.nodes = static_cast<int>(EnvOr("LOCKD_SIM_NODES", 3));
  o.trace = EnvOr("LOCKD_SIM_TRACE", 0) != 0;
  o.aggressive = EnvOr("LOCKD_SIM_AGGRESSIVE", 0) != 0;
  o.snapshots = EnvOr("LOCKD_SIM_SNAPSHOTS", 1) != 0;
  o.membership = EnvOr("LOCKD_SIM_MEMBERSHIP", 1) != 0;
  o.membership_heavy = EnvOr("LOCKD_SIM_MEMBERSHIP_HEAVY", 0) != 0;
  o.safety_steps = static_cast<int>(EnvOr("LOCKD_SIM_STEPS", o.safety_steps));
  if (const char* knob = std::getenv("LOCKD_SIM_KNOB"); knob && *knob) {
    ASSERT_TRUE(SetKnob(o.knobs, knob)) << "no knob " << knob;
  }
  const SimResult r = RunSimulation(o);
  std::printf("trace hash %016llx\n", (unsigned long long)r.trace_hash);
  EXPECT_TRUE(r.ok()) << r.failure;
}

struct Planted {
  const char* name;
  /// Hunted with snapshots and membership changes (the two membership bugs need them); the
  /// others in the Raft core I simulation, whose random streams the budgets were measured in.
  bool membership;
};

TEST(Sim, EveryPlantedBugIsCaught) {
  const Planted bugs[] = {
      {"count_old_term_entries_for_commit", false}, {"skip_vote_persist", false},
      {"grant_votes_to_shorter_logs", false},       {"skip_log_matching_check", false},
      {"read_index_before_term_commit", false},     {"keep_time_lease_after_timeout_now", false},
      {"no_vote_refusal_after_restart", false},     {"credit_ack_to_newest_round", false},
      {"conf_change_without_term_commit", true},    {"ignore_old_majority_in_joint", true},
  };
  // Skipping the log-matching check shows only after a three-way divergence (a follower holding
  // an entry of another term at the new leader's probe index): it took ~550 and ~1,300 seeds in two
  // random streams, so the budget is generous; every other bug is caught within ~30 seeds.
  const uint64_t budget = EnvOr("LOCKD_SIM_KNOB_SEEDS", 3000);
  const auto start = std::chrono::steady_clock::now();
  for (const auto& bug : bugs) {
    uint64_t found = 0;
    std::string failure;
    SimOptions o;
    for (uint64_t seed = 1; seed <= budget && !found; ++seed) {
      o = SimOptions();
      o.seed = seed;
      o.nodes = seed % 2 ? 3 : 5;
      // The membership bugs show under membership-heavy scenarios (the aggressive mode's crashes
      // leave too few leaders for changes to overlap with failovers).
      o.aggressive = !bug.membership && seed % 3 != 0;
      o.membership_heavy = bug.membership && seed % 3 != 0;
      o.snapshots = o.membership = bug.membership;
      ASSERT_TRUE(SetKnob(o.knobs, bug.name));
      const SimResult r = RunSimulation(o);
      if (!r.ok()) {
        found = seed;
        failure = r.failure;
      }
    }
    EXPECT_NE(found, 0u) << bug.name << " was not caught within " << budget << " seeds";
    if (found) {
      std::printf("%-36s caught at seed %llu: %s\n  replay: %s\n", bug.name,
                  (unsigned long long)found, failure.c_str(), ReplayCommand(o).c_str());
    }
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(120))
      << "the planted-bug search must stay bounded in time";
}

}  // namespace
}  // namespace lockd::sim
