// WatchRange on a fake upstream and a FakeClock: broadcast, window replay,
// catch-up and merge, slow subscribers, failover, freshness; and against a
// member whose progress answers overtake events (etcd 3.4): no catch-up
// merges early, no progress runs ahead of delivered events.
#include "proxy/watch_range.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/proxy/fake_upstream.h"

namespace synod::proxy {
namespace {

using testing::Del;
using testing::FakeUpstream;
using testing::Put;

// Records what the range tells it; refuses events while `full`.
class FakeSub final : public RangeSubscriber {
 public:
  void OnCreated(const etcdserverpb::ResponseHeader& h) override {
    created = true;
    created_rev = h.revision();
    EXPECT_EQ(h.cluster_id(), 7u);
  }
  bool OnEvents(const std::vector<const mvccpb::Event*>& events,
                const etcdserverpb::ResponseHeader& h) override {
    EXPECT_TRUE(created);
    if (full) return false;
    for (const auto* e : events) {
      revs.push_back(e->kv().mod_revision());
      keys.push_back(e->kv().key());
    }
    return true;
  }
  void OnStatus(const RangeStatus& s) override { status = s; }
  void OnCanceled(int64_t compact, const std::string& r,
                  const etcdserverpb::ResponseHeader& h) override {
    canceled = true;
    compact_rev = compact;
    reason = r;
  }

  bool created = false, canceled = false, full = false;
  int64_t created_rev = -1, compact_rev = -1;
  std::string reason;
  std::vector<int64_t> revs;
  std::vector<std::string> keys;
  RangeStatus status;
};

std::vector<int64_t> Revs(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (int64_t r = from; r <= to; ++r) v.push_back(r);
  return v;
}

class WatchRangeTest : public ::testing::Test {
 protected:
  std::shared_ptr<WatchRange> NewRange(WatchRangeOptions o = {}) {
    return std::make_shared<WatchRange>("a", "b", &up_, &clock_, o, nullptr);
  }
  std::shared_ptr<FakeSub> Sub(WatchRange* r, int64_t start,
                               uint64_t* handle = nullptr,
                               bool fresh = false) {
    auto s = std::make_shared<FakeSub>();
    uint64_t h = r->Subscribe(s, start, fresh);
    EXPECT_GT(h, 0u);
    if (handle != nullptr) *handle = h;
    return s;
  }
  // A range whose upstream watch, created at `created`, feeds `live`
  // (start 0), and `old` (from `start` <= created) on the catch-up watch it
  // opened, created at `created` too.
  struct Lagging {
    std::shared_ptr<WatchRange> r;
    std::shared_ptr<FakeSub> live, old;
    testing::FakeWatch* main = nullptr;
    testing::FakeWatch* catchup = nullptr;
  };
  Lagging LagBehindLive(int64_t created, int64_t start) {
    Lagging l;
    l.r = NewRange();
    l.live = Sub(l.r.get(), 0);
    l.main = up_.Last();
    l.main->Created(created);
    l.old = Sub(l.r.get(), start);
    l.catchup = up_.Last();
    EXPECT_NE(l.catchup, l.main);
    EXPECT_EQ(l.catchup->create.start_revision(), start);
    l.catchup->Created(created);
    return l;
  }
  // Puts one event per revision in [from, to] on `w`.
  static void PutRevs(testing::FakeWatch* w, int64_t from, int64_t to) {
    for (int64_t r = from; r <= to; ++r) {
      w->Events({Put("a" + std::to_string(r), "v", r)});
    }
  }

