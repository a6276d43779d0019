// The Watch service over real gRPC, in process, on a FakeClock with the
// timer thread off: periodic progress notify, client-chosen and duplicate
// watch IDs, empty ranges, filters, fragment and cancel, and where prev_kv
// is read. etcdctl 3.4 cannot ask for most of these, so the integration
// suite does not cover them.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "absl/synchronization/notification.h"
#include "backend/server/etcd_server.h"
#include "backend/server/services.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"

namespace synod::server {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

class WatchServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/synod_watch_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cfg_.data_dir = dir_ + "/data";
    cfg_.run_timer_thread = false;
    cfg_.progress_notify_interval = absl::Minutes(10);
    cfg_.max_request_bytes = 4096;
    auto s = EtcdServer::Open(cfg_, &clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    service_ = std::make_unique<WatchService>(server_.get());
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service_.get());
    grpc_ = b.BuildAndStart();
    ASSERT_NE(grpc_, nullptr);
    // No BDP probing: the client's flow-control window stays at its 64 KiB
    // default, so a client that stops reading stalls the server's writes
    // soon (as a slow client on a real network does).
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                             grpc::InsecureChannelCredentials(), args);
    stub_ = etcdserverpb::Watch::NewStub(channel);
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    stream_ = stub_->Watch(ctx_.get());
  }
  void TearDown() override {
    // A failed test may leave a prev_kv read held by the hook.
    if (!release_read_.HasBeenNotified()) release_read_.Notify();
    if (stream_) {
      stream_->WritesDone();
      WatchResponse r;
      while (stream_->Read(&r)) {
      }
      stream_->Finish();
    }
    grpc_->Shutdown();
    server_->Stop();
    std::filesystem::remove_all(dir_);
  }

  void Put(const std::string& k, const std::string& v) {
    synodpb::Request req;
    req.mutable_put()->set_key(k);
    req.mutable_put()->set_value(v);
    etcdserverpb::PutResponse resp;
    absl::Notification done;
    server_->Propose(std::move(req), &resp, [&](absl::Status st) {
      EXPECT_TRUE(st.ok()) << st;
      done.Notify();
    });
    done.WaitForNotification();
  }
  void Delete(const std::string& k) {
    synodpb::Request req;
    req.mutable_delete_range()->set_key(k);
    etcdserverpb::DeleteRangeResponse resp;
    absl::Notification done;
    server_->Propose(std::move(req), &resp, [&](absl::Status) { done.Notify(); });
    done.WaitForNotification();
  }
  WatchResponse Create(const std::string& key, int64_t watch_id = 0,
                       bool progress = false) {
    WatchRequest req;
    auto* c = req.mutable_create_request();
    c->set_key(key);
    c->set_watch_id(watch_id);
    c->set_progress_notify(progress);
    EXPECT_TRUE(stream_->Write(req));
    return Next();
  }
  WatchResponse Next() {
    WatchResponse r;
    EXPECT_TRUE(stream_->Read(&r)) << "stream ended";
    return r;
  }
  void Compact(int64_t rev) {
    synodpb::Request req;
    req.mutable_compaction()->set_revision(rev);
    etcdserverpb::CompactionResponse resp;
    absl::Notification done;
    server_->Propose(std::move(req), &resp, [&](absl::Status st) {
      EXPECT_TRUE(st.ok()) << st;
      done.Notify();
    });
    done.WaitForNotification();
  }
  // Creates a prev_kv watcher on `key` from `start` (0 = now) and reads its
  // created response.
  void CreatePrevKv(const std::string& key, int64_t watch_id,
                    int64_t start = 0) {
    WatchRequest req;
    auto* c = req.mutable_create_request();
    c->set_key(key);
    c->set_watch_id(watch_id);
    c->set_start_revision(start);
    c->set_prev_kv(true);
    ASSERT_TRUE(stream_->Write(req));
    WatchResponse r = Next();
    ASSERT_TRUE(r.created());
    ASSERT_EQ(r.watch_id(), watch_id);
  }
  // Reads responses until watcher `watch_id` has had the events of
  // revisions up to `rev`; returns its events by mod revision.
  std::map<int64_t, mvccpb::Event> EventsUpTo(int64_t watch_id, int64_t rev) {
    std::map<int64_t, mvccpb::Event> out;
    int64_t last = 0;
    while (last < rev) {
      WatchResponse r;
      if (!stream_->Read(&r)) {
        ADD_FAILURE() << "stream ended at revision " << last;
        break;
      }
      if (r.watch_id() != watch_id) continue;
      for (const auto& ev : r.events()) {
        out[ev.kv().mod_revision()] = ev;
        last = ev.kv().mod_revision();
      }
    }
    return out;
  }

  // Installs a prev_kv read hook on the store that counts reads, and those
  // made inside a delivery (under the store's lock). With `hold_first`, the
  // first read waits for release_read_ after notifying read_held_.
  void HookPrevKvReads(bool hold_first) {
    hold_first_read_ = hold_first;
    server_->watchable()->TEST_SetPrevKvHook([this](bool in_delivery) {
      bool hold = false;
      {
        absl::MutexLock l(&hook_mu_);
        ++prev_reads_;
        if (in_delivery) ++prev_reads_in_delivery_;
        hold = hold_first_read_ && prev_reads_ == 1;
      }
      if (hold) {
        read_held_.Notify();
        release_read_.WaitForNotification();
      }
    });
  }
  int PrevReads() {
    absl::MutexLock l(&hook_mu_);
    return prev_reads_;
  }
  int PrevReadsInDelivery() {
    absl::MutexLock l(&hook_mu_);
    return prev_reads_in_delivery_;
  }

  // The stalled-stream scenario below, with or without prev_kv.
  void RunStalledStream(bool prev_kv);

  std::string dir_;
  ServerConfig cfg_;
  common::FakeClock clock_;
  std::unique_ptr<EtcdServer> server_;
  std::unique_ptr<WatchService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<etcdserverpb::Watch::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<WatchRequest, WatchResponse>> stream_;
  // HookPrevKvReads' state. Members, not test locals: the hook may run
  // until the stream ends in TearDown.
  absl::Mutex hook_mu_;
  int prev_reads_ ABSL_GUARDED_BY(hook_mu_) = 0;
  int prev_reads_in_delivery_ ABSL_GUARDED_BY(hook_mu_) = 0;
  bool hold_first_read_ = false;
  absl::Notification read_held_;
  absl::Notification release_read_;
};

