// The access policy file: the two-teams example parses into exactly what it says, [defaults] fills
// each quota key an identity leaves unset, every malformed key is an error naming the file, the
// table and the key, and the lookups (prefixes, certificate names, tokens) answer as documented.
#include "server/access_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "support/process.h"

namespace lockd::server {
namespace {

using ::testing::HasSubstr;

constexpr char kSource[] = "/etc/lockd/access.toml";
/// SHA-256 of "test" and of "ops-token".
constexpr char kTestSha[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
constexpr char kOpsSha[] = "d9310c002af91822beb0b3487d8b04f85bf6bf1f8a5496bff7d35fc7c5a29def";

constexpr char kTwoTeams[] = R"(
[defaults]
max_leases = 1000
max_locks = 10000
rate = 500
burst = 1000

[roles.billing-writer]
lock = ["billing/"]
read = ["billing/"]
admin = []

[roles.reports-reader]
read = ["reports/", "billing/summary/"]

[roles.operator]
lock = [""]
read = [""]
admin = [""]

[identities.billing]
certs = ["spiffe://example.org/billing", "billing-svc"]
# the hash of "test", in capitals: stored lowercase
token_sha256 = ["9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"]
roles = ["billing-writer"]
max_leases = 50

[identities.reports]
certs = ["spiffe://example.org/reports"]
roles = ["reports-reader", "billing-writer"]
rate = 20.5
burst = 40

[identities."ops@example.org"]
token_sha256 = ["d9310c002af91822beb0b3487d8b04f85bf6bf1f8a5496bff7d35fc7c5a29def"]
roles = ["operator"]
max_locks = 0
)";

AccessPolicy TwoTeams() {
  auto p = AccessPolicy::Parse(kTwoTeams, kSource);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? std::move(p).value() : AccessPolicy{};
}

/// The error Parse gives for `toml`, checked to be INVALID_ARGUMENT naming the file first.
std::string ErrorOf(const std::string& toml) {
  auto p = AccessPolicy::Parse(toml, kSource);
  EXPECT_FALSE(p.ok()) << "parsed: " << toml;
  if (p.ok()) return "";
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << p.status().ToString();
  EXPECT_EQ(p.status().message().rfind(kSource, 0), 0u) << p.status().message();
  return p.status().message();
}

/// An identity that can authenticate, followed by `extra` lines of its table.
std::string Identity(const std::string& name, const std::string& extra = "") {
  static int certs = 0;
  return "[identities." + name + "]\ncerts = [\"cert-" + std::to_string(++certs) + "\"]\n" + extra +
         "\n";
}

TEST(AccessPolicy, TwoTeamsExampleParsesIntoEveryField) {
  const AccessPolicy p = TwoTeams();
  ASSERT_EQ(p.roles().size(), 3u);
  EXPECT_EQ(p.roles().at("billing-writer"),
            (AccessRole{"billing-writer", {"billing/"}, {"billing/"}, {}}));
  EXPECT_EQ(p.roles().at("reports-reader"),
            (AccessRole{"reports-reader", {}, {"reports/", "billing/summary/"}, {}}));
  EXPECT_EQ(p.roles().at("operator"), (AccessRole{"operator", {""}, {""}, {""}}));

  ASSERT_EQ(p.identities().size(), 3u);
  EXPECT_EQ(p.identities().at("billing"),
            (AccessIdentity{"billing",
                            {"spiffe://example.org/billing", "billing-svc"},
                            {kTestSha},
                            {"billing-writer"},
                            Quota{50, 10000, 500, 1000}}));
  EXPECT_EQ(p.identities().at("reports"), (AccessIdentity{"reports",
                                                          {"spiffe://example.org/reports"},
                                                          {},
                                                          {"reports-reader", "billing-writer"},
                                                          Quota{1000, 10000, 20.5, 40}}));
  EXPECT_EQ(
      p.identities().at("ops@example.org"),
      (AccessIdentity{"ops@example.org", {}, {kOpsSha}, {"operator"}, Quota{1000, 0, 500, 1000}}));
  EXPECT_EQ(p.ByName("reports"), &p.identities().at("reports"));
  EXPECT_EQ(p.ByName("nobody"), nullptr);
}

TEST(AccessPolicy, EmptyPolicyIsAllowedAndAdmitsNobody) {
  for (const char* text : {"", "# nobody yet\n", "[defaults]\nrate = 5\n", "[roles]\n"}) {
    auto p = AccessPolicy::Parse(text, kSource);
    ASSERT_TRUE(p.ok()) << text << ": " << p.status().ToString();
    EXPECT_TRUE(p->identities().empty());
    EXPECT_EQ(p->ByCertificateNames({"anything"}), nullptr);
    EXPECT_EQ(p->ByToken("test"), nullptr);
  }
}

TEST(AccessPolicy, DefaultsFillEachQuotaKeyTheIdentityLeavesUnset) {
  auto p = AccessPolicy::Parse(
      "[defaults]\nmax_leases = 7\nmax_locks = 70\nrate = 10\n" + Identity("none") +
          Identity("leases", "max_leases = 1") + Identity("locks", "max_locks = 2") +
          Identity("rate", "rate = 100") + Identity("slow", "rate = 0.5") +
          Identity("bucket", "burst = 3") + Identity("unlimited", "rate = 0\nmax_leases = 0"),
      kSource);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const auto quota = [&](const char* name) { return p->identities().at(name).quota; };
  EXPECT_EQ(quota("none"), (Quota{7, 70, 10, 10}));  // burst: max(rate, 1)
  EXPECT_EQ(quota("leases"), (Quota{1, 70, 10, 10}));
  EXPECT_EQ(quota("locks"), (Quota{7, 2, 10, 10}));
  EXPECT_EQ(quota("rate"), (Quota{7, 70, 100, 100}));
  EXPECT_EQ(quota("slow"), (Quota{7, 70, 0.5, 1}));  // a bucket holds at least one request
  EXPECT_EQ(quota("bucket"), (Quota{7, 70, 10, 3}));
  EXPECT_EQ(quota("unlimited"), (Quota{0, 70, 0, 0}));

  // A [defaults] burst goes with the rate an identity inherits or sets, not with no rate at all.
  auto q = AccessPolicy::Parse("[defaults]\nrate = 10\nburst = 25\n" +
                                   Identity("own", "rate = 99") + Identity("off", "rate = 0"),
                               kSource);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->identities().at("own").quota, (Quota{0, 0, 99, 25}));
  EXPECT_EQ(q->identities().at("off").quota, (Quota{0, 0, 0, 0}));

