// PermissionCache and AuthMonitor on a fake upstream and a FakeClock: the
// probe (the caller's token, the exact range, count-only), decisions shared
// per (token, range) and never across tokens, what is kept and for how
// long, and the stated bound: a permission revoked on the cluster is
// noticed within one poll interval, decisions and watchers re-checked.
#include "proxy/permission_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "common/errors.h"
#include "gtest/gtest.h"
#include "proxy/auth_monitor.h"
#include "tests/proxy/fake_upstream.h"

namespace synod::proxy {
namespace {

using common::EtcdError;
using testing::FakeUpstream;

grpc::Status Grpc(EtcdError e) { return common::ToGrpcStatus(common::Err(e)); }

struct Decision {
  bool done = false;
  grpc::Status status;
  uint64_t epoch = 0;
};

UpstreamAuthState State(bool enabled, uint64_t revision) {
  UpstreamAuthState s;
  s.known = true;
  s.enabled = enabled;
  s.revision = revision;
  return s;
}

class PermissionCacheTest : public ::testing::Test {
 protected:
  PermissionCacheTest() : perms_(&up_, &clock_, PermissionCacheOptions()) {}

  std::shared_ptr<Decision> Check(const std::string& token,
                                  const std::string& key = "a/",
                                  const std::string& end = "a0") {
    auto d = std::make_shared<Decision>();
    perms_.Check(token, key, end, [d](const grpc::Status& s, uint64_t e) {
      d->done = true;
      d->status = s;
      d->epoch = e;
    });
    return d;
  }
  // Answers the oldest probe with `s`.
  void Answer(const grpc::Status& s) {
    ASSERT_FALSE(up_.ranges.empty());
    auto done = std::move(up_.ranges.front().done);
    up_.ranges.pop_front();
    etcdserverpb::RangeResponse r;
    *r.mutable_header() = testing::Header(5);
    done(s, r);
  }

