#include "backend/server/compactor.h"

#include <algorithm>

#include "absl/strings/numbers.h"

namespace synod::server {

namespace {

constexpr absl::Duration kRevisionCompactInterval = absl::Minutes(5);

// Parses --auto-compaction-retention for periodic mode: "1h", "30m", "90s"
// or a plain number of hours. Returns zero when off or invalid.
absl::Duration PeriodicRetention(const std::string& s) {
  absl::Duration d;
  if (absl::ParseDuration(s, &d)) return d;
  double hours = 0;
  if (absl::SimpleAtod(s, &hours) && hours > 0) return absl::Hours(hours);
  return absl::ZeroDuration();
}

}  // namespace

Compactor::Compactor(std::string mode, std::string retention,
                     common::Clock* clock,
                     std::function<void(int64_t rev)> propose,
                     std::function<Revisions()> revisions)
    : mode_(std::move(mode)),
      retention_(std::move(retention)),
      clock_(clock),
      propose_(std::move(propose)),
      revisions_(std::move(revisions)),
      last_check_(clock->Now()) {}

void Compactor::Tick(bool is_leader) {
  if (!is_leader) return;
  const absl::Time now = clock_->Now();
  const Revisions revs = revisions_();
  int64_t target = 0;
  if (mode_ == "revision") {
    int64_t keep = 0;
    if (!absl::SimpleAtoi(retention_, &keep) || keep <= 0) return;
    if (now - last_check_ < kRevisionCompactInterval) return;
    last_check_ = now;
    target = revs.current - keep;
  } else {
    const absl::Duration retention = PeriodicRetention(retention_);
    if (retention <= absl::ZeroDuration()) return;
    // Sample the revision every retention/10; compact to the newest sample
    // that is at least `retention` old.
    const absl::Duration every = std::max(retention / 10, absl::Seconds(1));
    if (samples_.empty() || now - samples_.back().first >= every) {
      samples_.emplace_back(now, revs.current);
    }
    while (samples_.size() > 1 && now - samples_[1].first >= retention) {
      samples_.pop_front();
    }
    if (now - samples_.front().first < retention) return;
    target = samples_.front().second;
  }
  if (target <= last_compacted_ || target <= revs.compacted) return;
  last_compacted_ = target;
  propose_(target);
}

}  // namespace synod::server
