// Auth token providers (backend/auth/token.h): simple tokens on a FakeClock,
// JWTs with keys made at run time (every sign method, the public key given
// as a certificate or as a key), option errors, and tokens jwt-go made with
// etcd's own fixture keys.
#include "backend/auth/token.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "backend/auth/simple_token.h"
#include "common/clock.h"
#include "common/x509_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace synod::auth {
namespace {

using ::testing::HasSubstr;

// --- Simple tokens ----------------------------------------------------------

class SimpleTokenTest : public ::testing::Test {
 protected:
  std::unique_ptr<TokenProvider> NewSimple(absl::Duration ttl) {
    auto p = NewTokenProvider("simple", ttl, &clock_);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }
  std::string Assign(TokenProvider* p, uint64_t index, absl::string_view user) {
    auto token = p->Assign(p->NewTokenPrefix(), index, user, 1);
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "";
  }

  common::FakeClock clock_;
};

TEST_F(SimpleTokenTest, TokenIsSixteenRandomLettersDotIndex) {
  auto p = NewSimple(absl::Seconds(10));
  const std::string prefix = p->NewTokenPrefix();
  ASSERT_EQ(prefix.size(), 16u);
  for (char c : prefix) EXPECT_TRUE(absl::ascii_isalpha(c)) << prefix;
  EXPECT_NE(p->NewTokenPrefix(), prefix);
  auto token = p->Assign(prefix, 42, "alice", 3);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, prefix + ".42");
}

TEST_F(SimpleTokenTest, ReportsTheUserAtTheCurrentRevision) {
  auto p = NewSimple(absl::Seconds(10));
  p->Enable();
  const std::string token = Assign(p.get(), 5, "alice");
  auto info = p->Info(token, 17);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->username, "alice");
  EXPECT_EQ(info->revision, 17u);
  EXPECT_FALSE(p->Info(token + "0", 17).has_value());
  EXPECT_FALSE(p->Info("", 17).has_value());
}

TEST_F(SimpleTokenTest, NothingIsValidBeforeEnable) {
  auto p = NewSimple(absl::Seconds(10));
  const std::string token = Assign(p.get(), 5, "alice");
  EXPECT_FALSE(p->Info(token, 1).has_value());
  // A token assigned while auth was off stays unknown once it is on.
  p->Enable();
  EXPECT_FALSE(p->Info(token, 1).has_value());
}

TEST_F(SimpleTokenTest, ExpiresTtlAfterLastUse) {
  auto p = NewSimple(absl::Seconds(10));
  p->Enable();
  const std::string token = Assign(p.get(), 5, "alice");
  clock_.Advance(absl::Seconds(10));
  EXPECT_TRUE(p->Info(token, 1).has_value());  // at the deadline: still live
  clock_.Advance(absl::Seconds(10) + absl::Nanoseconds(1));
  EXPECT_FALSE(p->Info(token, 1).has_value());
  // Once dropped it stays gone.
  EXPECT_FALSE(p->Info(token, 1).has_value());
}

TEST_F(SimpleTokenTest, EachUseRestartsTheTtl) {
  auto p = NewSimple(absl::Seconds(10));
  p->Enable();
  const std::string token = Assign(p.get(), 5, "alice");
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(8));
    ASSERT_TRUE(p->Info(token, 1).has_value()) << "use " << i;
  }
  clock_.Advance(absl::Seconds(11));
  EXPECT_FALSE(p->Info(token, 1).has_value());
}

TEST_F(SimpleTokenTest, TtlOfZeroMeansEtcdsDefault) {
  auto p = NewSimple(absl::ZeroDuration());
  p->Enable();
  const std::string token = Assign(p.get(), 5, "alice");
  clock_.Advance(absl::Seconds(299));
  EXPECT_TRUE(p->Info(token, 1).has_value());
  clock_.Advance(absl::Seconds(301));
  EXPECT_FALSE(p->Info(token, 1).has_value());
}

