// Renewer: keeps every lease of one Client alive over ONE KeepAlive stream.
//
// One thread sends renewals (each lease about every TTL/3, jittered so many clients do not renew
// in step) and decides losses at valid_until; a reader thread per stream matches each answer to
// its renewal by the client-wide sequence number. A broken stream, an answer that does not come
// within answer_timeout(TTL), or an UNAVAILABLE answer moves the stream to the leader (or the
// next endpoint) at once and renews every lease again there, so a routine failover costs one
// round trip, not a renewal period (issue 14, defect 3). Failovers back off only after every
// endpoint failed in a row, and never by more than a fraction of the shortest TTL.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "client/client_core.h"

namespace lockd::client {

class Renewer {
 public:
  explicit Renewer(ClientCore& core);
  ~Renewer();
  Renewer(const Renewer&) = delete;
  Renewer& operator=(const Renewer&) = delete;

  void Add(std::shared_ptr<LeaseCore> lease);
  void Remove(uint64_t lease_id);
  /// Ends the stream and the threads. Idempotent.
  void Stop();

  /// How long a renewal may go unanswered before the stream moves: TTL/6 within [250 ms, 2 s].
  static std::chrono::milliseconds AnswerTimeout(std::chrono::milliseconds ttl);

 private:
  struct Stream;
  struct Entry {
    std::shared_ptr<LeaseCore> lease;
    TimePoint next_due{};
  };
  struct Sent {
    uint64_t lease_id;
    TimePoint sent;
    TimePoint answer_by;
    uint64_t stream;  ///< generation of the stream it went out on
  };

  void Loop();
  void ReadLoop(std::shared_ptr<Stream> s);
  void OnAnswer(const pb::RenewResponse& r);
  /// Wakes the renewer thread (a stream broke, a failover was asked for, a lease was added).
  void Kick();
  /// For a server that does not list held tokens: asks GetLease (on the cleanup thread, at most
  /// one at a time per lease) which names the lease holds, so a force-release is still learned
  /// of within about one renewal interval.
  void ProbeHoldings(const std::shared_ptr<LeaseCore>& lease);
  std::shared_ptr<Stream> Open();
  void Close(std::shared_ptr<Stream> s);
  TimePoint NextDue(TimePoint now, std::chrono::milliseconds ttl);

  ClientCore& core_;
  std::mutex mu_;  ///< guards everything below except stream_ (the renewer thread's own)
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<uint64_t, Entry> leases_;
  std::map<uint64_t, Sent> outstanding_;  ///< renewal seq → what it was
  bool failover_ = false;                 ///< an answer asked to move the stream
  bool kick_ = false;                     ///< something happened: the thread should look
  std::set<uint64_t> probing_;            ///< leases with a holdings probe in flight
  uint64_t generation_ = 0;
  int failovers_in_a_row_ = 0;
  TimePoint last_failover_{};

  std::shared_ptr<Stream> stream_;  ///< only the renewer thread touches it
  std::thread thread_;
};

}  // namespace lockd::client
