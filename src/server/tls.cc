#include "server/tls.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "server/options.h"

namespace lockd::server {

namespace {

namespace fs = std::filesystem;
namespace gx = grpc::experimental;

constexpr std::string_view kMemberUriPrefix = "urn:lockd:member:";
/// How often gRPC's watchers re-read the active copy (a reload is served within about this).
constexpr unsigned kRefreshSeconds = 1;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* s) const { X509_STORE_CTX_free(s); }
};
struct StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};
struct NamesFree {
  void operator()(GENERAL_NAMES* n) const { GENERAL_NAMES_free(n); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

std::optional<uint64_t> ParseMemberUri(std::string_view uri) {
  if (uri.substr(0, kMemberUriPrefix.size()) != kMemberUriPrefix) return std::nullopt;
  const std::string_view digits = uri.substr(kMemberUriPrefix.size());
  uint64_t id = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (ec != std::errc() || end != digits.data() + digits.size() || id == 0) return std::nullopt;
  return id;
}

std::string Named(const std::string& flag, const std::string& file) {
  return flag + " " + file;
}

Result<std::string> ReadWhole(const std::string& flag, const std::string& file) {
  if (file.empty())
    return InvalidArgument(flag + " is required with TLS (or run with --plaintext)");
  std::ifstream in(file, std::ios::binary);
  if (!in) return InvalidArgument("cannot read " + Named(flag, file) + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    return InvalidArgument("cannot read " + Named(flag, file) + ": " + std::strerror(errno));
  }
  return ss.str();
}

std::vector<X509Ptr> ParseCertificates(const std::string& pem) {
  std::vector<X509Ptr> out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return out;
  while (X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) out.emplace_back(x);
  BIO_free(bio);
  ERR_clear_error();  // the end of the input reads as an error
  return out;
}

std::string TimeText(const ASN1_TIME* t) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) return "?";
  ASN1_TIME_print(bio, t);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(std::max(0L, n)));
  BIO_free(bio);
  return out;
}

std::string SubjectText(X509* x) {
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof buf);
  return buf;
}

