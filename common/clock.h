// Clock: the only way Synod code outside common/ reads time or waits for it,
// so that tests can drive time by hand. RealClock reads the process clock
// (absl::Now); FakeClock only moves when a test calls Advance(), and wakes
// the threads whose deadlines that passes.
//
// Every timed wait in backend/ and proxy/ goes through AwaitWithDeadline
// (or the helpers below), never through absl::Mutex's own timed waits, so a
// server built on a FakeClock runs its timers, tickers and request timeouts
// on fake time.
//
// Thread-safe: both implementations may be called from any thread.
#ifndef SYNOD_COMMON_CLOCK_H_
#define SYNOD_COMMON_CLOCK_H_

#include <grpc/support/time.h>

#include <atomic>
#include <cstdint>
#include <set>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace synod::common {

class Clock {
 public:
  virtual ~Clock() = default;
  // Current time. Never goes backwards for the same Clock.
  virtual absl::Time Now() const = 0;

  // REQUIRES: *mu held. Waits until `cond` holds or Now() >= deadline, and
  // returns with *mu held and `cond`'s value (as absl::Mutex::Await does, *mu
  // is released while waiting). absl::InfiniteFuture() waits for `cond`
  // only.
  virtual bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                                 absl::Time deadline) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*mu) = 0;

  // AwaitWithDeadline(mu, cond, Now() + timeout).
  bool AwaitWithTimeout(absl::Mutex* mu, const absl::Condition& cond,
                        absl::Duration timeout) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*mu) {
    return AwaitWithDeadline(mu, cond, Now() + timeout);
  }
};

// The process clock. A process-wide instance is returned by RealClock::Get().
class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                         absl::Time deadline) const override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*mu) {
    if (deadline == absl::InfiniteFuture()) {
      mu->Await(cond);
      return true;
    }
    return mu->AwaitWithDeadline(cond, deadline);
  }
  static Clock* Get() {
    static RealClock* clock = new RealClock();
    return clock;
  }
};

