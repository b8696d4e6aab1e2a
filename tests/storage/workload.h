// A seeded storage workload and its model, shared by the power-loss and kill -9 tests.
//
// The model is the whole durable state a node would recover: the snapshot (meta and payload), the
// log after it, the hard state and the membership. NextOp draws the next unit of work from a
// model and a random stream, the way the node runtime would hand it to storage: appends with a
// rising commit (sometimes carrying a membership), a commit index raised alone (not synced), a new
// leader's truncation of the uncommitted
// suffix, a local snapshot with its compaction, a snapshot installed from a leader. Apply is the
// model's transition. A crash or power cut during an op must leave exactly the state before it or
// the state after it (atomicity), and never less than every acknowledged op (durability).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "raft/types.h"
#include "storage/node_storage.h"

namespace lockd::storage::testing {

struct Model {
  raft::SnapshotMeta snapshot;   ///< index 0: none
  std::string payload;           ///< the snapshot's payload
  std::vector<raft::Entry> log;  ///< entries snapshot.index + 1 .. last
  raft::HardState hard;
  raft::ConfState conf;
  /// The commit index as of the last synced write. A write that only raises the commit index is
  /// not synced, so after a cut the commit index may be anywhere in [synced_commit, hard.commit].
  raft::LogIndex synced_commit;

  raft::LogIndex last() const { return snapshot.index + log.size(); }
  raft::Term TermAt(raft::LogIndex i) const;
  /// The state recovered storage holds (its recovered snapshot, log, hard state, membership).
  static Result<Model> From(const NodeStorage& s);
  /// "" when equal (a commit index between want's synced and written ones counts as equal), else
  /// the first difference.
  static std::string Diff(const Model& want, const Model& got);
};

struct Op {
  enum Kind { kAppend, kCommit, kTruncate, kSnapshot, kInstall } kind = kAppend;
  PersistBatch batch;       ///< kAppend, kCommit, kTruncate
  raft::SnapshotMeta meta;  ///< kSnapshot, kInstall
  std::string payload;      ///< kSnapshot, kInstall
  std::string Describe() const;
};

/// Draws the next op for a node whose durable state is `m`.
Op NextOp(const Model& m, std::mt19937_64& rng);
/// The state after `op` succeeds.
Model Apply(const Model& m, const Op& op);
/// The state after `op` as a crash during it may leave it: the op done, but the commit index may
/// also be the one of the last synced write before it (raised alone, it was only in memory), or
/// the op's own snapshot index (recovery finishes an interrupted compaction up to it).
Model ApplyInFlight(const Model& m, const Op& op);
/// Hands `op` to storage; OK means acknowledged (durable).
Status Execute(NodeStorage& s, const Op& op);

}  // namespace lockd::storage::testing