// Checks the prev_kv of the events of revisions 2..5 of a key that was
// created (2), overwritten (3), deleted (4) and created again (5).
void ExpectPrevKvs(const std::map<int64_t, mvccpb::Event>& evs) {
  ASSERT_EQ(evs.size(), 4u);
  const mvccpb::Event& create = evs.at(2);
  EXPECT_EQ(create.type(), mvccpb::Event::PUT);
  EXPECT_FALSE(create.has_prev_kv());
  const mvccpb::Event& overwrite = evs.at(3);
  EXPECT_EQ(overwrite.kv().value(), "v2");
  EXPECT_EQ(overwrite.prev_kv().value(), "v1");
  EXPECT_EQ(overwrite.prev_kv().mod_revision(), 2);
  const mvccpb::Event& del = evs.at(4);
  EXPECT_EQ(del.type(), mvccpb::Event::DELETE);
  EXPECT_EQ(del.prev_kv().key(), "k");
  EXPECT_EQ(del.prev_kv().value(), "v2");
  EXPECT_EQ(del.prev_kv().mod_revision(), 3);
  const mvccpb::Event& again = evs.at(5);
  EXPECT_EQ(again.kv().value(), "v3");
  EXPECT_FALSE(again.has_prev_kv());
}

TEST_F(WatchServiceTest, AutomaticWatchIdsStartAtZeroAndCreatedCarriesHeader) {
  WatchResponse a = Create("a");
  EXPECT_TRUE(a.created());
  EXPECT_EQ(a.watch_id(), 0);
  EXPECT_EQ(a.header().revision(), 1);
  EXPECT_EQ(a.header().member_id(), server_->member_id());
  WatchResponse b = Create("b");
  EXPECT_EQ(b.watch_id(), 1);
}

