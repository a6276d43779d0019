#include <memory>

#include "backend/server/services.h"
#include "common/errors.h"
#include "common/keep_alive_stream.h"

namespace synod::server {

using common::EtcdError;
using common::Err;

grpc::ServerUnaryReactor* LeaseService::LeaseGrant(
    grpc::CallbackServerContext* ctx, const etcdserverpb::LeaseGrantRequest* req,
    etcdserverpb::LeaseGrantResponse* resp) {
  synodpb::Request r;
  *r.mutable_lease_grant() = *req;
  // The ID is chosen before proposing so that applying is deterministic.
  if (req->id() == 0) r.mutable_lease_grant()->set_id(s_->NewLeaseId());
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

grpc::ServerUnaryReactor* LeaseService::LeaseRevoke(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::LeaseRevokeRequest* req,
    etcdserverpb::LeaseRevokeResponse* resp) {
  synodpb::Request r;
  *r.mutable_lease_revoke() = *req;
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

grpc::ServerUnaryReactor* LeaseService::LeaseTimeToLive(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::LeaseTimeToLiveRequest* req,
    etcdserverpb::LeaseTimeToLiveResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // Only the leader tracks remaining TTLs: a follower asks it.
  grpc::Status st = s_->LeaseTimeToLive(*req, resp);
  if (st.ok() && req->keys() && s_->auth_store()->IsAuthEnabled()) {
    // The attached keys are shown only to a caller who may read each one
    // (etcd 3.4 shows them to anyone).
    auth::AuthStore* as = s_->auth_store();
    absl::Status a = CheckCaller(s_, *ctx, [as, resp](const auth::AuthInfo& ai) {
      for (const std::string& k : resp->keys()) {
        absl::Status st = as->IsRangePermitted(ai, k, "");
        if (!st.ok()) return st;
      }
      return absl::OkStatus();
    });
    if (!a.ok()) {
      resp->Clear();
      st = common::ToGrpcStatus(a);
    }
  }
  reactor->Finish(st);
  return reactor;
}

grpc::ServerUnaryReactor* LeaseService::LeaseLeases(
    grpc::CallbackServerContext* ctx, const etcdserverpb::LeaseLeasesRequest*,
    etcdserverpb::LeaseLeasesResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  for (int64_t id : s_->lessor()->Leases()) resp->add_leases()->set_id(id);
  s_->FillHeader(resp->mutable_header());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                        etcdserverpb::LeaseKeepAliveResponse>*
LeaseService::LeaseKeepAlive(grpc::CallbackServerContext*) {
  if (s_->is_learner()) {
    return new RejectedStream<etcdserverpb::LeaseKeepAliveRequest,
                              etcdserverpb::LeaseKeepAliveResponse>(
        Err(EtcdError::kNotSupportedForLearner));
  }
  // Each request renews its lease and is answered with the new TTL (0 when
  // the lease is unknown, as etcd does), before the next one is read. On a
  // follower this is a round trip to the leader (etcd forwards keep-alives
  // to the leader too).
  EtcdServer* s = s_;
  return new common::KeepAliveStream(
      [s](int64_t id, const std::shared_ptr<common::KeepAliveSink>& sink) {
        etcdserverpb::LeaseKeepAliveResponse resp;
        resp.set_id(id);
        auto ttl = s->LeaseKeepAlive(id);
        resp.set_ttl(ttl.ok() ? *ttl : 0);
        s->FillHeader(resp.mutable_header());
        sink->Deliver(resp);
      });
}

}  // namespace synod::server
