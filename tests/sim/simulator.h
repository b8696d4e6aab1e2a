// The deterministic cluster simulator: 3 or 5 Raft cores, a simulated clock per node (with drift
// within ρ), a simulated network, and one seed that decides everything — message delays, drops,
// duplicates and reordering; symmetric, asymmetric and bridge partitions; crashes that lose what
// was not synced (sometimes mid-write); loop stalls with missed ticks dropped; client proposals,
// ReadIndex reads and lease renewals confirmed by the leader-lease rule; leadership transfers;
// snapshots taken at random applied indexes and compaction, chunked snapshot transfers that fail
// and are reported, installs interrupted by crashes; membership changes proposed by a scenario
// driver (learners, promotion, 3 -> 5 -> 3, replacing crashed nodes, joint changes) on nodes
// created for the new ids. Checkers run after every step; a liveness phase with the faults healed
// follows.
#pragma once

#include <cstdint>
#include <string>

#include "raft/raft.h"

namespace lockd::sim {

struct SimOptions {
  int nodes = 3;
  uint64_t seed = 1;
  int safety_steps = 2000;
  raft::TestingKnobs knobs;
  bool trace = false;  ///< print every step
  /// More crashes, stalls, transfers and long message delays: for hunting planted bugs.
  bool aggressive = false;
  /// Nodes take snapshots at random applied indexes and compact their logs; a follower behind a
  /// compacted log gets the snapshot in a chunked transfer that can fail.
  bool snapshots = true;
  /// A scenario driver changes the membership (spare ids up to `max_nodes` are not members at the
  /// start; a node is created when first added).
  bool membership = true;
  int max_nodes = 7;
  /// Membership changes every few steps, retried on every new leader at once, often followed by
  /// a leadership transfer: for hunting the membership planted bugs.
  bool membership_heavy = false;
};

struct SimResult {
  std::string failure;  ///< empty when every check held
  uint64_t trace_hash = 0;
  uint64_t steps = 0;
  uint64_t committed = 0;  ///< entries in the committed history
  uint64_t acked = 0;      ///< proposals acknowledged to clients
  uint64_t reads = 0, renewals = 0;
  uint64_t snapshots = 0;         ///< snapshots taken (logs compacted)
  uint64_t installs = 0;          ///< snapshots installed from a leader
  uint64_t transfers_failed = 0;  ///< snapshot transfers reported failed
  uint64_t conf_changes = 0;      ///< membership entries in the committed history
  uint64_t commit_flushes = 0;    ///< deferred commit indexes sent by the runtime's flush
  bool ok() const { return failure.empty(); }
};

SimResult RunSimulation(const SimOptions& options);

/// The checker's own test of two configurations: whether every quorum of one meets every quorum
/// of the other (joint: a majority of each half), by brute force.
bool QuorumsIntersect(const raft::ConfState& a, const raft::ConfState& b);

/// Sets the knob called `name` (as in TestingKnobs); false if there is none.
bool SetKnob(raft::TestingKnobs& knobs, const std::string& name);

/// "LOCKD_SIM_SEED=… LOCKD_SIM_NODES=… LOCKD_SIM_TRACE=1 <binary> --gtest_filter=Sim.Replay"
std::string ReplayCommand(const SimOptions& options);

}  // namespace lockd::sim