TEST_F(SimpleTokenTest, DisableForgetsEveryToken) {
  auto p = NewSimple(absl::Seconds(10));
  p->Enable();
  const std::string a = Assign(p.get(), 5, "alice");
  const std::string b = Assign(p.get(), 6, "bob");
  p->Disable();
  EXPECT_FALSE(p->Info(a, 1).has_value());
  p->Enable();
  EXPECT_FALSE(p->Info(a, 1).has_value());
  EXPECT_FALSE(p->Info(b, 1).has_value());
  const std::string c = Assign(p.get(), 7, "alice");
  EXPECT_TRUE(p->Info(c, 1).has_value());
}

TEST_F(SimpleTokenTest, InvalidateUserForgetsOnlyThatUsersTokens) {
  auto p = NewSimple(absl::Seconds(10));
  p->Enable();
  const std::string a1 = Assign(p.get(), 5, "alice");
  const std::string a2 = Assign(p.get(), 6, "alice");
  const std::string b = Assign(p.get(), 7, "bob");
  p->InvalidateUser("alice");
  EXPECT_FALSE(p->Info(a1, 1).has_value());
  EXPECT_FALSE(p->Info(a2, 1).has_value());
  auto info = p->Info(b, 1);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->username, "bob");
}

TEST_F(SimpleTokenTest, AssignSweepsExpiredTokensOnceTheTableDoubles) {
  SimpleTokenProvider p(absl::Seconds(10), &clock_);
  p.Enable();
  // The first sweep comes at 64 tokens (all live): the next waits for 128.
  for (uint64_t i = 0; i < 100; ++i) Assign(&p, i, "alice");
  EXPECT_EQ(p.TEST_TableSize(), 100u);
  clock_.Advance(absl::Seconds(11));
  for (uint64_t i = 100; i < 128; ++i) Assign(&p, i, "bob");
  EXPECT_EQ(p.TEST_TableSize(), 128u);
  // This Assign finds 128 tokens and drops the 100 expired ones.
  const std::string live = Assign(&p, 1000, "bob");
  EXPECT_EQ(p.TEST_TableSize(), 29u);
  EXPECT_TRUE(p.Info(live, 1).has_value());
}

TEST_F(SimpleTokenTest, ConcurrentAssignAndInfo) {
  auto p = NewSimple(absl::Seconds(10));
  p->Enable();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&p, t] {
      for (uint64_t i = 0; i < 200; ++i) {
        const std::string user = absl::StrCat("user", t);
        auto token = p->Assign(p->NewTokenPrefix(), t * 1000 + i, user, 1);
        ASSERT_TRUE(token.ok());
        auto info = p->Info(*token, 1);
        ASSERT_TRUE(info.has_value());
        EXPECT_EQ(info->username, user);
        if (i % 50 == 0) p->InvalidateUser("nobody");
      }
    });
  }
  for (auto& th : threads) th.join();
}

// --- NewTokenProvider's spec ------------------------------------------------

TEST(NewTokenProviderTest, SimpleAndEmptyMakeSimpleProviders) {
  common::FakeClock clock;
  for (const char* spec : {"simple", ""}) {
    auto p = NewTokenProvider(spec, absl::Seconds(1), &clock);
    ASSERT_TRUE(p.ok()) << spec << ": " << p.status();
    EXPECT_EQ((*p)->NewTokenPrefix().size(), 16u) << spec;
  }
}

