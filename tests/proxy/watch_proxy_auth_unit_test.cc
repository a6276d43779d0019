// WatchProxy's permission checks, on an in-process gRPC server in front of
// a fake upstream (the test plays the member) and a real client stream:
// a watcher is let in only by its caller's decision, on one shared
// upstream watch; a refused create is answered as the member answers it;
// creates of a stream are answered in order, each after its decision; an
// auth change re-checks every watcher and cancels the refused ones.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/errors.h"
#include "gtest/gtest.h"
#include "proxy/permission_cache.h"
#include "proxy/watch_hub.h"
#include "proxy/watch_proxy.h"
#include "tests/proxy/fake_upstream.h"
#include "tests/proxy/watch_client.h"

namespace synod::proxy {
namespace {

using synod::testing::WaitFor;
using synod::testing::WatchClient;
using testing::FakeUpstream;
using testing::FakeWatch;

constexpr char kDenied[] =
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied";

grpc::Status Denied() {
  return common::ToGrpcStatus(
      common::Err(common::EtcdError::kPermissionDenied));
}

// FakeUpstream behind a lock: the proxy calls it from gRPC threads, the
// test answers from its own (taking calls out under the lock, answering
// outside it).
class LockedUpstream final : public Upstream {
 public:
  std::shared_ptr<UpstreamWatch> Watch(
      const etcdserverpb::WatchCreateRequest& create,
      UpstreamWatchCallbacks callbacks) override {
    absl::MutexLock l(&mu);
    return fake.Watch(create, std::move(callbacks));
  }
  std::shared_ptr<UpstreamKeepAlive> KeepAlive(
      UpstreamKeepAliveCallbacks callbacks) override {
    absl::MutexLock l(&mu);
    return fake.KeepAlive(std::move(callbacks));
  }
  void CurrentRevision(
      const std::string& key,
      std::function<void(absl::StatusOr<int64_t>)> done) override {
    absl::MutexLock l(&mu);
    fake.CurrentRevision(key, std::move(done));
  }
  void Range(const etcdserverpb::RangeRequest& req, const CallAs& as,
             RangeDone done) override {
    absl::MutexLock l(&mu);
    fake.Range(req, as, std::move(done));
  }
  void AuthStatus(
      std::function<void(absl::StatusOr<UpstreamAuthState>)> done) override {
    absl::MutexLock l(&mu);
    fake.AuthStatus(std::move(done));
  }

  size_t Probes() {
    absl::MutexLock l(&mu);
    return fake.ranges.size();
  }
  size_t Watches() {
    absl::MutexLock l(&mu);
    return fake.watches.size();
  }
  // The oldest probe's token and range.
  FakeUpstream::RangeCall Front() {
    absl::MutexLock l(&mu);
    return fake.ranges.front();
  }
  // Answers the oldest probe (waiting up to 10 s for one).
  bool Answer(const grpc::Status& s) {
    if (!WaitFor([&] { return Probes() > 0; }, absl::Seconds(10))) {
      return false;
    }
    FakeUpstream::RangeCall c;
    {
      absl::MutexLock l(&mu);
      c = std::move(fake.ranges.front());
      fake.ranges.pop_front();
    }
    etcdserverpb::RangeResponse r;
    *r.mutable_header() = testing::Header(10);
    c.done(s, r);
    return true;
  }
  FakeWatch* LastWatch() {
    absl::MutexLock l(&mu);
    return fake.watches.back().get();
  }

  absl::Mutex mu;
  FakeUpstream fake ABSL_GUARDED_BY(mu);
};

UpstreamAuthState AuthOn(uint64_t revision) {
  UpstreamAuthState s;
  s.known = true;
  s.enabled = true;
  s.revision = revision;
  return s;
}

class WatchProxyAuthTest : public ::testing::Test {
 protected:
  WatchProxyAuthTest()
      : hub_(&up_, &clock_, WatchRangeOptions(), absl::Seconds(30), nullptr),
        perms_(&up_, &clock_, PermissionCacheOptions()),
        proxy_(&hub_, &perms_, &clock_, WatchProxyOptions(), nullptr) {
    perms_.SetAuthState(AuthOn(1));
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port);
    b.RegisterService(&proxy_);
    server_ = b.BuildAndStart();
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
  }
  ~WatchProxyAuthTest() override {
    clients_.clear();
    server_->Shutdown();
  }

