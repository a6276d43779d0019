// Watch fan-out micro-benchmarks: WatchableStore::Notify handing one
// revision (one put of a 256 B value) to N synced watchers, each with its
// own sink (a counting sink that always has room, standing in for a gRPC
// watch stream). The KvStore under it is on an in-memory LevelDB Env and
// is never read: synced watchers are fed by Notify alone.
//
//   BM_NotifyKeyWatchers/<N>: N watchers on the key that changes (plus
//     1,000 watchers on other keys that must not be touched).
//   BM_NotifyRangeWatchers/<N>: N watchers on a prefix holding the key.
// items_per_second is events delivered (revisions x N).
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "backend/mvcc/kv_store.h"
#include "backend/mvcc/watchable_store.h"
#include "backend/storage/backend.h"
#include "bench/bench_main.h"
#include "benchmark/benchmark.h"
#include "common/key_range.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"

namespace synod::mvcc {
namespace {

class CountingSink final : public WatchSink {
 public:
  bool Deliver(int64_t, std::vector<mvccpb::Event>* events,
               int64_t) override {
    delivered += static_cast<int64_t>(events->size());
    return true;
  }
  void Compacted(int64_t, int64_t) override {}
  int64_t delivered = 0;
};

class Fixture {
 public:
  Fixture() : env_(leveldb::NewMemEnv(leveldb::Env::Default())) {
    storage::BackendOptions opts;
    opts.env = env_.get();
    auto b = storage::Backend::Open("/watch_bench", opts);
    if (!b.ok()) abort();
    backend_ = std::move(*b);
    auto kv = KvStore::Open(backend_.get());
    if (!kv.ok()) abort();
    kv_ = std::move(*kv);
    ws_ = std::make_unique<WatchableStore>(kv_.get());
    rev_ = kv_->Rev();
  }
  ~Fixture() {
    for (uint64_t h : handles_) ws_->Cancel(h);
    ws_.reset();
  }

  void AddWatchers(int n, const std::string& key, const std::string& end) {
    WatchSpec spec;
    spec.key = key;
    spec.range_end = end;
    for (int i = 0; i < n; ++i) {
      sinks_.push_back(std::make_unique<CountingSink>());
      handles_.push_back(ws_->Watch(sinks_.back().get(), i, spec));
    }
  }

  // One put of `key` at the next revision, as the apply thread publishes it.
  void NotifyPut(const std::string& key, const std::string& value) {
    ++rev_;
    events_.resize(1);
    mvccpb::Event& ev = events_[0];
    ev.set_type(mvccpb::Event::PUT);
    mvccpb::KeyValue* kv = ev.mutable_kv();
    kv->set_key(key);
    kv->set_value(value);
    kv->set_create_revision(2);
    kv->set_mod_revision(rev_);
    kv->set_version(rev_);
    ws_->Notify(events_, rev_);
  }

  int64_t Delivered() const {
    int64_t n = 0;
    for (const auto& s : sinks_) n += s->delivered;
    return n;
  }

 private:
  std::unique_ptr<leveldb::Env> env_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<KvStore> kv_;
  std::unique_ptr<WatchableStore> ws_;
  std::vector<std::unique_ptr<CountingSink>> sinks_;
  std::vector<uint64_t> handles_;
  std::vector<mvccpb::Event> events_;
  int64_t rev_ = 0;
};

const std::string kValue(256, 'v');

void BM_NotifyKeyWatchers(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Fixture f;
  f.AddWatchers(n, "hot", "");
  for (int i = 0; i < 1000; ++i) f.AddWatchers(1, "cold/" + std::to_string(i), "");
  for (auto _ : state) f.NotifyPut("hot", kValue);
  if (f.Delivered() != state.iterations() * n) abort();
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_NotifyKeyWatchers)->Arg(1)->Arg(100)->Arg(10000);

void BM_NotifyRangeWatchers(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Fixture f;
  f.AddWatchers(n, "p/", common::PrefixEnd("p/"));
  for (auto _ : state) f.NotifyPut("p/hot", kValue);
  if (f.Delivered() != state.iterations() * n) abort();
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_NotifyRangeWatchers)->Arg(1)->Arg(100);

}  // namespace
}  // namespace synod::mvcc

SYNOD_BENCHMARK_MAIN();
