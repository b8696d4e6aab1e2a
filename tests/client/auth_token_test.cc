// The bearer token (ClientOptions::auth_token, auth_token_file, $LOCKD_AUTH_TOKEN,
// $LOCKD_AUTH_TOKEN_FILE) against a scripted LockService that records each call's
// `authorization` metadata: every kind of call carries it (blocking and callback unary calls,
// the KeepAlive stream, Watch, the background revoke, a leader's channel made later), none does
// without a token, and a token that cannot be sent is refused at Connect without being shown.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <future>
#include <optional>
#include <set>
#include <string>

#include "client/credentials.h"
#include "fake_lock_service.h"
#include "lockd/client.h"
#include "support/process.h"

namespace lockd::client {
namespace {

using namespace std::chrono_literals;

/// Clears $LOCKD_AUTH_TOKEN and $LOCKD_AUTH_TOKEN_FILE for the test and puts back what they were.
class AuthTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables) {
      const char* v = std::getenv(name);
      saved_.emplace_back(name, v ? std::optional<std::string>(v) : std::nullopt);
      unsetenv(name);
    }
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) {
        setenv(name, value->c_str(), 1);
      } else {
        unsetenv(name);
      }
    }
  }

  Result<std::unique_ptr<Client>> Connect(ClientOptions o) {
    if (o.endpoints.empty()) o.endpoints = {a_.endpoint};
    o.call_timeout = 3s;
    return Client::Connect(std::move(o));
  }

  /// What `fake` saw in its calls' `authorization` headers, by method.
  static std::map<std::string, std::set<std::string>> Seen(FakeLockService& fake) {
    return fake.With([&] {
      std::map<std::string, std::set<std::string>> out;
      for (const auto& [method, value] : fake.authorization) out[method].insert(value);
      return out;
    });
  }

  /// The header one GrantLease carried (the only call made).
  std::string HeaderOfOneCall(ClientOptions o) {
    auto client = Connect(std::move(o));
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    if (!client.ok()) return "<no client>";
    EXPECT_TRUE((*client)->GrantLease(10s, "t").ok());
    const auto seen = Seen(fake_);
    fake_.With([&] { fake_.authorization.clear(); });
    const auto it = seen.find("GrantLease");
    if (it == seen.end() || it->second.size() != 1) return "<none or several>";
    return *it->second.begin();
  }

  std::string WriteFile(const std::string& name, const std::string& contents) {
    const std::string path = dir_.path() + "/" + name;
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

  static constexpr const char* kVariables[] = {"LOCKD_AUTH_TOKEN", "LOCKD_AUTH_TOKEN_FILE"};
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
  testing::TempDir dir_;
  FakeServer a_;
  FakeLockService& fake_ = a_.service;
};

TEST_F(AuthTokenTest, EveryKindOfCallCarriesTheBearerHeader) {
  const std::string token = "eyJhbGciOi.J9-_~+/abc==";
  const std::string header = "Bearer " + token;
  // a_ names b_ the leader: the client dials it on a channel it makes later.
  FakeServer b;
  fake_.leader = b.endpoint;
  ClientOptions o;
  o.auth_token = token;
  auto client = Connect(o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto lease = (*client)->GrantLease(3000ms, "t");  // a_: its answer names b_ the leader
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  // The KeepAlive stream (renewals about every second at this TTL).
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return a_.service.With([&] { return a_.service.renewals; }) + b.service.With([&] {
          return b.service.renewals;
        }) >= 1;
      },
      10s));
  auto lock = (*client)->Acquire("auth/sync", *lease);  // blocking unary
  ASSERT_TRUE(lock.ok() && lock->held()) << lock.status().ToString();
  std::promise<Result<Lock>> async_result;
  (*client)->AcquireAsync("auth/async", *lease, {},
                          [&](Result<Lock> r) { async_result.set_value(std::move(r)); });
  auto async_lock = async_result.get_future().get();  // callback unary
  ASSERT_TRUE(async_lock.ok() && async_lock->held()) << async_lock.status().ToString();
  ASSERT_TRUE((*client)->GetLock("auth/sync").ok());
  ASSERT_TRUE((*client)->GetLease((*lease)->id()).ok());
  int events = 0;
  ASSERT_TRUE((*client)->Watch("auth/sync", false, {}, [&](const LockEvent&) { ++events; }).ok());
  EXPECT_EQ(events, 1);
  EXPECT_TRUE(lock->Release().ok());
  std::promise<Status> released;
  async_lock->ReleaseAsync([&](Status s) { released.set_value(std::move(s)); });
  EXPECT_TRUE(released.get_future().get().ok());
  client->reset();  // revokes the lease

  std::map<std::string, std::set<std::string>> seen = Seen(a_.service);
  for (const auto& [method, values] : Seen(b.service)) {
    seen[method].insert(values.begin(), values.end());
  }
  for (const char* method : {"GrantLease", "KeepAlive", "Acquire", "GetLock", "GetLease", "Watch",
                             "Release", "RevokeLease"}) {
    ASSERT_TRUE(seen.contains(method)) << method << " was not called";
    EXPECT_EQ(seen[method], std::set<std::string>{header}) << method;
  }
  EXPECT_FALSE(Seen(b.service).empty()) << "no call went to the leader's channel";
}

