// lockctl's commands. Each talks to the first endpoint that answers (any node serves any call and
// forwards to the leader), prints to `out`, reports errors on `err`, and returns the exit code of
// cli/exit_codes.h (the one table every command uses).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "client/credentials.h"

namespace lockd::cli {

struct CommandContext {
  std::vector<std::string> endpoints;
  bool json = false;
  std::chrono::milliseconds timeout{5000};
  std::ostream& out;
  std::ostream& err;
  /// TLS from --cacert/--cert/--key (or $LOCKD_CACERT…), read; nullopt: plaintext.
  std::optional<grpc::SslCredentialsOptions> tls = std::nullopt;
  /// The files behind `tls`, for the commands that use the client library.
  std::string tls_ca = {}, tls_cert = {}, tls_key = {};
  /// The bearer token every call carries (--auth-token, --auth-token-file or their variables,
  /// read and checked); "": none.
  std::string auth_token = {};
  /// Whether the warning that the token travels in the clear was printed (once per command,
  /// shared by the copies At makes).
  std::shared_ptr<std::atomic<bool>> warned_token_in_clear = std::make_shared<std::atomic<bool>>();

  /// How to dial the endpoints. Made on use, not before: gRPC must not start its threads before
  /// a command blocks the signals it awaits.
  std::shared_ptr<grpc::ChannelCredentials> credentials() const {
    return client::ChannelCredentialsFrom(tls);
  }
  /// A channel to `endpoint` whose every call carries the bearer token: the way every command
  /// dials (the commands built on the client library pass the token to it instead).
  std::shared_ptr<grpc::Channel> Channel(const std::string& endpoint) const;
  /// Warns on `err`, once, when a token would go to `endpoint` in plaintext and the endpoint is
  /// not a loopback address: anyone on the path can read it.
  void WarnIfTokenInClear(const std::string& endpoint) const;

  /// The same context, for other endpoints.
  CommandContext At(std::vector<std::string> other) const {
    CommandContext c = *this;
    c.endpoints = std::move(other);
    return c;
  }
};

/// Status as the leader sees it (only it knows match and lag): the first endpoint that answers,
/// then the leader it names; that endpoint's own view, with a warning, if the leader does not
/// answer. With `ask_leader` false, the first answering endpoint's own view (what that node
/// recorded, e.g. each member's incarnation: the Kubernetes start script asks every member).
int RunStatus(const CommandContext& c, bool ask_leader = true);
int RunLocksList(const CommandContext& c, const std::string& prefix, const std::string& page_token,
                 bool stale);
int RunLocksGet(const CommandContext& c, const std::string& name, bool stale);
int RunLeasesList(const CommandContext& c, const std::string& page_token, bool stale);
int RunLeasesGet(const CommandContext& c, uint64_t lease_id, bool stale);
int RunRelease(const CommandContext& c, const std::string& name, uint64_t lease_id, uint64_t token);

struct AcquireArgs {
  std::string name;
  std::chrono::milliseconds ttl{10'000};
  std::chrono::milliseconds wait{0};
  bool shared = false;
  std::string label;
};
/// Grants a lease, acquires, prints the grant, then holds it (renewing) until SIGINT or SIGTERM,
/// and releases it and revokes the lease; kExitLockLost if the lock is lost meanwhile. SIGINT or
/// SIGTERM while the Acquire still waits in the queue gives up the wait (the lease is revoked) and
/// returns 128 + the signal. The caller must have blocked SIGINT and SIGTERM in every thread before
/// calling (lockctl's main does), so they can be awaited here.
int RunAcquire(const CommandContext& c, const AcquireArgs& a);

}  // namespace lockd::cli
