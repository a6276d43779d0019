// RangeCache on a fake upstream and a FakeClock: loading, updates from the
// watch, serializable freshness bound, linearizable reads via quorum
// revision + progress, read-your-writes, LRU, and etcd's Range semantics.
#include "proxy/range_cache.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/errors.h"
#include "gtest/gtest.h"
#include "tests/proxy/fake_upstream.h"

namespace synod::proxy {
namespace {

using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using testing::FakeUpstream;
using testing::FakeWatch;
using testing::Put;

mvccpb::KeyValue Kv(const std::string& k, const std::string& v, int64_t mod,
                    int64_t create = 0, int64_t version = 1) {
  mvccpb::KeyValue kv;
  kv.set_key(k);
  kv.set_value(v);
  kv.set_mod_revision(mod);
  kv.set_create_revision(create > 0 ? create : mod);
  kv.set_version(version);
  return kv;
}

RangeRequest Req(bool serializable = false) {
  RangeRequest r;
  r.set_key("a");
  r.set_range_end("b");
  r.set_serializable(serializable);
  return r;
}

// The result of one cache.Range call.
struct Result {
  bool done = false;
  grpc::Status status;
  RangeResponse resp;
};

class RangeCacheTest : public ::testing::Test {
 protected:
  RangeCacheTest()
      : hub_(&up_, &clock_, WatchRangeOptions(), absl::Seconds(30), nullptr),
        perms_(&up_, &clock_, PermissionCacheOptions()) {
    opts_.serializable_bound = absl::Seconds(1);
    opts_.linearizable_wait = absl::Milliseconds(500);
    // Auth is off: anonymous reads need no permission probe (the
    // permission tests are in permission_cache_unit_test.cc).
    UpstreamAuthState off;
    off.known = true;
    perms_.SetAuthState(off);
    cache_ = std::make_unique<RangeCache>(&hub_, &up_, &perms_, &clock_, opts_,
                                          nullptr);
  }

  std::shared_ptr<Result> Read(RangeRequest req, const std::string& token = "") {
    auto r = std::make_shared<Result>();
    cache_->Range(req, token, [r](const grpc::Status& s, const RangeResponse& p) {
      r->done = true;
      r->status = s;
      r->resp = p;
    });
    return r;
  }
  // Answers the oldest pending upstream Range with `kvs` at `rev`.
  void AnswerRange(std::vector<mvccpb::KeyValue> kvs, int64_t rev) {
    ASSERT_FALSE(up_.ranges.empty());
    auto done = std::move(up_.ranges.front().done);
    up_.ranges.pop_front();
    RangeResponse resp;
    *resp.mutable_header() = testing::Header(rev);
    for (auto& kv : kvs) *resp.add_kvs() = kv;
    resp.set_count(resp.kvs_size());
    done(grpc::Status::OK, resp);
  }
  // First read of range [a, b): forwarded, and once it succeeded the range
  // gets loaded at revision 10 with a=1, and its watch created and fresh.
  // Returns the watch.
  FakeWatch* Warm() {
    auto r = Read(Req());
    EXPECT_EQ(up_.ranges.size(), 1u);  // the forwarded read
    AnswerRange({Kv("a", "1", 10)}, 10);
    EXPECT_TRUE(r->done);
    EXPECT_EQ(up_.ranges.size(), 1u);  // the load, as the proxy
    EXPECT_FALSE(up_.ranges.front().as.client);
    AnswerRange({Kv("a", "1", 10)}, 10);
    EXPECT_EQ(up_.watches.size(), 1u);
    FakeWatch* w = up_.Last();
    EXPECT_EQ(w->create.start_revision(), 11);
    w->Created(10);
    w->Progress(10);
    return w;
  }
  // Resolves pending quorum reads (linearizable count-only probes made
  // with the caller's token) with `rev`.
  void AnswerQuorum(int64_t rev) {
    while (!up_.ranges.empty()) {
      ASSERT_TRUE(IsQuorum(up_.ranges.front()));
      AnswerRange({}, rev);
    }
  }
  static bool IsQuorum(const FakeUpstream::RangeCall& c) {
    return c.as.client && c.req.count_only() && c.req.limit() == 1 &&
           !c.req.serializable();
  }
  size_t Quorums() const {
    size_t n = 0;
    for (const auto& c : up_.ranges) n += IsQuorum(c) ? 1 : 0;
    return n;
  }

