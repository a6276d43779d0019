// PrefixCache on a fake upstream and a FakeClock: the paginated load and
// the prefix's one watch, Ranges at any revision of the window (checked
// against a reference MVCC with etcd's Range rules), watches replayed from
// any revision of the window then live, compaction, failover, the memory
// budget's fallback and recovery, and permissions.
//
// Randomised tests are deterministic: they print their seed, and
// SYNOD_TEST_SEED=<n> replays one.
#include "proxy/prefix_cache.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/errors.h"
#include "common/key_range.h"
#include "gtest/gtest.h"
#include "proxy/range_cache.h"
#include "proxy/watch_proxy.h"
#include "tests/proxy/fake_upstream.h"

namespace synod::proxy {
namespace {

using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using testing::FakeUpstream;
using testing::FakeWatch;

uint32_t Seed() {
  const char* env = std::getenv("SYNOD_TEST_SEED");
  const uint32_t seed =
      env != nullptr ? static_cast<uint32_t>(std::strtoul(env, nullptr, 10))
                     : 20261205u;
  std::printf("seed %u (SYNOD_TEST_SEED=%u replays it)\n", seed, seed);
  return seed;
}

// Records what the cache tells it; refuses events while `full`.
class FakeSub final : public RangeSubscriber {
 public:
  void OnCreated(const etcdserverpb::ResponseHeader& h) override {
    created = true;
    created_rev = h.revision();
  }
  bool OnEvents(const std::vector<const mvccpb::Event*>& events,
                const etcdserverpb::ResponseHeader&) override {
    EXPECT_TRUE(created);
    if (full) return false;
    for (const auto* e : events) this->events.push_back(*e);
    return true;
  }
  void OnStatus(const RangeStatus& s) override { status = s; }
  void OnCanceled(int64_t compact, const std::string& r,
                  const etcdserverpb::ResponseHeader&) override {
    canceled = true;
    compact_rev = compact;
    reason = r;
  }
  std::vector<int64_t> Revs() const {
    std::vector<int64_t> v;
    for (const auto& e : events) v.push_back(e.kv().mod_revision());
    return v;
  }

  bool created = false, canceled = false, full = false;
  int64_t created_rev = -1, compact_rev = -1;
  std::string reason;
  std::vector<mvccpb::Event> events;
  RangeStatus status;
};

struct Result {
  bool done = false;
  grpc::Status status;
  RangeResponse resp;
};

// A reference MVCC of the prefix: the state at every revision and every
// event, as a member would have them.
class Model {
 public:
  explicit Model(int64_t rev) : rev_(rev) { states_[rev]; }

  // The next revision: a put of `key` or, if `del` and it exists, its
  // deletion. Returns the member's event (with prev_kv).
  mvccpb::Event Step(const std::string& key, const std::string& value,
                     bool del) {
    std::map<std::string, mvccpb::KeyValue> s = states_[rev_];
    ++rev_;
    mvccpb::Event e;
    auto it = s.find(key);
    if (it != s.end()) *e.mutable_prev_kv() = it->second;
    if (del && it != s.end()) {
      e.set_type(mvccpb::Event::DELETE);
      e.mutable_kv()->set_key(key);
      e.mutable_kv()->set_mod_revision(rev_);
      s.erase(it);
    } else {
      mvccpb::KeyValue kv;
      kv.set_key(key);
      kv.set_value(value);
      kv.set_mod_revision(rev_);
      kv.set_create_revision(it != s.end() ? it->second.create_revision()
                                           : rev_);
      kv.set_version(it != s.end() ? it->second.version() + 1 : 1);
      e.set_type(mvccpb::Event::PUT);
      *e.mutable_kv() = kv;
      s[key] = kv;
    }
    states_[rev_] = std::move(s);
    events_.push_back(e);
    return e;
  }
  const std::map<std::string, mvccpb::KeyValue>& At(int64_t rev) const {
    return states_.at(rev);
  }
  RangeResponse Expect(RangeRequest req, int64_t at) const {
    RangeResponse r;
    req.set_revision(0);
    ComputeRange(req, At(at), &r);
    return r;
  }
  std::vector<int64_t> EventRevs(const std::string& key,
                                 const std::string& end, int64_t from) const {
    std::vector<int64_t> v;
    for (const auto& e : events_) {
      if (e.kv().mod_revision() >= from &&
          common::InRange(e.kv().key(), key, end)) {
        v.push_back(e.kv().mod_revision());
      }
    }
    return v;
  }
  int64_t rev() const { return rev_; }

 private:
  int64_t rev_;
  std::map<int64_t, std::map<std::string, mvccpb::KeyValue>> states_;
  std::vector<mvccpb::Event> events_;
};

class PrefixCacheTest : public ::testing::Test {
 protected:
  PrefixCacheTest()
      : hub_(&up_, &clock_, WatchRangeOptions(), absl::Seconds(30), nullptr),
        perms_(&up_, &clock_, PermissionCacheOptions()) {
    opts_.page_keys = 2;
    opts_.window_events = 1000;
    opts_.retry_min = absl::Seconds(1);
    opts_.retry_max = absl::Seconds(4);
    UpstreamAuthState off;
    off.known = true;
    perms_.SetAuthState(off);
  }

  void Make() {
    cache_ = std::make_unique<PrefixCache>(
        std::vector<std::string>{"/cfg/"}, &hub_, &up_, &perms_, &clock_,
        opts_, nullptr, &registry_);
  }

  // Answers the oldest upstream Range with the keys of `state` in
  // [req.key, req.range_end) (up to its limit) at `rev`.
  void AnswerPage(const std::map<std::string, mvccpb::KeyValue>& state,
                  int64_t rev) {
    ASSERT_FALSE(up_.ranges.empty());
    FakeUpstream::RangeCall c = std::move(up_.ranges.front());
    up_.ranges.pop_front();
    EXPECT_FALSE(c.as.client);  // loads are made as the proxy
    EXPECT_FALSE(c.req.serializable());
    RangeResponse resp;
    *resp.mutable_header() = testing::Header(rev);
    for (const auto& [k, kv] : state) {
      if (!common::InRange(k, c.req.key(), c.req.range_end())) continue;
      if (c.req.limit() > 0 && resp.kvs_size() == c.req.limit()) {
        resp.set_more(true);
        break;
      }
      *resp.add_kvs() = kv;
    }
    c.done(grpc::Status::OK, resp);
  }

