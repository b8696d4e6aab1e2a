// ClientCore: what a Client shares with its leases, locks and threads: one channel per endpoint,
// the leader hint from `lockd-leader`, the cluster id check, request ids and the watermark, the
// retrying call, the KeepAlive renewer and the cleanup queue (Cancel of abandoned Acquires,
// releases of late grants, revokes of dropped leases) that runs off the caller's thread so no call
// outlives the caller's deadline by more than the stated margin.
#pragma once

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "client/access.h"
#include "client/lease_core.h"
#include "lockd/client.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::client {

namespace pb = ::lockd::v1;

/// Deadlines are on steady_clock (a wall-clock step must not stretch or cut a call); gRPC takes
/// system_clock, converted at the edge by GrpcDeadline.
using SteadyTime = std::chrono::steady_clock::time_point;
inline std::chrono::system_clock::time_point GrpcDeadline(SteadyTime t) {
  const auto left = t - std::chrono::steady_clock::now();
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(left);
}

class Renewer;

Status FromGrpc(const grpc::Status& s);

/// The tokens a renewal answer lists as held by its lease (`held_tokens`), or nullopt when the
/// server does not list them (`holdings_listed` false: judge the holdings another way).
std::optional<std::vector<uint64_t>> HeldTokensOf(const pb::RenewResponse& r);

class ClientCore : public std::enable_shared_from_this<ClientCore> {
 public:
  /// `credentials`: how to dial the endpoints (client/credentials.h); null: plaintext.
  /// `bearer_token`: what every call's `authorization` header carries (ReadBearerToken's
  /// answer; "" none): it is added on each channel (client/credentials.h, Dial), so every call
  /// on it carries it.
  explicit ClientCore(ClientOptions options,
                      std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr,
                      std::string bearer_token = {});
  ~ClientCore();
  /// Starts the renewer and cleanup threads (after construction: they need shared_from_this).
  void Start();
  /// Orderly shutdown: revokes every lease still registered, stops the threads. Idempotent.
  void Shutdown();

  const ClientOptions& options() const { return options_; }
  TimePoint Now() const { return options_.clock(); }

  // --- endpoints and leader ---
  size_t endpoint_count() const;
  /// Where the next call should go: the leader if known, else the rotation.
  size_t PickEndpoint();
  /// `failed` did not answer usefully: forget it as leader and move the rotation past it.
  void EndpointFailed(size_t failed);
  pb::LockService::Stub& stub(size_t endpoint);
  /// Reads lockd-leader and lockd-cluster from a response's initial metadata.
  void ObserveMetadata(const grpc::ClientContext& ctx);
  /// The same, given the two values ("" where absent).
  void ObserveHeaders(const std::string& leader, const std::string& cluster);
  std::string cluster_id() const;
  std::string leader() const;

  // --- request ids ---
  pb::RequestHeader NewHeader();
  void EndRequest(uint64_t seq);

