// The vocabulary of the lease and lock state machine: ids, modes, request ids and limits.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

#include "base/strong_int.h"

namespace lockd::lock {

using LeaseId = StrongInt<struct LeaseIdTag>;            ///< 0 means "none"; never reused
using FencingToken = StrongInt<struct FencingTokenTag>;  ///< unique per grant, increasing
using LogIndex = StrongInt<struct LockLogIndexTag>;      ///< the Raft index an entry applied at

enum class Mode : uint8_t { kExclusive = 1, kShared = 2 };

/// A client process: 128 random bits, new at every process start.
struct ClientId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  auto operator<=>(const ClientId&) const = default;
  bool zero() const { return hi == 0 && lo == 0; }
};

/// One mutating call across its retries.
struct RequestId {
  ClientId client;
  uint64_t seq = 0;
  auto operator<=>(const RequestId&) const = default;
  bool zero() const { return client.zero() && seq == 0; }
};

/// Who sent a client command, as the node that proposed it authenticated it (docs/security.md,
/// "Access control"). No principal: access control is off on the proposing node (or the entry
/// predates command format 4), and nothing below is checked.
struct Caller {
  std::string principal;    ///< the identity; a lease it grants records it as its owner
  uint64_t max_leases = 0;  ///< its quota of live leases when proposed; 0: none
  uint64_t max_locks = 0;   ///< its quota of names held plus waited for; 0: none
  /// The proposer found cluster-wide admin (admin on every name): it may revoke leases other
  /// identities own (and nothing else with them).
  bool admin = false;
  bool operator==(const Caller&) const = default;
};

/// Carried by every client command (design brief, "Exactly once").
struct RequestHeader {
  RequestId id;
  uint32_t attempt = 1;
  uint64_t watermark = 0;  ///< the client's lowest still-pending sequence number
  Caller caller = {};      ///< command format 4 on
};

/// Configured limits. The ones that depend on state are enforced at apply; all of them are
/// checked before a command is proposed, so a refused request never reaches the log.
struct Limits {
  size_t max_name_bytes = 512;
  size_t max_label_bytes = 128;
  uint64_t min_ttl_ms = 2'000;
  uint64_t max_ttl_ms = 3'600'000;
  uint64_t max_wait_ms = 3'600'000;
  size_t max_locks = 1'000'000;  ///< names held or waited for
  size_t max_leases = 100'000;
  size_t max_waiters_per_lock = 10'000;
  size_t max_leases_per_label = 100'000;
  /// W: every exactly-once record is retired once it is this old, whatever the watermark says
  /// (the leader decides the index bound on its clock; the state machine never reads one). At
  /// least F_fwd.
  uint64_t outcome_retention_ms = 300'000;
  /// Exactly-once records of one client (outcomes and cancels in advance) kept at once.
  size_t max_outcomes_per_client = 100'000;
  /// Exactly-once records kept at once: every outcome, plus one per client for its watermark.
  size_t max_outcomes = 1'000'000;
};

std::string ToString(const RequestId& id);
/// The limits as the flags that set them ("--max-name-bytes=512 ..."): what peers compare.
std::string ToString(const Limits& limits);

}  // namespace lockd::lock
