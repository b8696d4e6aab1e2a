#include "cli/commands.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <stop_token>
#include <thread>

#include "cli/format.h"
#include "cli/json.h"
#include "lockd/client.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::cli {

namespace pb = lockd::v1;

namespace {

/// Calls `rpc(stub, ctx)` on each endpoint in turn until one answers with something other than
/// UNAVAILABLE. Prints the failure and returns false when none gives a good answer.
template <typename Stub, typename Rpc>
bool CallAny(const CommandContext& c, Rpc rpc) {
  grpc::Status last;
  for (const auto& e : c.endpoints) {
    auto stub = Stub::NewStub(grpc::CreateChannel(e, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + c.timeout);
    last = rpc(*stub, ctx);
    if (last.ok()) return true;
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  c.err << "lockctl: " << client::StatusCodeName(static_cast<client::StatusCode>(last.error_code()))
        << ": " << last.error_message() << "\n";
  return false;
}

/// A request header for a one-shot command: a fresh client id, sequence 1.
pb::RequestHeader OneShotHeader() {
  std::random_device rd;
  pb::RequestHeader h;
  h.mutable_id()->set_client_hi((uint64_t{rd()} << 32) | rd());
  h.mutable_id()->set_client_lo((uint64_t{rd()} << 32) | rd());
  h.mutable_id()->set_seq(1);
  h.set_attempt(1);
  h.set_watermark(1);
  return h;
}

/// One read-only LockService call, its answer printed by `format`.
template <typename Req, typename Resp>
int Query(const CommandContext& c,
          grpc::Status (pb::LockService::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
          const Req& req, std::string (*format)(const Resp&, bool)) {
  Resp resp;
  if (!CallAny<pb::LockService>(c, [&](pb::LockService::Stub& stub, grpc::ClientContext& ctx) {
        return (stub.*method)(&ctx, req, &resp);
      })) {
    return 1;
  }
  c.out << format(resp, c.json);
  return 0;
}

std::string FormatGetLock(const pb::GetLockResponse& r, bool json) {
  return FormatLock(r.lock(), json);
}
std::string FormatGetLease(const pb::GetLeaseResponse& r, bool json) {
  return FormatLease(r.lease(), json);
}

}  // namespace

int RunStatus(const CommandContext& c) {
  // As CallAny, but when no endpoint answers, every endpoint's reason is printed: while a cluster
  // id is undecided only its leader can say why (a restore that cannot start), and it need not
  // be the last endpoint tried.
  std::string reasons;
  grpc::Status last;
  for (const auto& e : c.endpoints) {
    auto stub =
        pb::ClusterService::NewStub(grpc::CreateChannel(e, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + c.timeout);
    pb::StatusResponse resp;
    last = stub->Status(&ctx, pb::StatusRequest(), &resp);
    if (last.ok()) {
      c.out << FormatStatus(resp, c.json);
      return 0;
    }
    reasons += "lockctl: " + e + ": " +
               client::StatusCodeName(static_cast<client::StatusCode>(last.error_code())) + ": " +
               last.error_message() + "\n";
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  c.err << reasons;
  return 1;
}

int RunLocksList(const CommandContext& c, const std::string& prefix, const std::string& page_token,
                 bool stale) {
  pb::ListLocksRequest req;
  req.set_prefix(prefix);
  req.set_page_token(page_token);
  req.set_stale(stale);
  return Query(c, &pb::LockService::Stub::ListLocks, req, &FormatLocks);
}

int RunLocksGet(const CommandContext& c, const std::string& name, bool stale) {
  pb::GetLockRequest req;
  req.set_name(name);
  req.set_stale(stale);
  return Query(c, &pb::LockService::Stub::GetLock, req, &FormatGetLock);
}

int RunLeasesList(const CommandContext& c, const std::string& page_token, bool stale) {
  pb::ListLeasesRequest req;
  req.set_page_token(page_token);
  req.set_stale(stale);
  return Query(c, &pb::LockService::Stub::ListLeases, req, &FormatLeases);
}

int RunLeasesGet(const CommandContext& c, uint64_t lease_id, bool stale) {
  pb::GetLeaseRequest req;
  req.set_lease_id(lease_id);
  req.set_stale(stale);
  return Query(c, &pb::LockService::Stub::GetLease, req, &FormatGetLease);
}

int RunRelease(const CommandContext& c, const std::string& name, uint64_t lease_id,
               uint64_t token) {
  pb::ReleaseRequest req;
  *req.mutable_header() = OneShotHeader();
  req.set_name(name);
  req.set_lease_id(lease_id);
  req.set_token(token);
  pb::ReleaseResponse resp;
  // Retrying on another endpoint with the same request id is safe: the server answers it once.
  if (!CallAny<pb::LockService>(
          c, [&](auto& stub, auto& ctx) { return stub.Release(&ctx, req, &resp); })) {
    return 1;
  }
  if (c.json) {
    c.out << "{\"released\":true}\n";
  } else {
    c.out << "released " << name << " (lease " << lease_id << ", token " << token << ")\n";
  }
  return 0;
}

int RunAcquire(const CommandContext& c, const AcquireArgs& a) {
  client::ClientOptions o;
  o.endpoints = c.endpoints;
  o.call_timeout = c.timeout;
  auto cl = client::Client::Connect(o);
  if (!cl.ok()) {
    c.err << "lockctl: " << cl.status().message() << "\n";
    return 2;
  }
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  const std::string label =
      a.label.empty() ? "lockctl@" + std::string(host) + ":" + std::to_string(getpid()) : a.label;
  auto lease = (*cl)->GrantLease(a.ttl, label);
  if (!lease.ok()) {
    c.err << "lockctl: cannot get a lease: " << lease.status().ToString() << "\n";
    return 1;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  const timespec poll{0, 200'000'000};

  // Ctrl-C while the Acquire waits in the queue gives up the wait: the stop_token ends the call
  // and the library withdraws the Acquire (Cancel naming its request id).
  std::stop_source give_up;
  client::LockOptions lo;
  lo.mode = a.shared ? client::Mode::kShared : client::Mode::kExclusive;
  lo.wait = a.wait;
  lo.stop = give_up.get_token();
  std::atomic<bool> acquire_done{false};
  std::atomic<int> interrupted{0};
  std::thread watcher([&] {
    while (!acquire_done.load()) {
      const int sig = sigtimedwait(&stop, nullptr, &poll);
      if (sig > 0) {
        interrupted = sig;
        give_up.request_stop();
        return;
      }
    }
  });
  auto lock = (*cl)->Acquire(a.name, *lease, lo);
  acquire_done = true;
  watcher.join();
  if (interrupted.load() != 0) {
    if (lock.ok()) (void)lock->Release();
    c.err << "lockctl: interrupted; gave up waiting for " << a.name << "\n";
    (void)(*lease)->Revoke();
    return 128 + interrupted.load();
  }
  if (!lock.ok() || !lock->acquired()) {
    if (!lock.ok()) {
      c.err << "lockctl: " << lock.status().ToString() << "\n";
    } else if (c.json) {
      c.out << "{\"acquired\":false}\n";
    } else {
      c.out << "not acquired: " << a.name << " is held\n";
    }
    (void)(*lease)->Revoke();
    return 1;
  }
  if (c.json) {
    c.out << "{\"acquired\":true,\"name\":" << JsonString(a.name) << ",\"lease_id\":\""
          << lock->lease_id() << "\",\"token\":\"" << lock->token() << "\",\"fence\":\""
          << lock->fence() << "\"}\n";
  } else {
    c.out << "acquired " << a.name << " (" << (a.shared ? "shared" : "exclusive") << ")  lease "
          << lock->lease_id() << "  token " << lock->token() << "  fence " << lock->fence()
          << "\nholding until Ctrl-C\n";
  }
  c.out.flush();

  int code = 0;
  while (sigtimedwait(&stop, nullptr, &poll) < 0) {
    if (!lock->held()) {
      c.err << "lockctl: lost " << a.name << ": " << lock->lost_reason() << "\n";
      code = 3;
      break;
    }
  }
  if (code == 0) {
    client::Status s = lock->Release();
    if (!s.ok()) c.err << "lockctl: release failed: " << s.ToString() << "\n";
    if (!c.json) c.out << "released " << a.name << "\n";
  }
  (void)(*lease)->Revoke();
  return code;
}

}  // namespace lockd::cli