  /// The retrying unary call: same request (and id), attempt counted up, next endpoint on
  /// UNAVAILABLE or an attempt timing out, bounded by max_attempts and `deadline`; `stop`
  /// cancels it (CANCELLED). `first_send` gets the send time of the first attempt.
  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (pb::LockService::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                  Resp*),
                    Req& req, Resp* resp, SteadyTime deadline,
                    std::chrono::milliseconds attempt_timeout, std::stop_token stop = {},
                    TimePoint* first_send = nullptr);

  // --- leases ---
  std::shared_ptr<Lease> AdoptLease(uint64_t id, std::chrono::milliseconds ttl, TimePoint anchor,
                                    bool renewed);
  /// Revokes `lease` (bounded by call_timeout), marks it lost, stops renewing it.
  Status Revoke(LeaseCore& lease);
  /// The client-wide renewal sequence number last used (a Lock's seq floor).
  uint64_t last_renew_seq() const { return renew_seq_.load(); }
  uint64_t NextRenewSeq() { return ++renew_seq_; }
  /// Every lease is lost (cluster id change).
  void LoseAllLeases(const std::string& reason);
  std::vector<std::shared_ptr<LeaseCore>> Leases();
  void ForgetLease(uint64_t id);

  // --- what pending requests may still do (judging a lease's unowned grants) ---
  /// The pending Acquire `seq` asks for `name` on `lease_id`: until its request ends (after its
  /// Lock is registered, or its withdrawal settled), a grant of that name to that lease may be
  /// its own, not yet answered.
  void ClaimAcquire(uint64_t seq, uint64_t lease_id, const std::string& name);
  /// The pending Release `seq` gives back `token` of `lease_id` (claimed before its Lock leaves
  /// the lease, so the token is always owned by one or the other).
  void ClaimRelease(uint64_t seq, uint64_t lease_id, uint64_t token);
  bool AcquirePending(uint64_t lease_id, const std::string& name) const;
  bool ReleasePending(uint64_t lease_id, uint64_t token) const;
  /// A renewal answer listed grants of `lease` that no Lock of this client owns and no Release
  /// of it is giving back (e.g. a wait re-armed by a new leader and granted after the Cancel that
  /// withdrew it gave up). On the cleanup thread, at most one at a time per lease: learns their
  /// names (GetLease, GetLock) and releases by token every grant that no pending Acquire can
  /// still be answered with; each release is logged.
  void ReleaseUnowned(const std::shared_ptr<LeaseCore>& lease);
  /// Reports through options().log (stderr when unset).
  void Log(const std::string& line);

  // --- the callback thread ---
  /// Runs `f` on the client's callback thread (in order), where the asynchronous calls' `done`
  /// callbacks run: never on the caller's thread, never on a gRPC thread. Once the shutdown has
  /// stopped that thread (only an application thread racing the Client's destruction can call
  /// this then), `f` runs here, at once.
  void Dispatch(std::function<void()> f);
  /// The name of the threads `done` callbacks run on (visible in debuggers, checked by tests).
  static constexpr const char* kCallbackThreadName = "lockd-callback";
  /// Marks the current thread as running one of the library's gRPC callbacks for its scope.
  struct InGrpcCallback {
    InGrpcCallback();
    ~InGrpcCallback();
    InGrpcCallback(const InGrpcCallback&) = delete;
    InGrpcCallback& operator=(const InGrpcCallback&) = delete;
  };
  /// True on the callback, cleanup or renewal thread, or inside one of the library's gRPC
  /// callbacks: a Client destroyed there cannot join those threads or wait for that callback.
  bool OnOwnThread() const;

  // --- asynchronous calls in flight ---
  /// Registers an asynchronous call on gRPC's callback API; `cancel` ends it early (its answer
  /// still comes, and it must still call EndAsync). Returns 0, registering nothing, once the
  /// client is shutting down: the caller answers at once instead of starting the call.
  uint64_t BeginAsync(std::function<void()> cancel);
  /// The call registered as `id` has answered and posted its `done`; Shutdown may go on.
  void EndAsync(uint64_t id);

  // --- cleanup queue ---
  /// Runs `task` on the cleanup thread; false if the client is shutting down.
  bool Enqueue(std::function<void()> task);
  /// Withdraws the Acquire named `acquire_id` (its wait, or the grant it got), in the background;
  /// ends the Acquire's request (EndRequest) once the Cancel is done.
  void CancelAcquire(const std::string& name, uint64_t lease_id, const pb::RequestId& acquire_id);

  std::chrono::milliseconds Backoff(int failures);

  /// On the cleanup thread: sends a Cancel or Release (its request id already pending) until the
  /// answer is definitive, retrying with the same request id for up to kSettleBudget — long enough
  /// to outlast elections, which one Call's max_attempts is not (a wait a new leader re-arms would
  /// otherwise be granted to a lease this client keeps renewing). RESOURCE_EXHAUSTED (the
  /// identity's request rate, or no room in the exactly-once table) is waited out too, backing
  /// off up to 2 s: refusing to free something never trades a lock for a rate. Stops early when
  /// the client shuts down.
  template <typename Req, typename Resp>
  grpc::Status Settle(grpc::Status (pb::LockService::Stub::*method)(grpc::ClientContext*,
                                                                    const Req&, Resp*),
                      Req& req, Resp* resp);
  static constexpr std::chrono::seconds kSettleBudget{30};

 private:
  bool Stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  void CleanupLoop();
  void DispatchLoop();
  /// ReleaseUnowned's work, on the cleanup thread.
  void SweepUnowned(LeaseCore& lease);

  /// What a pending request may still change for its lease (see ClaimAcquire, ClaimRelease).
  struct Claim {
    uint64_t lease_id = 0;
    std::string name;    ///< an Acquire's
    uint64_t token = 0;  ///< a Release's (0: an Acquire)
  };

  const ClientOptions options_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const std::string bearer_token_;  ///< for channels made later (a leader not in the list)
  uint64_t client_hi_ = 0, client_lo_ = 0;

  mutable std::mutex mu_;  ///< guards everything below up to the renewer
  std::vector<std::string> endpoints_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<pb::LockService::Stub>> stubs_;
  size_t rotation_ = 0;
  std::string leader_;  ///< as the last response named it
  std::string cluster_id_;
  uint64_t last_seq_ = 0;
  std::set<uint64_t> pending_;
  std::map<uint64_t, Claim> claims_;  ///< pending request seq → its claim (ended with it)
  std::set<uint64_t> sweeping_;       ///< leases with a ReleaseUnowned in flight
  std::map<uint64_t, std::weak_ptr<LeaseCore>> leases_;
  std::mt19937_64 rng_;
  std::deque<std::function<void()>> cleanup_;
  std::condition_variable cleanup_cv_;
  bool stopping_ = false;

  std::atomic<uint64_t> renew_seq_{0};
  std::deque<std::function<void()>> dispatch_;
  std::condition_variable dispatch_cv_;
  bool dispatch_stopping_ = false;
  std::map<uint64_t, std::function<void()>> async_;  ///< calls in flight → how to cancel each
  uint64_t next_async_ = 0;
  bool async_stopping_ = false;
  std::condition_variable async_cv_;

  std::unique_ptr<Renewer> renewer_;
  std::thread cleanup_thread_;
  std::thread dispatch_thread_;
  std::atomic<std::thread::id> cleanup_thread_id_, dispatch_thread_id_;  ///< set by Start
  std::once_flag shutdown_once_;
};

