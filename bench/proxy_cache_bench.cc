// synod-proxy RangeCache micro-benchmarks: a cache hit, end to end through
// RangeCache::Range (lookup, freshness checks, LRU touch, ComputeRange, the
// response), on a warm cache fed by an in-process fake upstream. No gRPC and
// no threads: the figures are the proxy's CPU per cached read. Mutex
// deadlock detection is off here (bench_main.h); synod-proxy as built today
// leaves it on, which adds a lock-graph update to every RangeCache lock.
//
//   BM_CachedGetOneKey/<ranges>: serializable single-key reads spread over
//     `ranges` cached single-key ranges (the key picked from a fixed list).
//   BM_CachedPrefix/<keys>: a serializable read of a cached prefix holding
//     `keys` keys (items = keys returned).
//   BM_ComputeRange/<keys>: ComputeRange alone on a map of `keys` keys
//     (the filtering/sorting/limit core of every hit).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_main.h"
#include "benchmark/benchmark.h"
#include "common/clock.h"
#include "proxy/range_cache.h"
#include "proxy/upstream.h"
#include "proxy/watch_hub.h"

namespace synod::proxy {
namespace {

using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;

etcdserverpb::ResponseHeader Header(int64_t rev) {
  etcdserverpb::ResponseHeader h;
  h.set_cluster_id(7);
  h.set_member_id(9);
  h.set_raft_term(1);
  h.set_revision(rev);
  return h;
}

// An upstream that records what the proxy asks for; the benchmark plays
// the member synchronously. Single-threaded.
class BenchUpstream final : public Upstream {
 public:
  class Stream final : public UpstreamWatch {
   public:
    void RequestProgress() override {}
    void Close() override {}
    UpstreamWatchCallbacks cb;
  };
  class NoKeepAlive final : public UpstreamKeepAlive {
   public:
    void Send(int64_t) override {}
    void Close() override {}
  };
  using RangeDone =
      std::function<void(const grpc::Status&, const RangeResponse&)>;

  std::shared_ptr<UpstreamWatch> Watch(
      const etcdserverpb::WatchCreateRequest& create,
      UpstreamWatchCallbacks callbacks) override {
    auto w = std::make_shared<Stream>();
    w->cb = std::move(callbacks);
    watches.push_back(w);
    return w;
  }
  std::shared_ptr<UpstreamKeepAlive> KeepAlive(
      UpstreamKeepAliveCallbacks) override {
    return std::make_shared<NoKeepAlive>();
  }
  void CurrentRevision(
      const std::string&,
      std::function<void(absl::StatusOr<int64_t>)> done) override {
    done(int64_t{10});
  }
  void Range(const RangeRequest& req, const CallAs&,
             RangeDone done) override {
    ranges.emplace_back(req, std::move(done));
  }
  void AuthStatus(
      std::function<void(absl::StatusOr<UpstreamAuthState>)> done) override {
    done(UpstreamAuthState());
  }

  std::vector<std::shared_ptr<Stream>> watches;
  std::deque<std::pair<RangeRequest, RangeDone>> ranges;
};

mvccpb::KeyValue Kv(const std::string& k, int64_t rev) {
  mvccpb::KeyValue kv;
  kv.set_key(k);
  kv.set_value(std::string(256, 'v'));
  kv.set_mod_revision(rev);
  kv.set_create_revision(rev);
  kv.set_version(1);
  return kv;
}

std::string KeyName(int i) {
  char buf[32];
  snprintf(buf, sizeof(buf), "key/%06d", i);
  return buf;
}

// A RangeCache with a WatchHub on a BenchUpstream and a FakeClock (time
// stands still, so a range that had its progress answered stays fresh).
class WarmCache {
 public:
  WarmCache()
      : hub_(&up_, &clock_, WatchRangeOptions(), absl::Seconds(30), nullptr),
        perms_(&up_, &clock_, PermissionCacheOptions()) {
    // Auth off: anonymous reads need no permission probe.
    UpstreamAuthState off;
    off.known = true;
    perms_.SetAuthState(off);
    RangeCacheOptions o;
    o.max_bytes = size_t{1} << 30;
    o.max_ranges = 100000;
    cache_ = std::make_unique<RangeCache>(&hub_, &up_, &perms_, &clock_, o,
                                          nullptr);
  }

