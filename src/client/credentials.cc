#include "client/credentials.h"

#include <fcntl.h>
#include <grpcpp/support/client_interceptor.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <vector>

namespace lockd::client {

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

Result<std::string> ReadPem(const char* what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(StatusCode::kInvalidArgument,
                  std::string("cannot read ") + what + " " + path + ": " + std::strerror(errno));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string pem = ss.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return Status(StatusCode::kInvalidArgument,
                  std::string(what) + " " + path + " holds nothing in PEM form");
  }
  return pem;
}

/// Where a token given directly may have come from, for errors (the token itself is never shown).
constexpr const char* kTokenNames = "--auth-token, $LOCKD_AUTH_TOKEN, ClientOptions::auth_token";

/// Adds the header to each call's initial metadata, before it is sent.
class BearerTokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(std::shared_ptr<const std::string> header)
      : header_(std::move(header)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::shared_ptr<const std::string> header_;  ///< "Bearer <token>"
};

/// Owned by the channel; makes one interceptor per call (gRPC deletes it when the call ends).
class BearerTokenInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(const std::string& token)
      : header_(std::make_shared<const std::string>("Bearer " + token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerTokenInterceptor(header_);
  }

 private:
  const std::shared_ptr<const std::string> header_;
};

/// The file's bytes, at most `limit` + 1 of them (more means too long, whatever they are).
Result<std::string> ReadTokenFile(const std::string& path, size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status(StatusCode::kInvalidArgument,
                  "cannot read the bearer token file " + path + ": " + std::strerror(errno));
  }
  std::string data;
  char buf[4096];
  while (data.size() <= limit) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;  // EISDIR for a directory
      ::close(fd);
      return Status(StatusCode::kInvalidArgument,
                    "cannot read the bearer token file " + path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

}  // namespace

TlsFiles TlsFilesOrEnv(TlsFiles given) {
  if (given.any()) return given;
  return {Env("LOCKD_CACERT"), Env("LOCKD_CERT"), Env("LOCKD_KEY")};
}

Result<std::optional<grpc::SslCredentialsOptions>> ReadTlsFiles(const TlsFiles& files) {
  if (!files.any()) return std::optional<grpc::SslCredentialsOptions>();
  if (files.ca.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  "TLS needs the CA that signed the nodes' certificates (--cacert, "
                  "$LOCKD_CACERT, ClientOptions::tls_ca_file)");
  }
  if (files.cert.empty() != files.key.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  "a client certificate needs its key and the other way round (--cert with "
                  "--key)");
  }
  grpc::SslCredentialsOptions o;
  auto ca = ReadPem("the CA file", files.ca);
  if (!ca.ok()) return ca.status();
  o.pem_root_certs = *ca;
  if (!files.cert.empty()) {
    auto cert = ReadPem("the certificate", files.cert);
    if (!cert.ok()) return cert.status();
    auto key = ReadPem("the key", files.key);
    if (!key.ok()) return key.status();
    o.pem_cert_chain = *cert;
    o.pem_private_key = *key;
  }
  return std::optional<grpc::SslCredentialsOptions>(std::move(o));
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFrom(
    const std::optional<grpc::SslCredentialsOptions>& tls) {
  return tls ? grpc::SslCredentials(*tls) : grpc::InsecureChannelCredentials();
}

Result<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(const TlsFiles& files) {
  auto tls = ReadTlsFiles(files);
  if (!tls.ok()) return tls.status();
  return ChannelCredentialsFrom(*tls);
}

BearerTokenSource BearerTokenSourceOrEnv(BearerTokenSource given) {
  if (given.any()) return given;
  return {Env("LOCKD_AUTH_TOKEN"), Env("LOCKD_AUTH_TOKEN_FILE")};
}

Status CheckBearerToken(std::string_view token, const std::string& from) {
  if (token.empty()) {
    return Status(StatusCode::kInvalidArgument, "the bearer token (" + from + ") is empty");
  }
  if (token.size() > kMaxBearerTokenBytes) {
    return Status(StatusCode::kInvalidArgument,
                  "the bearer token (" + from + ") is " + std::to_string(token.size()) +
                      " bytes; at most " + std::to_string(kMaxBearerTokenBytes) +
                      " fit in a call's metadata");
  }
  if (token.starts_with("Bearer ") || token.starts_with("bearer ")) {
    return Status(StatusCode::kInvalidArgument,
                  "the bearer token (" + from +
                      ") starts with 'Bearer ': give the token alone, the library adds the "
                      "scheme");
  }
  for (size_t i = 0; i < token.size(); ++i) {
    const auto c = static_cast<unsigned char>(token[i]);
    if (c >= 0x21 && c <= 0x7e) continue;
    // The offending byte's value and position, never the token: it is a secret.
    char what[96];
    std::snprintf(what, sizeof what, "byte 0x%02x at offset %zu", c, i);
    return Status(StatusCode::kInvalidArgument,
                  "the bearer token (" + from + ") has a character an HTTP header cannot carry (" +
                      what + "); a token is printable ASCII without spaces");
  }
  return Status::Ok();
}

Result<std::string> ReadBearerToken(const BearerTokenSource& source) {
  if (!source.token.empty() && !source.file.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  "give the bearer token or the file holding it, not both (--auth-token or "
                  "--auth-token-file; $LOCKD_AUTH_TOKEN or $LOCKD_AUTH_TOKEN_FILE; "
                  "ClientOptions::auth_token or auth_token_file)");
  }
  if (!source.token.empty()) {
    if (Status s = CheckBearerToken(source.token, kTokenNames); !s.ok()) return s;
    return source.token;
  }
  if (source.file.empty()) return std::string();
  // Room for trailing whitespace past the longest token; a larger file is no token at all.
  constexpr size_t kMaxFileBytes = 2 * kMaxBearerTokenBytes;
  auto data = ReadTokenFile(source.file, kMaxFileBytes);
  if (!data.ok()) return data.status();
  if (data->size() > kMaxFileBytes) {
    return Status(StatusCode::kInvalidArgument,
                  "the bearer token file " + source.file + " holds more than " +
                      std::to_string(kMaxFileBytes) + " bytes: not a token");
  }
  std::string token = std::move(data).value();
  constexpr std::string_view kTrailing = " \t\r\n\f\v";
  while (!token.empty() && kTrailing.find(token.back()) != std::string_view::npos) {
    token.pop_back();
  }
  if (token.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  "the bearer token file " + source.file + " is empty");
  }
  if (Status s = CheckBearerToken(token, "in " + source.file); !s.ok()) return s;
  return token;
}

std::shared_ptr<grpc::Channel> Dial(const std::string& endpoint,
                                    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                    const std::string& bearer_token,
                                    const grpc::ChannelArguments& args) {
  if (bearer_token.empty()) return grpc::CreateCustomChannel(endpoint, credentials, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<BearerTokenInterceptorFactory>(bearer_token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(endpoint, credentials, args,
                                                                 std::move(interceptors));
}

}  // namespace lockd::client
