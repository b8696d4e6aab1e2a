// The statement and argv builders of lockd/fence_adapters.h. They refuse what the adapters would
// refuse, with the same limits, so a caller learns of a bad argument before it reaches the
// resource (which checks again: it cannot trust its callers).
#include "lockd/fence_adapters.h"

#include <algorithm>
#include <cctype>

namespace lockd::fence {
namespace {

using client::Result;
using client::Status;
using client::StatusCode;

constexpr size_t kMaxClusterIdChars = 64;

Status Invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, "lockd::fence: " + std::move(message));
}

bool IsClusterId(std::string_view id) {
  return !id.empty() && id.size() <= kMaxClusterIdChars &&
         std::all_of(id.begin(), id.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

Status CheckParts(std::string_view lock_name, uint64_t fence, std::string_view cluster_id) {
  if (lock_name.empty() || lock_name.size() > kMaxNameBytes) {
    return Invalid("lock name must be 1.." + std::to_string(kMaxNameBytes) + " bytes, got " +
                   std::to_string(lock_name.size()));
  }
  // A NUL would end the name where libpq reads it as a C string: the check would run on
  // another lock. lockd's names never hold one.
  if (lock_name.find('\0') != std::string_view::npos) {
    return Invalid("lock name holds a NUL byte (at " + std::to_string(lock_name.find('\0')) + ")");
  }
  if (fence == 0) {
    return Invalid("fence 0 on lock '" + std::string(lock_name) +
                   "': no grant has fence 0 (was the lock acquired?)");
  }
  if (!IsClusterId(cluster_id)) {
    return Invalid("cluster id '" + std::string(cluster_id.substr(0, 80)) +
                   "' is not a lockd cluster id (1..64 hex digits; Lock::cluster_id() of "
                   "an Acquire)");
  }
  return Status::Ok();
}

Status CheckLock(const client::Lock& lock) {
  if (!lock.acquired()) {
    return Invalid("lock '" + lock.name() + "' was not acquired: it has no fence to present");
  }
  return Status::Ok();
}

}  // namespace

std::vector<const char*> SqlCall::Values() const {
  std::vector<const char*> out;
  for (const auto& p : params) out.push_back(p.c_str());
  return out;
}

std::vector<const char*> RedisArgs::Argv() const {
  std::vector<const char*> out;
  for (const auto& a : argv) out.push_back(a.data());
  return out;
}

std::vector<size_t> RedisArgs::Lengths() const {
  std::vector<size_t> out;
  for (const auto& a : argv) out.push_back(a.size());
  return out;
}

Result<SqlCall> PostgresCall(std::string_view lock_name, uint64_t fence,
                             std::string_view cluster_id, Access access) {
  if (Status s = CheckParts(lock_name, fence, cluster_id); !s.ok()) return s;
  SqlCall call;
  call.sql = access == Access::kWrite ? "SELECT lockd_fence($1, $2, $3)"
                                      : "SELECT lockd_fence_read($1, $2, $3)";
  call.params = {std::string(lock_name), std::to_string(fence), std::string(cluster_id)};
  return call;
}

Result<SqlCall> PostgresCall(const client::Lock& lock, Access access) {
  if (Status s = CheckLock(lock); !s.ok()) return s;
  return PostgresCall(lock.name(), lock.fence(), lock.cluster_id(), access);
}

std::string RedisFenceKey(std::string_view lock_name) {
  return "{" + std::string(lock_name) + "}:lockd-fence";
}

Result<RedisArgs> RedisCall(std::string_view op, std::string_view lock_name, uint64_t fence,
                            std::string_view cluster_id, std::string_view script_sha,
                            std::string_view data_key, std::string_view value,
                            std::string_view fence_key, const AdmittedClusters& admitted) {
  if (op != "SET" && op != "GET") {
    return Invalid("operation must be SET or GET, got '" + std::string(op.substr(0, 80)) + "'");
  }
  if (Status s = CheckParts(lock_name, fence, cluster_id); !s.ok()) return s;
  if (data_key.empty()) return Invalid("the data key is empty");
  if (fence_key.empty() && lock_name.find('}') != std::string_view::npos) {
    // "{<name>}" would end its hash tag at the name's '}' (an empty tag for a leading one):
    // the keys could land in different Redis Cluster slots.
    return Invalid("lock name '" + std::string(lock_name.substr(0, 80)) +
                   "' contains '}', so RedisFenceKey cannot hash-tag it: pass a fence key");
  }
  const std::string fence_record =
      fence_key.empty() ? RedisFenceKey(lock_name) : std::string(fence_key);
  if (fence_record == data_key) {
    return Invalid("the fence key and the data key are both '" + fence_record + "'");
  }
  std::string admit_list;
  for (const auto& id : admitted) {
    if (!IsClusterId(id)) {
      return Invalid("admitted cluster id '" + id.substr(0, 80) +
                     "' is not a lockd cluster id (1..64 hex digits)");
    }
    admit_list += (admit_list.empty() ? "" : ",") + id;
  }
  RedisArgs args;
  if (script_sha.empty()) {
    args.argv = {"FCALL", "lockd_fence"};
  } else {
    args.argv = {"EVALSHA", std::string(script_sha)};
  }
  args.argv.push_back("2");
  args.argv.push_back(fence_record);
  args.argv.emplace_back(data_key);
  args.argv.emplace_back(op);
  args.argv.emplace_back(lock_name);
  args.argv.push_back(std::to_string(fence));
  args.argv.emplace_back(cluster_id);
  if (op == "SET") args.argv.emplace_back(value);
  if (!admitted.empty()) {
    args.argv.emplace_back("ADMIT");
    args.argv.push_back(std::move(admit_list));
  }
  return args;
}

Result<RedisArgs> RedisSet(const client::Lock& lock, std::string_view script_sha,
                           std::string_view data_key, std::string_view value,
                           std::string_view fence_key, const AdmittedClusters& admitted) {
  if (Status s = CheckLock(lock); !s.ok()) return s;
  return RedisCall("SET", lock.name(), lock.fence(), lock.cluster_id(), script_sha, data_key, value,
                   fence_key, admitted);
}

Result<RedisArgs> RedisGet(const client::Lock& lock, std::string_view script_sha,
                           std::string_view data_key, std::string_view fence_key,
                           const AdmittedClusters& admitted) {
  if (Status s = CheckLock(lock); !s.ok()) return s;
  return RedisCall("GET", lock.name(), lock.fence(), lock.cluster_id(), script_sha, data_key, {},
                   fence_key, admitted);
}

}  // namespace lockd::fence