  // Starts the cache and loads `model`'s current state; returns the
  // prefix's watch, created and fresh.
  FakeWatch* Load(const Model& model) {
    if (cache_ == nullptr) Make();
    const size_t watches = up_.watches.size();
    cache_->Start();
    return Reload(model, watches);
  }
  FakeWatch* Reload(const Model& model, size_t watches) {
    int pages = 0;
    while (up_.watches.size() == watches && !up_.ranges.empty()) {
      const int64_t want = pages == 0 ? 0 : model.rev();
      EXPECT_EQ(up_.ranges.front().req.revision(), want);
      AnswerPage(model.At(model.rev()), model.rev());
      ++pages;
    }
    EXPECT_EQ(up_.watches.size(), watches + 1);
    FakeWatch* w = up_.Last();
    EXPECT_EQ(w->create.key(), "/cfg/");
    EXPECT_EQ(w->create.range_end(), "/cfg0");
    EXPECT_EQ(w->create.start_revision(), model.rev() + 1);
    EXPECT_TRUE(w->create.prev_kv());
    w->Created(model.rev());
    w->Progress(model.rev());
    return w;
  }

  // Answers the oldest upstream Range with `s` and `r`.
  void AnswerRange(const grpc::Status& s,
                   const RangeResponse& r = RangeResponse()) {
    ASSERT_FALSE(up_.ranges.empty());
    auto done = std::move(up_.ranges.front().done);
    up_.ranges.pop_front();
    done(s, r);
  }
  static grpc::Status Denied() {
    return common::ToGrpcStatus(
        common::Err(common::EtcdError::kPermissionDenied));
  }

  // Answers the compaction check's probes (count-only, as the proxy, at a
  // revision) as a member compacted at `c` (0: never) would, until none is
  // left; returns how many there were.
  int AnswerCompactionProbes(int64_t c, int64_t rev) {
    int n = 0;
    while (!up_.ranges.empty()) {
      const FakeUpstream::RangeCall& q = up_.ranges.front();
      EXPECT_FALSE(q.as.client);
      EXPECT_TRUE(q.req.count_only());
      EXPECT_TRUE(q.req.serializable());
      EXPECT_EQ(q.req.key(), "/cfg/");
      EXPECT_GT(q.req.revision(), 0);
      ++n;
      if (q.req.revision() < c) {
        AnswerRange(Compacted());
      } else {
        RangeResponse r;
        *r.mutable_header() = testing::Header(rev);
        AnswerRange(grpc::Status::OK, r);
      }
    }
    return n;
  }
  static grpc::Status Compacted() {
    return common::ToGrpcStatus(common::Err(common::EtcdError::kCompacted));
  }

  // Answers the oldest shared revision read (a quorum read as the proxy).
  void AnswerRevision(absl::StatusOr<int64_t> rev) {
    ASSERT_FALSE(up_.quorum_reads.empty());
    auto done = std::move(up_.quorum_reads.front());
    up_.quorum_reads.pop_front();
    ++revision_reads_;
    done(rev);
  }

  std::shared_ptr<Result> Read(RangeRequest req, const std::string& token = "",
                               bool* handled = nullptr) {
    auto r = std::make_shared<Result>();
    const bool h = cache_->Range(
        req, token, [r](const grpc::Status& s, const RangeResponse& p) {
          r->done = true;
          r->status = s;
          r->resp = p;
        });
    if (handled != nullptr) *handled = h;
    return r;
  }

  static RangeRequest Req(const std::string& key, const std::string& end = "",
                          int64_t rev = 0, bool serializable = true) {
    RangeRequest r;
    r.set_key(key);
    r.set_range_end(end);
    r.set_revision(rev);
    r.set_serializable(serializable);
    return r;
  }

  static void ExpectSame(const RangeResponse& got, const RangeResponse& want,
                         const std::string& what) {
    EXPECT_EQ(got.count(), want.count()) << what;
    EXPECT_EQ(got.more(), want.more()) << what;
    ASSERT_EQ(got.kvs_size(), want.kvs_size()) << what;
    for (int i = 0; i < got.kvs_size(); ++i) {
      EXPECT_EQ(got.kvs(i).SerializeAsString(),
                want.kvs(i).SerializeAsString())
          << what << " kv " << i;
    }
  }

  // Sends `model`'s next event (put or delete of a random /cfg/ key).
  mvccpb::Event Step(Model* model, FakeWatch* w, std::mt19937* rng) {
    const std::string key = "/cfg/k" + std::to_string((*rng)() % 8);
    const bool del = (*rng)() % 4 == 0;
    mvccpb::Event e =
        model->Step(key, "v" + std::to_string(model->rev() + 1), del);
    w->Events({e});
    return e;
  }

