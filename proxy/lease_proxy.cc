#include "proxy/lease_proxy.h"

#include <utility>

#include "proxy/unary_forward.h"

namespace synod::proxy {

using etcdserverpb::LeaseKeepAliveRequest;
using etcdserverpb::LeaseKeepAliveResponse;

KeepAliveFolder::KeepAliveFolder(Upstream* upstream, ProxyMetrics* metrics)
    : upstream_(upstream),
      metrics_(metrics),
      alive_(std::make_shared<bool>(true)) {}

KeepAliveFolder::~KeepAliveFolder() {
  alive_.reset();
  absl::MutexLock l(&mu_);
  if (stream_ != nullptr) stream_->Close();
  ++gen_;
}

// Opens the upstream stream if there is none, and sends every lease that
// has waiters but no request in flight (after a failure).
void KeepAliveFolder::OpenLocked() {
  if (stream_ != nullptr) return;
  const uint64_t gen = ++gen_;
  std::weak_ptr<bool> alive = alive_;
  UpstreamKeepAliveCallbacks cb;
  cb.on_response = [this, alive, gen](const LeaseKeepAliveResponse& r) {
    if (alive.lock()) OnResponse(gen, r);
  };
  cb.on_closed = [this, alive, gen](const grpc::Status&) {
    if (alive.lock()) OnClosed(gen);
  };
  stream_ = upstream_->KeepAlive(std::move(cb));
  for (auto& [id, lease] : leases_) {
    if (!lease.inflight && !lease.waiters.empty()) SendLocked(id);
  }
}

void KeepAliveFolder::SendLocked(int64_t id) {
  OpenLocked();
  Lease& lease = leases_[id];
  if (lease.inflight) return;
  lease.inflight = true;
  stream_->Send(id);
  if (metrics_ != nullptr) metrics_->keepalive_upstream->Inc();
}

void KeepAliveFolder::KeepAlive(int64_t id,
                                std::shared_ptr<KeepAliveSink> sink) {
  absl::MutexLock l(&mu_);
  leases_[id].waiters.push_back(std::move(sink));
  SendLocked(id);
}

void KeepAliveFolder::Tick() {
  absl::MutexLock l(&mu_);
  if (!leases_.empty()) OpenLocked();
}

void KeepAliveFolder::OnResponse(uint64_t gen,
                                 const LeaseKeepAliveResponse& r) {
  std::vector<std::shared_ptr<KeepAliveSink>> waiters;
  {
    absl::MutexLock l(&mu_);
    if (gen != gen_) return;
    auto it = leases_.find(r.id());
    if (it == leases_.end()) return;
    waiters.swap(it->second.waiters);
    leases_.erase(it);
  }
  for (const auto& w : waiters) w->Deliver(r);
}

void KeepAliveFolder::OnClosed(uint64_t gen) {
  absl::MutexLock l(&mu_);
  if (gen != gen_) return;
  stream_ = nullptr;  // Tick() reopens it and resends
  for (auto& [id, lease] : leases_) lease.inflight = false;
}

grpc::ServerBidiReactor<LeaseKeepAliveRequest, LeaseKeepAliveResponse>*
LeaseProxy::LeaseKeepAlive(grpc::CallbackServerContext*) {
  // Every client request goes to the folder, which answers it once the
  // member has (see common::KeepAliveStream for the half-close rule).
  KeepAliveFolder* folder = folder_;
  ProxyMetrics* metrics = metrics_;
  return new common::KeepAliveStream(
      [folder, metrics](int64_t id,
                        const std::shared_ptr<KeepAliveSink>& sink) {
        if (metrics != nullptr) metrics->keepalive_client->Inc();
        folder->KeepAlive(id, sink);
      });
}

using etcdserverpb::Lease;

grpc::ServerUnaryReactor* LeaseProxy::LeaseGrant(
    grpc::CallbackServerContext* ctx, const etcdserverpb::LeaseGrantRequest* req,
    etcdserverpb::LeaseGrantResponse* resp) {
  return ForwardUnary<Lease>(
      endpoints_, ctx, req, resp, /*idempotent=*/false,
      [](Lease::Stub* s, grpc::ClientContext* c,
         const etcdserverpb::LeaseGrantRequest* q,
         etcdserverpb::LeaseGrantResponse* r,
         std::function<void(grpc::Status)> cb) {
        s->async()->LeaseGrant(c, q, r, std::move(cb));
      });
}

grpc::ServerUnaryReactor* LeaseProxy::LeaseRevoke(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::LeaseRevokeRequest* req,
    etcdserverpb::LeaseRevokeResponse* resp) {
  return ForwardUnary<Lease>(
      endpoints_, ctx, req, resp, /*idempotent=*/false,
      [](Lease::Stub* s, grpc::ClientContext* c,
         const etcdserverpb::LeaseRevokeRequest* q,
         etcdserverpb::LeaseRevokeResponse* r,
         std::function<void(grpc::Status)> cb) {
        s->async()->LeaseRevoke(c, q, r, std::move(cb));
      });
}

grpc::ServerUnaryReactor* LeaseProxy::LeaseTimeToLive(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::LeaseTimeToLiveRequest* req,
    etcdserverpb::LeaseTimeToLiveResponse* resp) {
  return ForwardUnary<Lease>(
      endpoints_, ctx, req, resp, /*idempotent=*/true,
      [](Lease::Stub* s, grpc::ClientContext* c,
         const etcdserverpb::LeaseTimeToLiveRequest* q,
         etcdserverpb::LeaseTimeToLiveResponse* r,
         std::function<void(grpc::Status)> cb) {
        s->async()->LeaseTimeToLive(c, q, r, std::move(cb));
      },
      [ns = ns_](etcdserverpb::LeaseTimeToLiveResponse* r) {
        ns->Response(r);
      });
}

grpc::ServerUnaryReactor* LeaseProxy::LeaseLeases(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::LeaseLeasesRequest* req,
    etcdserverpb::LeaseLeasesResponse* resp) {
  return ForwardUnary<Lease>(
      endpoints_, ctx, req, resp, /*idempotent=*/true,
      [](Lease::Stub* s, grpc::ClientContext* c,
         const etcdserverpb::LeaseLeasesRequest* q,
         etcdserverpb::LeaseLeasesResponse* r,
         std::function<void(grpc::Status)> cb) {
        s->async()->LeaseLeases(c, q, r, std::move(cb));
      });
}

}  // namespace synod::proxy
