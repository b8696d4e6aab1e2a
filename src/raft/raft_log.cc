#include "raft/raft_log.h"

#include <algorithm>

#include "base/check.h"

namespace lockd::raft {

RaftLog::RaftLog(const LogStorage& storage)
    : storage_(storage),
      unstable_offset_(storage.LastIndex().next()),
      committed_(std::max(storage.Initial().hard.commit, storage.FirstIndex().prev())),
      applied_(storage.FirstIndex().prev()) {}

LogIndex RaftLog::first_index() const {
  return pending_snapshot_ ? pending_snapshot_->index.next() : storage_.FirstIndex();
}

LogIndex RaftLog::last_index() const {
  if (!unstable_.empty()) return unstable_.back().index;
  return pending_snapshot_ ? pending_snapshot_->index : storage_.LastIndex();
}

LogIndex RaftLog::stable_last() const {
  return unstable_offset_.prev();
}

SnapshotMeta RaftLog::snapshot() const {
  return pending_snapshot_ ? *pending_snapshot_ : storage_.Snapshot();
}

void RaftLog::Restore(const SnapshotMeta& meta) {
  LOCKD_CHECK_MSG(meta.index > committed_, "a snapshot never moves the commit index back");
  pending_snapshot_ = meta;
  unstable_.clear();
  unstable_offset_ = meta.index.next();
  committed_ = meta.index;
  applied_ = meta.index;
}

void RaftLog::SnapshotInstalled(const SnapshotMeta& meta) {
  if (pending_snapshot_ && pending_snapshot_->index == meta.index) pending_snapshot_.reset();
}

Term RaftLog::TermOr(LogIndex i, Term fallback) const {
  if (i >= unstable_offset_) {
    if (i > last_index()) return fallback;
    return unstable_[i - unstable_offset_].term;
  }
  if (pending_snapshot_) return i == pending_snapshot_->index ? pending_snapshot_->term : fallback;
  auto t = storage_.TermAt(i);
  return t.ok() ? *t : fallback;
}

bool RaftLog::MatchTerm(LogIndex i, Term t) const {
  if (i < first_index().prev() || i > last_index()) return false;
  return TermOr(i, Term(UINT64_MAX)) == t;
}

bool RaftLog::IsUpToDate(LogIndex last, Term term) const {
  return term > last_term() || (term == last_term() && last >= last_index());
}

std::vector<Entry> RaftLog::Slice(LogIndex lo, LogIndex hi, uint64_t max_bytes) const {
  std::vector<Entry> out;
  if (lo >= hi) return out;
  uint64_t bytes = 0;
  if (lo < unstable_offset_) {
    LOCKD_CHECK_MSG(!pending_snapshot_, "a slice below a snapshot being installed");
    auto stored = storage_.Entries(lo, std::min(hi, unstable_offset_), max_bytes);
    LOCKD_CHECK_MSG(stored.ok(), "storage cannot read entries the core believes it has");
    for (auto& e : *stored) {
      bytes += e.ByteSize();
      out.push_back(std::move(e));
    }
    if (out.empty() || out.back().index.next() < std::min(hi, unstable_offset_)) return out;
  }
  for (LogIndex i = std::max(lo, unstable_offset_); i < hi; ++i) {
    const Entry& e = unstable_[i - unstable_offset_];
    bytes += e.ByteSize();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

void RaftLog::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const LogIndex first = entries.front().index;
  LOCKD_CHECK(first <= last_index().next());
  if (checks_committed_)
    LOCKD_CHECK_MSG(first > committed_, "a committed entry is never overwritten");
  if (first < unstable_offset_) {
    // The conflict is in the durable part: the unstable tail restarts here.
    unstable_.clear();
    unstable_offset_ = first;
  } else {
    unstable_.resize(first - unstable_offset_);
  }
  unstable_.insert(unstable_.end(), entries.begin(), entries.end());
}

LogIndex RaftLog::FindConflict(const std::vector<Entry>& entries) const {
  for (const auto& e : entries) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return entries.empty() ? last_index().next() : entries.back().index.next();
}

LogIndex RaftLog::MaybeAppend(LogIndex prev, const std::vector<Entry>& entries) {
  const LogIndex last_new = prev + entries.size();
  const LogIndex conflict = FindConflict(entries);
  if (checks_committed_ && conflict <= last_new && conflict <= last_index()) {
    LOCKD_CHECK_MSG(conflict > committed_, "a leader asked to overwrite a committed entry");
  }
  if (conflict <= last_new) {
    std::vector<Entry> rest(entries.begin() + static_cast<ptrdiff_t>(conflict - prev.next()),
                            entries.end());
    Append(rest);
  }
  return last_new;
}

LogIndex RaftLog::FindConflictByTerm(LogIndex index, Term term) const {
  if (index > last_index()) index = last_index();
  while (index >= first_index()) {
    if (TermOr(index, Term(UINT64_MAX)) <= term) return index;
    index = index.prev();
  }
  return index;  // first_index - 1: the snapshot's index
}

void RaftLog::StableTo(LogIndex index, Term term) {
  if (index < unstable_offset_ || index > last_index()) return;
  if (TermOr(index, Term()) != term) return;  // overwritten since it was handed out
  unstable_.erase(unstable_.begin(),
                  unstable_.begin() + static_cast<ptrdiff_t>(index - unstable_offset_ + 1));
  unstable_offset_ = index.next();
}

void RaftLog::CommitTo(LogIndex i) {
  if (i <= committed_) return;
  LOCKD_CHECK_MSG(i <= last_index(), "commit past the last index");
  committed_ = i;
}

void RaftLog::AppliedTo(LogIndex i) {
  if (i <= applied_) return;
  LOCKD_CHECK(i <= committed_);
  applied_ = i;
}

std::vector<Entry> RaftLog::NextToApply(uint64_t max_bytes) const {
  return Slice(applied_.next(), committed_.next(), max_bytes);
}

}  // namespace lockd::raft
