// Membership: the cluster's members as the apply thread has applied them
// (etcd's RaftCluster). Every change arrives through the log (a conf change
// entry or a member_attributes request), so all members agree on it; the
// record is staged into the apply batch under "m/members" and so is durable
// with the applied index.
//
// Thread-safe: internally locked. Mutators are called by the apply thread.
#ifndef SYNOD_BACKEND_SERVER_MEMBERSHIP_H_
#define SYNOD_BACKEND_SERVER_MEMBERSHIP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "backend/storage/backend.h"
#include "proto/peer.pb.h"

namespace synod::server {

inline constexpr char kMetaMembers[] = "m/members";

// One entry of --initial-cluster: name and its peer URLs, in flag order.
struct InitialMember {
  std::string name;
  std::vector<std::string> peer_urls;
};

// Parses "name1=url1,name1=url2,name2=url3" (etcd's --initial-cluster).
// URLs are http, https, unix or unixs (etcd's unix socket peers).
// Errors: InvalidArgument naming the bad element.
absl::StatusOr<std::vector<InitialMember>> ParseInitialCluster(
    const std::string& s);

// A member's ID, derived exactly as etcd 3.4 derives it (membership's
// newMember), so IDs, and the response headers that carry them, are
// byte-for-byte etcd's: the first 8 bytes, read big-endian, of the SHA-1 of
// the peer URLs sorted and concatenated, then `token`, then, for a member
// added at run time (`member add`), the decimal Unix time in seconds
// `added_unix_seconds`. `name` does not enter the hash (nor does it in
// etcd). etcd passes the --initial-cluster-token for --initial-cluster
// members and "" for members added later. Stable across processes.
uint64_t ComputeMemberId(const std::string& name,
                         const std::vector<std::string>& peer_urls,
                         const std::string& token,
                         std::optional<int64_t> added_unix_seconds =
                             std::nullopt);
// The cluster's ID as etcd 3.4 derives it (RaftCluster.genID): the first 8
// bytes, big-endian, of the SHA-1 of the member IDs sorted ascending, each
// as 8 big-endian bytes. `token` does not enter the hash: as in etcd the
// cluster ID depends on the token only through the member IDs.
uint64_t ComputeClusterId(std::vector<uint64_t> member_ids,
                          const std::string& token);

class Membership {
 public:
  // Loads "m/members" (empty if absent). Errors: DataLoss when corrupt.
  absl::Status Load(storage::Backend* backend);
  // Replaces the whole record (bootstrap, snapshot restore, join).
  void Reset(const synodpb::MemberRecord& rec);

  // ---- Apply thread: each stages the record into `batch`. ----
  // Adds a member (voter or learner); an existing id is updated (a learner
  // re-added as voter is promoted).
  void Add(const synodpb::Member& m, storage::Batch* batch);
  void Remove(uint64_t id, storage::Batch* batch);
  void Promote(uint64_t id, storage::Batch* batch);
  void SetPeerUrls(uint64_t id, const std::vector<std::string>& peer_urls,
                   storage::Batch* batch);
  void SetAttributes(uint64_t id, const std::string& name,
                     const std::vector<std::string>& client_urls,
                     storage::Batch* batch);

  // ---- Any thread ----
  synodpb::MemberRecord Record() const;
  std::vector<synodpb::Member> Members() const;  // sorted by id
  std::optional<synodpb::Member> Get(uint64_t id) const;
  bool IsRemoved(uint64_t id) const;
  // The member (if any) that already uses one of `peer_urls`.
  std::optional<uint64_t> FindByPeerUrl(
      const std::vector<std::string>& peer_urls) const;

 private:
  void StageLocked(storage::Batch* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  synodpb::Member* FindLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  synodpb::MemberRecord rec_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_MEMBERSHIP_H_
