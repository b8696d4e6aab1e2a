// A nemesis schedule: a sequence of faults derived from one uint64 seed, printed with the seed
// ("seed=... replay with LOCKD_FAULTS_SEED=...") before it runs. Each step applies one fault,
// holds it, heals everything, and lets the cluster settle before the next. Steps aimed at "the
// leader" find it when they run; every other target is fixed by the seed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "faults/nemesis/nemesis.h"

namespace lockd::faults {

enum class FaultKind {
  kKillRandom,
  kKillLeader,
  kPauseRandom,  ///< SIGSTOP past the election timeout
  kIsolateLeader,
  kMinority,  ///< one node cut off from a majority
  kBridge,
  kOneWay,
  kLoss,
  kSlowDisk,
  kTransfer,
  kDelay,            ///< needs a cluster with the peer proxy
  kReplaceFollower,  ///< a follower removed and replaced by a new node (needs a spare slot)
  kDiskFull,         ///< the member on a harness tmpfs fills it: it must fail stop
  kWipe,             ///< a follower's data dir emptied: refused, then replaced (spare slot)
  kPauseClient,  ///< a client process SIGSTOPped (4-6 s, at least ScheduleHooks::client_pause_min)
};

std::string ToString(FaultKind k);

struct Step {
  FaultKind kind;
  int target = -1;  ///< k-th member in service (replaced nodes skipped); -1: the leader
  int other = -1;   ///< a second node (one-way drop, bridge middle)
  int amount = 0;   ///< loss percent, slow-disk or delay ms
  Ms hold{0};
  std::string Describe() const;
};

struct Schedule {
  uint64_t seed = 0;
  std::vector<Step> steps;
  std::string Describe() const;
};

/// Steps drawn from `kinds` until their holds and settle time fill `duration`.
Schedule MakeSchedule(uint64_t seed, Ms duration, int nodes, const std::vector<FaultKind>& kinds);

/// Each of `kinds` once (a kind listed twice, twice), in an order and with targets drawn from
/// the seed, holds 2–3 s (a client pause 4–6 s): the quick mode's full coverage in little time.
Schedule MakeCoveringSchedule(uint64_t seed, int nodes, const std::vector<FaultKind>& kinds);

/// LOCKD_FAULTS_SOAK_SECONDS is set and not empty: a soak.
bool SoakFromEnv();
/// LOCKD_FAULTS_SEED if set; else, in soak mode (LOCKD_FAULTS_SOAK_SECONDS set), a fresh random
/// seed; else `quick_seed`: the quick mode CI runs replays the same schedule every time, so a red
/// run is the code's doing, not the draw's.
uint64_t SeedFromEnv(uint64_t quick_seed);
/// LOCKD_FAULTS_SOAK_SECONDS if set, else `quick`.
Ms DurationFromEnv(Ms quick);

/// What a schedule cannot do to the cluster by itself: the client processes belong to the driver.
struct ScheduleHooks {
  /// kPauseClient: SIGSTOP one client process (`which` picks it, modulo their number); returns
  /// the target's name, "" if there is none. The driver records the fault event.
  std::function<std::string(int which)> pause_client;
  /// …and SIGCONT it again after the step's hold.
  std::function<void()> resume_client;
  /// A client pause is held at least this long (past the workload's lease TTL).
  Ms client_pause_min{0};
};

/// A problem RunSchedule met, naming its step.
struct Problem {
  std::string text;
  /// One no run may have: a node that did not stay up once healed, a full disk that did not
  /// stop its node. The others are steps that could not be applied (no leader before it, a
  /// refused rule or membership change, nothing to aim at).
  bool serious = false;
};

/// Runs every step (apply, hold, heal, settle) until done or `stop`; heals at the end. Every node
/// in service must run after each heal and still run when the next step starts.
std::vector<Problem> RunSchedule(const Schedule& s, NetnsCluster& c, Nemesis& n,
                                 const std::atomic<bool>& stop, const ScheduleHooks& hooks = {});

/// The nodes in service that have exited, each with its exit code and log tail.
std::vector<std::string> NodesNotRunning(NetnsCluster& c);

}  // namespace lockd::faults
