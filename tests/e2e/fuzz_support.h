// Support of the fuzz-style bad-input run (fuzz_test.cc): the request generator and driver
// (World, fuzz_world.cc) and the consistency check over the nodes' stale views
// (fuzz_invariants.cc).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <semaphore>
#include <set>
#include <string>
#include <vector>

#include "e2e/cluster_harness.h"

namespace lockd::e2e::fuzz {

enum class Method {
  kGrantLease,
  kRenew,
  kKeepAlive,
  kRevokeLease,
  kAcquire,
  kCancel,
  kRelease,
  kGetLock,
  kListLocks,
  kListLeases,
  kGetLease,
  kWatch,
  kStatus,
  kAddMember,
  kRemoveMember,
  kTransferLeadership,
  kSnapshot,
  kBackup,
  kForceRelease,
  kCount,
};

const char* MethodName(Method m);

/// The codes docs/api.md allows `m` to answer (the transport's DEADLINE_EXCEEDED and UNAVAILABLE
/// included: every call has a deadline and may meet a node without a leader).
const std::set<grpc::StatusCode>& AllowedCodes(Method m);

/// Counts of what the run sent and got.
struct Tally {
  uint64_t sent = 0;
  std::map<Method, std::map<grpc::StatusCode, uint64_t>> codes;
  std::map<int, uint64_t> keepalive_answer_codes;  ///< the `code` of each KeepAlive answer
  uint64_t reuses_checked = 0;                     ///< reused request ids answered (any code)
  uint64_t oversize = 0;
  uint64_t violation_count = 0;
  std::vector<std::string> violations;  ///< the first few, with the request

  std::string Histogram() const;
};

/// One request id whose first answer the state machine recorded (an OK from the log), so the same
/// id with another method or other arguments must be INVALID_ARGUMENT.
struct RecordedId {
  v1::RequestId id;
  Method method = Method::kCount;
  uint64_t watermark = 0;  ///< the client's watermark when the id was recorded
};

/// A grant the run holds (to release, cancel or force-release it).
struct Grant {
  std::string name;
  uint64_t lease = 0;
  uint64_t token = 0;
  v1::RequestId acquire_id;
};

/// The run: what it knows of the state (leases, grants, page tokens, request ids) and what it saw.
class World {
 public:
  World(Cluster& cluster, std::string cluster_id, ClusterOptions options, uint64_t seed);
  ~World();

  /// Sends `count` requests from thread `thread` (its generator seeded from the run's seed and
  /// the thread number), stopping early at `until`.
  void Drive(int thread, uint64_t count, Clock::time_point until);
  /// Sends stream calls (KeepAlive, Watch, Backup: synchronous, each a fraction of a second)
  /// from thread `thread` until `stop`.
  void DriveStreams(int thread, const std::atomic<bool>& stop);
  /// Until every asynchronous call has been answered.
  void WaitForInFlight();
  Tally TallyNow();

  struct Gen;  // the per-thread generator (fuzz_world.cc)

 private:
  friend struct Gen;
  /// A well-formed header of one of the run's tracked clients (numbered, with a watermark that
  /// lags its sequence number, so recently recorded ids stay above it).
  v1::RequestHeader TrackedHeader(Gen& g);

  /// Records one answer: its code against the method's allowed codes, the cluster metadata,
  /// and, when it is a reused id, that it was refused.
  void Record(Method m, int node, const grpc::Status& s, const ResponseMeta& meta, bool oversize,
              bool reused_id, const std::function<std::string()>& request);
  void Violation(const std::string& what);

  // What the run learned from OK answers (bounded rings; guarded by mu_).
  void NoteLease(uint64_t lease);
  void NoteGrant(Grant g);
  void NoteRecorded(const v1::RequestHeader& h, Method m);
  void NoteAcquireId(const v1::RequestId& id);
  void NotePageToken(bool locks, const std::string& token);
  void NoteIndex(uint64_t index);

  /// Sends one unary request asynchronously (at most kInFlight at once) and records its answer;
  /// `on_ok` learns from an OK answer.
  template <typename Async, typename Req, typename Resp>
  void Issue(Method m, int node,
             void (Async::*method)(grpc::ClientContext*, const Req*, Resp*,
                                   std::function<void(grpc::Status)>),
             Req req, Ms deadline, bool reused_id = false,
             std::function<void(const Req&, const Resp&)> on_ok = nullptr);

  bool IsTracked(const v1::RequestId& id) const;
  /// A recently recorded id still above its client's watermark.
  std::optional<RecordedId> PickReusable(Gen& g);

  void SendOne(Gen& g);
  /// Reuses a recorded request id for another call; false if none is at hand.
  bool SendReuse(Gen& g, int node);
  void SendKeepAlive(Gen& g, int node);
  void SendWatch(Gen& g, int node);
  void SendBackup(Gen& g, int node);

  Cluster& cluster_;
  const std::string cluster_id_;
  const ClusterOptions options_;
  const uint64_t seed_;

  struct TrackedClient {
    uint64_t hi = 0, lo = 0;
    std::atomic<uint64_t> next_seq{0};
  };
  std::vector<std::unique_ptr<TrackedClient>> tracked_;

  std::counting_semaphore<> slots_;
  int in_flight_ = 0;  ///< guarded by mu_
  std::atomic<int> transfers_left_{2};

  std::mutex mu_;
  std::condition_variable idle_;
  Tally tally_;
  std::deque<uint64_t> leases_;
  std::deque<Grant> grants_;
  std::deque<RecordedId> recorded_;
  std::deque<v1::RequestId> acquire_ids_;
  std::deque<std::string> lock_tokens_, lease_tokens_;
  uint64_t max_index_ = 0;
};

/// The result of checking the nodes' stale views.
struct ConsistencyReport {
  bool agreed = false;  ///< every node showed the same view at one applied index
  uint64_t index = 0;
  int attempts = 0;  ///< rounds of reads until one index was shared
  size_t locks = 0, holders = 0, waiters = 0, leases = 0;
  std::string disagreement;           ///< the last difference seen, when !agreed
  std::vector<std::string> problems;  ///< invariant violations
};

/// Reads every node's stale ListLocks / ListLeases (all pages) between two Status calls showing
/// the same applied index, until all nodes show one index (or `timeout`); checks the invariants
/// on each view and that the views are equal.
ConsistencyReport CheckConsistency(Cluster& cluster, Ms timeout);

}  // namespace lockd::e2e::fuzz