TEST(NewTokenProviderTest, RejectsBadSpecs) {
  common::FakeClock clock;
  struct Case {
    const char* spec;
    const char* message;
  } cases[] = {
      {"foo", "auth: unknown token type \"foo\""},
      {"jwt,sign-method", "auth: invalid token option \"sign-method\""},
      {"jwt,a=b=c", "auth: invalid token option \"a=b=c\""},
      {"jwt,ttl=1s,ttl=2s", "auth: duplicate token option \"ttl\""},
      {"jwt,pub-key=/x", "auth: missing sign-method"},
      {"jwt,sign-method=HS1,pub-key=/x",
       "auth: unsupported sign-method \"HS1\""},
      {"jwt,sign-method=RS256,ttl=x", "auth: invalid ttl \"x\""},
      {"jwt,sign-method=RS256,ttl=-1s", "auth: invalid ttl \"-1s\""},
      {"jwt,sign-method=RS256,ttl=0", "auth: invalid ttl \"0\""},
      {"jwt,sign-method=RS256,ttl=inf", "auth: invalid ttl \"inf\""},
      {"jwt,sign-method=RS256", "auth: missing key data"},
      {"jwt,sign-method=HS256,pub-key=/x", "auth: missing key data"},
      {"jwt,sign-method=RS256,pub-key=/nonexistent/k.pem",
       "auth: failed to read public key: open /nonexistent/k.pem"},
      {"jwt,sign-method=ES256,priv-key=/nonexistent/k.pem",
       "auth: failed to read private key: open /nonexistent/k.pem"},
  };
  for (const Case& c : cases) {
    auto p = NewTokenProvider(c.spec, absl::Seconds(1), &clock);
    ASSERT_FALSE(p.ok()) << c.spec;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.spec;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(c.message))
        << c.spec;
  }
}

// --- JWT --------------------------------------------------------------------

// Key files for one key, made at run time.
struct KeyFiles {
  std::string priv;  // PEM private key (traditional form)
  std::string pub;   // PEM "PUBLIC KEY"
  std::string cert;  // self-signed PEM certificate of the key
};

std::string PublicKeyPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PUBKEY(bio, key), 1);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  return pem;
}

common::EvpPkeyPtr NewKey(const std::string& kind) {
  if (kind == "rsa") return *common::GenerateKey(common::KeyType::kRsa2048);
  if (kind == "P-256") return *common::GenerateKey(common::KeyType::kEcdsaP256);
  return common::EvpPkeyPtr(EVP_EC_gen(kind.c_str()));  // P-384, P-521
}

void WriteFile(const std::string& path, absl::string_view contents) {
  ASSERT_TRUE(common::WriteFileAtomically(path, contents, 0600).ok()) << path;
}

KeyFiles WriteKeyFiles(const std::string& dir, const std::string& name,
                       EVP_PKEY* key) {
  KeyFiles f{dir + "/" + name + ".key", dir + "/" + name + ".pub",
             dir + "/" + name + ".crt"};
  common::CertificateSpec spec;
  spec.common_name = name;
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24);
  auto cert = common::IssueCertificate(spec, key, nullptr, nullptr);
  EXPECT_TRUE(cert.ok()) << cert.status();
  WriteFile(f.priv, *common::PrivateKeyToPem(key));
  WriteFile(f.pub, PublicKeyPem(key));
  WriteFile(f.cert, *common::CertificateToPem(cert->get()));
  return f;
}

// The JSON claims of a token, decoded (for checking what was signed).
std::string Claims(absl::string_view token) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  std::string json;
  if (parts.size() == 3) absl::WebSafeBase64Unescape(parts[1], &json);
  return json;
}

// `token` with its claims replaced by `json` (the signature kept).
std::string WithClaims(absl::string_view token, absl::string_view json) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  return absl::StrCat(parts[0], ".", absl::WebSafeBase64Escape(json), ".",
                      parts[2]);
}

// `token` with its header replaced by `json` (claims and signature kept).
std::string WithHeader(absl::string_view token, absl::string_view json) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  return absl::StrCat(absl::WebSafeBase64Escape(json), ".", parts[1], ".",
                      parts[2]);
}

class JwtTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/synod_auth_token_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    for (const char* kind : {"rsa", "rsa2", "P-256", "P-384", "P-521"}) {
      std::string k = kind;
      common::EvpPkeyPtr key = NewKey(k == "rsa2" ? "rsa" : k);
      ASSERT_NE(key, nullptr) << kind;
      keys_[k] = WriteKeyFiles(*dir_, k, key.get());
    }
    WriteFile(*dir_ + "/hmac.secret", "a shared secret of some length");
    WriteFile(*dir_ + "/garbage.pem", "not a key\n");
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  std::unique_ptr<TokenProvider> New(const std::string& spec) {
    auto p = NewTokenProvider(spec, absl::Seconds(1), &clock_);
    EXPECT_TRUE(p.ok()) << spec << ": " << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }
  static std::string Spec(const std::string& method, const std::string& pub,
                          const std::string& priv,
                          const std::string& extra = "") {
    std::string spec = "jwt,sign-method=" + method;
    if (!pub.empty()) absl::StrAppend(&spec, ",pub-key=", pub);
    if (!priv.empty()) absl::StrAppend(&spec, ",priv-key=", priv);
    return spec + extra;
  }
  absl::Status NewError(const std::string& spec) {
    auto p = NewTokenProvider(spec, absl::Seconds(1), &clock_);
    return p.ok() ? absl::OkStatus() : p.status();
  }

  static std::string* dir_;
  static std::map<std::string, KeyFiles> keys_;
  common::FakeClock clock_;
};
std::string* JwtTest::dir_ = nullptr;
std::map<std::string, KeyFiles> JwtTest::keys_;

TEST_F(JwtTest, SignsAndVerifiesUsernameRevisionAndExp) {
  const KeyFiles& k = keys_["rsa"];
  auto p = New(Spec("RS256", k.cert, k.priv));
  EXPECT_EQ(p->NewTokenPrefix(), "");
  auto token = p->Assign("", 9, "alice", 12);
  ASSERT_TRUE(token.ok()) << token.status();
  // exp = Now() + the default 5m, in Unix seconds, from the injected clock.
  EXPECT_EQ(Claims(*token),
            absl::StrCat("{\"exp\":", absl::ToUnixSeconds(clock_.Now()) + 300,
                         ",\"revision\":12,\"username\":\"alice\"}"));
  auto info = p->Info(*token, 99);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->username, "alice");
  EXPECT_EQ(info->revision, 12u);  // the token's, not the current one
}

TEST_F(JwtTest, PublicKeyMayBeAKeyOrACertificateOrLeftOut) {
  const KeyFiles& k = keys_["rsa"];
  auto signer = New(Spec("RS256", k.pub, k.priv));
  auto token = signer->Assign("", 1, "alice", 3);
  ASSERT_TRUE(token.ok()) << token.status();
  for (const std::string& spec :
       {Spec("RS256", k.pub, ""), Spec("RS256", k.cert, ""),
        Spec("RS256", "", k.priv), Spec("RS256", k.cert, k.priv)}) {
    auto p = New(spec);
    ASSERT_NE(p, nullptr);
    auto info = p->Info(*token, 0);
    ASSERT_TRUE(info.has_value()) << spec;
    EXPECT_EQ(info->username, "alice");
  }
}

TEST_F(JwtTest, VerifyOnlyProviderCannotSign) {
  const KeyFiles& k = keys_["P-256"];
  auto p = New(Spec("ES256", k.cert, ""));
  auto token = p->Assign("", 1, "alice", 3);
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(token.status().message(), "auth: failed to sign token");
  auto signed_token = New(Spec("ES256", "", k.priv))->Assign("", 1, "bob", 4);
  ASSERT_TRUE(signed_token.ok()) << signed_token.status();
  auto info = p->Info(*signed_token, 0);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->username, "bob");
  EXPECT_EQ(info->revision, 4u);
}

TEST_F(JwtTest, ExpiresAfterTtl) {
  const KeyFiles& k = keys_["rsa"];
  auto p = New(Spec("RS256", k.pub, k.priv, ",ttl=2s"));
  auto token = p->Assign("", 1, "alice", 3);
  ASSERT_TRUE(token.ok()) << token.status();
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(p->Info(*token, 0).has_value());  // now == exp: still valid
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(p->Info(*token, 0).has_value());
  // Disable and Enable do not bring it back or recall live tokens.
  auto fresh = p->Assign("", 2, "alice", 3);
  p->Disable();
  p->InvalidateUser("alice");
  p->Enable();
  EXPECT_TRUE(p->Info(*fresh, 0).has_value());
}