  WatchClient* Client(const std::string& token) {
    clients_.push_back(std::make_unique<WatchClient>(channel_, token));
    return clients_.back().get();
  }

  LockedUpstream up_;
  common::FakeClock clock_;
  WatchHub hub_;
  PermissionCache perms_;
  WatchProxy proxy_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::vector<std::unique_ptr<WatchClient>> clients_;
};

TEST_F(WatchProxyAuthTest, OnlyPermittedCallersShareTheUpstreamWatch) {
  WatchClient* alice = Client("alice");
  alice->Watch(1, "a", "b", 0);
  ASSERT_TRUE(WaitFor([&] { return up_.Probes() == 1; }, absl::Seconds(10)));
  EXPECT_EQ(up_.Front().as.token, "alice");
  EXPECT_EQ(up_.Front().req.key(), "a");
  EXPECT_EQ(up_.Front().req.range_end(), "b");
  EXPECT_EQ(up_.Watches(), 0u);  // nothing upstream before the decision
  ASSERT_TRUE(up_.Answer(grpc::Status::OK));
  ASSERT_TRUE(WaitFor([&] { return up_.Watches() == 1; }, absl::Seconds(10)));
  FakeWatch* w = up_.LastWatch();
  w->Created(10);
  ASSERT_TRUE(WaitFor([&] { return alice->Log(1).created; },
                      absl::Seconds(10)));

  // bob and an anonymous client ask for the same range: refused as the
  // member refuses a watch (created, canceled, watch id -1).
  WatchClient* bob = Client("bob");
  bob->Watch(1, "a", "b", 0);
  ASSERT_TRUE(up_.Answer(Denied()));
  WatchClient* anon = Client("");
  anon->Watch(1, "a", "b", 0);
  ASSERT_TRUE(up_.Answer(common::ToGrpcStatus(
      common::Err(common::EtcdError::kUserEmpty))));
  ASSERT_TRUE(WaitFor([&] { return bob->Log(-1).canceled; },
                      absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return anon->Log(-1).canceled; },
                      absl::Seconds(10)));
  EXPECT_TRUE(bob->Log(-1).created);
  EXPECT_EQ(bob->Log(-1).cancel_reason, kDenied);
  EXPECT_EQ(anon->Log(-1).cancel_reason,
            "rpc error: code = InvalidArgument desc = etcdserver: user name "
            "is empty");
  EXPECT_FALSE(bob->Log(1).created);
  EXPECT_EQ(up_.Watches(), 1u);

  w->Events({testing::Put("a1", "secret", 11)});
  ASSERT_TRUE(WaitFor([&] { return alice->EventCount(1) == 1; },
                      absl::Seconds(10)));
  // Another stream of bob's is refused too, from the decision kept (no
  // probe), and nobody but alice ever got the event.
  WatchClient* bob2 = Client("bob");
  bob2->Watch(1, "a", "b", 0);
  ASSERT_TRUE(WaitFor([&] { return bob2->Log(-1).canceled; },
                      absl::Seconds(10)));
  EXPECT_EQ(up_.Probes(), 0u);
  for (WatchClient* c : {bob, bob2, anon}) {
    EXPECT_EQ(c->EventCount(1) + c->EventCount(-1), 0u);
  }
}

