#include "faults/nemesis/schedule.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

namespace lockd::faults {

using namespace std::chrono_literals;

namespace {

/// Time the cluster gets after each heal before the next fault.
constexpr Ms kSettle = 2s;

void SleepUnless(Ms d, const std::atomic<bool>& stop) {
  for (auto slept = Ms(0); slept < d && !stop; slept += 50ms) std::this_thread::sleep_for(50ms);
}

}  // namespace

std::string ToString(FaultKind k) {
  switch (k) {
    case FaultKind::kKillRandom:
      return "kill-random";
    case FaultKind::kKillLeader:
      return "kill-leader";
    case FaultKind::kPauseRandom:
      return "pause";
    case FaultKind::kIsolateLeader:
      return "isolate-leader";
    case FaultKind::kMinority:
      return "minority";
    case FaultKind::kBridge:
      return "bridge";
    case FaultKind::kOneWay:
      return "one-way";
    case FaultKind::kLoss:
      return "loss";
    case FaultKind::kSlowDisk:
      return "slow-disk";
    case FaultKind::kTransfer:
      return "transfer";
    case FaultKind::kDelay:
      return "delay";
    case FaultKind::kReplaceFollower:
      return "replace-follower";
    case FaultKind::kDiskFull:
      return "disk-full";
    case FaultKind::kWipe:
      return "wipe";
    case FaultKind::kPauseClient:
      return "pause-client";
  }
  return "?";
}

std::string Step::Describe() const {
  std::ostringstream s;
  const std::string who = kind == FaultKind::kReplaceFollower || kind == FaultKind::kWipe
                              ? "a follower"
                          : kind == FaultKind::kDiskFull    ? "the tmpfs member"
                          : kind == FaultKind::kPauseClient ? "client " + std::to_string(target)
                          : target < 0                      ? "leader"
                                                            : std::to_string(target);
  s << ToString(kind) << " target=" << who;
  if (other >= 0) s << " other=" << other;
  if (amount > 0) s << " amount=" << amount;
  s << " hold=" << hold.count() << "ms";
  return s.str();
}

std::string Schedule::Describe() const {
  std::ostringstream s;
  s << "seed=" << seed << " replay with LOCKD_FAULTS_SEED=" << seed << "\n";
  for (size_t i = 0; i < steps.size(); ++i) s << "  " << i << ": " << steps[i].Describe() << "\n";
  return s.str();
}

namespace {

/// One step of kind `kind`, its targets and amounts drawn from `rng`; `hold` as given.
Step DrawStep(std::mt19937_64& rng, FaultKind kind, int nodes, Ms hold) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  Step st;
  st.kind = kind;
  st.hold = hold;
  switch (st.kind) {
    case FaultKind::kKillRandom:
    case FaultKind::kPauseRandom:
    case FaultKind::kMinority:
      st.target = pick(nodes);
      break;
    case FaultKind::kBridge:
      st.target = pick(nodes);  // the middle
      st.other = st.target;
      break;
    case FaultKind::kOneWay:
      st.target = pick(nodes);
      st.other = (st.target + 1 + pick(nodes - 1)) % nodes;
      break;
    case FaultKind::kLoss:
      st.target = pick(nodes);
      st.amount = 10 + pick(31);
      break;
    case FaultKind::kSlowDisk:
      st.amount = 50 + pick(400);
      break;
    case FaultKind::kDelay:
      st.amount = 5 + pick(60);
      st.other = pick(40);  // jitter ms
      break;
    case FaultKind::kReplaceFollower:
    case FaultKind::kWipe:
      st.other = pick(1000);  // which follower, modulo their number then
      break;
    case FaultKind::kPauseClient:
      st.target = pick(1000);  // the hook takes it modulo the number of clients
      st.hold = std::max(
          st.hold, Ms(4000 + pick(2000)));  // the driver may ask for longer (client_pause_min)
      break;
    default:
      break;
  }
  return st;
}

}  // namespace

Schedule MakeSchedule(uint64_t seed, Ms duration, int nodes, const std::vector<FaultKind>& kinds) {
  Schedule s;
  s.seed = seed;
  std::mt19937_64 rng(seed);
  Ms total{0};
  while (total < duration && !kinds.empty()) {
    const FaultKind kind = kinds[rng() % kinds.size()];
    const Ms hold(2000 + static_cast<int64_t>(rng() % 3000));
    Step st = DrawStep(rng, kind, nodes, hold);
    total += st.hold + kSettle;
    s.steps.push_back(st);
  }
  return s;
}

