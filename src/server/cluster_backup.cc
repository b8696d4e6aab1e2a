// ClusterService.Snapshot and ClusterService.Backup (issue 15; docs/api.md).
//
// Snapshot compacts the log of the node asked (each member compacts its own log; Raft needs no
// agreement for it) and answers the snapshot's index and size.
//
// Backup copies the node's applied state once, on the replica's loop (the state's encoding, as a
// periodic snapshot takes, and the header: nothing more), encodes and hashes the backup file
// (storage/backup_file.h) on a thread of the call's own, and then streams it from memory, one
// chunk in flight at a time: the next chunk is written only when the previous write completed
// (OnWriteDone), so a slow reader holds its own copy and nothing else — no lock, no loop time, no
// buffer on the serving path. At most kMaxConcurrentBackups run at once, and a reader that takes
// no chunk for the stall timeout is ended RESOURCE_EXHAUSTED (the watchdog's CheckProgress), so
// readers that stopped cannot hold every slot.
#include <grpc/grpc.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "base/thread_name.h"
#include "server/convert.h"
#include "server/lock_service.h"
#include "storage/backup_file.h"

namespace lockd::server {

namespace pb = lockd::v1;

namespace {

class BackupReactor final : public grpc::ServerWriteReactor<pb::BackupChunk>,
                            public LockServiceImpl::Stream {
 public:
  BackupReactor(LockServiceImpl& service, grpc::CallbackServerContext* ctx, std::atomic<int>& slots,
                const BackupMetrics& metrics, std::chrono::milliseconds stall_timeout)
      : service_(service),
        ctx_(ctx),
        slots_(slots),
        metrics_(metrics),
        stall_timeout_(stall_timeout) {}

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
    FinishDroppingWriteLocked(LockServiceImpl::Stopping("take the backup from another node"));
  }

  void CheckProgress(BootTime now) override {
    std::lock_guard lock(mu_);
    if (finished_ || !writing_ || now - write_started_ < stall_timeout_) return;
    FinishDroppingWriteLocked(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        "this backup's client took no chunk for " + std::to_string(stall_timeout_.count()) +
            " ms (--backup-stall-timeout-ms); read the stream as it comes, then take the backup "
            "again"));
    // The dropped write completes (and OnDone comes) only once the transport gets to it, which a
    // peer that reads nothing can put off: the slot and the copy are given back now.
    AccountLocked();
    ReleaseSlotLocked();
    std::string().swap(file_);
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
    {
      std::lock_guard lock(mu_);  // also waits for whoever still holds it (the encoding thread)
      AccountLocked();
      ReleaseSlotLocked();
    }
    if (registered_) service_.Unregister(this);
    delete this;
  }

 private:
  /// On the replica's loop: hands the copy to a thread of this call's own, which encodes and
  /// hashes it (a pass over the whole state: no loop time for it); the loop goes on at once.
  /// `capturing_` stays set until that thread is done with `this`.
  void OnCaptured(Result<storage::Backup> b) {
    std::lock_guard lock(mu_);
    if (finishing_ || !b.ok()) {  // the reader left or the node stopped meanwhile, or no copy
      capturing_ = false;
      FinishLocked(finishing_ ? final_ : ToGrpc(b.status()));
      return;
    }
    try {
      std::thread([this, b = std::move(b).value()] {
        NameThisThread("backup-encode");
        Encode(b);
      }).detach();
    } catch (const std::system_error& e) {
      capturing_ = false;
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                std::string("no thread to encode the backup: ") + e.what()));
    }
  }

  void Encode(const storage::Backup& b) {
    std::string file = storage::EncodeBackup(b);
    std::string digest = storage::BackupDigestHex(file);
    std::lock_guard lock(mu_);
    capturing_ = false;
    if (finishing_) {
      FinishLocked(final_);
      return;
    }
    index_ = b.header.index;
    file_ = std::move(file);
    file_bytes_ = file_.size();
    digest_ = std::move(digest);
    started_ = true;
    spdlog::info("backup at index {} (term {}, token counter {}): streaming {} bytes", index_,
                 b.header.term, b.header.token_counter, file_.size());
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
    write_started_ = SystemClock::Instance().Now();
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

  void ReleaseSlotLocked() {
    if (!holds_slot_) return;
    holds_slot_ = false;
    const int left = slots_.fetch_sub(1) - 1;
    if (metrics_.in_progress) metrics_.in_progress->Set(left);
  }

  /// Counts and logs how a backup that started streaming ended (once).
  void AccountLocked() {
    if (!started_ || accounted_) return;
    accounted_ = true;
    if (sent_whole_) {
      if (metrics_.completed) metrics_.completed->Increment();
      spdlog::info("backup at index {} streamed whole ({} bytes, sha256 {})", index_, file_bytes_,
                   digest_);
    } else {
      if (metrics_.failed) metrics_.failed->Increment();
      spdlog::warn("backup at index {} ended after {} of {} bytes: {}", index_, offset_,
                   file_bytes_, final_.error_message());
    }
  }

  /// Ends the call now even with a write in flight that a reader who stopped reading never
  /// completes: Finish alone would wait behind it (HTTP/2 trailers follow the data the client's
  /// window holds back). Cancelling with the status sends it at once and drops the unsent
  /// chunk; Finish is still required by the reactor API and may follow at once (the write then
  /// completes not ok, and OnDone comes after both).
  void FinishDroppingWriteLocked(const grpc::Status& s) {
    if (finished_) return;
    if (!finishing_) final_ = s;
    finishing_ = true;
    if (writing_ && ctx_ != nullptr) {
      grpc_call_cancel_with_status(ctx_->c_call(),
                                   static_cast<grpc_status_code>(final_.error_code()),
                                   final_.error_message().c_str(), nullptr);
    }
    if (capturing_) return;  // the capture's callback still holds `this`: it finishes
    finished_ = true;
    Finish(final_);
  }

  LockServiceImpl& service_;
  grpc::CallbackServerContext* const ctx_;
  std::atomic<int>& slots_;
  const BackupMetrics& metrics_;
  const std::chrono::milliseconds stall_timeout_;
  bool holds_slot_ = false;  ///< guarded by mu_ once Start() returned
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
  size_t file_bytes_ = 0;
  bool accounted_ = false;
  std::string digest_;
  uint64_t index_ = 0;
  size_t offset_ = 0;
  BootTime write_started_;  ///< of the write in flight
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
  if (auto denied = locks_.Authorize(*ctx, {Permission::kAdmin, "", false, "Snapshot"})) {
    reactor->Finish(*denied);
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
    grpc::CallbackServerContext* ctx, const pb::BackupRequest* req) {
  auto* reactor = new BackupReactor(locks_, ctx, backups_, backup_metrics_, backup_stall_timeout_);
  if (auto refused = locks_.Refuse(*req)) {
    reactor->Refuse(*refused);
    return reactor;
  }
  if (auto denied = locks_.Authorize(*ctx, {Permission::kAdmin, "", false, "Backup"})) {
    reactor->Refuse(*denied);
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
