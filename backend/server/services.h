// The etcd v3 gRPC services of a member, on gRPC's callback API. Each
// service is a thin layer: it checks the request's shape with etcd's errors
// (etcdserver/api/v3rpc/key.go), turns writes into proposals, serves reads
// from the MVCC store, and converts errors through common/errors.h.
//
// Ownership: services hold a non-owning EtcdServer*, which must outlive the
// gRPC server. Thread-safe: gRPC calls them from its own threads.
#ifndef SYNOD_BACKEND_SERVER_SERVICES_H_
#define SYNOD_BACKEND_SERVER_SERVICES_H_

#include "backend/server/etcd_server.h"
#include "common/errors.h"
#include "proto/rpc.grpc.pb.h"
#include "proto/v3election.grpc.pb.h"
#include "proto/v3lock.grpc.pb.h"
#include <grpcpp/server_builder.h>

namespace synod::server {

class KvService final : public etcdserverpb::KV::CallbackService {
 public:
  explicit KvService(EtcdServer* s) : s_(s) {}
  // Range: a serializable read is served from this member's published
  // state at once; a linearizable one first waits for a ReadIndex
  // (EtcdServer::LinearizableRead), so it sees every write acknowledged
  // before it began.
  // Errors: kEmptyKey, kCompacted, kFutureRev.
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx,
                                  const etcdserverpb::RangeRequest* req,
                                  etcdserverpb::RangeResponse* resp) override;
  // Put. Errors: kEmptyKey, kValueProvided, kLeaseProvided,
  // kRequestTooLarge, kKeyNotFound, kLeaseNotFound, kNoSpace.
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx,
                                const etcdserverpb::PutRequest* req,
                                etcdserverpb::PutResponse* resp) override;
  // DeleteRange. Errors: kEmptyKey, kRequestTooLarge.
  grpc::ServerUnaryReactor* DeleteRange(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::DeleteRangeRequest* req,
      etcdserverpb::DeleteRangeResponse* resp) override;
  // Txn. Errors: kTooManyOps (--max-txn-ops), kDuplicateKey, kEmptyKey,
  // kRequestTooLarge, and those of its ops.
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* ctx,
                                const etcdserverpb::TxnRequest* req,
                                etcdserverpb::TxnResponse* resp) override;
  // Compact. Errors: kCompacted, kFutureRev.
  grpc::ServerUnaryReactor* Compact(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::CompactionRequest* req,
      etcdserverpb::CompactionResponse* resp) override;

 private:
  EtcdServer* s_;
};

class WatchService final : public etcdserverpb::Watch::CallbackService {
 public:
  explicit WatchService(EtcdServer* s) : s_(s) {}
  grpc::ServerBidiReactor<etcdserverpb::WatchRequest,
                          etcdserverpb::WatchResponse>*
  Watch(grpc::CallbackServerContext* ctx) override;

 private:
  EtcdServer* s_;
};

class LeaseService final : public etcdserverpb::Lease::CallbackService {
 public:
  explicit LeaseService(EtcdServer* s) : s_(s) {}
  grpc::ServerUnaryReactor* LeaseGrant(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::LeaseGrantRequest* req,
      etcdserverpb::LeaseGrantResponse* resp) override;
  grpc::ServerUnaryReactor* LeaseRevoke(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::LeaseRevokeRequest* req,
      etcdserverpb::LeaseRevokeResponse* resp) override;
  grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                          etcdserverpb::LeaseKeepAliveResponse>*
  LeaseKeepAlive(grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* LeaseTimeToLive(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::LeaseTimeToLiveRequest* req,
      etcdserverpb::LeaseTimeToLiveResponse* resp) override;
  grpc::ServerUnaryReactor* LeaseLeases(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::LeaseLeasesRequest* req,
      etcdserverpb::LeaseLeasesResponse* resp) override;

 private:
  EtcdServer* s_;
};

class MaintenanceService final
    : public etcdserverpb::Maintenance::CallbackService {
 public:
  explicit MaintenanceService(EtcdServer* s) : s_(s) {}
  grpc::ServerUnaryReactor* Alarm(grpc::CallbackServerContext* ctx,
                                  const etcdserverpb::AlarmRequest* req,
                                  etcdserverpb::AlarmResponse* resp) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx,
                                   const etcdserverpb::StatusRequest* req,
                                   etcdserverpb::StatusResponse* resp) override;
  grpc::ServerUnaryReactor* Defragment(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::DefragmentRequest* req,
      etcdserverpb::DefragmentResponse* resp) override;
  grpc::ServerUnaryReactor* Hash(grpc::CallbackServerContext* ctx,
                                 const etcdserverpb::HashRequest* req,
                                 etcdserverpb::HashResponse* resp) override;
  grpc::ServerUnaryReactor* HashKV(grpc::CallbackServerContext* ctx,
                                   const etcdserverpb::HashKVRequest* req,
                                   etcdserverpb::HashKVResponse* resp) override;
  grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse>* Snapshot(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::SnapshotRequest* req) override;
  grpc::ServerUnaryReactor* MoveLeader(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::MoveLeaderRequest* req,
      etcdserverpb::MoveLeaderResponse* resp) override;

