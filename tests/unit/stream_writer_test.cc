// The stream plumbing member and proxy share (common/stream_writer.h,
// watch_stream.h, keep_alive_stream.h): the write queue's send role,
// etcd's sendFragments rule, a deferred watch response written in order
// once prepared, and the keep-alive stream's half-close rule, over real
// gRPC in process.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/keep_alive_stream.h"
#include "common/stream_writer.h"
#include "common/watch_stream.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"
#include "tests/support/free_port.h"

namespace synod::common {
namespace {

using etcdserverpb::LeaseKeepAliveRequest;
using etcdserverpb::LeaseKeepAliveResponse;
using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

// ---- WriteQueue ----

TEST(WriteQueueTest, OnlyAPushIntoAnIdleQueueTakesTheSendRole) {
  WriteQueue<int> q;
  EXPECT_TRUE(q.Push(1, 10));
  EXPECT_FALSE(q.Push(2, 20));
  EXPECT_FALSE(q.Push(3, 30));
  EXPECT_EQ(q.bytes(), 60u);
  EXPECT_EQ(q.front(), 1);
  EXPECT_TRUE(q.Pop(true));  // 2 is next
  EXPECT_EQ(q.front(), 2);
  EXPECT_TRUE(q.Pop(true));
  EXPECT_FALSE(q.Pop(true));  // drained: idle
  EXPECT_FALSE(q.sending());
  EXPECT_EQ(q.bytes(), 0u);
  EXPECT_TRUE(q.Push(4, 1));  // idle again: the pusher writes
}

TEST(WriteQueueTest, AFailedWriteDropsEverythingQueued) {
  WriteQueue<int> q;
  q.Push(1, 10);
  q.Push(2, 20);
  EXPECT_FALSE(q.Pop(false));
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.sending());
  EXPECT_EQ(q.bytes(), 0u);
}

TEST(WriteQueueTest, ATakenHeadIsReplacedByWhatItBecame) {
  WriteQueue<std::string> q;
  q.Push("head", 100);
  q.Push("next", 5);
  size_t taken = 0;
  std::string h = q.TakeFront(&taken);
  EXPECT_EQ(taken, 100u);
  EXPECT_EQ(q.bytes(), 105u);  // still counted while prepared
  EXPECT_TRUE(q.sending());
  q.PutFront(h + "-b", 70);
  q.PutFront(h + "-a", 60);
  q.Uncount(taken);
  EXPECT_EQ(q.bytes(), 135u);
  EXPECT_EQ(q.front(), "head-a");
  EXPECT_TRUE(q.Pop(true));
  EXPECT_EQ(q.front(), "head-b");
  EXPECT_TRUE(q.Pop(true));
  EXPECT_EQ(q.front(), "next");
}

// ---- AppendWatchFragments (etcd's sendFragments) ----

WatchResponse EventsResponse(int n, size_t value_bytes) {
  WatchResponse r;
  r.set_watch_id(7);
  r.mutable_header()->set_revision(42);
  for (int i = 0; i < n; ++i) {
    mvccpb::Event* ev = r.add_events();
    ev->mutable_kv()->set_key(absl::StrCat("k", i));
    ev->mutable_kv()->set_value(std::string(value_bytes, 'v'));
    ev->mutable_kv()->set_mod_revision(100 + i);
  }
  return r;
}

TEST(WatchFragmentsTest, WithoutTheOptionOrUnderTheLimitAResponseGoesWhole) {
  const WatchResponse r = EventsResponse(4, 100);
  std::vector<WatchResponse> out;
  AppendWatchFragments(r, /*fragment=*/false, 10, &out);
  AppendWatchFragments(r, /*fragment=*/true, r.ByteSizeLong() + 1, &out);
  ASSERT_EQ(out.size(), 2u);
  for (const WatchResponse& o : out) {
    EXPECT_EQ(o.events_size(), 4);
    EXPECT_FALSE(o.fragment());
  }
}

TEST(WatchFragmentsTest, ASingleEventOverTheLimitIsNotSplit) {
  std::vector<WatchResponse> out;
  AppendWatchFragments(EventsResponse(1, 5000), true, 100, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].fragment());
}

