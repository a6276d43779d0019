// The Watch service over real gRPC, in process, on a FakeClock with the
// timer thread off: periodic progress notify, client-chosen and duplicate
// watch IDs, empty ranges, filters, fragment and cancel. etcdctl 3.4 cannot
// ask for most of these, so the integration suite does not cover them.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <filesystem>

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

  std::string dir_;
  ServerConfig cfg_;
  common::FakeClock clock_;
  std::unique_ptr<EtcdServer> server_;
  std::unique_ptr<WatchService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<etcdserverpb::Watch::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<WatchRequest, WatchResponse>> stream_;
};

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
// again, gets every event exactly once and in order (from history).
TEST_F(WatchServiceTest, StalledStreamBlocksNoOneAndLaterGetsEveryEventOnce) {
  constexpr int kPuts = 3000;
  // Stream A (the fixture's) watches "k" and does not read for now.
  WatchResponse created = Create("k");
  ASSERT_TRUE(created.created());
  // Stream B watches the same key and reads everything.
  grpc::ClientContext bctx;
  bctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto b = stub_->Watch(&bctx);
  WatchRequest req;
  req.mutable_create_request()->set_key("k");
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
  // B sees all of them while A is stalled.
  int64_t expect = 2;
  while (expect < 2 + kPuts) {
    ASSERT_TRUE(b->Read(&r)) << "B stopped at revision " << expect;
    for (const auto& ev : r.events()) {
      ASSERT_EQ(ev.kv().mod_revision(), expect) << "B: gap or duplicate";
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

}  // namespace
}  // namespace synod::server
