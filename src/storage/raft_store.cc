#include "storage/raft_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "storage/records.h"

namespace lockd::storage {
namespace {

constexpr const char* kHardStateKey = "hard_state";
constexpr const char* kConfStateKey = "conf_state";
constexpr const char* kSnapshotKey = "snapshot";

std::string N(raft::LogIndex i) {
  return std::to_string(i.value());
}

}  // namespace

Result<std::unique_ptr<RaftStore>> RaftStore::Open(const std::string& dir,
                                                   RaftStoreOptions options) {
  std::unique_ptr<RaftStore> s(new RaftStore());
  s->options_ = options;
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  // Durability comes from the synced WAL; memtable flushes need no extra fsync ordering from us.
  db_options.max_total_wal_size = 256 << 20;
  db_options.avoid_flush_during_shutdown = false;
  if (options.env) db_options.env = options.env;
  rocksdb::ColumnFamilyOptions cf;
  cf.compression = rocksdb::kNoCompression;  // entries are small and mostly incompressible ids
  // A large memtable keeps the hot tail of the log in memory and makes flushes (a second write of
  // every entry, competing with the WAL's fsync) rarer; the log is compacted behind snapshots.
  cf.write_buffer_size = 128 << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, cf}, {"log", cf}, {"meta", cf}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status st = options.read_only
                           ? rocksdb::DB::OpenForReadOnly(db_options, dir, cfs, &handles, &db)
                           : rocksdb::DB::Open(db_options, dir, cfs, &handles, &db);
  if (!st.ok()) return Internal("cannot open the Raft log in " + dir + ": " + st.ToString());
  s->db_.reset(db);
  s->log_cf_ = handles[1];
  s->meta_cf_ = handles[2];
  delete handles[0];  // the default family is unused
  if (Status r = s->Recover(); !r.ok()) {
    return Status(r.code(), "recovering " + dir + ": " + r.message());
  }
  return s;
}

RaftStore::~RaftStore() {
  if (db_) {
    delete log_cf_;
    delete meta_cf_;
    db_->Close().PermitUncheckedError();
  }
}

Status RaftStore::Recover() {
  std::string v;
  if (db_->Get({}, meta_cf_, kHardStateKey, &v).ok()) {
    auto hs = DecodeHardState(v);
    if (!hs.ok()) return hs.status();
    hard_ = *hs;
  }
  if (db_->Get({}, meta_cf_, kConfStateKey, &v).ok()) {
    auto m = DecodeSnapshotMeta(v);  // the conf state is stored in a snapshot-meta record
    if (!m.ok()) return m.status();
    conf_ = m->conf;
  }
  if (db_->Get({}, meta_cf_, kSnapshotKey, &v).ok()) {
    auto m = DecodeSnapshotMeta(v);
    if (!m.ok()) return m.status();
    snapshot_ = *m;
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, log_cf_));
  raft::LogIndex expect = snapshot_.index.next();
  raft::Term prev_term = snapshot_.term;
  for (it->Seek(IndexKey(expect)); it->Valid(); it->Next()) {
    const raft::LogIndex idx = KeyIndex(it->key().ToStringView());
    if (idx != expect) {
      return DataLoss("the log has a gap: entry " + N(expect) + " is missing (next is " + N(idx) +
                      ")");
    }
    auto e = DecodeEntry(idx, it->value().ToStringView());
    if (!e.ok()) return e.status();
    if (e->term < prev_term) {
      return DataLoss("entry " + N(idx) + " has term " + std::to_string(e->term.value()) +
                      ", lower than the entry before it");
    }
    prev_term = e->term;
    terms_.push_back(e->term);
    expect = expect.next();
  }
  if (!it->status().ok()) return DataLoss("reading the log: " + it->status().ToString());
  if (hard_.commit > LastIndex()) {
    return DataLoss("hard state commit index " + N(hard_.commit) + " is past the last entry " +
                    N(LastIndex()));
  }
  if (!terms_.empty() && terms_.back() > hard_.term) {
    return DataLoss("the last entry's term is above the hard state's term");
  }
  return Status::Ok();
}

raft::InitialState RaftStore::Initial() const {
  return {hard_, conf_};
}

Result<raft::Term> RaftStore::TermAt(raft::LogIndex i) const {
  if (i == snapshot_.index) return snapshot_.term;
  if (i < snapshot_.index) return OutOfRange("entry " + N(i) + " was compacted");
  if (i > LastIndex())
    return OutOfRange("entry " + N(i) + " is past the last index " + N(LastIndex()));
  return terms_[i - snapshot_.index.next()];
}

Result<std::vector<raft::Entry>> RaftStore::Entries(raft::LogIndex lo, raft::LogIndex hi,
                                                    uint64_t max_bytes) const {
  if (lo <= snapshot_.index) return OutOfRange("entry " + N(lo) + " was compacted");
  if (hi > LastIndex().next() || lo > hi) {
    return OutOfRange("entries [" + N(lo) + ", " + N(hi) + ") are past the last index " +
                      N(LastIndex()));
  }
  std::vector<raft::Entry> out;
  uint64_t bytes = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, log_cf_));
  for (it->Seek(IndexKey(lo)); it->Valid() && KeyIndex(it->key().ToStringView()) < hi; it->Next()) {
    auto e = DecodeEntry(KeyIndex(it->key().ToStringView()), it->value().ToStringView());
    if (!e.ok()) return e.status();
    bytes += e->ByteSize();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(std::move(e).value());
  }
  if (!it->status().ok()) return DataLoss("reading the log: " + it->status().ToString());
  return out;
}

