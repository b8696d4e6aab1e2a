// The e2e cluster harness: real `lockd` processes on free loopback ports, driven over gRPC.
//
// Cluster starts an N-node cluster in a TempDir (node i has id i+1; its log is node<id>.log),
// stops, kills (-9), pauses (SIGSTOP), resumes (SIGCONT) and restarts single nodes, waits for a
// leader, and hands out one typed stub per node and service. Its destructor stops every process it
// started; when the current test has failed it prints the tail of every node's log and keeps a
// copy of the logs under $TMPDIR/lockd-e2e-logs/.
//
// Client is one simulated client process: a random 128-bit client id, increasing sequence
// numbers, the watermark (its lowest still-pending sequence number), and the retrying call:
// UNAVAILABLE (and an attempt cut short by its own per-attempt timeout) is retried with the same
// request id, attempt + 1, on the next node, until the overall deadline. Thread-safe: tests run
// waiting Acquires from several threads on one Client.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lockd/v1/lockd.grpc.pb.h"
#include "support/process.h"

namespace lockd::e2e {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace v1 = ::lockd::v1;

struct ClusterOptions {
  int nodes = 3;
  uint64_t tick_ms = 50;
  uint64_t election_min_ms = 500;
  uint64_t min_ttl_ms = 2000;
  uint64_t max_ttl_ms = 3'600'000;
  uint64_t max_wait_ms = 600'000;
  uint64_t max_name_bytes = 512;
  uint64_t max_request_bytes = 65536;
  uint64_t forward_timeout_ms = 10'000;
  std::string log_level = "info";
  std::vector<std::string> extra_flags;  ///< appended to every node's command line
  /// Flags for node `id` alone (its certificate…), appended after extra_flags.
  std::function<std::vector<std::string>(uint64_t id)> node_flags;
  /// How the harness's own channels dial the client ports (null: plaintext, and the nodes are
  /// started with --plaintext).
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  /// A bearer token the harness's own calls carry (a cluster with --access-file; empty: none).
  std::string bearer_token;
  /// "NAME=value" added to every node's environment, at every start (e.g. an LD_PRELOAD shim).
  std::vector<std::string> env;
  bool start = true;  ///< start every node in the constructor
};

/// The leader and cluster metadata of one response.
struct ResponseMeta {
  std::string leader;   ///< lockd-leader
  std::string cluster;  ///< lockd-cluster
  bool has_leader = false;
  bool has_cluster = false;
};

ResponseMeta MetaOf(const grpc::ClientContext& ctx);

/// "CODE: message" for assertion output.
std::string Describe(const grpc::Status& s);

class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {});
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }
  const ClusterOptions& options() const { return options_; }
  uint64_t id(int i) const { return nodes_[i].id; }
  /// Adds a node that joins the running cluster (`lockd --join` with the client addresses of
  /// the other nodes) under `id`, on fresh ports or on the addresses of node `same_addresses_as`
  /// (which must not run: a replacement), with an empty data dir; starts it when `start`.
  /// Returns its index. The cluster's members still have to add it (AddMember).
  int AddJoiningNode(uint64_t id, int same_addresses_as = -1, bool start = true);
  /// Index of the node with id `id` (-1 if none).
  int IndexOf(uint64_t id) const;
  /// Index of the node whose client address is `addr` (-1 if none).
  int IndexOfClientAddr(const std::string& addr) const;
  std::string client_addr(int i) const;
  std::string peer_addr(int i) const;
  std::string http_addr(int i) const;
  std::string data_dir(int i) const;
  std::string log_path(int i) const;
  const std::string& dir() const;

  // --- processes ---
  /// Starts node i (again) with the same flags and data dir. No-op if it runs.
  void Start(int i);
  void StartAll();
  /// SIGTERM and wait; the exit code (nullopt if it did not exit within `timeout`, after which
  /// it is killed).
  std::optional<int> Stop(int i, Ms timeout = 20s);
  /// Stops every running node (SIGTERM to all first, then waits); true if all exited 0.
  bool StopAll(Ms timeout = 20s);
  void Kill(int i);    ///< SIGKILL and reap
  void Pause(int i);   ///< SIGSTOP
  void Resume(int i);  ///< SIGCONT
  void Restart(int i);
  bool running(int i);
  /// Node i's process id (-1 if it was never started).
  pid_t pid(int i) const { return nodes_[i].process ? nodes_[i].process->pid() : -1; }
  bool paused(int i) const { return nodes_[i].paused; }
  /// Running and not paused.
  bool live(int i);
  std::vector<int> LiveNodes();

  // --- observation ---
  grpc::Status Status(int i, v1::StatusResponse* out, Ms timeout = 2s);
  /// Polls Status on every live node until all answer and agree on one leader_id != 0 that is
  /// itself live; returns the leader's index, or -1 after `timeout`.
  int WaitForLeader(Ms timeout = 20s);
  /// Like WaitForLeader, and then until a linearizable read through the leader succeeds (a new
  /// leader answers UNAVAILABLE until it applied the first entry of its term).
  int WaitForReady(Ms timeout = 30s);
  /// The leader as node `i` sees it (-1 if unknown or not answering).
  int LeaderSeenBy(int i);
  /// Some live node other than `not_this` (-1 if none).
  int OtherLiveNode(int not_this);
  /// Every live node's Status, one line each, for assertion messages.
  std::string StatusSummary();

  // --- stubs (one channel per node, kept across restarts; short reconnect back-off) ---
  v1::LockService::Stub& lock(int i);
  v1::ClusterService::Stub& cluster(int i);
  std::shared_ptr<grpc::Channel> channel(int i);

  /// The last `lines` lines of node i's log.
  std::string LogTail(int i, size_t lines = 40) const;
  /// Every node's log path and tail.
  std::string LogTails(size_t lines = 40) const;

 private:
  struct Node {
    uint64_t id = 0;
    bool joins = false;  ///< started with --join instead of --initial-cluster
    int client_port = 0, peer_port = 0, http_port = 0;
    std::unique_ptr<testing::Process> process;
    bool paused = false;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::LockService::Stub> lock;
    std::unique_ptr<v1::ClusterService::Stub> cluster;
    int starts = 0;
  };
  std::vector<std::string> Argv(int i) const;
  std::string InitialCluster() const;
  void SaveLogsOnFailure();
  /// A fresh channel and stubs for node i.
  void Connect(int i);
  /// Until node i accepts TCP connections on its client port (or it exits, or `timeout`).
  bool WaitListening(int i, Ms timeout);
  struct Retired {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::LockService::Stub> lock;
    std::unique_ptr<v1::ClusterService::Stub> cluster;
  };
  std::vector<Retired> retired_;
  std::mutex stubs_mu_;  ///< guards each node's channel and stubs, and retired_
  static constexpr size_t kMaxNodes = 32;

  ClusterOptions options_;
  std::unique_ptr<testing::TempDir> dir_;
  std::vector<Node> nodes_;
};

