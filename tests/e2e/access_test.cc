// Access control against real clusters (issue 19, docs/security.md "Access control"): identities
// from client certificates (URI SAN or CN) and bearer tokens; every RPC refused PERMISSION_DENIED
// without its permission on its name, changing nothing, through the leader and through a
// follower (which forwards the caller's identity under its member certificate); leases that
// belong to their identity; quotas; refusals counted in /metrics; the policy reloaded on SIGHUP.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "cluster_harness.h"
#include "support/test_pki.h"

namespace lockd::e2e {
namespace {

using ::testing::HasSubstr;
using testing::Issue;
using testing::LeafSpec;
using testing::MakeCa;
using testing::MemberLeaf;
using testing::Pem;
using testing::WriteFile;
using G = grpc::StatusCode;

std::string Sha256Hex(const std::string& s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

constexpr const char* kBatchToken = "batch-token-1f9c";
constexpr const char* kSpammyToken = "spammy-token-77aa";
constexpr const char* kOpsToken = "ops-token-0d0d";

/// The policy the tests run under: two teams, an operator, a token identity with quotas, and one
/// held to a request rate.
std::string Policy() {
  return std::string(R"(
[defaults]
max_leases = 100

[roles.billing]
lock = ["billing/"]
read = ["billing/"]

[roles.search]
lock = ["search/"]
read = ["search/", "billing/"]

[roles.ops]
admin = [""]
read = [""]

[roles.batch]
lock = ["batch/"]

[identities.billing]
certs = ["spiffe://test.example/billing"]
roles = ["billing"]

[identities.search]
certs = ["search"]
roles = ["search"]

[identities.ops]
certs = ["ops"]
token_sha256 = [")" + Sha256Hex(kOpsToken) +
                     R"("]
roles = ["ops"]

[identities.batch]
token_sha256 = [")") +
         Sha256Hex(kBatchToken) + R"("]
roles = ["batch"]
max_leases = 2
max_locks = 3

[identities.spammy]
token_sha256 = [")" +
         Sha256Hex(kSpammyToken) + R"("]
roles = ["batch"]
rate = 0.05
burst = 2
)";
}

class Pki {
 public:
  Pki() {
    cluster_ca_ = MakeCa("cluster CA");
    client_ca_ = MakeCa("client CA");
    WriteFile(Path("cluster-ca.pem"), cluster_ca_.cert);
    WriteFile(Path("client-ca.pem"), client_ca_.cert);
    for (uint64_t id = 1; id <= 3; ++id) {
      member_[id] = Issue(cluster_ca_, MemberLeaf(id));
      WriteFile(Path("node" + std::to_string(id) + ".crt"), member_[id].cert);
      WriteFile(Path("node" + std::to_string(id) + ".key"), member_[id].key);
    }
    LeafSpec billing;
    billing.cn = "billing-host-7";  // the URI SAN names it, not the CN
    billing.uris = {"spiffe://test.example/billing"};
    clients_["billing"] = Issue(client_ca_, billing);
    for (const char* cn : {"search", "ops", "nobody"}) {
      LeafSpec s;
      s.cn = cn;
      clients_[cn] = Issue(client_ca_, s);
    }
    // The client CA's, naming member 1: not a member's certificate (it is not the cluster CA's).
    LeafSpec forger;
    forger.cn = "ops";
    forger.uris = {"urn:lockd:member:1"};
    clients_["forger"] = Issue(client_ca_, forger);
    // The cluster CA's, naming no member, with the CN of an identity.
    LeafSpec stray;
    stray.cn = "ops";
    clients_["stray"] = Issue(cluster_ca_, stray);
    // A member once (node 9), never of this cluster's table.
    member_[9] = Issue(cluster_ca_, MemberLeaf(9));
    WriteFile(Path("access.toml"), Policy());
  }
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }
  const Pem& client(const std::string& name) const { return clients_.at(name); }
  const Pem& member(uint64_t id) const { return member_.at(id); }
  const Pem& client_ca() const { return client_ca_; }

  std::shared_ptr<grpc::ChannelCredentials> Credentials(const Pem& pem) const {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = cluster_ca_.cert;
    ssl.pem_cert_chain = pem.cert;
    ssl.pem_private_key = pem.key;
    return grpc::SslCredentials(ssl);
  }

  ClusterOptions Options() const {
    ClusterOptions o;
    o.extra_flags = {"--peer-ca",           Path("cluster-ca.pem"), "--tls-client-ca",
                     Path("client-ca.pem"), "--access-file",        Path("access.toml")};
    o.node_flags = [this](uint64_t id) {
      const std::string n = Path("node" + std::to_string(id));
      return std::vector<std::string>{"--tls-cert", n + ".crt", "--tls-key", n + ".key"};
    };
    o.credentials = Credentials(client("ops"));  // the harness's Status calls
    return o;
  }

