// ExactlyOnce: the table that makes every mutating call safe to retry (design brief, "Exactly
// once"; Raft thesis §6.3).
//
// Per request id it keeps the digest of the method and arguments and the outcome; a retry gets the
// first outcome (or rejoins a wait still pending), and a reused id with another digest is refused.
// Per client it keeps the largest watermark seen (the client's lowest still-pending sequence
// number): a command below it is a late duplicate and is refused without executing. Records are
// forgotten only by RetireOutcomes entries the leader proposes — never by a clock — so every node
// retires the same records at the same index: below the watermark once F_fwd old, and every record
// once the retention window old whatever the watermark says (docs/guarantees.md, "Exactly-once
// retention window"). A client remembers the highest sequence number retired for age, so a retry
// that comes after its record is gone is refused rather than run again.
//
// The table is bounded: per client and in total (Limits::max_outcomes_per_client, max_outcomes);
// a new request that would pass either is refused, a retry of a recorded one never is. A request
// that frees a lease, a hold or a wait may also use a small reserve above max_outcomes
// (OutcomeReserve), so a flood of new clients can stop new work but never a release or a revoke.
//
// Age is counted in the log too: every RetireOutcomes carries the proposing leader's age mark,
// and the table keeps a short list of (applied index, mark) samples, so a new leader continues the
// age clock where the last one left it (docs/state-machine.md, "The age clock").
//
// A retirement touches what it retires, the clients listed below their watermark and the idle
// clients it erases, not the whole table: records not pending a wait are linked oldest first
// (their indices only grow), clients with records below their watermark are listed, and clients
// with nothing left are kept in order of last activity. Those indexes are derived: neither
// compared nor in the snapshot. Part of the snapshot.
#pragma once

#include <deque>
#include <map>
#include <set>
#include <utility>

#include "base/codec.h"
#include "base/status.h"
#include "lock/command.h"
#include "lock/outcome.h"
#include "lock/types.h"

namespace lockd::lock {

/// Records above max_outcomes that only a request which frees a lease, a hold or a wait may use:
/// 5% of the cap, at least 16.
inline size_t OutcomeReserve(const Limits& l) {
  return std::max<size_t>(16, l.max_outcomes / 20);
}

/// The most records a client may hold and still use the reserve: a sixteenth of it, at least 8.
/// So no one client can use up the reserve (say by releasing 50,000 holds with watermark 0).
inline size_t OutcomeReserveShare(const Limits& l) {
  return std::max<size_t>(8, OutcomeReserve(l) / 16);
}

/// What clients holding no lease (one-shot clients, raw ids) may fill of max_outcomes with their
/// records and their own client records: half. A flood of fresh ids then leaves the other half to
/// clients that hold a lease.
inline size_t LeaselessOutcomeShare(const Limits& l) {
  return l.max_outcomes / 2;
}

/// The rules a new request is admitted under. Both came with command format 3; a format-2 entry
/// is admitted with neither, as it was when written.
struct AdmitRules {
  bool frees = false;           ///< it frees a lease, a hold or a wait: it may use the reserve
  bool leaseless_share = true;  ///< from a client with no lease: LeaselessOutcomeShare applies
};

/// One point of the replicated age clock: the leader that proposed it had applied `applied` when
/// its age clock read `mark_ms`.
struct AgeSample {
  LogIndex applied;
  uint64_t mark_ms = 0;
  bool operator==(const AgeSample&) const = default;
};

class ExactlyOnce {
 public:
  /// Samples kept at most; past it the inner sample whose neighbours are closest in mark is
  /// dropped (which only retains longer, and by the least).
  static constexpr size_t kMaxAgeSamples = 1024;