/// Options of one retrying call.
struct CallOptions {
  Ms deadline = 20s;   ///< overall, across attempts
  Ms attempt = 3s;     ///< per attempt (a waiting Acquire adds its wait_ms)
  int node = -1;       ///< first node to try (-1: the Client's rotation)
  bool rotate = true;  ///< false: every attempt goes to `node`
  /// Retry DEADLINE_EXCEEDED of an attempt (its own timeout, not the overall deadline).
  bool retry_attempt_timeout = true;
};

/// What one retrying call did.
struct CallInfo {
  grpc::Status status;
  int attempts = 0;
  int node = -1;      ///< the node that gave the final answer
  ResponseMeta meta;  ///< of the final answer
  Ms elapsed{0};
};

class Client {
 public:
  explicit Client(Cluster& cluster);

  uint64_t client_hi() const { return hi_; }
  uint64_t client_lo() const { return lo_; }

  /// A header with a new sequence number (now pending), attempt 1, and the watermark.
  v1::RequestHeader Begin();
  /// The call with this sequence number is finished: it no longer holds the watermark down.
  void End(uint64_t seq);
  /// A request id of this client that was never used (and is not pending).
  v1::RequestId FreshId();

  /// The retrying call for any unary LockService method. `req`'s header (if it has one) is kept
  /// across attempts except `attempt`, which counts up. A header with no id gets Begin()'s, and
  /// is End()ed when the call returns.
  template <typename Req, typename Resp>
  CallInfo Call(grpc::Status (v1::LockService::Stub::*method)(grpc::ClientContext*, const Req&,
                                                              Resp*),
                Req req, Resp* resp, CallOptions o = {});

