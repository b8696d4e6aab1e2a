// TLS for a node's two ports and for the calls it makes (docs/security.md).
//
// One certificate and key per node (--tls-cert, --tls-key) serve the client port and, signed by
// the cluster CA (--peer-ca), the peer port in both directions: mutual TLS, every member presents
// its certificate to every other. A member's certificate names it with the URI SAN
// "urn:lockd:member:<id>" (MemberUri): a peer is accepted only with a certificate the cluster CA
// signed that names the member its Hello claims, and a node dialing member X accepts only a
// certificate naming X. The client port asks for client certificates only with
// --tls-client-ca, and then accepts those its CA signed (and members', for forwarded calls).
//
// Rotation. The files the flags name are read and checked (a readable PEM certificate and key
// that match, valid now, signed by the CA, naming this member), then copied into
// `<data dir>/tls/<generation>/`; `<data dir>/tls/active` (a symlink, swapped atomically) points at
// the copy, which gRPC's certificate watchers re-read every second. Reload (SIGHUP) checks the
// files again and swaps a new copy in only if they pass: an operator may replace the files in any
// order and at leisure, nothing reaches a handshake until SIGHUP, and a failed reload leaves the
// old certificate serving, with the reason in the log.
//
// Plaintext (--plaintext) is the development mode: no certificates, every id accepted as claimed.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace lockd::server {

struct NodeOptions;

/// "urn:lockd:member:<id>", the URI SAN of member `id`'s certificate.
std::string MemberUri(uint64_t id);

/// What one certificate check needs: the files (named by their flags in errors) and what the
/// certificate must be.
struct CertificateCheck {
  std::string cert_flag = "--tls-cert", cert_file;
  std::string key_flag = "--tls-key", key_file;
  /// CA files the certificate must chain to (each with its flag), all of them.
  std::vector<std::pair<std::string, std::string>> cas;
  std::optional<uint64_t> member;  ///< it must name this member (MemberUri)
};

/// What the files held.
struct CertificatePems {
  std::string cert, key;
  std::vector<std::string> cas;  ///< in the order of CertificateCheck::cas
};
/// Reads the files (the error names the flag and the file).
Result<CertificatePems> ReadCertificateFiles(const CertificateCheck& check);
/// CheckCertificateFiles on contents already read.
Result<std::string> CheckCertificatePems(const CertificateCheck& check,
                                         const CertificatePems& pems);

/// Checks the files as a start or a reload must: readable, a PEM certificate (chain) and a PEM
/// private key that match, valid now, signed by every CA given (each readable, PEM), naming the
/// member. The error names the flag, the file and what is wrong. OK: a one-line description of
/// the certificate (subject, expiry) for the log.
Result<std::string> CheckCertificateFiles(const CertificateCheck& check);

/// The member ids a certificate names (its "urn:lockd:member:" URI SANs), from the peer of a
/// call served on a TLS port; empty for a plaintext call or a certificate naming none.
std::vector<uint64_t> MembersNamedBy(const grpc::ServerContextBase& ctx);

class NodeSecurity {
 public:
  /// Plaintext on both ports (development).
  static std::shared_ptr<NodeSecurity> Plaintext();
  /// TLS from the node's options: checks the files, writes the active copy under
  /// `<data_dir>/tls`. The error names the flag and the problem.
  static Result<std::shared_ptr<NodeSecurity>> Load(const NodeOptions& options);

  bool plaintext() const { return plaintext_; }
  /// Checks the files again and, if they pass, makes them the ones served and presented (within
  /// a second). Otherwise the old ones stay; the error says why.
  Status Reload();

  /// TLS with the member's certificate. With --tls-client-ca a client must present a certificate
  /// that chains to the client CA, or one of the cluster CA that names a member (a member
  /// forwarding a call to the leader): any other certificate the cluster CA signed is refused.
  std::shared_ptr<grpc::ServerCredentials> ClientPortCredentials() const;
  /// Mutual TLS: a caller must present a certificate the cluster CA signed.
  std::shared_ptr<grpc::ServerCredentials> PeerPortCredentials() const;
  /// To dial member `id`'s peer port: its certificate must name it.
  std::shared_ptr<grpc::ChannelCredentials> ToPeer(uint64_t id) const;
  /// To dial a member's client port (forwarding to the leader, asking to join): any member's
  /// certificate (the cluster CA's) is accepted.
  std::shared_ptr<grpc::ChannelCredentials> ToMemberClientPort() const;
  /// Whether the peer of an inbound peer call may claim to be member `id`: always in plaintext;
  /// with TLS only if its certificate names `id`. Otherwise the reason, for the refusal.
  std::string CheckPeerClaim(const grpc::ServerContext& ctx, uint64_t id) const;
  /// Whether the client of a call on the client port presented a member's certificate: one that
  /// names a member and chains to the cluster CA (a certificate of the client CA naming a member
  /// is not one). Always false in plaintext.
  bool PresentsMemberCertificate(const grpc::ServerContextBase& ctx) const;

 private:
  NodeSecurity() = default;
  Status Activate(const std::string& why);

  bool plaintext_ = true;
  uint64_t node_id_ = 0;
  std::string cert_, key_, client_ca_, peer_ca_;  ///< the files the flags name
  std::string dir_;                               ///< <data dir>/tls
  /// gRPC's watchers of the active copy: key, certificate and the cluster CA; and the same with
  /// the client port's roots.
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> peer_files_, client_port_files_;
  /// With --tls-client-ca: the client CA's certificates of the active copy (PEM), which the client
  /// port's verifier tells clients by (a certificate that chains only to the cluster CA must name
  /// a member). Shared with the verifier; replaced at each reload.
  struct ClientIssuers {
    std::mutex mu;
    std::string pem;
  };
  std::shared_ptr<ClientIssuers> client_issuers_ = std::make_shared<ClientIssuers>();
  /// The cluster CA's certificates of the active copy (PEM), for PresentsMemberCertificate.
  std::shared_ptr<ClientIssuers> cluster_issuers_ = std::make_shared<ClientIssuers>();
  std::mutex mu_;  ///< one reload at a time
  uint64_t generation_ = 0;
};

}  // namespace lockd::server