std::vector<std::string> UriSans(X509* x) {
  std::vector<std::string> out;
  std::unique_ptr<GENERAL_NAMES, NamesFree> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
    if (n->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = n->d.uniformResourceIdentifier;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  return out;
}

Status WriteFile(const fs::path& path, const std::string& data, mode_t mode) {
  const std::string p = path.string();
  FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) return Unavailable("cannot write " + p + ": " + std::strerror(errno));
  const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) return Unavailable("cannot write " + p + ": " + std::strerror(errno));
  if (::chmod(p.c_str(), mode) != 0) {
    return Unavailable("cannot chmod " + p + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

/// Whether the peer's own certificate `leaf_pem` verifies against `roots_pem`, with the other
/// certificates the peer sent (`others_pem`) as untrusted intermediates only. The leaf is passed
/// on its own: on the server side gRPC's chain properties (and a verifier's full chain) are
/// OpenSSL's SSL_get_peer_cert_chain, which leaves the peer's certificate out, so treating that
/// chain's first certificate as the leaf would verify whatever a client appended to its own.
bool LeafChainsTo(const std::string& roots_pem, const std::string& leaf_pem,
                  const std::string& others_pem) {
  const std::vector<X509Ptr> roots = ParseCertificates(roots_pem);
  std::vector<X509Ptr> leaf = ParseCertificates(leaf_pem);
  std::vector<X509Ptr> others = ParseCertificates(others_pem);
  if (roots.empty() || leaf.size() != 1) return false;
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) return false;
  for (const X509Ptr& root : roots) X509_STORE_add_cert(store.get(), root.get());
  for (const X509Ptr& x : others) sk_X509_push(untrusted.get(), x.get());
  const bool ok =
      X509_STORE_CTX_init(ctx.get(), store.get(), leaf.front().get(), untrusted.get()) == 1 &&
      X509_verify_cert(ctx.get()) == 1;
  ERR_clear_error();
  return ok;
}

/// Accepts a server certificate naming member `id` (any member when unset); the chain was
/// verified against the cluster CA by then.
class MemberVerifier final : public gx::ExternalCertificateVerifier {
 public:
  explicit MemberVerifier(std::optional<uint64_t> id) : id_(id) {}

  bool Verify(gx::TlsCustomVerificationCheckRequest* request, std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    for (const grpc::string_ref& uri : request->uri_names()) {
      const auto named = ParseMemberUri(std::string_view(uri.data(), uri.size()));
      if (named && (!id_ || *named == *id_)) {
        *sync_status = grpc::Status::OK;
        return true;
      }
    }
    *sync_status =
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                     "the peer's certificate does not name " +
                         (id_ ? "member " + std::to_string(*id_) : std::string("a member")) + " (" +
                         std::string(kMemberUriPrefix) + "<id> URI SAN)");
    spdlog::warn("refused a TLS peer: {}", sync_status->error_message());
    return true;  // decided synchronously
  }
  void Cancel(gx::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::optional<uint64_t> id_;
};

/// The client port with --tls-client-ca: gRPC accepted a chain to the client CA or to the cluster
/// CA (its roots hold both, since members forward clients' calls to the leader with their member
/// certificates). A certificate that chains to the client CA is a client's; one that chains only
/// to the cluster CA must name a member. Anything else the cluster CA signed is no client.
class ClientPortVerifier final : public gx::ExternalCertificateVerifier {
 public:
  using Issuers = std::function<std::string()>;  ///< the client CA's certificates (PEM), now
  explicit ClientPortVerifier(Issuers issuers) : issuers_(std::move(issuers)) {}

  bool Verify(gx::TlsCustomVerificationCheckRequest* request, std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    *sync_status = grpc::Status::OK;
    if (ChainsToClientCa(request)) return true;
    for (const grpc::string_ref& uri : request->uri_names()) {
      if (ParseMemberUri(std::string_view(uri.data(), uri.size()))) return true;
    }
    *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                "the client's certificate is not the client CA's (--tls-client-ca) "
                                "and names no member");
    spdlog::warn("refused a TLS client: {}", sync_status->error_message());
    return true;  // decided synchronously
  }
  void Cancel(gx::TlsCustomVerificationCheckRequest*) override {}

 private:
  bool ChainsToClientCa(gx::TlsCustomVerificationCheckRequest* request) const {
    const grpc::string_ref leaf = request->peer_cert();
    const grpc::string_ref others = request->peer_cert_full_chain();
    return LeafChainsTo(issuers_(), std::string(leaf.data(), leaf.size()),
                        std::string(others.data(), others.size()));
  }

  const Issuers issuers_;
};

std::shared_ptr<gx::FileWatcherCertificateProvider> Watcher(const fs::path& active,
                                                            const std::string& roots) {
  return std::make_shared<gx::FileWatcherCertificateProvider>(
      (active / "key.pem").string(), (active / "cert.pem").string(),
      roots.empty() ? std::string() : (active / roots).string(), kRefreshSeconds);
}

}  // namespace

std::string MemberUri(uint64_t id) {
  return std::string(kMemberUriPrefix) + std::to_string(id);
}

Result<CertificatePems> ReadCertificateFiles(const CertificateCheck& check) {
  CertificatePems pems;
  auto cert = ReadWhole(check.cert_flag, check.cert_file);
  if (!cert.ok()) return cert.status();
  auto key = ReadWhole(check.key_flag, check.key_file);
  if (!key.ok()) return key.status();
  pems.cert = std::move(cert).value();
  pems.key = std::move(key).value();
  for (const auto& [ca_flag, ca_file] : check.cas) {
    auto ca = ReadWhole(ca_flag, ca_file);
    if (!ca.ok()) return ca.status();
    pems.cas.push_back(std::move(ca).value());
  }
  return pems;
}

Result<std::string> CheckCertificateFiles(const CertificateCheck& check) {
  auto pems = ReadCertificateFiles(check);
  if (!pems.ok()) return pems.status();
  return CheckCertificatePems(check, *pems);
}

