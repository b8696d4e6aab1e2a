// ExactlyOnce: the table that makes every mutating call safe to retry (design brief, "Exactly
// once"; Raft thesis §6.3).
//
// Per request id it keeps the digest of the method and arguments and the outcome; a retry gets the
// first outcome (or rejoins a wait still pending), and a reused id with another digest is refused.
// Per client it keeps the largest watermark seen (the client's lowest still-pending sequence
// number): a command below it is a late duplicate and is refused without executing. Outcomes are
// forgotten only by RetireOutcomes entries the leader proposes — never by a clock — so every node
// retires the same records at the same index. Part of the snapshot.
#pragma once

#include <functional>
#include <map>

#include "base/codec.h"
#include "lock/outcome.h"
#include "lock/types.h"

namespace lockd::lock {

class ExactlyOnce {
 public:
  enum class Verdict {
    kExecute,            ///< new: run it, then Record()
    kReplay,             ///< a retry: answer with `recorded`
    kBelowWatermark,     ///< a late duplicate: FAILED_PRECONDITION, do not run
    kDigestMismatch,     ///< the id was used for another call: INVALID_ARGUMENT
    kCancelledInAdvance  ///< a Cancel named this Acquire before it arrived: a no-op
  };
  struct Admission {
    Verdict verdict = Verdict::kExecute;
    const Outcome* recorded = nullptr;
  };

  /// Decides what to do with a client command, and raises the client's watermark.
  Admission Admit(const RequestHeader& header, uint64_t digest, LogIndex at);
  void Record(const RequestId& id, uint64_t digest, const Outcome& outcome, LogIndex at);
  /// A pending Acquire finished: later retries get this outcome.
  void Update(const RequestId& id, const Outcome& outcome);
  /// Marks an Acquire that has not arrived as cancelled, so it is a no-op when it does.
  void CancelInAdvance(const RequestId& id, LogIndex at);
  /// Whether a record exists for `id` (finished, pending, or cancelled in advance).
  bool Known(const RequestId& id) const;
  /// Whether `id` is below its client's watermark (it would be refused).
  bool BelowWatermark(const RequestId& id) const;

  /// Forgets outcomes below their client's watermark recorded at or before `upto`, and clients
  /// that hold no lease and were last active at or before `upto`.
  void Retire(LogIndex upto, const std::function<bool(const ClientId&)>& has_lease);

  size_t clients() const { return clients_.size(); }
  size_t records() const;

  void EncodeTo(Writer& w) const;
  bool DecodeFrom(Reader& r);
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
    LogIndex last_active;
    std::map<uint64_t, Entry> records;  ///< by sequence number
    bool operator==(const Client&) const = default;
  };
  std::map<ClientId, Client> clients_;
};

void EncodeOutcome(Writer& w, const Outcome& o);
bool DecodeOutcome(Reader& r, Outcome* o);

}  // namespace lockd::lock
