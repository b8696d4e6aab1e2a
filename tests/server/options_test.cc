#include "server/options.h"

#include <gtest/gtest.h>

namespace lockd::server {
namespace {

/// The defaults, said explicitly to serve without TLS.
NodeOptions Dev() {
  NodeOptions o;
  o.plaintext = true;
  return o;
}

TEST(Options, DefaultsAreValidWithPlaintextSaidExplicitly) {
  EXPECT_TRUE(Validate(Dev()).ok());
  // Found by the issue: plaintext was what a node without TLS flags fell into.
  const Status none = Validate(NodeOptions{});
  EXPECT_EQ(none.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(none.message().find("give --tls-cert, --tls-key and --peer-ca"), std::string::npos)
      << none.message();
  EXPECT_NE(none.message().find("or --plaintext"), std::string::npos) << none.message();
}

TEST(Options, EachBadSettingIsNamedInTheError) {
  NodeOptions o = Dev();
  o.node_id = 0;
  EXPECT_NE(Validate(o).message().find("--id"), std::string::npos);
  o = Dev();
  o.peer_addr = "nope";
  EXPECT_NE(Validate(o).message().find("--peer-addr"), std::string::npos);
  o = Dev();
  o.http_addr = o.client_addr;
  EXPECT_NE(Validate(o).message().find("must all differ"), std::string::npos);
  o = Dev();
  o.log_level = "loud";
  EXPECT_NE(Validate(o).message().find("--log-level"), std::string::npos);
  o = Dev();
  o.join = ",,";
  EXPECT_NE(Validate(o).message().find("--join names no address"), std::string::npos);
}

TEST(Options, TlsNeedsItsThreeFilesAndExcludesPlaintext) {
  NodeOptions o;
  EXPECT_FALSE(UsesTls(o));
  o.tls_cert = "node.crt";
  EXPECT_TRUE(UsesTls(o));
  EXPECT_NE(Validate(o).message().find("--tls-key is required with TLS"), std::string::npos)
      << Validate(o).message();
  o.tls_key = "node.key";
  EXPECT_NE(Validate(o).message().find("--peer-ca is required"), std::string::npos);
  o.peer_ca = "ca.pem";
  EXPECT_TRUE(Validate(o).ok()) << Validate(o).message();
  o.plaintext = true;
  EXPECT_NE(Validate(o).message().find("--plaintext excludes"), std::string::npos);
}

TEST(Options, ClusterTimingAndLimitsAreValidatedWithTheFlagNamed) {
  NodeOptions o = Dev();
  o.initial_cluster = "2=127.0.0.1:7502/127.0.0.1:7402";
  EXPECT_NE(Validate(o).message().find("does not name this node"), std::string::npos);
  o.initial_cluster = "1=127.0.0.1:9999/127.0.0.1:7401";
  EXPECT_NE(Validate(o).message().find("--peer-addr"), std::string::npos);
  o.initial_cluster = "1=127.0.0.1:7501/127.0.0.1:7401,2=127.0.0.1:7502/127.0.0.1:7402";
  EXPECT_TRUE(Validate(o).ok()) << Validate(o).ToString();
  o = Dev();
  o.election_min_ms = 2 * o.tick_ms;
  EXPECT_NE(Validate(o).message().find("--election-min-ms"), std::string::npos);
  o = Dev();
  o.drift = 0.5;
  EXPECT_NE(Validate(o).message().find("--drift"), std::string::npos);
  o = Dev();
  o.min_ttl_ms = o.max_ttl_ms + 1;
  EXPECT_NE(Validate(o).message().find("--min-ttl-ms"), std::string::npos);
  o = Dev();
  o.max_locks = 0;
  EXPECT_NE(Validate(o).message().find("--max-locks"), std::string::npos);
  o = Dev();
  o.max_request_bytes = 10;
  EXPECT_NE(Validate(o).message().find("--max-request-bytes"), std::string::npos);
  o = Dev();
  o.max_snapshot_bytes = 1000;
  EXPECT_NE(Validate(o).message().find("--max-snapshot-bytes"), std::string::npos);
  o = Dev();
  o.snapshot_entries = 0;  // never snapshot: allowed
  EXPECT_TRUE(Validate(o).ok());
  o = Dev();
  o.commit_flush_us = 0;  // no deferral: allowed
  EXPECT_TRUE(Validate(o).ok());
  o.commit_flush_us = 100'001;
  EXPECT_NE(Validate(o).message().find("--commit-flush-us"), std::string::npos);
  o = Dev();
  o.cluster_token = "";
  EXPECT_NE(Validate(o).message().find("--cluster-token"), std::string::npos);
}

TEST(InitialCluster, ParsesMembersInOrder) {
  auto m = ParseInitialCluster("1=127.0.0.1:7501/127.0.0.1:7401,2=127.0.0.1:7502/127.0.0.1:7402");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[1], (MemberSpec{2, "127.0.0.1:7502", "127.0.0.1:7402"}));
}

TEST(InitialCluster, RejectsMalformedDuplicateAndEmptySpecs) {
  for (const char* bad : {"", "1=a:1", "x=a:1/b:2", "0=a:1/b:2", "1=a:1/b:2,1=c:3/d:4",
                          "1=a:1/b:2,2=a:1/c:3", "1=a:99999/b:2", "1/a:1=b:2"}) {
    auto m = ParseInitialCluster(bad);
    EXPECT_FALSE(m.ok()) << bad;
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace lockd::server
