// WatchProxy: the proxy's Watch service. Each client stream is a bidi
// reactor holding client watchers; each watcher subscribes to the shared
// WatchRange of its range through the WatchHub, so thousands of client
// watches on a few ranges cost a few upstream watches.
//
// Per client watcher: filters (NOPUT, NODELETE), prev_kv, fragment (etcd's
// sendFragments at the proxy's request limit, common::AppendWatchFragments),
// progress_notify (every `progress_notify_interval`, to watchers that got
// nothing in it).
// Per stream: WatchProgressRequest is answered with the lowest progress of
// its watchers (all events at or below it were sent) and makes their
// ranges ask the member for progress. Created, canceled and compacted
// responses carry the cluster's full header.
//
// Slow clients: a stream queues at most `client_queue_bytes` of events
// (plus small control responses); a watcher whose events do not fit is
// canceled with kSlowWatcherReason instead of stalling its range. Responses
// leave one write at a time (common::WatchStreamReactor, shared with the
// member).
//
// Thread-safety: gRPC drives the service; Tick() may be called from any
// thread. Lock order: WatchProxy::mu_ -> WatchRange::mu_ -> stream mu_.
#ifndef SYNOD_PROXY_WATCH_PROXY_H_
#define SYNOD_PROXY_WATCH_PROXY_H_

#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "proto/rpc.grpc.pb.h"
#include "proxy/namespace.h"
#include "proxy/watch_hub.h"

namespace synod::proxy {

struct WatchProxyOptions {
  // Bytes of responses a client stream may queue (> 0).
  size_t client_queue_bytes = 1 << 20;
  absl::Duration progress_notify_interval = absl::Minutes(10);
  // Where a fragment watcher's responses are split, in bytes (> 0). etcd
  // splits at the server's request limit (--max-request-bytes), not at a
  // response limit: synod-proxy's main passes its own request limit,
  // --max-send-bytes.
  size_t fragment_bytes = 1572864;
  // --namespace; null or empty for none. Outlives the service.
  const Namespace* ns = nullptr;
};

class ClientWatchStream;

class WatchProxy final : public etcdserverpb::Watch::CallbackService {
 public:
  // `hub`, `clock` and `metrics` (may be null) outlive the service.
  WatchProxy(WatchHub* hub, common::Clock* clock, WatchProxyOptions options,
             ProxyMetrics* metrics);

  grpc::ServerBidiReactor<etcdserverpb::WatchRequest,
                          etcdserverpb::WatchResponse>*
  Watch(grpc::CallbackServerContext* ctx) override;

  // Periodic progress notifications of client watchers.
  void Tick();

  // Used by streams.
  void AddStream(ClientWatchStream* s);
  void RemoveStream(ClientWatchStream* s);

 private:
  friend class ClientWatchStream;
  WatchHub* const hub_;
  common::Clock* const clock_;
  const WatchProxyOptions options_;
  ProxyMetrics* const metrics_;
  absl::Mutex mu_;
  std::set<ClientWatchStream*> streams_ ABSL_GUARDED_BY(mu_);
  absl::Time last_notify_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_WATCH_PROXY_H_
