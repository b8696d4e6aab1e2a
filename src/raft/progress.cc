#include "raft/progress.h"

#include <algorithm>

#include "base/check.h"

namespace lockd::raft {

bool Progress::CanSend() const {
  if (state_ == State::kSnapshot) return false;
  if (state_ == State::kProbe) return !probe_sent_;
  return inflight_.size() < max_inflight_;
}

void Progress::Sent(LogIndex last) {
  if (state_ == State::kProbe) {
    probe_sent_ = true;
    return;
  }
  if (last >= next_) {
    next_ = last.next();
    inflight_.push_back(last);
  }
}

bool Progress::MaybeUpdate(LogIndex index) {
  bool updated = false;
  if (index > match_) {
    match_ = index;
    updated = true;
    probe_sent_ = false;
  }
  if (next_ < index.next()) next_ = index.next();
  while (!inflight_.empty() && inflight_.front() <= index) inflight_.pop_front();
  return updated;
}

bool Progress::MaybeDecrease(LogIndex rejected, LogIndex next_hint) {
  if (state_ == State::kSnapshot) return false;  // the snapshot decides where it resumes
  if (state_ == State::kReplicate) {
    if (rejected <= match_) return false;  // stale rejection
    next_ = match_.next();
    return true;
  }
  if (next_.prev() != rejected) return false;  // not the probe we sent
  next_ = std::max(std::min(rejected, next_hint.next()), match_.next());
  probe_sent_ = false;
  return true;
}

void Progress::BecomeProbe() {
  state_ = State::kProbe;
  pending_snapshot_ = LogIndex();
  probe_sent_ = false;
  inflight_.clear();
  next_ = match_.next();
}

void Progress::BecomeSnapshot(LogIndex index) {
  state_ = State::kSnapshot;
  pending_snapshot_ = index;
  inflight_.clear();
  probe_sent_ = false;
  next_ = std::max(index, match_).next();
}

void Progress::SnapshotDone(bool ok) {
  if (state_ != State::kSnapshot) return;
  const LogIndex resume = ok ? std::max(pending_snapshot_, match_) : match_;
  state_ = State::kProbe;
  inflight_.clear();
  pending_snapshot_ = LogIndex();
  next_ = resume.next();
  probe_sent_ = true;  // wait for the follower's answer (or a heartbeat response) to probe again
}

void Progress::BecomeReplicate() {
  state_ = State::kReplicate;
  pending_snapshot_ = LogIndex();
  inflight_.clear();
  next_ = match_.next();
}

}  // namespace lockd::raft
