// The etcd error table: every error a client can see, with etcd 3.4's gRPC
// code and exact message (clients such as etcdctl and clientv3 match on the
// message text, so these strings must never change).
//
// Inside Synod errors travel as absl::Status carrying the etcd code and
// message; the gRPC services convert them with ToGrpcStatus() at the edge.
// Thread-safe: everything here is immutable.
#ifndef SYNOD_COMMON_ERRORS_H_
#define SYNOD_COMMON_ERRORS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace synod::common {

// One row per etcd error (etcdserver/api/v3rpc/rpctypes/error.go).
enum class EtcdError {
  kEmptyKey,            // InvalidArgument "etcdserver: key is not provided"
  kKeyNotFound,         // InvalidArgument "etcdserver: key not found"
  kValueProvided,       // InvalidArgument "etcdserver: value is provided"
  kLeaseProvided,       // InvalidArgument "etcdserver: lease is provided"
  kTooManyOps,          // InvalidArgument "etcdserver: too many operations in txn request"
  kDuplicateKey,        // InvalidArgument "etcdserver: duplicate key given in txn request"
  kCompacted,           // OutOfRange "etcdserver: mvcc: required revision has been compacted"
  kFutureRev,           // OutOfRange "etcdserver: mvcc: required revision is a future revision"
  kNoSpace,             // ResourceExhausted "etcdserver: mvcc: database space exceeded"
  kLeaseNotFound,       // NotFound "etcdserver: requested lease not found"
  kLeaseExist,          // FailedPrecondition "etcdserver: lease already exists"
  kLeaseTTLTooLarge,    // OutOfRange "etcdserver: too large lease TTL"
  kMemberNotFound,      // NotFound "etcdserver: member not found"
  kRequestTooLarge,     // InvalidArgument "etcdserver: request is too large"
  kTooManyRequests,     // ResourceExhausted "etcdserver: too many requests"
  kNoLeader,            // Unavailable "etcdserver: no leader"
  kNotLeader,           // FailedPrecondition "etcdserver: not leader"
  kStopped,             // Unavailable "etcdserver: server stopped"
  kTimeout,             // Unavailable "etcdserver: request timed out"
  kNotCapable,          // Unavailable "etcdserver: not capable"
  kCorrupt,             // DataLoss "etcdserver: corrupt cluster"
  kAuthNotEnabled,      // FailedPrecondition "etcdserver: authentication is not enabled"
  kInvalidAuthMgmt,     // InvalidArgument "etcdserver: invalid auth management"
  kBadLeaderTransferee, // FailedPrecondition "etcdserver: bad leader transferee"
  kMemberExist,         // FailedPrecondition "etcdserver: member ID already exist"
  kPeerURLExist,        // FailedPrecondition "etcdserver: Peer URLs already exists"
  kMemberNotEnoughStarted,  // FailedPrecondition "etcdserver: re-configuration failed due to not enough started members"
  kMemberNotLearner,    // FailedPrecondition "etcdserver: can only promote a learner member"
  kLearnerNotReady,     // FailedPrecondition "etcdserver: can only promote a learner member which is in sync with leader"
  kTooManyLearners,     // FailedPrecondition "etcdserver: too many learner members in cluster"
  kLeaderChanged,       // Unavailable "etcdserver: leader changed"
  kTimeoutDueToLeaderFail,  // Unavailable "etcdserver: request timed out, possibly due to previous leader failure"
  kUnhealthy,           // Unavailable "etcdserver: unhealthy cluster"
  kNotSupportedForLearner,  // Unavailable "etcdserver: rpc not supported for learner"
  kRootUserNotExist,    // FailedPrecondition "etcdserver: root user does not exist"
  kRootRoleNotExist,    // FailedPrecondition "etcdserver: root user does not have root role"
  kUserAlreadyExist,    // FailedPrecondition "etcdserver: user name already exists"
  kUserEmpty,           // InvalidArgument "etcdserver: user name is empty"
  kUserNotFound,        // FailedPrecondition "etcdserver: user name not found"
  kRoleAlreadyExist,    // FailedPrecondition "etcdserver: role name already exists"
  kRoleNotFound,        // FailedPrecondition "etcdserver: role name not found"
  kRoleEmpty,           // InvalidArgument "etcdserver: role name is empty"
  kAuthFailed,          // InvalidArgument "etcdserver: authentication failed, invalid user ID or password"
  kPermissionDenied,    // PermissionDenied "etcdserver: permission denied"
  kRoleNotGranted,      // FailedPrecondition "etcdserver: role is not granted to the user"
  kPermissionNotGranted,  // FailedPrecondition "etcdserver: permission is not granted to the role"
  kInvalidAuthToken,    // Unauthenticated "etcdserver: invalid auth token"
  kAuthOldRevision,     // InvalidArgument "etcdserver: revision of auth store is old"
};

// Returns the status for `e`: etcd's code and exact message.
absl::Status Err(EtcdError e);

// True when `s` is exactly the etcd error `e` (same code and message).
bool IsErr(const absl::Status& s, EtcdError e);

// The name Go's grpc-go gives `code` ("PermissionDenied", "Unauthenticated",
// ...): etcd puts it in texts such as a watch's cancel_reason, "rpc error:
// code = PermissionDenied desc = etcdserver: permission denied".
const char* GrpcCodeName(absl::StatusCode code);

// Converts an internal status to the gRPC status sent on the wire. The codes
// share numbering, so this keeps code and message as they are.
grpc::Status ToGrpcStatus(const absl::Status& s);

// The reverse, for a peer's or member's answer: code and message kept, so
// IsErr() still recognises etcd's errors.
absl::Status FromGrpcStatus(const grpc::Status& s);

}  // namespace synod::common

#endif  // SYNOD_COMMON_ERRORS_H_
