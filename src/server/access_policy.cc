#include "server/access_policy.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <set>

namespace lockd::server {

namespace {

/// A policy file is a few kilobytes; anything near this is a mistake (a log, a binary).
constexpr size_t kMaxFileBytes = 4u << 20;
constexpr size_t kMaxPrefixBytes = 512;
constexpr size_t kMaxCertNameBytes = 1024;
constexpr size_t kSha256HexChars = 64;
/// SHA-256 of the empty string: a token_sha256 naming it would admit an empty bearer token.
constexpr std::string_view kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

using RoleMap = std::map<std::string, AccessRole, std::less<>>;
using IdentityMap = std::map<std::string, AccessIdentity, std::less<>>;
using CertMap = std::map<std::string, std::string, std::less<>>;

/// A value for an error message: quoted, non-printable bytes escaped, long values cut short (the
/// value may be the very thing that is wrong: a control character, 4 MiB of key).
std::string Quote(std::string_view s) {
  constexpr size_t kShown = 80;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kShown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += s.size() > kShown ? "\"... (" + std::to_string(s.size()) + " bytes)" : "\"";
  return out;
}

/// The shortest text that reads back as `v` ("0.5", not "0.500000").
std::string Number(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

const char* TypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date or time";
  }
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    // Lead byte: how many continuation bytes follow, its payload bits, the smallest code point
    // that needs this length (anything smaller is an overlong encoding).
    size_t n = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
      min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
      min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return false;
    }
    if (n >= s.size() - i) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("._:@/-").find(c) != std::string_view::npos;
}

/// Why `name` cannot name an identity or role ("" when it can).
std::string NameProblem(std::string_view name) {
  if (!name.empty() && name.size() <= AccessPolicy::kMaxIdentityNameBytes &&
      std::all_of(name.begin(), name.end(), NameChar)) {
    return "";
  }
  return Quote(name) + " is not a valid name: 1 to " +
         std::to_string(AccessPolicy::kMaxIdentityNameBytes) +
         " bytes of A-Z a-z 0-9 . _ : @ / - (names appear in logs and metrics)";
}

std::string PrefixProblem(std::string& p) {
  if (p.size() <= kMaxPrefixBytes && p.find('\0') == std::string::npos && ValidUtf8(p)) return "";
  return Quote(p) + " is not a valid lock-name prefix: valid UTF-8, at most " +
         std::to_string(kMaxPrefixBytes) + " bytes, no NUL (\"\" is every name)";
}

std::string CertProblem(std::string& c) {
  // C0 controls, DEL and C1 controls (U+0080..U+009F, UTF-8 C2 80..C2 9F).
  bool control = false;
  for (size_t i = 0; i < c.size(); ++i) {
    const auto b = static_cast<unsigned char>(c[i]);
    const auto next = i + 1 < c.size() ? static_cast<unsigned char>(c[i + 1]) : 0;
    control = control || b < 0x20 || b == 0x7f || (b == 0xc2 && next >= 0x80 && next <= 0x9f);
  }
  if (!c.empty() && c.size() <= kMaxCertNameBytes && !control) return "";
  return Quote(c) + " is not a valid certificate name: a URI SAN or subject CN of 1 to " +
         std::to_string(kMaxCertNameBytes) + " bytes, no control characters";
}

std::string TokenHashProblem(std::string& h) {
  const bool hex =
      h.size() == kSha256HexChars && std::all_of(h.begin(), h.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      });
  if (!hex) {
    return Quote(h) + " is not a token hash: 64 hex digits, the SHA-256 of the token (e.g. " +
           "`printf %s \"$TOKEN\" | sha256sum`)";
  }
  std::transform(h.begin(), h.end(), h.begin(), [](char c) {
    return static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
  });
  if (h == kEmptySha256) return Quote(h) + " is the SHA-256 of the empty token; use a real token";
  return "";
}

/// The quota keys one table sets ([defaults] or an identity's).
struct QuotaKeys {
  std::optional<uint64_t> max_leases, max_locks;
  std::optional<double> rate, burst;
  toml::source_region burst_at;  ///< where burst is set, for its errors
};

bool IsQuotaKey(std::string_view k) {
  return k == "max_leases" || k == "max_locks" || k == "rate" || k == "burst";
}

/// Reads a policy's TOML tree into roles, identities and the certificate index, checking every key.
/// Roles are read before identities (whatever the file's order), so references resolve.
class PolicyReader {
 public:
  explicit PolicyReader(const std::string& source) : source_(source) {}