Schedule MakeCoveringSchedule(uint64_t seed, int nodes, const std::vector<FaultKind>& kinds) {
  Schedule s;
  s.seed = seed;
  std::mt19937_64 rng(seed);
  std::vector<FaultKind> order = kinds;
  std::shuffle(order.begin(), order.end(), rng);
  for (FaultKind kind : order) {
    const Ms hold(2000 + static_cast<int64_t>(rng() % 1000));
    s.steps.push_back(DrawStep(rng, kind, nodes, hold));
  }
  return s;
}

bool SoakFromEnv() {
  const char* s = std::getenv("LOCKD_FAULTS_SOAK_SECONDS");
  return s && *s;
}

uint64_t SeedFromEnv(uint64_t quick_seed) {
  if (const char* s = std::getenv("LOCKD_FAULTS_SEED"); s && *s)
    return std::strtoull(s, nullptr, 10);
  if (!SoakFromEnv()) return quick_seed;
  return std::random_device{}() | (static_cast<uint64_t>(std::random_device{}()) << 32);
}

Ms DurationFromEnv(Ms quick) {
  if (!SoakFromEnv()) return quick;
  return Ms(1000 * std::max(1L, std::atol(std::getenv("LOCKD_FAULTS_SOAK_SECONDS"))));
}

std::vector<std::string> NodesNotRunning(NetnsCluster& c) {
  std::vector<std::string> out;
  for (int i = 0; i < c.size(); ++i) {
    if (c.retired(i)) continue;
    if (auto code = c.ExitCode(i, Ms(0)); code.has_value()) {
      out.push_back("node " + std::to_string(c.id(i)) + " exited " + std::to_string(*code) + ":\n" +
                    c.LogTail(i, 15));
    }
  }
  return out;
}

