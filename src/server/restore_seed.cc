#include "server/restore_seed.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace lockd::server {

namespace {
using std::string_view_literals::operator""sv;
constexpr std::string_view kPrefix = "\0lockd-cluster-id 2 "sv;
}  // namespace

Result<RestorePlan> PlanFromSeed(const storage::RestoreSeed& seed) {
  auto backup = storage::DecodeBackup(seed.backup);
  if (!backup.ok()) return backup.status();
  auto old = lock::LockStateMachine::Restore(backup->state, lock::Limits{});
  if (!old.ok()) return old.status();
  if (old->token_counter().value() != backup->header.token_counter ||
      old->lease_counter().value() != backup->header.lease_counter) {
    return DataLoss("the backup's header and state disagree on the token or lease-id counter");
  }
  RestorePlan plan;
  plan.backup = backup->header;
  plan.token_floor = seed.token_floor;
  plan.restored_unix_seconds = seed.restored_unix_seconds;
  // A state no leader ever stamped has only the header's time.
  plan.counted_from_unix_seconds =
      old->wall_seconds() > 0 ? std::min(backup->header.taken_unix_seconds, old->wall_seconds())
                              : backup->header.taken_unix_seconds;
  plan.digest = storage::BackupDigestHex(seed.backup);
  return plan;
}

int64_t SecondsCounted(const RestorePlan& plan, int64_t now_unix_seconds) {
  const int64_t now = std::max(now_unix_seconds, plan.restored_unix_seconds);
  return std::max<int64_t>(0, now - plan.counted_from_unix_seconds);
}

Result<lock::LockStateMachine> RestoredState(const RestorePlan& plan, const lock::Limits& limits,
                                             int64_t now_unix_seconds) {
  const int64_t now = std::max(now_unix_seconds, plan.restored_unix_seconds);
  if (now < plan.counted_from_unix_seconds && plan.token_floor == 0) {
    return FailedPrecondition(
        "this clock (unix time " + std::to_string(now) + ") is behind the backup's (" +
        std::to_string(plan.counted_from_unix_seconds) +
        "), so the seconds since the backup cannot be counted: fix the clock, or restore every "
        "member with the same --token-floor above every token the old cluster granted");
  }
  return lock::LockStateMachine::NewClusterFrom(
      limits, plan.backup.token_counter, plan.backup.lease_counter, plan.counted_from_unix_seconds,
      now, plan.token_floor);
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