  FakeUpstream up_;
  common::FakeClock clock_;
};

TEST_F(WatchRangeTest, AllSubscribersShareOneUpstreamWatch) {
  auto r = NewRange();
  std::vector<std::shared_ptr<FakeSub>> subs;
  for (int i = 0; i < 100; ++i) subs.push_back(Sub(r.get(), 0));
  ASSERT_EQ(up_.watches.size(), 1u);
  EXPECT_EQ(up_.Last()->create.key(), "a");
  EXPECT_EQ(up_.Last()->create.range_end(), "b");
  EXPECT_TRUE(up_.Last()->create.prev_kv());
  for (auto& s : subs) EXPECT_FALSE(s->created);  // waits for the member
  up_.Last()->Created(10);
  PutRevs(up_.Last(), 11, 15);
  for (auto& s : subs) {
    EXPECT_TRUE(s->created);
    EXPECT_EQ(s->created_rev, 10);
    EXPECT_EQ(s->revs, Revs(11, 15));
  }
  EXPECT_EQ(up_.watches.size(), 1u);
}

TEST_F(WatchRangeTest, StartZeroLaterStartsAfterTheNewestKnownRevision) {
  auto r = NewRange();
  auto first = Sub(r.get(), 0);
  up_.Last()->Created(10);
  PutRevs(up_.Last(), 11, 12);
  auto late = Sub(r.get(), 0);
  EXPECT_EQ(late->created_rev, 12);
  EXPECT_TRUE(late->revs.empty());
  PutRevs(up_.Last(), 13, 13);
  EXPECT_EQ(late->revs, Revs(13, 13));
  EXPECT_EQ(first->revs, Revs(11, 13));
}

TEST_F(WatchRangeTest, RecentStartIsReplayedFromTheWindowThenLive) {
  auto r = NewRange();
  auto first = Sub(r.get(), 0);
  up_.Last()->Created(10);
  PutRevs(up_.Last(), 11, 20);
  auto resumed = Sub(r.get(), 15);
  EXPECT_EQ(resumed->revs, Revs(15, 20));
  PutRevs(up_.Last(), 21, 22);
  EXPECT_EQ(resumed->revs, Revs(15, 22));
  EXPECT_EQ(first->revs, Revs(11, 22));
  EXPECT_EQ(up_.watches.size(), 1u);  // no catch-up needed
}

TEST_F(WatchRangeTest, OldStartCatchesUpThenMergesIntoTheSharedWatch) {
  auto r = NewRange();
  auto live = Sub(r.get(), 0);
  up_.Last()->Created(100);
  testing::FakeWatch* main = up_.Last();
  auto old = Sub(r.get(), 50);
  ASSERT_EQ(up_.watches.size(), 2u);
  testing::FakeWatch* catchup = up_.Last();
  EXPECT_EQ(catchup->create.start_revision(), 50);
  EXPECT_EQ(old->created_rev, 100);
  catchup->Created(100);
  EXPECT_GE(catchup->progress_requests, 1);
  catchup->Events({Put("a1", "x", 60)}, 101);
  // A live event arrives before the catch-up is done: only live subscribers
  // see it now; the lagging one gets it from the window after the merge.
  main->Events({Put("a2", "y", 101)});
  EXPECT_EQ(live->revs, Revs(101, 101));
  EXPECT_EQ(old->revs, std::vector<int64_t>{60});
  catchup->Events({Put("a3", "z", 80)}, 101);
  catchup->Progress(100);  // the catch-up reached the window
  EXPECT_TRUE(catchup->closed);
  EXPECT_EQ(old->revs, (std::vector<int64_t>{60, 80, 101}));
  main->Events({Put("a4", "w", 102)});
  EXPECT_EQ(old->revs, (std::vector<int64_t>{60, 80, 101, 102}));
  EXPECT_EQ(up_.OpenWatches(), 1);
}

TEST_F(WatchRangeTest, LaggardsShareOneCatchUpAndOlderOnesWaitTheirTurn) {
  auto r = NewRange();
  auto live = Sub(r.get(), 0);
  up_.Last()->Created(100);
  auto a = Sub(r.get(), 40);
  auto b = Sub(r.get(), 70);  // joins the running catch-up (start 40)
  ASSERT_EQ(up_.watches.size(), 2u);
  testing::FakeWatch* c1 = up_.Last();
  c1->Created(100);
  c1->Events({Put("a1", "x", 45), Put("a1", "y", 75)}, 100);
  auto c = Sub(r.get(), 30);  // older than the catch-up's position: waits
  EXPECT_EQ(up_.watches.size(), 2u);
  c1->Progress(100);
  EXPECT_TRUE(c1->closed);
  EXPECT_EQ(a->revs, (std::vector<int64_t>{45, 75}));
  EXPECT_EQ(b->revs, (std::vector<int64_t>{75}));
  // Now c gets its own round.
  ASSERT_EQ(up_.watches.size(), 3u);
  testing::FakeWatch* c2 = up_.Last();
  EXPECT_EQ(c2->create.start_revision(), 30);
  c2->Created(100);
  c2->Events({Put("a1", "x", 45), Put("a1", "y", 75)}, 100);
  c2->Progress(100);
  EXPECT_EQ(c->revs, (std::vector<int64_t>{45, 75}));
  EXPECT_EQ(up_.OpenWatches(), 1);
}

TEST_F(WatchRangeTest, CompactedCatchUpCancelsOnlyTheLaggards) {
  auto r = NewRange();
  auto live = Sub(r.get(), 0);
  up_.Last()->Created(100);
  testing::FakeWatch* main = up_.Last();
  auto old = Sub(r.get(), 5);
  up_.Last()->Compacted(20);
  EXPECT_TRUE(old->canceled);
  EXPECT_EQ(old->compact_rev, 20);
  EXPECT_EQ(old->reason,
            "etcdserver: mvcc: required revision has been compacted");
  EXPECT_FALSE(live->canceled);
  main->Events({Put("a", "v", 101)});
  EXPECT_EQ(live->revs, Revs(101, 101));
  EXPECT_EQ(r->TEST_subscribers(), 1u);
  EXPECT_EQ(up_.OpenWatches(), 1);
}

TEST_F(WatchRangeTest, SlowSubscriberIsCanceledOthersKeepGoing) {
  auto r = NewRange();
  auto fast = Sub(r.get(), 0);
  auto slow = Sub(r.get(), 0);
  up_.Last()->Created(10);
  slow->full = true;
  PutRevs(up_.Last(), 11, 12);
  EXPECT_TRUE(slow->canceled);
  EXPECT_EQ(slow->reason, kSlowWatcherReason);
  EXPECT_EQ(fast->revs, Revs(11, 12));
  EXPECT_EQ(r->TEST_subscribers(), 1u);
}

TEST_F(WatchRangeTest, FailoverResumesFromLastRevisionPlusOneWithoutDuplicates) {
  WatchRangeOptions o;
  o.retry_interval = absl::Milliseconds(100);
  auto r = NewRange(o);
  auto s = Sub(r.get(), 0);
  up_.Last()->Created(10);
  PutRevs(up_.Last(), 11, 13);
  up_.Last()->Fail();
  EXPECT_FALSE(r->Status().healthy);
  r->Tick(absl::Hours(1));
  EXPECT_EQ(up_.watches.size(), 1u);  // waits for the retry interval
  clock_.Advance(absl::Milliseconds(100));
  r->Tick(absl::Hours(1));
  ASSERT_EQ(up_.watches.size(), 2u);
  testing::FakeWatch* w2 = up_.Last();
  EXPECT_EQ(w2->create.start_revision(), 14);
  w2->Created(15);
  // A member that replays an already delivered revision is ignored.
  w2->Events({Put("a1", "x", 13)});
  PutRevs(w2, 14, 16);
  EXPECT_EQ(s->revs, Revs(11, 16));
  EXPECT_TRUE(r->Status().healthy);
}

TEST_F(WatchRangeTest, WindowIsBoundedAndOlderStartsNeedCatchUp) {
  WatchRangeOptions o;
  o.window_events = 5;
  auto r = NewRange(o);
  auto s = Sub(r.get(), 0);
  up_.Last()->Created(10);
  PutRevs(up_.Last(), 11, 30);
  EXPECT_EQ(r->TEST_window_events(), 5u);
  EXPECT_EQ(r->TEST_covered_from(), 26);
  auto inside = Sub(r.get(), 26);
  EXPECT_EQ(inside->revs, Revs(26, 30));
  EXPECT_EQ(up_.watches.size(), 1u);
  auto outside = Sub(r.get(), 25);
  EXPECT_EQ(up_.watches.size(), 2u);
  EXPECT_TRUE(outside->revs.empty());
}

TEST_F(WatchRangeTest, ProgressAnswersSetFreshnessToWhenTheRequestWasSent) {
  auto r = NewRange();
  auto s = Sub(r.get(), 0, nullptr, /*fresh=*/true);
  up_.Last()->Created(10);
  const absl::Time t0 = clock_.Now();
  EXPECT_EQ(up_.Last()->progress_requests, 1);  // sent on creation
  clock_.Advance(absl::Seconds(1));
  up_.Last()->Progress(12);
  EXPECT_EQ(r->Status().progress, 12);
  EXPECT_EQ(r->Status().fresh_at, t0);
  EXPECT_EQ(s->status.progress, 12);
  EXPECT_EQ(s->status.fresh_at, t0);
  // A freshness subscriber makes Tick ask for progress periodically.
  r->Tick(absl::Hours(1));
  EXPECT_EQ(up_.Last()->progress_requests, 2);
  r->Tick(absl::Hours(1));
  EXPECT_EQ(up_.Last()->progress_requests, 2);
}

TEST_F(WatchRangeTest, ProgressWaitersRunWhenTheAnswerIsApplied) {
  auto r = NewRange();
  auto s = Sub(r.get(), 0);
  int answered = 0;
  r->RequestProgress([&] { ++answered; });  // not created yet: at once
  EXPECT_EQ(answered, 1);
  up_.Last()->Created(10);  // sends its own progress request first
  r->RequestProgress([&] {
    ++answered;
    EXPECT_EQ(s->status.progress, 20);  // applied before the waiter runs
  });
  up_.Last()->Progress(15);  // answers the creation's request
  EXPECT_EQ(answered, 1);
  up_.Last()->Progress(20);
  EXPECT_EQ(answered, 2);
  r->RequestProgress([&] { ++answered; });
  up_.Last()->Fail();  // a failed stream never answers: run it anyway
  EXPECT_EQ(answered, 3);
}

TEST_F(WatchRangeTest, FragmentsAreJoinedBeforeBroadcast) {
  auto r = NewRange();
  auto s = Sub(r.get(), 0);
  up_.Last()->Created(10);
  up_.Last()->Events({Put("a1", "x", 11), Put("a2", "x", 11)}, 11, true);
  EXPECT_TRUE(s->revs.empty());
  up_.Last()->Events({Put("a3", "x", 11)}, 11, false);
  EXPECT_EQ(s->keys, (std::vector<std::string>{"a1", "a2", "a3"}));
}

TEST_F(WatchRangeTest, IdleRangeLingersThenCloses) {
  auto r = NewRange();
  uint64_t h = 0;
  auto s = Sub(r.get(), 0, &h);
  up_.Last()->Created(10);
  r->Unsubscribe(h);
  EXPECT_FALSE(r->Tick(absl::Seconds(30)));
  EXPECT_TRUE(up_.Last()->open());  // keeps its window for resumers
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(r->Tick(absl::Seconds(30)));
  EXPECT_TRUE(r->CloseIfIdle());
  EXPECT_FALSE(up_.Last()->open());
  EXPECT_EQ(r->Subscribe(std::make_shared<FakeSub>(), 0, false), 0u);
}

TEST_F(WatchRangeTest, DeletesAndPrevKvPassThrough) {
  auto r = NewRange();
  auto s = Sub(r.get(), 0);
  up_.Last()->Created(10);
  up_.Last()->Events({Del("a1", 11)});
  EXPECT_EQ(s->revs, Revs(11, 11));
}

// ---- a member without ordered progress answers (etcd 3.4) ----
//
// etcd 3.4 answers a WatchProgressRequest at once with the store's revision,
// even while the stream's watcher still replays history, and the answer can
// overtake events already queued on the stream. The fake plays exactly that:
// the answer comes first, the events after it.

class WatchRangeEtcdTest : public WatchRangeTest {
 protected:
  WatchRangeEtcdTest() { up_.ordered_progress = false; }
};

// The reported loss: `etcdctl watch --rev 2` behind a live watch got nothing,
// because the catch-up took etcd's early answer for "caught up" and merged
// past the events it had not delivered yet.
TEST_F(WatchRangeEtcdTest, EarlyProgressAnswerDoesNotMergeTheCatchUp) {
  auto [r, live, old, main, catchup] = LagBehindLive(100, 2);  // live: 101 on
  // Asking is no use: no request is sent, and an answer is not believed.
  EXPECT_EQ(catchup->progress_requests, 0);
  catchup->Progress(100);  // overtakes the replay below
  EXPECT_FALSE(catchup->closed);
  catchup->Events({Put("a1", "x", 10), Put("a2", "x", 10)}, 100);
  catchup->Events({Put("a3", "x", 50)}, 100);
  EXPECT_EQ(old->revs, (std::vector<int64_t>{10, 10, 50}));
  // Live events meanwhile reach only the live subscriber.
  main->Events({Put("a4", "y", 101)});
  EXPECT_EQ(old->revs, (std::vector<int64_t>{10, 10, 50}));
  main->Events({Put("a5", "y", 102)});
  // The catch-up's own watcher reaches the live range: merged, repeats
  // dropped by revision.
  catchup->Events({Put("a4", "y", 101)}, 101);
  EXPECT_TRUE(catchup->closed);
  EXPECT_EQ(old->revs, (std::vector<int64_t>{10, 10, 50, 101, 102}));
  catchup->Events({Put("a5", "y", 102)}, 102);  // after the close: ignored
  main->Events({Put("a6", "z", 103)});
  EXPECT_EQ(old->revs, (std::vector<int64_t>{10, 10, 50, 101, 102, 103}));
  EXPECT_EQ(live->revs, Revs(101, 103));
  EXPECT_EQ(up_.OpenWatches(), 1);
}

TEST_F(WatchRangeEtcdTest, CatchUpEventJustBeforeTheLiveStartMerges) {
  auto [r, live, old, main, catchup] = LagBehindLive(100, 50);
  catchup->Events({Put("a1", "x", 99)}, 100);
  EXPECT_FALSE(catchup->closed);  // 100 may still hold an event
  catchup->Events({Put("a1", "x", 100)}, 100);
  EXPECT_TRUE(catchup->closed);  // 101 on is the live watch's
  main->Events({Put("a1", "y", 101)});
  EXPECT_EQ(old->revs, (std::vector<int64_t>{99, 100, 101}));
}

TEST_F(WatchRangeEtcdTest, QuietRangeKeepsItsCatchUpOpenAndServesFromIt) {
  auto [r, live, old, main, catchup] = LagBehindLive(100, 50);
  catchup->Events({Put("a1", "x", 60)}, 100);
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(1));
    r->Tick(absl::Hours(1));
    catchup->Progress(100 + i);
  }
  EXPECT_EQ(catchup->progress_requests, 0);
  EXPECT_TRUE(catchup->open());
  EXPECT_EQ(up_.OpenWatches(), 2);
  EXPECT_EQ(old->revs, (std::vector<int64_t>{60}));
  // The live watch's answers reach live subscribers, not the lagging one.
  main->Progress(150);
  EXPECT_EQ(live->status.progress, 150);
  EXPECT_EQ(old->status.progress, 0);
  // The range's next event ends it.
  main->Events({Put("a2", "x", 200)});
  catchup->Events({Put("a2", "x", 200)}, 200);
  EXPECT_EQ(up_.OpenWatches(), 1);
  EXPECT_EQ(old->revs, (std::vector<int64_t>{60, 200}));
  EXPECT_EQ(live->revs, (std::vector<int64_t>{200}));
}