  enum class Verdict {
    kExecute,             ///< new: run it, then Record()
    kReplay,              ///< a retry: answer with `recorded`
    kBelowWatermark,      ///< a late duplicate: FAILED_PRECONDITION, do not run
    kDigestMismatch,      ///< the id was used for another call: INVALID_ARGUMENT
    kCancelledInAdvance,  ///< a Cancel named this Acquire before it arrived: a no-op
    kForgotten,  ///< at or below a sequence number retired for age: FAILED_PRECONDITION, not run
    kNoRoom,     ///< new, but the table is full (`refusal` says which limit): not run
    /// The client id is another identity's (access control): PERMISSION_DENIED, not run, and
    /// nothing of the client's record changes (its watermark least of all).
    kOtherIdentity,
  };
  struct Admission {
    Verdict verdict = Verdict::kExecute;
    const Outcome* recorded = nullptr;
    Status refusal;  ///< for kNoRoom
  };

  ExactlyOnce() = default;
  ExactlyOnce(const ExactlyOnce& o);
  ExactlyOnce& operator=(const ExactlyOnce& o);
  ExactlyOnce(ExactlyOnce&& o) noexcept;
  ExactlyOnce& operator=(ExactlyOnce&& o) noexcept;
  ~ExactlyOnce() = default;

  /// What Admit would decide, changing nothing (the read path asks this).
  Admission Peek(const RequestHeader& header, uint64_t digest, const Limits& limits,
                 AdmitRules rules = {}) const;
  /// Decides what to do with a client command, and raises the client's watermark. A request
  /// refused for room from a client the table does not know leaves no trace.
  Admission Admit(const RequestHeader& header, uint64_t digest, LogIndex at, const Limits& limits,
                  AdmitRules rules = {});
  void Record(const RequestId& id, uint64_t digest, const Outcome& outcome, LogIndex at);
  /// A pending Acquire finished at `at`: later retries get this outcome, for a full window.
  void Update(const RequestId& id, const Outcome& outcome, LogIndex at);
  /// Whether a Cancel in advance of `id` fits, besides the record of the Cancel itself (admitted
  /// for `canceller`, not yet recorded).
  Status RoomForCancelInAdvance(const RequestId& id, const ClientId& canceller,
                                const Limits& limits) const;
  /// Marks an Acquire that has not arrived as cancelled, so it is a no-op when it does.
  void CancelInAdvance(const RequestId& id, LogIndex at);
  /// Whether a record exists for `id` (finished, pending, or cancelled in advance).
  bool Known(const RequestId& id) const;
  /// Whether `id` would be refused unrun: below its client's watermark, or retired for age.
  bool Refused(const RequestId& id) const;
  /// A lease granted by `client` began; while it lasts the client's watermark record is kept.
  void LeaseGranted(const ClientId& client);
  /// A lease granted by `client` ended at `at`: its watermark record lasts a window from here.
  void LeaseEnded(const ClientId& client, LogIndex at);

  /// Applies a RetireOutcomes entry (see command.h) applied at `at`.
  void Retire(const RetireOutcomes& retire, LogIndex at);

  size_t clients() const { return clients_.size(); }
  size_t records() const { return records_; }
  /// What max_outcomes counts: records plus one per client.
  size_t size() const { return records_ + clients_.size(); }
  /// The part of size() that belongs to clients holding no lease.
  size_t leaseless_size() const { return size() - leased_size_; }
  /// The replicated age clock, oldest first; empty until the first format-3 RetireOutcomes.
  const std::deque<AgeSample>& age_samples() const { return ages_; }
  /// The newest age mark applied (0 before any): where a new leader's age clock starts.
  uint64_t age_mark_ms() const { return last_mark_ms_; }
  /// How many records and clients the last Retire looked at (what a retirement costs; tests).
  size_t last_retire_steps() const { return retire_steps_; }

  /// Aborts (LOCKD_CHECK) if the counts or the derived indexes disagree with the records.
  /// `leases_by_client`: how many leases each client granted, from the lease table.
  void CheckInvariants(const std::map<ClientId, uint32_t>& leases_by_client) const;