TEST_F(JwtTest, TtlIsAGoDuration) {
  const KeyFiles& k = keys_["P-256"];
  auto p = New(Spec("ES256", "", k.priv, ",ttl=1m30s"));
  auto token = p->Assign("", 1, "alice", 3);
  ASSERT_TRUE(token.ok());
  EXPECT_THAT(Claims(*token),
              HasSubstr(absl::StrCat("\"exp\":",
                                     absl::ToUnixSeconds(clock_.Now()) + 90)));
  p = New(Spec("ES256", "", k.priv, ",ttl=300ms"));
  token = p->Assign("", 1, "alice", 3);
  ASSERT_TRUE(token.ok());
  EXPECT_THAT(Claims(*token),
              HasSubstr(absl::StrCat("\"exp\":",
                                     absl::ToUnixSeconds(clock_.Now()))));
}

TEST_F(JwtTest, RejectsTamperedTokens) {
  const KeyFiles& k = keys_["rsa"];
  auto p = New(Spec("RS256", k.pub, k.priv));
  const std::string token = *p->Assign("", 1, "alice", 3);
  const std::string claims = Claims(token);
  std::string forged = claims;
  forged.replace(forged.find("alice"), 5, "admin");
  EXPECT_FALSE(p->Info(WithClaims(token, forged), 0).has_value());
  // A character inside the signature (the last one may hold padding bits
  // only, which decoders ignore).
  std::string bad_sig = token;
  char& c = bad_sig[token.rfind('.') + 10];
  c = c == 'A' ? 'B' : 'A';
  EXPECT_FALSE(p->Info(bad_sig, 0).has_value());
  EXPECT_FALSE(p->Info(token.substr(0, token.rfind('.')), 0).has_value());
  EXPECT_FALSE(p->Info(token + ".x", 0).has_value());
  EXPECT_FALSE(p->Info(std::string(token) + '\0', 0).has_value());
  for (const char* junk : {"", ".", "..", "a.b.c", "abcdefghijklmnop.5"}) {
    EXPECT_FALSE(p->Info(junk, 0).has_value()) << junk;
  }
}

TEST_F(JwtTest, RejectsTokensOfAnotherKeyOrAlgorithm) {
  const KeyFiles& rsa = keys_["rsa"];
  auto p = New(Spec("RS256", rsa.pub, ""));
  // Another RSA key.
  auto other = New(Spec("RS256", "", keys_["rsa2"].priv))->Assign("", 1, "a", 1);
  EXPECT_FALSE(p->Info(*other, 0).has_value());
  // Same key, another RSA algorithm.
  for (const char* alg : {"RS384", "PS256"}) {
    auto t = New(Spec(alg, "", rsa.priv))->Assign("", 1, "a", 1);
    ASSERT_TRUE(t.ok()) << alg;
    EXPECT_FALSE(p->Info(*t, 0).has_value()) << alg;
  }
  // An EC token.
  auto ec = New(Spec("ES256", "", keys_["P-256"].priv))->Assign("", 1, "a", 1);
  EXPECT_FALSE(p->Info(*ec, 0).has_value());
  // HMAC keyed with the public key's PEM (the classic alg confusion).
  auto hs = New(Spec("HS256", "", rsa.pub))->Assign("", 1, "a", 1);
  ASSERT_TRUE(hs.ok());
  EXPECT_FALSE(p->Info(*hs, 0).has_value());
  // A valid token whose header claims another alg, or none.
  auto good = *New(Spec("RS256", "", rsa.priv))->Assign("", 1, "a", 1);
  ASSERT_TRUE(p->Info(good, 0).has_value());
  EXPECT_FALSE(
      p->Info(WithHeader(good, R"({"alg":"RS384","typ":"JWT"})"), 0)
          .has_value());
  EXPECT_FALSE(p->Info(WithHeader(good, R"({"alg":"none"})"), 0).has_value());
  std::string unsigned_token = WithHeader(good, R"({"alg":"none"})");
  unsigned_token.erase(unsigned_token.rfind('.') + 1);
  EXPECT_FALSE(p->Info(unsigned_token, 0).has_value());
}