  // Without [defaults] everything is unlimited.
  auto none = AccessPolicy::Parse(Identity("a"), kSource);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->identities().at("a").quota, Quota{});
}

TEST(AccessPolicy, SyntaxErrorsGiveTheLineAndColumn) {
  const std::string m = ErrorOf("[defaults]\nrate = 5\nburst = = 3\n");
  EXPECT_THAT(m, HasSubstr(std::string(kSource) + ":3:"));
  EXPECT_THAT(m, HasSubstr("TOML syntax error"));
  EXPECT_THAT(ErrorOf("[roles.a]\nlock = [\"x\"]\nread = [\"unterminated]\n"),
              HasSubstr(std::string(kSource) + ":3:"));
  EXPECT_THAT(ErrorOf("[identities.a]\n[identities.a]\n"), HasSubstr(":2:"));
}

// toml++ 3.3's source reaches an unreachable switch default for some non-ASCII characters where
// it looks for whitespace (marzer/tomlplusplus#190, #295) and asserts on some malformed headers
// (#301); the library lockd links answers correctly, and these keep it so
// (tests/fuzz/CMakeLists.txt).
TEST(AccessPolicy, Toml33ParserBugsGiveTheRightAnswer) {
  auto p = AccessPolicy::Parse(
      "[roles.r]\nlock = [\"\"\"\\\n\u00a7/\"\"\"]\n" + Identity("a", "roles = [\"r\"]"), kSource);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->roles().at("r").lock, std::vector<std::string>{"\u00a7/"});
  EXPECT_THAT(ErrorOf("[defaults]\nrate = 1 \u00fc\n"),
              HasSubstr(std::string(kSource) + ":2:10: TOML syntax error"));
  EXPECT_THAT(ErrorOf("\xcc\xaa"), HasSubstr(std::string(kSource) + ":1:1: TOML syntax error"));
  EXPECT_THAT(ErrorOf("[[[1]]]\n"), HasSubstr(std::string(kSource) + ":1:3: TOML syntax error"));
  EXPECT_THAT(ErrorOf("[\x0e]\n"), HasSubstr(std::string(kSource) + ":1:2: TOML syntax error"));
}

