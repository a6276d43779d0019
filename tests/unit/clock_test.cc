// common::Clock: FakeClock's timed waits move only with Advance(), wake on
// their condition, and Advance() paces the test against the threads it
// wakes. RealClock's immediate cases. No sleeps: every step waits for a
// state the other thread reaches.
#include "common/clock.h"

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace synod::common {
namespace {

// For Advance() calls that wake a thread which then waits again: Advance()
// returns as soon as it does, and this bound only keeps a broken clock from
// hanging the test. (A woken thread that never waits again holds Advance()
// for the whole bound.)
constexpr absl::Duration kSettle = absl::Minutes(1);

// One thread blocked in FakeClock::AwaitWithDeadline(deadline) on `cond_`.
class Waiter {
 public:
  Waiter(FakeClock* clock, absl::Time deadline) : clock_(clock) {
    thread_ = std::thread([this, deadline] {
      absl::MutexLock l(&mu_);
      started_ = true;
      // *mu_ is held from here until Await releases it inside the clock, so
      // once the test thread gets mu_ with started_ set, this thread waits.
      const bool r = clock_->AwaitWithDeadline(&mu_, absl::Condition(&cond_),
                                               deadline);
      result_ = r;
      returned_ = true;
    });
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(&started_));
  }
  ~Waiter() {
    if (thread_.joinable()) thread_.join();
  }

  bool returned() {
    absl::MutexLock l(&mu_);
    return returned_;
  }
  void SetCond() {
    absl::MutexLock l(&mu_);
    cond_ = true;
  }
  // Joins the thread; the value AwaitWithDeadline returned.
  bool Result() {
    thread_.join();
    absl::MutexLock l(&mu_);
    return result_;
  }

 private:
  FakeClock* const clock_;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool cond_ ABSL_GUARDED_BY(mu_) = false;
  bool returned_ ABSL_GUARDED_BY(mu_) = false;
  bool result_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

TEST(FakeClockTest, StartsAtAFixedTimeAndMovesOnlyByAdvance) {
  FakeClock clock;
  const absl::Time t0 = clock.Now();
  EXPECT_EQ(t0, absl::FromUnixSeconds(1000000));
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(absl::Milliseconds(1500));
  EXPECT_EQ(clock.Now(), t0 + absl::Milliseconds(1500));
}

TEST(FakeClockTest, ReturnsTrueAtOnceWhenCondHolds) {
  FakeClock clock;
  absl::Mutex mu;
  bool cond = true;
  absl::MutexLock l(&mu);
  EXPECT_TRUE(clock.AwaitWithDeadline(&mu, absl::Condition(&cond),
                                      clock.Now() + absl::Seconds(1)));
}

TEST(FakeClockTest, ReturnsFalseAtOnceWhenDeadlineHasPassed) {
  FakeClock clock;
  absl::Mutex mu;
  bool cond = false;
  absl::MutexLock l(&mu);
  EXPECT_FALSE(clock.AwaitWithDeadline(&mu, absl::Condition(&cond),
                                       clock.Now()));
  EXPECT_FALSE(clock.AwaitWithTimeout(&mu, absl::Condition(&cond),
                                      -absl::Seconds(1)));
}

TEST(FakeClockTest, ReturnsTrueWhenCondBecomesTrue) {
  FakeClock clock;
  const absl::Time t0 = clock.Now();
  Waiter w(&clock, t0 + absl::Seconds(5));
  EXPECT_FALSE(w.returned());
  w.SetCond();
  EXPECT_TRUE(w.Result());
  EXPECT_EQ(clock.Now(), t0);  // woken by the condition, not by time
}

TEST(FakeClockTest, ReturnsFalseOnceAdvancePassesTheDeadline) {
  FakeClock clock;
  Waiter w(&clock, clock.Now() + absl::Seconds(5));
  clock.Advance(absl::Seconds(3), kSettle);
  EXPECT_FALSE(w.returned());  // 2 s of fake time left
  // The waiter then returns for good, so this Advance waits out its
  // default settle bound (200 ms of real time); the result does not depend
  // on it.
  clock.Advance(absl::Seconds(2));
  EXPECT_FALSE(w.Result());
}

TEST(FakeClockTest, InfiniteDeadlineWaitsForCondOnly) {
  FakeClock clock;
  Waiter w(&clock, absl::InfiniteFuture());
  clock.Advance(absl::Hours(24 * 365), kSettle);
  EXPECT_FALSE(w.returned());
  w.SetCond();
  EXPECT_TRUE(w.Result());
}

// A worker that loops on the clock, as Synod's tickers do: each timeout of
// `period` counts a tick. Advance() returns only once the worker it woke is
// waiting again, so the test reads the tick count without waiting for it.
TEST(FakeClockTest, AdvanceReturnsAfterTheWokenThreadWaitsAgain) {
  FakeClock clock;
  absl::Mutex mu;
  bool stop = false;
  bool waiting = false;
  int ticks = 0;
  const absl::Duration period = absl::Seconds(1);
  std::thread worker([&] {
    absl::MutexLock l(&mu);
    waiting = true;
    while (!clock.AwaitWithTimeout(&mu, absl::Condition(&stop), period)) {
      ++ticks;
    }
  });
  {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(&waiting));  // the worker is in its first wait
  }
  auto ticks_now = [&] {
    absl::MutexLock l(&mu);
    return ticks;
  };
  for (int i = 1; i <= 5; ++i) {
    clock.Advance(period, kSettle);
    EXPECT_EQ(ticks_now(), i);
  }
  // Half a period wakes nobody; the second half does.
  clock.Advance(period / 2, kSettle);
  EXPECT_EQ(ticks_now(), 5);
  clock.Advance(period / 2, kSettle);
  EXPECT_EQ(ticks_now(), 6);
  {
    absl::MutexLock l(&mu);
    stop = true;
  }
  worker.join();
  EXPECT_EQ(ticks, 6);
}

TEST(RealClockTest, ImmediateCases) {
  Clock* clock = RealClock::Get();
  EXPECT_EQ(clock, RealClock::Get());
  absl::Mutex mu;
  bool yes = true;
  bool no = false;
  absl::MutexLock l(&mu);
  EXPECT_TRUE(clock->AwaitWithDeadline(&mu, absl::Condition(&yes),
                                       absl::InfiniteFuture()));
  EXPECT_TRUE(clock->AwaitWithTimeout(&mu, absl::Condition(&yes),
                                      absl::Seconds(10)));
  EXPECT_FALSE(clock->AwaitWithDeadline(&mu, absl::Condition(&no),
                                        absl::InfinitePast()));
}

TEST(ClockTest, GrpcDeadlineAfterIsARelativeSpan) {
  const gpr_timespec t = GrpcDeadlineAfter(absl::Milliseconds(2500));
  EXPECT_EQ(t.clock_type, GPR_TIMESPAN);
  EXPECT_EQ(t.tv_sec, 2);
  EXPECT_EQ(t.tv_nsec, 500000000);
}

}  // namespace
}  // namespace synod::common
