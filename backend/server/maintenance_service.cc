#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backend/server/services.h"
#include "backend/server/snapshot.h"
#include "common/errors.h"
#include "common/etcd_metrics.h"

namespace synod::server {

using common::EtcdError;
using common::Err;

namespace {

// etcd 3.4's maintenance server returns the auth package's own errors
// (auth/store.go), which gRPC sends as code Unknown with that text, e.g.
// "auth: permission denied"; etcdctl prints them so. Other errors pass.
absl::Status AsAuthPackageError(const absl::Status& st) {
  static constexpr std::pair<EtcdError, const char*> kTexts[] = {
      {EtcdError::kPermissionDenied, "auth: permission denied"},
      {EtcdError::kUserEmpty, "auth: user name is empty"},
      {EtcdError::kUserNotFound, "auth: user not found"},
      {EtcdError::kInvalidAuthToken, "auth: invalid auth token"},
      {EtcdError::kAuthOldRevision, "auth: revision in header is old"},
  };
  for (const auto& [e, text] : kTexts) {
    if (common::IsErr(st, e)) return absl::UnknownError(text);
  }
  return st;
}

// The admin check of etcd's authMaintenanceServer, with its errors.
absl::Status CheckMaintenanceAdmin(EtcdServer* s,
                                   const grpc::ServerContextBase& ctx) {
  return AsAuthPackageError(CheckAdmin(s, ctx));
}

}  // namespace

grpc::ServerUnaryReactor* MaintenanceService::Alarm(
    grpc::CallbackServerContext* ctx, const etcdserverpb::AlarmRequest* req,
    etcdserverpb::AlarmResponse* resp) {
  if (req->action() == etcdserverpb::AlarmRequest::GET) {
    // Alarms are replicated state; etcd reads them through the log, so a
    // list read anywhere shows every alarm raised before the call. A
    // ReadIndex barrier gives the same guarantee without a log entry.
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    EtcdServer* s = s_;
    s_->LinearizableRead([s, req, resp, reactor](absl::Status st) {
      if (st.ok()) {
        for (const auto& a : s->alarm_store().Get(req->memberid(), req->alarm())) {
          *resp->add_alarms() = a;
        }
        s->FillHeader(resp->mutable_header());
      }
      FinishWith(reactor, st);
    });
    return reactor;
  }
  synodpb::Request r;
  *r.mutable_alarm() = *req;
  // The member id is part of the entry, so that every member applies the
  // same alarm (0 means "this member" to the caller).
  if (req->action() == etcdserverpb::AlarmRequest::ACTIVATE &&
      req->memberid() == 0) {
    r.mutable_alarm()->set_memberid(s_->member_id());
  }
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

grpc::ServerUnaryReactor* MaintenanceService::Status(
    grpc::CallbackServerContext* ctx, const etcdserverpb::StatusRequest*,
    etcdserverpb::StatusResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  resp->set_version(kServerVersion);
  resp->set_dbsize(s_->DbSizeBytes());
  resp->set_dbsizeinuse(s_->DbSizeBytes());
  resp->set_leader(s_->leader());
  resp->set_raftindex(s_->commit_index());
  resp->set_raftappliedindex(s_->applied_index());
  resp->set_raftterm(s_->term());
  resp->set_islearner(s_->is_learner());
  if (s_->leader() == 0) resp->add_errors("etcdserver: no leader");
  for (const auto& a : s_->Alarms()) {
    // etcd's format, trailing space included.
    resp->add_errors(absl::StrCat("memberID:", a.memberid(), " alarm:",
                                  etcdserverpb::AlarmType_Name(a.alarm()), " "));
  }
  s_->FillHeader(resp->mutable_header());
  // Synod's own metadata (etcd clients ignore it): synod-proxy polls Status
  // to learn when the auth state changed, so it can drop its permission
  // decisions and re-check its watchers.
  ctx->AddInitialMetadata("synod-auth-enabled",
                          s_->auth_store()->IsAuthEnabled() ? "true" : "false");
  ctx->AddInitialMetadata("synod-auth-revision",
                          absl::StrCat(s_->auth_store()->Revision()));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* MaintenanceService::Defragment(
    grpc::CallbackServerContext* ctx, const etcdserverpb::DefragmentRequest*,
    etcdserverpb::DefragmentResponse* resp) {
  absl::Status admin = CheckMaintenanceAdmin(s_, *ctx);
  if (!admin.ok()) return FinishNow(ctx, admin);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const common::EtcdMetrics& m = common::GetEtcdMetrics();
  m.defrag_inflight->Set(1);
  const absl::Time start = absl::Now();
  s_->backend()->CompactAll();
  m.backend_defrag_seconds->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  m.defrag_inflight->Set(0);
  s_->FillHeader(resp->mutable_header());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* MaintenanceService::Hash(
    grpc::CallbackServerContext* ctx, const etcdserverpb::HashRequest*,
    etcdserverpb::HashResponse* resp) {
  absl::Status admin = CheckMaintenanceAdmin(s_, *ctx);
  if (!admin.ok()) return FinishNow(ctx, admin);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  auto h = s_->kv()->HashKV(0);
  common::GetEtcdMetrics().mvcc_hash_seconds->Observe(
      absl::ToDoubleSeconds(absl::Now() - start));
  if (h.ok()) {
    resp->set_hash(*h);
    s_->FillHeader(resp->mutable_header());
  }
  reactor->Finish(common::ToGrpcStatus(h.status()));
  return reactor;
}

grpc::ServerUnaryReactor* MaintenanceService::HashKV(
    grpc::CallbackServerContext* ctx, const etcdserverpb::HashKVRequest* req,
    etcdserverpb::HashKVResponse* resp) {
  absl::Status admin = CheckMaintenanceAdmin(s_, *ctx);
  if (!admin.ok()) return FinishNow(ctx, admin);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  auto h = s_->LocalHashKV(req->revision());
  common::GetEtcdMetrics().mvcc_hash_rev_seconds->Observe(
      absl::ToDoubleSeconds(absl::Now() - start));
  if (h.ok()) *resp = *std::move(h);
  reactor->Finish(common::ToGrpcStatus(h.status()));
  return reactor;
}

namespace {

// Streams a snapshot of the data dir in chunks (see snapshot.h for the
// format), one write in flight.
class SnapshotReactor final
    : public grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse> {
 public:
  explicit SnapshotReactor(EtcdServer* s)
      : start_(absl::Now()), writer_(s->backend()) {
    NextChunk();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "snapshot aborted"));
      return;
    }
    NextChunk();
  }
  void OnDone() override {
    // etcd's backend snapshot latency: the whole stream, sent or not.
    common::GetEtcdMetrics().backend_snapshot_seconds->Observe(
        absl::ToDoubleSeconds(absl::Now() - start_));
    delete this;
  }

 private:
  void NextChunk() {
    resp_.Clear();
    bool last = false;
    absl::Status st = writer_.Next(resp_.mutable_blob(), &last);
    if (!st.ok()) {
      Finish(common::ToGrpcStatus(st));
      return;
    }
    if (resp_.blob().empty() && last) {
      Finish(grpc::Status::OK);
      return;
    }
    resp_.set_remaining_bytes(last ? 0 : 1);
    StartWrite(&resp_);
  }
  const absl::Time start_;
  SnapshotWriter writer_;
  etcdserverpb::SnapshotResponse resp_;
};

}  // namespace

grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse>*
MaintenanceService::Snapshot(grpc::CallbackServerContext* ctx,
                             const etcdserverpb::SnapshotRequest*) {
  absl::Status admin = CheckMaintenanceAdmin(s_, *ctx);
  if (!admin.ok()) {
    return new RejectedWriteStream<etcdserverpb::SnapshotResponse>(admin);
  }
  return new SnapshotReactor(s_);
}

grpc::ServerUnaryReactor* MaintenanceService::MoveLeader(
    grpc::CallbackServerContext* ctx, const etcdserverpb::MoveLeaderRequest* req,
    etcdserverpb::MoveLeaderResponse* resp) {
  absl::Status admin = CheckMaintenanceAdmin(s_, *ctx);
  if (!admin.ok()) return FinishNow(ctx, admin);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  EtcdServer* s = s_;
  s_->MoveLeader(req->targetid(), [s, reactor, resp](absl::Status st) {
    if (st.ok()) s->FillHeader(resp->mutable_header());
    FinishWith(reactor, st);
  });
  return reactor;
}

}  // namespace synod::server
