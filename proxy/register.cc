#include "proxy/register.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace synod::proxy {
namespace {

std::unique_ptr<grpc::ClientContext> Ctx(int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(common::GrpcDeadlineAfter(absl::Seconds(seconds)));
  return ctx;
}

}  // namespace

Registrar::Registrar(Endpoints* endpoints, std::string prefix,
                     std::string addr, int64_t ttl_seconds,
                     common::Clock* clock)
    : endpoints_(endpoints),
      prefix_(std::move(prefix)),
      addr_(std::move(addr)),
      ttl_(std::max<int64_t>(1, ttl_seconds)),
      clock_(clock != nullptr ? clock : common::RealClock::Get()) {}

Registrar::~Registrar() { Stop(); }

std::string Registrar::Key() const { return absl::StrCat(prefix_, "/", addr_); }

std::string Registrar::Value() const {
  // grpc naming.Update as etcd's grpc-proxy writes it (Op 0 = Add).
  return absl::StrCat("{\"Op\":0,\"Addr\":\"", addr_,
                      "\",\"Metadata\":\"{\\\"Platform\\\":\\\"linux/amd64\\\"}\"}");
}

void Registrar::Start() { thread_ = std::thread([this] { Loop(); }); }

void Registrar::Stop() {
  if (!thread_.joinable()) return;
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  thread_.join();
}

bool Registrar::WaitForStop(absl::Duration d) {
  absl::MutexLock l(&mu_);
  return clock_->AwaitWithTimeout(&mu_, absl::Condition(&stop_), d);
}

bool Registrar::Stopping() {
  absl::MutexLock l(&mu_);
  return stop_;
}

void Registrar::Loop() {
  while (!Stopping()) {
    int64_t lease = 0;
    RegisterOnce(&lease);
    if (lease != 0 && Stopping()) {
      // Leaving: revoke, which deletes the key at once.
      size_t index = 0;
      auto stub = etcdserverpb::Lease::NewStub(endpoints_->Current(&index));
      etcdserverpb::LeaseRevokeRequest req;
      req.set_id(lease);
      etcdserverpb::LeaseRevokeResponse resp;
      stub->LeaseRevoke(Ctx(2).get(), req, &resp);
      return;
    }
    // Lost the registration: try again shortly.
    WaitForStop(absl::Seconds(1));
  }
}

void Registrar::RegisterOnce(int64_t* lease) {
  size_t index = 0;
  auto channel = endpoints_->Current(&index);
  auto lease_stub = etcdserverpb::Lease::NewStub(channel);
  auto kv_stub = etcdserverpb::KV::NewStub(channel);
  etcdserverpb::LeaseGrantRequest greq;
  greq.set_ttl(ttl_);
  etcdserverpb::LeaseGrantResponse gresp;
  grpc::Status s = lease_stub->LeaseGrant(Ctx(3).get(), greq, &gresp);
  if (!s.ok()) {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      endpoints_->ReportFailure(index);
    }
    return;
  }
  *lease = gresp.id();
  etcdserverpb::PutRequest put;
  put.set_key(Key());
  put.set_value(Value());
  put.set_lease(gresp.id());
  etcdserverpb::PutResponse presp;
  s = kv_stub->Put(Ctx(3).get(), put, &presp);
  if (!s.ok()) return;
  SYNOD_LOG(INFO) << "registered " << Key() << " with lease " << gresp.id();
  const absl::Duration every = std::max(absl::Seconds(ttl_) / 3,
                                        absl::Milliseconds(500));
  grpc::ClientContext ctx;
  auto stream = lease_stub->LeaseKeepAlive(&ctx);
  while (!WaitForStop(every)) {
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(gresp.id());
    etcdserverpb::LeaseKeepAliveResponse resp;
    if (!stream->Write(req) || !stream->Read(&resp) || resp.ttl() <= 0) {
      SYNOD_LOG(WARNING) << "lost the registration of " << Key();
      ctx.TryCancel();
      stream->Finish();
      return;
    }
  }
  stream->WritesDone();
  ctx.TryCancel();
  stream->Finish();
}

}  // namespace synod::proxy