TEST_F(AuthTokenTest, NoTokenSendsNoHeader) {
  auto client = Connect({});
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto lease = (*client)->GrantLease(3000ms, "t");
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(
      testing::WaitFor([&] { return fake_.With([&] { return fake_.renewals >= 1; }); }, 10s));
  ASSERT_TRUE((*client)->Watch("x", true, {}, [](const LockEvent&) {}).ok());
  const auto seen = Seen(fake_);
  ASSERT_TRUE(seen.contains("KeepAlive") && seen.contains("Watch"));
  for (const auto& [method, values] : seen) {
    EXPECT_EQ(values, std::set<std::string>{""}) << method;
  }
}

TEST_F(AuthTokenTest, TheEnvironmentGivesTheTokenWhenTheOptionsDoNot) {
  setenv("LOCKD_AUTH_TOKEN", "from-env", 1);
  EXPECT_EQ(HeaderOfOneCall({}), "Bearer from-env");
  ClientOptions o;
  o.auth_token = "from-options";
  EXPECT_EQ(HeaderOfOneCall(o), "Bearer from-options");
  // A file in the options also overrides the environment's token.
  ClientOptions f;
  f.auth_token_file = WriteFile("token", "from-file\n");
  EXPECT_EQ(HeaderOfOneCall(f), "Bearer from-file");
}

TEST_F(AuthTokenTest, ATokenFileIsReadWithoutItsTrailingWhitespace) {
  const std::string path = WriteFile("token", "s3cr3t.t0ken\r\n \n\t");
  ClientOptions o;
  o.auth_token_file = path;
  EXPECT_EQ(HeaderOfOneCall(o), "Bearer s3cr3t.t0ken");
  setenv("LOCKD_AUTH_TOKEN_FILE", path.c_str(), 1);
  EXPECT_EQ(HeaderOfOneCall({}), "Bearer s3cr3t.t0ken");
}

TEST_F(AuthTokenTest, AnUnreadableOrEmptyTokenFileIsRefusedAtConnectNamingIt) {
  for (const std::string& path : {dir_.path() + "/missing", WriteFile("empty", ""),
                                  WriteFile("blank", " \n\n"), dir_.path()}) {
    ClientOptions o;
    o.auth_token_file = path;
    auto client = Connect(o);
    ASSERT_FALSE(client.ok()) << path;
    EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(client.status().message().find(path), std::string::npos) << client.status().message();
  }
  // Through the environment too.
  setenv("LOCKD_AUTH_TOKEN_FILE", (dir_.path() + "/gone").c_str(), 1);
  auto client = Connect({});
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.status().message().find(dir_.path() + "/gone"), std::string::npos);
  EXPECT_EQ(fake_.With([&] { return fake_.authorization.size(); }), 0u) << "no call was made";
}

TEST_F(AuthTokenTest, ATokenAHeaderCannotCarryIsRefusedWithoutShowingIt) {
  for (const std::string& token :
       {std::string("secret token"), std::string("secret-token\n"), std::string("secret\x01tok"),
        std::string("s\xc3\xa9") + "cret-token", std::string("Bearer secret-token"),
        std::string("secret\x7ftoken"), std::string(kMaxBearerTokenBytes + 1, 'x')}) {
    ClientOptions o;
    o.auth_token = token;
    auto client = Connect(o);
    ASSERT_FALSE(client.ok()) << "accepted a bad token of " << token.size() << " bytes";
    EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument);
    const std::string& message = client.status().message();
    EXPECT_NE(message.find("bearer token"), std::string::npos) << message;
    EXPECT_EQ(message.find("secret"), std::string::npos) << "the message shows the token";
  }
  // The same rules for a file's contents: a second line is no part of a token.
  ClientOptions f;
  f.auth_token_file = WriteFile("two-lines", "secret-one\nsecret-two\n");
  auto client = Connect(f);
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.status().message().find("byte 0x0a"), std::string::npos)
      << client.status().message();
  EXPECT_EQ(client.status().message().find("secret"), std::string::npos);
  // A token and a file: which one was meant is unclear.
  ClientOptions both;
  both.auth_token = "secret-token";
  both.auth_token_file = WriteFile("token", "secret-token");
  auto refused = Connect(both);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("not both"), std::string::npos);
}

TEST(BearerToken, EveryCharacterOfAnRfc6750TokenIsAccepted) {
  EXPECT_TRUE(CheckBearerToken("AZaz09-._~+/==", "test").ok());
  EXPECT_TRUE(CheckBearerToken(std::string(kMaxBearerTokenBytes, 'a'), "test").ok());
  EXPECT_FALSE(CheckBearerToken("", "test").ok());
  auto none = ReadBearerToken({});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
}

}  // namespace
}  // namespace lockd::client
