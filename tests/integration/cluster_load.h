// Bulk writes over gRPC for cluster tests that need more Raft entries than
// etcdctl (one process per request, ~50 ms each) can produce in a test's time
// budget: e.g. pushing a leader's log past the point where it only keeps a
// snapshot (real etcd 3.4 keeps the last 5000 entries after a snapshot), so
// that a lagging follower must catch up from a snapshot.
//
// Thread-safety: BulkPut is a free function and may be called from any
// thread; it runs its own worker threads and returns when they are done.
#ifndef SYNOD_TESTS_INTEGRATION_CLUSTER_LOAD_H_
#define SYNOD_TESTS_INTEGRATION_CLUSTER_LOAD_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace synod::testing {

struct BulkPutResult {
  int64_t acked = 0;          // puts that returned OK
  int64_t failed = 0;         // puts that returned an error
  int64_t last_revision = 0;  // highest header.revision among the acked puts
  std::string first_error;    // the first gRPC error, "" when none
};

// Puts keys "<prefix><%06d of i>" = ValueFor(prefix, i) for i in [0, count)
// against `endpoint` ("127.0.0.1:P") from `threads` concurrent clients, each
// put being its own request (one Raft entry each). Bounded by `count` and by
// `deadline` (time after which no new put is sent; a put in flight has a 5 s
// gRPC deadline). REQUIRES: count >= 0, 1 <= threads <= 64.
BulkPutResult BulkPut(const std::string& endpoint, const std::string& prefix,
                      int64_t count, int threads, absl::Duration deadline);

// The value BulkPut writes for key number i.
std::string BulkValueFor(const std::string& prefix, int64_t i);

}  // namespace synod::testing

#endif  // SYNOD_TESTS_INTEGRATION_CLUSTER_LOAD_H_
