// Lessor: the leases of one member (etcd's lease/lessor.go semantics).
//
// Grant and Revoke are applied in log order by the apply thread (they change
// replicated state and are persisted in the same batch as the MVCC writes).
// Keep-alives and expiry are the leader's business: a keep-alive only moves
// the in-memory expiry, and the leader proposes a revoke for each expired
// lease. Time comes from the injected Clock.
//
// Renewal rule (etcd's Promote): when a member becomes leader, including at
// start-up of a single member, every lease's expiry is reset to now + its
// TTL, so a restart never expires a lease early.
//
// Thread-safe: all methods may be called from any thread. Lock order:
// Lessor::mu_ is a leaf lock (never held while calling out).
#ifndef SYNOD_BACKEND_LEASE_LESSOR_H_
#define SYNOD_BACKEND_LEASE_LESSOR_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "backend/mvcc/kv_store.h"
#include "backend/storage/backend.h"
#include "common/clock.h"

namespace synod::lease {

// etcd's limit: larger TTLs get kLeaseTTLTooLarge.
inline constexpr int64_t kMaxLeaseTTL = 9000000000;  // seconds

struct LeaseInfo {
  int64_t id = 0;
  int64_t ttl = 0;        // granted TTL, seconds
  int64_t remaining = 0;  // seconds, rounded up; 0 if expired
  std::vector<std::string> keys;
};

class Lessor : public mvcc::LeaseHooks {
 public:
  // `clock` is not owned. `min_ttl_s`: granted TTLs below it are raised to
  // it (etcd: 1.5 x election timeout, rounded up to a second).
  Lessor(common::Clock* clock, int64_t min_ttl_s);

  // Loads the persisted leases and attaches `leased_keys`. Each lease
  // expires its checkpointed remaining TTL from now if one was recorded,
  // else its full TTL (etcd's renewal rule; Promote() then applies the
  // leader's rule). Errors: DataLoss on a corrupt record.
  absl::Status Restore(storage::Backend* backend,
                       const std::vector<std::pair<int64_t, std::string>>&
                           leased_keys);

  // Forgets every lease (before Restore() from an installed snapshot).
  void Clear();

  // ---- Apply thread ----
  // Grants lease `id` (> 0) with `ttl` seconds, staging its record in
  // `batch`. Returns the TTL actually granted. Errors: kLeaseExist,
  // kLeaseTTLTooLarge.
  absl::StatusOr<int64_t> Grant(int64_t id, int64_t ttl,
                                storage::Batch* batch);
  // Removes lease `id`, staging the record's deletion, and returns the keys
  // that were attached (sorted), which the caller deletes in the same
  // revision. Errors: kLeaseNotFound.
  absl::StatusOr<std::vector<std::string>> Revoke(int64_t id,
                                                  storage::Batch* batch);

  // ---- Any thread ----
  // Renews lease `id` to a full TTL from now; returns the TTL (seconds).
  // Errors: kLeaseNotFound (unknown or already expired).
  absl::StatusOr<int64_t> KeepAlive(int64_t id);
  // TTL, remaining TTL and (if with_keys) attached keys. Errors:
  // kLeaseNotFound.
  absl::StatusOr<LeaseInfo> TimeToLive(int64_t id, bool with_keys) const;
  // Ids of every lease, ascending.
  std::vector<int64_t> Leases() const;
  // Ids of leases whose expiry is at or before now, at most `max`.
  std::vector<int64_t> Expired(size_t max) const;
  // Resets every expiry to now + TTL + extend (etcd's Promote).
  void Promote(absl::Duration extend);
  size_t Count() const;

  // mvcc::LeaseHooks (apply thread).
  bool LeaseExists(int64_t id) const override;
  void Attach(int64_t id, const std::string& key) override;
  void Detach(int64_t id, const std::string& key) override;

 private:
  struct Lease {
    int64_t ttl = 0;
    absl::Time expiry;
    std::set<std::string> keys;
  };
  common::Clock* const clock_;
  const int64_t min_ttl_s_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::lease

#endif  // SYNOD_BACKEND_LEASE_LESSOR_H_
