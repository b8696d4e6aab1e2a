#include "storage/raft_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <chrono>

#include "storage/records.h"

namespace lockd::storage {
namespace {

constexpr const char* kHardStateKey = "hard_state";
constexpr const char* kConfStateKey = "conf_state";
constexpr const char* kSnapshotKey = "snapshot";
constexpr const char* kLogFamily = "log";
constexpr const char* kMetaFamily = "meta";

std::string N(raft::LogIndex i) {
  return std::to_string(i.value());
}
std::string N(raft::Term t) {
  return std::to_string(t.value());
}

/// Options tuned for a synced log (the reasons are in docs/storage.md).
rocksdb::DBOptions MakeDBOptions(const RaftStoreOptions& o) {
  rocksdb::DBOptions db;
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  // Every write syncs the WAL, so only its last record can be torn, by a crash while it was
  // written (and unacknowledged). Anything else that fails its checksum is damage: refuse to
  // open rather than silently replay up to it (the default, kPointInTimeRecovery, would).
  db.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  db.paranoid_checks = true;
  // Durability is the synced WAL; flushed memtables need no ordering beyond what RocksDB does.
  // Cap the WAL so recovery replays little and flushes happen in the background.
  db.max_total_wal_size = 256 << 20;
  db.use_fsync = false;  // fdatasync: the WAL's size change is still made durable by it
  // RocksDB's own info LOG: keep a few small files, not the default thousand.
  db.keep_log_file_num = 4;
  db.max_log_file_size = 8 << 20;
  db.stats_dump_period_sec = 0;
  db.stats_persist_period_sec = 0;
  if (o.env) db.env = o.env;
  return db;
}

rocksdb::ColumnFamilyOptions MakeFamilyOptions(const RaftStoreOptions& o) {
  rocksdb::ColumnFamilyOptions cf;
  cf.compression = rocksdb::kNoCompression;  // small, mostly incompressible entries; CPU matters
  // A large memtable keeps the log's recent tail in memory (the reads followers and apply need)
  // and makes flushes, a second write of every entry that competes with the WAL's sync, rare.
  cf.write_buffer_size = o.memtable_bytes ? o.memtable_bytes : 128 << 20;
  cf.max_write_buffer_number = 3;
  return cf;
}

}  // namespace

RaftStore::RaftStore(RaftStoreOptions options)
    : options_(std::move(options)),
      own_fail_stop_(options_.on_fatal),
      fail_stop_(options_.shared_fail_stop ? options_.shared_fail_stop : &own_fail_stop_) {}

Result<std::unique_ptr<RaftStore>> RaftStore::Open(const std::string& dir,
                                                   RaftStoreOptions options) {
  std::unique_ptr<RaftStore> s(new RaftStore(std::move(options)));
  const rocksdb::DBOptions db_options = MakeDBOptions(s->options_);
  const rocksdb::ColumnFamilyOptions cf = MakeFamilyOptions(s->options_);
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, cf}, {kLogFamily, cf}, {kMetaFamily, cf}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status st = s->options_.read_only
                           ? rocksdb::DB::OpenForReadOnly(db_options, dir, cfs, &handles, &db)
                           : rocksdb::DB::Open(db_options, dir, cfs, &handles, &db);
  if (!st.ok()) {
    const StatusCode code = st.IsCorruption() ? StatusCode::kDataLoss : StatusCode::kInternal;
    return Status(code, "cannot open the Raft log in " + dir + ": " + st.ToString());
  }
  s->db_.reset(db);
  s->log_cf_ = handles[1];
  s->meta_cf_ = handles[2];
  s->db_->DestroyColumnFamilyHandle(handles[0]).PermitUncheckedError();  // default: unused
  if (Status r = s->Recover(); !r.ok()) {
    return Status(r.code(), "recovering the Raft log in " + dir + ": " + r.message());
  }
  return s;
}

RaftStore::~RaftStore() {
  if (!db_) return;
  db_->DestroyColumnFamilyHandle(log_cf_).PermitUncheckedError();
  db_->DestroyColumnFamilyHandle(meta_cf_).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
}