  FakeUpstream up_;
  common::FakeClock clock_;
  PermissionCache perms_;
};

TEST_F(PermissionCacheTest, TheProbeCarriesTheCallersTokenOverTheExactRange) {
  perms_.SetAuthState(State(true, 3));
  auto d = Check("tok-alice", "a/", "a0");
  EXPECT_FALSE(d->done);
  ASSERT_EQ(up_.ranges.size(), 1u);
  const auto& c = up_.ranges.front();
  EXPECT_TRUE(c.as.client);
  EXPECT_EQ(c.as.token, "tok-alice");
  EXPECT_EQ(c.req.key(), "a/");
  EXPECT_EQ(c.req.range_end(), "a0");
  EXPECT_TRUE(c.req.count_only());  // no key or value comes back
  EXPECT_EQ(c.req.limit(), 1);
  EXPECT_TRUE(c.req.serializable());
  Answer(grpc::Status::OK);
  ASSERT_TRUE(d->done);
  EXPECT_TRUE(d->status.ok());
}

TEST_F(PermissionCacheTest, AnEmptyKeyIsProbedFromZeroByte) {
  Check("t", "", std::string(1, '\0'));
  ASSERT_EQ(up_.ranges.size(), 1u);
  EXPECT_EQ(up_.ranges.front().req.key(), std::string(1, '\0'));
}

TEST_F(PermissionCacheTest, DecisionsAreSharedPerTokenAndRangeOnly) {
  perms_.SetAuthState(State(true, 3));
  auto a1 = Check("alice");
  auto a2 = Check("alice");  // shares the probe in flight
  ASSERT_EQ(up_.ranges.size(), 1u);
  Answer(grpc::Status::OK);
  EXPECT_TRUE(a1->done && a2->done);
  EXPECT_TRUE(Check("alice")->done);  // kept: no probe
  EXPECT_TRUE(up_.ranges.empty());
  // Another token, the anonymous caller and another range of alice's are
  // each probed: nobody inherits alice's decision.
  auto bob = Check("bob");
  auto anon = Check("");
  auto other = Check("alice", "a/", "a1");
  EXPECT_FALSE(bob->done || anon->done || other->done);
  ASSERT_EQ(up_.ranges.size(), 3u);
  EXPECT_EQ(up_.ranges[0].as.token, "bob");
  EXPECT_EQ(up_.ranges[1].as.token, "");
  Answer(Grpc(EtcdError::kPermissionDenied));
  Answer(Grpc(EtcdError::kUserEmpty));
  Answer(grpc::Status::OK);
  EXPECT_EQ(bob->status.error_message(), "etcdserver: permission denied");
  EXPECT_EQ(bob->status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(anon->status.error_message(), "etcdserver: user name is empty");
  // Refusals are kept too.
  auto bob2 = Check("bob");
  ASSERT_TRUE(bob2->done);
  EXPECT_EQ(bob2->status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(up_.ranges.empty());
}

TEST_F(PermissionCacheTest, AnswersThatDecideNothingAreNotKept) {
  perms_.SetAuthState(State(true, 3));
  auto d = Check("alice");
  Answer(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone"));
  ASSERT_TRUE(d->done);
  EXPECT_EQ(d->status.error_code(), grpc::StatusCode::UNAVAILABLE);
  Check("alice");
  EXPECT_EQ(up_.ranges.size(), 1u);
  Answer(Grpc(EtcdError::kAuthOldRevision));
  Check("alice");
  EXPECT_EQ(up_.ranges.size(), 1u);
}

TEST_F(PermissionCacheTest, AnAuthChangeDropsEveryDecision) {
  perms_.SetAuthState(State(true, 3));
  auto d = Check("alice");
  Answer(grpc::Status::OK);
  const uint64_t e = d->epoch;
  EXPECT_FALSE(perms_.SetAuthState(State(true, 3)));  // no change
  EXPECT_TRUE(Check("alice")->done);
  EXPECT_TRUE(perms_.SetAuthState(State(true, 4)));  // a role was revoked
  EXPECT_GT(perms_.epoch(), e);
  auto again = Check("alice");
  EXPECT_FALSE(again->done);
  Answer(Grpc(EtcdError::kPermissionDenied));
  EXPECT_FALSE(again->status.ok());
}

TEST_F(PermissionCacheTest, AProbeAnsweredAfterTheEpochMovedIsNotKept) {
  perms_.SetAuthState(State(true, 3));
  auto d = Check("alice");
  perms_.SetAuthState(State(true, 4));
  Answer(grpc::Status::OK);  // decided under revision 3
  ASSERT_TRUE(d->done);
  EXPECT_LT(d->epoch, perms_.epoch());
  EXPECT_FALSE(Check("alice")->done);  // probed again
}

TEST_F(PermissionCacheTest, DecisionsExpireAfterMaxAgeOrOneSecondWhenUnknown) {
  perms_.SetAuthState(State(true, 3));
  Check("alice");
  Answer(grpc::Status::OK);
  clock_.Advance(absl::Seconds(29));
  EXPECT_TRUE(Check("alice")->done);
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(Check("alice")->done);  // 30 s: the token may have expired
  Answer(grpc::Status::OK);

  perms_.SetAuthState(UpstreamAuthState());  // etcd: no auth metadata
  Check("alice");
  Answer(grpc::Status::OK);
  clock_.Advance(absl::Milliseconds(999));
  EXPECT_TRUE(Check("alice")->done);
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_FALSE(Check("alice")->done);
}

TEST_F(PermissionCacheTest, AnonymousIsAllowedWithoutProbeOnlyWhileAuthIsOff) {
  perms_.SetAuthState(State(false, 1));
  auto d = Check("");
  ASSERT_TRUE(d->done);
  EXPECT_TRUE(d->status.ok());
  EXPECT_TRUE(up_.ranges.empty());
  // A token is still probed: the member may refuse it (invalid token).
  EXPECT_FALSE(Check("stale")->done);
  Answer(Grpc(EtcdError::kInvalidAuthToken));
  // Auth enabled: anonymous is probed and refused as the member refuses it.
  perms_.SetAuthState(State(true, 1));
  auto anon = Check("");
  EXPECT_FALSE(anon->done);
  Answer(Grpc(EtcdError::kUserEmpty));
  EXPECT_EQ(anon->status.error_message(), "etcdserver: user name is empty");
  // Unknown state (etcd): probed too.
  perms_.SetAuthState(UpstreamAuthState());
  EXPECT_FALSE(Check("")->done);
}

TEST_F(PermissionCacheTest, RecordKeepsALinearizableReadsDecision) {
  perms_.SetAuthState(State(true, 3));
  perms_.Record("alice", "a/", "a0", grpc::Status::OK, perms_.epoch());
  EXPECT_TRUE(Check("alice")->done);
  perms_.Record("bob", "a/", "a0", grpc::Status::OK, perms_.epoch() - 1);
  EXPECT_FALSE(Check("bob")->done);  // an old epoch is ignored
}

TEST_F(PermissionCacheTest, EntriesAreBounded) {
  PermissionCacheOptions o;
  o.max_entries = 4;
  PermissionCache small(&up_, &clock_, o);
  small.SetAuthState(State(true, 1));
  for (int i = 0; i < 10; ++i) {
    small.Check("t" + std::to_string(i), "a", "", [](auto&&...) {});
    Answer(grpc::Status::OK);
    EXPECT_LE(small.TEST_entries(), 4u);
  }
}

// ---- AuthMonitor ----

class AuthMonitorTest : public PermissionCacheTest {
 protected:
  AuthMonitorTest()
      : monitor_(&up_, &perms_, &clock_, AuthMonitorOptions(),
                 [this] { ++changes_; }) {}

  void Poll(absl::StatusOr<UpstreamAuthState> st) {
    ASSERT_EQ(up_.statuses.size(), 1u);
    auto done = std::move(up_.statuses.front());
    up_.statuses.pop_front();
    done(std::move(st));
  }

  AuthMonitor monitor_;
  int changes_ = 0;
};

TEST_F(AuthMonitorTest, PollsEveryIntervalOneAtATime) {
  monitor_.Tick();
  EXPECT_EQ(up_.statuses.size(), 1u);
  clock_.Advance(absl::Seconds(2));
  monitor_.Tick();
  EXPECT_EQ(up_.statuses.size(), 1u);  // still in flight
  Poll(State(true, 1));
  monitor_.Tick();
  EXPECT_EQ(up_.statuses.size(), 1u);  // overdue: at once
  Poll(State(true, 1));
  clock_.Advance(absl::Milliseconds(499));
  monitor_.Tick();
  EXPECT_TRUE(up_.statuses.empty());
  clock_.Advance(absl::Milliseconds(1));
  monitor_.Tick();
  EXPECT_EQ(up_.statuses.size(), 1u);
}

// The stated bound: a permission revoked on the cluster takes effect at
// the proxy within one poll interval (plus the Status and probe round
// trips): the next poll sees the new auth revision, every decision goes
// and watchers are re-checked (on_change).
TEST_F(AuthMonitorTest, ARevocationTakesEffectWithinOnePollInterval) {
  monitor_.Tick();
  Poll(State(true, 7));
  const int changes = changes_;
  auto d = Check("alice");
  Answer(grpc::Status::OK);
  ASSERT_TRUE(d->status.ok());

  // Right after this poll, the cluster revokes alice's role: revision 8.
  clock_.Advance(absl::Milliseconds(100));
  monitor_.Tick();  // no poll yet: the old decision still serves
  EXPECT_TRUE(Check("alice")->status.ok());
  clock_.Advance(absl::Milliseconds(400));  // one poll interval after the last
  monitor_.Tick();
  Poll(State(true, 8));
  EXPECT_EQ(changes_, changes + 1);  // watchers are re-checked
  auto after = Check("alice");
  EXPECT_FALSE(after->done);  // probed anew...
  Answer(Grpc(EtcdError::kPermissionDenied));
  EXPECT_EQ(after->status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AuthMonitorTest, WithoutAuthMetadataEverythingIsRecheckedEachSecond) {
  monitor_.Tick();  // first tick: unknown state, a re-check
  const int c0 = changes_;
  Poll(UpstreamAuthState());  // etcd: no metadata
  Check("alice");
  Answer(grpc::Status::OK);
  clock_.Advance(absl::Milliseconds(900));
  monitor_.Tick();
  EXPECT_EQ(changes_, c0);
  EXPECT_TRUE(Check("alice")->done);
  clock_.Advance(absl::Milliseconds(100));
  monitor_.Tick();
  EXPECT_EQ(changes_, c0 + 1);
  EXPECT_FALSE(Check("alice")->done);
}

TEST_F(AuthMonitorTest, AFailedPollMakesTheStateUnknown) {
  monitor_.Tick();
  Poll(State(false, 1));
  EXPECT_TRUE(monitor_.state().known);
  EXPECT_TRUE(Check("")->done);  // auth off: anonymous needs no probe
  clock_.Advance(absl::Milliseconds(500));
  monitor_.Tick();
  Poll(absl::UnavailableError("gone"));
  EXPECT_FALSE(monitor_.state().known);
  EXPECT_FALSE(Check("")->done);  // no longer assumed off
}

}  // namespace
}  // namespace synod::proxy
