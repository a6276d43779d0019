#include "backend/auth/jwt_token.h"

#include <jwt.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "backend/auth/jwt_keys.h"
#include "common/logging.h"

namespace synod::auth {
namespace {

struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;
struct MallocFree {
  void operator()(char* p) const { free(p); }
};
using MallocStr = std::unique_ptr<char, MallocFree>;

// base64url of {"alg":"none"}: see ParseSegment.
constexpr absl::string_view kNoneHeader = "eyJhbGciOiJub25lIn0";

absl::Status SignFailed() {
  return absl::FailedPreconditionError("auth: failed to sign token");
}

// The JSON object in the base64url `segment` of a token, or null. libjwt
// parses it as the claims of an unsigned token built around it, so one JSON
// parser serves the header (every method) and PS* claims, which libjwt
// cannot verify itself.
JwtPtr ParseSegment(absl::string_view segment) {
  const std::string unsigned_token = absl::StrCat(kNoneHeader, ".", segment, ".");
  jwt_t* j = nullptr;
  if (jwt_decode(&j, unsigned_token.c_str(), nullptr, 0) != 0) return nullptr;
  return JwtPtr(j);
}

// The number claim `name`: an integer, or a JSON real truncated (Go reads
// every JSON number as a float64). nullopt: absent or not a number.
std::optional<int64_t> NumberClaim(jwt_t* claims, const char* name) {
  MallocStr json(jwt_get_grants_json(claims, name));
  if (json == nullptr) return std::nullopt;
  int64_t i = 0;
  if (absl::SimpleAtoi(json.get(), &i)) return i;
  double d = 0;
  constexpr double kLimit = 9.2e18;  // inside int64_t's range
  if (absl::SimpleAtod(json.get(), &d) && std::isfinite(d) && d > -kLimit &&
      d < kLimit) {
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

// Who the verified `claims` name at Unix second `now`, or nullopt when they
// are expired, not yet valid or incomplete (jwt-go's MapClaims.Valid, and
// etcd's reading of "username" and "revision").
std::optional<AuthInfo> ClaimsInfo(jwt_t* claims, int64_t now) {
  const char* username = jwt_get_grant(claims, "username");
  if (username == nullptr || *username == '\0') return std::nullopt;
  std::optional<int64_t> revision = NumberClaim(claims, "revision");
  if (!revision.has_value() || *revision < 0) return std::nullopt;
  std::optional<int64_t> exp = NumberClaim(claims, "exp");
  if (!exp.has_value() || now > *exp) return std::nullopt;
  for (const char* not_before : {"nbf", "iat"}) {
    std::optional<int64_t> t = NumberClaim(claims, not_before);
    if (t.has_value() && now < *t) return std::nullopt;
  }
  return AuthInfo{username, static_cast<uint64_t>(*revision)};
}

class JwtTokenProvider final : public TokenProvider {
 public:
  JwtTokenProvider(const JwtSignMethod* method, JwtKeys keys,
                   absl::Duration ttl, common::Clock* clock)
      : method_(method), keys_(std::move(keys)), ttl_(ttl), clock_(clock) {}

  std::string NewTokenPrefix() override { return ""; }

  absl::StatusOr<std::string> Assign(absl::string_view /*prefix*/,
                                     uint64_t /*index*/,
                                     absl::string_view username,
                                     uint64_t revision) override {
    if (!keys_.CanSign()) return SignFailed();
    // A NUL would cut the name short in libjwt's C strings.
    if (username.find('\0') != absl::string_view::npos ||
        revision > static_cast<uint64_t>(std::numeric_limits<long>::max())) {
      return SignFailed();
    }
    const int64_t exp = absl::ToUnixSeconds(clock_->Now() + ttl_);
    jwt_t* raw = nullptr;
    if (jwt_new(&raw) != 0) return SignFailed();
    JwtPtr claims(raw);
    const std::string user(username);
    if (jwt_add_grant(claims.get(), "username", user.c_str()) != 0 ||
        jwt_add_grant_int(claims.get(), "revision",
                          static_cast<long>(revision)) != 0 ||
        jwt_add_grant_int(claims.get(), "exp", static_cast<long>(exp)) != 0) {
      return SignFailed();
    }
    return method_->pss ? SignPss(claims.get()) : SignLibjwt(claims.get());
  }

  std::optional<AuthInfo> Info(absl::string_view token,
                               uint64_t /*current_revision*/) override {
    if (token.find('\0') != absl::string_view::npos) return std::nullopt;
    std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
    if (parts.size() != 3) return std::nullopt;
    // The header's alg must be ours before any key is used with it.
    JwtPtr header = ParseSegment(parts[0]);
    if (header == nullptr) return std::nullopt;
    const char* alg = jwt_get_grant(header.get(), "alg");
    if (alg == nullptr || absl::string_view(alg) != method_->name) {
      return std::nullopt;
    }
    JwtPtr claims = method_->pss ? VerifyPss(token, parts)
                                 : VerifyLibjwt(token);
    if (claims == nullptr) return std::nullopt;
    return ClaimsInfo(claims.get(), absl::ToUnixSeconds(clock_->Now()));
  }

  // JWTs live until exp whatever auth does (as in etcd).
  void Enable() override {}
  void Disable() override {}
  void InvalidateUser(absl::string_view /*username*/) override {}

 private:
  absl::StatusOr<std::string> SignLibjwt(jwt_t* claims) const {
    const std::string& key = keys_.libjwt_sign_key;
    if (jwt_set_alg(claims, method_->libjwt_alg,
                    reinterpret_cast<const unsigned char*>(key.data()),
                    static_cast<int>(key.size())) != 0) {
      return SignFailed();
    }
    MallocStr token(jwt_encode_str(claims));
    if (token == nullptr) return SignFailed();
    return std::string(token.get());
  }

  absl::StatusOr<std::string> SignPss(jwt_t* claims) const {
    MallocStr payload(jwt_get_grants_json(claims, nullptr));
    if (payload == nullptr) return SignFailed();
    const std::string header =
        absl::StrCat("{\"alg\":\"", method_->name, "\",\"typ\":\"JWT\"}");
    std::string token = absl::StrCat(absl::WebSafeBase64Escape(header), ".",
                                     absl::WebSafeBase64Escape(payload.get()));
    absl::StatusOr<std::string> sig =
        PssSign(*method_, keys_.sign_key.get(), token);
    if (!sig.ok()) {
      SYNOD_LOG(WARNING) << sig.status().message();
      return SignFailed();
    }
    absl::StrAppend(&token, ".", absl::WebSafeBase64Escape(*sig));
    return token;
  }

  // The claims of `token` if libjwt verifies its signature with our key.
  JwtPtr VerifyLibjwt(absl::string_view token) const {
    const std::string& key = keys_.libjwt_verify_key;
    const std::string t(token);
    jwt_t* raw = nullptr;
    if (jwt_decode(&raw, t.c_str(),
                   reinterpret_cast<const unsigned char*>(key.data()),
                   static_cast<int>(key.size())) != 0) {
      return nullptr;
    }
    JwtPtr claims(raw);
    if (jwt_get_alg(raw) != method_->libjwt_alg) return nullptr;
    return claims;
  }

  // The claims of `token` (split into `parts`) if its PSS signature checks.
  JwtPtr VerifyPss(absl::string_view token,
                   const std::vector<absl::string_view>& parts) const {
    std::string sig;
    if (!absl::WebSafeBase64Unescape(parts[2], &sig)) return nullptr;
    const absl::string_view input =
        token.substr(0, parts[0].size() + 1 + parts[1].size());
    if (!PssVerify(*method_, keys_.verify_key.get(), input, sig)) {
      return nullptr;
    }
    return ParseSegment(parts[1]);
  }

  const JwtSignMethod* const method_;
  const JwtKeys keys_;
  const absl::Duration ttl_;
  common::Clock* const clock_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenProvider>> NewJwtTokenProvider(
    const absl::flat_hash_map<std::string, std::string>& options,
    common::Clock* clock) {
  std::vector<std::string> unknown;
  for (const auto& [key, value] : options) {
    if (key != "sign-method" && key != "pub-key" && key != "priv-key" &&
        key != "ttl") {
      unknown.push_back(key);
    }
  }
  if (!unknown.empty()) {
    std::sort(unknown.begin(), unknown.end());
    SYNOD_LOG(WARNING) << "auth: unknown JWT options: "
                       << absl::StrJoin(unknown, ", ");
  }
  auto option = [&options](const char* key) {
    auto it = options.find(key);
    return it == options.end() ? std::string() : it->second;
  };

  absl::Duration ttl = kDefaultJwtTtl;
  if (const std::string s = option("ttl"); !s.empty()) {
    if (!absl::ParseDuration(s, &ttl) || ttl <= absl::ZeroDuration() ||
        ttl == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth: invalid ttl \"", s, "\""));
    }
  }
  const std::string name = option("sign-method");
  if (name.empty()) {
    return absl::InvalidArgumentError("auth: missing sign-method");
  }
  const JwtSignMethod* method = FindJwtSignMethod(name);
  if (method == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth: unsupported sign-method \"", name, "\""));
  }
  absl::StatusOr<JwtKeys> keys =
      LoadJwtKeys(*method, option("pub-key"), option("priv-key"));
  if (!keys.ok()) return keys.status();
  return std::make_unique<JwtTokenProvider>(method, *std::move(keys), ttl,
                                            clock);
}

}  // namespace synod::auth