  FakeUpstream up_;
  common::FakeClock clock_;
  common::MetricsRegistry registry_;
  WatchHub hub_;
  PermissionCache perms_;
  PrefixCacheOptions opts_;
  std::unique_ptr<PrefixCache> cache_;
  int revision_reads_ = 0;  // answered by AnswerRevision
};

Model Initial(int n) {
  Model m(1);
  for (int i = 0; i < n; ++i) {
    m.Step("/cfg/k" + std::to_string(i), "init" + std::to_string(i), false);
  }
  m.Step("/cfh/outside", "x", false);  // not in the prefix
  return m;
}

TEST_F(PrefixCacheTest, LoadsInPagesThenKeepsOneWatchFromTheLoadRevision) {
  Model m = Initial(5);  // 3 pages of 2
  Load(m);
  EXPECT_EQ(up_.watches.size(), 1u);
  auto st = cache_->TEST_stats("/cfg/");
  EXPECT_TRUE(st.live);
  EXPECT_EQ(st.keys, 5u);
  EXPECT_EQ(st.window_start, m.rev());
  EXPECT_TRUE(cache_->Settled());
  EXPECT_NE(registry_.RenderText().find(
                "synod_proxy_prefix_cache_keys{prefix=\"/cfg/\"} 5"),
            std::string::npos);
  EXPECT_NE(registry_.RenderText().find("synod_proxy_cached_prefixes 1"),
            std::string::npos);
}

TEST_F(PrefixCacheTest, RangesOutsideThePrefixAreNotItsConcern) {
  Model m = Initial(2);
  Load(m);
  bool handled = true;
  Read(Req("/cfh/outside"), "", &handled);
  EXPECT_FALSE(handled);
  Read(Req("/cfg/", "/cfh0"), "", &handled);  // wider than the prefix
  EXPECT_FALSE(handled);
  Read(Req("/cfg/a", std::string(1, '\0')), "", &handled);  // open end
  EXPECT_FALSE(handled);
}

// Every kind of Range at every revision of the window, against the
// reference MVCC with etcd's rules.
TEST_F(PrefixCacheTest, RangesAtAnyRevisionInTheWindowMatchTheMember) {
  std::mt19937 rng(Seed());
  Model m = Initial(6);
  const int64_t loaded = m.rev();
  FakeWatch* w = Load(m);
  for (int i = 0; i < 60; ++i) Step(&m, w, &rng);
  w->Progress(m.rev());
  std::vector<RangeRequest> shapes;
  shapes.push_back(Req("/cfg/k3"));
  shapes.push_back(Req("/cfg/", "/cfg0"));
  shapes.push_back(Req("/cfg/k2", "/cfg/k6"));
  RangeRequest r = Req("/cfg/", "/cfg0");
  r.set_keys_only(true);
  shapes.push_back(r);
  r = Req("/cfg/", "/cfg0");
  r.set_count_only(true);
  shapes.push_back(r);
  r = Req("/cfg/", "/cfg0");
  r.set_limit(3);
  shapes.push_back(r);
  r.set_sort_target(RangeRequest::MOD);
  r.set_sort_order(RangeRequest::DESCEND);
  shapes.push_back(r);
  r = Req("/cfg/", "/cfg0");
  r.set_sort_target(RangeRequest::VALUE);
  r.set_sort_order(RangeRequest::ASCEND);
  r.set_limit(4);
  shapes.push_back(r);
  r = Req("/cfg/", "/cfg0");
  r.set_min_mod_revision(loaded + 10);
  r.set_max_create_revision(loaded + 40);
  shapes.push_back(r);
  for (int64_t at = loaded; at <= m.rev(); ++at) {
    for (size_t s = 0; s < shapes.size(); ++s) {
      RangeRequest q = shapes[s];
      q.set_revision(at == m.rev() && s % 2 == 0 ? 0 : at);
      auto res = Read(q);
      ASSERT_TRUE(res->done);
      ASSERT_TRUE(res->status.ok()) << res->status.error_message();
      EXPECT_EQ(res->resp.header().revision(), m.rev());
      ExpectSame(res->resp, m.Expect(q, at),
                 "shape " + std::to_string(s) + " at " + std::to_string(at));
    }
  }
  EXPECT_TRUE(up_.ranges.empty());  // nothing went to the member
  // Below the window: forwarded with the caller's token.
  auto old = Read(Req("/cfg/k1", "", loaded - 1), "tok");
  ASSERT_EQ(up_.ranges.size(), 1u);
  EXPECT_TRUE(up_.ranges.front().as.client);
  EXPECT_EQ(up_.ranges.front().as.token, "tok");
  EXPECT_FALSE(up_.ranges.front().req.count_only());  // not a probe
  EXPECT_EQ(up_.ranges.front().req.revision(), loaded - 1);
  EXPECT_FALSE(old->done);
}

TEST_F(PrefixCacheTest, TrimmingTheWindowRaisesItsStartAndKeepsLaterStates) {
  std::mt19937 rng(Seed());
  opts_.window_events = 10;
  Model m = Initial(4);
  FakeWatch* w = Load(m);
  for (int i = 0; i < 40; ++i) Step(&m, w, &rng);
  auto st = cache_->TEST_stats("/cfg/");
  EXPECT_EQ(st.log_events, 10u);
  EXPECT_EQ(st.window_start, m.rev() - 10);
  for (int64_t at = st.window_start; at <= m.rev(); ++at) {
    auto res = Read(Req("/cfg/", "/cfg0", at));
    ASSERT_TRUE(res->done);
    ExpectSame(res->resp, m.Expect(Req("/cfg/", "/cfg0"), at),
               "at " + std::to_string(at));
  }
  EXPECT_TRUE(up_.ranges.empty());
  Read(Req("/cfg/", "/cfg0", st.window_start - 1));
  EXPECT_EQ(up_.ranges.size(), 1u);  // forwarded
}

// A linearizable read learns the cluster's revision from the prefix's
// shared quorum read (as the proxy; the permission of a client without a
// token, auth off, needs no member call), then waits for the watch.
TEST_F(PrefixCacheTest, LinearizableReadsLearnTheClustersRevisionThenWait) {
  Model m = Initial(2);
  FakeWatch* w = Load(m);
  auto res = Read(Req("/cfg/k1", "", 0, /*serializable=*/false));
  EXPECT_TRUE(up_.ranges.empty());  // no probe
  ASSERT_EQ(up_.quorum_reads.size(), 1u);
  // The cluster is one revision ahead of the watch.
  mvccpb::Event e = m.Step("/cfg/k1", "new", false);
  const int progress = w->progress_requests;
  AnswerRevision(m.rev());
  EXPECT_FALSE(res->done);
  EXPECT_GT(w->progress_requests, progress);  // asked the member
  w->Events({e});
  ASSERT_TRUE(res->done);
  ASSERT_EQ(res->resp.kvs_size(), 1);
  EXPECT_EQ(res->resp.kvs(0).value(), "new");
  // Waits are bounded: past linearizable_wait the read is forwarded.
  auto late = Read(Req("/cfg/k1", "", 0, false));
  AnswerRevision(m.rev() + 5);
  EXPECT_FALSE(late->done);
  clock_.Advance(opts_.linearizable_wait);
  cache_->Tick();
  ASSERT_EQ(up_.ranges.size(), 1u);
  EXPECT_FALSE(up_.ranges.front().req.count_only());  // the read itself
  EXPECT_TRUE(up_.ranges.front().as.client);
}

// Many services each reading its own key: one revision read in flight,
// and the reads that arrived meanwhile share the next one.
TEST_F(PrefixCacheTest, ConcurrentLinearizableReadsShareTwoRevisionReads) {
  Model m = Initial(4);
  Load(m);
  constexpr int kReads = 200;
  std::vector<std::shared_ptr<Result>> rs;
  for (int i = 0; i < kReads; ++i) {
    rs.push_back(Read(Req("/cfg/k" + std::to_string(i), "", 0, false)));
  }
  EXPECT_TRUE(up_.ranges.empty());
  while (!up_.quorum_reads.empty()) AnswerRevision(m.rev());
  EXPECT_EQ(revision_reads_, 2);
  for (int i = 0; i < kReads; ++i) {
    ASSERT_TRUE(rs[i]->done) << i;
    ASSERT_TRUE(rs[i]->status.ok()) << i;
    EXPECT_EQ(rs[i]->resp.kvs_size(), i < 4 ? 1 : 0) << i;
  }
  EXPECT_TRUE(up_.ranges.empty());
}

// Linearizability: a read that arrives while a revision read is in flight
// may miss a write that completed before it arrived, so it waits for the
// next revision read. Reusing the one in flight would serve "init1".
TEST_F(PrefixCacheTest, AReadArrivingDuringARevisionReadWaitsForTheNext) {
  Model m = Initial(2);
  FakeWatch* w = Load(m);
  const int64_t before = m.rev();
  auto first = Read(Req("/cfg/k1", "", 0, false));
  ASSERT_EQ(up_.quorum_reads.size(), 1u);
  // A write completes (its event not yet on the watch), then a read comes.
  mvccpb::Event e = m.Step("/cfg/k1", "new", false);
  auto second = Read(Req("/cfg/k1", "", 0, false));
  EXPECT_EQ(up_.quorum_reads.size(), 1u);  // no second one yet
  AnswerRevision(before);  // the first was read before the write
  ASSERT_TRUE(first->done);
  EXPECT_EQ(first->resp.kvs(0).value(), "init1");
  EXPECT_FALSE(second->done);
  ASSERT_EQ(up_.quorum_reads.size(), 1u);  // the next one, for `second`
  AnswerRevision(m.rev());
  EXPECT_FALSE(second->done);  // waits for the watch to reach it
  w->Events({e});
  ASSERT_TRUE(second->done);
  EXPECT_EQ(second->resp.kvs(0).value(), "new");
  EXPECT_TRUE(up_.quorum_reads.empty());
  EXPECT_EQ(revision_reads_, 2);
}

// If the shared read fails, each read probes with its caller's token over
// its range, as before.
TEST_F(PrefixCacheTest, AFailedRevisionReadFallsBackToTheCallersProbe) {
  Model m = Initial(2);
  Load(m);
  auto res = Read(Req("/cfg/k1", "", 0, false), "tok");
  // The permission check of "tok" (auth off, but a token: probed).
  ASSERT_EQ(up_.ranges.size(), 1u);
  EXPECT_TRUE(up_.ranges.front().req.serializable());
  AnswerRange(grpc::Status::OK);
  AnswerRevision(absl::UnavailableError("no leader"));
  ASSERT_EQ(up_.ranges.size(), 1u);
  const FakeUpstream::RangeCall& probe = up_.ranges.front();
  EXPECT_TRUE(probe.as.client);
  EXPECT_EQ(probe.as.token, "tok");
  EXPECT_TRUE(probe.req.count_only());
  EXPECT_FALSE(probe.req.serializable());
  EXPECT_EQ(probe.req.key(), "/cfg/k1");
  RangeResponse pr;
  *pr.mutable_header() = testing::Header(m.rev());
  AnswerRange(grpc::Status::OK, pr);
  ASSERT_TRUE(res->done);
  EXPECT_EQ(res->resp.kvs(0).value(), "init1");
}

TEST_F(PrefixCacheTest, SerializableReadsSeeTheProxysOwnWrites) {
  Model m = Initial(2);
  FakeWatch* w = Load(m);
  mvccpb::Event e = m.Step("/cfg/k0", "mine", false);
  cache_->NoteWriteRevision(m.rev());
  auto res = Read(Req("/cfg/k0"));
  EXPECT_FALSE(res->done);
  w->Events({e});
  ASSERT_TRUE(res->done);
  EXPECT_EQ(res->resp.kvs(0).value(), "mine");
  // A stale watch (no progress answer within the bound) is not served
  // until one comes.
  clock_.Advance(absl::Seconds(2));
  auto stale = Read(Req("/cfg/k0"));
  EXPECT_FALSE(stale->done);
  // Answers pair with requests in order: the one this read asked for is
  // the last.
  for (int i = 0; i < 3 && !stale->done; ++i) w->Progress(m.rev());
  EXPECT_TRUE(stale->done);
}

// Watchers of any key or sub-range from any start in the window get every
// event of their range from it, once and in order, then live events, with
// no upstream call.
TEST_F(PrefixCacheTest, WatchesReplayFromAnyRevisionInTheWindowThenGoLive) {
  std::mt19937 rng(Seed());
  Model m = Initial(5);
  const int64_t loaded = m.rev();
  FakeWatch* w = Load(m);
  for (int i = 0; i < 30; ++i) Step(&m, w, &rng);
  struct Watcher {
    std::shared_ptr<FakeSub> sub;
    std::string key, end;
    int64_t from;
  };
  std::vector<Watcher> ws;
  const std::vector<std::pair<std::string, std::string>> ranges = {
      {"/cfg/k1", ""}, {"/cfg/k5", ""}, {"/cfg/", "/cfg0"},
      {"/cfg/k2", "/cfg/k5"}, {"/cfg/k7", "/cfg/k8"}};
  for (int64_t start = loaded + 1; start <= m.rev() + 2; ++start) {
    const auto& [k, e] = ranges[rng() % ranges.size()];
    auto sub = std::make_shared<FakeSub>();
    auto a = cache_->Subscribe(k, e, sub, start);
    ASSERT_TRUE(a) << start;
    EXPECT_EQ(sub->created_rev, m.rev());
    ws.push_back(Watcher{sub, k, e, start});
  }
  auto now = std::make_shared<FakeSub>();
  ASSERT_TRUE(cache_->Subscribe("/cfg/", "/cfg0", now, 0));
  EXPECT_EQ(now->created_rev, m.rev());
  for (int i = 0; i < 30; ++i) Step(&m, w, &rng);
  for (const Watcher& x : ws) {
    EXPECT_EQ(x.sub->Revs(), m.EventRevs(x.key, x.end, x.from))
        << x.key << " from " << x.from;
  }
  EXPECT_EQ(now->Revs(), m.EventRevs("/cfg/", "/cfg0", m.rev() - 29));
  EXPECT_EQ(up_.watches.size(), 1u);
  EXPECT_TRUE(up_.ranges.empty());
  // At or before the window start: not served here (the member catches
  // it up).
  EXPECT_FALSE(cache_->Subscribe("/cfg/k1", "", std::make_shared<FakeSub>(),
                                 loaded));
  EXPECT_NE(registry_.RenderText().find(
                "synod_proxy_prefix_cache_watches_total{prefix=\"/cfg/\"} " +
                std::to_string(ws.size() + 1)),
            std::string::npos);
}

TEST_F(PrefixCacheTest, EventsCarryPrevKvAndDeletes) {
  Model m = Initial(2);
  FakeWatch* w = Load(m);
  auto sub = std::make_shared<FakeSub>();
  ASSERT_TRUE(cache_->Subscribe("/cfg/k0", "", sub, 0));
  w->Events({m.Step("/cfg/k0", "two", false)});
  w->Events({m.Step("/cfg/k0", "", true)});
  ASSERT_EQ(sub->events.size(), 2u);
  EXPECT_EQ(sub->events[0].prev_kv().value(), "init0");
  EXPECT_EQ(sub->events[1].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(sub->events[1].prev_kv().value(), "two");
  // The deleted key reads as gone now, and as it was before.
  auto res = Read(Req("/cfg/k0"));
  ASSERT_TRUE(res->done);
  EXPECT_EQ(res->resp.kvs_size(), 0);
  res = Read(Req("/cfg/k0", "", m.rev() - 1));
  ASSERT_EQ(res->resp.kvs_size(), 1);
  EXPECT_EQ(res->resp.kvs(0).value(), "two");
}

TEST_F(PrefixCacheTest, SlowWatcherIsCanceledOthersKeepGoing) {
  Model m = Initial(2);
  FakeWatch* w = Load(m);
  auto slow = std::make_shared<FakeSub>(), ok = std::make_shared<FakeSub>();
  ASSERT_TRUE(cache_->Subscribe("/cfg/k0", "", slow, 0));
  ASSERT_TRUE(cache_->Subscribe("/cfg/k0", "", ok, 0));
  slow->full = true;
  w->Events({m.Step("/cfg/k0", "x", false)});
  EXPECT_TRUE(slow->canceled);
  EXPECT_EQ(slow->reason, kSlowWatcherReason);
  EXPECT_EQ(ok->events.size(), 1u);
  EXPECT_EQ(cache_->TEST_stats("/cfg/").subscribers, 1u);
}

// The prefix watch fails: the WatchHub resumes it on the next member from
// the last event + 1; repeats are dropped, nothing is lost.
TEST_F(PrefixCacheTest, FailoverResumesWithoutLossOrDuplicates) {
  std::mt19937 rng(Seed());
  Model m = Initial(3);
  FakeWatch* w = Load(m);
  auto sub = std::make_shared<FakeSub>();
  const int64_t from = m.rev() + 1;
  ASSERT_TRUE(cache_->Subscribe("/cfg/", "/cfg0", sub, 0));
  mvccpb::Event prev;
  for (int i = 0; i < 5; ++i) prev = Step(&m, w, &rng);
  const int64_t last = m.rev();
  w->Fail();
  // Not served while the watch is down (serializable needs it up).
  auto down = Read(Req("/cfg/k1"));
  EXPECT_FALSE(down->done);
  clock_.Advance(absl::Milliseconds(100));
  hub_.Tick();
  ASSERT_EQ(up_.watches.size(), 2u);
  FakeWatch* w2 = up_.Last();
  EXPECT_EQ(w2->create.start_revision(), last + 1);
  w2->Created(last);
  // The new member repeats the last revision, then goes on.
  w2->Events({prev});
  for (int i = 0; i < 5; ++i) Step(&m, w2, &rng);
  w2->Progress(m.rev());
  EXPECT_TRUE(down->done);
  EXPECT_EQ(sub->Revs(), m.EventRevs("/cfg/", "/cfg0", from));
  auto res = Read(Req("/cfg/", "/cfg0"));
  ASSERT_TRUE(res->done);
  ExpectSame(res->resp, m.Expect(Req("/cfg/", "/cfg0"), m.rev()), "now");
}

TEST_F(PrefixCacheTest, RepeatedEventsAfterAReconnectAreDropped) {
  Model m = Initial(2);
  FakeWatch* w = Load(m);
  auto sub = std::make_shared<FakeSub>();
  ASSERT_TRUE(cache_->Subscribe("/cfg/", "/cfg0", sub, 0));
  mvccpb::Event a = m.Step("/cfg/k0", "a", false);
  w->Events({a});
  w->Fail();
  clock_.Advance(absl::Milliseconds(100));
  hub_.Tick();
  FakeWatch* w2 = up_.Last();
  w2->Created(m.rev());
  mvccpb::Event b = m.Step("/cfg/k1", "b", false);
  w2->Events({a, b});  // a member that sends the last one again
  EXPECT_EQ(sub->Revs(), (std::vector<int64_t>{a.kv().mod_revision(),
                                               b.kv().mod_revision()}));
}

// The prefix watch is canceled as compacted (it resumed past a
// compaction): its watchers are canceled as a member cancels them, and
// the prefix reloads and serves again.
TEST_F(PrefixCacheTest, CompactionCancelsTheWatchersAndReloads) {
  std::mt19937 rng(Seed());
  Model m = Initial(3);
  FakeWatch* w = Load(m);
  auto a = std::make_shared<FakeSub>(), b = std::make_shared<FakeSub>();
  ASSERT_TRUE(cache_->Subscribe("/cfg/k1", "", a, 0));
  ASSERT_TRUE(cache_->Subscribe("/cfg/", "/cfg0", b, 0));
  for (int i = 0; i < 3; ++i) Step(&m, w, &rng);
  w->Fail();
  clock_.Advance(absl::Milliseconds(100));
  hub_.Tick();
  FakeWatch* w2 = up_.Last();
  for (int i = 0; i < 4; ++i) m.Step("/cfg/k2", "lost", false);
  w2->Compacted(m.rev() - 1);
  EXPECT_TRUE(a->canceled);
  EXPECT_EQ(a->compact_rev, m.rev() - 1);
  EXPECT_TRUE(b->canceled);
  EXPECT_EQ(b->compact_rev, m.rev() - 1);
  EXPECT_EQ(b->reason,
            "etcdserver: mvcc: required revision has been compacted");
  EXPECT_FALSE(cache_->TEST_stats("/cfg/").live);
  bool handled = true;
  Read(Req("/cfg/k1"), "", &handled);
  EXPECT_FALSE(handled);  // per range meanwhile
  up_.ranges.clear();
  // The next Tick reloads.
  cache_->Tick();
  FakeWatch* w3 = Reload(m, up_.watches.size());
  (void)w3;
  EXPECT_TRUE(cache_->TEST_stats("/cfg/").live);
  auto res = Read(Req("/cfg/k2"));
  ASSERT_TRUE(res->done);
  EXPECT_EQ(res->resp.kvs(0).value(), "lost");
}

TEST_F(PrefixCacheTest, ACompactionThroughTheProxyRaisesTheWindowStart) {
  std::mt19937 rng(Seed());
  Model m = Initial(3);
  FakeWatch* w = Load(m);
  for (int i = 0; i < 10; ++i) Step(&m, w, &rng);
  cache_->NoteCompaction(m.rev() - 3);
  EXPECT_EQ(cache_->TEST_stats("/cfg/").window_start, m.rev() - 4);
  Read(Req("/cfg/", "/cfg0", m.rev() - 4));
  EXPECT_EQ(up_.ranges.size(), 1u);  // compacted: the member answers
  auto res = Read(Req("/cfg/", "/cfg0", m.rev() - 3));
  ASSERT_TRUE(res->done);
  ExpectSame(res->resp, m.Expect(Req("/cfg/", "/cfg0"), m.rev() - 3), "C");
  EXPECT_FALSE(cache_->Subscribe("/cfg/k1", "", std::make_shared<FakeSub>(),
                                 m.rev() - 4));
  EXPECT_TRUE(cache_->Subscribe("/cfg/k1", "", std::make_shared<FakeSub>(),
                                m.rev() - 3));
}

// A compaction made directly on a member: the periodic check finds its
// revision C (a probe at the window start, then a binary search), and
// revisions below C are left to the member, as if compacted through the
// proxy.
TEST_F(PrefixCacheTest, ACompactionOnAMemberIsFoundByThePeriodicCheck) {
  std::mt19937 rng(Seed());
  Model m = Initial(3);
  const int64_t loaded = m.rev();
  FakeWatch* w = Load(m);
  for (int i = 0; i < 40; ++i) Step(&m, w, &rng);
  w->Progress(m.rev());
  const int64_t c = loaded + 25;  // compacted on a member
  cache_->Tick();
  EXPECT_TRUE(up_.ranges.empty());  // not due yet
  clock_.Advance(opts_.compaction_check_interval);
  cache_->Tick();
  ASSERT_EQ(up_.ranges.size(), 1u);
  EXPECT_EQ(up_.ranges.front().req.revision(), loaded);  // the window start
  cache_->Tick();
  EXPECT_EQ(up_.ranges.size(), 1u);  // one check at a time
  const int probes = AnswerCompactionProbes(c, m.rev());
  EXPECT_GT(probes, 1);
  EXPECT_LE(probes, 1 + opts_.compaction_check_probes);
  EXPECT_EQ(cache_->TEST_stats("/cfg/").window_start, c - 1);
  // Below C: the member answers compacted.
  auto old = Read(Req("/cfg/", "/cfg0", c - 1));
  ASSERT_EQ(up_.ranges.size(), 1u);
  EXPECT_TRUE(up_.ranges.front().as.client);
  EXPECT_FALSE(up_.ranges.front().req.count_only());
  EXPECT_EQ(up_.ranges.front().req.revision(), c - 1);
  AnswerRange(Compacted());
  ASSERT_TRUE(old->done);
  EXPECT_EQ(old->status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(old->status.error_message(),
            "etcdserver: mvcc: required revision has been compacted");
  EXPECT_FALSE(cache_->Subscribe("/cfg/k1", "", std::make_shared<FakeSub>(),
                                 c - 1));
  // From C on: still served here.
  auto at = Read(Req("/cfg/", "/cfg0", c));
  ASSERT_TRUE(at->done);
  ExpectSame(at->resp, m.Expect(Req("/cfg/", "/cfg0"), c), "at C");
  auto sub = std::make_shared<FakeSub>();
  ASSERT_TRUE(cache_->Subscribe("/cfg/", "/cfg0", sub, c));
  EXPECT_EQ(sub->Revs(), m.EventRevs("/cfg/", "/cfg0", c));
  EXPECT_TRUE(up_.ranges.empty());
  // The next check probes at C: one probe, nothing new.
  clock_.Advance(opts_.compaction_check_interval);
  cache_->Tick();
  ASSERT_EQ(up_.ranges.size(), 1u);
  EXPECT_EQ(up_.ranges.front().req.revision(), c);
  EXPECT_EQ(AnswerCompactionProbes(c, m.rev()), 1);
  EXPECT_EQ(cache_->TEST_stats("/cfg/").window_start, c - 1);
}

TEST_F(PrefixCacheTest, WithoutACompactionTheCheckChangesNothing) {
  std::mt19937 rng(Seed());
  Model m = Initial(3);
  const int64_t loaded = m.rev();
  FakeWatch* w = Load(m);
  for (int i = 0; i < 20; ++i) Step(&m, w, &rng);
  w->Progress(m.rev());
  for (int round = 0; round < 3; ++round) {
    clock_.Advance(opts_.compaction_check_interval);
    cache_->Tick();
    // One probe per interval, at the window start.
    ASSERT_EQ(up_.ranges.size(), 1u);
    EXPECT_EQ(up_.ranges.front().req.revision(), loaded);
    EXPECT_EQ(AnswerCompactionProbes(0, m.rev()), 1);
    EXPECT_EQ(cache_->TEST_stats("/cfg/").window_start, loaded);
  }
  auto res = Read(Req("/cfg/", "/cfg0", loaded));
  ASSERT_TRUE(res->done);
  ExpectSame(res->resp, m.Expect(Req("/cfg/", "/cfg0"), loaded), "at W");
  EXPECT_TRUE(cache_->Subscribe("/cfg/k1", "", std::make_shared<FakeSub>(),
                                loaded + 1));
  // A probe the member cannot answer changes nothing either.
  clock_.Advance(opts_.compaction_check_interval);
  cache_->Tick();
  AnswerRange(common::ToGrpcStatus(absl::UnavailableError("no leader")));
  EXPECT_TRUE(up_.ranges.empty());
  EXPECT_EQ(cache_->TEST_stats("/cfg/").window_start, loaded);
}

// When the search runs out of probes the mark is raised at or above C:
// a few revisions too many are left to the member, none too few.
TEST_F(PrefixCacheTest, TheCompactionCheckSendsABoundedNumberOfProbes) {
  std::mt19937 rng(Seed());
  opts_.compaction_check_probes = 2;
  Model m = Initial(3);
  const int64_t loaded = m.rev();
  FakeWatch* w = Load(m);
  for (int i = 0; i < 100; ++i) Step(&m, w, &rng);
  w->Progress(m.rev());
  const int64_t c = loaded + 37;
  clock_.Advance(opts_.compaction_check_interval);
  cache_->Tick();
  EXPECT_EQ(AnswerCompactionProbes(c, m.rev()), 3);
  const int64_t mark = cache_->TEST_stats("/cfg/").window_start + 1;
  EXPECT_GE(mark, c);
  EXPECT_LE(mark, m.rev());
  Read(Req("/cfg/", "/cfg0", c - 1));
  EXPECT_EQ(up_.ranges.size(), 1u);  // forwarded
  up_.ranges.clear();
  EXPECT_FALSE(cache_->Subscribe("/cfg/k1", "", std::make_shared<FakeSub>(),
                                 c - 1));
}

// Over its budget the prefix falls back to per-range serving (its watchers
// stay live), says so in a metric, and serves again once it fits.
TEST_F(PrefixCacheTest, OverBudgetFallsBackThenRecoversWhenItFits) {
  opts_.max_prefix_bytes = 2000;
  Model m = Initial(4);
  FakeWatch* w = Load(m);
  auto sub = std::make_shared<FakeSub>();
  ASSERT_TRUE(cache_->Subscribe("/cfg/", "/cfg0", sub, 0));
  // A big value: over budget.
  w->Events({m.Step("/cfg/big", std::string(3000, 'x'), false)});
  auto st = cache_->TEST_stats("/cfg/");
  EXPECT_TRUE(st.fallback);
  EXPECT_EQ(st.bytes, 0u);
  EXPECT_NE(registry_.RenderText().find(
                "synod_proxy_prefix_cache_fallback{prefix=\"/cfg/\"} 1"),
            std::string::npos);
  bool handled = true;
  Read(Req("/cfg/k1"), "", &handled);
  EXPECT_FALSE(handled);
  EXPECT_FALSE(cache_->Subscribe("/cfg/k1", "", std::make_shared<FakeSub>(), 0));
  // Its watcher still gets live events from the prefix watch.
  w->Events({m.Step("/cfg/k1", "after", false)});
  EXPECT_EQ(sub->events.size(), 2u);
  // The retry still does not fit: backoff doubles.
  cache_->Tick();
  EXPECT_TRUE(up_.ranges.empty());
  clock_.Advance(opts_.retry_min);
  cache_->Tick();
  ASSERT_FALSE(up_.ranges.empty());
  AnswerPage(m.At(m.rev()), m.rev());
  while (!up_.ranges.empty()) AnswerPage(m.At(m.rev()), m.rev());
  EXPECT_TRUE(cache_->TEST_stats("/cfg/").fallback);
  // The big key goes; the next retry fits and serves again, on the same
  // prefix watch.
  w->Events({m.Step("/cfg/big", "", true)});
  clock_.Advance(opts_.retry_min);
  cache_->Tick();
  EXPECT_TRUE(up_.ranges.empty());  // backoff is 2 s now
  clock_.Advance(opts_.retry_min);
  cache_->Tick();
  ASSERT_FALSE(up_.ranges.empty());
  // An event arrives during the load: applied after it.
  mvccpb::Event during = m.Step("/cfg/k3", "during", false);
  while (!up_.ranges.empty()) AnswerPage(m.At(m.rev() - 1), m.rev() - 1);
  w->Events({during});
  EXPECT_TRUE(cache_->TEST_stats("/cfg/").live);
  EXPECT_EQ(up_.watches.size(), 1u);
  auto res = Read(Req("/cfg/", "/cfg0"));
  EXPECT_FALSE(res->done);  // no progress answer for 4 s: asks for one
  w->Progress(m.rev());
  ASSERT_TRUE(res->done);
  ExpectSame(res->resp, m.Expect(Req("/cfg/", "/cfg0"), m.rev()), "after");
  EXPECT_EQ(sub->Revs().back(), m.rev());
}

TEST_F(PrefixCacheTest, TooBigToLoadFallsBackAndDropsTheWatch) {
  opts_.max_prefix_bytes = 300;
  Model m = Initial(8);
  Make();
  cache_->Start();
  while (!up_.ranges.empty()) AnswerPage(m.At(m.rev()), m.rev());
  EXPECT_TRUE(cache_->TEST_stats("/cfg/").fallback);
  EXPECT_TRUE(cache_->Settled());
  EXPECT_EQ(up_.watches.size(), 0u);
}

TEST_F(PrefixCacheTest, TotalBudgetCountsEveryPrefix) {
  opts_.max_total_bytes = 700;
  cache_ = std::make_unique<PrefixCache>(
      std::vector<std::string>{"/a/", "/cfg/"}, &hub_, &up_, &perms_,
      &clock_, opts_, nullptr, &registry_);
  Model m = Initial(4);
  cache_->Start();
  // /a/ is empty, /cfg/ holds 4 keys.
  while (!up_.ranges.empty()) AnswerPage(m.At(m.rev()), m.rev());
  EXPECT_TRUE(cache_->TEST_stats("/a/").live);
  EXPECT_TRUE(cache_->TEST_stats("/cfg/").live);
  FakeWatch* w = nullptr;
  for (auto& x : up_.watches) {
    if (x->create.key() == "/cfg/") w = x.get();
  }
  ASSERT_NE(w, nullptr);
  w->Created(m.rev());
  w->Events({m.Step("/cfg/k9", std::string(400, 'y'), false)});
  EXPECT_TRUE(cache_->TEST_stats("/cfg/").fallback);
  EXPECT_TRUE(cache_->TEST_stats("/a/").live);
}

class PrefixCacheAuthTest : public PrefixCacheTest {
 protected:
  PrefixCacheAuthTest() {
    perms_.SetAuthState(
        UpstreamAuthState{/*known=*/true, /*enabled=*/true, /*revision=*/1});
  }
};

TEST_F(PrefixCacheAuthTest, ReadsAreServedOnlyToCallersAllowedTheirRange) {
  Model m = Initial(2);
  Load(m);
  auto denied = Read(Req("/cfg/k0"), "eve");
  ASSERT_EQ(up_.ranges.size(), 1u);  // the permission probe, as eve
  EXPECT_EQ(up_.ranges.front().as.token, "eve");
  EXPECT_EQ(up_.ranges.front().req.key(), "/cfg/k0");
  AnswerRange(Denied());
  ASSERT_TRUE(denied->done);
  EXPECT_EQ(denied->status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied->resp.kvs_size(), 0);
  // A past revision needs the permission too.
  auto past = Read(Req("/cfg/k0", "", m.rev()), "eve");
  ASSERT_TRUE(past->done);  // the decision is kept
  EXPECT_FALSE(past->status.ok());
  auto ok = Read(Req("/cfg/k0"), "alice");
  RangeResponse pr;
  *pr.mutable_header() = testing::Header(m.rev());
  AnswerRange(grpc::Status::OK, pr);
  ASSERT_TRUE(ok->done);
  ASSERT_TRUE(ok->status.ok());
  EXPECT_EQ(ok->resp.kvs(0).value(), "init0");
}

// With auth on and nothing cached: one permission probe per caller and
// range (serializable, with its token), still at most two revision reads;
// later reads of the same callers need no probe.
TEST_F(PrefixCacheAuthTest, LinearizableReadsCheckPermissionsThenShareRevisions) {
  Model m = Initial(4);
  Load(m);
  constexpr int kReads = 50;
  auto read_all = [&] {
    std::vector<std::shared_ptr<Result>> rs;
    for (int i = 0; i < kReads; ++i) {
      rs.push_back(Read(Req("/cfg/k" + std::to_string(i), "", 0, false),
                        "svc" + std::to_string(i)));
    }
    return rs;
  };
  auto rs = read_all();
  ASSERT_EQ(up_.ranges.size(), static_cast<size_t>(kReads));
  while (!up_.ranges.empty()) {
    FakeUpstream::RangeCall c = std::move(up_.ranges.front());
    up_.ranges.pop_front();
    EXPECT_TRUE(c.as.client);
    EXPECT_TRUE(c.req.serializable());
    EXPECT_TRUE(c.req.count_only());
    c.done(grpc::Status::OK, RangeResponse());
  }
  while (!up_.quorum_reads.empty()) AnswerRevision(m.rev());
  EXPECT_EQ(revision_reads_, 2);
  for (const auto& r : rs) {
    ASSERT_TRUE(r->done);
    EXPECT_TRUE(r->status.ok());
  }
  rs = read_all();
  EXPECT_TRUE(up_.ranges.empty());  // decisions kept
  while (!up_.quorum_reads.empty()) AnswerRevision(m.rev());
  EXPECT_EQ(revision_reads_, 4);  // two more
  for (const auto& r : rs) EXPECT_TRUE(r->done);
  // A refusal is the member's, and no revision read is made for it.
  auto denied = Read(Req("/cfg/k0", "", 0, false), "eve");
  ASSERT_EQ(up_.ranges.size(), 1u);
  AnswerRange(Denied());
  ASSERT_TRUE(denied->done);
  EXPECT_EQ(denied->status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(up_.quorum_reads.empty());
}

TEST_F(PrefixCacheAuthTest, ALoadTheProxyMayNotMakeIsRetriedWithBackoff) {
  Model m = Initial(2);
  Make();
  cache_->Start();
  ASSERT_EQ(up_.ranges.size(), 1u);
  AnswerRange(Denied());
  EXPECT_FALSE(cache_->TEST_stats("/cfg/").live);
  EXPECT_TRUE(cache_->Settled());
  bool handled = true;
  Read(Req("/cfg/k0"), "", &handled);
  EXPECT_FALSE(handled);
  cache_->Tick();
  EXPECT_TRUE(up_.ranges.empty());
  clock_.Advance(opts_.retry_min);
  cache_->Tick();
  EXPECT_EQ(up_.ranges.size(), 1u);
}

TEST_F(PrefixCacheTest, WatchersLearnProgressMadeByOtherKeysEvents) {
  Model m = Initial(2);
  FakeWatch* w = Load(m);
  auto sub = std::make_shared<FakeSub>();
  ASSERT_TRUE(cache_->Subscribe("/cfg/k0", "", sub, 0));
  w->Events({m.Step("/cfg/k1", "other", false)});
  EXPECT_TRUE(sub->events.empty());
  w->Progress(m.rev());
  EXPECT_EQ(sub->status.progress, m.rev());
  EXPECT_TRUE(sub->status.healthy);
}

// Through the Watch service: client watchers of keys and sub-ranges of a
// cached prefix, with filters and prev_kv, all on the prefix's one watch.
TEST_F(PrefixCacheTest, WatchServiceServesFiltersAndPrevKvFromThePrefix) {
  Model m = Initial(3);
  const int64_t loaded = m.rev();
  FakeWatch* w = Load(m);
  WatchProxyOptions o;
  o.prefixes = cache_.get();
  WatchProxy proxy(&hub_, &perms_, &clock_, o, nullptr);
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&proxy);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  auto stub = etcdserverpb::Watch::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = stub->Watch(&ctx);
  auto create = [&](int64_t id, const std::string& key, const std::string& end,
                    int64_t start, bool prev_kv,
                    etcdserverpb::WatchCreateRequest::FilterType filter) {
    etcdserverpb::WatchRequest r;
    auto* c = r.mutable_create_request();
    c->set_watch_id(id);
    c->set_key(key);
    c->set_range_end(end);
    c->set_start_revision(start);
    c->set_prev_kv(prev_kv);
    c->add_filters(filter);
    ASSERT_TRUE(stream->Write(r));
  };
  create(1, "/cfg/k0", "", 0, true, etcdserverpb::WatchCreateRequest::NODELETE);
  create(2, "/cfg/k1", "", 0, false, etcdserverpb::WatchCreateRequest::NOPUT);
  create(3, "/cfg/k0", "/cfg/k9", loaded + 1, false,
         etcdserverpb::WatchCreateRequest::NOPUT);
  etcdserverpb::WatchResponse resp;
  for (int created = 0; created < 3;) {
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_TRUE(resp.created());
    EXPECT_EQ(resp.header().revision(), loaded);
    ++created;
  }
  // A put and a delete of k0, then of k1: each watcher gets what its
  // filter lets through, with prev_kv if it asked.
  w->Events({m.Step("/cfg/k0", "p0", false)});
  w->Events({m.Step("/cfg/k0", "", true)});
  w->Events({m.Step("/cfg/k1", "p1", false)});
  w->Events({m.Step("/cfg/k1", "", true)});
  std::map<int64_t, std::vector<mvccpb::Event>> got;
  while (got[1].size() + got[2].size() + got[3].size() < 4) {
    ASSERT_TRUE(stream->Read(&resp));
    for (const auto& e : resp.events()) got[resp.watch_id()].push_back(e);
  }
  ASSERT_EQ(got[1].size(), 1u);
  EXPECT_EQ(got[1][0].type(), mvccpb::Event::PUT);
  EXPECT_EQ(got[1][0].prev_kv().value(), "init0");
  ASSERT_EQ(got[2].size(), 1u);
  EXPECT_EQ(got[2][0].type(), mvccpb::Event::DELETE);
  EXPECT_FALSE(got[2][0].has_prev_kv());
  ASSERT_EQ(got[3].size(), 2u);  // the deletes of k0 and k1
  EXPECT_EQ(got[3][0].kv().key(), "/cfg/k0");
  EXPECT_EQ(got[3][1].kv().key(), "/cfg/k1");
  EXPECT_EQ(up_.watches.size(), 1u);
  EXPECT_EQ(cache_->TEST_stats("/cfg/").subscribers, 3u);
  stream->WritesDone();
  ctx.TryCancel();
  stream->Finish().ok();
  server->Shutdown();
  EXPECT_EQ(cache_->TEST_stats("/cfg/").subscribers, 0u);
}

}  // namespace
}  // namespace synod::proxy
