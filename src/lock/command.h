// Commands: what the Raft log carries for the lock state machine, and their binary format.
//
// An entry is: format version (1 byte), the wall-clock second the leader stamped when proposing
// (for guarantee 8's restore floor only; the state machine never reads a clock), the command kind,
// then — for commands a client sent — its RequestHeader, then the arguments. A newer version is
// refused with an error naming both versions. The digest the exactly-once table compares is over
// the kind and the arguments, not the header, so a retry (another attempt, a newer watermark)
// matches its first attempt.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "base/status.h"
#include "lock/types.h"

namespace lockd::lock {

/// 2: RetireOutcomes carries `expired_at_or_before`. 3: it carries an age sample too. 4: every
/// client command's header carries its Caller (access control). Versions 1 to 3 are still read;
/// versions 2 and 3 are still applied (docs/storage.md, "Upgrading").
inline constexpr uint8_t kCommandFormatVersion = 4;
/// The oldest format whose entries mean today what they meant when written.
inline constexpr uint8_t kOldestAppliedCommandFormat = 2;

struct GrantLease {
  RequestHeader header;
  uint64_t ttl_ms = 0;
  std::string label;
};
struct RevokeLease {
  RequestHeader header;
  LeaseId lease;
};
/// Leader-decided: the lease's deadline passed (no header; nobody retries it).
struct ExpireLease {
  LeaseId lease;
};
struct Acquire {
  RequestHeader header;
  std::string name;
  LeaseId lease;  ///< zero: grant a lease for this one lock, with ttl_ms and label
  Mode mode = Mode::kExclusive;
  uint64_t wait_ms = 0;
  uint64_t ttl_ms = 0;
  std::string label;
};
struct Cancel {
  RequestHeader header;
  std::string name;
  LeaseId lease;
  RequestId acquire;
};
struct Release {
  RequestHeader header;
  std::string name;
  LeaseId lease;
  FencingToken token;
};
/// Admin: release every holder of `name`, or only `lease`'s hold when it is not zero.
struct ForceRelease {
  RequestHeader header;
  std::string name;
  LeaseId lease;
  std::string reason;
};
/// Leader-decided: the wait of Acquire `acquire` on `name` ran out of time.
struct WaitTimeout {
  std::string name;
  RequestId acquire;
};
/// Leader-decided: forget outcomes below their client's watermark recorded at or before
/// `recorded_at_or_before` (an index applied at least F_fwd ago), every record made at or before
/// `expired_at_or_before` (an index applied at least the retention window ago) whatever the
/// watermark says, and clients with no lease and no activity since `expired_at_or_before`. A
/// record of an Acquire still waiting is kept until its wait ends.
///
/// It also carries one point of the replicated age clock: the proposing leader had applied
/// `sampled_index` when its age clock read `age_mark_ms`. The leader's age clock continues from
/// the newest mark applied when it took office, counting only its own monotonic time, so it
/// never runs ahead of real time; the state machine keeps the samples so the next leader can
/// find which indices are old enough (docs/state-machine.md, "The age clock").
struct RetireOutcomes {
  LogIndex recorded_at_or_before;
  LogIndex expired_at_or_before;  ///< 0 in version 1 entries: nothing retired by age
  LogIndex sampled_index;         ///< 0 in version 1 and 2 entries: no sample
  uint64_t age_mark_ms = 0;       ///< likewise
};

using Command = std::variant<GrantLease, RevokeLease, ExpireLease, Acquire, Cancel, Release,
                             ForceRelease, WaitTimeout, RetireOutcomes>;

/// A decoded entry: the command and the leader's wall-clock stamp.
struct Envelope {
  uint8_t version = kCommandFormatVersion;  ///< the entry's command format
  int64_t wall_seconds = 0;
  Command command;
};

/// `format`: kCommandFormatVersion, or an older one for tests of upgrades (a format before 4
/// has no Caller: the command's must be empty).
std::string Encode(const Command& command, int64_t wall_seconds,
                   uint8_t format = kCommandFormatVersion);
Result<Envelope> Decode(std::string_view bytes);

/// The method-and-arguments digest of a client command (0 for leader-decided ones).
uint64_t Digest(const Command& command);
/// The header of a client command, or nullptr for leader-decided ones.
const RequestHeader* HeaderOf(const Command& command);
const char* KindName(const Command& command);

}  // namespace lockd::lock