TEST(AccessPolicy, UnknownTablesAndKeysAreErrors) {
  EXPECT_THAT(ErrorOf(Identity("a") + "[identites.b]\ncerts = [\"b\"]\n"),
              HasSubstr("top level \"identites\": unknown table or key; a policy has [defaults], "
                        "[roles.NAME] and [identities.NAME]"));
  EXPECT_THAT(ErrorOf("version = 2\n"), HasSubstr("top level \"version\": unknown"));
  EXPECT_THAT(ErrorOf("roles = 1\n"), HasSubstr("top level roles: expected a table ([roles])"));
  EXPECT_THAT(ErrorOf("defaults = [1]\n"), HasSubstr("top level defaults: expected a table"));
  EXPECT_THAT(ErrorOf("[roles.r]\nlocks = [\"a/\"]\n"),
              HasSubstr("[roles.r] \"locks\": unknown key; a role has lock, read and admin"));
  EXPECT_THAT(ErrorOf(Identity("a", "role = [\"x\"]")),
              HasSubstr("[identities.a] \"role\": unknown key; an identity has certs, "
                        "token_sha256, roles, max_leases, max_locks, rate and burst"));
  EXPECT_THAT(ErrorOf("[defaults]\ncerts = [\"a\"]\n"),
              HasSubstr("[defaults] \"certs\": unknown key; [defaults] holds max_leases, "
                        "max_locks, rate, burst"));
  EXPECT_THAT(ErrorOf("[roles]\nr = 1\n"),
              HasSubstr("[roles] r: expected a table ([roles.r]), got an integer"));
  EXPECT_THAT(ErrorOf("[identities]\na = \"x\"\n"),
              HasSubstr("[identities] a: expected a table ([identities.a]), got a string"));
  EXPECT_THAT(ErrorOf(Identity("a") + "[identities.a.extra]\n"),
              HasSubstr("[identities.a] \"extra\": unknown key"));
}

TEST(AccessPolicy, IdentityAndRoleNamesAreChecked) {
  const std::string longest(AccessPolicy::kMaxIdentityNameBytes, 'n');
  auto ok = AccessPolicy::Parse(Identity(longest) + Identity("\"A.b_c:d@e/f-9\""), kSource);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_NE(ok->ByName("A.b_c:d@e/f-9"), nullptr);
  EXPECT_THAT(ErrorOf(Identity(longest + "n")),
              HasSubstr("[identities] \"" + std::string(80, 'n') +
                        "\"... (129 bytes) is not a valid name: 1 to 128 bytes of A-Z a-z 0-9 . _ "
                        ": @ / -"));
  EXPECT_THAT(ErrorOf(Identity("\"bad name\"")),
              HasSubstr("[identities] \"bad name\" is not a valid name"));
  EXPECT_THAT(ErrorOf(Identity("\"\"")), HasSubstr("[identities] \"\" is not a valid name"));
  EXPECT_THAT(ErrorOf(Identity("\"tab\\there\"")),
              HasSubstr("[identities] \"tab\\x09here\" is not a valid name"));
  EXPECT_THAT(ErrorOf("[roles.\"ü\"]\n"), HasSubstr("[roles] \"ü\" is not a valid name"));
}

