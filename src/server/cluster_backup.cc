// ClusterService.Snapshot and ClusterService.Backup (issue 15; docs/api.md).
//
// Snapshot compacts the log of the node asked (each member compacts its own log; Raft needs no
// agreement for it) and answers the snapshot's index and size.
//
// Backup copies the node's applied state once, on the replica's loop (as a periodic snapshot
// does), encodes the backup file (storage/backup_file.h) and then streams it from memory, one
// chunk in flight at a time: the next chunk is written only when the previous write completed
// (OnWriteDone), so a slow reader holds its own copy and nothing else — no lock, no loop time, no
// buffer on the serving path. At most kMaxConcurrentBackups run at once.
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>

#include "server/convert.h"
#include "server/lock_service.h"
#include "storage/backup_file.h"

namespace lockd::server {

namespace pb = lockd::v1;

namespace {

class BackupReactor final : public grpc::ServerWriteReactor<pb::BackupChunk>,
                            public LockServiceImpl::Stream {
 public:
  BackupReactor(LockServiceImpl& service, std::atomic<int>& slots, const BackupMetrics& metrics)
      : service_(service), slots_(slots), metrics_(metrics) {}

  /// Takes a slot (the caller counted it already) and asks the replica for the state.
  void Start() {
    holds_slot_ = true;
    if (metrics_.in_progress) metrics_.in_progress->Set(slots_.load());
    {
      // Before Register: from then on Shutdown's End() may run, and it must not finish (and
      // delete) the reactor before the capture below has answered.
      std::lock_guard lock(mu_);
      capturing_ = true;
    }
    if (!service_.Register(this)) {
      std::lock_guard lock(mu_);
      capturing_ = false;
      FinishLocked(LockServiceImpl::Stopping("take the backup from another node"));
      return;
    }
    registered_ = true;
    service_.context().replica.CaptureBackup(
        [this](Result<storage::Backup> b) { OnCaptured(std::move(b)); });
  }

  /// Finishes at once (nothing else to release).
  void Refuse(const grpc::Status& s) {
    std::lock_guard lock(mu_);
    FinishLocked(s);
  }

  void End() override {
    std::lock_guard lock(mu_);
    FinishLocked(LockServiceImpl::Stopping("take the backup from another node"));
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the backup stream broke"));
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    if (registered_) service_.Unregister(this);
    if (holds_slot_) {
      const int left = slots_.fetch_sub(1) - 1;
      if (metrics_.in_progress) metrics_.in_progress->Set(left);
    }
    if (holds_slot_ && started_) {
      if (sent_whole_) {
        if (metrics_.completed) metrics_.completed->Increment();
        spdlog::info("backup at index {} streamed whole ({} bytes, sha256 {})", index_,
                     file_.size(), digest_);
      } else {
        if (metrics_.failed) metrics_.failed->Increment();
        spdlog::warn("backup at index {} ended after {} of {} bytes: {}", index_, offset_,
                     file_.size(), final_.error_message());
      }
    }
    delete this;
  }

 private:
  /// On the replica's loop: encode (one pass over the state, like the snapshot just taken) and
  /// start streaming; the loop goes on at once.
  void OnCaptured(Result<storage::Backup> b) {
    std::lock_guard lock(mu_);
    capturing_ = false;
    if (finishing_) {  // the reader left or the node stopped meanwhile: finish now
      FinishLocked(final_);
      return;
    }
    if (!b.ok()) {
      FinishLocked(ToGrpc(b.status()));
      return;
    }
    index_ = b->header.index;
    file_ = storage::EncodeBackup(*b);
    digest_ = storage::BackupDigestHex(file_);
    started_ = true;
    spdlog::info("backup at index {} (term {}, token counter {}): streaming {} bytes", index_,
                 b->header.term, b->header.token_counter, file_.size());
    WriteNextLocked();
  }

  void WriteNextLocked() {
    if (writing_ || finishing_) return;
    if (offset_ >= file_.size() && sent_any_) {
      sent_whole_ = true;
      FinishLocked(grpc::Status::OK);
      return;
    }
    const size_t n = std::min(storage::kBackupChunkBytes, file_.size() - offset_);
    out_.Clear();
    out_.set_data(file_.data() + offset_, n);
    out_.set_offset(offset_);
    if (offset_ == 0) out_.set_index(index_);
    offset_ += n;
    if (offset_ >= file_.size()) {
      out_.set_last(true);
      out_.set_sha256(digest_);
    }
    sent_any_ = true;
    writing_ = true;
    StartWrite(&out_);
    if (metrics_.bytes) metrics_.bytes->Increment(static_cast<double>(n));
  }

  /// Ends the stream once no write and no capture is in flight (the capture's callback holds
  /// `this`, so the reactor must outlive it: OnDone follows Finish).
  void FinishLocked(const grpc::Status& s) {
    if (finished_) return;
    if (!finishing_) final_ = s;
    finishing_ = true;
    if (writing_ || capturing_) return;
    finished_ = true;
    Finish(final_);
  }

  LockServiceImpl& service_;
  std::atomic<int>& slots_;
  const BackupMetrics& metrics_;
  bool holds_slot_ = false;
  bool registered_ = false;
  std::mutex mu_;  ///< guards what follows (OnCaptured runs on the replica's loop)
  bool capturing_ = false;
  bool writing_ = false;
  bool finishing_ = false;
  bool finished_ = false;
  bool started_ = false;
  bool sent_any_ = false;
  bool sent_whole_ = false;
  grpc::Status final_;
  std::string file_;
  std::string digest_;
  uint64_t index_ = 0;
  size_t offset_ = 0;
  pb::BackupChunk out_;
};

}  // namespace

grpc::ServerUnaryReactor* ClusterServiceImpl::Snapshot(grpc::CallbackServerContext* ctx,
                                                       const pb::SnapshotRequest* req,
                                                       pb::SnapshotResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (auto refused = locks_.Refuse(*req)) {
    reactor->Finish(*refused);
    return reactor;
  }
  locks_.context().replica.SnapshotNow([reactor, resp](Result<Replica::SnapshotTaken> taken) {
    if (!taken.ok()) {
      reactor->Finish(ToGrpc(taken.status()));
      return;
    }
    resp->set_index(taken->index);
    resp->set_bytes(taken->bytes);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerWriteReactor<pb::BackupChunk>* ClusterServiceImpl::Backup(
    grpc::CallbackServerContext*, const pb::BackupRequest* req) {
  auto* reactor = new BackupReactor(locks_, backups_, backup_metrics_);
  if (auto refused = locks_.Refuse(*req)) {
    reactor->Refuse(*refused);
    return reactor;
  }
  if (backups_.fetch_add(1) >= kMaxConcurrentBackups) {
    backups_.fetch_sub(1);
    if (backup_metrics_.refused) backup_metrics_.refused->Increment();
    reactor->Refuse(
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "this node is already streaming " + std::to_string(kMaxConcurrentBackups) +
                         " backups (the limit); retry when one has finished, or ask another node"));
    return reactor;
  }
  reactor->Start();
  return reactor;
}

}  // namespace lockd::server
