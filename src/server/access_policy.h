// AccessPolicy: who may call lockd, and what each caller may do (docs/security.md, "Access
// control"). Read from the TOML file `--access-file` names, and again on SIGHUP.
//
//   [defaults]                      # quotas of every identity that sets none of its own
//   max_leases = 1000               # live leases it owns (0 or absent: unlimited)
//   max_locks = 10000               # names its leases hold or wait for, together
//   rate = 500                      # requests per second, token bucket (per node)
//   burst = 1000                    # the bucket's size (absent: max(rate, 1))
//
//   [roles.billing-writer]          # per lock-name prefix; "" is every name
//   lock = ["billing/"]             # GrantLease, Acquire, Release, Cancel, renewals
//   read = ["billing/"]             # GetLock, ListLocks, Watch, other identities' leases
//   admin = []                      # ForceRelease; on "": revoke others' leases, membership,
//                                   # snapshot, backup, transfer
//
//   [identities.billing]            # the name leases record as their owner
//   certs = ["spiffe://example.org/billing", "billing-svc"]  # URI SAN or subject CN
//   token_sha256 = ["9f86d0..."]    # hex SHA-256 of bearer tokens (the file holds no secret)
//   roles = ["billing-writer"]
//   max_leases = 50                 # overrides [defaults] for this identity (any quota key)
//
// Every key is checked: an unknown key, a role nobody defines, a certificate name or token that
// two identities claim, or a malformed value is an error naming the file, the table and the key;
// a policy with an error is never half-applied (the node keeps the one it had).
//
// Immutable once parsed: shared between threads by shared_ptr<const AccessPolicy>.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace lockd::server {

enum class Permission : uint8_t { kLock, kRead, kAdmin };
/// "lock", "read" or "admin".
const char* PermissionName(Permission p);

struct Quota {
  uint64_t max_leases = 0;  ///< live leases owned; 0: unlimited
  uint64_t max_locks = 0;   ///< names held plus names waited for, over its leases; 0: unlimited
  double rate = 0;          ///< requests per second refilled; 0: unlimited
  double burst = 0;         ///< the bucket's size; set whenever rate is (default max(rate, 1))
  bool operator==(const Quota&) const = default;
};

struct AccessRole {
  std::string name;
  std::vector<std::string> lock, read, admin;  ///< lock-name prefixes; "" is every name
  bool operator==(const AccessRole&) const = default;
};

struct AccessIdentity {
  std::string name;
  std::vector<std::string> certs;         ///< URI SANs or subject CNs naming it
  std::vector<std::string> token_sha256;  ///< lowercase hex, 64 characters each
  std::vector<std::string> roles;
  Quota quota;  ///< with [defaults] filled in for every key the identity does not set
  bool operator==(const AccessIdentity&) const = default;
};

class AccessPolicy {
 public:
  /// Longest identity name (it is stored with every lease it owns).
  static constexpr size_t kMaxIdentityNameBytes = 128;

  /// Parses TOML text; `source` names it in errors (the file's path). INVALID_ARGUMENT with a
  /// message naming `source`, the table and the key (or the TOML syntax error and its line).
  static Result<AccessPolicy> Parse(std::string_view toml, const std::string& source);
  /// Reads and parses the file at `path` (NOT_FOUND / PERMISSION_DENIED-like errors name it).
  static Result<AccessPolicy> Load(const std::string& path);

  /// The identity a client certificate names: the first of `names` (its URI SANs in order, then
  /// its subject CN) that some identity lists in `certs`; nullptr when none does.
  const AccessIdentity* ByCertificateNames(const std::vector<std::string>& names) const;
  /// The identity a bearer token belongs to (its SHA-256 compared in constant time), or nullptr.
  const AccessIdentity* ByToken(std::string_view token) const;
  const AccessIdentity* ByName(std::string_view name) const;
  /// Whether some role of `identity` grants `p` on a prefix of `name`.
  bool Allows(const AccessIdentity& identity, Permission p, std::string_view name) const;
  /// Whether some role of `identity` grants `p` on any name at all.
  bool AllowsAnywhere(const AccessIdentity& identity, Permission p) const;

  const std::map<std::string, AccessIdentity, std::less<>>& identities() const {
    return identities_;
  }
  const std::map<std::string, AccessRole, std::less<>>& roles() const { return roles_; }

 private:
  std::map<std::string, AccessIdentity, std::less<>> identities_;
  std::map<std::string, AccessRole, std::less<>> roles_;
  std::map<std::string, std::string, std::less<>> by_cert_;  ///< cert name -> identity name
};

}  // namespace lockd::server
