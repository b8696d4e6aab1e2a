// LockServiceImpl and ClusterServiceImpl: the client-facing gRPC services (callback API: a waiting
// Acquire or a parked renewal holds no thread).
//
// Every call is validated first (INVALID_ARGUMENT before anything is proposed). On the leader a
// mutating call becomes a command submitted to the Replica; on any other node it is forwarded to
// the leader with the caller's deadline cut to F_fwd (Forwarder); a call that was itself forwarded
// and reaches a node that is not the leader is UNAVAILABLE (the client retries with the same
// request id). Inspection is linearizable (ReadIndex on the leader) unless `stale` asks for the
// local state. Watch streams read the apply stream through the WatchHub.
//
// Every call is also refused first when the node is stopping (UNAVAILABLE, "this node is
// stopping": a retry with the same request id goes to another node) and when its message is
// larger than --max-request-bytes (RESOURCE_EXHAUSTED naming the limit; gRPC's own receive limit
// is set above it so that this answer, with the response metadata, is the one the caller sees).
//
// Owned by Node, which registers them on the client-port server and calls Shutdown() before the
// server stops, so that every open stream and every forward in flight ends UNAVAILABLE.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "base/clock.h"
#include "lock/types.h"
#include "lockd/v1/lockd.grpc.pb.h"
#include "server/access_control.h"
#include "server/forwarder.h"
#include "server/metrics.h"
#include "server/replica.h"

namespace lockd::server {

class WatchHub;
class IdentityStore;
class AccessControl;

/// How a call is forwarded to the leader (LockServiceImpl::Forward); the defaults are every
/// lock call's.
struct ForwardOptions {
  /// How long the leader may take, from now (zero: F_fwd). Membership calls wait longer.
  std::chrono::milliseconds max_age{0};
  /// Forward even though this call arrived forwarded: only a leader that handed over to leave
  /// passes its own removal on to its successor (that cannot loop: the successor is asked to
  /// remove another node, which it does itself or answers UNAVAILABLE).
  bool internal_hop = false;
};

/// What the services need to know about the node beyond the Replica.
struct ServiceContext {
  Replica& replica;
  Forwarder& forwarder;
  WatchHub& watch;
  const Clock& clock;
  lock::Limits limits;
  /// The cluster id, empty while not decided yet (it is decided after start).
  std::function<std::string()> cluster_id;
  /// The member table and this node's removal (not owned; outlives the services).
  IdentityStore* identity = nullptr;
  std::chrono::milliseconds forward_timeout{10'000};
  uint32_t max_page_size = 1000;
  size_t max_request_bytes = 65536;
  /// Streams ended RESOURCE_EXHAUSTED because their reader fell behind (null: not counted).
  Counter* keepalive_overflows = nullptr;
  Counter* watch_overflows = nullptr;
  /// Acquire latencies, renewals, forwards, force-releases (null: not counted).
  ServiceMetrics* metrics = nullptr;
  /// Access control (null: off, every call is allowed; not owned).
  AccessControl* access = nullptr;

  /// The client address of member `id`, or empty when it is not a member.
  std::string ClientAddr(uint64_t id) const;
  /// The member table as this node applied it.
  std::vector<MemberSpec> Members() const;
  /// Why this node no longer serves (it was removed from the cluster), or empty.
  std::string RemovedReason() const;
};

class LockServiceImpl final : public lockd::v1::LockService::CallbackService {
 public:
  explicit LockServiceImpl(ServiceContext ctx);
  ~LockServiceImpl() override;

  /// The node is stopping: every new call and every forward in flight is answered UNAVAILABLE,
  /// and every Watch and KeepAlive stream ends UNAVAILABLE.
  void Shutdown();

