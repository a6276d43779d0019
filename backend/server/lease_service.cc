#include <deque>

#include "backend/server/services.h"
#include "common/errors.h"

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
  reactor->Finish(s_->LeaseTimeToLive(*req, resp));
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

namespace {

// One keep-alive stream: each request renews its lease and is answered with
// the new TTL (0 when the lease is unknown, as etcd does). One write in
// flight; answers queue up behind it.
class KeepAliveReactor final
    : public grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                     etcdserverpb::LeaseKeepAliveResponse> {
 public:
  explicit KeepAliveReactor(EtcdServer* s) : s_(s) { StartRead(&req_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock l(&mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    etcdserverpb::LeaseKeepAliveResponse resp;
    resp.set_id(req_.id());
    // On a follower this is a round trip to the leader (etcd forwards
    // keep-alives to the leader too).
    auto ttl = s_->LeaseKeepAlive(req_.id());
    resp.set_ttl(ttl.ok() ? *ttl : 0);
    s_->FillHeader(resp.mutable_header());
    {
      absl::MutexLock l(&mu_);
      pending_.push_back(std::move(resp));
      if (!writing_) {
        writing_ = true;
        StartWrite(&pending_.front());
      }
    }
    StartRead(&req_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    pending_.pop_front();
    if (!ok) {
      pending_.clear();
      reads_done_ = true;
    }
    if (!pending_.empty()) {
      StartWrite(&pending_.front());
      return;
    }
    writing_ = false;
    MaybeFinishLocked();
  }

  void OnDone() override { delete this; }

 private:
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reads_done_ && !writing_ && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  EtcdServer* s_;
  etcdserverpb::LeaseKeepAliveRequest req_;
  absl::Mutex mu_;
  std::deque<etcdserverpb::LeaseKeepAliveResponse> pending_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                        etcdserverpb::LeaseKeepAliveResponse>*
LeaseService::LeaseKeepAlive(grpc::CallbackServerContext*) {
  if (s_->is_learner()) {
    return new RejectedStream<etcdserverpb::LeaseKeepAliveRequest,
                              etcdserverpb::LeaseKeepAliveResponse>(
        Err(EtcdError::kNotSupportedForLearner));
  }
  return new KeepAliveReactor(s_);
}

}  // namespace synod::server