  // Convenience wrappers over Call (lease_id etc. as the proto has them).
  CallInfo GrantLease(uint64_t ttl_ms, v1::GrantLeaseResponse* out, const std::string& label = "",
                      CallOptions o = {});
  /// Grants a lease or fails the test; returns its id.
  uint64_t MustGrantLease(uint64_t ttl_ms, const std::string& label = "");
  CallInfo Acquire(const std::string& name, uint64_t lease, v1::LockMode mode, uint64_t wait_ms,
                   v1::AcquireResponse* out, CallOptions o = {},
                   std::optional<v1::RequestHeader> header = std::nullopt);
  CallInfo Release(const std::string& name, uint64_t lease, uint64_t token, CallOptions o = {});
  CallInfo Cancel(const std::string& name, uint64_t lease, const v1::RequestId& acquire_id,
                  v1::CancelResponse* out, CallOptions o = {});
  CallInfo Revoke(uint64_t lease, v1::RevokeLeaseResponse* out = nullptr, CallOptions o = {});
  CallInfo Renew(uint64_t lease, uint64_t seq, v1::RenewResponse* out, CallOptions o = {});
  CallInfo GetLock(const std::string& name, v1::GetLockResponse* out, CallOptions o = {});
  CallInfo GetLease(uint64_t lease, v1::GetLeaseResponse* out, CallOptions o = {});
  /// Every lease (following page tokens).
  CallInfo ListAllLeases(std::vector<v1::LeaseInfo>* out, CallOptions o = {});
  /// Every lock with `prefix` (following page tokens).
  CallInfo ListAllLocks(const std::string& prefix, std::vector<v1::LockInfo>* out,
                        CallOptions o = {});

  /// GetLock, or a failed assertion and an empty LockInfo.
  v1::LockInfo MustGetLock(const std::string& name);

  Cluster& cluster() { return cluster_; }

 private:
  int NextNode();

  Cluster& cluster_;
  uint64_t hi_ = 0, lo_ = 0;
  std::mutex mu_;
  uint64_t next_seq_ = 0;
  std::set<uint64_t> pending_;
  std::atomic<int> rotation_{0};
};

/// What one Acquire call did, run by StartAcquire.
struct AcquireResult {
  CallInfo info;
  v1::AcquireResponse resp;
};

/// A (waiting) Acquire running in a background thread; `header` names it (for Cancel).
struct PendingAcquire {
  v1::RequestHeader header;
  std::future<AcquireResult> result;

  /// The result, waiting at most `timeout`; a failed assertion (and an empty result) if it is
  /// not there by then.
  AcquireResult Get(Ms timeout = 30s);
  bool Done();
};

/// Starts `c.Acquire(name, lease, mode, wait_ms, ..., o, header)` in a background thread, with
/// `o` exactly as given (the caller picks the overall deadline and the first node) and `header`
/// (default: a fresh Begin()), which is End()ed when the call returns.
PendingAcquire StartAcquire(Client& c, const std::string& name, uint64_t lease, v1::LockMode mode,
                            uint64_t wait_ms, CallOptions o = {},
                            std::optional<v1::RequestHeader> header = std::nullopt);

/// Polls GetLock until `name` has at least `n` waiters (false after `timeout`).
bool WaitForWaiters(Client& c, const std::string& name, int n, Ms timeout = 15s);

/// Reads a Watch stream on node `node` until `n` events arrived or `timeout` passed; every
/// response is one entry's events. Returns the responses; `status` gets the stream's status
/// (CANCELLED when we stopped it after n events).
std::vector<v1::WatchResponse> ReadWatch(Cluster& c, int node, const v1::WatchRequest& req,
                                         size_t n, Ms timeout, grpc::Status* status = nullptr);

/// A Watch kept open in a background thread, collecting every response.
class WatchStream {
 public:
  WatchStream(Cluster& c, int node, v1::WatchRequest req, Ms timeout = 60s);
  ~WatchStream();
  /// Waits until at least `n` events arrived (or `timeout`); a copy of all events so far.
  std::vector<v1::LockEvent> WaitEvents(size_t n, Ms timeout);
  std::vector<v1::WatchResponse> Responses();
  /// Stops the stream; its final status.
  grpc::Status Finish();

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderInterface<v1::WatchResponse>> reader_;
  std::mutex mu_;
  std::vector<v1::WatchResponse> responses_;
  std::thread thread_;
  grpc::Status status_;
  bool done_ = false;
};