// etcd splits a response whose size reaches the limit, and cuts each part
// before the event that would make it reach the limit.
TEST(WatchFragmentsTest, SplitsAtTheLimitAndMarksAllButTheLastPart) {
  const WatchResponse r = EventsResponse(6, 1000);
  WatchResponse two = EventsResponse(2, 1000);
  const size_t limit = two.ByteSizeLong();  // two events reach it
  std::vector<WatchResponse> out;
  AppendWatchFragments(r, true, limit, &out);
  ASSERT_EQ(out.size(), 6u);  // one event each: a second one reaches it
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].fragment(), i + 1 < out.size()) << i;
    EXPECT_EQ(out[i].watch_id(), 7);
    EXPECT_EQ(out[i].header().revision(), 42);
    ASSERT_EQ(out[i].events_size(), 1);
    EXPECT_EQ(out[i].events(0).kv().mod_revision(), 100 + static_cast<int>(i));
  }
  out.clear();
  AppendWatchFragments(r, true, limit + 1, &out);  // two fit under it
  ASSERT_EQ(out.size(), 3u);
  for (const WatchResponse& o : out) EXPECT_EQ(o.events_size(), 2);
  EXPECT_TRUE(out[0].fragment());
  EXPECT_TRUE(out[1].fragment());
  EXPECT_FALSE(out[2].fragment());
}

// ---- over gRPC ----

// A gRPC server on 127.0.0.1 with one service, and a channel to it.
class InProcessServer {
 public:
  explicit InProcessServer(grpc::Service* service) {
    const int port = synod::testing::PickFreePort();
    grpc::ServerBuilder b;
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    b.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                       grpc::InsecureServerCredentials());
    b.RegisterService(service);
    server_ = b.BuildAndStart();
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials());
  }
  ~InProcessServer() { server_->Shutdown(); }
  bool ok() const { return server_ != nullptr; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return ctx;
}

// A Watch stream that, for each create request, queues a deferred response
// of four events (FillDeferred adds their prev_kv, which makes it large
// enough to split) and at once a small control response behind it.
class DeferringWatchStream final : public WatchStreamReactor {
 public:
  explicit DeferringWatchStream(WatchStreamLimits limits)
      : WatchStreamReactor(limits) {
    StartReading();
  }
  void OnDone() override { delete this; }

 private:
  void Create(const etcdserverpb::WatchCreateRequest&) override {
    absl::MutexLock l(&mu_);
    EnqueueDeferredLocked(EventsResponse(4, 100), /*bytes=*/1000,
                          /*fragment=*/true);
    WatchResponse control;
    control.set_watch_id(-1);
    EnqueueLocked(std::move(control), /*fragment=*/true);
  }
  void CancelWatch(int64_t) override {}
  void RequestProgress() override {}
  void StopWatching() override {}
  void FillDeferred(WatchResponse* resp) override {
    for (mvccpb::Event& ev : *resp->mutable_events()) {
      ev.mutable_prev_kv()->set_value(std::string(1000, 'p'));
    }
  }
};

class DeferringWatchService final : public etcdserverpb::Watch::CallbackService {
 public:
  grpc::ServerBidiReactor<WatchRequest, WatchResponse>* Watch(
      grpc::CallbackServerContext*) override {
    WatchStreamLimits limits;
    limits.fragment_bytes = 2000;  // one filled event, not two
    return new DeferringWatchStream(limits);
  }
};

TEST(WatchStreamReactorTest, ADeferredResponseIsFilledSplitAndWrittenBeforeLaterOnes) {
  DeferringWatchService service;
  InProcessServer server(&service);
  ASSERT_TRUE(server.ok());
  auto stub = etcdserverpb::Watch::NewStub(server.channel());
  auto ctx = Context();
  auto stream = stub->Watch(ctx.get());
  for (int round = 0; round < 2; ++round) {
    WatchRequest req;
    req.mutable_create_request()->set_key("k");
    ASSERT_TRUE(stream->Write(req));
    for (int i = 0; i < 4; ++i) {
      WatchResponse r;
      ASSERT_TRUE(stream->Read(&r));
      EXPECT_EQ(r.watch_id(), 7);
      ASSERT_EQ(r.events_size(), 1);
      EXPECT_EQ(r.events(0).kv().mod_revision(), 100 + i);
      EXPECT_EQ(r.events(0).prev_kv().value().size(), 1000u);
      EXPECT_EQ(r.fragment(), i < 3);
    }
    WatchResponse control;
    ASSERT_TRUE(stream->Read(&control));
    EXPECT_EQ(control.watch_id(), -1);
  }
  stream->WritesDone();
  WatchResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  EXPECT_TRUE(stream->Finish().ok());
}

