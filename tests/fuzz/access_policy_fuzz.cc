// Fuzz target: the access policy file (`--access-file`, src/server/access_policy.h): the input is
// the file's text, through toml++ and every check AccessPolicy::Parse makes. Properties: a bad file
// is an INVALID_ARGUMENT naming the file, never a crash or an exception; a policy that parses holds
// only what the checks allow (valid names, roles that exist, certificate names that map back to the
// one identity listing them, token hashes in lowercase hex that no two identities share, quotas
// with a bucket whenever there is a rate),
// its lookups agree with its tables, and parsing the same text again gives the same policy.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "server/access_policy.h"

namespace {

using lockd::server::AccessIdentity;
using lockd::server::AccessPolicy;
using lockd::server::AccessRole;
using lockd::server::Permission;

constexpr char kSource[] = "fuzz/access.toml";
/// SHA-256 of "test".
constexpr char kTestSha[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > AccessPolicy::kMaxIdentityNameBytes) return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("._:@/-").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

const std::vector<std::string>& Prefixes(const AccessRole& r, Permission p) {
  return p == Permission::kLock ? r.lock : p == Permission::kRead ? r.read : r.admin;
}

void CheckRoles(const AccessPolicy& policy) {
  for (const auto& [name, role] : policy.roles()) {
    FUZZ_CHECK(name == role.name && ValidName(name), "a role is filed under its valid name");
    for (Permission p : {Permission::kLock, Permission::kRead, Permission::kAdmin}) {
      for (const std::string& prefix : Prefixes(role, p)) {
        FUZZ_CHECK(prefix.size() <= 512 && prefix.find('\0') == std::string::npos,
                   "a prefix is at most 512 bytes without NUL");
      }
    }
  }
}

void CheckIdentity(const AccessPolicy& policy, const AccessIdentity& id) {
  FUZZ_CHECK(ValidName(id.name), "an identity's name is valid");
  FUZZ_CHECK(policy.ByName(id.name) == &id, "ByName finds the identity");
  FUZZ_CHECK(!id.certs.empty() || !id.token_sha256.empty(), "every identity can authenticate");
  for (const std::string& c : id.certs) {
    FUZZ_CHECK(!c.empty() && c.size() <= 1024, "a certificate name is 1 to 1024 bytes");
    FUZZ_CHECK(policy.ByCertificateNames({c}) == &id, "a certificate name maps to its identity");
    FUZZ_CHECK(policy.ByCertificateNames({"\x01 no such name", c}) == &id,
               "an unmapped name is skipped");
  }
  for (const std::string& h : id.token_sha256) {
    FUZZ_CHECK(h.size() == 64 && h.find_first_not_of("0123456789abcdef") == std::string::npos,
               "a token hash is 64 lowercase hex digits");
  }
  const auto& q = id.quota;
  FUZZ_CHECK(std::isfinite(q.rate) && std::isfinite(q.burst) && q.rate >= 0,
             "quota numbers are finite and non-negative");
  FUZZ_CHECK(q.rate > 0 ? q.burst >= 1 : q.burst == 0, "a rate has a bucket of at least 1");
  for (const std::string& r : id.roles) {
    FUZZ_CHECK(policy.roles().count(r) == 1, "every role an identity names exists");
  }
  for (Permission p : {Permission::kLock, Permission::kRead, Permission::kAdmin}) {
    bool any = false;
    bool everything = false;
    for (const std::string& r : id.roles) {
      for (const std::string& prefix : Prefixes(policy.roles().at(r), p)) {
        any = true;
        everything = everything || prefix.empty();
        FUZZ_CHECK(policy.Allows(id, p, prefix), "a listed prefix is allowed");
        FUZZ_CHECK(policy.Allows(id, p, prefix + "/x"), "a name under a listed prefix is allowed");
      }
    }
    FUZZ_CHECK(policy.AllowsAnywhere(id, p) == any, "AllowsAnywhere: some prefix is listed");
    FUZZ_CHECK(policy.Allows(id, p, "") == everything, "the empty name needs the \"\" prefix");
    // No valid UTF-8 prefix starts with 0xff: only "" covers such a name.
    FUZZ_CHECK(policy.Allows(id, p, "\xff not UTF-8") == everything, "prefixes are valid UTF-8");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;  // a policy is small; bound the work per input
  const std::string_view text = lockd::fuzz::AsView(data, size);
  auto policy = AccessPolicy::Parse(text, kSource);
  if (!policy.ok()) {
    FUZZ_CHECK(policy.status().code() == lockd::StatusCode::kInvalidArgument,
               "a bad policy is INVALID_ARGUMENT");
    FUZZ_CHECK(policy.status().message().rfind(kSource, 0) == 0, "an error names the file first");
    return 0;
  }
  CheckRoles(*policy);
  std::set<std::string> hashes;
  for (const auto& [name, id] : policy->identities()) {
    FUZZ_CHECK(name == id.name, "an identity is filed under its name");
    CheckIdentity(*policy, id);
    for (const std::string& h : id.token_sha256) {
      FUZZ_CHECK(hashes.insert(h).second, "a token hash belongs to one identity, listed once");
    }
  }
  // The seeds list the hash of "test": ByToken finds exactly the identity that lists it.
  const AccessIdentity* by_test = nullptr;
  for (const auto& [name, id] : policy->identities()) {
    if (std::count(id.token_sha256.begin(), id.token_sha256.end(), kTestSha) > 0) by_test = &id;
  }
  FUZZ_CHECK(policy->ByToken("test") == by_test, "ByToken finds the owner of the token's hash");
  FUZZ_CHECK(policy->ByToken("") == nullptr, "the empty token names nobody");
  FUZZ_CHECK(policy->ByCertificateNames({}) == nullptr, "no certificate names, no identity");
  auto again = AccessPolicy::Parse(text, kSource);
  FUZZ_CHECK(again.ok() && again->identities() == policy->identities() &&
                 again->roles() == policy->roles(),
             "Parse is a function of the text");
  return 0;
}