 private:
  EtcdServer* s_;
};

class ClusterService final : public etcdserverpb::Cluster::CallbackService {
 public:
  explicit ClusterService(EtcdServer* s) : s_(s) {}
  grpc::ServerUnaryReactor* MemberList(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::MemberListRequest* req,
      etcdserverpb::MemberListResponse* resp) override;
  grpc::ServerUnaryReactor* MemberAdd(
      grpc::CallbackServerContext* ctx, const etcdserverpb::MemberAddRequest* req,
      etcdserverpb::MemberAddResponse* resp) override;
  grpc::ServerUnaryReactor* MemberRemove(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::MemberRemoveRequest* req,
      etcdserverpb::MemberRemoveResponse* resp) override;
  grpc::ServerUnaryReactor* MemberUpdate(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::MemberUpdateRequest* req,
      etcdserverpb::MemberUpdateResponse* resp) override;
  grpc::ServerUnaryReactor* MemberPromote(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::MemberPromoteRequest* req,
      etcdserverpb::MemberPromoteResponse* resp) override;

 private:
  EtcdServer* s_;
};

// etcd 3.4's Auth service (backend/auth/auth_store.h holds the state and
// rules). Every call goes through the log, reads included, as etcd's
// (v3_server.go): changes need role root (while auth is on); UserGet is
// also open to the user itself, RoleGet to a holder of the role.
// Authenticate first waits for a ReadIndex, checks the password on this
// member (bcrypt, on the gRPC thread), then proposes the token, and retries
// once more if the auth revision moved meanwhile (etcd's loop). UserAdd and
// ChangePassword hash the password here, so the log never holds it.
// Errors: the auth rows of common/errors.h (kAuthNotEnabled, kAuthFailed,
// kUserEmpty, kUserAlreadyExist, kUserNotFound, kRoleEmpty,
// kRoleAlreadyExist, kRoleNotFound, kRoleNotGranted,
// kPermissionNotGranted, kRootUserNotExist, kRootRoleNotExist,
// kInvalidAuthMgmt, kPermissionDenied, kInvalidAuthToken), kTimeout,
// kNotSupportedForLearner.
class AuthService final : public etcdserverpb::Auth::CallbackService {
 public:
  explicit AuthService(EtcdServer* s) : s_(s) {}
  grpc::ServerUnaryReactor* AuthEnable(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthEnableRequest* req,
      etcdserverpb::AuthEnableResponse* resp) override;
  grpc::ServerUnaryReactor* AuthDisable(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthDisableRequest* req,
      etcdserverpb::AuthDisableResponse* resp) override;
  grpc::ServerUnaryReactor* Authenticate(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthenticateRequest* req,
      etcdserverpb::AuthenticateResponse* resp) override;
  grpc::ServerUnaryReactor* UserAdd(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthUserAddRequest* req,
      etcdserverpb::AuthUserAddResponse* resp) override;
  grpc::ServerUnaryReactor* UserGet(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthUserGetRequest* req,
      etcdserverpb::AuthUserGetResponse* resp) override;
  grpc::ServerUnaryReactor* UserList(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthUserListRequest* req,
      etcdserverpb::AuthUserListResponse* resp) override;
  grpc::ServerUnaryReactor* UserDelete(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthUserDeleteRequest* req,
      etcdserverpb::AuthUserDeleteResponse* resp) override;
  grpc::ServerUnaryReactor* UserChangePassword(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthUserChangePasswordRequest* req,
      etcdserverpb::AuthUserChangePasswordResponse* resp) override;
  grpc::ServerUnaryReactor* UserGrantRole(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthUserGrantRoleRequest* req,
      etcdserverpb::AuthUserGrantRoleResponse* resp) override;
  grpc::ServerUnaryReactor* UserRevokeRole(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthUserRevokeRoleRequest* req,
      etcdserverpb::AuthUserRevokeRoleResponse* resp) override;
  grpc::ServerUnaryReactor* RoleAdd(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthRoleAddRequest* req,
      etcdserverpb::AuthRoleAddResponse* resp) override;
  grpc::ServerUnaryReactor* RoleGet(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthRoleGetRequest* req,
      etcdserverpb::AuthRoleGetResponse* resp) override;
  grpc::ServerUnaryReactor* RoleList(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthRoleListRequest* req,
      etcdserverpb::AuthRoleListResponse* resp) override;
  grpc::ServerUnaryReactor* RoleDelete(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthRoleDeleteRequest* req,
      etcdserverpb::AuthRoleDeleteResponse* resp) override;
  grpc::ServerUnaryReactor* RoleGrantPermission(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthRoleGrantPermissionRequest* req,
      etcdserverpb::AuthRoleGrantPermissionResponse* resp) override;
  grpc::ServerUnaryReactor* RoleRevokePermission(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::AuthRoleRevokePermissionRequest* req,
      etcdserverpb::AuthRoleRevokePermissionResponse* resp) override;