TEST_F(WatchRangeEtcdTest, OlderLaggardRestartsTheCatchUpFromItsStart) {
  auto [r, live, a, main, c1] = LagBehindLive(100, 50);
  c1->Events({Put("a1", "x", 60)}, 100);
  // Older than c1's position: c1 might never merge on a quiet range, so
  // the catch-up starts again from 30 for both.
  auto b = Sub(r.get(), 30);
  EXPECT_TRUE(c1->closed);
  ASSERT_EQ(up_.watches.size(), 3u);
  testing::FakeWatch* c2 = up_.Last();
  EXPECT_EQ(c2->create.start_revision(), 30);
  c2->Created(100);
  c2->Events({Put("a0", "x", 40), Put("a1", "x", 60), Put("a2", "x", 70)},
             100);
  EXPECT_EQ(a->revs, (std::vector<int64_t>{60, 70}));
  EXPECT_EQ(b->revs, (std::vector<int64_t>{40, 60, 70}));
  main->Events({Put("a3", "x", 101)});
  c2->Events({Put("a3", "x", 101)}, 101);
  EXPECT_EQ(a->revs, (std::vector<int64_t>{60, 70, 101}));
  EXPECT_EQ(b->revs, (std::vector<int64_t>{40, 60, 70, 101}));
  EXPECT_EQ(up_.OpenWatches(), 1);
}

