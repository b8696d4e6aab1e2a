// The certificate checks a TLS node makes at start and at every reload (server/tls.h): each
// problem refused with the flag, the file and what is wrong.
#include "server/tls.h"

#include <gtest/gtest.h>

#include "support/process.h"
#include "support/test_pki.h"

namespace lockd::server {
namespace {

using testing::Issue;
using testing::LeafSpec;
using testing::MakeCa;
using testing::WriteFile;

class CertificateFiles : public ::testing::Test {
 protected:
  CertificateFiles() {
    ca_ = MakeCa("cluster CA");
    WriteFile(Path("ca.pem"), ca_.cert);
    Write("good", Issue(ca_, Member(1)));
  }
  static LeafSpec Member(uint64_t id) {
    LeafSpec s;
    s.cn = "node" + std::to_string(id);
    s.uris = {MemberUri(id)};
    s.ips = {"127.0.0.1"};
    return s;
  }
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }
  void Write(const std::string& name, const testing::Pem& pem) {
    WriteFile(Path(name + ".crt"), pem.cert);
    WriteFile(Path(name + ".key"), pem.key);
  }
  CertificateCheck Check(const std::string& name, uint64_t member = 1) const {
    CertificateCheck c;
    c.cert_file = Path(name + ".crt");
    c.key_file = Path(name + ".key");
    c.cas = {{"--peer-ca", Path("ca.pem")}};
    c.member = member;
    return c;
  }
  static std::string Error(const CertificateCheck& c) {
    auto r = CheckCertificateFiles(c);
    return r.ok() ? "OK: " + *r : r.status().message();
  }

  testing::TempDir dir_;
  testing::Pem ca_;
};

TEST_F(CertificateFiles, AGoodCertificatePassesAndIsDescribed) {
  auto r = CheckCertificateFiles(Check("good"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(r->find("CN=node1"), std::string::npos) << *r;
  EXPECT_NE(r->find("valid until"), std::string::npos) << *r;
}

TEST_F(CertificateFiles, AMissingFileIsNamedWithItsFlag) {
  CertificateCheck c = Check("good");
  c.cert_file = Path("nope.crt");
  EXPECT_NE(Error(c).find("cannot read --tls-cert " + Path("nope.crt")), std::string::npos)
      << Error(c);
  c = Check("good");
  c.key_file = "";
  EXPECT_NE(Error(c).find("--tls-key is required"), std::string::npos) << Error(c);
  c = Check("good");
  c.cas = {{"--peer-ca", Path("nope-ca.pem")}};
  EXPECT_NE(Error(c).find("cannot read --peer-ca"), std::string::npos) << Error(c);
}

TEST_F(CertificateFiles, SomethingNotPemIsRefused) {
  WriteFile(Path("junk.crt"), "hello");
  WriteFile(Path("junk.key"), "hello");
  CertificateCheck c = Check("good");
  c.cert_file = Path("junk.crt");
  EXPECT_NE(Error(c).find("holds no PEM certificate"), std::string::npos) << Error(c);
  c = Check("good");
  c.key_file = Path("junk.key");
  EXPECT_NE(Error(c).find("holds no PEM private key"), std::string::npos) << Error(c);
}

TEST_F(CertificateFiles, AKeyOfAnotherCertificateIsRefused) {
  Write("other", Issue(ca_, Member(1)));
  CertificateCheck c = Check("good");
  c.key_file = Path("other.key");
  EXPECT_NE(Error(c).find("is not the key of the certificate"), std::string::npos) << Error(c);
}

TEST_F(CertificateFiles, AnExpiredOrNotYetValidCertificateIsRefused) {
  LeafSpec expired = Member(1);
  expired.not_before_s = -7200;
  expired.not_after_s = -3600;
  Write("expired", Issue(ca_, expired));
  EXPECT_NE(Error(Check("expired")).find("expired on"), std::string::npos)
      << Error(Check("expired"));
  LeafSpec early = Member(1);
  early.not_before_s = 3600;
  Write("early", Issue(ca_, early));
  EXPECT_NE(Error(Check("early")).find("is not valid before"), std::string::npos)
      << Error(Check("early"));
}

TEST_F(CertificateFiles, ACertificateOfAnotherCaIsRefused) {
  Write("foreign", Issue(MakeCa("another CA"), Member(1)));
  EXPECT_NE(Error(Check("foreign")).find("is not signed by the CA in --peer-ca"), std::string::npos)
      << Error(Check("foreign"));
}

TEST_F(CertificateFiles, ACertificateMustNameThisMember) {
  EXPECT_NE(Error(Check("good", 2))
                .find("does not name this member: it needs the URI SAN "
                      "urn:lockd:member:2 (it has urn:lockd:member:1)"),
            std::string::npos)
      << Error(Check("good", 2));
  LeafSpec unnamed = Member(1);
  unnamed.uris.clear();
  Write("unnamed", Issue(ca_, unnamed));
  EXPECT_NE(Error(Check("unnamed")).find("(it has no URI SAN)"), std::string::npos)
      << Error(Check("unnamed"));
}

TEST_F(CertificateFiles, AMemberCertificateServesAndDialsSoItNeedsBothUses) {
  LeafSpec server_only = Member(1);
  server_only.eku = "serverAuth";
  Write("server-only", Issue(ca_, server_only));
  EXPECT_NE(Error(Check("server-only")).find("may not be used as a TLS client"), std::string::npos)
      << Error(Check("server-only"));
  LeafSpec client_only = Member(1);
  client_only.eku = "clientAuth";
  Write("client-only", Issue(ca_, client_only));
  EXPECT_NE(Error(Check("client-only")).find("may not be used as a TLS server"), std::string::npos)
      << Error(Check("client-only"));
  LeafSpec any_use = Member(1);
  any_use.eku = "";
  Write("any-use", Issue(ca_, any_use));
  EXPECT_EQ(Error(Check("any-use")).rfind("OK: ", 0), 0u) << Error(Check("any-use"));
}

TEST(MemberUri, NamesTheMember) {
  EXPECT_EQ(MemberUri(7), "urn:lockd:member:7");
}

}  // namespace
}  // namespace lockd::server
