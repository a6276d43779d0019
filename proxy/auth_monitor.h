// AuthMonitor: follows the cluster's auth state for the PermissionCache and
// the client watchers.
//
// Every `poll_interval` it asks the current member for Maintenance.Status
// as the proxy (one poll in flight at a time) and reads the auth state
// from its metadata (UpstreamAuthState). When the state changes (auth
// enabled or disabled, or the auth revision moved: a user, role, grant or
// password changed) the PermissionCache moves to a new epoch, dropping
// every decision, and `on_change` runs, so that the watch service re-checks
// its client watchers. A member that does not tell the state (etcd), or a
// poll that fails, leaves the state unknown: then the cache's decisions
// live `unknown_ttl` and the epoch moves, with `on_change`, every
// `unknown_recheck`.
//
// The bound this gives: a permission revoked on the cluster (applied by
// the polled member) takes effect at the proxy within poll_interval plus
// one Status round trip, then one probe round trip per (credential, range):
// reads are checked anew, and client watchers found denied are canceled.
// With the defaults (500 ms) that is within 1 s of the member applying the
// change; without the metadata, within unknown_recheck (1 s) plus a probe.
//
// Thread-safety: safe for concurrent use; Tick() from one timer thread.
// `on_change` runs with no lock held, on the thread completing the poll or
// in Tick().
#ifndef SYNOD_PROXY_AUTH_MONITOR_H_
#define SYNOD_PROXY_AUTH_MONITOR_H_

#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "proxy/permission_cache.h"
#include "proxy/upstream.h"

namespace synod::proxy {

struct AuthMonitorOptions {
  absl::Duration poll_interval = absl::Milliseconds(500);  // > 0
  absl::Duration unknown_recheck = absl::Seconds(1);       // > 0
};

class AuthMonitor {
 public:
  // `upstream`, `cache` and `clock` outlive the monitor.
  AuthMonitor(Upstream* upstream, PermissionCache* cache, common::Clock* clock,
              AuthMonitorOptions options, std::function<void()> on_change);

  // Starts a poll when one is due; in the unknown state, moves the epoch
  // every unknown_recheck. Call at least every 100 ms.
  void Tick();
  UpstreamAuthState state() const;
  int TEST_polls() const;

 private:
  void OnPoll(absl::StatusOr<UpstreamAuthState> st);

  Upstream* const upstream_;
  PermissionCache* const cache_;
  common::Clock* const clock_;
  const AuthMonitorOptions options_;
  const std::function<void()> on_change_;

  mutable absl::Mutex mu_;
  bool polling_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_poll_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_recheck_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  UpstreamAuthState state_ ABSL_GUARDED_BY(mu_);
  int polls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_AUTH_MONITOR_H_
