#include "workload.h"

#include <algorithm>

#include "base/codec.h"

namespace lockd::storage::testing {
namespace {

using raft::Entry;
using raft::LogIndex;
using raft::Term;

std::string N(uint64_t v) {
  return std::to_string(v);
}

Entry MakeEntry(uint64_t index, uint64_t term, std::mt19937_64& rng) {
  return Entry{Term(term), LogIndex(index), raft::EntryType::kNormal,
               "i" + N(index) + "t" + N(term) + ":" + std::string(rng() % 200, 'x')};
}

/// The state machine's digest: the previous snapshot's payload folded with each entry applied.
std::string Digest(const std::string& prev, const std::vector<Entry>& entries) {
  uint64_t h = Fnv1a64(prev);
  for (const auto& e : entries) h = Fnv1a64(std::to_string(h) + e.data);
  return "digest:" + N(h);
}

}  // namespace

raft::Term Model::TermAt(raft::LogIndex i) const {
  if (i == snapshot.index) return snapshot.term;
  return log[i - snapshot.index.next()].term;
}

Result<Model> Model::From(const NodeStorage& s) {
  Model m;
  if (s.recovered_snapshot()) {
    m.snapshot = s.recovered_snapshot()->meta;
    m.payload = s.recovered_snapshot()->payload;
  }
  const RaftStore& log = s.log();
  if (log.Snapshot().index != m.snapshot.index) {
    return Internal("the log starts after " + N(log.Snapshot().index.value()) +
                    " but the recovered snapshot is at " + N(m.snapshot.index.value()));
  }
  auto es = log.Entries(log.FirstIndex(), log.LastIndex().next(), UINT64_MAX);
  if (!es.ok()) return es.status();
  m.log = std::move(es).value();
  m.hard = log.Initial().hard;
  m.synced_commit = m.hard.commit;
  m.conf = log.Initial().conf;
  return m;
}

std::string Model::Diff(const Model& want, const Model& got) {
  if (want.snapshot.index != got.snapshot.index || want.snapshot.term != got.snapshot.term) {
    return "snapshot at " + N(got.snapshot.index.value()) + "/" + N(got.snapshot.term.value()) +
           ", want " + N(want.snapshot.index.value()) + "/" + N(want.snapshot.term.value());
  }
  if (want.payload != got.payload) return "snapshot payload differs";
  if (want.snapshot.conf != got.snapshot.conf) return "snapshot membership differs";
  if (want.last() != got.last()) {
    return "last index " + N(got.last().value()) + ", want " + N(want.last().value());
  }
  for (size_t k = 0; k < want.log.size(); ++k) {
    if (want.log[k] != got.log[k]) return "entry " + N(want.log[k].index.value()) + " differs";
  }
  const bool commit_ok =
      got.hard.commit >= want.synced_commit && got.hard.commit <= want.hard.commit;
  if (want.hard.term != got.hard.term || want.hard.vote != got.hard.vote || !commit_ok) {
    return "hard state term " + N(got.hard.term.value()) + " commit " + N(got.hard.commit.value()) +
           ", want term " + N(want.hard.term.value()) + " commit " + N(want.hard.commit.value());
  }
  if (want.conf != got.conf) return "membership differs";
  return "";
}

std::string Op::Describe() const {
  switch (kind) {
    case kAppend:
    case kCommit:
    case kTruncate:
      return std::string(kind == kAppend   ? "append "
                         : kind == kCommit ? "commit alone "
                                           : "truncate ") +
             (batch.entries.empty() ? std::string("-")
                                    : N(batch.entries.front().index.value()) + ".." +
                                          N(batch.entries.back().index.value())) +
             " commit " + N(batch.hard_state->commit.value());
    case kSnapshot:
      return "snapshot at " + N(meta.index.value());
    case kInstall:
      return "install snapshot at " + N(meta.index.value());
  }
  return "?";
}

Op NextOp(const Model& m, std::mt19937_64& rng) {
  const uint64_t last = m.last().value();
  const uint64_t commit = m.hard.commit.value();
  const uint64_t term = std::max<uint64_t>(m.hard.term.value(), 1);
  const uint64_t r = rng() % 100;
  Op op;
  if (r < 14 && last > commit) {
    // A new leader replaces part of the uncommitted suffix.
    op.kind = Op::kTruncate;
    const uint64_t from = commit + 1 + rng() % (last - commit);
    const uint64_t n = 1 + rng() % 4;
    for (uint64_t i = from; i < from + n; ++i) {
      op.batch.entries.push_back(MakeEntry(i, term + 1, rng));
    }
    op.batch.hard_state =
        raft::HardState{Term(term + 1), raft::NodeId(1 + rng() % 3), m.hard.commit};
    return op;
  }
  const uint64_t snap = m.snapshot.index.value();
  if (r < 26 && commit > snap) {
    op.kind = Op::kSnapshot;
    const uint64_t upto = snap + 1 + rng() % (commit - snap);
    op.meta = raft::SnapshotMeta{LogIndex(upto), m.TermAt(LogIndex(upto)), m.conf};
    const std::vector<Entry> applied(m.log.begin(),
                                     m.log.begin() + static_cast<ptrdiff_t>(upto - snap));
    op.payload = Digest(m.payload, applied) + std::string(rng() % 3000, 'p');
    return op;
  }
  if (r < 36 && last > commit) {
    op.kind = Op::kCommit;
    op.batch.hard_state =
        raft::HardState{m.hard.term, m.hard.vote, LogIndex(commit + 1 + rng() % (last - commit))};
    return op;
  }
  if (r < 39) {
    op.kind = Op::kInstall;
    const uint64_t at = last + 1 + rng() % 5;
    op.meta = raft::SnapshotMeta{LogIndex(at), Term(term + 1), {}};
    op.meta.conf.voters = {raft::NodeId(1), raft::NodeId(2), raft::NodeId(3 + rng() % 2)};
    op.payload = "installed@" + N(at) + std::string(rng() % 3000, 'q');
    return op;
  }
  op.kind = Op::kAppend;
  const uint64_t n = 1 + rng() % 8;
  for (uint64_t i = last + 1; i <= last + n; ++i) {
    op.batch.entries.push_back(MakeEntry(i, term, rng));
  }
  const uint64_t new_commit = std::min(last + n, commit + rng() % (n + 3));
  op.batch.hard_state = raft::HardState{Term(term), m.hard.vote, LogIndex(new_commit)};
  if (rng() % 20 == 0) {
    raft::ConfState c;
    c.voters = {raft::NodeId(1), raft::NodeId(2), raft::NodeId(3)};
    if (rng() % 2) c.learners = {raft::NodeId(4 + rng() % 3)};
    op.batch.conf_state = c;
  }
  return op;
}

Model Apply(const Model& m, const Op& op) {
  Model n = m;
  switch (op.kind) {
    case Op::kAppend:
    case Op::kCommit:
    case Op::kTruncate: {
      const auto& es = op.batch.entries;
      if (!es.empty()) {
        n.log.resize(es.front().index - m.snapshot.index.next());
        n.log.insert(n.log.end(), es.begin(), es.end());
      }
      if (op.batch.hard_state) n.hard = *op.batch.hard_state;
      if (op.batch.conf_state) n.conf = *op.batch.conf_state;
      break;
    }
    case Op::kSnapshot:
      n.log.erase(n.log.begin(),
                  n.log.begin() + static_cast<ptrdiff_t>(op.meta.index - m.snapshot.index));
      n.snapshot = op.meta;
      n.payload = op.payload;
      break;
    case Op::kInstall:
      n.log.clear();
      n.snapshot = op.meta;
      n.payload = op.payload;
      n.conf = op.meta.conf;
      n.hard.commit = op.meta.index;
      n.hard.term = std::max(n.hard.term, op.meta.term);
      break;
  }
  // Every write but a commit index raised alone is synced, and a synced write makes everything
  // before it durable (the WAL is a sequence).
  if (op.kind != Op::kCommit) n.synced_commit = n.hard.commit;
  return n;
}

Model ApplyInFlight(const Model& m, const Op& op) {
  Model n = Apply(m, op);
  n.synced_commit = std::max(m.synced_commit, n.snapshot.index);
  return n;
}

Status Execute(NodeStorage& s, const Op& op) {
  switch (op.kind) {
    case Op::kAppend:
    case Op::kCommit:
    case Op::kTruncate:
      return s.log().Append(op.batch);
    case Op::kSnapshot:
      return s.SaveSnapshot(op.meta, op.payload);
    case Op::kInstall:
      return s.InstallSnapshot(op.meta, op.payload);
  }
  return Internal("unknown op");
}

}  // namespace lockd::storage::testing
