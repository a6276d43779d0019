// --force-new-cluster: etcd's restartAsStandaloneNode for a stopped member's
// data dir, so that one surviving member of a cluster that lost its quorum
// can go on alone (etcd's disaster recovery).
//
// The member's Raft log is rewritten before the server opens it: entries
// past the commit index are dropped (they were never committed), and a
// ConfChangeRemoveNode for every other member (voters and learners, as of
// the committed log) is appended and marked committed. The member applies
// them as it starts, as any committed conf change, and is then the one
// voter of its cluster: it elects itself and keeps its member ID, cluster ID
// and data. Other members are not told; as with etcd they must not be
// started again on their old data.
//
// Thread-safety: call from main() before the server opens the data dir (it
// takes the database's lock while it runs).
#ifndef SYNOD_BACKEND_SERVER_FORCE_NEW_CLUSTER_H_
#define SYNOD_BACKEND_SERVER_FORCE_NEW_CLUSTER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace synod::server {

struct ForcedCluster {
  uint64_t member_id = 0;
  uint64_t commit_index = 0;  // the last of the appended conf changes
  std::vector<uint64_t> removed;  // the other members' IDs
};

// Rewrites the log in `data_dir` (the member's --data-dir) as above. A data
// dir with no member data yet is left alone (the member bootstraps as
// usual; etcd does the same), and so is one whose member is alone already:
// both return an empty `removed`.
// Errors: what opening the database or writing it returns (Internal,
// DataLoss); DataLoss when a committed conf change cannot be decoded.
absl::StatusOr<ForcedCluster> ForceNewCluster(const std::string& data_dir);

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_FORCE_NEW_CLUSTER_H_