Result<std::string> CheckCertificatePems(const CertificateCheck& check,
                                         const CertificatePems& pems) {
  const std::string cert_name = Named(check.cert_flag, check.cert_file);
  std::vector<X509Ptr> chain = ParseCertificates(pems.cert);
  if (chain.empty()) return InvalidArgument(cert_name + " holds no PEM certificate");
  X509* leaf = chain.front().get();
  BIO* bio = BIO_new_mem_buf(pems.key.data(), static_cast<int>(pems.key.size()));
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr);
  BIO_free(bio);
  ERR_clear_error();
  if (!key) {
    return InvalidArgument(Named(check.key_flag, check.key_file) +
                           " holds no PEM private key (or an encrypted one: lockd reads the key "
                           "without a passphrase)");
  }
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument(Named(check.key_flag, check.key_file) +
                           " is not the key of the certificate in " + cert_name);
  }
  if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0) {
    return InvalidArgument(cert_name + " is not valid before " +
                           TimeText(X509_get0_notBefore(leaf)));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
    return InvalidArgument(cert_name + " expired on " + TimeText(X509_get0_notAfter(leaf)));
  }
  for (size_t c = 0; c < check.cas.size() && c < pems.cas.size(); ++c) {
    const auto& [ca_flag, ca_file] = check.cas[c];
    std::vector<X509Ptr> roots = ParseCertificates(pems.cas[c]);
    if (roots.empty())
      return InvalidArgument(Named(ca_flag, ca_file) + " holds no PEM certificate");
    std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
    std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
    std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
    if (!store || !ctx || !untrusted) return Unavailable("out of memory checking certificates");
    for (const X509Ptr& r : roots) X509_STORE_add_cert(store.get(), r.get());
    for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i].get());
    // Both purposes: a member serves its ports and dials its peers with the one certificate, and
    // a certificate good for only one would start and then be refused by every peer.
    for (const auto& [purpose, use] : {std::pair{X509_PURPOSE_SSL_SERVER, "a TLS server"},
                                       std::pair{X509_PURPOSE_SSL_CLIENT, "a TLS client"}}) {
      X509_STORE_CTX_cleanup(ctx.get());
      if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1 ||
          X509_STORE_CTX_set_purpose(ctx.get(), purpose) != 1) {
        ERR_clear_error();
        return Unavailable("cannot check " + cert_name + " against " + Named(ca_flag, ca_file));
      }
      if (X509_verify_cert(ctx.get()) != 1) {
        const int err = X509_STORE_CTX_get_error(ctx.get());
        ERR_clear_error();
        if (err == X509_V_ERR_INVALID_PURPOSE) {
          return InvalidArgument(cert_name + " may not be used as " + use +
                                 ": a member's certificate needs both serverAuth and clientAuth "
                                 "(or no extended key usage)");
        }
        return InvalidArgument(cert_name + " is not signed by the CA in " +
                               Named(ca_flag, ca_file) + ": " + X509_verify_cert_error_string(err));
      }
    }
  }
  if (check.member) {
    const std::vector<std::string> uris = UriSans(leaf);
    const std::string want = MemberUri(*check.member);
    if (std::find(uris.begin(), uris.end(), want) == uris.end()) {
      std::string names;
      for (const auto& u : uris) names += (names.empty() ? "" : ", ") + u;
      return InvalidArgument(cert_name + " does not name this member: it needs the URI SAN " +
                             want + " (it has " + (names.empty() ? "no URI SAN" : names) + ")");
    }
  }
  return "subject " + SubjectText(leaf) + ", valid until " + TimeText(X509_get0_notAfter(leaf));
}

std::vector<uint64_t> MembersNamedBy(const grpc::ServerContextBase& ctx) {
  std::vector<uint64_t> out;
  const auto auth = ctx.auth_context();
  if (!auth) return out;
  for (const char* property : {GRPC_PEER_URI_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME}) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
      const auto id = ParseMemberUri(std::string_view(v.data(), v.size()));
      if (id && std::find(out.begin(), out.end(), *id) == out.end()) out.push_back(*id);
    }
  }
  return out;
}

std::shared_ptr<NodeSecurity> NodeSecurity::Plaintext() {
  return std::shared_ptr<NodeSecurity>(new NodeSecurity());
}