  /// Renewals read and not yet answered on the wire, per KeepAlive stream: at this bound the
  /// stream stops reading renewals until writes complete (backpressure on the client).
  static constexpr size_t kMaxKeepAliveBacklog = 1024;
  /// Leases one KeepAlive message may renew (lease_id and more_lease_ids together).
  static constexpr size_t kMaxRenewalsPerMessage = 1000;
  /// The same bound in bytes of answers queued or in flight (an answer lists every lock its lease
  /// holds, so 1,024 of them can be large): above it the stream stops reading too.
  static constexpr size_t kMaxKeepAliveBacklogBytes = size_t{4} << 20;
  /// A KeepAlive stream whose write in flight has not completed for this long has a client that
  /// stopped reading: it is ended RESOURCE_EXHAUSTED (counted). (A Watch needs no timer: a
  /// watcher that stops reading falls kMaxQueued entries behind and is ended then.)
  static constexpr std::chrono::seconds kStuckWriteTimeout{5};
  /// How often the stream watchdog looks at every open stream's progress.
  static constexpr std::chrono::milliseconds kWatchdogPeriod{500};

  /// Counts one renewal answer in the service metrics (ok, refused or unavailable).
  void CountRenewal(const Result<Replica::Renewed>& renewed) const;
  /// `done`, timing the Acquire it answers into the acquire histograms by outcome.
  Replica::CommandDone TimeAcquire(Replica::CommandDone done, bool waits) const;

  /// UNAVAILABLE saying the node is stopping, then `what_to_do`.
  static grpc::Status Stopping(const std::string& what_to_do);
  /// The answer to a call this node refuses before looking at it: it is stopping, or `req` is
  /// larger than --max-request-bytes. nullopt: go on.
  std::optional<grpc::Status> Refuse(const google::protobuf::Message& req) const;

  /// What a call needs of access control: `permission` on `name`, or on any name (`anywhere`).
  struct Needs {
    Permission permission;
    std::string_view name;
    bool anywhere = false;
    const char* what = "";  ///< the call, for the refusal
    /// Any identity may make the call (it checks what it shows itself): no permission needed.
    bool identity_only = false;
    /// How it counts against the identity's request rate. A retry counts like a first attempt
    /// (an attempt number is the client's word).
    Metering metering = Metering::kMetered;
  };
  /// Access control for one call (server/access_control.h): nullopt when it may go on (with
  /// `who`, when asked, filled; left empty when access control is off), or the refusal
  /// (UNAUTHENTICATED, RESOURCE_EXHAUSTED for the rate, PERMISSION_DENIED).
  std::optional<grpc::Status> Authorize(const grpc::ServerContextBase& ctx, const Needs& needs,
                                        AccessControl::Who* who = nullptr) const;
  /// `done`, counting in /metrics the refusals the state machine answered for access control.
  Replica::CommandDone CountRefusals(Replica::CommandDone done) const;

  grpc::ServerUnaryReactor* GrantLease(grpc::CallbackServerContext* ctx,
                                       const lockd::v1::GrantLeaseRequest* req,
                                       lockd::v1::GrantLeaseResponse* resp) override;
  grpc::ServerUnaryReactor* Renew(grpc::CallbackServerContext* ctx,
                                  const lockd::v1::RenewRequest* req,
                                  lockd::v1::RenewResponse* resp) override;
  grpc::ServerBidiReactor<lockd::v1::RenewRequest, lockd::v1::RenewResponse>* KeepAlive(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* RevokeLease(grpc::CallbackServerContext* ctx,
                                        const lockd::v1::RevokeLeaseRequest* req,
                                        lockd::v1::RevokeLeaseResponse* resp) override;
  grpc::ServerUnaryReactor* Acquire(grpc::CallbackServerContext* ctx,
                                    const lockd::v1::AcquireRequest* req,
                                    lockd::v1::AcquireResponse* resp) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* ctx,
                                   const lockd::v1::CancelRequest* req,
                                   lockd::v1::CancelResponse* resp) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx,
                                    const lockd::v1::ReleaseRequest* req,
                                    lockd::v1::ReleaseResponse* resp) override;
  grpc::ServerUnaryReactor* GetLock(grpc::CallbackServerContext* ctx,
                                    const lockd::v1::GetLockRequest* req,
                                    lockd::v1::GetLockResponse* resp) override;
  grpc::ServerUnaryReactor* ListLocks(grpc::CallbackServerContext* ctx,
                                      const lockd::v1::ListLocksRequest* req,
                                      lockd::v1::ListLocksResponse* resp) override;
  grpc::ServerUnaryReactor* ListLeases(grpc::CallbackServerContext* ctx,
                                       const lockd::v1::ListLeasesRequest* req,
                                       lockd::v1::ListLeasesResponse* resp) override;
  grpc::ServerUnaryReactor* GetLease(grpc::CallbackServerContext* ctx,
                                     const lockd::v1::GetLeaseRequest* req,
                                     lockd::v1::GetLeaseResponse* resp) override;
  grpc::ServerWriteReactor<lockd::v1::WatchResponse>* Watch(
      grpc::CallbackServerContext* ctx, const lockd::v1::WatchRequest* req) override;

