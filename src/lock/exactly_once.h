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
// that comes after its record is gone is refused rather than run again. The table is bounded: per
// client and in total (Limits::max_outcomes_per_client, max_outcomes); a new request that would
// pass either is refused, a retry of a recorded one never is. Part of the snapshot.
#pragma once

#include <functional>
#include <map>

#include "base/codec.h"
#include "base/status.h"
#include "lock/outcome.h"
#include "lock/types.h"

namespace lockd::lock {

class ExactlyOnce {
 public:
  enum class Verdict {
    kExecute,             ///< new: run it, then Record()
    kReplay,              ///< a retry: answer with `recorded`
    kBelowWatermark,      ///< a late duplicate: FAILED_PRECONDITION, do not run
    kDigestMismatch,      ///< the id was used for another call: INVALID_ARGUMENT
    kCancelledInAdvance,  ///< a Cancel named this Acquire before it arrived: a no-op
    kForgotten,  ///< at or below a sequence number retired for age: FAILED_PRECONDITION, not run
    kNoRoom,     ///< new, but the table is full (`refusal` says which limit): not run
  };
  struct Admission {
    Verdict verdict = Verdict::kExecute;
    const Outcome* recorded = nullptr;
    Status refusal;  ///< for kNoRoom
  };

  /// What Admit would decide, changing nothing (the read path asks this).
  Admission Peek(const RequestHeader& header, uint64_t digest, const Limits& limits) const;
  /// Decides what to do with a client command, and raises the client's watermark. A request
  /// refused for room from a client the table does not know leaves no trace.
  Admission Admit(const RequestHeader& header, uint64_t digest, LogIndex at, const Limits& limits);
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
  /// A lease granted by `client` ended at `at`: its watermark record lasts a window from here.
  void LeaseEnded(const ClientId& client, LogIndex at);

  /// Applies a RetireOutcomes entry (see command.h).
  void Retire(LogIndex below_watermark_upto, LogIndex expired_upto,
              const std::function<bool(const ClientId&)>& has_lease);

  size_t clients() const { return clients_.size(); }
  size_t records() const { return records_; }
  /// What max_outcomes counts: records plus one per client.
  size_t size() const { return records_ + clients_.size(); }

  void EncodeTo(Writer& w) const;
  /// `version`: the snapshot format (1 has no forgotten_through per client).
  bool DecodeFrom(Reader& r, uint8_t version);
  bool operator==(const ExactlyOnce&) const = default;

 private:
  struct Entry {
    uint64_t digest = 0;
    Outcome outcome;
    LogIndex recorded_at;
    bool cancelled_in_advance = false;
    bool operator==(const Entry&) const = default;
  };
  struct Client {
    uint64_t watermark = 0;
    uint64_t forgotten_through = 0;  ///< the highest sequence number retired for age
    LogIndex last_active;
    std::map<uint64_t, Entry> records;  ///< by sequence number
    bool operator==(const Client&) const = default;
  };
  /// Whether one new record for `client` (plus the client's own if it is new) fits, besides
  /// `reserved_own` of its own and `reserved` in all already admitted but not yet recorded.
  Status Room(const ClientId& client, size_t reserved_own, size_t reserved,
              const Limits& limits) const;

  std::map<ClientId, Client> clients_;
  size_t records_ = 0;  ///< sum of records over clients_
};

void EncodeOutcome(Writer& w, const Outcome& o);
bool DecodeOutcome(Reader& r, Outcome* o);

}  // namespace lockd::lock
