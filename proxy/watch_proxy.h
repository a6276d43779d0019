// WatchProxy: the proxy's Watch service. Each client stream is a bidi
// reactor holding client watchers; each watcher subscribes to the shared
// WatchRange of its range through the WatchHub, so thousands of client
// watches on a few ranges cost a few upstream watches. A watcher inside a
// cached prefix (--cache-prefixes, PrefixCache) whose start is in the
// prefix's window is served by the prefix's one watch instead.
//
// Permissions: the upstream watches are shared across users and made as the
// proxy, so each client watcher is let in only by the caller's permission
// for its exact range (PermissionCache, the client's "token" metadata): a
// create refused by the member's decision is answered as the member
// answers it (created and canceled, watch_id -1, cancel_reason "rpc error:
// code = PermissionDenied desc = etcdserver: permission denied", or the
// token error). Creates and cancels of a stream are handled in order, each
// create after its decision. Whenever the permission epoch moves (the
// cluster's auth state changed, see AuthMonitor) every client watcher is
// re-checked, one probe per (token, range), and those refused are canceled
// with that reason, as a synod member cancels a direct watch whose
// permission was revoked.
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

#include <atomic>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "proto/rpc.grpc.pb.h"
#include "proxy/namespace.h"
#include "proxy/permission_cache.h"
#include "proxy/prefix_cache.h"
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
  // --cache-prefixes; null for none. Outlives the service. A watcher whose
  // range and start it can serve is subscribed to it instead of its own
  // WatchRange (no upstream watch of its own).
  PrefixCache* prefixes = nullptr;
};

class ClientWatchStream;

class WatchProxy final : public etcdserverpb::Watch::CallbackService {
 public:
  // `hub`, `perms`, `clock` and `metrics` (may be null) outlive the
  // service.
  WatchProxy(WatchHub* hub, PermissionCache* perms, common::Clock* clock,
             WatchProxyOptions options, ProxyMetrics* metrics);

  grpc::ServerBidiReactor<etcdserverpb::WatchRequest,
                          etcdserverpb::WatchResponse>*
  Watch(grpc::CallbackServerContext* ctx) override;

  // Periodic progress notifications of client watchers, and the re-check
  // of watchers when the permission epoch moved (or a re-check could not
  // decide).
  void Tick();
  // Re-checks now every client watcher decided before the current epoch
  // (AuthMonitor's on_change).
  void Recheck();
  // Asks the next Tick for a re-check; `undecided` (a re-check the member
  // could not answer): not sooner than kUndecidedRetry after the last.
  void MarkRecheck(bool undecided = false);
  static constexpr absl::Duration kUndecidedRetry = absl::Milliseconds(500);

  // Used by streams.
  void AddStream(ClientWatchStream* s);
  void RemoveStream(ClientWatchStream* s);

 private:
  friend class ClientWatchStream;
  WatchHub* const hub_;
  PermissionCache* const perms_;
  common::Clock* const clock_;
  const WatchProxyOptions options_;
  ProxyMetrics* const metrics_;
  absl::Mutex mu_;
  std::set<ClientWatchStream*> streams_ ABSL_GUARDED_BY(mu_);
  absl::Time last_notify_ ABSL_GUARDED_BY(mu_);
  // Set from permission callbacks, which may run under mu_ (Recheck).
  std::atomic<bool> recheck_{false};
  std::atomic<bool> retry_undecided_{false};
  absl::Time last_recheck_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t checked_epoch_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_WATCH_PROXY_H_
