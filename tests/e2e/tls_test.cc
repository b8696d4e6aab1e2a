// TLS on both ports against real clusters (issue 19, docs/security.md): lockctl and the client
// library with certificates; clients without one, with one from another CA or an expired one
// refused; a peer whose certificate does not name the member it claims to be refused; a node that
// will not start on a bad certificate; certificates rotated by SIGHUP while a lock stays held.

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <sstream>

#include "cluster_harness.h"
#include "lockd/client.h"
#include "lockd/peer/v1/peer.grpc.pb.h"
#include "support/test_pki.h"

namespace lockd::e2e {
namespace {

namespace lc = ::lockd::client;
using testing::Issue;
using testing::LeafSpec;
using testing::MakeCa;
using testing::MemberLeaf;
using testing::Pem;
using testing::WriteFile;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The certificates of a cluster, a client CA, and the bad ones, as files in a temp dir.
class Pki {
 public:
  Pki() {
    cluster_ca_ = MakeCa("cluster CA");
    client_ca_ = MakeCa("client CA");
    WriteFile(Path("cluster-ca.pem"), cluster_ca_.cert);
    WriteFile(Path("client-ca.pem"), client_ca_.cert);
    for (uint64_t id = 1; id <= 3; ++id)
      Write("node" + std::to_string(id), Issue(cluster_ca_, MemberLeaf(id)));
    LeafSpec client;
    client.cn = "billing";
    Write("client", Issue(client_ca_, client));
    LeafSpec expired = client;
    expired.not_before_s = -7200;
    expired.not_after_s = -3600;
    Write("expired-client", Issue(client_ca_, expired));
    Write("foreign-client", Issue(MakeCa("another CA"), client));
    // The cluster CA's, naming no member (what a CA shared with other uses might sign).
    LeafSpec stray = client;
    stray.cn = "stray";
    Write("stray-client", Issue(cluster_ca_, stray));
  }
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }
  void Write(const std::string& name, const Pem& pem) {
    WriteFile(Path(name + ".crt"), pem.cert);
    WriteFile(Path(name + ".key"), pem.key);
  }
  const Pem& cluster_ca() const { return cluster_ca_; }

  /// `roots`: what the harness's own channels trust (default: the cluster CA).
  ClusterOptions Options(const std::string& roots = "") const {
    ClusterOptions o;
    o.extra_flags = {"--peer-ca", Path("cluster-ca.pem"), "--tls-client-ca", Path("client-ca.pem")};
    o.node_flags = [this](uint64_t id) {
      const std::string n = Path("node" + std::to_string(id));
      return std::vector<std::string>{"--tls-cert", n + ".crt", "--tls-key", n + ".key"};
    };
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = roots.empty() ? cluster_ca_.cert : roots;
    ssl.pem_cert_chain = ReadAll(Path("client.crt"));
    ssl.pem_private_key = ReadAll(Path("client.key"));
    o.credentials = grpc::SslCredentials(ssl);
    return o;
  }