  void EncodeTo(Writer& w) const;
  /// `version`: the snapshot format (1 has no forgotten_through per client, 1 and 2 no age
  /// samples). Lease counts start at zero: the owner calls LeaseGranted for each lease after.
  /// `applied`: the snapshot's applied index; a record or activity after it is refused (the age
  /// list is kept in order of recording, and the next apply appends at applied + 1), and so is an
  /// age sample at or after it (an honest sample is always taken below the index applying it).
  bool DecodeFrom(Reader& r, uint8_t version, LogIndex applied);
  bool operator==(const ExactlyOnce& o) const {
    return clients_ == o.clients_ && ages_ == o.ages_ && last_mark_ms_ == o.last_mark_ms_;
  }

 private:
  struct Client;
  struct Entry;
  /// Where a record sits in the age list; derived, so equal whatever it holds.
  struct AgeLink {
    Client* client = nullptr;  ///< the owner (map nodes do not move)
    uint64_t seq = 0;
    Entry* older = nullptr;
    Entry* newer = nullptr;
    bool linked = false;
    bool operator==(const AgeLink&) const { return true; }
  };
  struct Entry {
    uint64_t digest = 0;
    Outcome outcome;
    LogIndex recorded_at;
    bool cancelled_in_advance = false;
    AgeLink age;
    bool operator==(const Entry&) const = default;
  };
  struct Client {
    ClientId id;
    uint64_t watermark = 0;
    uint64_t forgotten_through = 0;  ///< the highest sequence number retired for age
    LogIndex last_active;
    /// The first Caller principal that used the client id (empty: none yet, access control was
    /// off). Requests of any other principal are refused: one identity cannot read another's
    /// outcomes, raise its watermark or cancel its Acquires in advance.
    std::string principal;
    std::map<uint64_t, Entry> records;  ///< by sequence number
    // Derived, not compared:
    uint32_t leases = 0;  ///< leases this client granted that have not ended
    bool idle = false;    ///< in idle_, under idle_key
    LogIndex idle_key;    ///< last_active when it went into idle_
    bool operator==(const Client& o) const {
      return id == o.id && watermark == o.watermark && forgotten_through == o.forgotten_through &&
             last_active == o.last_active && principal == o.principal && records == o.records;
    }
  };

  /// Whether one new record for `client` (plus the client's own if it is new) fits, besides
  /// `reserved_own` of its own and `reserved` in all already admitted but not yet recorded.
  Status Room(const ClientId& client, size_t reserved_own, size_t reserved, const Limits& limits,
              AdmitRules rules) const;
  Entry& Put(Client& c, uint64_t seq, LogIndex at);
  /// Puts a finished record at the young end of the age list (a pending one stays off it).
  void Link(Client& c, uint64_t seq, Entry& e);
  void Unlink(Entry& e);
  void Erase(Client& c, std::map<uint64_t, Entry>::iterator r);
  /// After `c` changed: lists it as below its watermark or idle when it is.
  void Settle(Client& c);
  /// The idle half of Settle: in idle_ exactly when it has no record and no lease.
  void SettleIdle(Client& c);
  void Touch(Client& c, LogIndex at);
  void AddAgeSample(const RetireOutcomes& retire, LogIndex at);
  /// Derives every index from clients_ (after a copy or a decode).
  void Reindex();

  std::map<ClientId, Client> clients_;
  size_t records_ = 0;  ///< sum of records over clients_
  std::deque<AgeSample> ages_;
  uint64_t last_mark_ms_ = 0;  ///< the newest mark, kept when its sample has been pruned

  // Derived indexes.
  size_t leased_size_ = 0;   ///< records plus one per client, of clients with a lease
  size_t retire_steps_ = 0;  ///< see last_retire_steps()
  Entry* oldest_ = nullptr;  ///< the age list: finished records by recorded_at, oldest first
  Entry* newest_ = nullptr;
  std::set<ClientId> below_watermark_;  ///< may have finished records below their watermark
  std::set<std::pair<LogIndex, ClientId>> idle_;  ///< no records, no lease: by last_active
};

void EncodeOutcome(Writer& w, const Outcome& o);
bool DecodeOutcome(Reader& r, Outcome* o);

}  // namespace lockd::lock