Status RaftStore::Recover() {
  std::string v;
  auto get = [&](const char* key) -> Result<bool> {
    rocksdb::Status st = db_->Get({}, meta_cf_, key, &v);
    if (st.IsNotFound()) return false;
    if (!st.ok()) return DataLoss(std::string("reading ") + key + ": " + st.ToString());
    return true;
  };
  auto found = get(kHardStateKey);
  if (!found.ok()) return found.status();
  if (*found) {
    auto hs = DecodeHardState(v);
    if (!hs.ok()) return hs.status();
    hard_ = *hs;
    written_hard_ = *hs;
  }
  found = get(kConfStateKey);
  if (!found.ok()) return found.status();
  if (*found) {
    auto m = DecodeSnapshotMeta(v);  // the membership is stored as a snapshot-meta record
    if (!m.ok()) return Status(m.status().code(), "membership: " + m.status().message());
    conf_ = m->conf;
  }
  found = get(kSnapshotKey);
  if (!found.ok()) return found.status();
  if (*found) {
    auto m = DecodeSnapshotMeta(v);
    if (!m.ok()) return m.status();
    snapshot_ = *m;
  }
  terms_.Reset(snapshot_.index);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, log_cf_));
  raft::LogIndex expect = snapshot_.index.next();
  raft::Term prev_term = snapshot_.term;
  for (it->Seek(IndexKey(expect)); it->Valid(); it->Next()) {
    if (it->key().size() != 8) return DataLoss("the log holds a malformed key");
    const raft::LogIndex idx = KeyIndex(it->key().ToStringView());
    if (idx != expect) {
      return DataLoss("the log has a gap: entry " + N(expect) + " is missing (the next is " +
                      N(idx) + ")");
    }
    auto e = DecodeEntry(idx, it->value().ToStringView());
    if (!e.ok()) return e.status();
    if (e->term < prev_term) {
      return DataLoss("log entry " + N(idx) + " has term " + N(e->term) + ", lower than the term " +
                      N(prev_term) + " before it");
    }
    prev_term = e->term;
    terms_.Append(e->term);
    expect = expect.next();
  }
  if (!it->status().ok()) return DataLoss("reading the log: " + it->status().ToString());
  if (hard_.commit > terms_.last()) {
    return DataLoss("the hard state's commit index " + N(hard_.commit) +
                    " is past the last log entry " + N(terms_.last()) + " (entries are missing)");
  }
  if (prev_term > hard_.term) {
    return DataLoss("the last log entry's term " + N(prev_term) + " is above the hard state's " +
                    N(hard_.term));
  }
  return Status::Ok();
}

raft::InitialState RaftStore::Initial() const {
  std::lock_guard lock(mu_);
  return {hard_, conf_};
}

raft::LogIndex RaftStore::FirstIndex() const {
  std::lock_guard lock(mu_);
  return terms_.first();
}

raft::LogIndex RaftStore::LastIndex() const {
  std::lock_guard lock(mu_);
  return terms_.last();
}

raft::SnapshotMeta RaftStore::Snapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

RaftStoreStats RaftStore::Stats() const {
  std::lock_guard lock(mu_);
  return {terms_.last() - snapshot_.index, terms_.runs()};
}

Result<raft::Term> RaftStore::TermAt(raft::LogIndex i) const {
  std::lock_guard lock(mu_);
  if (i == snapshot_.index) return snapshot_.term;
  if (i < snapshot_.index) return OutOfRange("entry " + N(i) + " was compacted");
  if (auto t = terms_.At(i)) return *t;
  return OutOfRange("entry " + N(i) + " is past the last index " + N(terms_.last()));
}

Result<std::vector<raft::Entry>> RaftStore::Entries(raft::LogIndex lo, raft::LogIndex hi,
                                                    uint64_t max_bytes) const {
  {
    std::lock_guard lock(mu_);
    if (lo <= snapshot_.index) return OutOfRange("entry " + N(lo) + " was compacted");
    if (hi > terms_.last().next() || lo > hi) {
      return OutOfRange("entries [" + N(lo) + ", " + N(hi) + ") are past the last index " +
                        N(terms_.last()));
    }
  }
  std::vector<raft::Entry> out;
  if (lo == hi) return out;
  uint64_t bytes = 0;
  rocksdb::ReadOptions ro;
  const std::string upper = IndexKey(hi);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, log_cf_));
  raft::LogIndex expect = lo;
  for (it->Seek(IndexKey(lo)); it->Valid(); it->Next(), expect = expect.next()) {
    const raft::LogIndex idx = KeyIndex(it->key().ToStringView());
    // Only a write racing this read (a truncation or compaction) can leave a hole here.
    if (idx != expect) return Unavailable("the log changed during the read at entry " + N(expect));
    auto e = DecodeEntry(idx, it->value().ToStringView());
    if (!e.ok()) return e.status();
    bytes += e->ByteSize();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(std::move(e).value());
  }
  if (!it->status().ok()) return Internal("reading the log: " + it->status().ToString());
  if (out.empty() || (out.back().index.next() != hi && bytes <= max_bytes)) {
    return Unavailable("the log changed during the read at entry " + N(expect));
  }
  return out;
}

