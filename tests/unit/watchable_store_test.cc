#include "backend/mvcc/watchable_store.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "backend/mvcc/kv_store.h"
#include "backend/storage/backend.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"

namespace synod::mvcc {
namespace {

constexpr absl::Duration kDeadline = absl::Seconds(5);

// Records every call. When `accept` is false, Deliver refuses (returns false)
// and counts the refusal. Never calls into the store.
class FakeSink : public WatchSink {
 public:
  struct Delivery {
    int64_t watch_id;
    std::vector<mvccpb::Event> events;
    int64_t revision;
  };

  bool Deliver(int64_t watch_id, std::vector<mvccpb::Event>* events,
               int64_t revision) override {
    absl::MutexLock l(&mu_);
    if (!accept_) {
      ++refused_;
      return false;
    }
    deliveries_.push_back(Delivery{watch_id, std::move(*events), revision});
    events->clear();
    return true;
  }
  void Compacted(int64_t watch_id, int64_t compact_revision) override {
    absl::MutexLock l(&mu_);
    compacted_.emplace_back(watch_id, compact_revision);
  }

  void SetAccept(bool accept) {
    absl::MutexLock l(&mu_);
    accept_ = accept;
  }
  std::vector<Delivery> Deliveries() const {
    absl::MutexLock l(&mu_);
    return deliveries_;
  }
  std::vector<std::pair<int64_t, int64_t>> CompactedCalls() const {
    absl::MutexLock l(&mu_);
    return compacted_;
  }
  int Refused() const {
    absl::MutexLock l(&mu_);
    return refused_;
  }
  // Mod revisions of every delivered event, in delivery order.
  std::vector<int64_t> EventRevs() const {
    absl::MutexLock l(&mu_);
    std::vector<int64_t> out;
    for (const Delivery& d : deliveries_) {
      for (const auto& ev : d.events) out.push_back(ev.kv().mod_revision());
    }
    return out;
  }

  // Waits until the last delivery brings the watcher to `rev` or beyond.
  bool WaitForRevision(int64_t rev) const {
    absl::MutexLock l(&mu_);
    auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return !deliveries_.empty() && deliveries_.back().revision >= rev;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), kDeadline);
  }
  bool WaitForRefusals(int n) const {
    absl::MutexLock l(&mu_);
    auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return refused_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&done), kDeadline);
  }
  bool WaitForCompacted() const {
    absl::MutexLock l(&mu_);
    auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return !compacted_.empty();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), kDeadline);
  }

 private:
  mutable absl::Mutex mu_;
  bool accept_ ABSL_GUARDED_BY(mu_) = true;
  int refused_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Delivery> deliveries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int64_t, int64_t>> compacted_ ABSL_GUARDED_BY(mu_);
};

// Revisions from..to inclusive.
std::vector<int64_t> Seq(int64_t from, int64_t to) {
  std::vector<int64_t> out;
  for (int64_t r = from; r <= to; ++r) out.push_back(r);
  return out;
}

class WatchableStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
    storage::BackendOptions opts;
    opts.env = env_.get();
    auto b = storage::Backend::Open("/db", opts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
    auto s = KvStore::Open(backend_.get());
    ASSERT_TRUE(s.ok()) << s.status();
    kv_ = std::move(*s);
    ws_ = std::make_unique<WatchableStore>(kv_.get());
  }

  void TearDown() override {
    // Invariant: the store has notified everything that was published.
    if (ws_ != nullptr) {
      EXPECT_EQ(ws_->NotifiedRev(), kv_->Rev());
    }
    ws_.reset();  // stops the sync thread before the sinks go away
  }

  // Stages a put, without committing. Returns the revision.
  int64_t StagePut(const std::string& k, const std::string& v) {
    etcdserverpb::PutRequest r;
    r.set_key(k);
    r.set_value(v);
    etcdserverpb::PutResponse resp;
    auto t = kv_->Write();
    EXPECT_TRUE(t->Put(r, &resp).ok());
    return t->Rev();
  }
  void CommitAndNotify() {
    std::vector<mvccpb::Event> events;
    ASSERT_TRUE(kv_->Commit(++applied_, &events).ok());
    ws_->Notify(events, kv_->Rev());
  }
  int64_t Put(const std::string& k, const std::string& v) {
    const int64_t rev = StagePut(k, v);
    CommitAndNotify();
    return rev;
  }
  int64_t Delete(const std::string& k) {
    etcdserverpb::DeleteRangeRequest r;
    r.set_key(k);
    etcdserverpb::DeleteRangeResponse resp;
    auto t = kv_->Write();
    EXPECT_TRUE(t->DeleteRange(r, &resp).ok());
    const int64_t rev = t->Rev();
    t.reset();
    CommitAndNotify();
    return rev;
  }

  WatchSpec Key(const std::string& k, int64_t start = 0) {
    WatchSpec s;
    s.key = k;
    s.start_revision = start;
    return s;
  }
  WatchSpec Range(const std::string& k, const std::string& end,
                  int64_t start = 0) {
    WatchSpec s = Key(k, start);
    s.range_end = end;
    return s;
  }

  std::unique_ptr<leveldb::Env> env_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<KvStore> kv_;
  uint64_t applied_ = 0;
  // Declared after the store's dependencies; reset first in TearDown.
  std::unique_ptr<WatchableStore> ws_;
};

TEST_F(WatchableStoreTest, SyncedWatcherGetsEventsOfMatchingKeyOnNotify) {
  FakeSink sink;
  const uint64_t h = ws_->Watch(&sink, 7, Key("a"));
  EXPECT_EQ(ws_->WatcherCount(), 1u);
  EXPECT_EQ(ws_->UnsyncedCount(), 0u);
  const int64_t rev_a = Put("a", "1");
  Put("b", "1");
  // Notify delivers synchronously to synced watchers.
  std::vector<FakeSink::Delivery> d = sink.Deliveries();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].watch_id, 7);
  EXPECT_EQ(d[0].revision, rev_a);
  ASSERT_EQ(d[0].events.size(), 1u);
  EXPECT_EQ(d[0].events[0].type(), mvccpb::Event::PUT);
  EXPECT_EQ(d[0].events[0].kv().key(), "a");
  EXPECT_EQ(d[0].events[0].kv().value(), "1");
  EXPECT_EQ(ws_->Progress(h), kv_->Rev());
  EXPECT_EQ(ws_->NotifiedRev(), kv_->Rev());
}

TEST_F(WatchableStoreTest, NothingIsDeliveredBeforeNotify) {
  FakeSink sink;
  ws_->Watch(&sink, 1, Key("a"));
  StagePut("a", "1");
  std::vector<mvccpb::Event> events;
  ASSERT_TRUE(kv_->Commit(++applied_, &events).ok());
  EXPECT_TRUE(sink.Deliveries().empty());
  ws_->Notify(events, kv_->Rev());
  EXPECT_EQ(sink.EventRevs(), (std::vector<int64_t>{2}));
}

TEST_F(WatchableStoreTest, RangeWatcherGetsGroupCommittedRevisionsInOrder) {
  FakeSink sink;
  ws_->Watch(&sink, 1, Range("a", "c"));
  StagePut("a", "1");  // 2
  StagePut("z", "1");  // 3: outside the range
  StagePut("b", "1");  // 4
  CommitAndNotify();
  std::vector<FakeSink::Delivery> d = sink.Deliveries();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].revision, 4);
  EXPECT_EQ(sink.EventRevs(), (std::vector<int64_t>{2, 4}));
}

TEST_F(WatchableStoreTest, EventsOfOneTxnRevisionArriveTogether) {
  FakeSink sink;
  ws_->Watch(&sink, 1, Range("k", std::string(1, '\0')));
  etcdserverpb::TxnRequest r;
  for (const char* k : {"k1", "k2", "k3"}) {
    auto* p = r.add_success()->mutable_request_put();
    p->set_key(k);
    p->set_value("v");
  }
  etcdserverpb::TxnResponse resp;
  auto t = kv_->Write();
  ASSERT_TRUE(t->Txn(r, &resp).ok());
  t.reset();
  CommitAndNotify();
  std::vector<FakeSink::Delivery> d = sink.Deliveries();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].events.size(), 3u);
}

