// Private to backend/auth: the JWT sign methods Synod knows and the keys a
// JWT TokenProvider signs and verifies with, read from --auth-token's
// pub-key and priv-key files (etcd 3.4's auth/options.go).
//
// libjwt 1.10 signs and verifies HS*, RS* and ES*; it has no RSASSA-PSS, so
// PS* tokens are signed and verified here with OpenSSL (PssSign/PssVerify).
//
// Ownership: a JwtKeys owns its keys. Thread-safe: the functions may be
// called from any thread, and a JwtKeys may be read (not changed) by many.
#ifndef SYNOD_BACKEND_AUTH_JWT_KEYS_H_
#define SYNOD_BACKEND_AUTH_JWT_KEYS_H_

#include <jwt.h>
#include <openssl/evp.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/x509_util.h"

namespace synod::auth {

enum class JwtKeyKind { kHmac, kRsa, kEcdsa };

struct JwtSignMethod {
  const char* name;  // the JWS "alg", e.g. "RS256"
  JwtKeyKind kind;
  bool pss;               // PS*: signed here, not by libjwt
  jwt_alg_t libjwt_alg;   // JWT_ALG_NONE for PS*
  const EVP_MD* (*digest)();
  int ec_bits;            // ES*: the curve's size (256, 384, 521); else 0
};

// The method called `name` (HS/RS/PS/ES with 256/384/512), or null.
const JwtSignMethod* FindJwtSignMethod(absl::string_view name);

struct JwtKeys {
  // What libjwt takes: HS*, the secret (the priv-key file's bytes, as etcd
  // uses them) for both; RS*/ES*, PEM "PUBLIC KEY" to verify and PEM
  // PKCS#8 "PRIVATE KEY" to sign. PS*: both empty.
  std::string libjwt_verify_key;
  std::string libjwt_sign_key;
  // RS*/PS*/ES*: the keys themselves; sign_key is null when there is no
  // priv-key (verify only). HS*: both null.
  common::EvpPkeyPtr verify_key;
  common::EvpPkeyPtr sign_key;

  // Whether tokens can be signed (there is a private key or HMAC secret).
  bool CanSign() const {
    return sign_key != nullptr || !libjwt_sign_key.empty();
  }
};

// Loads the keys for `method` from the PEM files at `pub_path` and
// `priv_path` ("" = not given). The public key may be a PEM "PUBLIC KEY" or
// a PEM certificate (its key is used, as jwt-go does). With a private key
// and no public key, tokens are verified with the private key's public
// half. HS* needs priv-key and ignores pub-key.
// Errors (InvalidArgument): "auth: missing key data ..." (no key),
// "auth: failed to read public/private key: open PATH: <why>",
// "auth: failed to parse public/private key PATH: ...", a key of the wrong
// type or curve for `method`, "auth: public and private keys don't match".
absl::StatusOr<JwtKeys> LoadJwtKeys(const JwtSignMethod& method,
                                    const std::string& pub_path,
                                    const std::string& priv_path);

// PS*: the RSASSA-PSS signature of `input` with `key` (MGF1 on the method's
// digest, salt as long as the digest, as jwt-go signs). Errors: Internal
// naming OpenSSL's error.
absl::StatusOr<std::string> PssSign(const JwtSignMethod& method, EVP_PKEY* key,
                                    absl::string_view input);

// PS*: whether `signature` is a valid RSASSA-PSS signature of `input` by
// `key`, with any salt length (jwt-go's PSSSaltLengthAuto).
bool PssVerify(const JwtSignMethod& method, EVP_PKEY* key,
               absl::string_view input, absl::string_view signature);

}  // namespace synod::auth

#endif  // SYNOD_BACKEND_AUTH_JWT_KEYS_H_