TEST_F(WatchServiceTest, ClientChosenWatchIdIsKeptAndDuplicateIsRefused) {
  WatchResponse a = Create("a", 42);
  EXPECT_TRUE(a.created());
  EXPECT_EQ(a.watch_id(), 42);
  WatchResponse dup = Create("b", 42);
  EXPECT_TRUE(dup.created());
  EXPECT_TRUE(dup.canceled());
  EXPECT_EQ(dup.watch_id(), -1);
  EXPECT_EQ(dup.cancel_reason(), "mvcc: duplicate watch ID provided on the WatchStream");
  Put("a", "1");
  WatchResponse ev = Next();
  EXPECT_EQ(ev.watch_id(), 42);
  ASSERT_EQ(ev.events_size(), 1);
  EXPECT_EQ(ev.events(0).kv().value(), "1");
}

TEST_F(WatchServiceTest, RangeEndNotAfterKeyIsCanceledAsEmptyRange) {
  WatchRequest req;
  req.mutable_create_request()->set_key("b");
  req.mutable_create_request()->set_range_end("a");
  ASSERT_TRUE(stream_->Write(req));
  WatchResponse r = Next();
  EXPECT_TRUE(r.created());
  EXPECT_TRUE(r.canceled());
  EXPECT_EQ(r.cancel_reason(), "mvcc: watcher range is empty");
}

TEST_F(WatchServiceTest, PeriodicProgressNotifyGoesOnlyToIdleProgressWatchers) {
  WatchResponse quiet = Create("quiet", 1, /*progress=*/true);
  WatchResponse plain = Create("plain", 2, /*progress=*/false);
  Put("other", "x");  // revision 2, watched by no one
  clock_.Advance(absl::Minutes(10));
  server_->TEST_Tick();
  WatchResponse p = Next();
  EXPECT_EQ(p.watch_id(), 1);
  EXPECT_EQ(p.events_size(), 0);
  EXPECT_EQ(p.header().revision(), 2);
  // The plain watcher got nothing: the next response is its event.
  Put("plain", "y");
  WatchResponse ev = Next();
  EXPECT_EQ(ev.watch_id(), 2);
  EXPECT_EQ(ev.events_size(), 1);
}

TEST_F(WatchServiceTest, ProgressRequestAnswersWithMinusOneAndCurrentRevision) {
  Create("a");
  Put("a", "1");
  Next();  // the event
  WatchRequest req;
  req.mutable_progress_request();
  ASSERT_TRUE(stream_->Write(req));
  WatchResponse r = Next();
  EXPECT_EQ(r.watch_id(), -1);
  EXPECT_EQ(r.events_size(), 0);
  EXPECT_EQ(r.header().revision(), 2);
}

// A progress response promises every event up to its revision was sent
// before it. A watcher from revision 1 that is still catching up has been
// given nothing (progress 0); the answer once took that 0 for "unset" and
// carried the store's revision, so a client skipped the events still on
// their way (synod-proxy lost them). The check holds in every interleaving;
// whether the watcher is still behind when the request lands varies.
TEST_F(WatchServiceTest, ProgressRequestNeverRunsAheadOfALaggingWatcher) {
  for (int i = 0; i < 50; ++i) Put("lag", absl::StrCat(i));  // revisions 2..51
  for (int round = 0; round < 20; ++round) {
    WatchRequest create;
    create.mutable_create_request()->set_key("lag");
    create.mutable_create_request()->set_start_revision(1);
    create.mutable_create_request()->set_watch_id(100 + round);
    WatchRequest progress;
    progress.mutable_progress_request();
    ASSERT_TRUE(stream_->Write(create));
    ASSERT_TRUE(stream_->Write(progress));
    int64_t delivered = 0;  // highest mod_revision received for this watcher
    bool answered = false;
    while (!answered || delivered < 51) {
      WatchResponse r = Next();
      if (r.watch_id() == -1) {
        EXPECT_LE(r.header().revision(), delivered) << "round " << round;
        answered = true;
      } else if (r.watch_id() == 100 + round) {
        for (const auto& ev : r.events()) delivered = ev.kv().mod_revision();
      }
    }
    WatchRequest cancel;
    cancel.mutable_cancel_request()->set_watch_id(100 + round);
    ASSERT_TRUE(stream_->Write(cancel));
    Next();  // the cancel
  }
}