  /// A stream reactor that Shutdown() must end and the watchdog looks at.
  class Stream {
   public:
    virtual ~Stream() = default;
    /// The node is stopping: finish now with UNAVAILABLE, even with a write in flight.
    virtual void End() = 0;
    /// Called by the watchdog every kWatchdogPeriod (with the service's mutex held, so the
    /// stream is not deleted meanwhile): ends a stream whose writes made no progress.
    virtual void CheckProgress(BootTime /*now*/) {}
    /// The access policy was reloaded (with the service's mutex held): a stream whose caller
    /// may no longer make it (its identity gone or changed, the permission withdrawn) ends with
    /// the refusal a new call would get.
    virtual void Recheck() {}
  };
  /// False when the node is stopping: the stream must end at once.
  [[nodiscard]] bool Register(Stream* s);
  void Unregister(Stream* s);
  /// After a policy reload: every open stream checks its caller again (Stream::Recheck).
  void RecheckStreams();

  /// Forwards a unary call of `Svc` (LockService or ClusterService) to the leader, or
  /// answers UNAVAILABLE when none can take it.
  template <typename Svc, typename Req, typename Resp>
  void Forward(grpc::CallbackServerContext* ctx,
               void (Svc::StubInterface::async_interface::*method)(
                   grpc::ClientContext*, const Req*, Resp*, std::function<void(grpc::Status)>),
               const Req& req, Resp* resp, std::function<void(grpc::Status)> done,
               ForwardOptions options = {});

  /// Submits a validated command on the leader (or forwards it) and answers `reactor`.
  template <typename Req, typename Resp>
  grpc::ServerUnaryReactor* Mutate(
      grpc::CallbackServerContext* ctx, const Req* req, Resp* resp,
      void (lockd::v1::LockService::StubInterface::async_interface::*method)(
          grpc::ClientContext*, const Req*, Resp*, std::function<void(grpc::Status)>));

  /// Runs a read (`fill` on the loop thread) linearizably on the leader, forwarded elsewhere, or
  /// locally when `stale`.
  template <typename Req, typename Resp>
  grpc::ServerUnaryReactor* Inspect(
      grpc::CallbackServerContext* ctx, const Req* req, Resp* resp, bool stale,
      void (lockd::v1::LockService::StubInterface::async_interface::*method)(
          grpc::ClientContext*, const Req*, Resp*, std::function<void(grpc::Status)>),
      std::function<grpc::Status(const ReadView&, Resp*)> fill);

  ServiceContext& context() { return ctx_; }

 private:
  /// The watchdog thread's loop: CheckProgress on every stream until Shutdown().
  void WatchStreams();