/// Flattens the events of responses, in order.
std::vector<v1::LockEvent> Events(const std::vector<v1::WatchResponse>& rs);

/// Strictly increasing in (index, event).
bool PositionLess(const v1::WatchPosition& a, const v1::WatchPosition& b);

std::string ToString(const v1::LockEvent& e);
std::string ToString(const v1::LockInfo& l);

/// Runs `fn` every `period` in a background thread until destroyed.
class Periodic {
 public:
  Periodic(Ms period, std::function<void()> fn);
  ~Periodic();
  void Stop();

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// Keeps leases alive from a background thread, renewing each one every `period` through the
/// rotating retry (so a dead or paused node costs one attempt). Records every renewal that
/// failed with anything but UNAVAILABLE / DEADLINE_EXCEEDED (a NOT_FOUND means a lease that
/// should be alive was lost) and the longest gap between acknowledged renewals per lease.
class Renewer {
 public:
  Renewer(Client& client, std::vector<uint64_t> leases, Ms period = 1000ms, Ms attempt = 1000ms);
  ~Renewer();
  void Add(uint64_t lease);
  void Remove(uint64_t lease);
  void Stop();
  /// Every renewal answered with a code other than OK / UNAVAILABLE / DEADLINE_EXCEEDED.
  std::vector<std::string> Failures();
  uint64_t acknowledged() const { return acknowledged_.load(); }
  /// The longest time between two acknowledged renewals of any lease so far.
  Ms LongestGap();

 private:
  void Loop();
  Client& client_;
  Ms period_, attempt_;
  std::mutex mu_;
  std::vector<uint64_t> leases_;
  std::map<uint64_t, Clock::time_point> last_ack_;
  Ms longest_gap_{0};
  std::vector<std::string> failures_;
  std::atomic<uint64_t> acknowledged_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
  uint64_t seq_ = 0;
  int node_ = -1;  ///< where the last renewal succeeded (tried first)
};

// ------------------------------------------------------------------------------------------
// Template implementation
// ------------------------------------------------------------------------------------------

template <typename Req, typename Resp>
CallInfo Client::Call(grpc::Status (v1::LockService::Stub::*method)(grpc::ClientContext*,
                                                                    const Req&, Resp*),
                      Req req, Resp* resp, CallOptions o) {
  CallInfo info;
  const auto start = Clock::now();
  const auto deadline = start + o.deadline;
  uint64_t owned_seq = 0;
  if constexpr (requires { req.mutable_header(); }) {
    if (!req.header().has_id()) {
      *req.mutable_header() = Begin();
      owned_seq = req.header().id().seq();
    }
  }
  int node = o.node >= 0 ? o.node : NextNode();
  for (;;) {
    ++info.attempts;
    if constexpr (requires { req.mutable_header(); }) {
      req.mutable_header()->set_attempt(static_cast<uint32_t>(info.attempts));
    }
    Ms per_attempt = o.attempt;
    if constexpr (requires { req.wait_ms(); }) per_attempt += Ms(req.wait_ms());
    const auto now = Clock::now();
    auto attempt_deadline = std::min(deadline, now + per_attempt);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + (attempt_deadline - now));
    resp->Clear();
    info.node = node;
    if (cluster_.running(node)) {
      info.status = (cluster_.lock(node).*method)(&ctx, req, resp);
      info.meta = MetaOf(ctx);
    } else {
      info.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "node is not running (harness)");
      info.meta = {};
    }
    const auto code = info.status.error_code();
    const bool retryable = code == grpc::StatusCode::UNAVAILABLE ||
                           (o.retry_attempt_timeout &&
                            code == grpc::StatusCode::DEADLINE_EXCEEDED && Clock::now() < deadline);
    if (!retryable || Clock::now() + 50ms >= deadline) break;
    if (o.rotate) node = (node + 1) % cluster_.size();
    // A short pause so a cluster without a leader is not hammered.
    std::this_thread::sleep_for(code == grpc::StatusCode::UNAVAILABLE ? 50ms : 0ms);
  }
  info.elapsed = std::chrono::duration_cast<Ms>(Clock::now() - start);
  if (owned_seq) End(owned_seq);
  return info;
}

}  // namespace lockd::e2e
