// Lease service of the proxy.
//
// KeepAliveFolder: every client keep-alive goes up one shared upstream
// LeaseKeepAlive stream, and keep-alives for the same lease fold: while a
// request for lease L is in flight, further requests for L (from any
// client) wait for its answer instead of sending their own. After an
// upstream failure the stream is reopened (on the then-current endpoint)
// by Tick() and the requests in flight are sent again.
//
// LeaseProxy: LeaseKeepAlive streams (common::KeepAliveStream: every
// request answered, also after a half-close) renewed through the folder;
// LeaseGrant, LeaseRevoke, LeaseTimeToLive and LeaseLeases forwarded.
//
// Thread-safety: safe for concurrent use; sinks are called with no lock of
// the folder held.
#ifndef SYNOD_PROXY_LEASE_PROXY_H_
#define SYNOD_PROXY_LEASE_PROXY_H_

#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/keep_alive_stream.h"
#include "proto/rpc.grpc.pb.h"
#include "proxy/namespace.h"
#include "proxy/proxy_metrics.h"
#include "proxy/upstream.h"

namespace synod::proxy {

// Where one client's keep-alive answers go (a client stream's, or a
// test's).
using KeepAliveSink = common::KeepAliveSink;

class KeepAliveFolder {
 public:
  // `upstream` and `metrics` (may be null) outlive the folder.
  KeepAliveFolder(Upstream* upstream, ProxyMetrics* metrics);
  ~KeepAliveFolder();

  // Renews lease `id`; `sink` gets the member's answer once.
  void KeepAlive(int64_t id, std::shared_ptr<KeepAliveSink> sink);
  // Reopens a failed upstream stream and resends what was in flight.
  void Tick();

 private:
  struct Lease {
    bool inflight = false;
    std::vector<std::shared_ptr<KeepAliveSink>> waiters;
  };
  void OpenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLocked(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnResponse(uint64_t gen, const etcdserverpb::LeaseKeepAliveResponse& r);
  void OnClosed(uint64_t gen);

  Upstream* const upstream_;
  ProxyMetrics* const metrics_;
  std::shared_ptr<bool> alive_;  // callbacks check it after destruction
  absl::Mutex mu_;
  std::shared_ptr<UpstreamKeepAlive> stream_ ABSL_GUARDED_BY(mu_);
  uint64_t gen_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
};

class LeaseProxy final : public etcdserverpb::Lease::CallbackService {
 public:
  // `endpoints`, `folder`, `ns` and `metrics` (may be null) outlive the
  // service. With a namespace, LeaseTimeToLive's keys lose the prefix.
  LeaseProxy(Endpoints* endpoints, KeepAliveFolder* folder,
             const Namespace* ns, ProxyMetrics* metrics)
      : endpoints_(endpoints), folder_(folder), ns_(ns), metrics_(metrics) {}

  grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                          etcdserverpb::LeaseKeepAliveResponse>*
  LeaseKeepAlive(grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* LeaseGrant(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::LeaseGrantRequest* req,
      etcdserverpb::LeaseGrantResponse* resp) override;
  grpc::ServerUnaryReactor* LeaseRevoke(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::LeaseRevokeRequest* req,
      etcdserverpb::LeaseRevokeResponse* resp) override;
  grpc::ServerUnaryReactor* LeaseTimeToLive(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::LeaseTimeToLiveRequest* req,
      etcdserverpb::LeaseTimeToLiveResponse* resp) override;
  grpc::ServerUnaryReactor* LeaseLeases(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::LeaseLeasesRequest* req,
      etcdserverpb::LeaseLeasesResponse* resp) override;

 private:
  Endpoints* const endpoints_;
  KeepAliveFolder* const folder_;
  const Namespace* const ns_;
  ProxyMetrics* const metrics_;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_LEASE_PROXY_H_