 private:
  testing::TempDir dir_;
  Pem cluster_ca_, client_ca_;
  std::map<uint64_t, Pem> member_;
  std::map<std::string, Pem> clients_;
};

/// One caller: a channel to one node with its credentials, and a bearer token if any.
class Caller {
 public:
  Caller(const std::string& addr, std::shared_ptr<grpc::ChannelCredentials> creds,
         std::string token = "")
      : channel_(grpc::CreateChannel(addr, std::move(creds))),
        lock_(v1::LockService::NewStub(channel_)),
        cluster_(v1::ClusterService::NewStub(channel_)),
        token_(std::move(token)) {
    client_lo_ = reinterpret_cast<uintptr_t>(this) ^
                 static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }

  void Prepare(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
  }
  v1::RequestHeader Header() {
    v1::RequestHeader h;
    h.mutable_id()->set_client_hi(0xACCE55);
    h.mutable_id()->set_client_lo(client_lo_);
    h.mutable_id()->set_seq(++seq_);
    h.set_attempt(1);
    return h;
  }

  /// Retries UNAVAILABLE (a leader change) with the same request.
  template <typename Stub, typename Req, typename Resp>
  grpc::Status Call(Stub& stub,
                    grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                    const Req& req, Resp* resp) {
    grpc::Status s;
    for (int attempt = 0; attempt < 20; ++attempt) {
      grpc::ClientContext ctx;
      Prepare(ctx);
      s = (stub.*method)(&ctx, req, resp);
      if (s.error_code() != G::UNAVAILABLE) return s;
      std::this_thread::sleep_for(200ms);
    }
    return s;
  }