TEST(AccessPolicy, RoleReferencesMustNameADefinedRole) {
  EXPECT_THAT(ErrorOf("[roles.writer]\n" + Identity("a", "roles = [\"writer\", \"writter\"]")),
              HasSubstr("[identities.a] roles: \"writter\" names no role; define it as "
                        "[roles.writter]"));
  // Roles resolve whatever the order in the file.
  EXPECT_TRUE(
      AccessPolicy::Parse(Identity("a", "roles = [\"late\"]") + "[roles.late]\n", kSource).ok());
  EXPECT_THAT(ErrorOf(Identity("a", "roles = [\"r r\"]")),
              HasSubstr("[identities.a] roles: \"r r\" is not a valid name"));
  EXPECT_THAT(ErrorOf("[roles.r]\n" + Identity("a", "roles = [\"r\", \"r\"]")),
              HasSubstr("[identities.a] roles: \"r\" is listed twice"));
}

TEST(AccessPolicy, PrefixesAreCheckedStrings) {
  const std::string longest(512, 'p');
  auto ok = AccessPolicy::Parse("[roles.r]\nlock = [\"\", \"" + longest + "\", \"ü/\"]\n", kSource);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_THAT(ErrorOf("[roles.r]\nlock = [\"" + longest + "p\"]\n"),
              HasSubstr("[roles.r] lock: \"" + std::string(80, 'p') +
                        "\"... (513 bytes) is not a valid lock-name prefix: valid UTF-8, at "
                        "most 512 bytes, no NUL"));
  EXPECT_THAT(ErrorOf("[roles.r]\nread = [\"a\\u0000b\"]\n"),
              HasSubstr("[roles.r] read: \"a\\x00b\" is not a valid lock-name prefix"));
  EXPECT_THAT(ErrorOf("[roles.r]\nadmin = \"billing/\"\n"),
              HasSubstr("[roles.r] admin: expected an array of strings (admin = [\"...\"]), got "
                        "a string"));
  EXPECT_THAT(ErrorOf("[roles.r]\nlock = [\"a\", 1]\n"),
              HasSubstr("[roles.r] lock: expected an array of strings, found an integer"));
  EXPECT_THAT(ErrorOf("[roles.r]\nlock = [\"a/\", \"a/\"]\n"),
              HasSubstr("[roles.r] lock: \"a/\" is listed twice"));
  // Bytes that are not UTF-8 never reach a prefix (toml++ or the check refuses them).
  ErrorOf("[roles.r]\nlock = [\"\xff\"]\n");
}

TEST(AccessPolicy, CertificateNamesAreCheckedAndBelongToOneIdentity) {
  EXPECT_THAT(ErrorOf("[identities.a]\ncerts = [\"\"]\n"),
              HasSubstr("[identities.a] certs: \"\" is not a valid certificate name: a URI SAN "
                        "or subject CN of 1 to 1024 bytes, no control characters"));
  EXPECT_TRUE(
      AccessPolicy::Parse("[identities.a]\ncerts = [\"" + std::string(1024, 'c') + "\"]\n", kSource)
          .ok());
  EXPECT_THAT(ErrorOf("[identities.a]\ncerts = [\"" + std::string(1025, 'c') + "\"]\n"),
              HasSubstr("(1025 bytes) is not a valid certificate name"));
  EXPECT_THAT(ErrorOf("[identities.a]\ncerts = [\"a\\u0007b\"]\n"),
              HasSubstr("[identities.a] certs: \"a\\x07b\" is not a valid certificate name"));
  EXPECT_THAT(ErrorOf("[identities.a]\ncerts = [\"a\\u0085b\"]\n"),  // a C1 control
              HasSubstr("is not a valid certificate name"));
  EXPECT_THAT(ErrorOf("[identities.a]\ncerts = [\"x\", \"x\"]\n"),
              HasSubstr("[identities.a] certs: \"x\" is listed twice"));
  EXPECT_THAT(ErrorOf("[identities.a]\ncerts = [\"shared\"]\n"
                      "[identities.b]\ncerts = [\"b\", \"shared\"]\n"),
              HasSubstr("[identities.b] certs: \"shared\" is claimed by both identities a and b"));
}

