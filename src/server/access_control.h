// AccessControl: who is calling on the client port, and whether the call may go on
// (docs/security.md, "Access control"). Off unless `--access-file` names a policy
// (server/access_policy.h); the services then hold a null pointer and check nothing.
//
// Authentication, in order:
//   1. A call forwarded by a member (metadata `lockd-forwarded-by`) whose TLS client certificate
//      is a member's (the cluster CA signed it and it names a member): the identity is the one
//      the member names in `lockd-forwarded-identity`, authenticated there. Without such a
//      certificate (plaintext, or no --tls-client-ca) the header is ignored and the call's own
//      credentials, which the member passes on, are authenticated again here.
//   2. The client certificate (with --tls-client-ca): its URI SANs, then its subject CN (unless
//      the CN has a ':', which only URIs have: a CN cannot pass for a URI), looked up in the
//      policy's `certs`.
//   3. A bearer token: metadata `authorization: Bearer <token>`, looked up by its SHA-256.
// No identity: UNAUTHENTICATED. Authorization: the permission the RPC needs on the name it names
// (lock, read or admin; cluster-wide calls need it on every name, the prefix ""), else
// PERMISSION_DENIED naming the permission and the name. Both are counted in /metrics
// (lockd_access_denied_total). Each call is also held to its identity's request rate (a token
// bucket per identity and node, Metering): RESOURCE_EXHAUSTED naming the quota.
//
// Thread-safe: the policy is swapped whole on Reload (SIGHUP); a call uses the one it started with.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "lock/types.h"
#include "server/access_policy.h"
#include "server/metrics.h"

namespace lockd::server {

class NodeSecurity;

inline constexpr const char* kForwardedIdentityHeader = "lockd-forwarded-identity";
inline constexpr const char* kAuthorizationHeader = "authorization";
/// How a call counts against its identity's request rate.
enum class Metering : uint8_t {
  kMetered,  ///< takes a token; refused when the bucket is empty
  /// Takes a token, and may overdraw the bucket by up to `burst` (Release, Cancel, RevokeLease):
  /// an identity over its rate can still give back what it holds, while a flood of frees that
  /// free nothing (each a log entry and an exactly-once record) stays bounded by the rate.
  kFrees,
  kUnmetered,  ///< not counted: renewals (no log entry, no record)
};

/// What access control counts (null members: not counted).
struct AccessMetrics {
  Counter* unauthenticated = nullptr;
  Counter* denied[3] = {};  ///< PERMISSION_DENIED by Permission (lock, read, admin)
  Counter* rate_limited = nullptr;
  Counter* quota_leases = nullptr;  ///< max_leases refusals the state machine answered
  Counter* quota_locks = nullptr;   ///< max_locks refusals
};

class AccessControl {
 public:
  /// Loads the policy at `path` (the error names the file and key). `security`: the node's TLS
  /// (to tell a member's certificate); null means plaintext.
  /// `is_member`: whether an id names a current member (only a current member's certificate
  /// vouches for a forwarded caller).
  static Result<std::unique_ptr<AccessControl>> Load(std::string path,
                                                     std::shared_ptr<const NodeSecurity> security,
                                                     std::function<bool(uint64_t)> is_member,
                                                     AccessMetrics metrics = {});
  /// Reads the file again; on any error the policy in force stays, and the error says why.
  Status Reload();

  /// An authenticated caller: the policy it was checked against and its identity in it.
  struct Who {
    std::shared_ptr<const AccessPolicy> policy;
    const AccessIdentity* identity = nullptr;
    /// Forwarded by a member whose certificate proved it: the receiving member already held the
    /// call to its rate.
    bool vouched = false;
  };
  /// UNAUTHENTICATED (counted) when the call proves no identity of the policy.
  Result<Who> Authenticate(const grpc::ServerContextBase& ctx) const;
  /// PERMISSION_DENIED (counted) unless `who` holds `p` on `name` (`what`: the call, for the
  /// message). `anywhere`: on any name at all (GrantLease, renewals: calls that name no lock).
  Status Require(const Who& who, Permission p, std::string_view name, std::string_view what,
                 bool anywhere = false) const;
  /// Takes one request from `who`'s rate bucket: RESOURCE_EXHAUSTED naming the quota when empty.
  /// A call a member vouched for is not counted again.
  Status Admit(const Who& who, Metering metering = Metering::kMetered);
  /// Authenticate, Admit, then Require: the one call a handler makes.
  Result<Who> Check(const grpc::ServerContextBase& ctx, Permission p, std::string_view name,
                    std::string_view what, bool anywhere = false,
                    Metering metering = Metering::kMetered);
  /// What the state machine is told of `who` (its principal, quotas, cluster admin).
  static lock::Caller CallerOf(const Who& who);
  /// The metadata a forward to the leader carries for `ctx`'s caller: its identity (trusted by a
  /// leader that sees this member's certificate) and its own credentials (for one that cannot).
  std::vector<std::pair<std::string, std::string>> ForwardMetadata(
      const grpc::ServerContextBase& ctx) const;
  /// Counts a refusal the state machine answered (a quota at apply, a lease of another identity).
  void CountOutcome(const Status& s) const;

  std::shared_ptr<const AccessPolicy> policy() const;

 private:
  AccessControl(std::string path, std::shared_ptr<const NodeSecurity> security,
                std::function<bool(uint64_t)> is_member, AccessMetrics metrics)
      : path_(std::move(path)),
        security_(std::move(security)),
        is_member_(std::move(is_member)),
        metrics_(metrics) {}
  /// Whether the call comes from a current member vouching under its certificate.
  bool FromMember(const grpc::ServerContextBase& ctx) const;
  Result<Who> Identify(const grpc::ServerContextBase& ctx) const;

  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point at;
  };

  const std::string path_;
  const std::shared_ptr<const NodeSecurity> security_;
  const std::function<bool(uint64_t)> is_member_;
  const AccessMetrics metrics_;
  mutable std::mutex mu_;  ///< guards policy_ and buckets_
  std::shared_ptr<const AccessPolicy> policy_;
  std::map<std::string, Bucket, std::less<>> buckets_;  ///< per identity with a rate
};

}  // namespace lockd::server