// A clock for tests: starts at the Unix epoch + 1,000,000 s and moves only by
// Advance(). A thread waiting in AwaitWithDeadline wakes when its condition
// holds or when an Advance() passes its deadline.
//
// Advance() also paces the test against the threads it drives, so fake time
// never runs ahead of work in progress: every thread that has waited on
// this clock is "known", and Advance() moves time only once every known
// thread waits on the clock again (is idle), then returns once the threads
// it woke have run and wait again. A known thread that does not come back
// within `settle` of real time (blocked elsewhere, or exited) is forgotten
// until it next waits. The pacing bounds how the test and the threads
// interleave; correctness never depends on it.
class FakeClock : public Clock {
 public:
  absl::Time Now() const override {
    return absl::FromUnixNanos(nanos_.load(std::memory_order_acquire));
  }

  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                         absl::Time deadline) const override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*mu) {
    if (cond.Eval()) return true;
    if (Now() >= deadline) return false;
    Waiter w{mu, deadline, std::this_thread::get_id()};
    {
      absl::MutexLock l(&reg_mu_);
      w.seq = ++registrations_;
      waiters_.push_back(&w);
      known_.insert(w.thread);
    }
    struct Args {
      const FakeClock* clock;
      const absl::Condition* cond;
      absl::Time deadline;
    } args{this, &cond, deadline};
    mu->Await(absl::Condition(
        +[](Args* a) { return a->cond->Eval() || a->clock->Now() >= a->deadline; },
        &args));
    // Unregister with *mu released: Advance() takes *mu after reg_mu_.
    mu->Unlock();
    {
      absl::MutexLock l(&reg_mu_);
      for (size_t i = 0; i < waiters_.size(); ++i) {
        if (waiters_[i] == &w) {
          waiters_.erase(waiters_.begin() + i);
          break;
        }
      }
      reg_mu_.Await(absl::Condition(
          +[](Waiter* x) { return x->pins == 0; }, &w));
    }
    mu->Lock();
    return cond.Eval();
  }

  // Waits until the known threads are idle, moves time forward by `d`
  // (REQUIRES: d >= 0), wakes every thread whose deadline that passes, and
  // returns once those have run and every known thread is idle again (each
  // wait bounded by `settle` of real time; see above).
  void Advance(absl::Duration d,
               absl::Duration settle = absl::Milliseconds(200)) {
    Settle({}, 0, settle);
    nanos_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_acq_rel);
    const absl::Time now = Now();
    std::vector<Waiter*> all;
    std::vector<std::thread::id> due;
    uint64_t regs_before = 0;
    {
      absl::MutexLock l(&reg_mu_);
      regs_before = registrations_;
      for (Waiter* w : waiters_) {
        ++w->pins;
        all.push_back(w);
        if (w->deadline <= now) due.push_back(w->thread);
      }
    }
    // An unlock re-evaluates the conditions of the threads waiting on a
    // mutex, which now see the new time.
    for (Waiter* w : all) {
      w->mu->Lock();
      w->mu->Unlock();
    }
    {
      absl::MutexLock l(&reg_mu_);
      for (Waiter* w : all) --w->pins;
    }
    Settle(due, regs_before, settle);
  }

  // How many threads wait on this clock now.
  size_t waiters() const {
    absl::MutexLock l(&reg_mu_);
    return waiters_.size();
  }

  // Blocks until at least `n` threads wait on this clock, or `timeout` of
  // real time passes (it bounds a test that went wrong); returns whether
  // they do. A test calls it after starting threads, before its first
  // Advance, so that no Advance passes before they wait.
  bool WaitForWaiters(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    struct Args {
      const FakeClock* clock;
      size_t n;
    } args{this, n};
    absl::MutexLock l(&reg_mu_);
    return reg_mu_.AwaitWithTimeout(
        absl::Condition(
            +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return a->clock->waiters_.size() >= a->n;
            },
            &args),
        timeout);
  }

 private:
  struct Waiter {
    absl::Mutex* mu;
    absl::Time deadline;
    std::thread::id thread;
    int pins = 0;         // Advance() calls that will still touch *mu
    uint64_t seq = 0;     // registrations_ when it registered
  };

  // Waits until each of `due` waits again (registered after `regs_before`)
  // and every known thread waits; forgets the known threads that do not
  // within `settle`.
  void Settle(const std::vector<std::thread::id>& due, uint64_t regs_before,
              absl::Duration settle) {
    struct Args {
      const FakeClock* clock;
      const std::vector<std::thread::id>* due;
      uint64_t regs_before;
    } a{this, &due, regs_before};
    absl::MutexLock l(&reg_mu_);
    const bool idle = reg_mu_.AwaitWithTimeout(
        absl::Condition(
            +[](Args* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              const FakeClock* c = a->clock;
              for (std::thread::id t : *a->due) {
                if (!c->WaitingSince(t, a->regs_before)) return false;
              }
              for (std::thread::id t : c->known_) {
                if (!c->WaitingSince(t, 0)) return false;
              }
              return true;
            },
            &a),
        settle);
    if (idle) return;
    for (auto it = known_.begin(); it != known_.end();) {
      if (!WaitingSince(*it, 0)) {
        known_.erase(it++);
      } else {
        ++it;
      }
    }
  }

  // Whether thread `t` waits in a registration made after `seq`.
  bool WaitingSince(std::thread::id t, uint64_t seq) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_) {
    for (const Waiter* w : waiters_) {
      if (w->thread == t && w->seq > seq) return true;
    }
    return false;
  }

  std::atomic<int64_t> nanos_{int64_t{1000000} * 1000000000};
  mutable absl::Mutex reg_mu_;
  mutable std::vector<Waiter*> waiters_ ABSL_GUARDED_BY(reg_mu_);
  mutable std::set<std::thread::id> known_ ABSL_GUARDED_BY(reg_mu_);
  mutable uint64_t registrations_ ABSL_GUARDED_BY(reg_mu_) = 0;
};

// A gRPC deadline `d` from now, as a relative time span: gRPC resolves it
// against its own clock, so callers read no clock themselves.
inline gpr_timespec GrpcDeadlineAfter(absl::Duration d) {
  return gpr_time_from_nanos(absl::ToInt64Nanoseconds(d), GPR_TIMESPAN);
}

}  // namespace synod::common

#endif  // SYNOD_COMMON_CLOCK_H_
