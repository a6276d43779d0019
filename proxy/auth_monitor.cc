#include "proxy/auth_monitor.h"

#include <utility>

#include "common/logging.h"

namespace synod::proxy {

AuthMonitor::AuthMonitor(Upstream* upstream, PermissionCache* cache,
                         common::Clock* clock, AuthMonitorOptions options,
                         std::function<void()> on_change)
    : upstream_(upstream),
      cache_(cache),
      clock_(clock),
      options_(options),
      on_change_(std::move(on_change)) {}

void AuthMonitor::Tick() {
  bool poll = false, recheck = false;
  {
    absl::MutexLock l(&mu_);
    const absl::Time now = clock_->Now();
    if (!polling_ && now >= next_poll_) {
      polling_ = true;
      ++polls_;
      next_poll_ = now + options_.poll_interval;
      poll = true;
    }
    if (!state_.known && now - last_recheck_ >= options_.unknown_recheck) {
      last_recheck_ = now;
      recheck = true;
    }
  }
  if (recheck) {
    cache_->Invalidate();
    if (on_change_) on_change_();
  }
  if (poll) {
    upstream_->AuthStatus(
        [this](absl::StatusOr<UpstreamAuthState> st) { OnPoll(std::move(st)); });
  }
}

void AuthMonitor::OnPoll(absl::StatusOr<UpstreamAuthState> st) {
  // A failed poll tells nothing: the state is unknown until one succeeds.
  const UpstreamAuthState now = st.ok() ? *st : UpstreamAuthState();
  UpstreamAuthState before;
  {
    absl::MutexLock l(&mu_);
    polling_ = false;
    before = state_;
    state_ = now;
    if (before.known && !now.known) last_recheck_ = clock_->Now();
  }
  if (before != now) {
    if (now.known) {
      SYNOD_LOG(INFO) << "cluster auth " << (now.enabled ? "enabled" : "disabled")
                      << ", auth revision " << now.revision;
    } else if (before.known) {
      SYNOD_LOG(INFO) << "cluster auth state unknown"
                      << (st.ok() ? "" : " (status poll failed)");
    }
  }
  if (cache_->SetAuthState(now) && on_change_) on_change_();
}

UpstreamAuthState AuthMonitor::state() const {
  absl::MutexLock l(&mu_);
  return state_;
}

int AuthMonitor::TEST_polls() const {
  absl::MutexLock l(&mu_);
  return polls_;
}

}  // namespace synod::proxy
