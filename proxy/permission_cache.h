// PermissionCache: who may read what, as the members decided it, so that
// one range cache and one set of coalesced watches can serve every user
// without leaking across them.
//
// A decision is keyed by (credential, key, range_end), the credential being
// the client's "token" metadata ("" for a client that sent none), and is
// either OK or the member's refusal:
//   PermissionDenied "etcdserver: permission denied"
//   Unauthenticated  "etcdserver: invalid auth token"
//   InvalidArgument  "etcdserver: user name is empty"
// It is obtained by a probe carrying the client's token: a serializable
// Range over the same key and range_end with count_only and limit 1 (the
// member checks READ on the whole range and sends back no key or value;
// an empty key is probed as "\0", the same range). Concurrent checks of one
// key share one probe. Any other answer (unavailable, "revision of auth
// store is old", ...) decides nothing: it is passed to the waiting callers
// and not kept.
//
// Validity. Every decision belongs to an epoch; SetAuthState() moves to a
// new epoch whenever the cluster's auth state (enabled, auth revision)
// changes and Invalidate() does so unconditionally, and a decision of an
// older epoch is never used again. A decision also expires after
// `max_age` when the auth state is known (so an expired token is noticed),
// and after `unknown_ttl` when it is not (a member that does not tell it,
// such as etcd). While auth is known to be disabled a client without a
// token is allowed without a probe (the member would allow it); the moment
// the auth state says enabled, the epoch changes and it is probed, and
// denied as the member denies it.
//
// Memory: at most `max_entries` keys; past that, decisions are dropped
// (probes in flight are kept).
//
// Thread-safety: safe for concurrent use; callbacks run with no lock held,
// on the caller's thread (cached decisions) or the probe's.
#ifndef SYNOD_PROXY_PERMISSION_CACHE_H_
#define SYNOD_PROXY_PERMISSION_CACHE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "proxy/upstream.h"

namespace synod::proxy {

struct PermissionCacheOptions {
  // Longest life of a decision while the auth state is known (> 0).
  absl::Duration max_age = absl::Seconds(30);
  // Life of a decision while it is not (> 0).
  absl::Duration unknown_ttl = absl::Seconds(1);
  size_t max_entries = 16384;
};

class PermissionCache {
 public:
  // The decision (OK or the member's error) and the epoch it belongs to.
  using Done = std::function<void(const grpc::Status&, uint64_t epoch)>;

  // `upstream` and `clock` outlive the cache. Starts with the auth state
  // unknown.
  PermissionCache(Upstream* upstream, common::Clock* clock,
                  PermissionCacheOptions options);

  // Decides whether `token` may read [key, range_end) (etcd's range_end
  // rules); calls `done` exactly once, possibly before returning.
  void Check(const std::string& token, const std::string& key,
             const std::string& range_end, Done done);
  // Keeps a decision learned by another call made with `token` over the
  // same range (a linearizable read's probe) at `epoch`. Ignored if `s`
  // decides nothing or the epoch has passed.
  void Record(const std::string& token, const std::string& key,
              const std::string& range_end, const grpc::Status& s,
              uint64_t epoch);
  // The cluster's auth state as last polled; a change drops every decision
  // (a new epoch). Returns whether it changed.
  bool SetAuthState(const UpstreamAuthState& state);
  // Drops every decision (a new epoch).
  void Invalidate();
  uint64_t epoch() const;

  // True when `s` is a decision (OK or one of the refusals above).
  static bool IsDecision(const grpc::Status& s);
  // The probe Check() sends for a range.
  static etcdserverpb::RangeRequest Probe(const std::string& key,
                                          const std::string& range_end,
                                          bool serializable);

  size_t TEST_entries() const;

 private:
  using Key = std::tuple<std::string, std::string, std::string>;
  struct Entry {
    bool decided = false;
    grpc::Status status;
    absl::Time at;
    uint64_t epoch = 0;
    bool probing = false;
    std::vector<Done> waiters;
  };

  bool ValidLocked(const Entry& e) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NewEpochLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnProbe(const Key& key, uint64_t epoch, const grpc::Status& s);

  Upstream* const upstream_;
  common::Clock* const clock_;
  const PermissionCacheOptions options_;

  mutable absl::Mutex mu_;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 1;
  UpstreamAuthState state_ ABSL_GUARDED_BY(mu_);
  std::map<Key, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_PERMISSION_CACHE_H_
