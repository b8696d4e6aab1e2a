// Renewer: keeps every lease of one Client alive over ONE KeepAlive stream, and decides every
// lease's loss at its valid_until (renewed leases and the one-call form's alike).
//
// One thread (the renewal thread) sends renewals (each lease about every TTL/3, jittered so many
// clients do not renew in step; the first one a period after the grant's first send, or at once
// when the grant answered late), applies the answers in arrival order, and decides losses: it
// wakes at the earliest valid_until, so the lost signal fires without anyone polling. It never
// blocks on the network: the stream is a gRPC callback (reactor) stream whose writes are queued
// and whose answers are handed over with their arrival time (issue 14 review, item 4). A broken
// stream, an answer that does not come within answer_timeout(TTL), or an UNAVAILABLE answer moves
// the stream to the leader (or the next endpoint) at once and renews every lease again there, so a
// routine failover costs one round trip, not a renewal period. Failovers back off only after every
// endpoint failed in a row, and never by more than a fraction of the shortest TTL.
//
// Leases that fall due together go out in one message (`more_lease_ids`, docs/api.md): when the
// earliest renewal is due, every lease due within kBatchWindow after it is renewed with it, up to
// kMaxLeasesPerMessage. Renewing a little early is always safe (validity is counted from the
// send), and a client with many leases sends a few large messages instead of one per lease, which
// costs the leader about a tenth of the CPU per lease. A server that answers a batch without its
// `more` answers (one that predates batches) gets one lease per message from then on.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "client/client_core.h"

namespace lockd::client {

class Renewer {
 public:
  explicit Renewer(ClientCore& core);
  ~Renewer();
  Renewer(const Renewer&) = delete;
  Renewer& operator=(const Renewer&) = delete;

  /// Tracks `lease` from now on: its loss is decided at valid_until, and if it is renewed() its
  /// first renewal is due a (jittered) period after `anchor`, the grant's first send: at once if
  /// that is past or if less than a period of validity is left.
  void Add(std::shared_ptr<LeaseCore> lease, TimePoint anchor);
  void Remove(uint64_t lease_id);
  /// Ends the stream and the thread, and waits for the stream's last callback. Idempotent.
  void Stop();
  bool OnRenewalThread() const { return std::this_thread::get_id() == thread_id_.load(); }

  /// How long a renewal may go unanswered before the stream moves: TTL/6 within [250 ms, 2 s].
  static std::chrono::milliseconds AnswerTimeout(std::chrono::milliseconds ttl);
  /// The renewal period's jitter: a fraction in [kJitterLow, 1] of ttl / renew_divisor.
  static constexpr double kJitterLow = 0.8;
  /// Renewals queued on one stream and not yet handed to gRPC, at most (the server reads at most
  /// as many ahead, docs/api.md). While the queue is full the renewals due wait; a queue that
  /// stays full with no write completing for kStuckAfter means the server stopped reading: the
  /// stream is stuck and moves to the next endpoint (leases keep their own valid_until, so a
  /// stuck stream extends nothing). Tests lower the limit (queue_limit_for_tests).
  static constexpr size_t kMaxQueuedRenewals = 1024;
  /// Counted from the start of the write in flight (an idle stream is not stuck); longer than
  /// the leader stalls the design tolerates (a full queue behind a briefly stalled leader is not
  /// a stuck stream), shorter than the 2 s answer timeout of long TTLs.
  static constexpr std::chrono::milliseconds kStuckAfter{1000};
  static inline std::atomic<size_t> queue_limit_for_tests{kMaxQueuedRenewals};
  /// When positive, AnswerTimeout's value in milliseconds (tests of the stuck rule, which must
  /// run before an unanswered renewal moves the stream).
  static inline std::atomic<int64_t> answer_timeout_ms_for_tests{0};
  /// A message renews at most this many leases (the server's bound, docs/api.md).
  static constexpr size_t kMaxLeasesPerMessage = 1000;
  /// Leases due within this long after the renewal that is due go out with it.
  static constexpr std::chrono::milliseconds kBatchWindow{25};
  /// Tests of one-lease-per-message rules lower it (to 1).
  static inline std::atomic<size_t> batch_limit_for_tests{kMaxLeasesPerMessage};
  /// Renewal messages that carried more than one lease (for tests and debugging).
  static inline std::atomic<uint64_t> batched_messages_total{0};
  /// Streams this process moved because their write queue stayed full (for tests and debugging).
  static inline std::atomic<uint64_t> stuck_streams_total{0};
  /// The renewal thread's name (visible in debuggers and /proc; the scale test finds it so).
  static constexpr const char* kThreadName = "lockd-renewal";