TEST(AccessPolicy, TokenHashesAreSixtyFourHexDigitsOwnedOnce) {
  const std::string upper = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
  auto p = AccessPolicy::Parse("[identities.a]\ntoken_sha256 = [\"" + upper + "\"]\n", kSource);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->identities().at("a").token_sha256, std::vector<std::string>{kTestSha});

  EXPECT_THAT(ErrorOf("[identities.a]\ntoken_sha256 = [\"" + upper.substr(1) + "\"]\n"),
              HasSubstr("[identities.a] token_sha256: \"" + upper.substr(1) +
                        "\" is not a token hash: 64 hex digits, the SHA-256 of the token"));
  EXPECT_THAT(ErrorOf("[identities.a]\ntoken_sha256 = [\"" + std::string(64, 'g') + "\"]\n"),
              HasSubstr("is not a token hash"));
  EXPECT_THAT(ErrorOf("[identities.a]\ntoken_sha256 = \"" + upper + "\"\n"),
              HasSubstr("[identities.a] token_sha256: expected an array of strings"));
  // The same hash in two cases is the same hash.
  EXPECT_THAT(
      ErrorOf("[identities.a]\ntoken_sha256 = [\"" + upper + "\", \"" + kTestSha + "\"]\n"),
      HasSubstr("[identities.a] token_sha256: \"" + std::string(kTestSha) + "\" is listed twice"));
  EXPECT_THAT(ErrorOf("[identities.a]\ntoken_sha256 = [\"" + upper + "\"]\n" +
                      "[identities.b]\ntoken_sha256 = [\"" + kTestSha + "\"]\n"),
              HasSubstr("[identities.b] token_sha256: \"" + std::string(kTestSha) +
                        "\" is claimed by both identities a and b"));
  EXPECT_THAT(ErrorOf("[identities.a]\ntoken_sha256 = "
                      "[\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"]\n"),
              HasSubstr("is the SHA-256 of the empty token"));
}

TEST(AccessPolicy, AnIdentityThatCanNeverAuthenticateIsAnError) {
  EXPECT_THAT(ErrorOf("[roles.r]\n[identities.ghost]\nroles = [\"r\"]\n"),
              HasSubstr("[identities.ghost] certs, token_sha256: the identity can never "
                        "authenticate"));
  EXPECT_THAT(ErrorOf("[identities.ghost]\ncerts = []\ntoken_sha256 = []\n"),
              HasSubstr("can never authenticate"));
}

