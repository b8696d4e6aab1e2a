#include "storage/term_index.h"

#include <algorithm>

#include "base/check.h"

namespace lockd::storage {

void TermIndex::Reset(raft::LogIndex snapshot_index) {
  after_ = snapshot_index;
  last_ = snapshot_index;
  runs_.clear();
}

void TermIndex::Append(raft::Term t) {
  last_ = last_.next();
  if (runs_.empty() || runs_.back().term != t) {
    LOCKD_CHECK(runs_.empty() || runs_.back().term < t);
    runs_.push_back({last_, t});
  }
}

void TermIndex::TruncateFrom(raft::LogIndex i) {
  LOCKD_CHECK(i > after_ && i <= last_.next());
  while (!runs_.empty() && runs_.back().first >= i) runs_.pop_back();
  last_ = i.prev();
}

void TermIndex::CompactTo(raft::LogIndex i) {
  LOCKD_CHECK(i <= last_);
  if (i <= after_) return;
  // The run holding i+1 (if any) now starts at i+1; runs wholly at or below i go.
  auto keep = std::upper_bound(runs_.begin(), runs_.end(), i.next(),
                               [](raft::LogIndex x, const Run& r) { return x < r.first; });
  if (keep != runs_.begin()) --keep;
  runs_.erase(runs_.begin(), keep);
  if (!runs_.empty() && runs_.front().first <= i) {
    if (i == last_) {
      runs_.clear();
    } else {
      runs_.front().first = i.next();
    }
  }
  after_ = i;
}

std::optional<raft::Term> TermIndex::At(raft::LogIndex i) const {
  if (i <= after_ || i > last_) return std::nullopt;
  auto it = std::upper_bound(runs_.begin(), runs_.end(), i,
                             [](raft::LogIndex x, const Run& r) { return x < r.first; });
  LOCKD_CHECK(it != runs_.begin());
  return std::prev(it)->term;
}

}  // namespace lockd::storage
