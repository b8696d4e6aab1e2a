#include "client/credentials.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

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

}  // namespace lockd::client