TEST_F(WatchRangeEtcdTest, FailedCatchUpResumesAfterWhatItDelivered) {
  auto [r, live, old, main, c1] = LagBehindLive(100, 50);
  c1->Events({Put("a1", "x", 60)}, 100);
  c1->Fail();
  r->Tick(absl::Hours(1));
  ASSERT_EQ(up_.watches.size(), 3u);
  testing::FakeWatch* c2 = up_.Last();
  EXPECT_EQ(c2->create.start_revision(), 61);
  c2->Created(100);
  c2->Events({Put("a1", "x", 100)}, 100);
  EXPECT_EQ(old->revs, (std::vector<int64_t>{60, 100}));
  EXPECT_EQ(up_.OpenWatches(), 1);
}

// Once the live watch is synced, an answer moves progress: it can then be
// ahead only of events etcd had queued on the stream, as etcd's answers to
// its own clients are.
TEST_F(WatchRangeEtcdTest, SyncedLiveWatchAnswersMoveProgress) {
  auto r = NewRange();
  auto s = Sub(r.get(), 0, nullptr, /*fresh=*/true);
  up_.Last()->Created(100);
  const absl::Time t0 = clock_.Now();
  up_.Last()->Progress(120);
  EXPECT_EQ(s->status.progress, 120);
  EXPECT_EQ(s->status.fresh_at, t0);
  EXPECT_EQ(r->Status().fresh_rev, 0);  // not above progress
}

