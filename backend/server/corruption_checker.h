// CorruptionChecker: detects members whose MVCC state differs from their
// peers' (etcd 3.4's etcdserver/corrupt.go, with a majority rule on top).
//
//  * Initial check (--experimental-initial-corrupt-check): before a member
//    serves, it hashes its keyspace at its current revision and asks every
//    peer for its HashKV at that revision. A peer with the same compacted
//    revision and another hash is a mismatch, and the member refuses to
//    start. Unreachable peers, peers that have not reached the revision and
//    peers that compacted past it are logged and skipped, as etcd does.
//  * Periodic check (--experimental-corrupt-check-time): the leader hashes
//    its keyspace at its current revision R and asks every follower for its
//    HashKV at R. Among the members that answered with the leader's
//    compacted revision, the hash held by a strict majority is taken as the
//    good one (the leader's when there is no majority; etcd always trusts
//    the leader), and a CORRUPT alarm is raised, through Raft, for every
//    member with another hash. While CORRUPT is raised, the cluster applies
//    no writes (EtcdServer's applier) until `etcdctl alarm disarm`.
//
// The checker holds no lock while it calls out; its dependencies are
// functions, so tests drive it without a network.
//
// Thread-safe: Start/Stop from one thread; CheckOnce from any thread (the
// periodic thread calls it too).
#ifndef SYNOD_BACKEND_SERVER_CORRUPTION_CHECKER_H_
#define SYNOD_BACKEND_SERVER_CORRUPTION_CHECKER_H_

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "proto/rpc.pb.h"

namespace synod::server {

// One peer's answer to HashKV(revision).
struct PeerHash {
  uint64_t member_id = 0;
  absl::StatusOr<etcdserverpb::HashKVResponse> resp;
};

class CorruptionChecker {
 public:
  struct Deps {
    // This member's HashKV at `revision` (0 = current): hash,
    // compact_revision, and header.revision = the current revision.
    std::function<absl::StatusOr<etcdserverpb::HashKVResponse>(int64_t)>
        local_hash;
    // Every other voting member's HashKV at `revision`.
    std::function<std::vector<PeerHash>(int64_t)> peer_hashes;
    // Whether this member leads now (only the leader checks periodically).
    std::function<bool()> is_leader;
    // Raises CORRUPT for a member (through Raft).
    std::function<void(uint64_t member_id)> raise_corrupt;
    // Times the periodic thread's wait between checks. Not owned; outlives
    // the checker. nullptr: RealClock::Get().
    common::Clock* clock = nullptr;
  };

  // The initial check for member `self` (see above). Errors:
  // FailedPrecondition "<self in hex> found data inconsistency with peers"
  // (etcd's message); the local HashKV's storage errors.
  static absl::Status InitialCheck(uint64_t self, const Deps& deps);

  // `interval`: time between periodic checks (> 0). Does not start a thread.
  CorruptionChecker(uint64_t self, Deps deps, absl::Duration interval);
  ~CorruptionChecker();  // Stop()

  // Starts the periodic thread. Idempotent.
  void Start();
  // Stops and joins it. Idempotent.
  void Stop();

  // One periodic pass, on the calling thread. Does nothing on a follower.
  // Returns the members found corrupt (and for which CORRUPT was raised).
  std::vector<uint64_t> CheckOnce();

 private:
  void Loop();

  const uint64_t self_;
  const Deps deps_;
  common::Clock* const clock_;  // deps_.clock or RealClock::Get()
  const absl::Duration interval_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_CORRUPTION_CHECKER_H_
