#include "proxy/lease_proxy.h"

#include <deque>
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

namespace {

// One client's LeaseKeepAlive stream. Every request read is answered, also
// after the client half-closes: the stream ends (OK) once the client has
// half-closed and every request read has been answered (python-etcd3's
// lease.refresh() sends one request and half-closes; etcd's member answers
// it, then ends the stream). A cancelled or broken stream ends without
// waiting for answers still due.
class ClientKeepAliveStream final
    : public grpc::ServerBidiReactor<LeaseKeepAliveRequest,
                                     LeaseKeepAliveResponse> {
 public:
  // The folder's handle on the stream; detached when the stream ends.
  class Sink final : public KeepAliveSink {
   public:
    explicit Sink(ClientKeepAliveStream* s) : s_(s) {}
    void Deliver(const LeaseKeepAliveResponse& r) override {
      absl::MutexLock l(&mu_);
      if (s_ != nullptr) s_->Push(r);
    }
    void Detach() {
      absl::MutexLock l(&mu_);
      s_ = nullptr;
    }

   private:
    absl::Mutex mu_;
    ClientKeepAliveStream* s_ ABSL_GUARDED_BY(mu_);
  };

  ClientKeepAliveStream(KeepAliveFolder* folder, ProxyMetrics* metrics)
      : folder_(folder),
        metrics_(metrics),
        sink_(std::make_shared<Sink>(this)) {
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock l(&mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    if (metrics_ != nullptr) metrics_->keepalive_client->Inc();
    {
      // Counted before the folder may answer (on another thread).
      absl::MutexLock l(&mu_);
      ++unanswered_;
    }
    folder_->KeepAlive(req_.id(), sink_);
    StartRead(&req_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    queue_.pop_front();
    if (!ok) {
      queue_.clear();
      broken_ = true;
    }
    if (!queue_.empty()) {
      StartWrite(&queue_.front());
      return;
    }
    writing_ = false;
    MaybeFinishLocked();
  }

  void OnCancel() override {
    absl::MutexLock l(&mu_);
    broken_ = true;
    MaybeFinishLocked();
  }

  void OnDone() override {
    sink_->Detach();
    delete this;
  }

  // The folder's answer to one request of this stream.
  void Push(const LeaseKeepAliveResponse& r) {
    absl::MutexLock l(&mu_);
    if (unanswered_ > 0) --unanswered_;
    if (broken_ || finished_) {
      MaybeFinishLocked();
      return;
    }
    queue_.push_back(r);
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

 private:
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || !reads_done_ || writing_) return;
    if (unanswered_ > 0 && !broken_) return;  // answers still due
    finished_ = true;
    Finish(grpc::Status::OK);
  }

  KeepAliveFolder* const folder_;
  ProxyMetrics* const metrics_;
  std::shared_ptr<Sink> sink_;
  LeaseKeepAliveRequest req_;
  absl::Mutex mu_;
  std::deque<LeaseKeepAliveResponse> queue_ ABSL_GUARDED_BY(mu_);
  // Requests read whose answer has not come back from the folder.
  int64_t unanswered_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // write failed or cancelled
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerBidiReactor<LeaseKeepAliveRequest, LeaseKeepAliveResponse>*
LeaseProxy::LeaseKeepAlive(grpc::CallbackServerContext*) {
  return new ClientKeepAliveStream(folder_, metrics_);
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
