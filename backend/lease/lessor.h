// Lessor: the leases of one member (etcd's lease/lessor.go semantics), with
// etcd's lease checkpoints (--experimental-enable-lease-checkpoint).
//
// Replicated state (id, granted TTL, checkpointed remaining TTL, attached
// keys) changes only on the apply thread, in log order: Grant, Revoke and
// Checkpoint stage their record in the caller's batch, which is written with
// the MVCC writes of the same entry. Expiry is in-memory and the leader's
// business: a keep-alive only moves the expiry, and the leader proposes a
// revoke for each expired lease. Time comes from the injected Clock.
//
// Renewal rule (etcd's Promote and Recover): when a member becomes leader,
// including at start-up of a single member, every lease expires at now + its
// checkpointed remaining TTL if one was applied (> 0), else its full TTL,
// plus the extension. Restore() does the same without the extension.
//
// Checkpoint rules (etcd 3.4 lessor.go, with 3.6's always-persisted record):
// checkpoints are off until SetCheckpointInterval(interval > 0). While this
// member is primary (from Promote() until Demote()), a lease is scheduled for
// a checkpoint `interval` after its grant, Promote(), applied checkpoint or
// due time if its checkpointed remaining TTL (else its TTL) in seconds
// exceeds the interval's whole seconds. The leader takes due checkpoints with
// DueCheckpoints() and proposes them (etcd: at most 1,000 per entry); a due
// lease is checkpointed with ceil(seconds to expiry) unless that is >= its TTL
// (just renewed) or it has expired. Applying a checkpoint (every member) sets
// the lease's remaining TTL and persists it (etcd 3.4 keeps it only in memory
// unless checkpoint-persist is on). A keep-alive renews to the full TTL and,
// while an applied remaining TTL is > 0, tells the caller to propose a
// checkpoint of 0, which clears it (etcd's Renew; a clear is proposed only
// after a checkpoint, so a kept-alive lease costs about two log entries per
// interval).
//
// Thread-safe: all methods may be called from any thread. Lock order:
// Lessor::mu_ is a leaf lock (never held while calling out).
#ifndef SYNOD_BACKEND_LEASE_LESSOR_H_
#define SYNOD_BACKEND_LEASE_LESSOR_H_

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
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

  // Time between checkpoints of a lease (etcd's
  // --experimental-lease-checkpoint-interval; 3.4 fixes it at 5 minutes).
  // ZeroDuration() (the default) or less turns checkpoints off:
  // DueCheckpoints() returns nothing and KeepAlive() never asks for a clear.
  // Applied checkpoints still take effect. If this member is primary, every
  // lease is rescheduled from now.
  void SetCheckpointInterval(absl::Duration interval);

  // Loads the persisted leases and attaches `leased_keys`. Each lease
  // expires its checkpointed remaining TTL from now if one was recorded,
  // else its full TTL (etcd's renewal rule; Promote() then applies the
  // leader's rule). Errors: DataLoss on a corrupt record.
  absl::Status Restore(
      storage::Backend* backend,
      const std::vector<std::pair<int64_t, std::string>>& leased_keys);

  // Forgets every lease and scheduled checkpoint (before Restore() from an
  // installed snapshot). Primary or not stays as it was.
  void Clear();

  // ---- Apply thread ----
  // Grants lease `id` (> 0) with `ttl` seconds, staging its record in
  // `batch`. Returns the TTL actually granted. If primary, schedules its
  // first checkpoint. Errors: kLeaseExist, kLeaseTTLTooLarge.
  absl::StatusOr<int64_t> Grant(int64_t id, int64_t ttl, storage::Batch* batch);
  // Removes lease `id`, staging the record's deletion, and returns the keys
  // that were attached (sorted), which the caller deletes in the same
  // revision. Errors: kLeaseNotFound.
  absl::StatusOr<std::vector<std::string>> Revoke(int64_t id,
                                                  storage::Batch* batch);
  // Applies a checkpoint: lease `id`'s remaining TTL becomes
  // `remaining_ttl_s` seconds (<= 0 clears it: the full TTL is used) and its
  // record, with that remaining TTL, is staged in `batch`. The expiry does
  // not move (Promote() and Restore() use the remaining TTL). If primary,
  // the lease's next checkpoint is scheduled an interval from now. An
  // unknown lease (revoked since) is ignored: OK, nothing staged (etcd).
  absl::Status Checkpoint(int64_t id, int64_t remaining_ttl_s,
                          storage::Batch* batch);

  // ---- Leader (raft / timer threads) ----
  // Resets every expiry to now + (remaining TTL if > 0, else TTL) + extend,
  // makes this member primary and (re)schedules every lease's checkpoint
  // (etcd's Promote).
  void Promote(absl::Duration extend);
  // Leadership lost: forgets the scheduled checkpoints and stops scheduling
  // until the next Promote() (etcd's Demote). Expiries are left as they are.
  void Demote();
  // Checkpoints due now, as (id, remaining seconds rounded up), at most
  // `max`, earliest due first. Each due lease is rescheduled by the rule
  // above from now, returned or not (etcd drops it until the checkpoint
  // applies; so a lost proposal is retried): one renewed within its last
  // second (remaining >= TTL) is not returned; an expired one is dropped and
  // not rescheduled. Empty unless primary with checkpoints on. Cost:
  // O(log n) per due lease; leases not due are not visited.
  std::vector<std::pair<int64_t, int64_t>> DueCheckpoints(size_t max);

  // ---- Any thread ----
  // Renews lease `id` to a full TTL from now; returns the TTL (seconds).
  // If `needs_checkpoint_clear` is given, it is set to whether the caller
  // must propose Checkpoint(id, 0): checkpoints are on and the lease's
  // applied remaining TTL is > 0 (etcd's Renew; it stays true on every
  // keep-alive until the clear is applied). Errors: kLeaseNotFound (unknown
  // or already expired; *needs_checkpoint_clear is then false).
  absl::StatusOr<int64_t> KeepAlive(int64_t id,
                                    bool* needs_checkpoint_clear = nullptr);
  // TTL, remaining TTL (from the in-memory expiry) and (if with_keys)
  // attached keys. Errors: kLeaseNotFound.
  absl::StatusOr<LeaseInfo> TimeToLive(int64_t id, bool with_keys) const;
  // Ids of every lease, ascending.
  std::vector<int64_t> Leases() const;
  // Ids of leases whose expiry is at or before now, at most `max`.
  std::vector<int64_t> Expired(size_t max) const;
  size_t Count() const;

  // mvcc::LeaseHooks (apply thread).
  bool LeaseExists(int64_t id) const override;
  void Attach(int64_t id, const std::string& key) override;
  void Detach(int64_t id, const std::string& key) override;

 private:
  struct Lease {
    int64_t ttl = 0;
    // Last applied checkpoint, seconds; 0 if none (or cleared).
    int64_t remaining_ttl = 0;
    absl::Time expiry;
    // When its entry in checkpoints_ is due; InfiniteFuture() if none.
    absl::Time checkpoint_at = absl::InfiniteFuture();
    std::set<std::string> keys;
  };

  // Checkpointed remaining TTL if > 0, else the TTL (etcd's RemainingTTL()).
  static int64_t RenewalTtl(const Lease& lease) {
    return lease.remaining_ttl > 0 ? lease.remaining_ttl : lease.ttl;
  }
  // Drops lease `id`'s scheduled checkpoint, if any.
  void UnscheduleLocked(int64_t id, Lease& lease)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops lease `id`'s scheduled checkpoint and, if primary with
  // checkpoints on and RenewalTtl() exceeds the interval's whole seconds
  // (etcd's scheduleCheckpointIfNeeded), schedules one at now + interval.
  void ScheduleLocked(int64_t id, Lease& lease, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops every scheduled checkpoint, then schedules each lease from now.
  void RescheduleAllLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Persist(int64_t id, const Lease& lease, storage::Batch* batch);

  common::Clock* const clock_;
  const int64_t min_ttl_s_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
  absl::Duration checkpoint_interval_ ABSL_GUARDED_BY(mu_) =
      absl::ZeroDuration();
  // Between Promote() and Demote(): this member schedules checkpoints.
  bool primary_ ABSL_GUARDED_BY(mu_) = false;
  // Scheduled checkpoints as (due time, lease id); a lease has at most one,
  // mirrored by Lease::checkpoint_at. Empty unless primary.
  absl::btree_set<std::pair<absl::Time, int64_t>> checkpoints_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::lease

#endif  // SYNOD_BACKEND_LEASE_LESSOR_H_
