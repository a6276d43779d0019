// common/tls.h's X.509 half (tls_x509.cc): etcd's cipher-suite names,
// auto TLS (SelfCert) and the checks etcd makes after a chain is verified
// (CRL, allowed CN, allowed hostname); and the tests' own CA
// (tests/support/test_certs.h) that the TLS tests build on.
#include <arpa/inet.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/tls.h"
#include "common/tls_internal.h"
#include "common/x509_util.h"
#include "gtest/gtest.h"
#include "tests/support/test_certs.h"

namespace synod::common {
namespace {

using synod::testing::CertPaths;
using synod::testing::CrlOptions;
using synod::testing::LeafSpec;
using synod::testing::TestPki;

constexpr char kEtcdFixtures[] =
    "/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures";

std::string ReadOrDie(const std::string& path) {
  absl::StatusOr<std::string> data = ReadWholeFile(path);
  EXPECT_TRUE(data.ok()) << data.status();
  return data.ok() ? *data : "";
}

X509Ptr ParseOne(const std::string& pem) {
  auto certs = ParsePemCertificates(pem);
  EXPECT_TRUE(certs.ok()) << certs.status();
  if (!certs.ok()) return nullptr;
  return std::move(certs->front());
}

// The SANs of `cert` as "DNS:name" and "IP:addr" strings.
std::vector<std::string> Sans(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    GENERAL_NAME* gen = sk_GENERAL_NAME_value(names, i);
    if (gen->type == GEN_DNS) {
      out.push_back(absl::StrCat(
          "DNS:", reinterpret_cast<const char*>(
                      ASN1_STRING_get0_data(gen->d.dNSName))));
    } else if (gen->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = gen->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = "?";
      inet_ntop(ASN1_STRING_length(ip) == 4 ? AF_INET : AF_INET6,
                ASN1_STRING_get0_data(ip), text, sizeof(text));
      out.push_back(absl::StrCat("IP:", text));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

class TlsX509Test : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/synod_tls_x509_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto pki = TestPki::Create(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_.emplace(*std::move(pki));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  CertPaths Issue(LeafSpec spec) {
    auto paths = pki_->Issue(spec);
    EXPECT_TRUE(paths.ok()) << paths.status();
    return paths.ok() ? *paths : CertPaths{};
  }

  // CheckPeerCertificate on `pem` under a new CRL (from `options`) listing
  // `revoked`.
  absl::Status CheckUnderCrl(const std::string& pem,
                             const std::vector<CertPaths>& revoked,
                             const CrlOptions& options = {}) {
    auto crl = pki_->WriteCrl(revoked, options);
    EXPECT_TRUE(crl.ok()) << crl.status();
    TlsInfo info;
    info.crl_file = crl.ok() ? *crl : "";
    return CheckPeerCertificate(info, pem);
  }

  std::string dir_;
  std::optional<TestPki> pki_;
};

// ---- Cipher suites ---------------------------------------------------------

TEST(CipherSuitesTest, GoNamesMapToOpenSslNamesInOrder) {
  auto list = OpenSslCipherList({"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
                                 "TLS_RSA_WITH_AES_128_CBC_SHA"});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list,
            "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
            "AES128-SHA");
}

TEST(CipherSuitesTest, EveryTls12SuiteOfGoCipherSuitesIsOffered) {
  // Go 1.19's tls.CipherSuites(), TLS 1.2 part: all of them must map.
  const std::vector<std::string> go = {
      "TLS_RSA_WITH_AES_128_CBC_SHA",
      "TLS_RSA_WITH_AES_256_CBC_SHA",
      "TLS_RSA_WITH_AES_128_GCM_SHA256",
      "TLS_RSA_WITH_AES_256_GCM_SHA384",
      "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
      "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
      "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
      "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
      "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
      "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
      "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
      "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
      "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
      // Insecure in Go's list, offered by OpenSSL 3.
      "TLS_RSA_WITH_AES_128_CBC_SHA256",
      "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
      "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
  };
  auto list = OpenSslCipherList(go);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(std::count(list->begin(), list->end(), ':') + 1,
            static_cast<long>(go.size()));
}

TEST(CipherSuitesTest, ChachaAliasesNameOneSuite) {
  auto list = OpenSslCipherList({"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
                                 "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, "ECDHE-RSA-CHACHA20-POLY1305");
}

TEST(CipherSuitesTest, Tls13NamesAreAcceptedAndAddNothing) {
  // Go accepts them and ignores them: TLS 1.3's suites are fixed.
  auto list = OpenSslCipherList(
      {"TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, "ECDHE-RSA-AES256-GCM-SHA384");
}

TEST(CipherSuitesTest, UnknownNameIsEtcdsError) {
  auto list = OpenSslCipherList(
      {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_BOGUS_SUITE"});
  ASSERT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(list.status().message(),
            "unexpected TLS cipher suite \"TLS_BOGUS_SUITE\"");
}

TEST(CipherSuitesTest, ProcessListIsSetOnceIntoGrpcsEnvironment) {
  ASSERT_TRUE(SetProcessCipherSuites("ECDHE-RSA-AES128-GCM-SHA256").ok());
  EXPECT_STREQ(getenv("GRPC_SSL_CIPHER_SUITES"), "ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_TRUE(SetProcessCipherSuites("ECDHE-RSA-AES128-GCM-SHA256").ok());
  EXPECT_EQ(SetProcessCipherSuites("AES128-SHA").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_STREQ(getenv("GRPC_SSL_CIPHER_SUITES"), "ECDHE-RSA-AES128-GCM-SHA256");
}

TEST(CipherSuitesTest, TooLateOnceCredentialsExist) {
  // In a child process: the flag is process-wide and never cleared.
  EXPECT_EXIT(
      {
        tls_internal::NoteCredentialsCreated();
        bool refused = SetProcessCipherSuites("AES128-SHA").code() ==
                       absl::StatusCode::kFailedPrecondition;
        exit(refused ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// ---- SelfCert --------------------------------------------------------------

TEST_F(TlsX509Test, SelfCertWritesAUsableCertificateAndKey) {
  std::string auto_dir = dir_ + "/member/fixtures/client";
  auto info = SelfCert(auto_dir, {"127.0.0.1:2379", "node1.example:2379",
                                  "[::1]:2379", "10.0.0.7"});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->cert_file, auto_dir + "/cert.pem");
  EXPECT_EQ(info->key_file, auto_dir + "/key.pem");
  EXPECT_TRUE(info->self_cert);
  EXPECT_TRUE(info->insecure_skip_verify);

  struct stat st;
  ASSERT_EQ(stat(auto_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat(info->key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  X509Ptr cert = ParseOne(ReadOrDie(info->cert_file));
  ASSERT_NE(cert, nullptr);
  std::string key_pem = ReadOrDie(info->key_file);
  EXPECT_TRUE(absl::StartsWith(key_pem, "-----BEGIN EC PRIVATE KEY-----"));
  BIO* bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);

  EXPECT_EQ(Sans(cert.get()),
            (std::vector<std::string>{"DNS:node1.example", "DNS:localhost",
                                      "IP:127.0.0.1", "IP:::1",
                                      "IP:10.0.0.7"}));
  X509_NAME* subject = X509_get_subject_name(cert.get());
  char org[64] = {};
  X509_NAME_get_text_by_NID(subject, NID_organizationName, org, sizeof(org));
  EXPECT_STREQ(org, "etcd");
  EXPECT_EQ(X509_get_extended_key_usage(cert.get()) &
                (XKU_SSL_SERVER | XKU_SSL_CLIENT),
            static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  // Valid now, for a year: after 364 days, not after 366.
  EXPECT_LT(X509_cmp_current_time(X509_get0_notBefore(cert.get())), 0);
  time_t in_364_days = time(nullptr) + 364 * 86400;
  time_t in_366_days = time(nullptr) + 366 * 86400;
  EXPECT_GT(X509_cmp_time(X509_get0_notAfter(cert.get()), &in_364_days), 0);
  EXPECT_LT(X509_cmp_time(X509_get0_notAfter(cert.get()), &in_366_days), 0);
  // Self-signed.
  EXPECT_EQ(X509_verify(cert.get(), key.get()), 1);
  // The certificate names the hosts it was made for.
  TlsInfo by_name;
  by_name.allowed_hostname = "node1.example";
  EXPECT_TRUE(CheckPeerCertificate(by_name, ReadOrDie(info->cert_file)).ok());
}

TEST_F(TlsX509Test, SelfCertReusesWhatAnEarlierStartWrote) {
  auto first = SelfCert(dir_ + "/auto", {"127.0.0.1:2380"});
  ASSERT_TRUE(first.ok()) << first.status();
  std::string cert = ReadOrDie(first->cert_file);
  std::string key = ReadOrDie(first->key_file);
  auto second = SelfCert(dir_ + "/auto", {"127.0.0.1:2390", "other:1"});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->cert_file, first->cert_file);
  EXPECT_EQ(ReadOrDie(second->cert_file), cert);
  EXPECT_EQ(ReadOrDie(second->key_file), key);
}

TEST_F(TlsX509Test, SelfCertMakesBothAgainWhenOneIsMissing) {
  auto first = SelfCert(dir_ + "/auto", {});
  ASSERT_TRUE(first.ok()) << first.status();
  std::string cert = ReadOrDie(first->cert_file);
  ASSERT_EQ(unlink(first->key_file.c_str()), 0);
  auto second = SelfCert(dir_ + "/auto", {});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(ReadOrDie(second->cert_file), cert);
  X509Ptr x = ParseOne(ReadOrDie(second->cert_file));
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(Sans(x.get()),
            (std::vector<std::string>{"DNS:localhost", "IP:127.0.0.1"}));
}

TEST_F(TlsX509Test, SelfCertRejectsValidityOutOfRange) {
  EXPECT_EQ(SelfCert(dir_ + "/a", {}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SelfCert(dir_ + "/a", {}, 36501).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- CheckPeerCertificate: CRL ---------------------------------------------

TEST_F(TlsX509Test, CrlRejectsAListedSerialWithEtcdsMessage) {
  CertPaths good = Issue(LeafSpec::Named("good"));
  CertPaths revoked = Issue(LeafSpec::Named("revoked"));
  EXPECT_TRUE(CheckUnderCrl(ReadOrDie(good.cert_file), {revoked}).ok());
  absl::Status st = CheckUnderCrl(ReadOrDie(revoked.cert_file), {revoked});
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(st.message(), absl::StrCat("transport: certificate serial ",
                                       revoked.serial_hex, " revoked"));
}

TEST_F(TlsX509Test, CrlChecksEveryCertificateOfTheChain) {
  CertPaths leaf = Issue(LeafSpec::Named("leaf"));
  CertPaths revoked = Issue(LeafSpec::Named("revoked"));
  std::string chain =
      ReadOrDie(leaf.cert_file) + ReadOrDie(revoked.cert_file);
  EXPECT_EQ(CheckUnderCrl(chain, {revoked}).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(TlsX509Test, ExpiredCrlIsStillApplied) {
  CertPaths revoked = Issue(LeafSpec::Named("revoked"));
  CrlOptions expired;
  expired.expired = true;
  EXPECT_EQ(CheckUnderCrl(ReadOrDie(revoked.cert_file), {revoked}, expired)
                .code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(TlsX509Test, DerCrlIsRead) {
  CertPaths revoked = Issue(LeafSpec::Named("revoked"));
  CrlOptions der;
  der.name = "revoke.der";
  der.der = true;
  EXPECT_EQ(
      CheckUnderCrl(ReadOrDie(revoked.cert_file), {revoked}, der).code(),
      absl::StatusCode::kPermissionDenied);
}

TEST_F(TlsX509Test, ReplacedCrlIsReadAgain) {
  CertPaths cert = Issue(LeafSpec::Named("cert"));
  auto crl = pki_->WriteCrl({});
  ASSERT_TRUE(crl.ok()) << crl.status();
  TlsInfo info;
  info.crl_file = *crl;
  EXPECT_TRUE(CheckPeerCertificate(info, ReadOrDie(cert.cert_file)).ok());
  ASSERT_TRUE(pki_->WriteCrl({cert}).ok());  // same path, new file
  EXPECT_EQ(CheckPeerCertificate(info, ReadOrDie(cert.cert_file)).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(TlsX509Test, MissingOrGarbageCrlRejects) {
  CertPaths cert = Issue(LeafSpec::Named("cert"));
  TlsInfo info;
  info.crl_file = dir_ + "/absent.crl";
  EXPECT_FALSE(CheckPeerCertificate(info, ReadOrDie(cert.cert_file)).ok());
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/garbage.crl", "not a crl", 0644).ok());
  info.crl_file = dir_ + "/garbage.crl";
  EXPECT_EQ(CheckPeerCertificate(info, ReadOrDie(cert.cert_file)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TlsX509FixtureTest, EtcdsExpiredFixtureCrlRevokesItsServerCert) {
  const std::string fixtures = kEtcdFixtures;
  if (!std::filesystem::exists(fixtures + "/revoke.crl")) {
    GTEST_SKIP() << "etcd's fixtures are not installed (golang-etcd-server-dev)";
  }
  TlsInfo info;
  info.crl_file = fixtures + "/revoke.crl";  // DER, nextUpdate in 2021
  EXPECT_TRUE(
      CheckPeerCertificate(info, ReadOrDie(fixtures + "/server.crt")).ok());
  absl::Status st =
      CheckPeerCertificate(info, ReadOrDie(fixtures + "/server-revoked.crt"));
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(st.message(),
            "transport: certificate serial "
            "4a3cf9f9dcc21a01b4a0efaef7546aaee8fbd194 revoked");
}

// ---- CheckPeerCertificate: allowed CN and hostname -------------------------

TEST_F(TlsX509Test, AllowedCnMustBeTheLeafsCommonName) {
  CertPaths member = Issue(LeafSpec::Named("m1", "etcd-member"));
  CertPaths other = Issue(LeafSpec::Named("m2", "intruder"));
  CertPaths none = Issue(LeafSpec::Named("m3"));
  TlsInfo info;
  info.allowed_cn = "etcd-member";
  EXPECT_TRUE(CheckPeerCertificate(info, ReadOrDie(member.cert_file)).ok());
  for (const CertPaths& bad : {other, none}) {
    absl::Status st = CheckPeerCertificate(info, ReadOrDie(bad.cert_file));
    EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(st.message(), "client certificate authentication failed");
  }
}

TEST_F(TlsX509Test, AllowedCnLooksAtTheLeafOnly) {
  CertPaths leaf = Issue(LeafSpec::Named("leaf", "intruder"));
  CertPaths member = Issue(LeafSpec::Named("m", "etcd-member"));
  TlsInfo info;
  info.allowed_cn = "etcd-member";
  std::string chain = ReadOrDie(leaf.cert_file) + ReadOrDie(member.cert_file);
  EXPECT_EQ(CheckPeerCertificate(info, chain).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(TlsX509Test, AllowedHostnameMatchesDnsAndIpSans) {
  LeafSpec spec = LeafSpec::Named("c");
  spec.dns_names = {"node1.example", "*.pool.example"};
  spec.ip_addresses = {"127.0.0.1", "::1"};
  CertPaths cert = Issue(spec);
  std::string pem = ReadOrDie(cert.cert_file);
  TlsInfo info;
  for (const char* ok : {"node1.example", "NODE1.example.", "a.pool.example",
                         "127.0.0.1", "::1", "[::1]"}) {
    info.allowed_hostname = ok;
    EXPECT_TRUE(CheckPeerCertificate(info, pem).ok()) << ok;
  }
  for (const char* bad : {"node2.example", "a.b.pool.example", "pool.example",
                          "127.0.0.2", "localhost"}) {
    info.allowed_hostname = bad;
    absl::Status st = CheckPeerCertificate(info, pem);
    EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied) << bad;
    EXPECT_EQ(st.message(), "client certificate authentication failed");
  }
}

TEST_F(TlsX509Test, AllowedHostnameNeverFallsBackToTheCommonName) {
  // Go 1.19 ignores the CN for host names, SANs or not.
  LeafSpec spec = LeafSpec::Named("c", "node1.example");
  spec.dns_names.clear();
  spec.ip_addresses.clear();
  CertPaths no_sans = Issue(spec);
  TlsInfo info;
  info.allowed_hostname = "node1.example";
  EXPECT_EQ(CheckPeerCertificate(info, ReadOrDie(no_sans.cert_file)).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(TlsX509Test, NameChecksComeBeforeTheCrl) {
  CertPaths revoked = Issue(LeafSpec::Named("r", "intruder"));
  auto crl = pki_->WriteCrl({revoked});
  ASSERT_TRUE(crl.ok()) << crl.status();
  TlsInfo info;
  info.crl_file = *crl;
  info.allowed_cn = "etcd-member";
  EXPECT_EQ(CheckPeerCertificate(info, ReadOrDie(revoked.cert_file)).message(),
            "client certificate authentication failed");
}

TEST_F(TlsX509Test, GarbagePemIsInvalidArgument) {
  TlsInfo info;
  info.allowed_cn = "x";
  EXPECT_EQ(CheckPeerCertificate(info, "").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckPeerCertificate(info, "hello").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckPeerCertificate(info,
                                 "-----BEGIN CERTIFICATE-----\nAAAA\n"
                                 "-----END CERTIFICATE-----\n")
                .code(),
            absl::StatusCode::kInvalidArgument);
  CertPaths cert = Issue(LeafSpec::Named("c"));
  std::string truncated = ReadOrDie(cert.cert_file) +
                          "-----BEGIN CERTIFICATE-----\nAAAA\n"
                          "-----END CERTIFICATE-----\n";
  EXPECT_EQ(CheckPeerCertificate(TlsInfo{}, truncated).code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- tls_internal: chain verification, leaf-first chains -------------------

TEST_F(TlsX509Test, VerifyChainAcceptsALeafOfTheCaForBothUses) {
  CertPaths leaf = Issue(LeafSpec::Named("leaf", "root"));
  for (auto owner : {tls_internal::ChainOwner::kClient,
                     tls_internal::ChainOwner::kServer}) {
    absl::Status st = tls_internal::VerifyChain(
        pki_->ca_file(), ReadOrDie(leaf.cert_file), owner);
    EXPECT_TRUE(st.ok()) << st;
  }
}

TEST_F(TlsX509Test, VerifyChainWordsAnExpiredCertificateAsGo) {
  CertPaths expired = Issue(LeafSpec::Expired("expired", "root"));
  absl::Status st =
      tls_internal::VerifyChain(pki_->ca_file(), ReadOrDie(expired.cert_file),
                                tls_internal::ChainOwner::kClient);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StartsWith(
      st.message(),
      "tls: failed to verify client certificate: x509: certificate has "
      "expired or is not yet valid: current time "))
      << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "Z is after ")) << st;
}

TEST_F(TlsX509Test, VerifyChainWordsAForeignCaAsGo) {
  auto other = TestPki::Create(dir_, "other-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  auto stranger = other->Issue(LeafSpec::Named("stranger"));
  ASSERT_TRUE(stranger.ok()) << stranger.status();
  absl::Status st =
      tls_internal::VerifyChain(pki_->ca_file(), ReadOrDie(stranger->cert_file),
                                tls_internal::ChainOwner::kServer);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(st.message(), "x509: certificate signed by unknown authority");
  // A CA is no leaf: a chain of the CA alone is no client certificate.
  EXPECT_FALSE(tls_internal::VerifyChain(pki_->ca_file(),
                                         ReadOrDie(pki_->ca_file()),
                                         tls_internal::ChainOwner::kClient)
                   .ok());
}

TEST_F(TlsX509Test, VerifyChainNeedsAParseableCaFile) {
  CertPaths leaf = Issue(LeafSpec::Named("leaf"));
  EXPECT_FALSE(tls_internal::VerifyChain(dir_ + "/absent.crt",
                                         ReadOrDie(leaf.cert_file),
                                         tls_internal::ChainOwner::kClient)
                   .ok());
  EXPECT_EQ(tls_internal::VerifyChain(leaf.key_file, ReadOrDie(leaf.cert_file),
                                      tls_internal::ChainOwner::kClient)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsX509Test, LeafFirstChainPutsTheLeafInFrontOnce) {
  CertPaths leaf = Issue(LeafSpec::Named("leaf", "etcd-peer"));
  std::string leaf_pem = ReadOrDie(leaf.cert_file);
  std::string ca_pem = ReadOrDie(pki_->ca_file());
  // What a listener gets from a gRPC client: the CA without the leaf.
  std::string fixed = tls_internal::LeafFirstChain(leaf_pem, ca_pem);
  EXPECT_EQ(fixed, leaf_pem + ca_pem);
  TlsInfo info;
  info.allowed_cn = "etcd-peer";
  EXPECT_FALSE(CheckPeerCertificate(info, ca_pem).ok());
  EXPECT_TRUE(CheckPeerCertificate(info, fixed).ok());
  EXPECT_EQ(tls_internal::LeafFirstChain(leaf_pem, fixed), fixed);
  EXPECT_EQ(tls_internal::LeafFirstChain(leaf_pem, ""), leaf_pem);
  EXPECT_EQ(tls_internal::LeafFirstChain("", ca_pem), ca_pem);
}

// ---- x509_util and the test CA ---------------------------------------------

TEST(SerialHexTest, PrintsBigEndianBytesAsEtcdDoes) {
  ASN1_INTEGER* serial = ASN1_INTEGER_new();
  ASSERT_EQ(ASN1_INTEGER_set(serial, 0x0a01), 1);
  EXPECT_EQ(SerialHex(serial), "0a01");
  ASSERT_EQ(ASN1_INTEGER_set(serial, 0), 1);
  EXPECT_EQ(SerialHex(serial), "");
  ASN1_INTEGER_free(serial);
}

TEST_F(TlsX509Test, TestPkiLeavesVerifyAgainstTheirCaOnly) {
  auto other = TestPki::Create(dir_, "other-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  CertPaths leaf = Issue(LeafSpec::Named("leaf", "leaf"));
  X509Ptr cert = ParseOne(ReadOrDie(leaf.cert_file));
  X509Ptr ca = ParseOne(ReadOrDie(pki_->ca_file()));
  X509Ptr other_ca = ParseOne(ReadOrDie(other->ca_file()));
  ASSERT_TRUE(cert && ca && other_ca);
  EXPECT_EQ(X509_verify(cert.get(), X509_get0_pubkey(ca.get())), 1);
  EXPECT_NE(X509_verify(cert.get(), X509_get0_pubkey(other_ca.get())), 1);
  EXPECT_EQ(Sans(cert.get()),
            (std::vector<std::string>{"DNS:localhost", "IP:127.0.0.1"}));
  EXPECT_EQ(SubjectCommonName(cert.get()), "leaf");
  EXPECT_EQ(SerialHex(X509_get0_serialNumber(cert.get())), leaf.serial_hex);
  EXPECT_LT(X509_cmp_current_time(X509_get0_notBefore(cert.get())), 0);
  EXPECT_GT(X509_cmp_current_time(X509_get0_notAfter(cert.get())), 0);
}

TEST_F(TlsX509Test, TestPkiIssuesExpiredAndRsaLeaves) {
  CertPaths expired = Issue(LeafSpec::Expired("expired"));
  X509Ptr cert = ParseOne(ReadOrDie(expired.cert_file));
  ASSERT_NE(cert, nullptr);
  EXPECT_LT(X509_cmp_current_time(X509_get0_notAfter(cert.get())), 0);
  LeafSpec rsa_spec = LeafSpec::Named("rsa");
  rsa_spec.key_type = KeyType::kRsa2048;
  CertPaths rsa = Issue(rsa_spec);
  X509Ptr rsa_cert = ParseOne(ReadOrDie(rsa.cert_file));
  ASSERT_NE(rsa_cert, nullptr);
  EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(rsa_cert.get())),
            EVP_PKEY_RSA);
}

}  // namespace
}  // namespace synod::common