 private:
  testing::TempDir dir_;
  Pem cluster_ca_, client_ca_;
};

std::vector<std::string> Endpoints(Cluster& c) {
  std::vector<std::string> out;
  for (int i = 0; i < c.size(); ++i) out.push_back(c.client_addr(i));
  return out;
}

/// The client library's options for `cluster`, trusting `ca`, with the client CA's certificate.
lc::ClientOptions ClientOptionsFor(Cluster& cluster, const Pki& pki, const std::string& ca) {
  lc::ClientOptions o;
  o.endpoints = Endpoints(cluster);
  o.tls_ca_file = pki.Path(ca);
  o.tls_cert_file = pki.Path("client.crt");
  o.tls_key_file = pki.Path("client.key");
  return o;
}

/// lockctl status against node 0 with these TLS flags.
testing::CommandResult Lockctl(Cluster& c, std::vector<std::string> tls) {
  std::vector<std::string> argv = {LOCKCTL_BINARY, "--endpoints", c.client_addr(0), "--timeout-ms",
                                   "3000"};
  argv.insert(argv.end(), tls.begin(), tls.end());
  argv.push_back("status");
  return testing::RunCommand(argv, 20s);
}

TEST(Tls, ClientsOfTheClientCaAreServedAndEveryOtherClientIsRefused) {
  unsetenv("LOCKD_CACERT");
  unsetenv("LOCKD_CERT");
  unsetenv("LOCKD_KEY");
  Pki pki;
  Cluster cluster(pki.Options());  // its own Status calls go over mutual TLS
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();

  // The client library, through every node (followers forward to the leader over TLS).
  lc::ClientOptions o = ClientOptionsFor(cluster, pki, "cluster-ca.pem");
  auto client = lc::Client::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto lease = (*client)->GrantLease(5000ms, "tls");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  auto lock = (*client)->Acquire("tls/a", *lease);
  ASSERT_TRUE(lock.ok() && lock->held()) << (lock.ok() ? "" : lock.status().ToString());
  EXPECT_TRUE(lock->Release().ok());

  // lockctl, with flags and with the environment.
  const std::vector<std::string> good = {"--cacert", pki.Path("cluster-ca.pem"),
                                         "--cert",   pki.Path("client.crt"),
                                         "--key",    pki.Path("client.key")};
  auto ok = Lockctl(cluster, good);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("leader"), std::string::npos) << ok.output;
  setenv("LOCKD_CACERT", pki.Path("cluster-ca.pem").c_str(), 1);
  setenv("LOCKD_CERT", pki.Path("client.crt").c_str(), 1);
  setenv("LOCKD_KEY", pki.Path("client.key").c_str(), 1);
  auto from_env = Lockctl(cluster, {});
  unsetenv("LOCKD_CACERT");
  unsetenv("LOCKD_CERT");
  unsetenv("LOCKD_KEY");
  EXPECT_EQ(from_env.exit_code, 0) << from_env.output;
  // A member's certificate (the cluster CA's, naming the member) is served too: it is what a
  // follower presents when it forwards a call to the leader.
  auto member = Lockctl(cluster, {"--cacert", pki.Path("cluster-ca.pem"), "--cert",
                                  pki.Path("node1.crt"), "--key", pki.Path("node1.key")});
  EXPECT_EQ(member.exit_code, 0) << member.output;