TEST_F(WatchableStoreTest, PastStartRevisionGetsHistoryThenLiveWithoutGap) {
  for (int i = 0; i < 50; ++i) Put("k" + std::to_string(i % 5), "h");
  const int64_t start = 10;
  FakeSink sink;
  const uint64_t h =
      ws_->Watch(&sink, 3, Range("k", std::string(1, '\0'), start));
  // Live writes race with the sync thread's replay of history.
  for (int i = 0; i < 200; ++i) Put("k" + std::to_string(i % 7), "live");
  const int64_t last = kv_->Rev();
  ASSERT_TRUE(sink.WaitForRevision(last))
      << "watcher stuck at " << ws_->Progress(h);
  EXPECT_EQ(sink.EventRevs(), Seq(start, last));
  for (const auto& d : sink.Deliveries()) EXPECT_EQ(d.watch_id, 3);
  EXPECT_EQ(ws_->Progress(h), last);
}

TEST_F(WatchableStoreTest, WatchFromPastSeesEachRevisionOnceWhenWritesStop) {
  Put("a", "1");
  Delete("a");
  Put("a", "2");
  FakeSink sink;
  ws_->Watch(&sink, 1, Key("a", 2));
  ASSERT_TRUE(sink.WaitForRevision(4));
  std::vector<FakeSink::Delivery> d = sink.Deliveries();
  std::vector<mvccpb::Event::EventType> types;
  for (const auto& del : d) {
    for (const auto& ev : del.events) types.push_back(ev.type());
  }
  EXPECT_EQ(types, (std::vector<mvccpb::Event::EventType>{mvccpb::Event::PUT,
                                                          mvccpb::Event::DELETE,
                                                          mvccpb::Event::PUT}));
  EXPECT_EQ(sink.EventRevs(), Seq(2, 4));
  // Caught up: later events come straight from Notify.
  Put("a", "3");
  EXPECT_EQ(sink.EventRevs(), Seq(2, 5));
}

TEST_F(WatchableStoreTest,
       RefusingSinkBecomesVictimAndLaterGetsEveryEventOnce) {
  FakeSink sink;
  const uint64_t h = ws_->Watch(&sink, 1, Key("a"));
  Put("a", "0");  // 2: accepted
  sink.SetAccept(false);
  Put("a", "1");  // 3: refused
  EXPECT_EQ(ws_->UnsyncedCount(), 1u);
  EXPECT_EQ(ws_->Progress(h), 2);
  for (int i = 0; i < 20; ++i) Put(i % 2 ? "a" : "other", "x");
  // The sync thread keeps offering history and keeps being refused.
  ASSERT_TRUE(sink.WaitForRefusals(3));
  EXPECT_EQ(sink.EventRevs(), (std::vector<int64_t>{2}));
  sink.SetAccept(true);
  ASSERT_TRUE(sink.WaitForRevision(kv_->Rev()));
  std::vector<int64_t> want = {2, 3};
  for (int64_t r = 5; r <= kv_->Rev(); r += 2) want.push_back(r);
  EXPECT_EQ(sink.EventRevs(), want);
  EXPECT_EQ(ws_->UnsyncedCount(), 0u);
  // Back in the synced group.
  const int64_t rev = Put("a", "again");
  want.push_back(rev);
  EXPECT_EQ(sink.EventRevs(), want);
}