TEST_F(WatchProxyAuthTest, CreatesAreAnsweredInOrderEachAfterItsDecision) {
  WatchClient* alice = Client("alice");
  alice->Watch(1, "a", "b", 0);
  alice->Watch(2, "c", "d", 0);
  ASSERT_TRUE(WaitFor([&] { return up_.Probes() == 1; }, absl::Seconds(10)));
  // The second create waits for the first's decision.
  EXPECT_EQ(up_.Front().req.key(), "a");
  ASSERT_TRUE(up_.Answer(Denied()));
  ASSERT_TRUE(WaitFor([&] { return up_.Probes() == 1; }, absl::Seconds(10)));
  EXPECT_EQ(up_.Front().req.key(), "c");
  ASSERT_TRUE(up_.Answer(grpc::Status::OK));
  ASSERT_TRUE(WaitFor([&] { return up_.Watches() == 1; }, absl::Seconds(10)));
  up_.LastWatch()->Created(10);
  ASSERT_TRUE(WaitFor([&] { return alice->Log(2).created; },
                      absl::Seconds(10)));
  EXPECT_TRUE(alice->Log(-1).canceled);  // the first, refused
  EXPECT_EQ(up_.LastWatch()->create.key(), "c");
}

TEST_F(WatchProxyAuthTest, AnUndecidedCreateIsRefusedWithTheError) {
  WatchClient* alice = Client("alice");
  alice->Watch(1, "a", "b", 0);
  ASSERT_TRUE(up_.Answer(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone")));
  ASSERT_TRUE(WaitFor([&] { return alice->Log(-1).canceled; },
                      absl::Seconds(10)));
  EXPECT_EQ(alice->Log(-1).cancel_reason,
            "rpc error: code = Unavailable desc = gone");
  EXPECT_EQ(up_.Watches(), 0u);
}

// A stream that ends while a create waits for its decision is kept until
// the decision comes, and leaves no subscription behind.
TEST_F(WatchProxyAuthTest, AStreamGoneBeforeTheDecisionLeavesNothingBehind) {
  WatchClient* alice = Client("alice");
  alice->Watch(1, "a", "b", 0);
  ASSERT_TRUE(WaitFor([&] { return up_.Probes() == 1; }, absl::Seconds(10)));
  clients_.clear();  // the client goes (its stream ends)
  ASSERT_TRUE(up_.Answer(grpc::Status::OK));
  // Only a subscriber of the test's own is on the range.
  class Nop final : public RangeSubscriber {
    void OnCreated(const etcdserverpb::ResponseHeader&) override {}
    bool OnEvents(const std::vector<const mvccpb::Event*>&,
                  const etcdserverpb::ResponseHeader&) override {
      return true;
    }
    void OnCanceled(int64_t, const std::string&,
                    const etcdserverpb::ResponseHeader&) override {}
  };
  auto sub = hub_.Subscribe("a", "b", std::make_shared<Nop>(), 0, false);
  std::shared_ptr<WatchRange> range = sub.first;
  const uint64_t handle = sub.second;
  // (The server may see the stream end after the decision: then the
  // watcher is subscribed until it does.)
  EXPECT_TRUE(WaitFor([&] { return range->TEST_subscribers() == 1; },
                      absl::Seconds(10)));
  range->Unsubscribe(handle);
}

// The revocation re-check: the auth state moves (AuthMonitor), every
// watcher is probed again, one probe per (token, range), and the refused
// ones are canceled with the member's reason while the others go on.
TEST_F(WatchProxyAuthTest, AnAuthChangeCancelsTheWatchersNowRefused) {
  WatchClient* alice = Client("alice");
  WatchClient* carol = Client("carol");
  for (WatchClient* c : {alice, carol}) {
    c->Watch(1, "a", "b", 0);
    c->Watch(2, "a", "b", 0);  // same range: decided once
    ASSERT_TRUE(up_.Answer(grpc::Status::OK));
  }
  ASSERT_TRUE(WaitFor([&] { return up_.Watches() == 1; }, absl::Seconds(10)));
  FakeWatch* w = up_.LastWatch();
  w->Created(10);
  ASSERT_TRUE(WaitFor(
      [&] { return alice->AllCreated(2) && carol->AllCreated(2); },
      absl::Seconds(10)));
  EXPECT_EQ(up_.Probes(), 0u);

  perms_.SetAuthState(AuthOn(2));  // alice's role was revoked
  proxy_.Recheck();
  ASSERT_TRUE(WaitFor([&] { return up_.Probes() == 2; }, absl::Seconds(10)));
  // One probe per token and range, whoever comes first.
  const bool alice_first = up_.Front().as.token == "alice";
  ASSERT_TRUE(up_.Answer(alice_first ? Denied() : grpc::Status::OK));
  ASSERT_TRUE(up_.Answer(alice_first ? grpc::Status::OK : Denied()));
  ASSERT_TRUE(WaitFor(
      [&] { return alice->Log(1).canceled && alice->Log(2).canceled; },
      absl::Seconds(10)));
  EXPECT_EQ(alice->Log(1).cancel_reason, kDenied);
  w->Events({testing::Put("a1", "after", 11)});
  ASSERT_TRUE(WaitFor([&] { return carol->EventCount(2) == 1; },
                      absl::Seconds(10)));
  EXPECT_EQ(carol->EventCount(1), 1u);
  EXPECT_FALSE(carol->Log(1).canceled);
  EXPECT_EQ(alice->EventCount(1) + alice->EventCount(2), 0u);
  // Nothing more to check until the state moves again.
  proxy_.Tick();
  EXPECT_EQ(up_.Probes(), 0u);
}

// A JWT token predating the auth change cannot be checked any more
// ("revision of auth store is old"): its watchers go, with that reason.
TEST_F(WatchProxyAuthTest, ARecheckOfAnOldTokenCancelsItsWatchers) {
  WatchClient* alice = Client("jwt-alice");
  alice->Watch(1, "a", "b", 0);
  ASSERT_TRUE(up_.Answer(grpc::Status::OK));
  ASSERT_TRUE(WaitFor([&] { return up_.Watches() == 1; }, absl::Seconds(10)));
  up_.LastWatch()->Created(10);
  ASSERT_TRUE(WaitFor([&] { return alice->Log(1).created; },
                      absl::Seconds(10)));
  perms_.SetAuthState(AuthOn(2));
  proxy_.Recheck();
  ASSERT_TRUE(up_.Answer(common::ToGrpcStatus(
      common::Err(common::EtcdError::kAuthOldRevision))));
  ASSERT_TRUE(WaitFor([&] { return alice->Log(1).canceled; },
                      absl::Seconds(10)));
  EXPECT_EQ(alice->Log(1).cancel_reason,
            "rpc error: code = InvalidArgument desc = etcdserver: revision of "
            "auth store is old");
}

// A re-check the member cannot answer (unavailable) keeps the watcher and
// is tried again by a Tick, not sooner than 500 ms later.
TEST_F(WatchProxyAuthTest, AnUndecidedRecheckIsRetried) {
  WatchClient* alice = Client("alice");
  alice->Watch(1, "a", "b", 0);
  ASSERT_TRUE(up_.Answer(grpc::Status::OK));
  ASSERT_TRUE(WaitFor([&] { return up_.Watches() == 1; }, absl::Seconds(10)));
  up_.LastWatch()->Created(10);
  ASSERT_TRUE(WaitFor([&] { return alice->Log(1).created; },
                      absl::Seconds(10)));
  perms_.SetAuthState(AuthOn(2));
  proxy_.Tick();  // notices the new epoch
  ASSERT_TRUE(up_.Answer(grpc::Status(grpc::StatusCode::UNAVAILABLE, "x")));
  EXPECT_FALSE(alice->Log(1).canceled);
  proxy_.Tick();
  EXPECT_EQ(up_.Probes(), 0u);
  clock_.Advance(WatchProxy::kUndecidedRetry);
  proxy_.Tick();
  ASSERT_TRUE(up_.Answer(Denied()));
  ASSERT_TRUE(WaitFor([&] { return alice->Log(1).canceled; },
                      absl::Seconds(10)));
}

}  // namespace
}  // namespace synod::proxy