TEST_F(JwtTest, RejectsBadKeyFiles) {
  const std::string garbage = *dir_ + "/garbage.pem";
  const KeyFiles& rsa = keys_["rsa"];
  const KeyFiles& ec = keys_["P-256"];
  struct Case {
    std::string spec;
    const char* message;
  } cases[] = {
      {Spec("RS256", garbage, ""), "auth: failed to parse public key"},
      {Spec("RS256", "", garbage), "auth: failed to parse private key"},
      {Spec("RS256", "", rsa.pub), "auth: failed to parse private key"},
      {Spec("RS256", ec.cert, ""), "not an RSA key"},
      {Spec("PS256", "", ec.priv), "not an RSA key"},
      {Spec("ES256", rsa.pub, ""), "not a P-256 EC key"},
      {Spec("ES384", "", ec.priv), "not a P-384 EC key"},
      {Spec("RS256", keys_["rsa2"].pub, rsa.priv),
       "auth: public and private keys don't match"},
  };
  for (const Case& c : cases) {
    absl::Status st = NewError(c.spec);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.spec;
    EXPECT_THAT(std::string(st.message()), HasSubstr(c.message)) << c.spec;
  }
}

// Every sign method: sign, verify with the certificate alone, reject a
// forged claim.
class JwtMethodTest : public JwtTest,
                      public ::testing::WithParamInterface<const char*> {};

TEST_P(JwtMethodTest, RoundTrip) {
  const std::string method = GetParam();
  std::string pub, priv;
  if (method[0] == 'H') {
    priv = *dir_ + "/hmac.secret";
  } else {
    const char* kind = method[0] != 'E'        ? "rsa"
                       : method == "ES256"     ? "P-256"
                       : method == "ES384"     ? "P-384"
                                               : "P-521";
    pub = keys_[kind].cert;
    priv = keys_[kind].priv;
  }
  auto signer = New(Spec(method, "", priv));
  auto verifier = New(Spec(method, pub, method[0] == 'H' ? priv : ""));
  ASSERT_NE(signer, nullptr);
  ASSERT_NE(verifier, nullptr);
  auto token = signer->Assign("", 1, "r\"oot\\ é", 77);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_THAT(*token, ::testing::StartsWith(absl::WebSafeBase64Escape(
                          absl::StrCat("{\"alg\":\"", method,
                                       "\",\"typ\":\"JWT\"}"))));
  auto info = verifier->Info(*token, 0);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->username, "r\"oot\\ é");
  EXPECT_EQ(info->revision, 77u);
  std::string claims = Claims(*token);
  claims.replace(claims.find("77"), 2, "78");
  EXPECT_FALSE(verifier->Info(WithClaims(*token, claims), 0).has_value());
}

INSTANTIATE_TEST_SUITE_P(AllMethods, JwtMethodTest,
                         ::testing::Values("RS256", "RS384", "RS512", "PS256",
                                           "PS384", "PS512", "ES256", "ES384",
                                           "ES512", "HS256", "HS384", "HS512"));

// --- etcd's fixtures and tokens jwt-go made with them ------------------------

constexpr char kFixtures[] =
    "/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures/";

