#include "common/errors.h"

namespace synod::common {
namespace {

struct Row {
  absl::StatusCode code;
  const char* message;
};

// Order follows EtcdError. Messages copied from etcd 3.4; never edit them.
constexpr Row kTable[] = {
    {absl::StatusCode::kInvalidArgument, "etcdserver: key is not provided"},
    {absl::StatusCode::kInvalidArgument, "etcdserver: key not found"},
    {absl::StatusCode::kInvalidArgument, "etcdserver: value is provided"},
    {absl::StatusCode::kInvalidArgument, "etcdserver: lease is provided"},
    {absl::StatusCode::kInvalidArgument,
     "etcdserver: too many operations in txn request"},
    {absl::StatusCode::kInvalidArgument,
     "etcdserver: duplicate key given in txn request"},
    {absl::StatusCode::kOutOfRange,
     "etcdserver: mvcc: required revision has been compacted"},
    {absl::StatusCode::kOutOfRange,
     "etcdserver: mvcc: required revision is a future revision"},
    {absl::StatusCode::kResourceExhausted,
     "etcdserver: mvcc: database space exceeded"},
    {absl::StatusCode::kNotFound, "etcdserver: requested lease not found"},
    {absl::StatusCode::kFailedPrecondition, "etcdserver: lease already exists"},
    {absl::StatusCode::kOutOfRange, "etcdserver: too large lease TTL"},
    {absl::StatusCode::kNotFound, "etcdserver: member not found"},
    {absl::StatusCode::kInvalidArgument, "etcdserver: request is too large"},
    {absl::StatusCode::kResourceExhausted, "etcdserver: too many requests"},
    {absl::StatusCode::kUnavailable, "etcdserver: no leader"},
    {absl::StatusCode::kFailedPrecondition, "etcdserver: not leader"},
    {absl::StatusCode::kUnavailable, "etcdserver: server stopped"},
    {absl::StatusCode::kUnavailable, "etcdserver: request timed out"},
    {absl::StatusCode::kUnavailable, "etcdserver: not capable"},
    {absl::StatusCode::kDataLoss, "etcdserver: corrupt cluster"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: authentication is not enabled"},
    {absl::StatusCode::kInvalidArgument, "etcdserver: invalid auth management"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: bad leader transferee"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: member ID already exist"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: Peer URLs already exists"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: re-configuration failed due to not enough started members"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: can only promote a learner member"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: can only promote a learner member which is in sync with "
     "leader"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: too many learner members in cluster"},
    {absl::StatusCode::kUnavailable, "etcdserver: leader changed"},
    {absl::StatusCode::kUnavailable,
     "etcdserver: request timed out, possibly due to previous leader "
     "failure"},
    {absl::StatusCode::kUnavailable, "etcdserver: unhealthy cluster"},
    {absl::StatusCode::kUnavailable,
     "etcdserver: rpc not supported for learner"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: root user does not exist"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: root user does not have root role"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: user name already exists"},
    {absl::StatusCode::kInvalidArgument,
     "etcdserver: user name is empty"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: user name not found"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: role name already exists"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: role name not found"},
    {absl::StatusCode::kInvalidArgument,
     "etcdserver: role name is empty"},
    {absl::StatusCode::kInvalidArgument,
     "etcdserver: authentication failed, invalid user ID or password"},
    {absl::StatusCode::kPermissionDenied,
     "etcdserver: permission denied"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: role is not granted to the user"},
    {absl::StatusCode::kFailedPrecondition,
     "etcdserver: permission is not granted to the role"},
    {absl::StatusCode::kUnauthenticated,
     "etcdserver: invalid auth token"},
    {absl::StatusCode::kInvalidArgument,
     "etcdserver: revision of auth store is old"},
};

}  // namespace

absl::Status Err(EtcdError e) {
  const Row& r = kTable[static_cast<int>(e)];
  return absl::Status(r.code, r.message);
}

bool IsErr(const absl::Status& s, EtcdError e) {
  const Row& r = kTable[static_cast<int>(e)];
  return s.code() == r.code && s.message() == r.message;
}

const char* GrpcCodeName(absl::StatusCode code) {
  static constexpr const char* kNames[] = {
      "OK",           "Canceled",          "Unknown",
      "InvalidArgument", "DeadlineExceeded", "NotFound",
      "AlreadyExists", "PermissionDenied", "ResourceExhausted",
      "FailedPrecondition", "Aborted",     "OutOfRange",
      "Unimplemented", "Internal",         "Unavailable",
      "DataLoss",     "Unauthenticated"};
  const int i = static_cast<int>(code);
  if (i < 0 || i >= static_cast<int>(sizeof(kNames) / sizeof(kNames[0]))) {
    return "Unknown";
  }
  return kNames[i];
}

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

}  // namespace synod::common
