// The client library as an outside project sees it (issue 14): `cmake --install` of the client
// component into a temporary prefix, then examples/hello built against it twice, through
// find_package(lockd) (target lockd::client) and through pkg-config (lockd.pc), and each build
// run against a real 1-node cluster.
#include <gtest/gtest.h>

#include "cluster_harness.h"

namespace lockd::e2e {
namespace {

testing::CommandResult Sh(const std::string& script, Ms timeout = 180s) {
  return testing::RunCommand({"/bin/sh", "-c", script}, timeout);
}

TEST(ClientInstall, AnOutsideProjectBuildsAgainstTheInstalledPackageAndRuns) {
  ClusterOptions one;
  one.nodes = 1;
  Cluster cluster(one);
  ASSERT_GE(cluster.WaitForReady(), 0) << cluster.StatusSummary();
  testing::TempDir tmp;
  const std::string prefix = tmp.path() + "/prefix";
  const std::string env = "LOCKD_ENDPOINTS=" + cluster.client_addr(0);

  auto installed =
      Sh("cmake --install '" LOCKD_BUILD_DIR "' --component client --prefix '" + prefix + "' 2>&1");
  ASSERT_EQ(installed.exit_code, 0) << installed.output;
  auto headers = Sh("ls '" + prefix + "/include/lockd'");
  EXPECT_NE(headers.output.find("client.h"), std::string::npos) << headers.output;
  EXPECT_NE(headers.output.find("fence.h"), std::string::npos);

  // find_package(lockd) → lockd::client.
  const std::string build = tmp.path() + "/build";
  auto configured = Sh("cmake -S '" LOCKD_SOURCE_DIR "/examples/hello' -B '" + build +
                       "' -DCMAKE_PREFIX_PATH='" + prefix + "' -DCMAKE_BUILD_TYPE=Release 2>&1");
  ASSERT_EQ(configured.exit_code, 0) << configured.output;
  auto built = Sh("cmake --build '" + build + "' 2>&1");
  ASSERT_EQ(built.exit_code, 0) << built.output;
  auto ran = Sh(env + " '" + build + "/hello' install/cmake 2>&1", 30s);
  EXPECT_EQ(ran.exit_code, 0) << ran.output;
  EXPECT_NE(ran.output.find("acquired install/cmake"), std::string::npos) << ran.output;
  EXPECT_NE(ran.output.find("released: OK"), std::string::npos) << ran.output;

  // pkg-config.
  auto pc =
      Sh("PKG_CONFIG_PATH=$(dirname $(find '" + prefix +
         "' -name lockd.pc)) && export PKG_CONFIG_PATH && c++ -std=c++20 -O0 '" LOCKD_SOURCE_DIR
         "/examples/hello/main.cc' -o '" +
         tmp.path() + "/hello-pc' $(pkg-config --cflags --libs lockd) 2>&1");
  ASSERT_EQ(pc.exit_code, 0) << pc.output;
  auto ran_pc = Sh(env + " '" + tmp.path() + "/hello-pc' install/pkg-config 2>&1", 30s);
  EXPECT_EQ(ran_pc.exit_code, 0) << ran_pc.output;
  EXPECT_NE(ran_pc.output.find("acquired install/pkg-config"), std::string::npos) << ran_pc.output;
}

}  // namespace
}  // namespace lockd::e2e
