#include "server/restore_seed.h"

#include <algorithm>
#include <cctype>

namespace lockd::server {

namespace {
using std::string_view_literals::operator""sv;
constexpr std::string_view kPrefix = "\0lockd-cluster-id 2 "sv;
}  // namespace

Result<RestorePlan> PlanFromSeed(const storage::RestoreSeed& seed) {
  auto backup = storage::DecodeBackup(seed.backup);
  if (!backup.ok()) return backup.status();
  RestorePlan plan;
  plan.backup = backup->header;
  plan.state = std::move(backup->state);
  plan.token_floor = seed.token_floor;
  plan.restored_unix_seconds = seed.restored_unix_seconds;
  plan.digest = storage::BackupDigestHex(seed.backup);
  return plan;
}

Result<lock::LockStateMachine> RestoredState(const RestorePlan& plan, const lock::Limits& limits,
                                             int64_t now_unix_seconds) {
  auto old = lock::LockStateMachine::Restore(plan.state, limits);
  if (!old.ok()) return old.status();
  if (old->token_counter().value() != plan.backup.token_counter ||
      old->lease_counter().value() != plan.backup.lease_counter) {
    return DataLoss("the backup's header and state disagree on the token or lease-id counter");
  }
  const int64_t now = std::max(now_unix_seconds, plan.restored_unix_seconds);
  // RestoreAsNewCluster counts from the state's own stamp; shift `now` so that it counts from
  // the earlier of the two times instead (a state no leader ever stamped has only the header's).
  const int64_t taken = old->wall_seconds() > 0
                            ? std::min(plan.backup.taken_unix_seconds, old->wall_seconds())
                            : plan.backup.taken_unix_seconds;
  const int64_t shifted = now + (old->wall_seconds() - taken);
  return lock::LockStateMachine::RestoreAsNewCluster(plan.state, limits, shifted, plan.token_floor);
}

std::string EncodeRestoredClusterIdEntry(const std::string& cluster_id, const std::string& state) {
  return std::string(kPrefix) + cluster_id + "\n" + state;
}

bool IsRestoredClusterIdEntry(std::string_view data) {
  return data.starts_with(kPrefix);
}

Result<RestoredClusterId> DecodeRestoredClusterIdEntry(std::string_view data) {
  if (!data.starts_with(kPrefix)) return InvalidArgument("not a restored cluster id entry");
  data.remove_prefix(kPrefix.size());
  const size_t nl = data.find('\n');
  if (nl == std::string_view::npos || nl == 0 || nl > 64) {
    return InvalidArgument("a restored cluster id entry with a malformed id");
  }
  RestoredClusterId r;
  r.cluster_id.assign(data.substr(0, nl));
  if (!std::all_of(r.cluster_id.begin(), r.cluster_id.end(),
                   [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; })) {
    return InvalidArgument("a restored cluster id entry with a malformed id");
  }
  r.state.assign(data.substr(nl + 1));
  return r;
}

}  // namespace lockd::server