TEST_F(WatchableStoreTest, VictimDoesNotDelayOtherWatchers) {
  FakeSink slow, fast;
  ws_->Watch(&slow, 1, Key("a"));
  ws_->Watch(&fast, 2, Key("a"));
  slow.SetAccept(false);
  Put("a", "1");
  Put("a", "2");
  EXPECT_EQ(fast.EventRevs(), (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(slow.EventRevs().empty());
  slow.SetAccept(true);
  ASSERT_TRUE(slow.WaitForRevision(3));
  EXPECT_EQ(slow.EventRevs(), (std::vector<int64_t>{2, 3}));
}

TEST_F(WatchableStoreTest, NoPutAndNoDeleteFilters) {
  FakeSink no_put, no_delete;
  WatchSpec s1 = Key("a");
  s1.no_put = true;
  WatchSpec s2 = Key("a");
  s2.no_delete = true;
  ws_->Watch(&no_put, 1, s1);
  ws_->Watch(&no_delete, 2, s2);
  Put("a", "1");                    // 2
  const int64_t del = Delete("a");  // 3
  Put("a", "2");                    // 4
  EXPECT_EQ(no_put.EventRevs(), (std::vector<int64_t>{del}));
  EXPECT_EQ(no_delete.EventRevs(), (std::vector<int64_t>{2, 4}));
}

TEST_F(WatchableStoreTest, FiltersApplyToHistoryReplay) {
  Put("a", "1");  // 2
  Delete("a");    // 3
  Put("a", "2");  // 4
  Put("b", "1");  // 5: keeps the replay going past the last match
  FakeSink no_put, no_delete;
  WatchSpec s1 = Key("a", 2);
  s1.no_put = true;
  WatchSpec s2 = Key("a", 2);
  s2.no_delete = true;
  const uint64_t h1 = ws_->Watch(&no_put, 1, s1);
  const uint64_t h2 = ws_->Watch(&no_delete, 2, s2);
  ASSERT_TRUE(no_put.WaitForRevision(3));
  ASSERT_TRUE(no_delete.WaitForRevision(4));
  // Wait for both to finish the replay, then write once more.
  const int64_t rev = Put("a", "3");  // 6
  ASSERT_TRUE(no_delete.WaitForRevision(rev));
  EXPECT_EQ(no_put.EventRevs(), (std::vector<int64_t>{3}));
  EXPECT_EQ(no_delete.EventRevs(), (std::vector<int64_t>{2, 4, 6}));
  EXPECT_GE(ws_->Progress(h1), 3);
  EXPECT_EQ(ws_->Progress(h2), rev);
}

TEST_F(WatchableStoreTest, CompactedStartRevisionGetsCompacted) {
  for (int i = 0; i < 5; ++i) Put("a", std::to_string(i));  // 2..6
  ASSERT_TRUE(kv_->Compact(5).ok());
  CommitAndNotify();
  FakeSink sink;
  ws_->Watch(&sink, 9, Key("a", 3));
  ASSERT_TRUE(sink.WaitForCompacted());
  EXPECT_EQ(sink.CompactedCalls(),
            (std::vector<std::pair<int64_t, int64_t>>{{9, 5}}));
  EXPECT_TRUE(sink.Deliveries().empty());
  EXPECT_EQ(ws_->WatcherCount(), 0u);
  EXPECT_EQ(ws_->UnsyncedCount(), 0u);
}

TEST_F(WatchableStoreTest, StartAtCompactedRevisionIsStillServed) {
  for (int i = 0; i < 5; ++i) Put("a", std::to_string(i));  // 2..6
  ASSERT_TRUE(kv_->Compact(5).ok());
  CommitAndNotify();
  FakeSink sink;
  ws_->Watch(&sink, 1, Key("a", 5));
  ASSERT_TRUE(sink.WaitForRevision(6));
  EXPECT_EQ(sink.EventRevs(), (std::vector<int64_t>{5, 6}));
  EXPECT_TRUE(sink.CompactedCalls().empty());
}

TEST_F(WatchableStoreTest, VictimWhoseHistoryIsCompactedGetsCompacted) {
  FakeSink sink;
  ws_->Watch(&sink, 4, Key("a"));
  sink.SetAccept(false);
  Put("a", "1");  // 2: refused
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  ASSERT_TRUE(kv_->Compact(4).ok());
  CommitAndNotify();
  ASSERT_TRUE(sink.WaitForCompacted());
  EXPECT_EQ(sink.CompactedCalls(),
            (std::vector<std::pair<int64_t, int64_t>>{{4, 4}}));
  EXPECT_EQ(ws_->WatcherCount(), 0u);
}

TEST_F(WatchableStoreTest, CancelStopsSyncedDelivery) {
  FakeSink sink;
  const uint64_t h = ws_->Watch(&sink, 1, Key("a"));
  Put("a", "1");
  EXPECT_TRUE(ws_->Cancel(h));
  EXPECT_FALSE(ws_->Cancel(h));
  EXPECT_EQ(ws_->Progress(h), -1);
  Put("a", "2");
  EXPECT_EQ(sink.EventRevs(), (std::vector<int64_t>{2}));
  EXPECT_EQ(ws_->WatcherCount(), 0u);
}

TEST_F(WatchableStoreTest, CancelStopsUnsyncedDelivery) {
  FakeSink canceled;
  const uint64_t h = ws_->Watch(&canceled, 1, Key("a"));
  canceled.SetAccept(false);
  Put("a", "1");
  ASSERT_TRUE(canceled.WaitForRefusals(2));  // the sync thread retries it
  ASSERT_TRUE(ws_->Cancel(h));
  const int refused = canceled.Refused();
  canceled.SetAccept(true);
  // A second unsynced watcher: once it has caught up, the sync thread has
  // made passes after the Cancel.
  FakeSink witness;
  ws_->Watch(&witness, 2, Key("a", 2));
  Put("a", "2");
  ASSERT_TRUE(witness.WaitForRevision(3));
  EXPECT_EQ(witness.EventRevs(), (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(canceled.Deliveries().empty());
  EXPECT_EQ(canceled.Refused(), refused);
  EXPECT_EQ(ws_->WatcherCount(), 1u);
}

TEST_F(WatchableStoreTest, FutureStartRevisionSkipsEarlierEvents) {
  FakeSink sink;
  ws_->Watch(&sink, 1, Key("a", 4));
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  EXPECT_EQ(sink.EventRevs(), (std::vector<int64_t>{4}));
}

}  // namespace
}  // namespace synod::mvcc

namespace synod::mvcc {
namespace {

// An installed snapshot replaces the history under synced watchers without
// Notify: ResyncAll must feed them every revision they did not see, once.
TEST_F(WatchableStoreTest, ResyncAllReplaysRevisionsWrittenUnderneath) {
  FakeSink sink;
  ws_->Watch(&sink, 1, Key("a"));
  const int64_t seen = Put("a", "1");
  // Written without Notify, as a snapshot install does.
  StagePut("a", "2");
  StagePut("a", "3");
  std::vector<mvccpb::Event> events;
  ASSERT_TRUE(kv_->Commit(++applied_, &events).ok());
  EXPECT_EQ(sink.EventRevs(), (std::vector<int64_t>{seen}));
  ws_->ResyncAll();
  ASSERT_TRUE(sink.WaitForRevision(kv_->Rev()));
  EXPECT_EQ(sink.EventRevs(),
            (std::vector<int64_t>{seen, seen + 1, seen + 2}));
  // Then live again.
  const int64_t next = Put("a", "4");
  ASSERT_TRUE(sink.WaitForRevision(next));
  EXPECT_EQ(sink.EventRevs().back(), next);
  EXPECT_EQ(sink.EventRevs().size(), 4u);
}

}  // namespace
}  // namespace synod::mvcc

namespace synod::mvcc {
namespace {

// PrevKv is etcd's sendLoop read: the key at mod_revision - 1, nothing for
// a create, and nothing once that revision is compacted.
TEST_F(WatchableStoreTest, PrevKvIsTheKeyBeforeTheEventAndNoneForCreates) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Delete("a");    // 4
  Put("a", "3");  // 5
  FakeSink sink;
  ws_->Watch(&sink, 1, Key("a", 2));
  ASSERT_TRUE(sink.WaitForRevision(5));
  std::vector<mvccpb::Event> evs;
  for (const FakeSink::Delivery& d : sink.Deliveries()) {
    evs.insert(evs.end(), d.events.begin(), d.events.end());
  }
  ASSERT_EQ(evs.size(), 4u);
  EXPECT_FALSE(ws_->PrevKv(evs[0]).has_value());  // create
  std::optional<mvccpb::KeyValue> p3 = ws_->PrevKv(evs[1]);
  ASSERT_TRUE(p3.has_value());
  EXPECT_EQ(p3->value(), "1");
  EXPECT_EQ(p3->mod_revision(), 2);
  std::optional<mvccpb::KeyValue> p4 = ws_->PrevKv(evs[2]);  // the delete
  ASSERT_TRUE(p4.has_value());
  EXPECT_EQ(p4->value(), "2");
  EXPECT_FALSE(ws_->PrevKv(evs[3]).has_value());  // created again
  // Compacted at 3: revision 2 is gone, 3 is kept.
  ASSERT_TRUE(kv_->Compact(3).ok());
  CommitAndNotify();
  EXPECT_FALSE(ws_->PrevKv(evs[1]).has_value());
  std::optional<mvccpb::KeyValue> after = ws_->PrevKv(evs[2]);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->value(), "2");
}

// A sink that (wrongly) reads prev_kv inside Deliver.
class ReadingSink : public WatchSink {
 public:
  explicit ReadingSink(const WatchableStore* ws) : ws_(ws) {}
  bool Deliver(int64_t, std::vector<mvccpb::Event>* events,
               int64_t) override {
    for (const auto& ev : *events) ws_->PrevKv(ev);
    absl::MutexLock l(&mu_);
    ++deliveries_;
    return true;
  }
  void Compacted(int64_t, int64_t) override {}
  bool WaitForDeliveries(int n) {
    absl::MutexLock l(&mu_);
    auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return deliveries_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), kDeadline);
  }

 private:
  const WatchableStore* const ws_;
  absl::Mutex mu_;
  int deliveries_ ABSL_GUARDED_BY(mu_) = 0;
};

