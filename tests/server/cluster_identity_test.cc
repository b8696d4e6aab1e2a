// The cluster identity file: derived ids agree across members, survive a round trip, and damage
// or a newer format is refused with an error naming it.
#include "server/cluster_identity.h"

#include <gtest/gtest.h>

#include "storage/crc32c.h"
#include "support/process.h"

namespace lockd::server {
namespace {

std::vector<MemberSpec> Three() {
  return {{1, "10.0.0.1:7501", "10.0.0.1:7401"},
          {2, "10.0.0.2:7501", "10.0.0.2:7401"},
          {3, "10.0.0.3:7501", "10.0.0.3:7401"}};
}

TEST(ClusterIdentity, MembersStartedWithTheSameFlagsDeriveTheSameId) {
  auto a = Three();
  auto b = Three();
  std::swap(b[0], b[2]);  // order of the flag does not matter
  EXPECT_EQ(DeriveClusterId("lockd", a), DeriveClusterId("lockd", b));
  EXPECT_EQ(DeriveClusterId("lockd", a).size(), 16u);
}

TEST(ClusterIdentity, TokenAndMembersChangeTheId) {
  auto a = Three();
  EXPECT_NE(DeriveClusterId("lockd", a), DeriveClusterId("prod-eu", a));
  auto b = a;
  b[1].peer_addr = "10.0.0.9:7501";
  EXPECT_NE(DeriveClusterId("lockd", a), DeriveClusterId("lockd", b));
}

TEST(ClusterIdentity, SavedIdentityLoadsBack) {
  testing::TempDir dir;
  auto none = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ClusterIdentity id{DeriveClusterId("t", Three()), Three()};
  ASSERT_TRUE(SaveClusterIdentity(dir.path(), id).ok());
  auto back = LoadClusterIdentity(dir.path());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE(back->has_value());
  EXPECT_EQ(**back, id);
}

TEST(ClusterIdentity, DamageIsRefused) {
  ClusterIdentity id{"00112233aabbccdd", Three()};
  std::string text = EncodeClusterIdentity(id);
  for (size_t i = 0; i + 8 < text.size(); i += 7) {
    std::string bad = text;
    bad[i] = bad[i] == 'x' ? 'y' : 'x';
    EXPECT_FALSE(DecodeClusterIdentity(bad).ok()) << "flipped byte " << i;
  }
  EXPECT_FALSE(DecodeClusterIdentity(text.substr(0, text.size() / 2)).ok());
  EXPECT_FALSE(DecodeClusterIdentity("").ok());
}

TEST(ClusterIdentity, ANewerFormatIsRefused) {
  ClusterIdentity id{"00112233aabbccdd", Three()};
  const std::string text = EncodeClusterIdentity(id);
  std::string body = text.substr(0, text.rfind("crc32c "));
  body.replace(0, body.find('\n'), "lockd-cluster 2");
  const std::string newer = body + "crc32c " + std::to_string(storage::Crc32c(body)) + "\n";
  auto r = DecodeClusterIdentity(newer);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos);
}

}  // namespace
}  // namespace lockd::server