TEST(AccessPolicy, QuotaValuesAreChecked) {
  EXPECT_THAT(ErrorOf(Identity("a", "max_leases = -1")),
              HasSubstr("[identities.a] max_leases: expected a non-negative integer (max_leases "
                        "= 100; 0 is unlimited), got -1"));
  EXPECT_THAT(ErrorOf("[defaults]\nmax_locks = 2.5\n"),
              HasSubstr("[defaults] max_locks: expected a non-negative integer"));
  EXPECT_THAT(ErrorOf(Identity("a", "max_locks = \"10\"")),
              HasSubstr("[identities.a] max_locks: expected a non-negative integer (max_locks = "
                        "100; 0 is unlimited), got a string"));
  EXPECT_THAT(ErrorOf(Identity("a", "rate = -0.5")),
              HasSubstr("[identities.a] rate: expected a non-negative number (rate = 500 or 0.5; "
                        "0 is unlimited), got -0.5"));
  EXPECT_THAT(ErrorOf(Identity("a", "rate = nan")), HasSubstr("[identities.a] rate: expected"));
  EXPECT_THAT(ErrorOf("[defaults]\nrate = inf\n"), HasSubstr("[defaults] rate: expected"));
  EXPECT_THAT(ErrorOf(Identity("a", "rate = true")), HasSubstr("got a boolean"));
  EXPECT_THAT(ErrorOf(Identity("a", "burst = -3")),
              HasSubstr("[identities.a] burst: expected a non-negative number"));

  // burst without a rate means nothing, in [defaults] or in an identity.
  EXPECT_THAT(ErrorOf("[defaults]\nburst = 10\n"),
              HasSubstr("[defaults] burst: burst is set but rate is 0 (unlimited)"));
  EXPECT_THAT(ErrorOf(Identity("a", "burst = 10")),
              HasSubstr("[identities.a] burst: burst is set but rate is 0"));
  EXPECT_THAT(ErrorOf(Identity("a", "rate = 0\nburst = 10")),
              HasSubstr("[identities.a] burst: burst is set but rate is 0"));
  // A bucket below one request would refuse everything.
  EXPECT_THAT(ErrorOf(Identity("a", "rate = 5\nburst = 0.5")),
              HasSubstr("[identities.a] burst: burst 0.5 is below 1"));
  EXPECT_THAT(ErrorOf("[defaults]\nrate = 5\nburst = 0\n"),
              HasSubstr("[defaults] burst: burst 0 is below 1"));
  EXPECT_TRUE(AccessPolicy::Parse(Identity("a", "rate = 5\nburst = 1"), kSource).ok());
}

TEST(AccessPolicy, AllowsMatchesBytePrefixesPerPermission) {
  const AccessPolicy p = TwoTeams();
  const AccessIdentity& billing = *p.ByName("billing");
  const AccessIdentity& reports = *p.ByName("reports");
  const AccessIdentity& ops = *p.ByName("ops@example.org");

  EXPECT_TRUE(p.Allows(billing, Permission::kLock, "billing/invoice-7"));
  EXPECT_TRUE(p.Allows(billing, Permission::kLock, "billing/"));
  EXPECT_FALSE(p.Allows(billing, Permission::kLock, "billing"));  // a byte prefix, not a path
  EXPECT_FALSE(p.Allows(billing, Permission::kLock, "Billing/x"));
  EXPECT_FALSE(p.Allows(billing, Permission::kLock, "reports/q3"));
  EXPECT_FALSE(p.Allows(billing, Permission::kLock, ""));
  EXPECT_FALSE(p.Allows(billing, Permission::kAdmin, "billing/invoice-7"));

  // Any of an identity's roles grants.
  EXPECT_TRUE(p.Allows(reports, Permission::kRead, "reports/q3"));
  EXPECT_TRUE(p.Allows(reports, Permission::kRead, "billing/summary/2024"));
  EXPECT_TRUE(p.Allows(reports, Permission::kLock, "billing/x"));  // from billing-writer
  EXPECT_FALSE(p.Allows(reports, Permission::kLock, "reports/q3"));

  // "" is every name, the empty one included.
  for (const char* name : {"", "a", "billing/x", "\xff"}) {
    for (Permission perm : {Permission::kLock, Permission::kRead, Permission::kAdmin}) {
      EXPECT_TRUE(p.Allows(ops, perm, name)) << PermissionName(perm) << " " << name;
    }
  }

  EXPECT_TRUE(p.AllowsAnywhere(billing, Permission::kLock));
  EXPECT_TRUE(p.AllowsAnywhere(billing, Permission::kRead));
  EXPECT_FALSE(p.AllowsAnywhere(billing, Permission::kAdmin));  // admin = [] grants nothing
  EXPECT_TRUE(p.AllowsAnywhere(reports, Permission::kLock));
  EXPECT_FALSE(p.AllowsAnywhere(reports, Permission::kAdmin));
  EXPECT_TRUE(p.AllowsAnywhere(ops, Permission::kAdmin));

  // An identity with no roles may do nothing.
  auto bare = AccessPolicy::Parse(Identity("bare"), kSource);
  ASSERT_TRUE(bare.ok());
  for (Permission perm : {Permission::kLock, Permission::kRead, Permission::kAdmin}) {
    EXPECT_FALSE(bare->Allows(*bare->ByName("bare"), perm, ""));
    EXPECT_FALSE(bare->AllowsAnywhere(*bare->ByName("bare"), perm));
  }
}

