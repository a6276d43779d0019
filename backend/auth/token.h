// Auth tokens: what Authenticate hands a client and what every later call
// carries in the gRPC metadata key "token" (etcd's auth/simple_token.go and
// auth/jwt.go). Two kinds, picked by --auth-token:
//  * "simple" (the default): 16 random letters + "." + the Raft index of the
//    Authenticate entry. Every member registers the same token when it
//    applies that entry, so the token works on any member. A token lives
//    --auth-token-ttl seconds (default 300) after its last use (etcd resets
//    the TTL on every use). Tokens live in memory only: after a restart,
//    clients authenticate again (clientv3 does so on "invalid auth token").
//  * "jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256,ttl=5m": a signed JWT
//    with the claims {"username", "revision", "exp"}. Any member verifies it
//    with the public key alone (pub-key may be a PEM public key or a PEM
//    certificate, as etcd's jwt-go accepts both). Without priv-key the
//    member verifies but cannot sign (Authenticate fails). sign-method:
//    RS256/384/512, PS256/384/512, ES256/384/512, and HS256/384/512 with
//    priv-key as the shared secret (etcd 3.4's set). ttl is a Go duration,
//    default 5m.
//
// Ownership: a TokenProvider owns its keys and its token table.
// Thread-safe: every method may be called from any thread.
#ifndef SYNOD_BACKEND_AUTH_TOKEN_H_
#define SYNOD_BACKEND_AUTH_TOKEN_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace synod::auth {

// Who a call comes from: a user name and the auth revision its credentials
// were issued at (0: no credentials; etcd's AuthInfo).
struct AuthInfo {
  std::string username;
  uint64_t revision = 0;
};

class TokenProvider {
 public:
  virtual ~TokenProvider() = default;

  // The part of a simple token the proposer picks before proposing
  // Authenticate: 16 random letters (etcd's genTokenPrefix). "" for JWT.
  virtual std::string NewTokenPrefix() = 0;

  // Issues a token for `username` at auth revision `revision`, when the
  // Authenticate entry at Raft index `index` is applied (every member calls
  // it, so a simple token is registered everywhere). `prefix` is the
  // proposer's NewTokenPrefix(). Errors: FailedPrecondition "auth: failed
  // to sign token" (JWT without a private key or a signing failure).
  virtual absl::StatusOr<std::string> Assign(absl::string_view prefix,
                                             uint64_t index,
                                             absl::string_view username,
                                             uint64_t revision) = 0;

  // Who `token` belongs to. `current_revision` is the store's auth revision:
  // a simple token carries no revision, so it is reported at the current
  // one (as etcd does); a JWT reports the revision it was signed at.
  // nullopt: unknown, expired, malformed or badly signed (the caller answers
  // kInvalidAuthToken). A simple token's TTL restarts on each use.
  virtual std::optional<AuthInfo> Info(absl::string_view token,
                                       uint64_t current_revision) = 0;

  // Auth was enabled / disabled (applied). Disable forgets every simple
  // token; Enable starts accepting new ones.
  virtual void Enable() = 0;
  virtual void Disable() = 0;

  // Forgets the simple tokens of `username` (user deleted or password
  // changed; etcd's invalidateUser). JWTs cannot be recalled: they stay
  // valid until exp, but the store refuses a deleted user's calls.
  virtual void InvalidateUser(absl::string_view username) = 0;
};

// Builds the provider --auth-token names, with --auth-token-ttl `ttl` for
// simple tokens. `clock` (not owned; must outlive the provider) gives token
// expiry. Errors: InvalidArgument naming the bad option, e.g. "auth: unknown
// token type \"foo\"", "auth: failed to read public key ...: <why>",
// "auth: unsupported sign-method \"HS1\"", "auth: invalid ttl \"x\"".
absl::StatusOr<std::unique_ptr<TokenProvider>> NewTokenProvider(
    absl::string_view spec, absl::Duration simple_ttl, common::Clock* clock);

}  // namespace synod::auth

#endif  // SYNOD_BACKEND_AUTH_TOKEN_H_