// The test seam that the watch service's tests rely on: it tells a read
// made inside a delivery (on the apply thread from Notify, or on the sync
// thread, with the store's lock held) from one made elsewhere.
TEST_F(WatchableStoreTest, PrevKvHookTellsReadsInsideADeliveryFromOthers) {
  absl::Mutex mu;
  std::vector<bool> in_delivery;
  ws_->TEST_SetPrevKvHook([&](bool d) {
    absl::MutexLock l(&mu);
    in_delivery.push_back(d);
  });
  Put("a", "1");  // 2
  ReadingSink reading(ws_.get());
  const uint64_t h1 = ws_->Watch(&reading, 1, Key("a"));
  Put("a", "2");  // 3: Notify -> Deliver -> PrevKv, under the lock
  {
    absl::MutexLock l(&mu);
    EXPECT_EQ(in_delivery, (std::vector<bool>{true}));
  }
  ASSERT_TRUE(ws_->Cancel(h1));
  // From the sync thread's delivery too (a replay of revision 3).
  const uint64_t h2 = ws_->Watch(&reading, 2, Key("a", 3));
  ASSERT_TRUE(reading.WaitForDeliveries(2));
  ASSERT_TRUE(ws_->Cancel(h2));
  mvccpb::Event ev;
  ev.set_type(mvccpb::Event::PUT);
  ev.mutable_kv()->set_key("a");
  ev.mutable_kv()->set_create_revision(2);
  ev.mutable_kv()->set_mod_revision(3);
  ws_->PrevKv(ev);  // the test thread: outside any delivery
  absl::MutexLock l(&mu);
  EXPECT_EQ(in_delivery, (std::vector<bool>{true, true, false}));
}

}  // namespace
}  // namespace synod::mvcc