TEST(AccessPolicy, ByCertificateNamesTakesTheFirstMappedNameInOrder) {
  const AccessPolicy p = TwoTeams();
  EXPECT_EQ(p.ByCertificateNames({"spiffe://example.org/billing"}), p.ByName("billing"));
  EXPECT_EQ(p.ByCertificateNames({"billing-svc"}), p.ByName("billing"));
  EXPECT_EQ(
      p.ByCertificateNames({"spiffe://unknown", "spiffe://example.org/reports", "billing-svc"}),
      p.ByName("reports"));
  EXPECT_EQ(p.ByCertificateNames({"billing-svc", "spiffe://example.org/reports"}),
            p.ByName("billing"));
  EXPECT_EQ(p.ByCertificateNames({"spiffe://unknown", "BILLING-SVC"}), nullptr);  // exact match
  EXPECT_EQ(p.ByCertificateNames({}), nullptr);
}

TEST(AccessPolicy, ByTokenFindsTheOwnerOfTheTokensHash) {
  const AccessPolicy p = TwoTeams();
  EXPECT_EQ(p.ByToken("test"), p.ByName("billing"));
  EXPECT_EQ(p.ByToken("ops-token"), p.ByName("ops@example.org"));
  EXPECT_EQ(p.ByToken("tesT"), nullptr);
  EXPECT_EQ(p.ByToken("test "), nullptr);
  EXPECT_EQ(p.ByToken(kTestSha), nullptr);  // the hash itself is not the token
  EXPECT_EQ(p.ByToken(""), nullptr);
  EXPECT_EQ(p.ByToken(std::string(100'000, 'x')), nullptr);
}

TEST(AccessPolicy, PermissionNames) {
  EXPECT_STREQ(PermissionName(Permission::kLock), "lock");
  EXPECT_STREQ(PermissionName(Permission::kRead), "read");
  EXPECT_STREQ(PermissionName(Permission::kAdmin), "admin");
}

TEST(AccessPolicy, LoadReadsTheFileAndNamesItInErrors) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/access.toml";
  auto missing = AccessPolicy::Load(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().message(),
            "cannot read access policy " + path + ": No such file or directory");

  std::ofstream(path) << kTwoTeams;
  auto loaded = AccessPolicy::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->identities(), TwoTeams().identities());
  EXPECT_EQ(loaded->roles(), TwoTeams().roles());

  std::ofstream(path) << "[identities.a]\ncerts = [\"a\"]\nmax_leases = -2\n";
  EXPECT_THAT(AccessPolicy::Load(path).status().message(),
              HasSubstr(path + ":3: [identities.a] max_leases: expected a non-negative integer"));

  EXPECT_THAT(AccessPolicy::Load(dir.path()).status().message(),
              HasSubstr("cannot read access policy " + dir.path() + ": not a regular file"));

  {
    std::ofstream big(path);
    const std::string line = "# " + std::string(1022, 'x') + "\n";
    for (int i = 0; i < 4 * 1024 + 1; ++i) big << line;
  }
  EXPECT_THAT(AccessPolicy::Load(path).status().message(),
              HasSubstr("cannot read access policy " + path + ": larger than 4 MiB"));
}

}  // namespace
}  // namespace lockd::server