  // Refused: no certificate, one from another CA, an expired one, and plaintext.
  const std::vector<std::pair<std::string, std::vector<std::string>>> refused = {
      {"no client certificate", {"--cacert", pki.Path("cluster-ca.pem")}},
      {"another CA's",
       {"--cacert", pki.Path("cluster-ca.pem"), "--cert", pki.Path("foreign-client.crt"), "--key",
        pki.Path("foreign-client.key")}},
      {"expired",
       {"--cacert", pki.Path("cluster-ca.pem"), "--cert", pki.Path("expired-client.crt"), "--key",
        pki.Path("expired-client.key")}},
      // Found by the TLS review: any certificate the cluster CA signed was a client.
      {"the cluster CA's, naming no member",
       {"--cacert", pki.Path("cluster-ca.pem"), "--cert", pki.Path("stray-client.crt"), "--key",
        pki.Path("stray-client.key")}},
      {"plaintext", {}},
  };
  for (const auto& [what, flags] : refused) {
    auto r = Lockctl(cluster, flags);
    EXPECT_NE(r.exit_code, 0) << what << ": " << r.output;
    EXPECT_EQ(r.output.find("leader"), std::string::npos) << what << ": " << r.output;
  }
  // The client library without its certificate gets nowhere either.
  o.tls_cert_file.clear();
  o.tls_key_file.clear();
  o.call_timeout = 2s;
  auto anonymous = lc::Client::Connect(o);
  ASSERT_TRUE(anonymous.ok());
  EXPECT_FALSE((*anonymous)->GrantLease(5000ms, "anonymous").ok());
  // A bad TLS option is a clear error at once.
  o.tls_ca_file = pki.Path("missing.pem");
  auto bad = lc::Client::Connect(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cannot read the CA file"), std::string::npos)
      << bad.status().ToString();
}

/// Opens a peer stream to node `i` as the holder of `pem`, claiming to be member `from`; returns
/// the node's answer to the Hello (error text), or the stream's status when there was none.
std::string HelloAs(Cluster& c, int i, const Pki& pki, const Pem& pem, uint64_t from) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pki.cluster_ca().cert;
  ssl.pem_cert_chain = pem.cert;
  ssl.pem_private_key = pem.key;
  auto stub = lockd::peer::v1::PeerService::NewStub(
      grpc::CreateChannel(c.peer_addr(i), grpc::SslCredentials(ssl)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  auto stream = stub->Stream(&ctx);
  lockd::peer::v1::Frame frame;
  frame.mutable_hello()->set_from(from);
  frame.mutable_hello()->set_to(c.id(i));
  stream->Write(frame);
  lockd::peer::v1::Reply reply;
  if (stream->Read(&reply)) return reply.accepted() ? "accepted" : reply.error();
  stream->WritesDone();
  const grpc::Status s = stream->Finish();
  return "no answer: " + Describe(s);
}

TEST(Tls, APeerMustPresentACertificateOfTheClusterCaNamingTheMemberItClaims) {
  Pki pki;
  Cluster cluster(pki.Options());
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  // Member 9's certificate (the cluster CA's) claiming to be member 2.
  const Pem nine = Issue(pki.cluster_ca(), MemberLeaf(9));
  const std::string why = HelloAs(cluster, 0, pki, nine, 2);
  EXPECT_NE(why.find("claims to be node 2 but its certificate names member 9"), std::string::npos)
      << why;
  EXPECT_NE(ReadAll(cluster.log_path(0)).find("its certificate names member 9"), std::string::npos);
  // A client certificate names no member at all.
  LeafSpec plain;
  plain.cn = "billing";
  const std::string anonymous = HelloAs(cluster, 0, pki, Issue(pki.cluster_ca(), plain), 2);
  EXPECT_NE(anonymous.find("its certificate names no member"), std::string::npos) << anonymous;
  // Member 2's certificate from another CA: no TLS session at all.
  const std::string foreign =
      HelloAs(cluster, 0, pki, Issue(MakeCa("another CA"), MemberLeaf(2)), 2);
  EXPECT_NE(foreign.find("no answer"), std::string::npos) << foreign;
  // The cluster carries on.
  EXPECT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
}

TEST(Tls, ANodeRefusesToStartOnABadCertificate) {
  Pki pki;
  ClusterOptions o = pki.Options();
  o.nodes = 1;
  o.start = false;
  Cluster cluster(o);
  LeafSpec expired = MemberLeaf(1);
  expired.not_before_s = -7200;
  expired.not_after_s = -3600;
  pki.Write("expired1", Issue(pki.cluster_ca(), expired));
  pki.Write("named2", Issue(pki.cluster_ca(), MemberLeaf(2)));
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--tls-cert", pki.Path("expired1.crt"), "--tls-key", pki.Path("expired1.key")},
       "expired on"},
      {{"--tls-cert", pki.Path("named2.crt"), "--tls-key", pki.Path("named2.key")},
       "does not name this member: it needs the URI SAN urn:lockd:member:1"},
      {{"--tls-cert", pki.Path("node1.crt"), "--tls-key", pki.Path("node2.key")},
       "is not the key of the certificate"},
      {{"--tls-cert", pki.Path("node1.crt"), "--tls-key", pki.Path("nope.key")},
       "cannot read --tls-key"},
  };
  for (const auto& [flags, expected] : cases) {
    std::vector<std::string> argv = {LOCKD_BINARY,
                                     "--id",
                                     "1",
                                     "--data-dir",
                                     cluster.data_dir(0),
                                     "--client-addr",
                                     cluster.client_addr(0),
                                     "--peer-addr",
                                     cluster.peer_addr(0),
                                     "--http-addr",
                                     cluster.http_addr(0),
                                     "--peer-ca",
                                     pki.Path("cluster-ca.pem")};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto r = testing::RunCommand(argv, 20s);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << r.output;
  }
  // TLS needs all three files.
  auto r = testing::RunCommand({LOCKD_BINARY, "--id", "1", "--data-dir", cluster.data_dir(0),
                                "--tls-cert", pki.Path("node1.crt")},
                               20s);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--tls-key is required with TLS"), std::string::npos) << r.output;
}

