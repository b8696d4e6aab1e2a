// The deterministic cluster simulator: 3 or 5 Raft cores, a simulated clock per node (with drift
// within ρ), a simulated network, and one seed that decides everything — message delays, drops,
// duplicates and reordering; symmetric, asymmetric and bridge partitions; crashes that lose what
// was not synced (sometimes mid-write); loop stalls with missed ticks dropped; client proposals,
// ReadIndex reads and lease renewals confirmed by the leader-lease rule; leadership transfers.
// Checkers run after every step; a liveness phase with the faults healed follows.
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
};

struct SimResult {
  std::string failure;  ///< empty when every check held
  uint64_t trace_hash = 0;
  uint64_t steps = 0;
  uint64_t committed = 0;  ///< entries in the committed history
  uint64_t acked = 0;      ///< proposals acknowledged to clients
  uint64_t reads = 0, renewals = 0;
  bool ok() const { return failure.empty(); }
};

SimResult RunSimulation(const SimOptions& options);

/// "LOCKD_SIM_SEED=… LOCKD_SIM_NODES=… LOCKD_SIM_TRACE=1 <binary> --gtest_filter=Sim.Replay"
std::string ReplayCommand(const SimOptions& options);

}  // namespace lockd::sim