  ServiceContext ctx_;
  std::mutex mu_;  ///< guards streams_ and shutdown_; held while calling End/CheckProgress
  std::condition_variable stop_cv_;  ///< wakes the watchdog at Shutdown()
  std::set<Stream*> streams_;
  bool shutdown_ = false;
  std::atomic<bool> stopping_{false};  ///< shutdown_, readable without mu_ on every call
  /// Why a thread: a stuck reader produces no gRPC event (its reads are paused and its write
  /// never completes), so something must wake on time. The callback API offers reactors no
  /// timer; a grpc::Alarm per stream needs its own lifetime dance against OnDone. One thread for
  /// the whole service, waking twice a second and walking the open streams, is the simplest
  /// thing whose lifetime is obviously right (it runs under mu_, as Shutdown's End does).
  std::thread watchdog_;
};

/// What the Backup RPC counts (null: not counted).
struct BackupMetrics {
  Counter* bytes = nullptr;      ///< bytes of backup files streamed (written to the stream)
  Counter* completed = nullptr;  ///< backups streamed whole
  Counter* failed = nullptr;     ///< backups that ended early (the reader left, the node stopped)
  Counter* refused = nullptr;    ///< RESOURCE_EXHAUSTED: too many at once
  Gauge* in_progress = nullptr;
};

class ClusterServiceImpl final : public lockd::v1::ClusterService::CallbackService {
 public:
  explicit ClusterServiceImpl(LockServiceImpl& locks, BackupMetrics backup_metrics = {})
      : locks_(locks), backup_metrics_(backup_metrics) {}

  /// Backups streamed at once by one node; more are RESOURCE_EXHAUSTED (each holds a copy of
  /// the state in memory while its reader drains it).
  static constexpr int kMaxConcurrentBackups = 2;
  /// A Backup stream whose write in flight has not completed for this long (its client stopped
  /// reading) is ended, freeing its slot (--backup-stall-timeout-ms).
  void set_backup_stall_timeout(std::chrono::milliseconds t) { backup_stall_timeout_ = t; }

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx,
                                   const lockd::v1::StatusRequest* req,
                                   lockd::v1::StatusResponse* resp) override;
  grpc::ServerUnaryReactor* TransferLeadership(
      grpc::CallbackServerContext* ctx, const lockd::v1::TransferLeadershipRequest* req,
      lockd::v1::TransferLeadershipResponse* resp) override;
  grpc::ServerUnaryReactor* ForceRelease(grpc::CallbackServerContext* ctx,
                                         const lockd::v1::ForceReleaseRequest* req,
                                         lockd::v1::ForceReleaseResponse* resp) override;
  // Membership (cluster_membership.cc).
  grpc::ServerUnaryReactor* AddMember(grpc::CallbackServerContext* ctx,
                                      const lockd::v1::AddMemberRequest* req,
                                      lockd::v1::AddMemberResponse* resp) override;
  grpc::ServerUnaryReactor* RemoveMember(grpc::CallbackServerContext* ctx,
                                         const lockd::v1::RemoveMemberRequest* req,
                                         lockd::v1::RemoveMemberResponse* resp) override;
  /// How long AddMember waits for the new node to catch up (--member-add-timeout-ms).
  void set_member_add_timeout(std::chrono::milliseconds t) { member_add_timeout_ = t; }
  // Snapshot and Backup: cluster_backup.cc.
  grpc::ServerUnaryReactor* Snapshot(grpc::CallbackServerContext* ctx,
                                     const lockd::v1::SnapshotRequest* req,
                                     lockd::v1::SnapshotResponse* resp) override;
  grpc::ServerWriteReactor<lockd::v1::BackupChunk>* Backup(
      grpc::CallbackServerContext* ctx, const lockd::v1::BackupRequest* req) override;

 private:
  void FillStatus(const ReplicaStatus& st, lockd::v1::StatusResponse* resp);
  /// The members as `st` shows them, with their addresses.
  void FillMembers(const ReplicaStatus& st,
                   google::protobuf::RepeatedPtrField<lockd::v1::Member>* out);
  LockServiceImpl& locks_;
  std::chrono::milliseconds member_add_timeout_{60'000};
  const BackupMetrics backup_metrics_;
  std::atomic<int> backups_{0};  ///< Backup streams open now (bounded by kMaxConcurrentBackups)
  std::chrono::milliseconds backup_stall_timeout_{60'000};
};

}  // namespace lockd::server
