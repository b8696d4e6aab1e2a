#include "support/test_pki.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace lockd::testing {

namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "test_pki: %s failed\n", what);
  std::abort();
}

struct Deleter {
  void operator()(X509* x) const { X509_free(x); }
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, Deleter>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter>;
using BioPtr = std::unique_ptr<BIO, Deleter>;

std::string Drain(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string CertPem(X509* x) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(bio.get(), x)) Die("PEM_write_bio_X509");
  return Drain(bio.get());
}

std::string KeyPem(EVP_PKEY* k) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(bio.get(), k, nullptr, nullptr, 0, nullptr, nullptr)) {
    Die("PEM_write_bio_PrivateKey");
  }
  return Drain(bio.get());
}

X509Ptr ReadCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!x) Die("PEM_read_bio_X509");
  return x;
}

KeyPtr ReadKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  KeyPtr k(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!k) Die("PEM_read_bio_PrivateKey");
  return k;
}

void AddExt(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) Die("X509V3_EXT_conf_nid");
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
}

/// A certificate for `key`, named `cn`, valid [now + nb, now + na], to be signed by the caller.
X509Ptr NewCert(EVP_PKEY* key, const std::string& cn, int64_t nb, int64_t na) {
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), static_cast<long>(nb));
  X509_gmtime_adj(X509_getm_notAfter(x.get()), static_cast<long>(na));
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_pubkey(x.get(), key);
  return x;
}

}  // namespace

Pem MakeCa(const std::string& cn) {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) Die("EVP_EC_gen");
  X509Ptr x = NewCert(key.get(), cn, -3600, 10 * 86400);
  X509_set_issuer_name(x.get(), X509_get_subject_name(x.get()));
  AddExt(x.get(), x.get(), NID_basic_constraints, "critical,CA:TRUE");
  AddExt(x.get(), x.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExt(x.get(), x.get(), NID_subject_key_identifier, "hash");
  if (!X509_sign(x.get(), key.get(), EVP_sha256())) Die("X509_sign");
  return {CertPem(x.get()), KeyPem(key.get())};
}

Pem Issue(const Pem& ca, const LeafSpec& spec) {
  X509Ptr ca_cert = ReadCert(ca.cert);
  KeyPtr ca_key = ReadKey(ca.key);
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) Die("EVP_EC_gen");
  X509Ptr x = NewCert(key.get(), spec.cn, spec.not_before_s, spec.not_after_s);
  X509_set_issuer_name(x.get(), X509_get_subject_name(ca_cert.get()));
  AddExt(x.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExt(x.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature,keyAgreement");
  if (!spec.eku.empty()) AddExt(x.get(), ca_cert.get(), NID_ext_key_usage, spec.eku);
  std::string san;
  for (const auto& u : spec.uris) san += (san.empty() ? "" : ",") + ("URI:" + u);
  for (const auto& ip : spec.ips) san += (san.empty() ? "" : ",") + ("IP:" + ip);
  for (const auto& d : spec.dns) san += (san.empty() ? "" : ",") + ("DNS:" + d);
  if (!san.empty()) AddExt(x.get(), ca_cert.get(), NID_subject_alt_name, san);
  if (!X509_sign(x.get(), ca_key.get(), EVP_sha256())) Die("X509_sign");
  return {CertPem(x.get()), KeyPem(key.get())};
}

void WriteFile(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data.data(), 1, data.size(), f) != data.size() || std::fclose(f) != 0) {
    std::fprintf(stderr, "test_pki: cannot write %s\n", path.c_str());
    std::abort();
  }
}

LeafSpec MemberLeaf(uint64_t id) {
  LeafSpec s;
  s.cn = "node" + std::to_string(id);
  s.uris = {"urn:lockd:member:" + std::to_string(id)};
  s.ips = {"127.0.0.1"};
  return s;
}

}  // namespace lockd::testing
