#include "server/access_control.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "server/forwarder.h"
#include "server/tls.h"

namespace lockd::server {

namespace {

std::string_view View(const grpc::string_ref& r) {
  return std::string_view(r.data(), r.size());
}

/// The first value of metadata `key`, if any.
std::optional<std::string_view> Header(const grpc::ServerContextBase& ctx, const char* key) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return std::nullopt;
  return View(it->second);
}

Status Unauthenticated(std::string m) {
  return Status(StatusCode::kUnauthenticated, std::move(m));
}

void Bump(Counter* c) {
  if (c) c->Increment();
}

}  // namespace

Result<std::unique_ptr<AccessControl>> AccessControl::Load(
    std::string path, std::shared_ptr<const NodeSecurity> security,
    std::function<bool(uint64_t)> is_member, AccessMetrics metrics) {
  auto policy = AccessPolicy::Load(path);
  if (!policy.ok()) return policy.status();
  std::unique_ptr<AccessControl> ac(
      new AccessControl(std::move(path), std::move(security), std::move(is_member), metrics));
  ac->policy_ = std::make_shared<const AccessPolicy>(std::move(policy).value());
  if (!ac->security_ || ac->security_->plaintext()) {
    spdlog::warn(
        "access control with --plaintext: bearer tokens travel in the clear and forwarded calls "
        "are authenticated again at the leader from the caller's own token (development only)");
  }
  spdlog::info("access policy {}: {} identities, {} roles", ac->path_,
               ac->policy_->identities().size(), ac->policy_->roles().size());
  return ac;
}

Status AccessControl::Reload() {
  auto policy = AccessPolicy::Load(path_);
  if (!policy.ok()) return policy.status();
  auto next = std::make_shared<const AccessPolicy>(std::move(policy).value());
  std::lock_guard lock(mu_);
  policy_ = std::move(next);
  // The bucket of an identity that is gone goes with it (one that stays keeps its level, and
  // refills at the new rate from now on).
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    it = policy_->ByName(it->first) ? std::next(it) : buckets_.erase(it);
  }
  spdlog::info("access policy {} reloaded: {} identities, {} roles", path_,
               policy_->identities().size(), policy_->roles().size());
  return Status::Ok();
}

std::shared_ptr<const AccessPolicy> AccessControl::policy() const {
  std::lock_guard lock(mu_);
  return policy_;
}

bool AccessControl::FromMember(const grpc::ServerContextBase& ctx) const {
  if (!security_ || security_->plaintext() ||
      ctx.client_metadata().count(kForwardedByHeader) == 0) {
    return false;
  }
  // A current member: a removed member's certificate still names it until it expires.
  const std::vector<uint64_t> named = MembersNamedBy(ctx);
  if (std::none_of(named.begin(), named.end(), [&](uint64_t id) { return is_member_(id); })) {
    return false;
  }
  return security_->PresentsMemberCertificate(ctx);
}

Result<AccessControl::Who> AccessControl::Identify(const grpc::ServerContextBase& ctx) const {
  Who who;
  who.policy = policy();
  const AccessPolicy& policy = *who.policy;
  if (FromMember(ctx)) {
    // A member vouches for the caller it authenticated; it presents its own certificate, so
    // the caller's credentials are the member's word.
    const auto named = Header(ctx, kForwardedIdentityHeader);
    if (!named) {
      return Unauthenticated(
          "a member forwarded a call without the caller's identity (is it running a build "
          "without access control, or without --access-file?)");
    }
    who.identity = policy.ByName(*named);
    if (!who.identity) {
      return Unauthenticated("a member forwarded a call of identity '" + std::string(*named) +
                             "', which this node's access policy does not define (is the "
                             "same --access-file loaded on every member?)");
    }
    who.vouched = true;
    return who;
  }
  std::vector<std::string> names;
  if (const auto auth = ctx.auth_context(); auth && auth->IsPeerAuthenticated()) {
    for (const auto& v : auth->FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME)) {
      names.emplace_back(View(v));
    }
    for (const auto& v : auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) {
      // A CN spelled like a URI would pass for an identity listed by its URI SAN, in a CA that
      // vouches for URIs but copies CNs from requests.
      if (View(v).find(':') == std::string_view::npos) names.emplace_back(View(v));
    }
  }
  if (!names.empty()) {
    if ((who.identity = policy.ByCertificateNames(names))) return who;
  }
  if (const auto header = Header(ctx, kAuthorizationHeader)) {
    constexpr std::string_view kBearer = "Bearer ";
    if (header->size() <= kBearer.size() || header->substr(0, kBearer.size()) != kBearer) {
      return Unauthenticated("the authorization header is not 'Bearer <token>'");
    }
    if ((who.identity = policy.ByToken(header->substr(kBearer.size())))) return who;
    return Unauthenticated("the bearer token is not one of the access policy's");
  }
  if (!names.empty()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "'" : ", '") + n + "'";
    return Unauthenticated("the client certificate names " + list +
                           ", which no identity of the access policy lists");
  }
  return Unauthenticated(
      "this cluster requires an identity: a client certificate the access policy lists, or a "
      "bearer token (lockctl --auth-token, ClientOptions::auth_token)");
}