  FakeUpstream up_;
  common::FakeClock clock_;
  WatchHub hub_;
  PermissionCache perms_;
  RangeCacheOptions opts_;
  std::unique_ptr<RangeCache> cache_;
};

TEST_F(RangeCacheTest, SerializableReadIsServedFromTheWarmCache) {
  Warm();
  auto r = Read(Req(true));
  ASSERT_TRUE(r->done);  // no upstream call
  EXPECT_TRUE(up_.ranges.empty());
  ASSERT_EQ(r->resp.kvs_size(), 1);
  EXPECT_EQ(r->resp.kvs(0).value(), "1");
  EXPECT_EQ(r->resp.header().revision(), 10);
  EXPECT_EQ(r->resp.header().cluster_id(), 7u);
}

TEST_F(RangeCacheTest, WritesMadeElsewhereReachTheCacheThroughTheWatch) {
  FakeWatch* w = Warm();
  w->Events({Put("a", "2", 11)});
  w->Events({testing::Del("a", 12), Put("a2", "x", 12)});
  auto r = Read(Req(true));
  ASSERT_TRUE(r->done);
  ASSERT_EQ(r->resp.kvs_size(), 1);
  EXPECT_EQ(r->resp.kvs(0).key(), "a2");
  EXPECT_EQ(r->resp.header().revision(), 12);
}

TEST_F(RangeCacheTest, SerializableReadIsForwardedOnceProgressIsTooOld) {
  FakeWatch* w = Warm();
  clock_.Advance(absl::Milliseconds(1001));
  auto r = Read(Req(true));
  EXPECT_FALSE(r->done);
  ASSERT_EQ(up_.ranges.size(), 1u);  // forwarded
  AnswerRange({Kv("a", "1", 10)}, 10);
  EXPECT_TRUE(r->done);
  // A fresh progress answer makes it live again.
  hub_.Tick();  // asks for progress (a freshness subscriber)
  w->Progress(10);
  auto r2 = Read(Req(true));
  EXPECT_TRUE(r2->done);
  EXPECT_TRUE(up_.ranges.empty());
}

TEST_F(RangeCacheTest, SerializableReadIsForwardedWhileTheWatchIsDown) {
  FakeWatch* w = Warm();
  w->Fail();
  auto r = Read(Req(true));
  EXPECT_FALSE(r->done);
  EXPECT_EQ(up_.ranges.size(), 1u);
}

TEST_F(RangeCacheTest, SerializableReadWaitsForTheProxysOwnWrites) {
  FakeWatch* w = Warm();
  cache_->NoteWriteRevision(11);  // a put through this proxy
  auto r = Read(Req(true));
  EXPECT_FALSE(r->done);
  EXPECT_EQ(up_.ranges.size(), 1u);
  AnswerRange({}, 11);
  w->Events({Put("a", "2", 11)});
  auto r2 = Read(Req(true));
  ASSERT_TRUE(r2->done);
  EXPECT_EQ(r2->resp.kvs(0).value(), "2");
}

TEST_F(RangeCacheTest, LinearizableReadWaitsUntilTheWatchReachesTheQuorumRevision) {
  FakeWatch* w = Warm();
  const int before = w->progress_requests;
  auto r = Read(Req());
  EXPECT_FALSE(r->done);
  ASSERT_EQ(Quorums(), 1u);
  // A write made directly on a member: the cluster is at 11, the watch has
  // not shown it yet.
  AnswerQuorum(11);
  EXPECT_FALSE(r->done);
  EXPECT_EQ(w->progress_requests, before + 1);  // asked for progress
  w->Events({Put("a", "2", 11)});
  ASSERT_TRUE(r->done);
  EXPECT_TRUE(up_.ranges.empty());
  EXPECT_EQ(r->resp.kvs(0).value(), "2");
  EXPECT_EQ(r->resp.header().revision(), 11);
}

TEST_F(RangeCacheTest, LinearizableReadIsServedAtOnceWhenTheWatchIsAhead) {
  FakeWatch* w = Warm();
  w->Progress(15);  // other keys moved the cluster on; this range did not
  auto r = Read(Req());
  AnswerQuorum(15);
  ASSERT_TRUE(r->done);
  EXPECT_EQ(r->resp.header().revision(), 15);
  EXPECT_EQ(r->resp.kvs(0).value(), "1");
}

TEST_F(RangeCacheTest, LinearizableReadIsForwardedAfterWaitingTooLong) {
  Warm();
  auto r = Read(Req());
  AnswerQuorum(20);
  EXPECT_FALSE(r->done);
  cache_->Tick();
  EXPECT_TRUE(up_.ranges.empty());
  clock_.Advance(absl::Milliseconds(500));
  cache_->Tick();
  ASSERT_EQ(up_.ranges.size(), 1u);
  AnswerRange({Kv("a", "9", 20)}, 20);
  ASSERT_TRUE(r->done);
  EXPECT_EQ(r->resp.kvs(0).value(), "9");
}

TEST_F(RangeCacheTest, ConcurrentLinearizableReadsShareQuorumReads) {
  FakeWatch* w = Warm();
  w->Progress(30);
  auto r1 = Read(Req());
  auto r2 = Read(Req());  // arrives while r1's quorum read is in flight
  auto r3 = Read(Req());
  ASSERT_EQ(Quorums(), 1u);
  AnswerRange({}, 30);
  EXPECT_TRUE(r1->done);
  EXPECT_FALSE(r2->done);
  // r2 and r3 share the next one.
  ASSERT_EQ(Quorums(), 1u);
  AnswerQuorum(30);
  EXPECT_TRUE(r2->done);
  EXPECT_TRUE(r3->done);
}

TEST_F(RangeCacheTest, PastRevisionReadsAreForwarded) {
  Warm();
  RangeRequest req = Req(true);
  req.set_revision(5);
  auto r = Read(req);
  EXPECT_FALSE(r->done);
  EXPECT_EQ(up_.ranges.size(), 1u);
}

TEST_F(RangeCacheTest, LruEvictsByBytesAndDropsTheWatch) {
  opts_.max_bytes = 1000;
  cache_ = std::make_unique<RangeCache>(&hub_, &up_, &perms_, &clock_, opts_,
                                        nullptr);
  Warm();
  EXPECT_EQ(cache_->TEST_ranges(), 1u);
  // Two more ranges whose data push the total over the bound (each is
  // under half of it, so each may be cached).
  for (const char* k : {"x", "y"}) {
    RangeRequest other;
    other.set_key(k);
    other.set_range_end(std::string(1, k[0] + 1));
    auto r = Read(other);
    AnswerRange({}, 10);  // the forwarded read
    AnswerRange({Kv(k, std::string(420, 'v'), 10)}, 10);  // the load
  }
  EXPECT_EQ(cache_->TEST_ranges(), 2u);  // range a..b was evicted
  cache_->Tick();                          // drops its subscription
  hub_.Tick();
  EXPECT_LE(cache_->TEST_bytes(), 1000u);
  EXPECT_FALSE(up_.watches[0]->closed);  // lingers in the hub...
  clock_.Advance(absl::Seconds(31));
  hub_.Tick();
  EXPECT_TRUE(up_.watches[0]->closed);  // ...then closes
}

// ---- permissions: one cache for every user, nothing served across ----

class RangeCacheAuthTest : public RangeCacheTest {
 protected:
  RangeCacheAuthTest() {
    UpstreamAuthState on;
    on.known = true;
    on.enabled = true;
    on.revision = 5;
    perms_.SetAuthState(on);
  }
  // Answers the oldest upstream call, which must be a permission probe (or
  // quorum read) made with `token`, with `s`.
  void AnswerProbe(const std::string& token, const grpc::Status& s,
                   int64_t rev = 10) {
    ASSERT_FALSE(up_.ranges.empty());
    const auto& c = up_.ranges.front();
    ASSERT_TRUE(c.as.client);
    ASSERT_EQ(c.as.token, token);
    ASSERT_TRUE(c.req.count_only());
    if (s.ok()) {
      AnswerRange({}, rev);
    } else {
      auto done = std::move(up_.ranges.front().done);
      up_.ranges.pop_front();
      done(s, RangeResponse());
    }
  }
  // alice reads [a, b) serializably: permitted, forwarded and loaded.
  FakeWatch* WarmAsAlice() {
    auto r = Read(Req(true), "alice");
    AnswerProbe("alice", grpc::Status::OK);
    EXPECT_EQ(up_.ranges.size(), 2u);  // the load (as the proxy), the read
    EXPECT_FALSE(up_.ranges[0].as.client);
    EXPECT_EQ(up_.ranges[1].as.token, "alice");
    AnswerRange({Kv("a", "secret", 10)}, 10);
    AnswerRange({Kv("a", "secret", 10)}, 10);
    EXPECT_TRUE(r->done);
    FakeWatch* w = up_.Last();
    w->Created(10);
    w->Progress(10);
    auto hit = Read(Req(true), "alice");
    EXPECT_TRUE(hit->done);  // from the cache
    EXPECT_TRUE(up_.ranges.empty());
    return w;
  }
  static grpc::Status Denied() {
    return common::ToGrpcStatus(
        common::Err(common::EtcdError::kPermissionDenied));
  }
};

TEST_F(RangeCacheAuthTest, NobodyIsServedAnotherUsersCachedRange) {
  WarmAsAlice();
  for (const std::string& who : {std::string("bob"), std::string("")}) {
    auto s = Read(Req(true), who);
    EXPECT_FALSE(s->done);  // not from the cache: probed first
    AnswerProbe(who, Denied());
    ASSERT_TRUE(s->done);
    EXPECT_EQ(s->status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(s->status.error_message(), "etcdserver: permission denied");
    EXPECT_EQ(s->resp.kvs_size(), 0);
    auto l = Read(Req(), who);  // linearizable: its quorum read is the probe
    EXPECT_FALSE(l->done);
    AnswerProbe(who, Denied());
    ASSERT_TRUE(l->done);
    EXPECT_EQ(l->status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(l->resp.kvs_size(), 0);
  }
  // The refusals are kept: no further probe, still nothing.
  auto again = Read(Req(true), "bob");
  ASSERT_TRUE(again->done);
  EXPECT_FALSE(again->status.ok());
  EXPECT_TRUE(up_.ranges.empty());
  // alice still reads from the cache, both ways.
  auto a = Read(Req(true), "alice");
  ASSERT_TRUE(a->done);
  EXPECT_EQ(a->resp.kvs(0).value(), "secret");
  auto al = Read(Req(), "alice");
  AnswerProbe("alice", grpc::Status::OK, 10);
  ASSERT_TRUE(al->done);
  EXPECT_EQ(al->resp.kvs(0).value(), "secret");
  EXPECT_TRUE(up_.ranges.empty());
}

TEST_F(RangeCacheAuthTest, ARefusedFirstReaderLoadsNothing) {
  auto b = Read(Req(true), "bob");
  AnswerProbe("bob", Denied());
  ASSERT_TRUE(b->done);
  EXPECT_FALSE(b->status.ok());
  auto bl = Read(Req(), "bob");
  ASSERT_EQ(up_.ranges.size(), 1u);  // forwarded with bob's token
  EXPECT_EQ(up_.ranges.front().as.token, "bob");
  auto done = std::move(up_.ranges.front().done);
  up_.ranges.pop_front();
  done(Denied(), RangeResponse());
  EXPECT_FALSE(bl->status.ok());
  EXPECT_TRUE(up_.ranges.empty());  // no load for a refused reader
  EXPECT_EQ(cache_->TEST_ranges(), 0u);
  WarmAsAlice();
}

TEST_F(RangeCacheAuthTest, AnAuthChangeChecksEveryReaderAgain) {
  WarmAsAlice();
  UpstreamAuthState revoked;
  revoked.known = true;
  revoked.enabled = true;
  revoked.revision = 6;  // alice's role was revoked
  perms_.SetAuthState(revoked);
  auto r = Read(Req(true), "alice");
  EXPECT_FALSE(r->done);
  AnswerProbe("alice", Denied());
  ASSERT_TRUE(r->done);
  EXPECT_EQ(r->status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(r->resp.kvs_size(), 0);
}

TEST_F(RangeCacheAuthTest, ConcurrentLinearizableReadsShareQuorumReadsPerToken) {
  FakeWatch* w = WarmAsAlice();
  w->Progress(30);
  auto a1 = Read(Req(), "alice");
  auto b1 = Read(Req(), "bob");
  auto a2 = Read(Req(), "alice");
  ASSERT_EQ(up_.ranges.size(), 2u);  // one per token
  EXPECT_EQ(up_.ranges[0].as.token, "alice");
  EXPECT_EQ(up_.ranges[1].as.token, "bob");
  AnswerProbe("alice", grpc::Status::OK, 30);
  AnswerProbe("bob", Denied());
  EXPECT_TRUE(a1->done && b1->done);
  EXPECT_TRUE(a1->status.ok());
  EXPECT_FALSE(b1->status.ok());
  ASSERT_EQ(up_.ranges.size(), 1u);  // a2's, started after it arrived
  AnswerProbe("alice", grpc::Status::OK, 30);
  EXPECT_TRUE(a2->done && a2->status.ok());
}

TEST_F(RangeCacheAuthTest, ARangeTheProxyMayNotLoadIsForwarded) {
  auto r = Read(Req(true), "alice");
  AnswerProbe("alice", grpc::Status::OK);
  ASSERT_EQ(up_.ranges.size(), 2u);
  auto load = std::move(up_.ranges.front().done);
  up_.ranges.pop_front();
  load(Denied(), RangeResponse());  // the proxy's own user lacks READ
  AnswerRange({Kv("a", "1", 10)}, 10);
  EXPECT_TRUE(r->done);
  EXPECT_EQ(cache_->TEST_ranges(), 0u);
  auto r2 = Read(Req(true), "alice");
  ASSERT_EQ(up_.ranges.size(), 1u);  // forwarded, no second load
  EXPECT_TRUE(up_.ranges.front().as.client);
}

TEST(ComputeRangeTest, FollowsEtcdRangeSemantics) {
  std::map<std::string, mvccpb::KeyValue> data;
  data["a1"] = Kv("a1", "c", 5, 2, 3);
  data["a2"] = Kv("a2", "a", 7, 7, 1);
  data["a3"] = Kv("a3", "b", 6, 4, 2);
  RangeRequest r;
  r.set_key("a");
  r.set_range_end("b");
  RangeResponse resp;
  ComputeRange(r, data, &resp);
  EXPECT_EQ(resp.count(), 3);
  ASSERT_EQ(resp.kvs_size(), 3);
  EXPECT_EQ(resp.kvs(0).key(), "a1");

  r.set_limit(2);
  r.set_sort_target(RangeRequest::MOD);
  r.set_sort_order(RangeRequest::DESCEND);
  resp.Clear();
  ComputeRange(r, data, &resp);
  EXPECT_TRUE(resp.more());
  EXPECT_EQ(resp.count(), 3);
  ASSERT_EQ(resp.kvs_size(), 2);
  EXPECT_EQ(resp.kvs(0).key(), "a2");
  EXPECT_EQ(resp.kvs(1).key(), "a3");

  RangeRequest v;
  v.set_key("a");
  v.set_range_end("b");
  v.set_sort_target(RangeRequest::VALUE);  // NONE order -> ascending
  v.set_keys_only(true);
  resp.Clear();
  ComputeRange(v, data, &resp);
  ASSERT_EQ(resp.kvs_size(), 3);
  EXPECT_EQ(resp.kvs(0).key(), "a2");
  EXPECT_EQ(resp.kvs(0).value(), "");

  RangeRequest f;
  f.set_key("a");
  f.set_range_end("b");
  f.set_min_create_revision(3);
  f.set_max_mod_revision(6);
  resp.Clear();
  ComputeRange(f, data, &resp);
  EXPECT_EQ(resp.count(), 3);  // count is before the filters, as in etcd
  ASSERT_EQ(resp.kvs_size(), 1);
  EXPECT_EQ(resp.kvs(0).key(), "a3");

  RangeRequest c;
  c.set_key("a2");
  c.set_count_only(true);
  resp.Clear();
  ComputeRange(c, data, &resp);
  EXPECT_EQ(resp.count(), 1);
  EXPECT_EQ(resp.kvs_size(), 0);

  RangeRequest d;
  d.set_key("a");
  d.set_range_end("b");
  d.set_sort_order(RangeRequest::DESCEND);
  resp.Clear();
  ComputeRange(d, data, &resp);
  ASSERT_EQ(resp.kvs_size(), 3);
  EXPECT_EQ(resp.kvs(0).key(), "a3");
}

}  // namespace
}  // namespace synod::proxy
