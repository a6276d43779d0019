#include "backend/server/wait.h"

#include <utility>
#include <vector>

#include "common/errors.h"

namespace synod::server {

bool WaitRegistry::Register(uint64_t id, Waiter&& w) {
  absl::MutexLock l(&mu_);
  if (waiters_.size() >= max_pending_) return false;
  waiters_[id] = std::move(w);
  return true;
}

std::optional<WaitRegistry::Waiter> WaitRegistry::Take(uint64_t id) {
  absl::MutexLock l(&mu_);
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return std::nullopt;
  Waiter w = std::move(it->second);
  waiters_.erase(it);
  return w;
}

void WaitRegistry::Fail(uint64_t id, const absl::Status& st) {
  std::optional<Waiter> w = Take(id);
  if (w.has_value()) w->done(st);
}

void WaitRegistry::ExpireBefore(absl::Time now) {
  std::vector<Waiter> expired;
  {
    absl::MutexLock l(&mu_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second));
        waiters_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  for (Waiter& w : expired) w.done(common::Err(common::EtcdError::kTimeout));
}

void WaitRegistry::FailAll(const absl::Status& st) {
  absl::flat_hash_map<uint64_t, Waiter> all;
  {
    absl::MutexLock l(&mu_);
    all.swap(waiters_);
  }
  for (auto& [id, w] : all) w.done(st);
}

size_t WaitRegistry::size() const {
  absl::MutexLock l(&mu_);
  return waiters_.size();
}

}  // namespace synod::server