  grpc::Status GrantLease(uint64_t* lease) {
    v1::GrantLeaseRequest req;
    *req.mutable_header() = Header();
    req.set_ttl_ms(60'000);
    v1::GrantLeaseResponse resp;
    auto s = Call(*lock_, &v1::LockService::Stub::GrantLease, req, &resp);
    *lease = resp.lease_id();
    return s;
  }
  grpc::Status Acquire(const std::string& name, uint64_t lease, v1::AcquireResponse* resp,
                       uint64_t wait_ms = 0) {
    v1::AcquireRequest req;
    *req.mutable_header() = Header();
    req.set_name(name);
    req.set_lease_id(lease);
    req.set_mode(v1::EXCLUSIVE);
    req.set_wait_ms(wait_ms);
    return Call(*lock_, &v1::LockService::Stub::Acquire, req, resp);
  }
  grpc::Status Release(const std::string& name, uint64_t lease, uint64_t token) {
    v1::ReleaseRequest req;
    *req.mutable_header() = Header();
    req.set_name(name);
    req.set_lease_id(lease);
    req.set_token(token);
    v1::ReleaseResponse resp;
    return Call(*lock_, &v1::LockService::Stub::Release, req, &resp);
  }
  grpc::Status Cancel(const std::string& name, uint64_t lease, const v1::RequestId& acquire) {
    v1::CancelRequest req;
    *req.mutable_header() = Header();
    req.set_name(name);
    req.set_lease_id(lease);
    *req.mutable_acquire_id() = acquire;
    v1::CancelResponse resp;
    return Call(*lock_, &v1::LockService::Stub::Cancel, req, &resp);
  }
  grpc::Status Revoke(uint64_t lease) {
    v1::RevokeLeaseRequest req;
    *req.mutable_header() = Header();
    req.set_lease_id(lease);
    v1::RevokeLeaseResponse resp;
    return Call(*lock_, &v1::LockService::Stub::RevokeLease, req, &resp);
  }
  grpc::Status Renew(uint64_t lease) {
    v1::RenewRequest req;
    req.set_lease_id(lease);
    req.set_seq(1);
    v1::RenewResponse resp;
    return Call(*lock_, &v1::LockService::Stub::Renew, req, &resp);
  }
  /// One renewal over a KeepAlive stream: the per-lease answer's status, or the stream's.
  grpc::Status KeepAliveOnce(uint64_t lease) {
    grpc::ClientContext ctx;
    Prepare(ctx);
    auto stream = lock_->KeepAlive(&ctx);
    v1::RenewRequest req;
    req.set_lease_id(lease);
    req.set_seq(7);
    v1::RenewResponse resp;
    if (stream->Write(req) && stream->Read(&resp)) {
      stream->WritesDone();
      ctx.TryCancel();
      stream->Finish().IgnoreError();
      return grpc::Status(static_cast<G>(resp.code()), resp.message());
    }
    return stream->Finish();
  }
  /// A KeepAlive stream that renews `lease` once (then `renewed` turns true) and stays open until
  /// the server ends it: its status, or DEADLINE_EXCEEDED if it was still open after `wait`.
  grpc::Status KeepAliveHeld(uint64_t lease, std::atomic<bool>& renewed,
                             std::chrono::milliseconds wait) {
    grpc::ClientContext ctx;
    Prepare(ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + wait);
    auto stream = lock_->KeepAlive(&ctx);
    v1::RenewRequest req;
    req.set_lease_id(lease);
    req.set_seq(1);
    v1::RenewResponse resp;
    if (stream->Write(req) && stream->Read(&resp) && resp.code() == 0) {
      renewed = true;
      while (stream->Read(&resp)) {
      }
    }
    return stream->Finish();
  }
  /// A Watch of `prefix` that turns `seen` true at its first event and reads until the server
  /// ends it: its status, or DEADLINE_EXCEEDED if it was still open after `wait`.
  grpc::Status WatchHeld(const std::string& prefix, std::atomic<bool>& seen,
                         std::chrono::milliseconds wait) {
    grpc::ClientContext ctx;
    Prepare(ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + wait);
    v1::WatchRequest req;
    req.set_prefix(prefix);
    auto reader = lock_->Watch(&ctx, req);
    v1::WatchResponse resp;
    while (reader->Read(&resp)) seen = true;
    return reader->Finish();
  }
  grpc::Status GetLock(const std::string& name, v1::GetLockResponse* resp) {
    v1::GetLockRequest req;
    req.set_name(name);
    return Call(*lock_, &v1::LockService::Stub::GetLock, req, resp);
  }
  grpc::Status ListLocks(const std::string& prefix) {
    v1::ListLocksRequest req;
    req.set_prefix(prefix);
    v1::ListLocksResponse resp;
    return Call(*lock_, &v1::LockService::Stub::ListLocks, req, &resp);
  }
  grpc::Status ListLeases() {
    v1::ListLeasesRequest req;
    v1::ListLeasesResponse resp;
    return Call(*lock_, &v1::LockService::Stub::ListLeases, req, &resp);
  }
  grpc::Status GetLease(uint64_t lease, v1::GetLeaseResponse* resp) {
    v1::GetLeaseRequest req;
    req.set_lease_id(lease);
    return Call(*lock_, &v1::LockService::Stub::GetLease, req, resp);
  }
  /// A Watch's first answer: OK when it streams (cancelled then), else its refusal.
  grpc::Status WatchPrefix(const std::string& prefix) {
    grpc::ClientContext ctx;
    Prepare(ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + 3s);
    v1::WatchRequest req;
    req.set_prefix(prefix);
    auto reader = lock_->Watch(&ctx, req);
    v1::WatchResponse resp;
    // A refused Watch ends at once; an accepted one streams nothing (no events) until cancelled.
    reader->Read(&resp);
    grpc::Status s = reader->Finish();
    return s.error_code() == G::DEADLINE_EXCEEDED ? grpc::Status::OK : s;
  }
  grpc::Status ForceRelease(const std::string& name) {
    v1::ForceReleaseRequest req;
    *req.mutable_header() = Header();
    req.set_name(name);
    req.set_reason("test");
    v1::ForceReleaseResponse resp;
    return Call(*cluster_, &v1::ClusterService::Stub::ForceRelease, req, &resp);
  }
  grpc::Status Status() {
    v1::StatusRequest req;
    v1::StatusResponse resp;
    return Call(*cluster_, &v1::ClusterService::Stub::Status, req, &resp);
  }
  grpc::Status Snapshot() {
    v1::SnapshotRequest req;
    v1::SnapshotResponse resp;
    return Call(*cluster_, &v1::ClusterService::Stub::Snapshot, req, &resp);
  }
  grpc::Status Transfer() {
    v1::TransferLeadershipRequest req;
    req.set_to(99);  // not a member: an admin is told INVALID_ARGUMENT, nobody else gets that far
    v1::TransferLeadershipResponse resp;
    return Call(*cluster_, &v1::ClusterService::Stub::TransferLeadership, req, &resp);
  }
  grpc::Status AddMember() {
    v1::AddMemberRequest req;
    req.set_id(0);  // invalid: an admin is told INVALID_ARGUMENT
    v1::AddMemberResponse resp;
    return Call(*cluster_, &v1::ClusterService::Stub::AddMember, req, &resp);
  }
  grpc::Status RemoveMember() {
    v1::RemoveMemberRequest req;
    req.set_id(0);
    v1::RemoveMemberResponse resp;
    return Call(*cluster_, &v1::ClusterService::Stub::RemoveMember, req, &resp);
  }
  grpc::Status Backup() {
    grpc::ClientContext ctx;
    Prepare(ctx);
    auto reader = cluster_->Backup(&ctx, v1::BackupRequest());
    v1::BackupChunk chunk;
    if (reader->Read(&chunk)) {
      ctx.TryCancel();
      reader->Finish().IgnoreError();
      return grpc::Status::OK;
    }
    return reader->Finish();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LockService::Stub> lock_;
  std::unique_ptr<v1::ClusterService::Stub> cluster_;
  std::string token_;
  uint64_t client_lo_ = 0;
  uint64_t seq_ = 0;
};

/// One sample's value in node i's /metrics text (-1 when absent).
double MetricValue(Cluster& c, int i, const std::string& sample) {
  auto r =
      testing::RunCommand({"/usr/bin/curl", "-sf", "http://" + c.http_addr(i) + "/metrics"}, 20s);
  std::istringstream in(r.output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
  }
  return -1;
}

#define EXPECT_CODE(expr, code, needle)                                \
  do {                                                                 \
    const grpc::Status s_ = (expr);                                    \
    EXPECT_EQ(s_.error_code(), code) << #expr << ": " << Describe(s_); \
    EXPECT_THAT(s_.error_message(), HasSubstr(needle)) << #expr;       \
  } while (0)

/// Runs `fn` against the leader and against a follower (which forwards to the leader).
template <typename Fn>
void OnLeaderAndFollower(Cluster& cluster, Fn fn) {
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  for (int i : {leader, cluster.OtherLiveNode(leader)}) {
    SCOPED_TRACE(i == leader ? "through the leader" : "through a follower");
    fn(i);
  }
}

TEST(Access, EachCallNeedsItsPermissionOnItsNameAndARefusalChangesNothing) {
  Pki pki;
  Cluster cluster(pki.Options());
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary() << cluster.LogTails();

  OnLeaderAndFollower(cluster, [&](int i) {
    const std::string addr = cluster.client_addr(i);
    Caller billing(addr, pki.Credentials(pki.client("billing")));
    Caller search(addr, pki.Credentials(pki.client("search")));
    Caller ops(addr, pki.Credentials(pki.client("ops")));
    Caller nobody(addr, pki.Credentials(pki.client("nobody")));
    const std::string x = "billing/x" + std::to_string(i);

    uint64_t lb = 0, ls = 0;
    ASSERT_TRUE(billing.GrantLease(&lb).ok());
    ASSERT_TRUE(search.GrantLease(&ls).ok());
    v1::AcquireResponse held;
    ASSERT_TRUE(billing.Acquire(x, lb, &held).ok() && held.acquired());
    v1::GetLockResponse lock_before;
    ASSERT_TRUE(ops.GetLock(x, &lock_before).ok());
    const v1::RequestId acquire_id = lock_before.lock().holders(0).acquired_by();

    // No identity at all: UNAUTHENTICATED, whatever the call.
    uint64_t unused = 0;
    EXPECT_CODE(nobody.GrantLease(&unused), G::UNAUTHENTICATED, "no identity of the access policy");
    v1::GetLockResponse unseen;
    EXPECT_CODE(nobody.GetLock(x, &unseen), G::UNAUTHENTICATED, "'nobody'");
    EXPECT_TRUE(nobody.Status().ok());  // the cluster's shape is for anyone with a TLS session

    // lock: on the name each call names.
    v1::AcquireResponse r;
    EXPECT_CODE(search.Acquire(x, ls, &r), G::PERMISSION_DENIED, "lacks lock on '" + x + "'");
    // ... and the lease must be the caller's own, even knowing its id (checked at apply;
    // Release and Cancel need nothing else: they free what one's own lease holds).
    EXPECT_CODE(search.Release(x, lb, held.token()), G::PERMISSION_DENIED,
                "belongs to another identity");
    EXPECT_CODE(search.Cancel(x, lb, acquire_id), G::PERMISSION_DENIED,
                "belongs to another identity");
    EXPECT_CODE(search.Acquire("search/q", lb, &r), G::PERMISSION_DENIED,
                "belongs to another identity");
    EXPECT_CODE(search.Revoke(lb), G::PERMISSION_DENIED, "belongs to another identity");
    EXPECT_CODE(search.Renew(lb), G::PERMISSION_DENIED, "belongs to another identity");
    EXPECT_CODE(search.KeepAliveOnce(lb), G::PERMISSION_DENIED, "belongs to another identity");
    // ops has admin and read, but no lock: it cannot even grant a lease.
    uint64_t lo = 0;
    EXPECT_CODE(ops.GrantLease(&lo), G::PERMISSION_DENIED, "lacks lock on any name");

    // read: search reads billing/ but nothing else; listing leases needs read on every name.
    v1::GetLockResponse seen;
    EXPECT_TRUE(search.GetLock(x, &seen).ok());
    EXPECT_CODE(search.GetLock("other/y", &seen), G::PERMISSION_DENIED, "lacks read on");
    EXPECT_CODE(billing.ListLocks(""), G::PERMISSION_DENIED, "every name");
    EXPECT_TRUE(billing.ListLocks("billing/").ok());
    EXPECT_CODE(billing.ListLeases(), G::PERMISSION_DENIED, "lacks read on every name");
    v1::GetLeaseResponse lease_info;
    EXPECT_TRUE(billing.GetLease(lb, &lease_info).ok());  // its own
    EXPECT_EQ(lease_info.lease().owner(), "billing");
    EXPECT_CODE(billing.GetLease(ls, &lease_info), G::PERMISSION_DENIED, "lacks read on");
    EXPECT_CODE(billing.WatchPrefix(""), G::PERMISSION_DENIED, "lacks read on");
    EXPECT_TRUE(billing.WatchPrefix("billing/").ok());

    // admin: every cluster-wide call needs it on every name; ForceRelease on its name.
    EXPECT_CODE(billing.ForceRelease(x), G::PERMISSION_DENIED, "lacks admin on '" + x + "'");
    EXPECT_CODE(billing.Snapshot(), G::PERMISSION_DENIED, "lacks admin on every name");
    EXPECT_CODE(billing.Transfer(), G::PERMISSION_DENIED, "lacks admin");
    EXPECT_CODE(billing.AddMember(), G::PERMISSION_DENIED, "lacks admin");
    EXPECT_CODE(billing.RemoveMember(), G::PERMISSION_DENIED, "lacks admin");
    EXPECT_CODE(billing.Backup(), G::PERMISSION_DENIED, "lacks admin");
    EXPECT_TRUE(billing.Status().ok());

    // Nothing changed: the lock is held as it was, both leases live.
    v1::GetLockResponse lock_after;
    ASSERT_TRUE(ops.GetLock(x, &lock_after).ok());
    EXPECT_EQ(lock_after.lock().holders_size(), 1);
    EXPECT_EQ(lock_after.lock().holders(0).token(), held.token());
    EXPECT_TRUE(ops.GetLease(lb, &lease_info).ok());
    EXPECT_TRUE(ops.GetLease(ls, &lease_info).ok());

    // The operator's admin calls go through (Transfer and AddMember get as far as validation).
    EXPECT_TRUE(ops.ListLeases().ok());
    EXPECT_TRUE(ops.ListLocks("").ok());
    EXPECT_CODE(ops.Transfer(), G::INVALID_ARGUMENT, "not a member");
    EXPECT_CODE(ops.AddMember(), G::INVALID_ARGUMENT, "id must be");
    EXPECT_TRUE(ops.Snapshot().ok());
    EXPECT_TRUE(ops.Backup().ok());
    EXPECT_TRUE(ops.ForceRelease(x).ok());
    EXPECT_TRUE(ops.Revoke(lb).ok());  // admin may revoke another identity's lease
    EXPECT_TRUE(search.Revoke(ls).ok());
  });

  // Counted where they were refused: the node that received the call, or the leader for what
  // the state machine refused (a lease of another identity).
  const int leader = cluster.WaitForReady();
  for (int i : {leader, cluster.OtherLiveNode(leader)}) {
    const auto denied = [&](const std::string& labels) {
      return MetricValue(cluster, i, "lockd_access_denied_total{" + labels + "}");
    };
    EXPECT_GE(denied("code=\"permission_denied\",permission=\"read\""), 3) << i;
    EXPECT_GE(denied("code=\"permission_denied\",permission=\"admin\""), 5) << i;
    // Acquire and GrantLease without lock on the node; Release and Cancel with another
    // identity's lease at the leader's apply.
    EXPECT_GE(denied("code=\"permission_denied\",permission=\"lock\""), i == leader ? 4 : 2) << i;
    EXPECT_GE(denied("code=\"unauthenticated\""), 2) << i;
  }
}

TEST(Access, AForgedMemberCertificateOrIdentityHeaderIsNotTrusted) {
  Pki pki;
  Cluster cluster(pki.Options());
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  // The client CA's certificate naming member 1, claiming a forwarded call of ops: it is not a
  // member's (the cluster CA did not sign it), so the header counts for nothing and the
  // certificate's own CN ('ops') is who it is... which has no lock permission.
  grpc::ClientContext ctx;
  ctx.AddMetadata("lockd-forwarded-by", "1");
  ctx.AddMetadata("lockd-forwarded-identity", "billing");
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto stub = v1::LockService::NewStub(
      grpc::CreateChannel(cluster.client_addr(leader), pki.Credentials(pki.client("forger"))));
  v1::GrantLeaseRequest req;
  req.mutable_header()->mutable_id()->set_client_hi(1);
  req.mutable_header()->mutable_id()->set_seq(1);
  req.mutable_header()->set_attempt(1);
  req.set_ttl_ms(10'000);
  v1::GrantLeaseResponse resp;
  const grpc::Status s = stub->GrantLease(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), G::PERMISSION_DENIED) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("identity 'ops'"));
  // A real member's certificate is trusted to name the identity it forwards.
  grpc::ClientContext member_ctx;
  member_ctx.AddMetadata("lockd-forwarded-by", "2");
  member_ctx.AddMetadata("lockd-forwarded-identity", "billing");
  member_ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto member = v1::LockService::NewStub(
      grpc::CreateChannel(cluster.client_addr(leader), pki.Credentials(pki.member(2))));
  req.mutable_header()->mutable_id()->set_seq(2);
  const grpc::Status ok = member->GrantLease(&member_ctx, req, &resp);
  EXPECT_TRUE(ok.ok()) << Describe(ok);
  // ... but only for an identity the policy defines.
  grpc::ClientContext unknown_ctx;
  unknown_ctx.AddMetadata("lockd-forwarded-by", "2");
  unknown_ctx.AddMetadata("lockd-forwarded-identity", "mallory");
  req.mutable_header()->mutable_id()->set_seq(3);
  const grpc::Status unknown = member->GrantLease(&unknown_ctx, req, &resp);
  EXPECT_EQ(unknown.error_code(), G::UNAUTHENTICATED) << Describe(unknown);

  // Found by review: a chain is judged by its leaf, not by what a client appends to it. The
  // forger with a member's (public) certificate after its own is still the forger...
  const auto call_as = [&](const Pem& leaf, const std::string& appended, uint64_t seq) {
    Pem chain = leaf;
    chain.cert += appended;
    grpc::ClientContext c;
    c.AddMetadata("lockd-forwarded-by", "2");
    c.AddMetadata("lockd-forwarded-identity", "billing");
    c.set_deadline(std::chrono::system_clock::now() + 10s);
    auto s = v1::LockService::NewStub(
        grpc::CreateChannel(cluster.client_addr(leader), pki.Credentials(chain)));
    req.mutable_header()->mutable_id()->set_seq(seq);
    return s->GrantLease(&c, req, &resp);
  };
  const grpc::Status appended = call_as(pki.client("forger"), pki.member(2).cert, 4);
  EXPECT_EQ(appended.error_code(), G::PERMISSION_DENIED) << Describe(appended);
  EXPECT_THAT(appended.error_message(), HasSubstr("identity 'ops'"));
  // ... a cluster-CA certificate naming no member gets no session, the client CA's root appended
  // or not ...
  for (const std::string& extra : {std::string(), pki.client_ca().cert}) {
    const grpc::Status stray = call_as(pki.client("stray"), extra, 5);
    EXPECT_EQ(stray.error_code(), G::UNAVAILABLE) << Describe(stray);
  }
  // ... and a certificate naming a member this cluster does not have vouches for nobody.
  const grpc::Status outsider = call_as(pki.member(9), "", 6);
  EXPECT_EQ(outsider.error_code(), G::UNAUTHENTICATED) << Describe(outsider);
}

TEST(Access, QuotasAreRefusedNamingThemAndOtherIdentitiesAreUnaffected) {
  Pki pki;
  Cluster cluster(pki.Options());
  OnLeaderAndFollower(cluster, [&](int i) {
    const std::string addr = cluster.client_addr(i);
    // Token identities: the certificate ('nobody') names no identity, the token does.
    Caller batch(addr, pki.Credentials(pki.client("nobody")), kBatchToken);
    Caller billing(addr, pki.Credentials(pki.client("billing")));
    uint64_t l1 = 0, l2 = 0, l3 = 0;
    ASSERT_TRUE(batch.GrantLease(&l1).ok());
    ASSERT_TRUE(batch.GrantLease(&l2).ok());
    EXPECT_CODE(batch.GrantLease(&l3), G::RESOURCE_EXHAUSTED, "its quota max_leases (2)");
    v1::AcquireResponse r;
    for (int n = 0; n < 3; ++n) {
      ASSERT_TRUE(batch.Acquire("batch/" + std::to_string(n), n % 2 ? l1 : l2, &r).ok());
      ASSERT_TRUE(r.acquired());
    }
    EXPECT_CODE(batch.Acquire("batch/3", l1, &r), G::RESOURCE_EXHAUSTED, "its quota max_locks (3)");
    // Another identity is not held to batch's quotas.
    uint64_t lb = 0;
    ASSERT_TRUE(billing.GrantLease(&lb).ok());
    ASSERT_TRUE(billing.GrantLease(&lb).ok());
    ASSERT_TRUE(billing.GrantLease(&lb).ok());
    // Freed room is room again.
    ASSERT_TRUE(batch.Revoke(l1).ok());
    EXPECT_TRUE(batch.GrantLease(&l3).ok());
    EXPECT_TRUE(batch.Acquire("batch/3", l3, &r).ok() && r.acquired());
    ASSERT_TRUE(batch.Revoke(l2).ok());
    ASSERT_TRUE(batch.Revoke(l3).ok());
  });

  // The rate: a bucket of 2, refilled once per 20 s; the third call in a row is refused.
  const int leader = cluster.WaitForReady();
  Caller spammy(cluster.client_addr(leader), pki.Credentials(pki.client("nobody")), kSpammyToken);
  Caller billing(cluster.client_addr(leader), pki.Credentials(pki.client("billing")));
  uint64_t l = 0, l2 = 0, l3 = 0;
  ASSERT_TRUE(spammy.GrantLease(&l).ok());
  v1::AcquireResponse held;
  ASSERT_TRUE(spammy.Acquire("batch/r", l, &held).ok() && held.acquired());
  EXPECT_CODE(spammy.GrantLease(&l2), G::RESOURCE_EXHAUSTED, "quota rate");
  EXPECT_TRUE(billing.GrantLease(&l3).ok());  // others are unaffected
  // Over its rate, an identity can still keep its leases alive and give its locks back.
  EXPECT_TRUE(spammy.Renew(l).ok());
  EXPECT_TRUE(spammy.KeepAliveOnce(l).ok());
  EXPECT_TRUE(spammy.Release("batch/r", l, held.token()).ok());
  EXPECT_TRUE(spammy.Revoke(l).ok());
  for (const char* q : {"rate", "max_leases", "max_locks"}) {
    const std::string sample = "lockd_quota_exceeded_total{quota=\"" + std::string(q) + "\"}";
    EXPECT_GE(MetricValue(cluster, leader, sample), 1) << sample;
  }
}

TEST(Access, TokensWorkInPlaintextThroughAFollowerAndThePolicyReloadsOnSighup) {
  testing::TempDir dir;
  const std::string policy = dir.path() + "/access.toml";
  WriteFile(policy, Policy());
  ClusterOptions o;
  o.extra_flags = {"--access-file", policy};
  o.bearer_token = kOpsToken;
  Cluster cluster(o);
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary() << cluster.LogTails();
  const int follower = cluster.OtherLiveNode(leader);
  // The follower passes the caller's token on; the leader authenticates it again.
  Caller batch(cluster.client_addr(follower), grpc::InsecureChannelCredentials(), kBatchToken);
  Caller wrong(cluster.client_addr(follower), grpc::InsecureChannelCredentials(), "guess");
  Caller none(cluster.client_addr(follower), grpc::InsecureChannelCredentials());
  uint64_t lease = 0;
  ASSERT_TRUE(batch.GrantLease(&lease).ok());
  v1::GetLeaseResponse info;
  // batch has no read: only its own lease is its to see.
  ASSERT_TRUE(batch.GetLease(lease, &info).ok());
  EXPECT_EQ(info.lease().owner(), "batch");
  EXPECT_CODE(wrong.GrantLease(&lease), G::UNAUTHENTICATED, "bearer token is not one");
  EXPECT_CODE(none.GrantLease(&lease), G::UNAUTHENTICATED, "requires an identity");

  // lockctl takes the token from a flag, a file or the environment.
  const std::string token_file = dir.path() + "/ops.token";
  WriteFile(token_file, std::string(kOpsToken) + "\n");
  const auto lockctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {LOCKCTL_BINARY, "--endpoints", cluster.client_addr(follower),
                                     "--timeout-ms", "5000"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunCommand(argv, 30s);
  };
  auto listed = lockctl({"--auth-token-file", token_file, "leases", "list"});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_THAT(listed.output, HasSubstr(std::to_string(lease)));
  auto anonymous = lockctl({"leases", "list"});
  EXPECT_NE(anonymous.exit_code, 0) << anonymous.output;
  EXPECT_THAT(anonymous.output, HasSubstr("UNAUTHENTICATED"));
  auto denied = lockctl({"--auth-token", kBatchToken, "leases", "list"});
  EXPECT_NE(denied.exit_code, 0) << denied.output;
  EXPECT_THAT(denied.output, HasSubstr("PERMISSION_DENIED"));

  // Found by review: a node joining with --join asks Status before it is anybody; Status is not
  // authenticated, so it gets the member table and waits to be added, which needs admin.
  const int joiner = cluster.AddJoiningNode(4);
  v1::AddMemberRequest add;
  add.set_id(4);
  add.set_peer_addr(cluster.peer_addr(joiner));
  add.set_client_addr(cluster.client_addr(joiner));
  v1::AddMemberResponse added;
  EXPECT_CODE(batch.AddMember(), G::PERMISSION_DENIED, "lacks admin");
  grpc::ClientContext add_ctx;
  add_ctx.AddMetadata("authorization", std::string("Bearer ") + kOpsToken);
  add_ctx.set_deadline(std::chrono::system_clock::now() + 60s);
  const grpc::Status joined = cluster.cluster(leader).AddMember(&add_ctx, add, &added);
  ASSERT_TRUE(joined.ok()) << Describe(joined) << cluster.LogTail(joiner);
  // And serves, with the policy, as any member does.
  Caller via_joiner(cluster.client_addr(joiner), grpc::InsecureChannelCredentials(), kBatchToken);
  uint64_t through_joiner = 0;
  EXPECT_TRUE(via_joiner.GrantLease(&through_joiner).ok());
  EXPECT_CODE(via_joiner.ListLeases(), G::PERMISSION_DENIED, "lacks read");
  EXPECT_TRUE(via_joiner.Revoke(through_joiner).ok());  // batch's max_leases is 2

  // GetLease of one's own lease lists each grant's token (no `read` needed), and a grant stays
  // releasable when `lock` on its name is withdrawn (found by review: the library's sweep of
  // unowned grants needed GetLock, i.e. read; Release needed lock on the name).
  uint64_t keeper = 0;  // batch's second lease (max_leases 2), revoked below
  ASSERT_TRUE(batch.GrantLease(&keeper).ok());
  v1::AcquireResponse kept;
  const grpc::Status acquired = batch.Acquire("batch/keep", keeper, &kept);
  ASSERT_TRUE(acquired.ok() && kept.acquired()) << Describe(acquired);
  ASSERT_TRUE(batch.GetLease(keeper, &info).ok());
  ASSERT_EQ(info.lease().held_tokens_size(), 1);
  EXPECT_EQ(info.lease().held_tokens(0), kept.token());
  std::string moved = Policy();
  moved.replace(moved.find("lock = [\"batch/\"]"), std::string("lock = [\"batch/\"]").size(),
                "lock = [\"elsewhere/\"]");
  WriteFile(policy, moved);
  for (int i = 0; i < cluster.size(); ++i) kill(cluster.pid(i), SIGHUP);
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        v1::AcquireResponse r;
        // On the follower and, forwarded, at the leader: both reloaded.
        return batch.Acquire("batch/other", keeper, &r).error_code() == G::PERMISSION_DENIED;
      },
      10s));
  EXPECT_TRUE(batch.Release("batch/keep", keeper, kept.token()).ok());
  EXPECT_TRUE(batch.Revoke(keeper).ok());

  // A broken policy is refused on SIGHUP: the one in force stays.
  WriteFile(policy, Policy() + "\n[roles.typo]\nlokc = [\"x\"]\n");
  for (int i = 0; i < cluster.size(); ++i) kill(cluster.pid(i), SIGHUP);
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return cluster.LogTail(follower, 200).find("access policy not reloaded") !=
               std::string::npos;
      },
      10s))
      << cluster.LogTail(follower);
  EXPECT_TRUE(batch.GrantLease(&lease).ok());
  // Streams open when the policy changes are judged again under the new one (found by review: a
  // Watch kept streaming, and a KeepAlive on the leader kept renewing, for a removed identity).
  Caller ops_at_leader(cluster.client_addr(leader), grpc::InsecureChannelCredentials(), kOpsToken);
  Caller batch_at_leader(cluster.client_addr(leader), grpc::InsecureChannelCredentials(),
                         kBatchToken);
  std::atomic<bool> watching{false}, renewing{false};
  grpc::Status watch_end, keepalive_end;
  std::thread watcher([&] { watch_end = ops_at_leader.WatchHeld("", watching, 30s); });
  std::thread renewer([&] { keepalive_end = batch_at_leader.KeepAliveHeld(lease, renewing, 30s); });
  EXPECT_TRUE(testing::WaitFor([&] { return renewing.load(); }, 10s));
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        v1::AcquireResponse ev;  // an event, so the watch is known to be open
        (void)batch.Acquire("elsewhere/watched", lease, &ev);  // the policy in force
        return watching.load();
      },
      10s));

  // A policy without batch (its token is no identity any more) and without ops' read.
  std::string without = Policy();
  without = without.substr(0, without.find("[identities.batch]")) +
            without.substr(without.find("[identities.spammy]"));
  const std::string ops_role = "[roles.ops]\nadmin = [\"\"]\nread = [\"\"]\n";
  ASSERT_NE(without.find(ops_role), std::string::npos);
  without.replace(without.find(ops_role), ops_role.size(), "[roles.ops]\nadmin = [\"\"]\n");
  WriteFile(policy, without);
  for (int i = 0; i < cluster.size(); ++i) kill(cluster.pid(i), SIGHUP);
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        uint64_t l = 0;
        return batch.GrantLease(&l).error_code() == G::UNAUTHENTICATED;
      },
      10s));
  watcher.join();
  renewer.join();
  EXPECT_EQ(keepalive_end.error_code(), G::UNAUTHENTICATED) << Describe(keepalive_end);
  EXPECT_EQ(watch_end.error_code(), G::PERMISSION_DENIED) << Describe(watch_end);
}

