// How the client library and lockctl dial a node (docs/security.md): TLS (which files, from the
// options or the environment, and the gRPC channel credentials made from them) and the bearer
// token every call carries when the cluster checks identities (`lockd --access-file`). Dial is
// the one place a channel is made: a call on any channel it makes, of any kind (unary or
// streaming, blocking or callback), carries the token, so no call site can forget it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

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

/// Where the bearer token comes from: the token itself, or a file holding it (one of the two).
struct BearerTokenSource {
  std::string token;  ///< --auth-token, ClientOptions::auth_token
  std::string file;   ///< --auth-token-file, ClientOptions::auth_token_file
  bool any() const { return !token.empty() || !file.empty(); }
};

/// `given` when it names a token or a file, else $LOCKD_AUTH_TOKEN and $LOCKD_AUTH_TOKEN_FILE.
/// ($LOCKD_TOKEN is not it: `lockctl run` gives its command the grant's token under that name.)
BearerTokenSource BearerTokenSourceOrEnv(BearerTokenSource given);

/// Longest token accepted: well inside the 8 KiB gRPC allows a call's whole metadata by default.
inline constexpr size_t kMaxBearerTokenBytes = 4096;

/// The token to send: "" (no header) when neither is given. A file's contents count without
/// their trailing whitespace (the newline an editor adds); an unreadable or empty file is an
/// error naming its path, and so is a token and a file given together. The token must be fit
/// for an HTTP header value (CheckBearerToken). No message ever contains the token.
Result<std::string> ReadBearerToken(const BearerTokenSource& source);

/// OK when `token` can ride in `authorization: Bearer <token>`: 1 to kMaxBearerTokenBytes
/// printable ASCII characters, no space (so no control character, no line break, nothing
/// non-ASCII). `from` names where it came from, for the error.
Status CheckBearerToken(std::string_view token, const std::string& from);

/// A channel to `endpoint` with `credentials` and `args`; every call made on it carries
/// `authorization: Bearer <bearer_token>` unless the token is empty. The header is added to the
/// call's metadata (a client interceptor), not as gRPC call credentials, because gRPC sends
/// call credentials only over TLS and a development cluster may be plaintext.
std::shared_ptr<grpc::Channel> Dial(const std::string& endpoint,
                                    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                    const std::string& bearer_token,
                                    const grpc::ChannelArguments& args = {});

}  // namespace lockd::client
