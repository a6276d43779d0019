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
//
//   BM_NotifyPrevKvWatchers/<N>/<S>: the apply side of one revision with N
//     prev_kv watchers spread over S gRPC watch streams of a real member
//     (EtcdServer + WatchService on 127.0.0.1, clients draining every
//     stream). Only WatchableStore::Notify is timed: what the apply thread
//     spends, under the store's lock, handing one overwrite of "hot" to the
//     watchers. Deliver only queues; the prev_kv reads (one LevelDB read per
//     watcher, issue 10 item 7) run on the streams' send paths, untimed but
//     competing for the same cores. The value at the previous revision was
//     just written, so it is in LevelDB's memtable: the cheapest read there
//     is. Between iterations (untimed) every client receives the event with
//     its prev_kv, so no queue fills and no watcher turns victim.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "backend/mvcc/kv_store.h"
#include "backend/mvcc/watchable_store.h"
#include "backend/server/etcd_server.h"
#include "backend/server/services.h"
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

namespace synod::server {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

// A member with its Watch service on 127.0.0.1 and `streams` client watch
// streams holding `watchers` prev_kv watchers on "hot" between them, each
// stream drained by its own reader thread.
class PrevKvFixture {
 public:
  PrevKvFixture(int watchers, int streams) {
    char tmpl[] = "/tmp/synod_watch_bench_XXXXXX";
    if (mkdtemp(tmpl) == nullptr) abort();
    dir_ = tmpl;
    ServerConfig cfg;
    cfg.data_dir = dir_ + "/data";
    cfg.run_timer_thread = false;
    auto s = EtcdServer::Open(cfg, &clock_);
    if (!s.ok()) abort();
    server_ = std::move(*s);
    service_ = std::make_unique<WatchService>(server_.get());
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port);
    b.RegisterService(service_.get());
    grpc_ = b.BuildAndStart();
    if (grpc_ == nullptr) abort();
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                       grpc::InsecureChannelCredentials());
    stub_ = etcdserverpb::Watch::NewStub(channel);
    for (int i = 0; i < streams; ++i) {
      auto st = std::make_unique<Stream>();
      st->stream = stub_->Watch(&st->ctx);
      const int mine = watchers / streams + (i < watchers % streams ? 1 : 0);
      for (int w = 0; w < mine; ++w) {
        WatchRequest req;
        req.mutable_create_request()->set_key("hot");
        req.mutable_create_request()->set_prev_kv(true);
        if (!st->stream->Write(req)) abort();
        WatchResponse r;
        if (!st->stream->Read(&r) || !r.created()) abort();
      }
      Stream* raw = st.get();
      st->reader = std::thread([this, raw] { ReadLoop(raw); });
      streams_.push_back(std::move(st));
    }
    // Two revisions of "hot" (2 and 3), so an overwrite at 3 has a prev_kv;
    // every watcher gets both before the benchmark starts.
    Put("hot", kValue);
    Put("hot", kValue);
    WaitForEvents(2 * int64_t{watchers});
    absl::MutexLock l(&mu_);
    received_ = 0;
    missing_prev_kv_ = 0;
  }
  ~PrevKvFixture() {
    for (auto& st : streams_) st->stream->WritesDone();
    for (auto& st : streams_) {
      st->reader.join();
      st->stream->Finish();
    }
    grpc_->Shutdown();
    server_->Stop();
    std::filesystem::remove_all(dir_);
  }

  // Hands the store one more overwrite of "hot" at revision 3, as the apply
  // thread would. Returns the seconds Notify took.
  double NotifyOverwrite() {
    std::vector<mvccpb::Event> events(1);
    mvccpb::Event& ev = events[0];
    ev.set_type(mvccpb::Event::PUT);
    mvccpb::KeyValue* kv = ev.mutable_kv();
    kv->set_key("hot");
    kv->set_value(kValue);
    kv->set_create_revision(2);
    kv->set_mod_revision(3);
    kv->set_version(2);
    const auto start = std::chrono::steady_clock::now();
    server_->watchable()->Notify(events, 3);
    const auto end = std::chrono::steady_clock::now();
    return std::chrono::duration<double>(end - start).count();
  }

  // Waits until the clients have received `n` events in total, each with
  // its prev_kv.
  void WaitForEvents(int64_t n) {
    absl::MutexLock l(&mu_);
    target_ = n;
    mu_.Await(absl::Condition(
        +[](PrevKvFixture* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu_) {
          return f->received_ >= f->target_;
        },
        this));
  }
  int64_t MissingPrevKv() {
    absl::MutexLock l(&mu_);
    return missing_prev_kv_;
  }

 private:
  struct Stream {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<WatchRequest, WatchResponse>>
        stream;
    std::thread reader;
  };

  void Put(const std::string& k, const std::string& v) {
    synodpb::Request req;
    req.mutable_put()->set_key(k);
    req.mutable_put()->set_value(v);
    etcdserverpb::PutResponse resp;
    absl::Notification done;
    server_->Propose(std::move(req), &resp, [&](absl::Status st) {
      if (!st.ok()) abort();
      done.Notify();
    });
    done.WaitForNotification();
  }

  void ReadLoop(Stream* st) {
    WatchResponse r;
    while (st->stream->Read(&r)) {
      absl::MutexLock l(&mu_);
      for (const auto& ev : r.events()) {
        ++received_;
        if (ev.prev_kv().mod_revision() != 2) ++missing_prev_kv_;
      }
    }
  }

  static inline const std::string kValue = std::string(256, 'v');
  std::string dir_;
  common::FakeClock clock_;
  std::unique_ptr<EtcdServer> server_;
  std::unique_ptr<WatchService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<etcdserverpb::Watch::Stub> stub_;
  std::vector<std::unique_ptr<Stream>> streams_;
  absl::Mutex mu_;
  int64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t target_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t missing_prev_kv_ ABSL_GUARDED_BY(mu_) = 0;
};

void BM_NotifyPrevKvWatchers(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int streams = static_cast<int>(state.range(1));
  PrevKvFixture f(n, streams);
  int64_t expected = 0;
  for (auto _ : state) {
    expected += n;
    state.SetIterationTime(f.NotifyOverwrite());
    f.WaitForEvents(expected);
  }
  if (f.MissingPrevKv() != 0) abort();
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_NotifyPrevKvWatchers)
    ->ArgNames({"watchers", "streams"})
    ->Args({1, 1})
    ->Args({100, 1})
    ->Args({100, 100})
    ->Args({1000, 10})
    ->UseManualTime();

}  // namespace
}  // namespace synod::server

SYNOD_BENCHMARK_MAIN();
