#include "proxy/watch_hub.h"

#include <vector>

namespace synod::proxy {

WatchHub::WatchHub(Upstream* upstream, common::Clock* clock,
                   WatchRangeOptions options, absl::Duration linger,
                   ProxyMetrics* metrics)
    : upstream_(upstream),
      clock_(clock),
      options_(options),
      linger_(linger),
      metrics_(metrics) {}

std::pair<std::shared_ptr<WatchRange>, uint64_t> WatchHub::Subscribe(
    const std::string& key, const std::string& range_end,
    std::shared_ptr<RangeSubscriber> sub, int64_t start_revision,
    bool needs_fresh) {
  const Key k(key, range_end);
  for (;;) {
    std::shared_ptr<WatchRange> range;
    {
      absl::MutexLock l(&mu_);
      auto it = ranges_.find(k);
      if (it == ranges_.end()) {
        range = std::make_shared<WatchRange>(key, range_end, upstream_, clock_,
                                             options_, metrics_);
        ranges_.emplace(k, range);
      } else {
        range = it->second;
      }
    }
    const uint64_t h = range->Subscribe(sub, start_revision, needs_fresh);
    if (h != 0) return {range, h};
    // The range closed meanwhile: forget it and make a new one.
    absl::MutexLock l(&mu_);
    auto it = ranges_.find(k);
    if (it != ranges_.end() && it->second == range) ranges_.erase(it);
  }
}

void WatchHub::Tick() {
  std::vector<std::shared_ptr<WatchRange>> all;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [k, r] : ranges_) all.push_back(r);
  }
  for (const auto& r : all) {
    if (!r->Tick(linger_)) continue;
    absl::MutexLock l(&mu_);
    auto it = ranges_.find(Key(r->key(), r->range_end()));
    if (it != ranges_.end() && it->second == r && r->CloseIfIdle()) {
      ranges_.erase(it);
    }
  }
}

size_t WatchHub::RangeCount() const {
  absl::MutexLock l(&mu_);
  return ranges_.size();
}

}  // namespace synod::proxy