// Made by github.com/golang-jwt/jwt (what etcd 3.4 uses) with
// server.key.insecure (RS256, PS256) and server-ecdsa.key.insecure (ES256):
// {"exp":1000600,"revision":7,"username":"root"}, i.e. valid for 600 s from
// FakeClock's start.
constexpr char kGoRs256[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJleHAiOjEwMDA2MDAsInJldmlzaW9uIjo3LCJ1c2VybmFtZSI6InJvb3QifQ."
    "Z-SzYq6MwjJ_xFfziSMLHWqrNmJzb8i4elTwWDAxJ9M995u43Tm9d7OU9JQDzFJyMS4rR6Qro7"
    "iDH7sq88MYs1IEkuTuLd_oYSuGqben7nSJjW4m9_Xht_dbjEJsM9NCB_G03iZiV0a7vaLCahfZ"
    "4n3IsYPcgYjpKNQELwxCx2vOrLiwEJYRUVAfCwCxCTCC_l_tFvw1d6287ViTtxZVwiqUQu-kNC"
    "exVnUrfbR_uhoL8TAYz5yg84biS6LRFK1sJlaz_hekaIJ7mN4j-bgT3lDkv3j5N2vulfEH3nCB"
    "9EDy8Hh2i5k_ehRdJutfZ48SKVG4XXJbkpCtooLliuLqqg";
constexpr char kGoPs256[] =
    "eyJhbGciOiJQUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJleHAiOjEwMDA2MDAsInJldmlzaW9uIjo3LCJ1c2VybmFtZSI6InJvb3QifQ."
    "kjDomOs-wR3xzeoXw9BlKiVFBC0Le9-nWPNtUEAOylyy2sNdoANGKLu8bJwIatu3hge9LAOPzJ"
    "nOkYGsYgM7uP5U5JCcN-HcXjdtlvii6NzDMukiTm-8DnQIHi9Icc62Z20ZyIOM1Z_VST3uKMVR"
    "l2C5Kogux6Ss4uk-WuFPg54wQexh9JwyrGc7SoRhBphbZP-I2xVkyWu9fyMlVdec__AosqDbXq"
    "z65wfVfCZ_dFLF6_IaDMitqO_JokvKQYnz2ZtOqKr0bVm92T52IZ7sR3IwOv09bRO0PKJVzhD5"
    "nkZPzO2cKE_FWM_F6Cz9O7DrsGMR1b_XniMJN3ozcQyN1g";
constexpr char kGoEs256[] =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJleHAiOjEwMDA2MDAsInJldmlzaW9uIjo3LCJ1c2VybmFtZSI6InJvb3QifQ."
    "aAZiTww94bJ_8deR-qG-63IAd5KL2tBMwIvGabp0feBg-dA5-QvOfbmqBFu0fIPvWtiqh2BgEr"
    "0JqVKn6G_OLA";

class EtcdFixturesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(std::string(kFixtures) + "server.crt")) {
      GTEST_SKIP() << "etcd's fixtures are not installed at " << kFixtures;
    }
  }
  std::unique_ptr<TokenProvider> New(const std::string& method,
                                     const std::string& cert,
                                     const std::string& key,
                                     common::Clock* clock = nullptr) {
    std::string spec = absl::StrCat("jwt,sign-method=", method, ",pub-key=",
                                    kFixtures, cert);
    if (!key.empty()) absl::StrAppend(&spec, ",priv-key=", kFixtures, key);
    auto p = NewTokenProvider(spec, absl::Seconds(1),
                              clock != nullptr ? clock : &clock_);
    EXPECT_TRUE(p.ok()) << spec << ": " << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }

  common::FakeClock clock_;
};

// etcd's e2e: --auth-token jwt,pub-key=server.crt,priv-key=server.key.insecure,
// sign-method=RS256.
TEST_F(EtcdFixturesTest, ServerCertAndKeyWithRs256) {
  auto p = New("RS256", "server.crt", "server.key.insecure");
  ASSERT_NE(p, nullptr);
  auto token = p->Assign("", 1, "root", 2);
  ASSERT_TRUE(token.ok()) << token.status();
  auto info = New("RS256", "server.crt", "")->Info(*token, 0);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->username, "root");
  EXPECT_EQ(info->revision, 2u);
}

TEST_F(EtcdFixturesTest, VerifiesTokensJwtGoMade) {
  struct Case {
    const char* method;
    const char* cert;
    const char* token;
  } cases[] = {{"RS256", "server.crt", kGoRs256},
               {"PS256", "server.crt", kGoPs256},
               {"ES256", "server-ecdsa.crt", kGoEs256}};
  for (const Case& c : cases) {
    common::FakeClock clock;
    auto p = New(c.method, c.cert, "", &clock);
    ASSERT_NE(p, nullptr) << c.method;
    auto info = p->Info(c.token, 0);
    ASSERT_TRUE(info.has_value()) << c.method;
    EXPECT_EQ(info->username, "root");
    EXPECT_EQ(info->revision, 7u);
    clock.Advance(absl::Seconds(601));
    EXPECT_FALSE(p->Info(c.token, 0).has_value()) << c.method << " expired";
  }
}

}  // namespace
}  // namespace synod::auth
