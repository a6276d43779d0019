// Private to backend/auth: the "simple" TokenProvider (etcd 3.4's
// auth/simple_token.go). See token.h for what the tokens are.
//
// Tokens map "prefix.index" -> user name, with a deadline of last use +
// ttl. An expired token is dropped when it is looked up, and Assign sweeps
// the whole table whenever it has doubled since the last sweep (amortised
// O(1) a token, no thread of its own). A token is expired once the clock is
// past its deadline (etcd's ticker drops it when now.After(deadline)).
//
// Ownership: borrows the Clock (it must outlive the provider).
// Thread-safe: one mutex guards the table.
#ifndef SYNOD_BACKEND_AUTH_SIMPLE_TOKEN_H_
#define SYNOD_BACKEND_AUTH_SIMPLE_TOKEN_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "backend/auth/token.h"
#include "common/clock.h"

namespace synod::auth {

// etcd's --auth-token-ttl default, used for a ttl <= 0.
inline constexpr absl::Duration kDefaultSimpleTokenTtl = absl::Seconds(300);

// 16 letters from [a-zA-Z], uniformly drawn from OpenSSL's CSPRNG
// (etcd's genTokenPrefix).
std::string NewSimpleTokenPrefix();

class SimpleTokenProvider : public TokenProvider {
 public:
  // `ttl`: how long a token lives after its last use (<= 0: 300 s).
  SimpleTokenProvider(absl::Duration ttl, common::Clock* clock);

  std::string NewTokenPrefix() override;
  // Returns prefix + "." + index. Registers it only while enabled (as etcd
  // does, a token assigned while auth is off is never valid). Re-assigning
  // a live token replaces it (etcd panics; a replayed entry is harmless).
  absl::StatusOr<std::string> Assign(absl::string_view prefix, uint64_t index,
                                     absl::string_view username,
                                     uint64_t revision) override;
  std::optional<AuthInfo> Info(absl::string_view token,
                               uint64_t current_revision) override;
  void Enable() override;
  void Disable() override;
  void InvalidateUser(absl::string_view username) override;

  // How many tokens the table holds, expired ones not yet dropped included.
  size_t TEST_TableSize() const;

 private:
  struct Entry {
    std::string username;
    absl::Time deadline;  // expired once Now() > deadline
  };

  // Drops every expired token; the next sweep waits for twice the size.
  void SweepLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration ttl_;
  common::Clock* const clock_;

  mutable absl::Mutex mu_;
  bool enabled_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, Entry> tokens_ ABSL_GUARDED_BY(mu_);
  size_t sweep_at_size_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::auth

#endif  // SYNOD_BACKEND_AUTH_SIMPLE_TOKEN_H_
