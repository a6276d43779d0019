#include "backend/auth/jwt_keys.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace synod::auth {
namespace {

using common::EvpPkeyPtr;

constexpr JwtSignMethod kMethods[] = {
    {"HS256", JwtKeyKind::kHmac, false, JWT_ALG_HS256, EVP_sha256, 0},
    {"HS384", JwtKeyKind::kHmac, false, JWT_ALG_HS384, EVP_sha384, 0},
    {"HS512", JwtKeyKind::kHmac, false, JWT_ALG_HS512, EVP_sha512, 0},
    {"RS256", JwtKeyKind::kRsa, false, JWT_ALG_RS256, EVP_sha256, 0},
    {"RS384", JwtKeyKind::kRsa, false, JWT_ALG_RS384, EVP_sha384, 0},
    {"RS512", JwtKeyKind::kRsa, false, JWT_ALG_RS512, EVP_sha512, 0},
    {"PS256", JwtKeyKind::kRsa, true, JWT_ALG_NONE, EVP_sha256, 0},
    {"PS384", JwtKeyKind::kRsa, true, JWT_ALG_NONE, EVP_sha384, 0},
    {"PS512", JwtKeyKind::kRsa, true, JWT_ALG_NONE, EVP_sha512, 0},
    {"ES256", JwtKeyKind::kEcdsa, false, JWT_ALG_ES256, EVP_sha256, 256},
    {"ES384", JwtKeyKind::kEcdsa, false, JWT_ALG_ES384, EVP_sha384, 384},
    {"ES512", JwtKeyKind::kEcdsa, false, JWT_ALG_ES512, EVP_sha512, 521},
};

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

BioPtr ReadBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// A passphrase callback that has none: an encrypted key fails to load
// rather than prompting on the terminal.
int NoPassphrase(char*, int, int, void*) { return 0; }

absl::StatusOr<std::string> ReadKeyFile(absl::string_view what,
                                        const std::string& path) {
  absl::StatusOr<std::string> data = common::ReadWholeFile(path);
  if (!data.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "auth: failed to read ", what, ": ", data.status().message()));
  }
  return data;
}

absl::Status ParseError(absl::string_view what, const std::string& path,
                        absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("auth: failed to parse ", what, " ", path, ": ", why));
}

// Whether `key` is of the kind (and EC curve size) `method` signs with.
absl::Status CheckKeyType(const JwtSignMethod& method, EVP_PKEY* key,
                          absl::string_view what, const std::string& path) {
  const int id = EVP_PKEY_get_base_id(key);
  if (method.kind == JwtKeyKind::kRsa && id != EVP_PKEY_RSA) {
    return ParseError(what, path,
                      absl::StrCat("not an RSA key (", method.name, ")"));
  }
  if (method.kind == JwtKeyKind::kEcdsa &&
      (id != EVP_PKEY_EC || EVP_PKEY_get_bits(key) != method.ec_bits)) {
    return ParseError(what, path,
                      absl::StrCat("not a P-", method.ec_bits, " EC key (",
                                   method.name, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<EvpPkeyPtr> LoadPrivateKey(const JwtSignMethod& method,
                                          const std::string& path) {
  absl::StatusOr<std::string> pem = ReadKeyFile("private key", path);
  if (!pem.ok()) return pem.status();
  BioPtr bio = ReadBio(*pem);
  EvpPkeyPtr key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    ERR_clear_error();
    return ParseError("private key", path, "not a PEM private key");
  }
  absl::Status st = CheckKeyType(method, key.get(), "private key", path);
  if (!st.ok()) return st;
  return key;
}

// A PEM "PUBLIC KEY", or else the key of the first PEM certificate.
absl::StatusOr<EvpPkeyPtr> LoadPublicKey(const JwtSignMethod& method,
                                         const std::string& path) {
  absl::StatusOr<std::string> pem = ReadKeyFile("public key", path);
  if (!pem.ok()) return pem.status();
  BioPtr bio = ReadBio(*pem);
  EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    bio = ReadBio(*pem);
    common::X509Ptr cert(
        PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
    if (cert != nullptr) key.reset(X509_get_pubkey(cert.get()));
  }
  ERR_clear_error();
  if (key == nullptr) {
    return ParseError("public key", path,
                      "not a PEM public key or certificate");
  }
  absl::Status st = CheckKeyType(method, key.get(), "public key", path);
  if (!st.ok()) return st;
  return key;
}

absl::StatusOr<std::string> BioContents(BIO* bio, int ok) {
  if (ok != 1) {
    return absl::InternalError(absl::StrCat("auth: encoding a key: ",
                                            common::DrainOpenSslErrors()));
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<std::string> PublicKeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  return BioContents(bio.get(), PEM_write_bio_PUBKEY(bio.get(), key));
}

absl::StatusOr<std::string> PrivateKeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  return BioContents(bio.get(),
                     PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr,
                                                   nullptr, 0, nullptr,
                                                   nullptr));
}

absl::StatusOr<JwtKeys> LoadHmacKeys(const JwtSignMethod& method,
                                     const std::string& priv_path) {
  if (priv_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "auth: missing key data: sign-method ", method.name,
        " needs priv-key"));
  }
  absl::StatusOr<std::string> secret = ReadKeyFile("private key", priv_path);
  if (!secret.ok()) return secret.status();
  if (secret->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth: missing key data: ", priv_path, " is empty"));
  }
  JwtKeys keys;
  keys.libjwt_verify_key = *secret;
  keys.libjwt_sign_key = *std::move(secret);
  return keys;
}