TEST_F(WatchServiceTest, FiltersDropPutsOrDeletes) {
  WatchRequest req;
  auto* c = req.mutable_create_request();
  c->set_key("k");
  c->add_filters(etcdserverpb::WatchCreateRequest::NOPUT);
  ASSERT_TRUE(stream_->Write(req));
  Next();
  Put("k", "1");
  Delete("k");
  WatchResponse r = Next();
  ASSERT_EQ(r.events_size(), 1);
  EXPECT_EQ(r.events(0).type(), mvccpb::Event::DELETE);
  EXPECT_EQ(r.events(0).kv().mod_revision(), 3);
}

TEST_F(WatchServiceTest, PrevKvCarriesThePreviousValue) {
  WatchRequest req;
  req.mutable_create_request()->set_key("k");
  req.mutable_create_request()->set_prev_kv(true);
  ASSERT_TRUE(stream_->Write(req));
  Next();
  Put("k", "old");
  Next();
  Put("k", "new");
  WatchResponse r = Next();
  ASSERT_EQ(r.events_size(), 1);
  EXPECT_EQ(r.events(0).kv().value(), "new");
  EXPECT_EQ(r.events(0).prev_kv().value(), "old");
}

// Issue 10 item 7: prev_kv is read on the stream's send path (etcd's
// sendLoop), never by Deliver under the store's lock; it is still right on
// the wire for a put, an overwrite, a delete, and a replay from history.
TEST_F(WatchServiceTest, PrevKvIsReadOnTheSendPathNotUnderTheStoreLock) {
  HookPrevKvReads(/*hold_first=*/false);
  CreatePrevKv("k", 0);
  Put("k", "v1");  // 2
  Put("k", "v2");  // 3
  Delete("k");     // 4
  Put("k", "v3");  // 5
  ExpectPrevKvs(EventsUpTo(0, 5));
  // A watcher replaying the same revisions from history (the sync thread
  // delivers them, also under the store's lock).
  CreatePrevKv("k", 1, /*start=*/2);
  ExpectPrevKvs(EventsUpTo(1, 5));
  // One read per overwrite or delete at least (creates need none).
  EXPECT_GE(PrevReads(), 4);
  EXPECT_EQ(PrevReadsInDelivery(), 0);
}

// While a prev_kv read is stuck, the store's lock is free and the apply
// thread goes on applying and notifying: Notify does not wait for it.
TEST_F(WatchServiceTest, ApplyAndNotifyGoOnWhileAPrevKvReadIsStuck) {
  HookPrevKvReads(/*hold_first=*/true);
  CreatePrevKv("k", 0);
  Put("k", "v1");  // 2: a create, no read
  EventsUpTo(0, 2);
  Put("k", "v2");  // 3: its prev_kv read is held
  ASSERT_TRUE(read_held_.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "no prev_kv read was made on the send path";
  Put("k", "v3");  // 4
  Delete("k");     // 5
  // NotifiedRev takes the store's lock; it is the apply thread's Notify
  // that moved it to 5.
  EXPECT_EQ(server_->watchable()->NotifiedRev(), 5);
  release_read_.Notify();
  std::map<int64_t, mvccpb::Event> evs = EventsUpTo(0, 5);
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[3].prev_kv().value(), "v1");
  EXPECT_EQ(evs[4].prev_kv().value(), "v2");
  EXPECT_EQ(evs[5].prev_kv().value(), "v3");
  EXPECT_EQ(PrevReadsInDelivery(), 0);
}

