// TLS for the client library and lockctl (docs/security.md): which files, from the options or
// the environment, and the gRPC channel credentials made from them.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "lockd/status.h"

namespace lockd::client {

struct TlsFiles {
  std::string ca;    ///< the CA that signed the nodes' certificates (--cacert)
  std::string cert;  ///< this client's certificate, when the cluster asks for one (--cert)
  std::string key;   ///< its private key (--key)
  bool any() const { return !ca.empty() || !cert.empty() || !key.empty(); }
};

/// `given` when it names any file, else $LOCKD_CACERT, $LOCKD_CERT and $LOCKD_KEY.
TlsFiles TlsFilesOrEnv(TlsFiles given);

/// The files' contents: nullopt (plaintext) when no file is named; otherwise the CA is
/// required, a certificate needs its key and the other way round, and every file must be
/// readable PEM (the error names it). Reads files only: gRPC is not touched (a command that
/// blocks signals for its own threads must do so before gRPC starts any).
Result<std::optional<grpc::SslCredentialsOptions>> ReadTlsFiles(const TlsFiles& files);

/// Plaintext for nullopt, else TLS with these PEMs. Node certificates are checked against the
/// CA and the address dialed (their DNS or IP SANs).
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFrom(
    const std::optional<grpc::SslCredentialsOptions>& tls);

/// ReadTlsFiles, then ChannelCredentialsFrom.
Result<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(const TlsFiles& files);

}  // namespace lockd::client
