#include "server/options.h"

#include <gtest/gtest.h>

namespace lockd::server {
namespace {

TEST(Options, DefaultsAreValid) {
  EXPECT_TRUE(Validate(NodeOptions{}).ok());
}

TEST(Options, EachBadSettingIsNamedInTheError) {
  NodeOptions o;
  o.node_id = 0;
  EXPECT_NE(Validate(o).message().find("--id"), std::string::npos);
  o = NodeOptions{};
  o.peer_addr = "nope";
  EXPECT_NE(Validate(o).message().find("--peer-addr"), std::string::npos);
  o = NodeOptions{};
  o.http_addr = o.client_addr;
  EXPECT_NE(Validate(o).message().find("must all differ"), std::string::npos);
  o = NodeOptions{};
  o.log_level = "loud";
  EXPECT_NE(Validate(o).message().find("--log-level"), std::string::npos);
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
