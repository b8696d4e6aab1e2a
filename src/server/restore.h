// `lockd restore`: makes a new member's data dir from a backup file (design brief, guarantee 8;
// docs/operations.md, "Backup and restore").
//
// Everything is checked before anything is written: the file (format, version, checksum), the
// state it carries (it decodes; the counters it yields do not overflow), the member list and the
// node's place in it, and that the data dir is new (missing, or a folder holding nothing but a
// mount point's lost+found or an interrupted restore's identity file). A missing data dir is built
// under a temporary name of this run's own and renamed into place; an existing empty one (a mount
// point cannot be renamed over) is built in place. Either way the restore seed is written last,
// as the commit marker: an identity file that says "restored" without a seed is an interrupted
// restore, which the node refuses to start and restore may write over. Nothing this run did not
// create is ever removed.
//
// It holds: the identity file (the members; a bootstrap id derived from --cluster-token, the
// members, the backup's digest AND --token-floor, so a member restored from another file, with
// another floor, or bootstrapped without one, is refused by its peers), and the restore seed. The
// new cluster id and its starting counters are decided by the first leader through the log
// (server/restore_seed.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "server/cluster_identity.h"

namespace lockd::server {

struct RestoreOptions {
  std::string backup_path;  ///< --from
  std::string data_dir;
  uint64_t node_id = 0;
  std::string initial_cluster;  ///< id=peer/client,... as for a new cluster
  std::string cluster_token = "lockd";
  uint64_t token_floor = 0;
};

/// What a restore did, for the operator.
struct RestoreReport {
  std::string digest;  ///< the backup file's SHA-256
  std::string old_cluster_id;
  uint64_t index = 0;
  int64_t taken_unix_seconds = 0;
  uint64_t old_token_counter = 0;
  uint64_t old_lease_counter = 0;
  /// The counters the new cluster would start from if its first leader were elected now (the
  /// leader raises them again for the time that passes until then).
  uint64_t token_counter_now = 0;
  uint64_t lease_counter_now = 0;
  int64_t seconds_counted = 0;  ///< whole seconds since the backup counted in those
  uint64_t token_floor = 0;
};

/// The bootstrap id of a restored member: every member of one restored cluster must be restored
/// from the same file with the same --token-floor (only the first leader's seed decides the
/// start), and a mismatch is refused by the peers' bootstrap id check.
std::string RestoredBootstrapId(const std::string& cluster_token, const std::string& digest,
                                uint64_t token_floor, const std::vector<MemberSpec>& members);

Result<RestoreReport> RestoreDataDir(const RestoreOptions& options);
std::string FormatRestoreReport(const RestoreOptions& options, const RestoreReport& report);

}  // namespace lockd::server
