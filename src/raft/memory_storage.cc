#include "raft/memory_storage.h"

#include "base/check.h"

namespace lockd::raft {

Result<std::vector<Entry>> MemoryLogStorage::Entries(LogIndex lo, LogIndex hi,
                                                     uint64_t max_bytes) const {
  if (lo <= snap_.index) return OutOfRange("compacted");
  if (hi > LastIndex().next() || lo > hi) return OutOfRange("past the last index");
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (LogIndex i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - FirstIndex()];
    bytes += e.ByteSize();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

Result<Term> MemoryLogStorage::TermAt(LogIndex i) const {
  if (i == snap_.index) return snap_.term;
  if (i < snap_.index || i > LastIndex()) return OutOfRange("no such entry");
  return entries_[i - FirstIndex()].term;
}

void MemoryLogStorage::Append(const std::vector<Entry>& es) {
  if (es.empty()) return;
  const LogIndex first = es.front().index;
  LOCKD_CHECK(first > snap_.index && first <= LastIndex().next());
  entries_.resize(first - FirstIndex());
  entries_.insert(entries_.end(), es.begin(), es.end());
}

Status MemoryLogStorage::Compact(const SnapshotMeta& meta) {
  if (meta.index <= snap_.index) return Status::Ok();  // an older snapshot: nothing to drop
  if (meta.index > hard_.commit) return FailedPrecondition("compaction past the commit index");
  auto t = TermAt(meta.index);
  if (!t.ok() || *t != meta.term) return FailedPrecondition("snapshot term does not match the log");
  entries_.erase(entries_.begin(),
                 entries_.begin() + static_cast<ptrdiff_t>(meta.index - snap_.index));
  snap_ = meta;
  return Status::Ok();
}

void MemoryLogStorage::ResetToSnapshot(const SnapshotMeta& meta) {
  LOCKD_CHECK(meta.index > snap_.index && meta.index >= hard_.commit);
  entries_.clear();
  snap_ = meta;
  conf_ = meta.conf;
  hard_.commit = meta.index;
}

}  // namespace lockd::raft
