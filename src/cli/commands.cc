#include "cli/commands.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <random>

#include "cli/endpoints.h"
#include "cli/exit_codes.h"
#include "cli/format.h"
#include "cli/hold.h"
#include "cli/json.h"
#include "cli/rpc.h"
#include "lockd/client.h"
#include "lockd/v1/lockd.grpc.pb.h"

namespace lockd::cli {

namespace pb = lockd::v1;

namespace {

/// One read-only LockService call, its answer printed by `format`.
template <typename Req, typename Resp>
int Query(const CommandContext& c,
          grpc::Status (pb::LockService::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
          const Req& req, std::string (*format)(const Resp&, bool)) {
  Resp resp;
  grpc::Status s = CallAny<pb::LockService>(
      c, c.timeout, [&](pb::LockService::Stub& stub, grpc::ClientContext& ctx, uint32_t) {
        return (stub.*method)(&ctx, req, &resp);
      });
  if (!s.ok()) return ReportError(c.err, s);
  c.out << format(resp, c.json);
  return kExitOk;
}

std::string FormatGetLock(const pb::GetLockResponse& r, bool json) {
  return FormatLock(r.lock(), json);
}
std::string FormatGetLease(const pb::GetLeaseResponse& r, bool json) {
  return FormatLease(r.lease(), json);
}

}  // namespace

std::shared_ptr<grpc::Channel> CommandContext::Channel(const std::string& endpoint) const {
  WarnIfTokenInClear(endpoint);
  return client::Dial(endpoint, credentials(), auth_token);
}

void CommandContext::WarnIfTokenInClear(const std::string& endpoint) const {
  if (auth_token.empty() || tls || IsLoopback(endpoint)) return;
  if (warned_token_in_clear->exchange(true)) return;
  err << "lockctl: warning: the bearer token goes to " << endpoint
      << " over plaintext, readable by anyone on the way; use TLS (--cacert) beyond loopback\n";
}

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

int RunStatus(const CommandContext& c, bool ask_leader) {
  // Each endpoint in turn; when none answers, every endpoint's reason is printed: while a
  // cluster id is undecided only its leader can say why (a restore that cannot start), and it
  // need not be the last endpoint tried.
  pb::StatusResponse resp;
  std::string reasons;
  grpc::Status s;
  for (const auto& e : c.endpoints) {
    const CommandContext one = c.At({e});
    s = CallAny<pb::ClusterService>(one, c.timeout, [&](auto& stub, auto& ctx, uint32_t) {
      return stub.Status(&ctx, pb::StatusRequest(), &resp);
    });
    if (s.ok()) break;
    reasons += "lockctl: " + e + ": " +
               client::StatusCodeName(static_cast<client::StatusCode>(s.error_code())) + ": " +
               s.error_message() + "\n";
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  if (!s.ok()) {
    c.err << reasons;
    return ExitCodeFor(s.error_code());
  }
  // Only the leader knows each follower's match index and lag: ask it when another node answered.
  if (ask_leader && resp.leader_id() != 0 && resp.leader_id() != resp.node_id()) {
    std::string leader_addr;
    for (const auto& m : resp.members()) {
      if (m.id() == resp.leader_id()) leader_addr = m.client_addr();
    }
    pb::StatusResponse from_leader;
    grpc::Status ls(grpc::StatusCode::NOT_FOUND, "the leader is not in the member table");
    if (!leader_addr.empty()) {
      const CommandContext at_leader = c.At({leader_addr});
      ls = CallAny<pb::ClusterService>(at_leader, c.timeout, [&](auto& stub, auto& ctx, uint32_t) {
        return stub.Status(&ctx, pb::StatusRequest(), &from_leader);
      });
    }
    if (ls.ok()) {
      resp = std::move(from_leader);
    } else {
      c.err << "lockctl: the leader (node " << resp.leader_id() << ", " << leader_addr
            << ") did not answer (" << ls.error_message() << "); node " << resp.node_id()
            << "'s view, without match and lag\n";
    }
  }
  c.out << FormatStatus(resp, c.json);
  return kExitOk;
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
  grpc::Status s = CallAny<pb::LockService>(c, c.timeout, [&](auto& stub, auto& ctx, uint32_t n) {
    req.mutable_header()->set_attempt(n);
    return stub.Release(&ctx, req, &resp);
  });
  if (!s.ok()) return ReportError(c.err, s);
  if (c.json) {
    c.out << "{\"released\":true}\n";
  } else {
    c.out << "released " << name << " (lease " << lease_id << ", token " << token << ")\n";
  }
  return 0;
}

int RunAcquire(const CommandContext& c, const AcquireArgs& a) {
  HeldLock h;
  if (int code = AcquireToHold(c, a, h); code != kExitOk) {
    if (code == kExitNotFound) {
      if (c.json) {
        c.out << "{\"acquired\":false}\n";
      } else {
        c.out << "not acquired: " << a.name << " is held\n";
      }
    }
    return code;
  }
  client::Lock& lock = h.lock;
  if (c.json) {
    c.out << "{\"acquired\":true,\"name\":" << JsonString(a.name) << ",\"lease_id\":\""
          << lock.lease_id() << "\",\"token\":\"" << lock.token() << "\",\"fence\":\""
          << lock.fence() << "\"}\n";
  } else {
    c.out << "acquired " << a.name << " (" << (a.shared ? "shared" : "exclusive") << ")  lease "
          << lock.lease_id() << "  token " << lock.token() << "  fence " << lock.fence()
          << "\nholding until Ctrl-C\n";
  }
  c.out.flush();

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  const timespec poll{0, 200'000'000};
  int code = kExitOk;
  while (sigtimedwait(&stop, nullptr, &poll) < 0) {
    if (!lock.held()) {
      c.err << "lockctl: lost " << a.name << ": " << lock.lost_reason() << "\n";
      code = kExitLockLost;
      break;
    }
  }
  if (code == kExitOk) {
    client::Status s = lock.Release();
    if (!s.ok()) c.err << "lockctl: release failed: " << s.ToString() << "\n";
    if (!c.json) c.out << "released " << a.name << "\n";
  }
  (void)h.lease->Revoke();
  return code;
}

}  // namespace lockd::cli