  Status Read(const toml::table& root) {
    for (auto&& [key, node] : root) {
      const std::string_view k = key.str();
      if (k != "defaults" && k != "roles" && k != "identities") {
        return Error(key.source(), "top level", Quote(k),
                     "unknown table or key; a policy has [defaults], [roles.NAME] and "
                     "[identities.NAME]");
      }
      if (!node.is_table()) {
        return Error(
            node.source(), "top level", std::string(k),
            std::string("expected a table ([") + std::string(k) + "]), got " + TypeName(node));
      }
    }
    if (const toml::table* d = root["defaults"].as_table()) {
      for (auto&& [key, node] : *d) {
        if (!IsQuotaKey(key.str())) {
          return Error(key.source(), "[defaults]", Quote(key.str()),
                       "unknown key; [defaults] holds max_leases, max_locks, rate, burst");
        }
        if (Status s = ReadQuotaKey("[defaults]", key.str(), node, defaults_); !s.ok()) return s;
      }
      if (auto q = Effective(defaults_, QuotaKeys{}, "[defaults]"); !q.ok()) return q.status();
    }
    if (const toml::table* roles = root["roles"].as_table()) {
      for (auto&& [key, node] : *roles) {
        if (Status s = ReadRole(key, node); !s.ok()) return s;
      }
    }
    if (const toml::table* ids = root["identities"].as_table()) {
      for (auto&& [key, node] : *ids) {
        if (Status s = ReadIdentity(key, node); !s.ok()) return s;
      }
    }
    return Status::Ok();
  }

  RoleMap roles;
  IdentityMap identities;
  CertMap by_cert;

 private:
  Status Error(const toml::source_region& at, std::string_view table, std::string_view key,
               std::string_view problem) const {
    std::string where = source_;
    if (at.begin.line > 0) where += ":" + std::to_string(at.begin.line);
    // No key: the problem names the value itself ([identities] "bad name" is not a valid name).
    return InvalidArgument(where + ": " + std::string(table) + " " + std::string(key) +
                           (key.empty() ? "" : ": ") + std::string(problem));
  }

  /// A table of tables ([roles.NAME] or [identities.NAME]) entry: its name and that it is a table.
  Status CheckEntry(std::string_view parent, const toml::key& key, const toml::node& node) const {
    if (std::string p = NameProblem(key.str()); !p.empty()) {
      return Error(key.source(), "[" + std::string(parent) + "]", "", p);
    }
    if (!node.is_table()) {
      return Error(node.source(), "[" + std::string(parent) + "]", std::string(key.str()),
                   "expected a table ([" + std::string(parent) + "." + std::string(key.str()) +
                       "]), got " + TypeName(node));
    }
    return Status::Ok();
  }

  /// An array of strings, each checked (and normalised) by `check`, which returns why a value is
  /// wrong or "". A value listed twice is an error: the second is a typo or a stale copy.
  Result<std::vector<std::string>> ReadStrings(
      const std::string& table, std::string_view key, const toml::node& node,
      const std::function<std::string(std::string&)>& check) const {
    const toml::array* arr = node.as_array();
    if (arr == nullptr) {
      return Error(node.source(), table, key,
                   std::string("expected an array of strings (") + std::string(key) +
                       " = [\"...\"]), got " + TypeName(node));
    }
    std::vector<std::string> out;
    std::set<std::string, std::less<>> seen;
    for (const toml::node& el : *arr) {
      const toml::value<std::string>* s = el.as_string();
      if (s == nullptr) {
        return Error(el.source(), table, key,
                     std::string("expected an array of strings, found ") + TypeName(el));
      }
      std::string v = s->get();
      if (std::string p = check(v); !p.empty()) return Error(el.source(), table, key, p);
      if (!seen.insert(v).second) {
        return Error(el.source(), table, key, Quote(v) + " is listed twice; list it once");
      }
      out.push_back(std::move(v));
    }
    return out;
  }

  Status ReadQuotaKey(const std::string& table, std::string_view key, const toml::node& node,
                      QuotaKeys& q) const {
    if (key == "max_leases" || key == "max_locks") {
      const toml::value<int64_t>* i = node.as_integer();
      if (i == nullptr || i->get() < 0) {
        return Error(node.source(), table, key,
                     std::string("expected a non-negative integer (") + std::string(key) +
                         " = 100; 0 is unlimited), got " +
                         (i ? std::to_string(i->get()) : TypeName(node)));
      }
      (key == "max_leases" ? q.max_leases : q.max_locks) = static_cast<uint64_t>(i->get());
      return Status::Ok();
    }
    std::optional<double> v;
    if (const toml::value<int64_t>* i = node.as_integer()) v = static_cast<double>(i->get());
    if (const toml::value<double>* f = node.as_floating_point()) v = f->get();
    if (!v || !std::isfinite(*v) || *v < 0) {
      return Error(node.source(), table, key,
                   std::string("expected a non-negative number (") + std::string(key) +
                       " = 500 or 0.5" + (key == "rate" ? "; 0 is unlimited" : "") + "), got " +
                       (v ? Number(*v) : TypeName(node)));
    }
    (key == "rate" ? q.rate : q.burst) = *v;
    if (key == "burst") q.burst_at = node.source();
    return Status::Ok();
  }