Result<std::shared_ptr<NodeSecurity>> NodeSecurity::Load(const NodeOptions& options) {
  std::shared_ptr<NodeSecurity> s(new NodeSecurity());
  if (!UsesTls(options)) return s;  // --plaintext, or no TLS flag at all
  s->plaintext_ = false;
  s->node_id_ = options.node_id;
  s->cert_ = options.tls_cert;
  s->key_ = options.tls_key;
  s->client_ca_ = options.tls_client_ca;
  s->peer_ca_ = options.peer_ca;
  s->dir_ = (fs::path(options.data_dir) / "tls").string();
  std::error_code ec;
  fs::create_directories(s->dir_, ec);
  if (ec) return Unavailable("cannot create " + s->dir_ + ": " + ec.message());
  ::chmod(s->dir_.c_str(), 0700);
  // Generations left by an earlier run: continue after the highest.
  for (const auto& e : fs::directory_iterator(s->dir_, ec)) {
    const std::string name = e.path().filename().string();
    uint64_t g = 0;
    if (name.rfind("gen-", 0) == 0 &&
        std::from_chars(name.data() + 4, name.data() + name.size(), g).ec == std::errc()) {
      s->generation_ = std::max(s->generation_, g);
    }
  }
  if (Status st = s->Activate("start"); !st.ok()) return st;
  // One watcher per set of files (each re-reads them every second on a thread of its own),
  // shared by every server and channel that uses them.
  const fs::path active = fs::path(s->dir_) / "active";
  s->peer_files_ = Watcher(active, "peer-ca.pem");
  s->client_port_files_ = Watcher(active, s->client_ca_.empty() ? "" : "client-roots.pem");
  return s;
}

Status NodeSecurity::Activate(const std::string& why) {
  CertificateCheck check;
  check.cert_file = cert_;
  check.key_file = key_;
  check.cas = {{"--peer-ca", peer_ca_}};
  check.member = node_id_;
  // Read once: the bytes installed are the bytes checked, whatever is written to the files
  // meanwhile.
  auto pems = ReadCertificateFiles(check);
  if (!pems.ok()) return pems.status();
  auto described = CheckCertificatePems(check, *pems);
  if (!described.ok()) return described.status();
  const std::string& cert = pems->cert;
  const std::string& key = pems->key;
  const std::string& peer_ca = pems->cas.front();
  std::string client_roots, client_issuers;
  if (!client_ca_.empty()) {
    auto client_ca = ReadWhole("--tls-client-ca", client_ca_);
    if (!client_ca.ok()) return client_ca.status();
    if (ParseCertificates(*client_ca).empty()) {
      return InvalidArgument("--tls-client-ca " + client_ca_ + " holds no PEM certificate");
    }
    client_issuers = std::move(client_ca).value();
    // Members forward clients' calls to the leader's client port with their own certificates.
    client_roots = client_issuers + "\n" + peer_ca;
  }
  const fs::path gen = fs::path(dir_) / ("gen-" + std::to_string(generation_ + 1));
  std::error_code ec;
  fs::remove_all(gen, ec);
  fs::create_directories(gen, ec);
  if (ec) return Unavailable("cannot create " + gen.string() + ": " + ec.message());
  for (Status s :
       {WriteFile(gen / "cert.pem", cert, 0600), WriteFile(gen / "key.pem", key, 0600),
        WriteFile(gen / "peer-ca.pem", peer_ca, 0600),
        WriteFile(gen / "client-roots.pem", client_roots.empty() ? peer_ca : client_roots, 0600)}) {
    if (!s.ok()) return s;
  }
  // Swap the active link in one rename: a watcher reads the old copy or the new one.
  const fs::path link = fs::path(dir_) / "active", tmp = fs::path(dir_) / "active.tmp";
  fs::remove(tmp, ec);
  fs::create_directory_symlink(gen.filename(), tmp, ec);
  if (!ec) fs::rename(tmp, link, ec);
  if (ec) return Unavailable("cannot switch " + link.string() + ": " + ec.message());
  ++generation_;
  {
    std::lock_guard lock(client_issuers_->mu);
    client_issuers_->pem = std::move(client_issuers);
  }
  {
    std::lock_guard lock(cluster_issuers_->mu);
    cluster_issuers_->pem = peer_ca;
  }
  // Keep the previous copy (a watcher may be reading it right now); drop older ones.
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    uint64_t g = 0;
    if (name.rfind("gen-", 0) == 0 &&
        std::from_chars(name.data() + 4, name.data() + name.size(), g).ec == std::errc() &&
        g + 1 < generation_) {
      fs::remove_all(e.path(), ec);
    }
  }
  spdlog::info("node {}: TLS certificate {} ({}): {}; client certificates {}", node_id_, cert_, why,
               *described,
               client_ca_.empty() ? "not asked for" : "required (CA " + client_ca_ + ")");
  return Status::Ok();
}