Status RaftStore::Write(rocksdb::WriteBatch& batch, const char* what) {
  if (!fatal_.ok()) return fatal_;
  rocksdb::WriteOptions wo;
  wo.sync = !options_.skip_sync_for_testing;
  rocksdb::Status st = db_->Write(wo, &batch);
  if (!st.ok()) {
    fatal_ = DataLoss(std::string(what) + " failed (" + st.ToString() +
                      "); this node stops acknowledging and must exit");
    spdlog::critical("{}", fatal_.message());
    return fatal_;
  }
  return Status::Ok();
}

Status RaftStore::Append(const PersistBatch& batch) {
  if (!fatal_.ok()) return fatal_;
  rocksdb::WriteBatch wb;
  size_t keep = terms_.size();  // entries of the old log that stay
  if (!batch.entries.empty()) {
    const raft::LogIndex first = batch.entries.front().index;
    if (first <= snapshot_.index) {
      return FailedPrecondition("append at " + N(first) + " is at or below the snapshot index " +
                                N(snapshot_.index));
    }
    if (first > LastIndex().next()) {
      return FailedPrecondition("append at " + N(first) + " would leave a gap after " +
                                N(LastIndex()));
    }
    for (size_t k = 1; k < batch.entries.size(); ++k) {
      if (batch.entries[k].index != batch.entries[k - 1].index.next()) {
        return InvalidArgument("appended entries are not contiguous");
      }
    }
    keep = first - snapshot_.index.next();
    if (first <= LastIndex()) {  // a conflicting suffix is replaced in the same batch
      wb.DeleteRange(log_cf_, IndexKey(first), IndexKey(LastIndex().next()));
    }
    for (const auto& e : batch.entries) wb.Put(log_cf_, IndexKey(e.index), EncodeEntry(e));
  }
  if (batch.hard_state) wb.Put(meta_cf_, kHardStateKey, EncodeHardState(*batch.hard_state));
  if (Status s = Write(wb, "appending to the Raft log"); !s.ok()) return s;
  terms_.resize(keep);
  for (const auto& e : batch.entries) terms_.push_back(e.term);
  if (batch.hard_state) hard_ = *batch.hard_state;
  return Status::Ok();
}

Status RaftStore::SetConfState(const raft::ConfState& conf) {
  rocksdb::WriteBatch wb;
  wb.Put(meta_cf_, kConfStateKey, EncodeSnapshotMeta(raft::SnapshotMeta{{}, {}, conf}));
  if (Status s = Write(wb, "writing the membership"); !s.ok()) return s;
  conf_ = conf;
  return Status::Ok();
}

Status RaftStore::Compact(const raft::SnapshotMeta& meta) {
  if (meta.index <= snapshot_.index) return Status::Ok();
  if (meta.index > LastIndex()) {
    return FailedPrecondition("cannot compact to " + N(meta.index) + ", past the last index " +
                              N(LastIndex()));
  }
  auto term = TermAt(meta.index);
  if (!term.ok() || *term != meta.term) {
    return FailedPrecondition("snapshot at " + N(meta.index) +
                              " has a term the log disagrees with");
  }
  rocksdb::WriteBatch wb;
  wb.DeleteRange(log_cf_, IndexKey(snapshot_.index.next()), IndexKey(meta.index.next()));
  wb.Put(meta_cf_, kSnapshotKey, EncodeSnapshotMeta(meta));
  if (Status s = Write(wb, "compacting the Raft log"); !s.ok()) return s;
  terms_.erase(terms_.begin(),
               terms_.begin() + static_cast<ptrdiff_t>(meta.index - snapshot_.index));
  snapshot_ = meta;
  return Status::Ok();
}

Status RaftStore::ResetToSnapshot(const raft::SnapshotMeta& meta) {
  rocksdb::WriteBatch wb;
  wb.DeleteRange(log_cf_, IndexKey(raft::LogIndex(0)), IndexKey(raft::LogIndex(UINT64_MAX)));
  wb.Put(meta_cf_, kSnapshotKey, EncodeSnapshotMeta(meta));
  wb.Put(meta_cf_, kConfStateKey, EncodeSnapshotMeta(raft::SnapshotMeta{{}, {}, meta.conf}));
  raft::HardState hs = hard_;
  if (hs.commit < meta.index) hs.commit = meta.index;
  if (hs.term < meta.term) hs.term = meta.term;
  wb.Put(meta_cf_, kHardStateKey, EncodeHardState(hs));
  if (Status s = Write(wb, "installing a snapshot"); !s.ok()) return s;
  terms_.clear();
  snapshot_ = meta;
  conf_ = meta.conf;
  hard_ = hs;
  return Status::Ok();
}

}  // namespace lockd::storage