  // Reads `req` once (forwarded; the cache loads the range at revision 10
  // with `kvs`), then answers its watch as created and fresh.
  void Warm(RangeRequest req, const std::vector<mvccpb::KeyValue>& kvs) {
    req.set_serializable(false);
    bool done = false;
    cache_->Range(req, "",
                  [&done](const grpc::Status&, const RangeResponse&) {
                    done = true;
                  });
    const size_t watches_before = up_.watches.size();
    while (!up_.ranges.empty()) {  // the forwarded read, then the load
      auto [r, d] = std::move(up_.ranges.front());
      up_.ranges.pop_front();
      RangeResponse resp;
      *resp.mutable_header() = Header(10);
      for (const auto& kv : kvs) *resp.add_kvs() = kv;
      resp.set_count(resp.kvs_size());
      d(grpc::Status::OK, resp);
    }
    if (!done || up_.watches.size() != watches_before + 1) abort();
    auto& cb = up_.watches.back()->cb;
    etcdserverpb::WatchResponse created;
    created.set_created(true);
    created.set_watch_id(0);
    *created.mutable_header() = Header(10);
    cb.on_response(created);
    etcdserverpb::WatchResponse progress;
    progress.set_watch_id(-1);
    *progress.mutable_header() = Header(10);
    cb.on_response(progress);
  }

  // A serializable read that must be a hit (no upstream call).
  void Hit(const RangeRequest& req, int expect_kvs) {
    bool done = false;
    int n = -1;
    cache_->Range(req, "",
                  [&](const grpc::Status& s, const RangeResponse& r) {
                    done = s.ok();
                    n = r.kvs_size();
                  });
    if (!done || n != expect_kvs || !up_.ranges.empty()) {
      fprintf(stderr, "not a cache hit (done %d, kvs %d, forwarded %zu)\n",
              done, n, up_.ranges.size());
      abort();
    }
  }

 private:
  BenchUpstream up_;
  common::FakeClock clock_;
  WatchHub hub_;
  PermissionCache perms_;
  std::unique_ptr<RangeCache> cache_;
};

void BM_CachedGetOneKey(benchmark::State& state) {
  const int ranges = static_cast<int>(state.range(0));
  WarmCache c;
  std::vector<RangeRequest> reqs(ranges);
  for (int i = 0; i < ranges; ++i) {
    reqs[i].set_key(KeyName(i));
    c.Warm(reqs[i], {Kv(KeyName(i), 10)});
    reqs[i].set_serializable(true);
  }
  std::mt19937 rng(7);  // fixed seed: the same probe order every run
  std::vector<int> probes(1024);
  for (int& p : probes) p = static_cast<int>(rng() % ranges);
  size_t i = 0;
  for (auto _ : state) c.Hit(reqs[probes[i++ & 1023]], 1);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CachedGetOneKey)->Arg(1)->Arg(1000);

void BM_CachedPrefix(benchmark::State& state) {
  const int keys = static_cast<int>(state.range(0));
  WarmCache c;
  RangeRequest req;
  req.set_key("key/");
  req.set_range_end("key0");  // the prefix "key/"
  std::vector<mvccpb::KeyValue> kvs;
  for (int i = 0; i < keys; ++i) kvs.push_back(Kv(KeyName(i), 10));
  c.Warm(req, kvs);
  req.set_serializable(true);
  for (auto _ : state) c.Hit(req, keys);
  state.SetItemsProcessed(state.iterations() * keys);
}
BENCHMARK(BM_CachedPrefix)->Arg(10)->Arg(100);

void BM_ComputeRange(benchmark::State& state) {
  const int keys = static_cast<int>(state.range(0));
  std::map<std::string, mvccpb::KeyValue> data;
  for (int i = 0; i < keys; ++i) data[KeyName(i)] = Kv(KeyName(i), 10);
  RangeRequest req;
  req.set_key("key/");
  req.set_range_end("key0");
  for (auto _ : state) {
    RangeResponse resp;
    ComputeRange(req, data, &resp);
    if (resp.kvs_size() != keys) abort();
    benchmark::DoNotOptimize(resp);
  }
  state.SetItemsProcessed(state.iterations() * keys);
}
BENCHMARK(BM_ComputeRange)->Arg(1)->Arg(100);

}  // namespace
}  // namespace synod::proxy

SYNOD_BENCHMARK_MAIN();