Status RaftStore::Write(rocksdb::WriteBatch& batch, const char* what) {
  rocksdb::WriteOptions wo;
  wo.sync = !options_.skip_sync_for_testing;
  const auto start = std::chrono::steady_clock::now();
  rocksdb::Status st = db_->Write(wo, &batch);
  if (!st.ok()) return fail_stop_->Trip(what, st.ToString());
  if (options_.on_synced_write) {
    options_.on_synced_write(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return Status::Ok();
}

Status RaftStore::Append(const PersistBatch& batch) {
  std::lock_guard writing(write_mu_);
  if (Status s = fail_stop_->Check(); !s.ok()) return s;
  if (options_.read_only) return FailedPrecondition("the Raft log was opened read-only");
  raft::LogIndex snap, last;
  raft::HardState hard;
  raft::Term prev_term;  // the term of the entry before the first appended one
  const raft::LogIndex first =
      batch.entries.empty() ? raft::LogIndex() : batch.entries.front().index;
  {
    std::lock_guard lock(mu_);
    snap = snapshot_.index;
    last = terms_.last();
    hard = hard_;
    if (!batch.entries.empty() && first > snap && first <= last.next()) {
      prev_term = first.prev() == snap ? snapshot_.term : *terms_.At(first.prev());
    }
  }
  const raft::HardState next_hard = batch.hard_state.value_or(hard);
  raft::LogIndex next_last = last;
  rocksdb::WriteBatch wb;
  if (!batch.entries.empty()) {
    if (first <= snap) {
      return FailedPrecondition("append at " + N(first) + " is at or below the snapshot index " +
                                N(snap));
    }
    if (first > last.next()) {
      return FailedPrecondition("append at " + N(first) + " would leave a gap after " + N(last));
    }
    if (first <= hard.commit) {
      return FailedPrecondition("append at " + N(first) +
                                " would overwrite committed entries (commit " + N(hard.commit) +
                                ")");
    }
    raft::Term t = prev_term;
    for (size_t k = 0; k < batch.entries.size(); ++k) {
      const raft::Entry& e = batch.entries[k];
      if (k > 0 && e.index != batch.entries[k - 1].index.next()) {
        return InvalidArgument("appended entries are not contiguous at " + N(e.index));
      }
      if (e.term < t) return InvalidArgument("entry " + N(e.index) + " lowers the term");
      t = e.term;
    }
    if (t > next_hard.term) {
      return FailedPrecondition("entries of term " + N(t) + " need a hard state of that term");
    }
    if (first <= last) wb.DeleteRange(log_cf_, IndexKey(first), IndexKey(last.next()));
    for (const auto& e : batch.entries) {
      // Header and data as two parts: RocksDB copies the data once, into the batch.
      const std::string key = IndexKey(e.index), header = EncodeEntryHeader(e);
      const rocksdb::Slice key_part(key), parts[2] = {header, e.data};
      wb.Put(log_cf_, rocksdb::SliceParts(&key_part, 1), rocksdb::SliceParts(parts, 2));
    }
    next_last = batch.entries.back().index;
  }
  if (batch.hard_state) {
    if (next_hard.term < hard.term || next_hard.commit < hard.commit) {
      return FailedPrecondition("the hard state may not go backwards");
    }
    if (next_hard.commit > next_last) {
      return FailedPrecondition("commit index " + N(next_hard.commit) + " is past the last entry " +
                                N(next_last));
    }
  }
  // Term and vote must be durable before any message that depends on them leaves, and entries
  // before they count towards a quorum; a commit index alone waits for the next write.
  const bool durable_change = !batch.entries.empty() || batch.conf_state.has_value() ||
                              next_hard.term != hard.term || next_hard.vote != hard.vote;
  if (!durable_change) {
    std::lock_guard lock(mu_);
    hard_ = next_hard;
    return Status::Ok();
  }
  if (next_hard != written_hard_) wb.Put(meta_cf_, kHardStateKey, EncodeHardState(next_hard));
  if (batch.conf_state) {
    wb.Put(meta_cf_, kConfStateKey,
           EncodeSnapshotMeta(raft::SnapshotMeta{{}, {}, *batch.conf_state}));
  }
  if (wb.Count() == 0) return Status::Ok();
  if (Status s = Write(wb, "appending to the Raft log"); !s.ok()) return s;
  written_hard_ = next_hard;
  std::lock_guard lock(mu_);
  if (!batch.entries.empty()) {
    terms_.TruncateFrom(first);
    for (const auto& e : batch.entries) terms_.Append(e.term);
  }
  hard_ = next_hard;
  if (batch.conf_state) conf_ = *batch.conf_state;
  return Status::Ok();
}

Status RaftStore::SetConfState(const raft::ConfState& conf) {
  PersistBatch b;
  b.conf_state = conf;
  return Append(b);
}

Status RaftStore::Compact(const raft::SnapshotMeta& meta) {
  std::lock_guard writing(write_mu_);
  if (Status s = fail_stop_->Check(); !s.ok()) return s;
  if (options_.read_only) return FailedPrecondition("the Raft log was opened read-only");
  raft::SnapshotMeta snap;
  raft::HardState hard;
  {
    std::lock_guard lock(mu_);
    snap = snapshot_;
    hard = hard_;
    if (meta.index <= snap.index) return Status::Ok();  // already covered
    if (meta.index > hard_.commit) {
      return FailedPrecondition("cannot compact to " + N(meta.index) + ": past the commit index " +
                                N(hard_.commit));
    }
    const auto t = terms_.At(meta.index);
    if (!t || *t != meta.term) {
      return FailedPrecondition("the snapshot at " + N(meta.index) + " has term " + N(meta.term) +
                                ", which the log disagrees with");
    }
  }
  rocksdb::WriteBatch wb;
  wb.DeleteRange(log_cf_, IndexKey(snap.index.next()), IndexKey(meta.index.next()));
  wb.Put(meta_cf_, kSnapshotKey, EncodeSnapshotMeta(meta));
  // The commit index kept in memory covers the snapshot: it must be durable with it.
  if (hard != written_hard_) wb.Put(meta_cf_, kHardStateKey, EncodeHardState(hard));
  if (Status s = Write(wb, "compacting the Raft log"); !s.ok()) return s;
  written_hard_ = hard;
  std::lock_guard lock(mu_);
  terms_.CompactTo(meta.index);
  snapshot_ = meta;
  return Status::Ok();
}

Status RaftStore::ResetToSnapshot(const raft::SnapshotMeta& meta) {
  std::lock_guard writing(write_mu_);
  if (Status s = fail_stop_->Check(); !s.ok()) return s;
  if (options_.read_only) return FailedPrecondition("the Raft log was opened read-only");
  raft::HardState hs;
  {
    std::lock_guard lock(mu_);
    if (meta.index <= snapshot_.index) {
      return FailedPrecondition("the snapshot at " + N(meta.index) +
                                " is not newer than the log's start " + N(snapshot_.index));
    }
    if (hard_.commit > meta.index) {
      return FailedPrecondition("the snapshot at " + N(meta.index) +
                                " is behind the commit index " + N(hard_.commit));
    }
    hs = hard_;
  }
  hs.commit = meta.index;
  if (hs.term < meta.term) hs.term = meta.term;
  rocksdb::WriteBatch wb;
  wb.DeleteRange(log_cf_, IndexKey(raft::LogIndex(0)), IndexKey(raft::LogIndex(UINT64_MAX)));
  wb.Put(meta_cf_, kSnapshotKey, EncodeSnapshotMeta(meta));
  wb.Put(meta_cf_, kConfStateKey, EncodeSnapshotMeta(raft::SnapshotMeta{{}, {}, meta.conf}));
  wb.Put(meta_cf_, kHardStateKey, EncodeHardState(hs));
  if (Status s = Write(wb, "installing a snapshot in the Raft log"); !s.ok()) return s;
  written_hard_ = hs;
  std::lock_guard lock(mu_);
  terms_.Reset(meta.index);
  snapshot_ = meta;
  conf_ = meta.conf;
  hard_ = hs;
  return Status::Ok();
}

}  // namespace lockd::storage
