// Private to backend/auth: the "jwt" TokenProvider (etcd 3.4's auth/jwt.go
// and auth/options.go). See token.h for what the tokens are.
//
// Options (from "jwt,k=v,..."): sign-method (required; HS/RS/PS/ES with
// 256/384/512), pub-key and priv-key (PEM file paths), ttl (a Go duration
// > 0, default 5m). Unknown options are logged and ignored, as etcd does.
//
// A token is {"alg":<sign-method>,"typ":"JWT"} . {"exp","revision",
// "username"} . signature, with exp = Now() + ttl in Unix seconds. It is
// valid when its alg is the configured sign-method, its signature checks
// with the public key, now <= exp (and now >= nbf / iat if present, as
// jwt-go checks them), and it names a non-empty user and a revision.
//
// Ownership: borrows the Clock (it must outlive the provider).
// Thread-safe: the provider holds no mutable state.
#ifndef SYNOD_BACKEND_AUTH_JWT_TOKEN_H_
#define SYNOD_BACKEND_AUTH_JWT_TOKEN_H_

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "backend/auth/token.h"
#include "common/clock.h"

namespace synod::auth {

inline constexpr absl::Duration kDefaultJwtTtl = absl::Minutes(5);

// Builds a JWT provider from the options after "jwt," (key -> value).
// Errors (InvalidArgument): "auth: missing sign-method",
// "auth: unsupported sign-method \"X\"", "auth: invalid ttl \"X\"", and
// LoadJwtKeys's errors (jwt_keys.h).
absl::StatusOr<std::unique_ptr<TokenProvider>> NewJwtTokenProvider(
    const absl::flat_hash_map<std::string, std::string>& options,
    common::Clock* clock);

}  // namespace synod::auth

#endif  // SYNOD_BACKEND_AUTH_JWT_TOKEN_H_
