// Applier: etcd's applier chain for one committed request, in etcd's order
// (applierV3Capped/Corrupt -> authApplierV3 -> applierV3backend ->
// quotaApplierV3):
//  1. capped: while CORRUPT is raised no KV or lease write applies; while
//     NOSPACE is raised nothing that adds data applies;
//  2. auth: a request proposed for a client (it carries a RequestHeader) is
//     checked against the proposer's user and auth revision, as etcd's
//     authApplierV3: admin ops need role root; Put needs WRITE on the key
//     (and READ with prev_kv, WRITE on the keys of its lease); DeleteRange
//     WRITE (and READ with prev_kv); Txn READ on every compare and each op's
//     own right, nested txns included (etcd 3.4 skips those); LeaseRevoke
//     WRITE on every attached key; UserGet needs root or the user itself,
//     RoleGet root or the role held. Internal proposals (no header: lease
//     expiry, auto-compaction, alarms, lock and election steps whose caller
//     was checked by its service) pass;
//  3. backend: the op on MVCC, lease, alarm, membership and auth state,
//     staged in the store's batch (the apply thread commits the batch);
//  4. quota: a write that leaves this member over --quota-backend-bytes is
//     applied, answered kNoSpace, and (once) asks for NOSPACE to be raised.
// Stages 1 to 3 decide from replicated state only, so every member reaches
// the same state; stage 4 shapes only this member's answer and alarm
// proposal.
//
// Ownership: borrows every store in Deps; they must outlive it.
// Thread-compatible: the apply thread alone calls Apply.
#ifndef SYNOD_BACKEND_SERVER_APPLIER_H_
#define SYNOD_BACKEND_SERVER_APPLIER_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "backend/auth/auth_store.h"
#include "backend/lease/lessor.h"
#include "backend/mvcc/kv_store.h"
#include "backend/mvcc/watchable_store.h"
#include "backend/raft/types.h"
#include "backend/server/alarm_store.h"
#include "backend/server/lease_loop.h"
#include "backend/server/membership.h"
#include "google/protobuf/message.h"
#include "proto/internal.pb.h"
#include "proto/rpc.pb.h"

namespace synod::server {

class Applier {
 public:
  struct Deps {
    mvcc::KvStore* kv = nullptr;
    mvcc::WatchableStore* watchable = nullptr;
    lease::Lessor* lessor = nullptr;
    AlarmStore* alarms = nullptr;
    Membership* membership = nullptr;
    LeaseLoop* leases = nullptr;
    auth::AuthStore* auth = nullptr;
    int64_t quota_bytes = 0;  // --quota-backend-bytes; <= 0: no quota
    std::function<int64_t()> db_size;  // this member's size, bytes
    // Called on the apply thread after a member's name and client URLs are
    // applied (may be empty).
    std::function<void()> on_member_published;
  };
  explicit Applier(Deps deps) : d_(std::move(deps)) {}

  // Applies `req`, committed at log `index`. `resp` (may be null for
  // internal proposals) must be the op's response type (PutResponse for a
  // put, ...). Sets *raise_nospace when this member crossed its quota and
  // NOSPACE is not raised: the caller raises it and answers after it is
  // applied. Errors: the op's etcd errors; kCorrupt / kNoSpace from the
  // capped stage; kNoSpace from the quota stage (the op was applied).
  absl::Status Apply(const synodpb::Request& req,
                     google::protobuf::Message* resp, uint64_t index,
                     bool* raise_nospace);

  // Whether `req` is within etcd's quota: true when there is no quota, when
  // `req` adds no data (WritesKeys), or when it fits under the quota with
  // this member's current size.
  bool QuotaAvailable(const synodpb::Request& req) const;
  // Whether `req` adds data (a put, a lease grant, a txn with a put): what
  // etcd's quota and NOSPACE refuse.
  static bool WritesKeys(const synodpb::Request& req);

 private:
  absl::Status CheckAlarms(const synodpb::Request& req) const;
  absl::Status CheckAuth(const synodpb::Request& req) const;
  absl::Status CheckTxnAuth(const auth::AuthInfo& ai,
                            const etcdserverpb::TxnRequest& t) const;
  absl::Status CheckLeasePuts(const auth::AuthInfo& ai, int64_t lease) const;
  absl::Status ApplyAuthOp(const synodpb::Request& req,
                           google::protobuf::Message* resp, uint64_t index);
  absl::Status ApplyOp(const synodpb::Request& req,
                       google::protobuf::Message* resp, uint64_t index);
  absl::Status ApplyLeaseRevoke(int64_t id);
  absl::Status ApplyAlarm(const etcdserverpb::AlarmRequest& r,
                          etcdserverpb::AlarmResponse* resp);

  const Deps d_;
};

// Stops the process: committed entry `e` does not decode as `what`. The log
// is the same on every member, so a member that cannot decode an entry
// cannot reach the state the others have and must not serve one (etcd
// panics here too).
[[noreturn]] void StopOnUndecodable(const raft::Entry& e, const char* what);

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_APPLIER_H_
