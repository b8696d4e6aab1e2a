// lockd/fence_adapters.h: the statements and argv the adapters are called with, and the
// arguments they refuse before anything is sent (no server needed).
#include <gtest/gtest.h>
#include <lockd/fence_adapters.h>

#include <fstream>
#include <sstream>

#include "lock/types.h"

namespace lockd::fence {
namespace {

using client::StatusCode;

TEST(FenceBuilders, PostgresCallIsAParameterisedSelectOfTheWriteOrReadFunction) {
  auto write = PostgresCall("wallet/alice", 18446744073709551615ull, "00ff");
  ASSERT_TRUE(write.ok()) << write.status().ToString();
  EXPECT_EQ(write->sql, "SELECT lockd_fence($1, $2, $3)");
  EXPECT_EQ(write->params,
            (std::vector<std::string>{"wallet/alice", "18446744073709551615", "00ff"}));
  ASSERT_EQ(write->Values().size(), 3u);
  EXPECT_STREQ(write->Values()[1], "18446744073709551615");
  auto read = PostgresCall("wallet/alice", 7, "00ff", Access::kRead);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->sql, "SELECT lockd_fence_read($1, $2, $3)");
}

TEST(FenceBuilders, RedisCallIsTheEvalshaOrFcallArgv) {
  auto set = RedisCall("SET", "wallet/alice", 42, "abc", "0123sha", "{wallet/alice}:balance", "30");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->argv, (std::vector<std::string>{
                           "EVALSHA", "0123sha", "2", "{wallet/alice}:lockd-fence",
                           "{wallet/alice}:balance", "SET", "wallet/alice", "42", "abc", "30"}));
  auto get = RedisCall("GET", "n", 1, "abc", "", "k", {}, "my-fence-key");
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->argv, (std::vector<std::string>{"FCALL", "lockd_fence", "2", "my-fence-key", "k",
                                                 "GET", "n", "1", "abc"}));
  // Values may hold any bytes: Argv/Lengths carry them whole.
  auto binary = RedisCall("SET", "n", 1, "abc", "sha", "k", std::string("a\0b", 3));
  ASSERT_TRUE(binary.ok());
  EXPECT_EQ(binary->Lengths().back(), 3u);
  EXPECT_EQ(binary->Argv().size(), binary->argv.size());
}

TEST(FenceBuilders, RedisPinningAppendsTheAdmitList) {
  auto get = RedisCall("GET", "n", 1, "abc", "sha", "k", {}, {}, {"abc", "DEF0"});
  ASSERT_TRUE(get.ok()) << get.status().ToString();
  EXPECT_EQ(get->argv, (std::vector<std::string>{"EVALSHA", "sha", "2", "{n}:lockd-fence", "k",
                                                 "GET", "n", "1", "abc", "ADMIT", "abc,DEF0"}));
  auto set = RedisCall("SET", "n", 1, "abc", "sha", "k", "v", {}, {"abc"});
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->argv.back(), "abc");
  EXPECT_EQ(set->argv[set->argv.size() - 3], "v");
  EXPECT_EQ(RedisCall("GET", "n", 1, "abc", "sha", "k", {}, {}, {"abc", ""}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisCall("GET", "n", 1, "abc", "sha", "k", {}, {}, {"a,b"}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(FenceBuilders, BadArgumentsAreRefusedBeforeAnythingIsSent) {
  const std::string overlong(513, 'n');
  EXPECT_EQ(PostgresCall("n", 0, "ab").status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(PostgresCall("n", 0, "ab").status().message().find("fence 0"), std::string::npos);
  EXPECT_EQ(PostgresCall("", 1, "ab").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresCall(overlong, 1, "ab").status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(PostgresCall(std::string(512, 'n'), 1, "ab").ok());
  EXPECT_EQ(PostgresCall("n", 1, "").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresCall("n", 1, "xyz").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresCall("n", 1, std::string(65, 'a')).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisCall("DEL", "n", 1, "ab", "sha", "k").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisCall("SET", "n", 1, "ab", "sha", "").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisCall("GET", "n", 0, "ab", "sha", "k").status().code(),
            StatusCode::kInvalidArgument);
  // A Lock that was never acquired has no fence to present.
  client::Lock none;
  auto refused = PostgresCall(none);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("was not acquired"), std::string::npos);
  EXPECT_EQ(RedisSet(none, "sha", "k", "v").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisGet(none, "sha", "k").status().code(), StatusCode::kInvalidArgument);
}

TEST(FenceBuilders, NamesWithANulAreRefused) {
  const std::string nul("a\0b", 3);
  auto refused = PostgresCall(nul, 1, "ab");
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("NUL"), std::string::npos);
  EXPECT_EQ(RedisCall("GET", nul, 1, "ab", "sha", "k").status().code(),
            StatusCode::kInvalidArgument);
}

// One limit on lock names: lockd's default max_name_bytes, in the builders and both adapters.
TEST(FenceBuilders, TheNameLimitIsLockdsDefaultEverywhere) {
  static_assert(kMaxNameBytes == lock::Limits{}.max_name_bytes);
  const std::string k = std::to_string(kMaxNameBytes);
  const auto read = [](const std::string& relative) {
    std::ifstream in(std::string(LOCKD_SOURCE_DIR) + "/" + relative);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  const std::string sql = read("adapters/postgresql/lockd_fence.sql");
  const std::string lua = read("adapters/redis/lockd_fence.lua");
  EXPECT_NE(sql.find("octet_length(lock_name) BETWEEN 1 AND " + k + ")"), std::string::npos);
  EXPECT_NE(sql.find("octet_length(p_name) > " + k + " THEN"), std::string::npos);
  EXPECT_NE(lua.find("#name > " + k + " then"), std::string::npos);
  EXPECT_EQ(PostgresCall(std::string(kMaxNameBytes + 1, 'n'), 1, "ab").status().message(),
            "lockd::fence: lock name must be 1.." + k + " bytes, got " +
                std::to_string(kMaxNameBytes + 1));
}

TEST(FenceBuilders, TheFenceKeyIsHashTaggedWithTheLockName) {
  EXPECT_EQ(RedisFenceKey("seat/42"), "{seat/42}:lockd-fence");
  // A '}' in the name would end the tag early: an explicit fence key is needed.
  EXPECT_EQ(RedisCall("GET", "a}b", 1, "ab", "sha", "k").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(RedisCall("GET", "a}b", 1, "ab", "sha", "k", {}, "fk").ok());
  // The fence key is never the data key.
  EXPECT_EQ(RedisCall("SET", "n", 1, "ab", "sha", "{n}:lockd-fence", "v").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisCall("GET", "n", 1, "ab", "sha", "same", {}, "same").status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lockd::fence
