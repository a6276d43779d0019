// Compactor: etcd's auto-compaction (--auto-compaction-mode and
// --auto-compaction-retention; etcd's v3compactor). On the leader only, it
// proposes a Compaction through Raft:
//  * periodic: the retention is a duration ("1h", "30m", or a number of
//    hours); the revision is sampled every retention/10 (at least 1 s) and
//    the store is compacted to the newest sample at least `retention` old;
//  * revision: the retention is a count of revisions; every 5 minutes the
//    store is compacted to current revision - retention.
// A retention of 0 or one that does not parse turns it off.
//
// Ownership: borrows the clock; `propose` and `revisions` must outlive it.
// Thread-compatible: the timer thread alone calls Tick.
#ifndef SYNOD_BACKEND_SERVER_COMPACTOR_H_
#define SYNOD_BACKEND_SERVER_COMPACTOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "common/clock.h"

namespace synod::server {

class Compactor {
 public:
  // The store's current and compacted revisions.
  struct Revisions {
    int64_t current = 0;
    int64_t compacted = 0;
  };
  // `mode`: "periodic" or "revision". `propose(rev)` proposes a compaction
  // at `rev`; `revisions()` reads the store.
  Compactor(std::string mode, std::string retention, common::Clock* clock,
            std::function<void(int64_t rev)> propose,
            std::function<Revisions()> revisions);

  // One timer pass. Only the leader samples and compacts (as etcd's
  // compactor, which runs on the leader); a follower's pass does nothing.
  void Tick(bool is_leader);

 private:
  const std::string mode_;
  const std::string retention_;
  common::Clock* const clock_;
  const std::function<void(int64_t)> propose_;
  const std::function<Revisions()> revisions_;
  absl::Time last_check_;
  std::deque<std::pair<absl::Time, int64_t>> samples_;
  int64_t last_compacted_ = 0;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_COMPACTOR_H_