// Sets RSASSA-PSS with `salt_len` on a signing or verifying context.
bool SetPss(EVP_PKEY_CTX* pctx, const EVP_MD* md, int salt_len) {
  return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt_len) > 0 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) > 0;
}

}  // namespace

const JwtSignMethod* FindJwtSignMethod(absl::string_view name) {
  for (const JwtSignMethod& m : kMethods) {
    if (name == m.name) return &m;
  }
  return nullptr;
}

absl::StatusOr<JwtKeys> LoadJwtKeys(const JwtSignMethod& method,
                                    const std::string& pub_path,
                                    const std::string& priv_path) {
  if (method.kind == JwtKeyKind::kHmac) return LoadHmacKeys(method, priv_path);
  if (pub_path.empty() && priv_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "auth: missing key data: sign-method ", method.name,
        " needs pub-key or priv-key"));
  }
  JwtKeys keys;
  if (!priv_path.empty()) {
    absl::StatusOr<EvpPkeyPtr> priv = LoadPrivateKey(method, priv_path);
    if (!priv.ok()) return priv.status();
    keys.sign_key = *std::move(priv);
  }
  if (!pub_path.empty()) {
    absl::StatusOr<EvpPkeyPtr> pub = LoadPublicKey(method, pub_path);
    if (!pub.ok()) return pub.status();
    keys.verify_key = *std::move(pub);
    if (keys.sign_key != nullptr &&
        EVP_PKEY_eq(keys.verify_key.get(), keys.sign_key.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          "auth: public and private keys don't match");
    }
  } else {
    // The private key doubles as the verifying key; up_ref shares it.
    EVP_PKEY_up_ref(keys.sign_key.get());
    keys.verify_key.reset(keys.sign_key.get());
  }
  if (method.pss) return keys;
  absl::StatusOr<std::string> verify_pem = PublicKeyPem(keys.verify_key.get());
  if (!verify_pem.ok()) return verify_pem.status();
  keys.libjwt_verify_key = *std::move(verify_pem);
  if (keys.sign_key != nullptr) {
    absl::StatusOr<std::string> sign_pem = PrivateKeyPem(keys.sign_key.get());
    if (!sign_pem.ok()) return sign_pem.status();
    keys.libjwt_sign_key = *std::move(sign_pem);
  }
  return keys;
}

absl::StatusOr<std::string> PssSign(const JwtSignMethod& method, EVP_PKEY* key,
                                    absl::string_view input) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  size_t len = 0;
  std::string sig;
  if (ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), &pctx, method.digest(), nullptr, key) !=
          1 ||
      !SetPss(pctx, method.digest(), RSA_PSS_SALTLEN_DIGEST) ||
      EVP_DigestSign(ctx.get(), nullptr, &len,
                     reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    return absl::InternalError(
        absl::StrCat("auth: PSS signing: ", common::DrainOpenSslErrors()));
  }
  sig.resize(len);
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()),
                     &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    return absl::InternalError(
        absl::StrCat("auth: PSS signing: ", common::DrainOpenSslErrors()));
  }
  sig.resize(len);
  return sig;
}

bool PssVerify(const JwtSignMethod& method, EVP_PKEY* key,
               absl::string_view input, absl::string_view signature) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  const bool ok =
      ctx != nullptr &&
      EVP_DigestVerifyInit(ctx.get(), &pctx, method.digest(), nullptr, key) ==
          1 &&
      SetPss(pctx, method.digest(), RSA_PSS_SALTLEN_AUTO) &&
      EVP_DigestVerify(
          ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
          signature.size(),
          reinterpret_cast<const unsigned char*>(input.data()),
          input.size()) == 1;
  ERR_clear_error();
  return ok;
}

}  // namespace synod::auth
