#include "cli/admin.h"

#include <unistd.h>

#include "cli/exit_codes.h"
#include "cli/format.h"
#include "cli/json.h"
#include "cli/rpc.h"
#include "cli/table.h"

namespace lockd::cli {

namespace pb = lockd::v1;

namespace {

/// kExitOk to go ahead; otherwise the exit code (printed why).
int Confirm(const CommandContext& c, const Confirmation& confirm, const std::string& what) {
  if (confirm.yes) return kExitOk;
  if (!confirm.terminal || confirm.in == nullptr) {
    c.err << "lockctl: this would " << what
          << "; not asking, as stdin is not a terminal: pass --yes to go ahead\n";
    return kExitUsage;
  }
  c.err << "This will " << what << ". Go ahead? [y/N] ";
  c.err.flush();
  std::string answer;
  if (!std::getline(*confirm.in, answer) || (answer != "y" && answer != "Y" && answer != "yes")) {
    c.err << "lockctl: not confirmed; nothing changed\n";
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace

int ConfirmOnTerminal(const CommandContext& c, const Confirmation& confirm,
                      const std::string& what) {
  if (!confirm.yes && (!confirm.terminal || confirm.in == nullptr)) return kExitOk;
  return Confirm(c, confirm, what);
}

namespace {

std::string DefaultReason() {
  const char* user = getenv("USER");
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  return std::string("lockctl locks release by ") + (user ? user : "?") + "@" + host;
}

}  // namespace

int RunLocksRelease(const CommandContext& c, const std::string& name, uint64_t lease_id,
                    const std::string& reason, const Confirmation& confirm) {
  const std::string what =
      "force-release " + name +
      (lease_id ? " held by lease " + std::to_string(lease_id) : std::string(" from every holder"));
  if (int code = Confirm(c, confirm, what); code != kExitOk) return code;
  pb::ForceReleaseRequest req;
  *req.mutable_header() = OneShotHeader();
  req.set_name(name);
  req.set_lease_id(lease_id);
  req.set_reason(reason.empty() ? DefaultReason() : reason);
  pb::ForceReleaseResponse resp;
  // A retry on the next endpoint keeps the request id: the cluster answers it once.
  grpc::Status s =
      CallAny<pb::ClusterService>(c, c.timeout, [&](auto& stub, auto& ctx, uint32_t n) {
        req.mutable_header()->set_attempt(n);
        return stub.ForceRelease(&ctx, req, &resp);
      });
  if (!s.ok()) return ReportError(c.err, s);
  if (c.json) {
    c.out << ToJson(resp);
  } else if (resp.released().empty()) {
    c.out << "nothing released: " << name << " was not held"
          << (lease_id ? " by lease " + std::to_string(lease_id) : std::string()) << "\n";
  } else {
    Table t({"RELEASED LEASE", "LABEL", "MODE", "TOKEN", "FENCE"});
    for (const auto& h : resp.released()) {
      t.AddRow({std::to_string(h.lease_id()), h.lease_label().empty() ? "-" : h.lease_label(),
                ModeName(h.mode()), std::to_string(h.token()), std::to_string(h.fence())});
    }
    c.out << "force-released " << name << "\n" << t.Render();
  }
  return resp.released().empty() ? kExitNotFound : kExitOk;
}

int RunLeasesRevoke(const CommandContext& c, uint64_t lease_id, const Confirmation& confirm) {
  const std::string what =
      "revoke lease " + std::to_string(lease_id) + ", releasing its locks and dropping its waits";
  if (int code = Confirm(c, confirm, what); code != kExitOk) return code;
  pb::RevokeLeaseRequest req;
  *req.mutable_header() = OneShotHeader();
  req.set_lease_id(lease_id);
  pb::RevokeLeaseResponse resp;
  grpc::Status s = CallAny<pb::LockService>(c, c.timeout, [&](auto& stub, auto& ctx, uint32_t n) {
    req.mutable_header()->set_attempt(n);
    return stub.RevokeLease(&ctx, req, &resp);
  });
  if (!s.ok()) return ReportError(c.err, s);
  if (c.json) {
    c.out << ToJson(resp);
    return kExitOk;
  }
  c.out << "revoked lease " << lease_id << "\n";
  for (const auto& n : resp.released()) c.out << "  released  " << n << "\n";
  for (const auto& n : resp.dropped()) c.out << "  dropped   " << n << "\n";
  return kExitOk;
}

int RunLeaderTransfer(const CommandContext& c, uint64_t to) {
  pb::TransferLeadershipRequest req;
  req.set_to(to);
  pb::TransferLeadershipResponse resp;
  // The server gives the target 3 election timeouts (3 s by default) to take over.
  const auto timeout = std::max(c.timeout, std::chrono::milliseconds(15'000));
  grpc::Status s = CallAny<pb::ClusterService>(c, timeout, [&](auto& stub, auto& ctx, uint32_t) {
    return stub.TransferLeadership(&ctx, req, &resp);
  });
  if (!s.ok()) return ReportError(c.err, s);
  if (c.json) {
    c.out << ToJson(resp);
  } else {
    c.out << "node " << resp.leader_id() << " leads\n";
  }
  return kExitOk;
}

}  // namespace lockd::cli
