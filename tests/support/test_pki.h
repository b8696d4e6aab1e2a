// Throwaway certificates for TLS tests, made in memory with OpenSSL: CAs, and leaves with the SANs
// and validity a test needs (an expired one, one naming another member, one from another CA).
// EC P-256 keys, SHA-256 signatures.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lockd::testing {

struct Pem {
  std::string cert;  ///< PEM certificate
  std::string key;   ///< PEM private key (unencrypted PKCS#8)
};

struct LeafSpec {
  std::string cn = "lockd-test";
  std::vector<std::string> uris;  ///< URI SANs, e.g. "urn:lockd:member:1"
  std::vector<std::string> ips;   ///< IP SANs, e.g. "127.0.0.1"
  std::vector<std::string> dns;   ///< DNS SANs
  int64_t not_before_s = -3600;   ///< validity, relative to now
  int64_t not_after_s = 86400;
  std::string eku = "serverAuth,clientAuth";  ///< extended key usage; empty: none
};

/// A member's certificate: CN node<id>, URI SAN urn:lockd:member:<id> (what names a member,
/// server/tls.h), IP SAN 127.0.0.1.
LeafSpec MemberLeaf(uint64_t id);
/// A self-signed CA.
Pem MakeCa(const std::string& cn);
/// A leaf certificate `ca` signed (for server and client authentication).
Pem Issue(const Pem& ca, const LeafSpec& spec);
/// Writes `data` to `path` (aborts the test binary on failure: a test cannot go on without it).
void WriteFile(const std::string& path, const std::string& data);

}  // namespace lockd::testing