// Found by review: a member started without --access-file could lead the others and serve anyone.
// Members agree on the setting now: such a member is refused by the others and never leads.
TEST(Access, AMemberWithoutThePolicyIsCutOffFromTheOthers) {
  testing::TempDir dir;
  const std::string policy = dir.path() + "/access.toml";
  WriteFile(policy, Policy());
  ClusterOptions o;
  o.bearer_token = kOpsToken;
  o.node_flags = [&](uint64_t id) {
    return id == 3 ? std::vector<std::string>{} : std::vector<std::string>{"--access-file", policy};
  };
  Cluster cluster(o);
  int leader = -1;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        leader = cluster.LeaderSeenBy(0);
        return leader == 0 || leader == 1;
      },
      30s))
      << cluster.StatusSummary();
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return cluster.LogTail(leader, 400).find("access control differ") != std::string::npos;
      },
      20s))
      << cluster.LogTail(leader);
  Caller anonymous(cluster.client_addr(2), grpc::InsecureChannelCredentials());
  uint64_t lease = 0;
  const grpc::Status s = anonymous.GrantLease(&lease);
  EXPECT_EQ(s.error_code(), G::UNAVAILABLE) << Describe(s);  // no leader it could reach
  EXPECT_NE(cluster.LeaderSeenBy(2), 2);
  Caller batch(cluster.client_addr(leader), grpc::InsecureChannelCredentials(), kBatchToken);
  EXPECT_TRUE(batch.GrantLease(&lease).ok());
}

TEST(Access, ANodeRefusesToStartOnABadPolicyNamingTheFileAndKey) {
  testing::TempDir dir;
  const std::string policy = dir.path() + "/access.toml";
  WriteFile(policy, "[identities.a]\ncerts = [\"a\"]\nroles = [\"missing\"]\n");
  auto r = testing::RunCommand(
      {LOCKD_BINARY, "--plaintext", "--data-dir", dir.path() + "/data", "--access-file", policy},
      20s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr(policy));
  EXPECT_THAT(r.output, HasSubstr("missing"));
  auto absent = testing::RunCommand({LOCKD_BINARY, "--plaintext", "--data-dir",
                                     dir.path() + "/data", "--access-file", dir.path() + "/no"},
                                    20s);
  EXPECT_NE(absent.exit_code, 0);
  EXPECT_THAT(absent.output, HasSubstr(dir.path() + "/no"));
}

}  // namespace
}  // namespace lockd::e2e