// A main watch started in the past is replayed history first: etcd's
// answers meanwhile are only a freshness hint, and progress follows the
// replayed events until they reach the member's revision at creation; the
// same after a failover resumed it.
TEST_F(WatchRangeEtcdTest, ReplayingMainWatchProgressFollowsItsEvents) {
  auto r = NewRange();
  auto s = Sub(r.get(), 50, nullptr, /*fresh=*/true);
  up_.Last()->Created(100);
  testing::FakeWatch* main = up_.Last();
  EXPECT_EQ(main->create.start_revision(), 50);
  int answered = 0;
  r->RequestProgress([&] {
    ++answered;
    EXPECT_EQ(s->status.progress, 49);
    EXPECT_EQ(s->status.FreshRev(), 100);
  });
  main->Progress(100);  // answers the creation's request
  main->Progress(100);  // and ours, ahead of the replay
  EXPECT_EQ(answered, 1);
  EXPECT_EQ(r->Status().progress, 49);
  EXPECT_EQ(r->Status().fresh_rev, 100);
  main->Events({Put("a1", "x", 70)}, 100);
  EXPECT_EQ(s->revs, Revs(70, 70));
  EXPECT_EQ(r->Status().progress, 70);
  main->Progress(110);
  EXPECT_EQ(s->status.progress, 70);
  EXPECT_EQ(s->status.FreshRev(), 110);
  auto later = Sub(r.get(), 60);  // inside the window: replayed
  EXPECT_EQ(later->revs, Revs(70, 70));
  main->Events({Put("a1", "x", 100)}, 100);  // the replay reached 100
  main->Progress(120);
  EXPECT_EQ(s->status.progress, 120);
  EXPECT_EQ(up_.watches.size(), 1u);
  // Resumed after a failure: replayed again until it reaches the new
  // member's revision.
  main->Fail();
  clock_.Advance(absl::Seconds(1));
  r->Tick(absl::Hours(1));
  ASSERT_EQ(up_.watches.size(), 2u);
  testing::FakeWatch* resumed = up_.Last();
  EXPECT_EQ(resumed->create.start_revision(), 101);
  resumed->Created(140);
  resumed->Progress(140);
  EXPECT_EQ(s->status.progress, 120);
  EXPECT_EQ(s->status.FreshRev(), 140);
  resumed->Events({Put("a1", "x", 130)}, 140);
  resumed->Progress(145);
  EXPECT_EQ(s->status.progress, 130);
  resumed->Events({Put("a1", "x", 141)});
  resumed->Progress(150);
  EXPECT_EQ(s->status.progress, 150);
  EXPECT_EQ(s->revs, (std::vector<int64_t>{70, 100, 130, 141}));
}

// On a synod member (ordered answers) a quiet catch-up still merges on its
// progress answer alone.
TEST_F(WatchRangeTest, OrderedProgressAnswerMergesAQuietCatchUp) {
  auto [r, live, old, main, catchup] = LagBehindLive(100, 50);
  EXPECT_EQ(catchup->progress_requests, 1);
  catchup->Progress(100);
  EXPECT_TRUE(catchup->closed);
  EXPECT_TRUE(old->revs.empty());
  EXPECT_EQ(up_.OpenWatches(), 1);
}

}  // namespace
}  // namespace synod::proxy