  /// `own` with `fallback` filled in per key, and the bucket's size settled.
  Result<Quota> Effective(const QuotaKeys& own, const QuotaKeys& fallback,
                          const std::string& table) const {
    Quota q;
    q.max_leases = own.max_leases.value_or(fallback.max_leases.value_or(0));
    q.max_locks = own.max_locks.value_or(fallback.max_locks.value_or(0));
    q.rate = own.rate.value_or(fallback.rate.value_or(0));
    if (q.rate == 0) {
      if (own.burst) {
        return Error(own.burst_at, table, "burst",
                     "burst is set but rate is 0 (unlimited), so it means nothing; set rate "
                     "(requests per second) too, or remove burst");
      }
      return q;  // burst 0: no bucket (a [defaults] burst is for identities that have a rate)
    }
    const std::optional<double> burst = own.burst ? own.burst : fallback.burst;
    q.burst = burst.value_or(std::max(q.rate, 1.0));
    if (q.burst < 1) {
      return Error(own.burst ? own.burst_at : fallback.burst_at, table, "burst",
                   "burst " + Number(q.burst) +
                       " is below 1, so no request could ever pass; a bucket holds at least one "
                       "request (burst >= 1, or remove it for max(rate, 1))");
    }
    return q;
  }

  Status ReadRole(const toml::key& key, const toml::node& node) {
    if (Status s = CheckEntry("roles", key, node); !s.ok()) return s;
    AccessRole role;
    role.name = std::string(key.str());
    const std::string table = "[roles." + role.name + "]";
    for (auto&& [k, v] : *node.as_table()) {
      std::vector<std::string>* list = k == "lock"    ? &role.lock
                                       : k == "read"  ? &role.read
                                       : k == "admin" ? &role.admin
                                                      : nullptr;
      if (list == nullptr) {
        return Error(k.source(), table, Quote(k.str()),
                     "unknown key; a role has lock, read and admin (arrays of lock-name "
                     "prefixes)");
      }
      auto r = ReadStrings(table, k.str(), v, PrefixProblem);
      if (!r.ok()) return r.status();
      *list = std::move(*r);
    }
    roles.emplace(role.name, std::move(role));
    return Status::Ok();
  }

  Status ReadIdentity(const toml::key& key, const toml::node& node) {
    if (Status s = CheckEntry("identities", key, node); !s.ok()) return s;
    AccessIdentity id;
    id.name = std::string(key.str());
    const std::string table = "[identities." + id.name + "]";
    QuotaKeys own;
    const auto role_problem = [this](std::string& r) {
      if (std::string p = NameProblem(r); !p.empty()) return p;
      if (roles.find(r) == roles.end()) {
        return Quote(r) + " names no role; define it as [roles." + r + "]";
      }
      return std::string();
    };
    for (auto&& [k, v] : *node.as_table()) {
      const std::string_view name = k.str();
      if (IsQuotaKey(name)) {
        if (Status s = ReadQuotaKey(table, name, v, own); !s.ok()) return s;
        continue;
      }
      std::vector<std::string>* list = name == "certs"          ? &id.certs
                                       : name == "token_sha256" ? &id.token_sha256
                                       : name == "roles"        ? &id.roles
                                                                : nullptr;
      if (list == nullptr) {
        return Error(k.source(), table, Quote(name),
                     "unknown key; an identity has certs, token_sha256, roles, max_leases, "
                     "max_locks, rate and burst");
      }
      auto r = ReadStrings(table, name, v,
                           name == "certs"          ? std::function(CertProblem)
                           : name == "token_sha256" ? std::function(TokenHashProblem)
                                                    : std::function(role_problem));
      if (!r.ok()) return r.status();
      *list = std::move(*r);
    }
    if (id.certs.empty() && id.token_sha256.empty()) {
      return Error(node.source(), table, "certs, token_sha256",
                   "the identity can never authenticate; list its certificate names in certs "
                   "or its token hashes in token_sha256");
    }
    auto quota = Effective(own, defaults_, table);
    if (!quota.ok()) return quota.status();
    id.quota = *quota;
    for (const std::string& c : id.certs) {
      auto [it, fresh] = by_cert.emplace(c, id.name);
      if (!fresh) {
        return Error(node.source(), table, "certs",
                     Quote(c) + " is claimed by both identities " + it->second + " and " + id.name +
                         "; a certificate name belongs to one identity");
      }
    }
    for (const std::string& h : id.token_sha256) {
      auto [it, fresh] = by_token_.emplace(h, id.name);
      if (!fresh) {
        return Error(node.source(), table, "token_sha256",
                     Quote(h) + " is claimed by both identities " + it->second + " and " + id.name +
                         "; a token belongs to one identity");
      }
    }
    identities.emplace(id.name, std::move(id));
    return Status::Ok();
  }

