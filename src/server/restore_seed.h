// Restoring a cluster from a backup (design brief, guarantee 8; docs/operations.md).
//
// `lockd restore` verifies a backup and leaves it, with --token-floor, in each new member's data
// dir (storage::RestoreSeed). The members then start as a new cluster does: the first leader
// proposes the random cluster id, and in a restored cluster the same entry carries the new
// cluster's starting state — no leases, holders, waiters or outcomes; counters raised by
// RestoredState. Deciding it in the log, rather than in each data dir, keeps every member's state
// identical although each member was restored at its own moment, and the first committed decision
// wins as it does for any cluster id.
//
// The entry is a cluster id entry (tag byte 0, so the lock state machine never sees it) of its
// own version: "\0lockd-cluster-id 2 <id>\n<lock state snapshot>". A node that reads only
// version 1 refuses it (guarantee 9: a newer format is an error, never guessed at).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "lock/state_machine.h"
#include "storage/backup_file.h"

namespace lockd::server {

/// What a restored member brings to its first start: the backup's counters and the time they are
/// counted from, never its state (verified once, off the replica loop, by PlanFromSeed), so the
/// leader's step at election time is arithmetic.
struct RestorePlan {
  storage::BackupHeader backup;  ///< what the backup covered (counters, logs)
  uint64_t token_floor = 0;
  int64_t restored_unix_seconds = 0;  ///< when `lockd restore` ran on this member
  /// The earlier of the header's timestamp and the newest leader stamp in the state, so a node
  /// clock that ran ahead only raises the counters.
  int64_t counted_from_unix_seconds = 0;
  std::string digest;  ///< the backup file's SHA-256, hex
};

/// The plan a verified seed describes: decodes its backup and the state in it once (the header
/// must agree with the state's counters) and keeps only what the start needs.
Result<RestorePlan> PlanFromSeed(const storage::RestoreSeed& seed);

/// The whole seconds counted at wall time `now_unix_seconds` (never earlier than the restore).
int64_t SecondsCounted(const RestorePlan& plan, int64_t now_unix_seconds);

/// The first state of a cluster restored at wall time `now_unix_seconds` (never taken earlier
/// than the restore itself): no leases, holders, waiters or outcomes; token and lease-id counters
/// at max(token_floor, counter + 2^32 × (1 + SecondsCounted)). A clock behind the time counted
/// from cannot count the seconds since the backup: refused (FAILED_PRECONDITION) unless the plan
/// has a token floor, which then carries the guarantee.
Result<lock::LockStateMachine> RestoredState(const RestorePlan& plan, const lock::Limits& limits,
                                             int64_t now_unix_seconds);

std::string EncodeRestoredClusterIdEntry(const std::string& cluster_id, const std::string& state);
bool IsRestoredClusterIdEntry(std::string_view data);
struct RestoredClusterId {
  std::string cluster_id;
  std::string state;  ///< the lock state snapshot every member starts from
};
Result<RestoredClusterId> DecodeRestoredClusterIdEntry(std::string_view data);

}  // namespace lockd::server
