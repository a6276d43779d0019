// WatchHub: the proxy's set of WatchRanges, one per distinct (key,
// range_end). Client watch streams and the range cache subscribe through
// it, so every subscriber of a range shares the range's one upstream watch.
// A range with no subscriber lingers (keeping its upstream watch and event
// window, for clients that reconnect and resume) and is closed after
// `linger`.
//
// Thread-safety: safe for concurrent use. Lock order: WatchHub::mu_ ->
// WatchRange::mu_.
#ifndef SYNOD_PROXY_WATCH_HUB_H_
#define SYNOD_PROXY_WATCH_HUB_H_

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "proxy/watch_range.h"

namespace synod::proxy {

class WatchHub {
 public:
  // `upstream`, `clock` and `metrics` (may be null) outlive the hub.
  WatchHub(Upstream* upstream, common::Clock* clock, WatchRangeOptions options,
           absl::Duration linger, ProxyMetrics* metrics);

  // Subscribes `sub` to (key, range_end) from `start_revision` (0 = now),
  // creating the range if needed. Returns the range and the handle for
  // WatchRange::Unsubscribe. Never fails.
  std::pair<std::shared_ptr<WatchRange>, uint64_t> Subscribe(
      const std::string& key, const std::string& range_end,
      std::shared_ptr<RangeSubscriber> sub, int64_t start_revision,
      bool needs_fresh);
  // Timer work of every range; closes ranges idle for longer than linger.
  void Tick();
  size_t RangeCount() const;

 private:
  using Key = std::pair<std::string, std::string>;
  Upstream* const upstream_;
  common::Clock* const clock_;
  const WatchRangeOptions options_;
  const absl::Duration linger_;
  ProxyMetrics* const metrics_;
  // Held while a range is closed (CloseIfIdle), so it comes first.
  mutable absl::Mutex mu_ ABSL_ACQUIRED_BEFORE(WatchRange::mu_);
  std::map<Key, std::shared_ptr<WatchRange>> ranges_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_WATCH_HUB_H_