// etcd's sendLoop reads prev_kv at mod_revision - 1 when it sends; if that
// revision was compacted after the event was queued, the event goes without
// prev_kv. Synod does the same.
TEST_F(WatchServiceTest, PrevRevisionCompactedBeforeSendGoesWithoutPrevKv) {
  HookPrevKvReads(/*hold_first=*/true);
  CreatePrevKv("k", 0);
  Put("k", "v1");  // 2
  EventsUpTo(0, 2);
  Put("k", "v2");  // 3: prev at 2, read held
  ASSERT_TRUE(read_held_.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "no prev_kv read was made on the send path";
  Put("k", "v3");  // 4: prev at 3
  Compact(3);      // revision 2 is gone; 3 is kept
  release_read_.Notify();
  std::map<int64_t, mvccpb::Event> evs = EventsUpTo(0, 4);
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_FALSE(evs[3].has_prev_kv());
  EXPECT_EQ(evs[4].prev_kv().value(), "v2");
}

TEST_F(WatchServiceTest, FragmentSplitsLargeRevisionsAndMarksAllButTheLast) {
  // One txn-sized catch-up: 6 keys of 1 KiB at revisions 2..7, replayed from
  // history in one response unless fragmented (max_request_bytes = 4 KiB).
  for (int i = 0; i < 6; ++i) Put("f" + std::to_string(i), std::string(1024, 'v'));
  WatchRequest req;
  auto* c = req.mutable_create_request();
  c->set_key("f");
  c->set_range_end("g");
  c->set_start_revision(2);
  c->set_fragment(true);
  ASSERT_TRUE(stream_->Write(req));
  EXPECT_TRUE(Next().created());
  int events = 0;
  int fragments = 0;
  while (events < 6) {
    WatchResponse r = Next();
    if (r.fragment()) ++fragments;
    EXPECT_LE(r.ByteSizeLong(), 4096u + 1200u);
    events += r.events_size();
    if (!r.fragment() && events < 6) {
      // A new response after an unfragmented one is fine (next revision batch).
      continue;
    }
  }
  EXPECT_EQ(events, 6);
  EXPECT_GT(fragments, 0);
}

// With prev_kv, a response is fragmented once its prev_kv are read (they
// can double its size): every part stays near max_request_bytes, and every
// event keeps its prev_kv.
TEST_F(WatchServiceTest, FragmentWithPrevKvSplitsAfterThePrevKvAreRead) {
  // 6 keys of 700 B at revisions 2..7, overwritten at 8..13.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 6; ++i) {
      Put("f" + std::to_string(i), std::string(700, 'a' + round));
    }
  }
  WatchRequest req;
  auto* c = req.mutable_create_request();
  c->set_key("f");
  c->set_range_end("g");
  c->set_start_revision(8);
  c->set_fragment(true);
  c->set_prev_kv(true);
  ASSERT_TRUE(stream_->Write(req));
  EXPECT_TRUE(Next().created());
  int events = 0;
  int fragments = 0;
  while (events < 6) {
    WatchResponse r = Next();
    if (r.fragment()) ++fragments;
    // Two events of ~1.4 KiB each with prev_kv would exceed 4 KiB with a
    // third: one event over the limit at most.
    EXPECT_LE(r.ByteSizeLong(), 4096u + 1600u);
    for (const auto& ev : r.events()) {
      EXPECT_EQ(ev.kv().value(), std::string(700, 'b'));
      EXPECT_EQ(ev.prev_kv().value(), std::string(700, 'a'));
      EXPECT_EQ(ev.prev_kv().mod_revision(), ev.kv().mod_revision() - 6);
      ++events;
    }
  }
  EXPECT_EQ(events, 6);
  EXPECT_GT(fragments, 0);
}

TEST_F(WatchServiceTest, CancelStopsEventsAndIsAcknowledged) {
  Create("k", 5);
  WatchRequest req;
  req.mutable_cancel_request()->set_watch_id(5);
  ASSERT_TRUE(stream_->Write(req));
  WatchResponse r = Next();
  EXPECT_TRUE(r.canceled());
  EXPECT_EQ(r.watch_id(), 5);
  Put("k", "after-cancel");
  // Nothing for watch 5 arrives: a progress request is answered next.
  WatchRequest p;
  p.mutable_progress_request();
  ASSERT_TRUE(stream_->Write(p));
  WatchResponse next = Next();
  EXPECT_EQ(next.watch_id(), -1);
  EXPECT_EQ(next.events_size(), 0);
}

}  // namespace
}  // namespace synod::server