Status NodeSecurity::Reload() {
  if (plaintext_) return FailedPrecondition("this node runs with --plaintext: nothing to reload");
  std::lock_guard lock(mu_);
  return Activate("reloaded");
}

std::shared_ptr<grpc::ServerCredentials> NodeSecurity::ClientPortCredentials() const {
  if (plaintext_) return grpc::InsecureServerCredentials();
  gx::TlsServerCredentialsOptions o(client_port_files_);
  o.watch_identity_key_cert_pairs();
  if (client_ca_.empty()) {
    o.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    o.watch_root_certs();
    o.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    o.set_certificate_verifier(
        gx::ExternalCertificateVerifier::Create<ClientPortVerifier>([issuers = client_issuers_] {
          std::lock_guard lock(issuers->mu);
          return issuers->pem;
        }));
  }
  return grpc::experimental::TlsServerCredentials(o);
}

std::shared_ptr<grpc::ServerCredentials> NodeSecurity::PeerPortCredentials() const {
  if (plaintext_) return grpc::InsecureServerCredentials();
  gx::TlsServerCredentialsOptions o(peer_files_);
  o.watch_identity_key_cert_pairs();
  o.watch_root_certs();
  o.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(o);
}

namespace {
std::shared_ptr<grpc::ChannelCredentials> MemberChannel(
    const std::shared_ptr<gx::CertificateProviderInterface>& files, std::optional<uint64_t> id) {
  gx::TlsChannelCredentialsOptions o;
  o.set_certificate_provider(files);
  o.watch_root_certs();
  o.watch_identity_key_cert_pairs();
  o.set_verify_server_certs(true);
  // Members are named by their certificates, not by host names: the verifier checks the name.
  o.set_check_call_host(false);
  o.set_certificate_verifier(gx::ExternalCertificateVerifier::Create<MemberVerifier>(id));
  return grpc::experimental::TlsCredentials(o);
}
}  // namespace

std::shared_ptr<grpc::ChannelCredentials> NodeSecurity::ToPeer(uint64_t id) const {
  if (plaintext_) return grpc::InsecureChannelCredentials();
  return MemberChannel(peer_files_, id);
}

std::shared_ptr<grpc::ChannelCredentials> NodeSecurity::ToMemberClientPort() const {
  if (plaintext_) return grpc::InsecureChannelCredentials();
  return MemberChannel(peer_files_, std::nullopt);
}

std::string NodeSecurity::CheckPeerClaim(const grpc::ServerContext& ctx, uint64_t id) const {
  if (plaintext_) return {};
  const std::vector<uint64_t> named = MembersNamedBy(ctx);
  if (std::find(named.begin(), named.end(), id) != named.end()) return {};
  std::string list;
  for (uint64_t n : named) list += (list.empty() ? "" : ", ") + std::to_string(n);
  return "it claims to be node " + std::to_string(id) + " but its certificate names " +
         (list.empty() ? std::string("no member") : "member " + list);
}

bool NodeSecurity::PresentsMemberCertificate(const grpc::ServerContextBase& ctx) const {
  if (plaintext_ || MembersNamedBy(ctx).empty()) return false;
  const auto auth = ctx.auth_context();
  const auto first = [&](const char* property) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
      return std::string(v.data(), v.size());
    }
    return std::string();
  };
  std::string roots;
  {
    std::lock_guard lock(cluster_issuers_->mu);
    roots = cluster_issuers_->pem;
  }
  // The leaf (whose URI SANs MembersNamedBy read) is what must chain to the cluster CA.
  return LeafChainsTo(roots, first(GRPC_X509_PEM_CERT_PROPERTY_NAME),
                      first(GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME));
}

}  // namespace lockd::server
