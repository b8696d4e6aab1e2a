// Fencing at a PostgreSQL or Redis resource: the calls that check a Lock's fence there, built as
// plain values so the client library depends on neither libpq nor hiredis. The checks themselves
// are the adapters installed with lockd (share/lockd/adapters/: lockd_fence.sql, lockd_fence.lua);
// docs/fencing.md is the guide.
//
//   auto lock = client->Acquire("wallet/alice", lease, wait);
//   auto check = lockd::fence::PostgresCall(*lock);   // in your transaction:
//   PQexecParams(conn, check->sql.c_str(), 3, nullptr, check->Values().data(), nullptr, nullptr,
//   0);
//   // ... then the UPDATE it guards, then COMMIT.
//
//   auto set = lockd::fence::RedisSet(*lock, sha, "{wallet/alice}:balance", "30");
//   redisCommandArgv(ctx, set->argv.size(), set->Argv().data(), set->Lengths().data());
//
// The builders from a Lock present its fence with the cluster id of the grant (Lock::cluster_id()),
// so a fence is never paired with another cluster's id (a restore observed after the Acquire
// changes Client::cluster_id(), not the Lock's).
//
// Every builder checks its arguments the way the adapters do (fence 1..2^64-1, lock name 1..
// kMaxNameBytes bytes without NULs, cluster id 1..64 hex digits) and answers INVALID_ARGUMENT
// instead of a call that the resource would refuse. Thread-safety: free functions over values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lockd/client.h"
#include "lockd/status.h"

namespace lockd::fence {

/// The adapters' limit on lock names (lockd_fence.sql, lockd_fence.lua and these builders): lockd's
/// default max_name_bytes. A cluster configured with a larger --max-name-bytes can grant locks
/// whose names the adapters refuse; keep such names within this limit, or raise it in all three.
inline constexpr size_t kMaxNameBytes = 512;

/// Which adapter entry point a call uses: a write records the fence under the row's exclusive
/// lock; a read admits an equal fence under a share lock (readers of one run do not block each
/// other once their fence is recorded) and records a larger one as a write does, under the
/// exclusive lock.
enum class Access { kWrite, kRead };

/// One parameterised SQL statement: `SELECT lockd_fence($1, $2, $3)` (or lockd_fence_read) with the
/// lock name, the fence (decimal) and the cluster id as text parameters, for PQexecParams with
/// no parameter types (the adapter's text overloads parse them).
struct SqlCall {
  std::string sql;
  std::vector<std::string> params;
  /// The parameters as C strings (valid while this SqlCall lives and is not changed).
  std::vector<const char*> Values() const;
};

/// The argv of one EVALSHA of lockd_fence.lua (or FCALL of its function form):
/// {"EVALSHA", sha, "2", fence key, data key, "SET"|"GET", lock name, fence, cluster id[, value]
///  [, "ADMIT", "<id>,<id>..."]}.
struct RedisArgs {
  std::vector<std::string> argv;
  /// The arguments as pointers and lengths, for hiredis's redisCommandArgv (values may hold
  /// any bytes, NULs included).
  std::vector<const char*> Argv() const;
  std::vector<size_t> Lengths() const;
};

/// The fence check for `lock` inside the caller's transaction, with the cluster that granted it.
/// INVALID_ARGUMENT for a lock that was not acquired (it has no fence).
client::Result<SqlCall> PostgresCall(const client::Lock& lock, Access access = Access::kWrite);
/// The same from the parts (a fence stored by another process, a test).
client::Result<SqlCall> PostgresCall(std::string_view lock_name, uint64_t fence,
                                     std::string_view cluster_id, Access access = Access::kWrite);

/// The Redis key holding the largest fence of `lock_name`: "{<lock name>}:lockd-fence". Its hash
/// tag is the lock name, so in Redis Cluster a data key tagged the same way ("{wallet/alice}:x")
/// lies in its slot, as one script call needs. Not for names containing '}' (the tag would end
/// there): the Redis builders refuse those unless given an explicit fence key. One fence key per
/// lock: the script records the lock's name in it and refuses a call for another lock.
std::string RedisFenceKey(std::string_view lock_name);

/// The clusters a Redis call pins (the script refuses any other with LOCKD_ADMIT, whatever its
/// fence). An admitted pinned call stores the list in the fence record, and from then on the
/// stored list refuses other clusters whatever later calls pass. Empty, on a lock no call ever
/// pinned: unpinned — another cluster is admitted by a fence above the largest seen, which admits
/// a restored cluster unattended but also an unrelated one whose fences are larger
/// (docs/fencing.md, "Pinning"). Take it from the application's configuration, not from lockd.
using AdmittedClusters = std::vector<std::string>;

/// SET `data_key` to `value` if the lock's fence is admitted. `script_sha` is SCRIPT LOAD's answer
/// for lockd_fence.lua; `fence_key` empty means RedisFenceKey(lock name).
client::Result<RedisArgs> RedisSet(const client::Lock& lock, std::string_view script_sha,
                                   std::string_view data_key, std::string_view value,
                                   std::string_view fence_key = {},
                                   const AdmittedClusters& admitted = {});
/// GET `data_key` if the lock's fence is admitted (a fenced read).
client::Result<RedisArgs> RedisGet(const client::Lock& lock, std::string_view script_sha,
                                   std::string_view data_key, std::string_view fence_key = {},
                                   const AdmittedClusters& admitted = {});

/// The general form: `op` "SET" (with `value`) or "GET", from the parts. With `script_sha`
/// empty the argv is an FCALL of the function form: {"FCALL", "lockd_fence", "2", ...}.
client::Result<RedisArgs> RedisCall(std::string_view op, std::string_view lock_name, uint64_t fence,
                                    std::string_view cluster_id, std::string_view script_sha,
                                    std::string_view data_key, std::string_view value = {},
                                    std::string_view fence_key = {},
                                    const AdmittedClusters& admitted = {});

}  // namespace lockd::fence
