// Clock: the only way Synod code outside common/ reads time, so that tests can
// drive time by hand. RealClock reads the monotonic wall clock; FakeClock
// only moves when a test calls Advance().
// Thread-safe: both implementations may be called from any thread.
#ifndef SYNOD_COMMON_CLOCK_H_
#define SYNOD_COMMON_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace synod::common {

class Clock {
 public:
  virtual ~Clock() = default;
  // Current time. Never goes backwards for the same Clock.
  virtual absl::Time Now() const = 0;
};

// The process clock. A process-wide instance is returned by RealClock::Get().
class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  static Clock* Get() {
    static RealClock* clock = new RealClock();
    return clock;
  }
};

// A clock for tests: starts at the Unix epoch + 1,000,000 s and moves only by
// Advance().
class FakeClock : public Clock {
 public:
  absl::Time Now() const override {
    return absl::FromUnixNanos(nanos_.load(std::memory_order_acquire));
  }
  // REQUIRES: d >= 0.
  void Advance(absl::Duration d) {
    nanos_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_acq_rel);
  }

 private:
  std::atomic<int64_t> nanos_{int64_t{1000000} * 1000000000};
};

}  // namespace synod::common

#endif  // SYNOD_COMMON_CLOCK_H_