// ------------------------------------------------------------------------------------------

inline bool RetryableCode(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE;
}

template <typename Req, typename Resp>
grpc::Status ClientCore::Call(grpc::Status (pb::LockService::Stub::*method)(grpc::ClientContext*,
                                                                            const Req&, Resp*),
                              Req& req, Resp* resp, SteadyTime deadline,
                              std::chrono::milliseconds attempt_timeout, std::stop_token stop,
                              TimePoint* first_send) {
  grpc::Status status;
  for (int attempt = 1;; ++attempt) {
    if constexpr (requires { req.mutable_header(); }) {
      req.mutable_header()->set_attempt(static_cast<uint32_t>(attempt));
    }
    const size_t endpoint = PickEndpoint();
    const auto now = std::chrono::steady_clock::now();
    grpc::ClientContext ctx;
    ctx.set_deadline(GrpcDeadline(std::min(deadline, now + attempt_timeout)));
    std::stop_callback on_stop(stop, [&ctx] { ctx.TryCancel(); });
    if (attempt == 1 && first_send) *first_send = Now();
    resp->Clear();
    status = (stub(endpoint).*method)(&ctx, req, resp);
    ObserveMetadata(ctx);
    if (stop.stop_requested()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the caller's stop_token was signalled");
    }
    const auto code = status.error_code();
    const bool attempt_timed_out =
        code == grpc::StatusCode::DEADLINE_EXCEEDED && std::chrono::steady_clock::now() < deadline;
    if (!RetryableCode(code) && !attempt_timed_out) return status;
    EndpointFailed(endpoint);
    if (attempt >= options_.max_attempts) return status;
    const auto pause = Backoff(attempt);
    if (std::chrono::steady_clock::now() + pause >= deadline) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "deadline reached after " + std::to_string(attempt) +
                              " attempts; last: " + status.error_message());
    }
    // The pause ends early when the caller stops.
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    cv.wait_for(lock, stop, pause, [] { return false; });
  }
}

template <typename Req, typename Resp>
grpc::Status ClientCore::Settle(grpc::Status (pb::LockService::Stub::*method)(grpc::ClientContext*,
                                                                              const Req&, Resp*),
                                Req& req, Resp* resp) {
  const auto give_up = std::chrono::steady_clock::now() + kSettleBudget;
  auto pause = std::chrono::milliseconds(250);
  for (;;) {
    // Attempts of half a call_timeout: a hung node (the stopped leader the Acquire waited on)
    // costs one attempt, then the next endpoint is tried, within the same call.
    grpc::Status s =
        Call(method, req, resp, std::chrono::steady_clock::now() + options_.call_timeout,
             std::clamp<std::chrono::milliseconds>(
                 options_.call_timeout / 2, std::chrono::milliseconds(300), options_.call_timeout));
    const bool exhausted = s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
    const bool definitive = !RetryableCode(s.error_code()) && !exhausted &&
                            s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED;
    if (definitive || std::chrono::steady_clock::now() >= give_up || Stopping()) return s;
    {  // The pause ends early when the client shuts down.
      std::unique_lock lock(mu_);
      cleanup_cv_.wait_for(lock, exhausted ? pause : std::chrono::milliseconds(250),
                           [this] { return stopping_; });
    }
    if (exhausted) pause = std::min(2 * pause, std::chrono::milliseconds(2000));
  }
}

}  // namespace lockd::client