  const std::string& source_;
  QuotaKeys defaults_;
  /// token_sha256 -> identity name, to find a hash two identities claim.
  std::map<std::string, std::string, std::less<>> by_token_;
};

/// Lowercase hex SHA-256 of `data`; empty if OpenSSL fails.
std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1 || len != 32) {
    return "";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * len, '0');
  for (unsigned i = 0; i < len; ++i) {
    out[2 * i] = kHex[md[i] >> 4];
    out[2 * i + 1] = kHex[md[i] & 15];
  }
  return out;
}

const std::vector<std::string>& Prefixes(const AccessRole& role, Permission p) {
  switch (p) {
    case Permission::kLock:
      return role.lock;
    case Permission::kRead:
      return role.read;
    case Permission::kAdmin:
      break;
  }
  return role.admin;
}

}  // namespace

const char* PermissionName(Permission p) {
  switch (p) {
    case Permission::kLock:
      return "lock";
    case Permission::kRead:
      return "read";
    case Permission::kAdmin:
      return "admin";
  }
  return "unknown";
}

Result<AccessPolicy> AccessPolicy::Parse(std::string_view toml, const std::string& source) {
  // toml++ reports syntax errors by exception; nothing thrown leaves this function.
  try {
    toml::table root;
    try {
      root = toml::parse(toml, std::string_view(source));
    } catch (const toml::parse_error& e) {
      const toml::source_position& at = e.source().begin;
      return InvalidArgument(source + ":" + std::to_string(at.line) + ":" +
                             std::to_string(at.column) +
                             ": TOML syntax error: " + std::string(e.description()));
    }
    PolicyReader reader(source);
    if (Status s = reader.Read(root); !s.ok()) return s;
    AccessPolicy policy;
    policy.roles_ = std::move(reader.roles);
    policy.identities_ = std::move(reader.identities);
    policy.by_cert_ = std::move(reader.by_cert);
    return policy;
  } catch (const std::exception& e) {
    return InvalidArgument(source + ": cannot read the access policy: " + e.what());
  }
}

Result<AccessPolicy> AccessPolicy::Load(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return InvalidArgument("cannot read access policy " + path + ": " + std::strerror(errno));
  }
  std::string text;
  std::string error;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    error = std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    error = "not a regular file";
  } else {
    // Read to the end rather than trusting st_size: the file may change while it is read.
    char buf[65536];
    while (error.empty()) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) error = std::strerror(errno);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > kMaxFileBytes) {
        error = "larger than " + std::to_string(kMaxFileBytes >> 20) +
                " MiB; an access policy is a small text file";
      }
    }
  }
  ::close(fd);
  if (!error.empty()) return InvalidArgument("cannot read access policy " + path + ": " + error);
  return Parse(text, path);
}

const AccessIdentity* AccessPolicy::ByCertificateNames(
    const std::vector<std::string>& names) const {
  for (const std::string& n : names) {
    if (auto it = by_cert_.find(n); it != by_cert_.end()) return ByName(it->second);
  }
  return nullptr;
}

const AccessIdentity* AccessPolicy::ByToken(std::string_view token) const {
  if (token.empty()) return nullptr;
  const std::string hash = Sha256Hex(token);
  if (hash.size() != kSha256HexChars) return nullptr;
  // Every stored hash is compared, in constant time, whichever matches: the time taken says
  // nothing about how close a guess came or which identity it hit.
  const AccessIdentity* found = nullptr;
  for (const auto& [name, id] : identities_) {
    for (const std::string& h : id.token_sha256) {
      if (h.size() == kSha256HexChars && CRYPTO_memcmp(h.data(), hash.data(), hash.size()) == 0) {
        found = &id;
      }
    }
  }
  return found;
}

const AccessIdentity* AccessPolicy::ByName(std::string_view name) const {
  auto it = identities_.find(name);
  return it == identities_.end() ? nullptr : &it->second;
}

bool AccessPolicy::Allows(const AccessIdentity& identity, Permission p,
                          std::string_view name) const {
  for (const std::string& r : identity.roles) {
    auto it = roles_.find(r);
    if (it == roles_.end()) continue;
    for (const std::string& prefix : Prefixes(it->second, p)) {
      if (name.substr(0, prefix.size()) == prefix) return true;
    }
  }
  return false;
}

bool AccessPolicy::AllowsAnywhere(const AccessIdentity& identity, Permission p) const {
  for (const std::string& r : identity.roles) {
    auto it = roles_.find(r);
    if (it != roles_.end() && !Prefixes(it->second, p).empty()) return true;
  }
  return false;
}

}  // namespace lockd::server
