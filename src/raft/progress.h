// Progress: the leader's view of one follower's log, with the states of etcd's tracker:
// probe (one append at a time until the follower's position is known), replicate (pipelined
// appends, bounded by a ring of in-flight messages) and snapshot (the entries the follower needs
// are compacted: a snapshot is on its way, and no append is sent until it is installed or fails).
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>

#include "raft/types.h"

namespace lockd::raft {

class Progress {
 public:
  enum class State { kProbe, kReplicate, kSnapshot };

  Progress(LogIndex next, size_t max_inflight) : next_(next), max_inflight_(max_inflight) {}

  LogIndex match() const { return match_; }
  LogIndex next() const { return next_; }
  State state() const { return state_; }
  bool recent_active() const { return recent_active_; }
  void set_recent_active(bool v) { recent_active_ = v; }

  /// Whether the leader may send another append now.
  bool CanSend() const;
  /// An append carrying entries up to `last` was sent.
  void Sent(LogIndex last);
  /// The follower acknowledged up to `index`; false if stale.
  bool MaybeUpdate(LogIndex index);
  /// The follower rejected an append at `rejected`; `next_hint` is where to probe next.
  bool MaybeDecrease(LogIndex rejected, LogIndex next_hint);
  void BecomeProbe();
  void BecomeReplicate();
  /// A snapshot at `index` was sent: no appends until it is installed or reported failed.
  void BecomeSnapshot(LogIndex index);
  /// The runtime finished sending the snapshot (ok) or gave up. Either way the follower is probed
  /// again once it answers (its answer to the snapshot, or a heartbeat response).
  void SnapshotDone(bool ok);
  LogIndex pending_snapshot() const { return pending_snapshot_; }
  /// A heartbeat response lets a paused probe try again, and frees one in-flight slot: appends
  /// lost on the way would otherwise fill the window forever.
  void OnHeartbeatResponse() {
    probe_sent_ = false;
    if (!inflight_.empty() && inflight_.size() >= max_inflight_) inflight_.pop_front();
  }
  size_t inflight() const { return inflight_.size(); }
  /// The highest commit index an append or heartbeat to this follower carried.
  LogIndex commit_sent() const { return commit_sent_; }
  void CommitSent(LogIndex commit) { commit_sent_ = std::max(commit_sent_, commit); }

 private:
  LogIndex match_;
  LogIndex next_;
  LogIndex pending_snapshot_;  ///< the index of the snapshot in flight (snapshot state)
  State state_ = State::kProbe;
  bool probe_sent_ = false;
  bool recent_active_ = false;
  size_t max_inflight_;
  std::deque<LogIndex> inflight_;  ///< last index of each append in flight (replicate state)
  LogIndex commit_sent_;           ///< see commit_sent()
};

}  // namespace lockd::raft
