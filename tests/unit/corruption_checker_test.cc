// CorruptionChecker without a network: the majority rule of CheckOnce, the
// initial check, and the periodic thread driven by a FakeClock (one check
// per interval of fake time, none before).
#include "backend/server/corruption_checker.h"

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gtest/gtest.h"

namespace synod::server {
namespace {

constexpr int64_t kRev = 42;
constexpr absl::Duration kInterval = absl::Seconds(10);

// Advance() returns once the checker thread it woke waits again; this only
// bounds a broken run.
constexpr absl::Duration kSettle = absl::Minutes(1);

etcdserverpb::HashKVResponse Hash(uint32_t hash, int64_t compacted = 0) {
  etcdserverpb::HashKVResponse r;
  r.mutable_header()->set_revision(kRev);
  r.set_hash(hash);
  r.set_compact_revision(compacted);
  return r;
}

// Member 1 (self, the leader) and 2 hash 7; member 3 hashes 9.
class CorruptionCheckerTest : public ::testing::Test {
 protected:
  CorruptionChecker::Deps Deps() {
    CorruptionChecker::Deps d;
    d.local_hash = [](int64_t) { return Hash(7); };
    d.peer_hashes = [](int64_t rev) {
      EXPECT_EQ(rev, kRev);
      return std::vector<PeerHash>{{2, Hash(7)}, {3, Hash(9)}};
    };
    d.is_leader = [] { return true; };
    d.raise_corrupt = [this](uint64_t id) {
      absl::MutexLock l(&mu_);
      raised_.push_back(id);
    };
    d.clock = &clock_;
    return d;
  }
  size_t RaisedCount() {
    absl::MutexLock l(&mu_);
    return raised_.size();
  }

  common::FakeClock clock_;
  absl::Mutex mu_;
  std::vector<uint64_t> raised_ ABSL_GUARDED_BY(mu_);
};

TEST_F(CorruptionCheckerTest, CheckOnceRaisesTheMinority) {
  CorruptionChecker c(1, Deps(), kInterval);
  EXPECT_EQ(c.CheckOnce(), std::vector<uint64_t>{3});
  absl::MutexLock l(&mu_);
  EXPECT_EQ(raised_, std::vector<uint64_t>{3});
}

TEST_F(CorruptionCheckerTest, FollowerDoesNotCheck) {
  CorruptionChecker::Deps d = Deps();
  d.is_leader = [] { return false; };
  CorruptionChecker c(1, std::move(d), kInterval);
  EXPECT_TRUE(c.CheckOnce().empty());
  EXPECT_EQ(RaisedCount(), 0u);
}

TEST_F(CorruptionCheckerTest, PeerWithOtherCompactedRevisionIsNotCompared) {
  CorruptionChecker::Deps d = Deps();
  d.peer_hashes = [](int64_t) {
    return std::vector<PeerHash>{{2, Hash(7)}, {3, Hash(9, 5)}};
  };
  CorruptionChecker c(1, std::move(d), kInterval);
  EXPECT_TRUE(c.CheckOnce().empty());
}

TEST_F(CorruptionCheckerTest, InitialCheckRefusesAMismatch) {
  absl::Status st = CorruptionChecker::InitialCheck(3, [this] {
    CorruptionChecker::Deps d = Deps();
    d.local_hash = [](int64_t) { return Hash(9); };
    return d;
  }());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_EQ(st.message(), "3 found data inconsistency with peers");
  EXPECT_TRUE(CorruptionChecker::InitialCheck(1, [this] {
                CorruptionChecker::Deps d = Deps();
                d.peer_hashes = [](int64_t) {
                  return std::vector<PeerHash>{{2, Hash(7)}};
                };
                return d;
              }()).ok());
}

TEST_F(CorruptionCheckerTest, PeriodicThreadChecksOncePerIntervalOfFakeTime) {
  CorruptionChecker c(1, Deps(), kInterval);
  c.Start();
  ASSERT_TRUE(clock_.WaitForWaiters(1));  // its first wait has begun
  clock_.Advance(kInterval / 2, kSettle);
  EXPECT_EQ(RaisedCount(), 0u);  // half an interval: no check yet
  clock_.Advance(kInterval / 2, kSettle);
  EXPECT_EQ(RaisedCount(), 1u);
  clock_.Advance(kInterval, kSettle);
  EXPECT_EQ(RaisedCount(), 2u);
  c.Stop();  // wakes the waiting thread without moving time
  EXPECT_EQ(RaisedCount(), 2u);
}

}  // namespace
}  // namespace synod::server
