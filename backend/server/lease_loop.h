// LeaseLoop: the leader's side of leases (etcd's lessor runLoop and the
// server's revokeExpiredLeases): it proposes a LeaseRevoke for each expired
// lease, proposes due checkpoints (--experimental-enable-lease-checkpoint),
// and renews leases for keep-alives, clearing a checkpointed remaining TTL
// through Raft so a later leader does not restart the lease from it.
// Every change goes through the log; the Lessor applies it on every member.
//
// Ownership: borrows the Lessor; `propose` must outlive it.
// Thread-safe: one leaf mutex (leases with a revoke or a checkpoint clear in
// flight, so each is proposed once).
#ifndef SYNOD_BACKEND_SERVER_LEASE_LOOP_H_
#define SYNOD_BACKEND_SERVER_LEASE_LOOP_H_

#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "backend/lease/lessor.h"
#include "proto/internal.pb.h"

namespace synod::server {

class LeaseLoop {
 public:
  // Proposes `req` through Raft; `done` runs once it is applied or failed.
  using Propose = std::function<void(synodpb::Request req,
                                     std::function<void(absl::Status)> done)>;

  // `checkpoints`: whether --experimental-enable-lease-checkpoint is on.
  LeaseLoop(lease::Lessor* lessor, bool checkpoints, Propose propose)
      : lessor_(lessor), checkpoints_(checkpoints), propose_(std::move(propose)) {}

  // The leader's timer pass: revokes expired leases (at most 1,000 per
  // pass) and proposes due checkpoints (at most 1,000 per entry, etcd's
  // rate). Nothing on a follower.
  void Tick(bool is_leader);

  // The leader renews lease `id` (etcd's Renew): the new TTL in seconds.
  // Errors: kLeaseNotFound.
  absl::StatusOr<int64_t> KeepAlive(int64_t id);

  // The apply thread: lease `id` was revoked (by any proposer).
  void Revoked(int64_t id);

 private:
  void ProposeCheckpoints();

  lease::Lessor* const lessor_;
  const bool checkpoints_;
  const Propose propose_;
  absl::Mutex mu_;
  absl::flat_hash_set<int64_t> revoking_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<int64_t> clearing_checkpoints_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_LEASE_LOOP_H_