namespace synod::server {
namespace {

// A stream whose client stops reading fills its flow-control window and
// then its bounded queue; its watcher becomes a victim. Another stream on the
// same key keeps getting every event, and the stalled one, once it reads
// again, gets every event exactly once and in order (from history). With
// prev_kv, the queue counts unread prev_kv by estimate and every event
// still carries the key's previous revision.
void WatchServiceTest::RunStalledStream(bool prev_kv) {
  constexpr int kPuts = 3000;
  // Stream A (the fixture's) watches "k" and does not read for now.
  WatchRequest req;
  req.mutable_create_request()->set_key("k");
  req.mutable_create_request()->set_prev_kv(prev_kv);
  ASSERT_TRUE(stream_->Write(req));
  ASSERT_TRUE(Next().created());
  // Stream B watches the same key and reads everything.
  grpc::ClientContext bctx;
  bctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto b = stub_->Watch(&bctx);
  ASSERT_TRUE(b->Write(req));
  WatchResponse r;
  ASSERT_TRUE(b->Read(&r));
  ASSERT_TRUE(r.created());

  // Propose every put at once (one group commit after another).
  absl::Mutex mu;
  int done = 0;
  std::vector<std::unique_ptr<etcdserverpb::PutResponse>> resps;
  const std::string value(1024, 'v');
  for (int i = 0; i < kPuts; ++i) {
    synodpb::Request p;
    p.mutable_put()->set_key("k");
    p.mutable_put()->set_value(value);
    resps.push_back(std::make_unique<etcdserverpb::PutResponse>());
    server_->Propose(std::move(p), resps.back().get(), [&](absl::Status st) {
      EXPECT_TRUE(st.ok()) << st;
      absl::MutexLock l(&mu);
      ++done;
    });
  }
  // The previous revision of "k" (every put overwrites it), or none.
  auto check_prev = [prev_kv](const mvccpb::Event& ev) {
    const int64_t want = prev_kv ? ev.kv().mod_revision() - 1 : 0;
    EXPECT_EQ(ev.prev_kv().mod_revision(), want == 1 ? 0 : want)
        << "at revision " << ev.kv().mod_revision();
  };
  // B sees all of them while A is stalled.
  int64_t expect = 2;
  while (expect < 2 + kPuts) {
    ASSERT_TRUE(b->Read(&r)) << "B stopped at revision " << expect;
    for (const auto& ev : r.events()) {
      ASSERT_EQ(ev.kv().mod_revision(), expect) << "B: gap or duplicate";
      check_prev(ev);
      ++expect;
    }
  }
  EXPECT_GT(server_->watchable()->UnsyncedCount(), 0u)
      << "the stalled stream's watcher should have become a victim";
  // A reads now: every revision once, in order.
  expect = 2;
  while (expect < 2 + kPuts) {
    WatchResponse a = Next();
    for (const auto& ev : a.events()) {
      ASSERT_EQ(ev.kv().mod_revision(), expect) << "A: gap or duplicate";
      check_prev(ev);
      ++expect;
    }
  }
  b->WritesDone();
  while (b->Read(&r)) {
  }
  b->Finish();
  absl::MutexLock l(&mu);
  mu.Await(absl::Condition(+[](int* d) { return *d == kPuts; }, &done));
}

TEST_F(WatchServiceTest, StalledStreamBlocksNoOneAndLaterGetsEveryEventOnce) {
  RunStalledStream(/*prev_kv=*/false);
}

TEST_F(WatchServiceTest, StalledPrevKvStreamBlocksNoOneAndGetsEveryPrevKv) {
  RunStalledStream(/*prev_kv=*/true);
}

}  // namespace
}  // namespace synod::server
