// MVCC micro-benchmarks: KvStore writes, reads and txns on a real LevelDB
// directory (under /tmp, removed afterwards) and on an in-memory Env, plus
// the KeyIndex and revision-key primitives underneath.
//
// Put/<N>: one WriteTxn per put and one synced Commit every N puts, so N=1
// versus N=64 shows what group commit buys (on disk the fsync dominates).
// KvStore benchmarks use wall time, since an fsync costs little CPU.
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <utility>

#include "backend/mvcc/key_index.h"
#include "backend/mvcc/kv_store.h"
#include "backend/storage/backend.h"
#include "backend/storage/schema.h"
#include "bench/bench_main.h"
#include "benchmark/benchmark.h"
#include "common/key_range.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"

namespace synod::mvcc {
namespace {

// A KvStore on a fresh Backend: a temp dir on disk, or a memory Env.
class BenchStore {
 public:
  explicit BenchStore(bool disk) {
    storage::BackendOptions opts;
    if (disk) {
      char tmpl[] = "/tmp/synod_mvcc_bench.XXXXXX";
      if (mkdtemp(tmpl) == nullptr) abort();
      path_ = tmpl;
    } else {
      mem_env_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
      opts.env = mem_env_.get();
      path_ = "/bench";
    }
    auto b = storage::Backend::Open(path_, opts);
    if (!b.ok()) abort();
    backend_ = std::move(*b);
    auto s = KvStore::Open(backend_.get());
    if (!s.ok()) abort();
    kv_ = std::move(*s);
  }
  ~BenchStore() {
    kv_.reset();
    backend_.reset();
    if (mem_env_ == nullptr) std::filesystem::remove_all(path_);
  }

  KvStore* kv() { return kv_.get(); }

  void StagePut(const std::string& key, const std::string& value) {
    etcdserverpb::PutRequest r;
    r.set_key(key);
    r.set_value(value);
    etcdserverpb::PutResponse resp;
    auto t = kv_->Write();
    if (!t->Put(r, &resp).ok()) abort();
  }
  void Commit() {
    if (!kv_->Commit(++applied_, nullptr).ok()) abort();
  }

 private:
  std::unique_ptr<leveldb::Env> mem_env_;
  std::string path_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<KvStore> kv_;
  uint64_t applied_ = 0;
};

std::string KeyName(int i) {
  char buf[32];
  snprintf(buf, sizeof(buf), "key/%06d", i);
  return buf;
}

const std::string kValue(128, 'v');

void BM_Put(benchmark::State& state, bool disk) {
  BenchStore s(disk);
  const int64_t group = state.range(0);
  int64_t pending = 0;
  int i = 0;
  for (auto _ : state) {
    s.StagePut(KeyName(i++ % 10000), kValue);
    if (++pending == group) {
      s.Commit();
      pending = 0;
    }
  }
  if (pending > 0) s.Commit();
  state.SetItemsProcessed(state.iterations());
  state.counters["commits"] = benchmark::Counter(
      static_cast<double>(state.iterations()) / static_cast<double>(group),
      benchmark::Counter::kIsRate);
}
BENCHMARK_CAPTURE(BM_Put, disk, true)->Arg(1)->Arg(64)->UseRealTime();
BENCHMARK_CAPTURE(BM_Put, mem, false)->Arg(1)->Arg(64)->UseRealTime();

// 1,000 keys "key/000000".. plus 100 keys under "p/".
void Preload(BenchStore* s) {
  for (int i = 0; i < 1000; ++i) s->StagePut(KeyName(i), kValue);
  for (int i = 0; i < 100; ++i) {
    char buf[16];
    snprintf(buf, sizeof(buf), "p/%03d", i);
    s->StagePut(buf, kValue);
  }
  s->Commit();
}

void BM_RangeOneKey(benchmark::State& state, bool disk) {
  BenchStore s(disk);
  Preload(&s);
  etcdserverpb::RangeRequest r;
  int i = 0;
  for (auto _ : state) {
    r.set_key(KeyName(i++ % 1000));
    etcdserverpb::RangeResponse resp;
    if (!s.kv()->Range(r, &resp).ok() || resp.kvs_size() != 1) abort();
    benchmark::DoNotOptimize(resp);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_RangeOneKey, disk, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_RangeOneKey, mem, false)->UseRealTime();

void BM_RangePrefix100(benchmark::State& state, bool disk) {
  BenchStore s(disk);
  Preload(&s);
  etcdserverpb::RangeRequest r;
  r.set_key("p/");
  r.set_range_end(common::PrefixEnd("p/"));
  for (auto _ : state) {
    etcdserverpb::RangeResponse resp;
    if (!s.kv()->Range(r, &resp).ok() || resp.kvs_size() != 100) abort();
    benchmark::DoNotOptimize(resp);
  }
  state.SetItemsProcessed(state.iterations() * 100);  // keys read
}
BENCHMARK_CAPTURE(BM_RangePrefix100, disk, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_RangePrefix100, mem, false)->UseRealTime();

// A txn comparing the key's version then putting it; commit every 64.
void BM_TxnComparePut(benchmark::State& state, bool disk) {
  BenchStore s(disk);
  Preload(&s);
  etcdserverpb::TxnRequest r;
  etcdserverpb::Compare* c = r.add_compare();
  c->set_target(etcdserverpb::Compare::VERSION);
  c->set_result(etcdserverpb::Compare::GREATER);
  c->set_version(0);
  etcdserverpb::PutRequest* p = r.add_success()->mutable_request_put();
  p->set_value(kValue);
  int i = 0;
  int pending = 0;
  for (auto _ : state) {
    const std::string key = KeyName(i++ % 1000);
    c->set_key(key);
    p->set_key(key);
    etcdserverpb::TxnResponse resp;
    {
      auto t = s.kv()->Write();
      if (!t->Txn(r, &resp).ok() || !resp.succeeded()) abort();
    }
    if (++pending == 64) {
      s.Commit();
      pending = 0;
    }
  }
  if (pending > 0) s.Commit();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_TxnComparePut, disk, true)->UseRealTime();
BENCHMARK_CAPTURE(BM_TxnComparePut, mem, false)->UseRealTime();

// KeyIndex::At on a key with 1,000 revisions in 10 generations.
void BM_KeyIndexAt(benchmark::State& state) {
  KeyIndex ki;
  for (int64_t rev = 2; rev < 1002; ++rev) {
    if (rev % 100 == 0) {
      ki.Tombstone(Revision{rev, 0});
    } else {
      ki.Put(Revision{rev, 0}, 0);
    }
  }
  std::mt19937 rng(42);  // fixed seed: the same probe sequence every run
  std::uniform_int_distribution<int64_t> pick(1, 1100);
  int64_t probes[1024];
  for (int64_t& p : probes) p = pick(rng);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ki.At(probes[i++ & 1023]));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_KeyIndexAt);

void BM_RevisionKeyEncodeDecode(benchmark::State& state) {
  int64_t main = 1, sub = 0;
  for (auto _ : state) {
    std::string k = storage::RevisionKey(main, sub);
    int64_t m, s;
    if (!storage::DecodeRevisionKey(k, &m, &s)) abort();
    main = m + 1;
    sub = s ^ 1;
    benchmark::DoNotOptimize(k);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RevisionKeyEncodeDecode);

}  // namespace
}  // namespace synod::mvcc

SYNOD_BENCHMARK_MAIN();