Result<AccessControl::Who> AccessControl::Authenticate(const grpc::ServerContextBase& ctx) const {
  auto who = Identify(ctx);
  if (!who.ok()) {
    Bump(metrics_.unauthenticated);
    spdlog::debug("refused a call from {}: {}", ctx.peer(), who.status().message());
  }
  return who;
}

Status AccessControl::Require(const Who& who, Permission p, std::string_view name,
                              std::string_view what, bool anywhere) const {
  const bool ok = anywhere ? who.policy->AllowsAnywhere(*who.identity, p)
                           : who.policy->Allows(*who.identity, p, name);
  if (ok) return Status::Ok();
  Bump(metrics_.denied[static_cast<size_t>(p)]);
  const std::string on = anywhere       ? std::string("any name")
                         : name.empty() ? std::string("every name (the prefix \"\")")
                                        : "'" + std::string(name) + "'";
  std::string message = "identity '" + who.identity->name + "' lacks " + PermissionName(p) +
                        " on " + on + ", which " + std::string(what) + " needs";
  spdlog::debug("denied: {}", message);
  return Status(StatusCode::kPermissionDenied, std::move(message));
}

Status AccessControl::Admit(const Who& who, Metering metering) {
  const Quota& q = who.identity->quota;
  if (q.rate <= 0 || who.vouched || metering == Metering::kUnmetered) return Status::Ok();
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(who.identity->name);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = q.burst;
  } else {
    const double elapsed = std::chrono::duration<double>(now - b.at).count();
    b.tokens = std::min(q.burst, b.tokens + elapsed * q.rate);
  }
  b.at = now;
  if (b.tokens >= (metering == Metering::kFrees ? 1 - q.burst : 1)) {
    b.tokens -= 1;
    return Status::Ok();
  }
  Bump(metrics_.rate_limited);
  char rate[32];
  std::snprintf(rate, sizeof rate, "%g", q.rate);
  return ResourceExhausted("identity '" + who.identity->name + "' is over its quota rate (" + rate +
                           " requests per second, counted on each node it calls); retry later");
}

Result<AccessControl::Who> AccessControl::Check(const grpc::ServerContextBase& ctx, Permission p,
                                                std::string_view name, std::string_view what,
                                                bool anywhere, Metering metering) {
  auto who = Authenticate(ctx);
  if (!who.ok()) return who;
  // Permission first: a refused call reaches no log and costs nothing of the rate (a denied
  // call charged to the rate could starve the identity's own Releases).
  if (Status s = Require(*who, p, name, what, anywhere); !s.ok()) return s;
  if (Status s = Admit(*who, metering); !s.ok()) return s;
  return who;
}

lock::Caller AccessControl::CallerOf(const Who& who) {
  lock::Caller c;
  if (!who.identity) return c;
  c.principal = who.identity->name;
  c.max_leases = who.identity->quota.max_leases;
  c.max_locks = who.identity->quota.max_locks;
  c.admin = who.policy->Allows(*who.identity, Permission::kAdmin, "");
  return c;
}

std::vector<std::pair<std::string, std::string>> AccessControl::ForwardMetadata(
    const grpc::ServerContextBase& ctx) const {
  std::vector<std::pair<std::string, std::string>> md;
  if (const auto token = Header(ctx, kAuthorizationHeader)) {
    md.emplace_back(kAuthorizationHeader, std::string(*token));
  }
  if (auto who = Identify(ctx); who.ok()) {
    md.emplace_back(kForwardedIdentityHeader, who->identity->name);
  }
  return md;
}

void AccessControl::CountOutcome(const Status& s) const {
  if (s.code() == StatusCode::kPermissionDenied) {
    Bump(metrics_.denied[static_cast<size_t>(Permission::kLock)]);
  } else if (s.code() == StatusCode::kResourceExhausted) {
    if (s.message().find("its quota max_leases") != std::string::npos) {
      Bump(metrics_.quota_leases);
    } else if (s.message().find("its quota max_locks") != std::string::npos) {
      Bump(metrics_.quota_locks);
    }
  }
}

}  // namespace lockd::server