TEST(Tls, CertificatesRotateOnSighupWhileALockStaysHeld) {
  Pki pki;
  // Rotation to a new cluster CA, the way an operator does it: the new CA is trusted everywhere
  // first (clients and --peer-ca bundles), then each node's certificate is replaced.
  const Pem next_ca = MakeCa("next cluster CA");
  WriteFile(pki.Path("next-ca.pem"), next_ca.cert);
  WriteFile(pki.Path("both-cas.pem"), pki.cluster_ca().cert + next_ca.cert);
  Cluster cluster(pki.Options(pki.cluster_ca().cert + next_ca.cert));
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();

  auto client = lc::Client::Connect(ClientOptionsFor(cluster, pki, "both-cas.pem"));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto lease = (*client)->GrantLease(3000ms, "rotation");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  auto lock = (*client)->Acquire("rotate/me", *lease);
  ASSERT_TRUE(lock.ok() && lock->held());
  const uint64_t token = lock->token();

  const std::vector<std::string> only_next = {"--cacert", pki.Path("next-ca.pem"),
                                              "--cert",   pki.Path("client.crt"),
                                              "--key",    pki.Path("client.key")};
  EXPECT_NE(Lockctl(cluster, only_next).exit_code, 0) << "the old certificates serve until SIGHUP";

  auto hup_all = [&] {
    for (int i = 0; i < cluster.size(); ++i) ::kill(cluster.pid(i), SIGHUP);
  };
  // 1. Every node trusts both CAs on the peer port.
  WriteFile(pki.Path("cluster-ca.pem"), pki.cluster_ca().cert + next_ca.cert);
  hup_all();
  std::this_thread::sleep_for(1500ms);
  // 2. A broken file is refused by the reload, and the node serves on with the old ones.
  WriteFile(pki.Path("node1.key"), "not a key");
  ::kill(cluster.pid(0), SIGHUP);
  std::this_thread::sleep_for(500ms);
  EXPECT_NE(ReadAll(cluster.log_path(0)).find("certificates not reloaded, the old ones stay"),
            std::string::npos);
  EXPECT_EQ(Lockctl(cluster, {"--cacert", pki.Path("cluster-ca.pem"), "--cert",
                              pki.Path("client.crt"), "--key", pki.Path("client.key")})
                .exit_code,
            0);
  // 3. The new certificates, then SIGHUP: served within the watchers' second.
  for (uint64_t id = 1; id <= 3; ++id)
    pki.Write("node" + std::to_string(id), Issue(next_ca, MemberLeaf(id)));
  hup_all();
  bool served = false;
  for (int k = 0; k < 20 && !served; ++k) {
    std::this_thread::sleep_for(500ms);
    served = Lockctl(cluster, only_next).exit_code == 0;
  }
  EXPECT_TRUE(served) << "the new certificate is not served after SIGHUP";
  // The cluster kept its leader and the lock throughout; peers reconnect with the new ones.
  std::this_thread::sleep_for(3s);  // a lease TTL: renewals went on over the rotation
  EXPECT_TRUE(lock->held()) << lock->lost_reason();
  auto info = (*client)->GetLock("rotate/me");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  ASSERT_EQ(info->holders.size(), 1u);
  EXPECT_EQ(info->holders[0].token, token);
  EXPECT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  EXPECT_TRUE(lock->Release().ok());
}

}  // namespace
}  // namespace lockd::e2e