// A Lease service whose keep-alive streams hand every request to a renewer
// the test answers by hand (as the proxy's folder answers later, from
// another thread), or at once (as the member does).
class ManualLeaseService final : public etcdserverpb::Lease::CallbackService {
 public:
  explicit ManualLeaseService(bool answer_at_once)
      : answer_at_once_(answer_at_once) {}

  grpc::ServerBidiReactor<LeaseKeepAliveRequest, LeaseKeepAliveResponse>*
  LeaseKeepAlive(grpc::CallbackServerContext*) override {
    return new KeepAliveStream(
        [this](int64_t id, const std::shared_ptr<KeepAliveSink>& sink) {
          if (answer_at_once_) {
            sink->Deliver(Answer(id));
            return;
          }
          absl::MutexLock l(&mu_);
          pending_.emplace_back(id, sink);
        });
  }

  // Waits until `n` requests are pending (false after 10 s).
  bool WaitForPending(size_t n) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return pending_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }

  // Answers every pending request, in the order they came.
  void AnswerAll() {
    std::vector<std::pair<int64_t, std::shared_ptr<KeepAliveSink>>> all;
    {
      absl::MutexLock l(&mu_);
      all.swap(pending_);
    }
    for (auto& [id, sink] : all) sink->Deliver(Answer(id));
  }

 private:
  static LeaseKeepAliveResponse Answer(int64_t id) {
    LeaseKeepAliveResponse r;
    r.set_id(id);
    r.set_ttl(id * 10);
    return r;
  }

  const bool answer_at_once_;
  absl::Mutex mu_;
  std::vector<std::pair<int64_t, std::shared_ptr<KeepAliveSink>>> pending_
      ABSL_GUARDED_BY(mu_);
};

// One client keep-alive stream to a ManualLeaseService.
class KeepAliveStreamTest : public ::testing::Test {
 protected:
  void Open(bool answer_at_once) {
    service_ = std::make_unique<ManualLeaseService>(answer_at_once);
    server_ = std::make_unique<InProcessServer>(service_.get());
    ASSERT_TRUE(server_->ok());
    stub_ = etcdserverpb::Lease::NewStub(server_->channel());
    ctx_ = Context();
    stream_ = stub_->LeaseKeepAlive(ctx_.get());
  }
  void Send(int64_t id) {
    LeaseKeepAliveRequest req;
    req.set_id(id);
    ASSERT_TRUE(stream_->Write(req));
  }
  void ExpectAnswers(const std::vector<int64_t>& ids) {
    for (int64_t id : ids) {
      LeaseKeepAliveResponse r;
      ASSERT_TRUE(stream_->Read(&r)) << "no answer for lease " << id;
      EXPECT_EQ(r.id(), id);
      EXPECT_EQ(r.ttl(), id * 10);
    }
  }
  // The stream ends, with OK, after the answers read so far.
  void ExpectEndsOk() {
    LeaseKeepAliveResponse extra;
    EXPECT_FALSE(stream_->Read(&extra));
    EXPECT_TRUE(stream_->Finish().ok());
  }

  std::unique_ptr<ManualLeaseService> service_;
  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<etcdserverpb::Lease::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<
      grpc::ClientReaderWriter<LeaseKeepAliveRequest, LeaseKeepAliveResponse>>
      stream_;
};

TEST_F(KeepAliveStreamTest, AnswersDueAfterTheHalfCloseAreWrittenThenTheStreamEndsOk) {
  Open(/*answer_at_once=*/false);
  for (int64_t id : {1, 2, 3}) Send(id);
  stream_->WritesDone();
  ASSERT_TRUE(service_->WaitForPending(3));
  service_->AnswerAll();
  ExpectAnswers({1, 2, 3});
  ExpectEndsOk();
}

TEST_F(KeepAliveStreamTest, AnswersGivenAtOnceComeBackInOrder) {
  Open(/*answer_at_once=*/true);
  std::vector<int64_t> ids;
  for (int64_t id = 1; id <= 50; ++id) {
    Send(id);
    ids.push_back(id);
  }
  ExpectAnswers(ids);
  stream_->WritesDone();
  ExpectEndsOk();
}

// A client that cancels does not wait for answers still due; answering
// after the stream ended is harmless.
TEST_F(KeepAliveStreamTest, AnAnswerAfterTheClientCancelledIsDropped) {
  Open(/*answer_at_once=*/false);
  Send(5);
  ASSERT_TRUE(service_->WaitForPending(1));
  ctx_->TryCancel();
  EXPECT_EQ(stream_->Finish().error_code(), grpc::StatusCode::CANCELLED);
  service_->AnswerAll();
}

}  // namespace
}  // namespace synod::common