 private:
  class Stream;
  struct Entry {
    std::shared_ptr<LeaseCore> lease;
    TimePoint next_due = TimePoint::max();  ///< max: never (a lease that is not renewed)
    TimePoint expiry_key{};                 ///< its key in expiry_ (valid_until when scheduled)
  };
  /// A schedule ordered by time: (when, lease id or renewal seq). Every event (an answer, a
  /// renewal sent, a loss decided) costs O(log n), never a scan of every lease: one client may
  /// hold tens of thousands of leases (docs/benchmarks.md).
  using Schedule = std::set<std::pair<TimePoint, uint64_t>>;
  struct Sent {
    std::vector<uint64_t> lease_ids;  ///< lease_id, then more_lease_ids, in the message's order
    TimePoint sent;
    TimePoint answer_by;
    uint64_t stream;  ///< generation of the stream it went out on
  };
  /// Something a stream's callback handed to the renewal thread.
  struct Arrival {
    uint64_t generation = 0;
    bool metadata =
        false;  ///< the stream's initial metadata (leader, cluster) rather than an answer
    std::string leader, cluster;
    pb::RenewResponse answer;
    TimePoint at{};
  };

  void Loop();
  void OnAnswer(const pb::RenewResponse& r, TimePoint arrived);
  /// Lease `id`'s own answer `r` (the message's, or one of its `more`) to renewal `seq`.
  void OnLeaseAnswer(uint64_t id, uint64_t seq, const pb::RenewResponse& r, TimePoint arrived);
  /// Sends every renewal due, batching those due together (mu_ held).
  void SendDue(TimePoint now);
  /// Moves lease `id`'s renewal to `due` / its loss check to its current valid_until (mu_ held).
  void ScheduleRenewal(Entry& e, uint64_t id, TimePoint due);
  void ScheduleExpiry(Entry& e, uint64_t id);
  /// Drops lease `id` from every schedule (mu_ held).
  void Drop(uint64_t id);
  /// Forgets renewal `seq` (mu_ held).
  void Answered(std::map<uint64_t, Sent>::iterator it);
  /// From a stream's callbacks (gRPC threads): queue for the renewal thread, wake it.
  void Deliver(Arrival a);
  /// From a stream's OnDone: the stream ended; `stream` (its last reference) is destroyed on the
  /// renewal thread or by Stop, never on a gRPC thread.
  void StreamDone(uint64_t generation, std::shared_ptr<Stream> stream);
  /// Wakes the renewal thread (a stream broke, a lease was added).
  void Kick();
  /// For a server that does not list held tokens: asks GetLease (on the cleanup thread, at most
  /// one at a time per lease) which names the lease holds, so a force-release is still learned
  /// of within about one renewal interval.
  void ProbeHoldings(const std::shared_ptr<LeaseCore>& lease);
  std::shared_ptr<Stream> Open();
  TimePoint NextDue(TimePoint from, std::chrono::milliseconds ttl);

  ClientCore& core_;
  std::mutex mu_;  ///< guards everything below except stream_ (the renewal thread's own)
  std::condition_variable cv_;  ///< kick_ or stop_ set; live_streams_ dropped
  bool stop_ = false;
  std::map<uint64_t, Entry> leases_;
  Schedule due_;     ///< (next_due, lease) of every renewed lease
  Schedule expiry_;  ///< (valid_until, lease) of every lease: when to decide its loss
  int renewed_leases_ = 0;
  std::map<uint64_t, Sent> outstanding_;  ///< renewal seq → what it was
  Schedule answer_by_;                    ///< (answer_by, seq) of every outstanding renewal
  std::deque<Arrival> arrivals_;          ///< from the streams, in arrival order
  std::vector<std::shared_ptr<Stream>> finished_;  ///< ended streams, to destroy off gRPC threads
  bool failover_ = false;                          ///< an answer asked to move the stream
  bool stream_broken_ = false;                     ///< the current stream ended
  bool kick_ = false;                              ///< something happened: the thread should look
  std::set<uint64_t> probing_;                     ///< leases with a holdings probe in flight
  bool batching_ = true;  ///< false while the stream's server answers batches for one lease only
  size_t batch_limit_ = kMaxLeasesPerMessage;  ///< halved by each batch refused as too large
  uint64_t generation_ = 0;                    ///< of the current stream
  int live_streams_ = 0;                       ///< streams whose OnDone has not run yet
  int failovers_in_a_row_ = 0;
  TimePoint last_failover_{};

  std::shared_ptr<Stream> stream_;  ///< only the renewal thread touches it
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_;  ///< set by the constructor, then constant
};

}  // namespace lockd::client