std::vector<Problem> RunSchedule(const Schedule& s, NetnsCluster& c, Nemesis& n,
                                 const std::atomic<bool>& stop, const ScheduleHooks& hooks) {
  std::vector<Problem> problems;
  // Said as they happen too: a soak that only fails steps (no leader for an hour) must show it
  // while it runs, not an hour later.
  auto note = [&](Problem p) {
    std::cerr << "[schedule] problem" << (p.serious ? " (serious)" : "") << ": " << p.text << "\n";
    problems.push_back(std::move(p));
  };
  // Every node the last heal brought up must still run: one that crashed later (on catching up,
  // on a snapshot) would otherwise be restarted by the next heal unnoticed.
  auto check_nodes = [&](const std::string& when) {
    for (auto& p : NodesNotRunning(c)) note({when + ": " + p, true});
  };
  uint64_t next_id = 100;  // replacements get ids no bootstrap member has
  for (size_t k = 0; k < s.steps.size() && !stop; ++k) {
    const Step& st = s.steps[k];
    const std::string step = "step " + std::to_string(k) + " (" + st.Describe() + "): ";
    if (k > 0) check_nodes(step + "before it, after the last heal");
    // Steps name the k-th member in service, so a replacement takes its predecessor's place.
    std::vector<int> members;
    for (int i = 0; i < c.size(); ++i) {
      if (!c.retired(i)) members.push_back(i);
    }
    const int nodes = static_cast<int>(members.size());
    auto member = [&](int k) { return k < 0 ? -1 : members[static_cast<size_t>(k % nodes)]; };
    const int leader = c.WaitForLeader(10s);
    if (leader < 0) {  // every step needs one: to aim at, or to change the membership through
      note({step + "no leader before it, not applied\n" + c.StatusSummary()});
      continue;
    }
    // The k-th running follower, k drawn from the seed (st.other).
    auto a_follower = [&] {
      std::vector<int> followers;
      for (int i : members) {
        if (i != leader && c.running(i)) followers.push_back(i);
      }
      return followers.empty()
                 ? -1
                 : followers[static_cast<size_t>(std::max(0, st.other)) % followers.size()];
    };
    const int target = st.target < 0 ? leader : member(st.target);
    const int other = member(st.other);
    // Kinds that pick their own node (or none) say so in their fault events.
    const bool own_target = st.kind == FaultKind::kReplaceFollower || st.kind == FaultKind::kWipe ||
                            st.kind == FaultKind::kDiskFull || st.kind == FaultKind::kPauseClient ||
                            st.kind == FaultKind::kTransfer;
    std::cerr << "[schedule] step " << k << ": " << st.Describe()
              << (own_target ? "" : " -> node " + std::to_string(c.id(target))) << "\n";
    std::string err;
    Ms hold = st.hold;
    bool client_paused = false;
    int filled = -1;
    switch (st.kind) {
      case FaultKind::kKillRandom:
      case FaultKind::kKillLeader:
        n.Kill(target);
        break;
      case FaultKind::kPauseRandom:
        n.Pause(target);
        break;
      case FaultKind::kIsolateLeader:
        err = n.Isolate(target);
        break;
      case FaultKind::kMinority: {
        std::vector<int> rest;
        for (int i : members) {
          if (i != target) rest.push_back(i);
        }
        err = n.Split({{target}, rest});
        break;
      }
      case FaultKind::kBridge: {
        std::vector<int> left, right;
        for (int i : members) {
          if (i == other) continue;
          (left.size() <= right.size() ? left : right).push_back(i);
        }
        err = n.Bridge(left, other, right);
        break;
      }
      case FaultKind::kOneWay:
        err = n.DropOneWay(target, other);
        break;
      case FaultKind::kLoss:
        err = n.Loss(target, st.amount);
        break;
      case FaultKind::kSlowDisk:
        n.SlowDisk(target, Ms(st.amount));
        break;
      case FaultKind::kTransfer:
        err = n.TransferLeadership();
        break;
      case FaultKind::kDelay:
        err = n.Delay(Ms(st.amount), Ms(st.other));
        break;
      case FaultKind::kReplaceFollower: {
        // lockctl member add answers once the new node is a voter (promoted when caught up), so
        // the next step meets a full membership again.
        const int follower = a_follower();
        if (follower < 0) {
          err = "no running follower to replace";
        } else if (n.Replace(follower, next_id++, &err) >= 0) {
          err.clear();
        }
        break;
      }
      case FaultKind::kDiskFull: {
        for (int i : members) {
          if (c.network().IsHarnessTmpfs(c.data_dir(i))) filled = i;
        }
        err = filled < 0 ? "no member has its data dir on a harness tmpfs" : n.FillDisk(filled);
        if (!err.empty()) filled = -1;
        break;
      }
      case FaultKind::kWipe: {
        // Wiped and restarted under its old identity: its peers refuse it ("presents data dir
        // incarnation"); after the hold it is replaced through the membership path.
        const int follower = a_follower();
        if (follower < 0) {
          err = "no running follower to wipe";
          break;
        }
        n.Wipe(follower);
        SleepUnless(st.hold, stop);
        hold = Ms(0);
        if (n.Replace(follower, next_id++, &err) >= 0) err.clear();
        break;
      }
      case FaultKind::kPauseClient:
        hold = std::max(hold, hooks.client_pause_min);
        if (!hooks.pause_client) {
          err = "this driver has no client processes to pause";
        } else if (hooks.pause_client(st.target).empty()) {
          err = "no client process to pause";
        } else {
          client_paused = true;
        }
        break;
    }
    if (!err.empty()) note({step + err});
    SleepUnless(hold, stop);
    if (client_paused && hooks.resume_client) hooks.resume_client();
    if (filled >= 0) {
      // A write that fails for want of space must stop the node (exit 70, "storage failed,
      // exiting"), never be acknowledged. Its log appends may still fit (RocksDB preallocates its
      // WAL), so a snapshot asked of that node forces a write that needs new space.
      auto snap = c.Lockctl({"snapshot", "--yes"}, c.client_addr(filled));
      const auto code = c.ExitCode(filled, 15s);
      if (code != std::optional<int>(70)) {
        note({step + "node " + std::to_string(c.id(filled)) +
                  (code ? " exited " + std::to_string(*code) : " still runs") +
                  " on a full disk after a snapshot was asked of it (lockctl: " + snap.output +
                  "); expected a fail-stop exit 70",
              true});
        if (!code) n.Kill(filled);
      }
    }
    n.Heal();
    std::this_thread::sleep_for(std::min(kSettle, Ms(500)));
    check_nodes(step + "after being healed");
    SleepUnless(kSettle, stop);
  }
  n.Heal();
  std::this_thread::sleep_for(std::min(kSettle, Ms(500)));
  check_nodes("after the last heal");
  return problems;
}

}  // namespace lockd::faults