 private:
  EtcdServer* s_;
};

// The caller of a call on `ctx` (etcd's AuthInfoFromCtx): the user of the
// token in metadata "token" (or "authorization", etcd's gateway key); else,
// under --client-cert-auth, the verified client certificate's CN at the
// current auth revision; else no one (an empty AuthInfo, revision 0).
// Errors: kInvalidAuthToken for a token the member does not know (expired,
// from before a restart, or after auth was disabled).
absl::StatusOr<auth::AuthInfo> CallerAuthInfo(EtcdServer* s,
                                              const grpc::ServerContextBase& ctx);

// Stamps `req` with the caller's user and auth revision, so the applier's
// auth stage checks it (every client request carries a header, even an
// anonymous one). Errors: as CallerAuthInfo.
absl::Status StampCaller(EtcdServer* s, const grpc::ServerContextBase& ctx,
                         synodpb::Request* req);

// etcd's doSerialize check for a read served from local state: `check`
// with the caller's AuthInfo (the store's Is*Permitted). Errors: those of
// CallerAuthInfo and `check`. After reading, ReadStillPermitted tells
// whether the auth state moved meanwhile (then kAuthOldRevision, as etcd).
absl::Status CheckCaller(
    EtcdServer* s, const grpc::ServerContextBase& ctx,
    const std::function<absl::Status(const auth::AuthInfo&)>& check,
    auth::AuthInfo* info_out = nullptr);
absl::Status ReadStillPermitted(EtcdServer* s, const auth::AuthInfo& info);

// Admin calls outside the log (Defragment, Snapshot, Hash, HashKV,
// MoveLeader, member changes): role root while auth is on. Errors:
// kInvalidAuthToken, kUserEmpty, kUserNotFound, kPermissionDenied.
absl::Status CheckAdmin(EtcdServer* s, const grpc::ServerContextBase& ctx);

// Finishes `reactor` with `st`, converted to etcd's gRPC status.
void FinishWith(grpc::ServerUnaryReactor* reactor, const absl::Status& st);

// Finishes the unary call on `ctx` at once with `st` (usually an error
// found before proposing) and returns its reactor.
grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx,
                                    const absl::Status& st);

// A stream that ends at once with `st` (a learner refuses stream RPCs, as
// etcd's interceptor does).
template <typename Req, typename Resp>
class RejectedStream final : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  explicit RejectedStream(const absl::Status& st) {
    this->Finish(common::ToGrpcStatus(st));
  }
  void OnDone() override { delete this; }
};

// Proposes `req`, stamped with the caller (StampCaller), and finishes the
// unary call when it is applied, filling resp's header. `resp` is the
// gRPC-owned response.
// A server stream that ends at once with `st` (an admin check failed).
template <typename Resp>
class RejectedWriteStream final : public grpc::ServerWriteReactor<Resp> {
 public:
  explicit RejectedWriteStream(const absl::Status& st) {
    this->Finish(common::ToGrpcStatus(st));
  }
  void OnDone() override { delete this; }
};

template <typename Resp>
grpc::ServerUnaryReactor* ProposeAndFinish(EtcdServer* s,
                                           grpc::CallbackServerContext* ctx,
                                           synodpb::Request req, Resp* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (s->is_learner()) {
    FinishWith(reactor, common::Err(common::EtcdError::kNotSupportedForLearner));
    return reactor;
  }
  absl::Status st = StampCaller(s, *ctx, &req);
  if (!st.ok()) {
    FinishWith(reactor, st);
    return reactor;
  }
  s->Propose(std::move(req), resp, [s, reactor, resp](absl::Status st) {
    if (st.ok()) s->FillHeader(resp->mutable_header());
    FinishWith(reactor, st);
  });
  return reactor;
}

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_SERVICES_H_

namespace synod::server {
// Registers the v3lockpb.Lock and v3electionpb.Election services (owned by a
// static registry; they live until process exit) on `builder`.
void RegisterLockElection(grpc::ServerBuilder* builder, EtcdServer* s);
}  // namespace synod::server
