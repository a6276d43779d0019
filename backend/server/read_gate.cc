#include "backend/server/read_gate.h"

#include <utility>

#include "common/errors.h"

namespace synod::server {

ReadGate::ReadGate(int threads, uint64_t applied) : applied_(applied) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

ReadGate::~ReadGate() { Stop(); }

void ReadGate::WaitApplied(uint64_t index, Done done) {
  absl::MutexLock l(&mu_);
  if (applied_ >= index) {
    queue_.push_back([d = std::move(done)] { d(absl::OkStatus()); });
  } else {
    waiting_.emplace(index, std::move(done));
  }
}

void ReadGate::Run(std::function<void()> fn) {
  absl::MutexLock l(&mu_);
  queue_.push_back(std::move(fn));
}

void ReadGate::Release(uint64_t applied) {
  absl::MutexLock l(&mu_);
  if (applied > applied_) applied_ = applied;
  while (!waiting_.empty() && waiting_.begin()->first <= applied_) {
    Done d = std::move(waiting_.begin()->second);
    waiting_.erase(waiting_.begin());
    queue_.push_back([d = std::move(d)] { d(absl::OkStatus()); });
  }
}

void ReadGate::Stop() {
  std::multimap<uint64_t, Done> waiting;
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    waiting.swap(waiting_);
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  // Whatever the threads did not run (none are left to run it).
  std::deque<std::function<void()>> queue;
  {
    absl::MutexLock l(&mu_);
    queue.swap(queue_);
  }
  for (auto& fn : queue) fn();
  for (auto& [i, d] : waiting) d(common::Err(common::EtcdError::kStopped));
}

void ReadGate::Loop() {
  while (true) {
    std::function<void()> fn;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](ReadGate* g) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->mu_) {
            return g->stopping_ || !g->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    fn();
  }
}

}  // namespace synod::server
