#include "common/grpc_metrics.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/metrics.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"

namespace synod::common {
namespace {

// Range answers OK; Put fails with InvalidArgument.
class FakeKv final : public etcdserverpb::KV::CallbackService {
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx,
                                  const etcdserverpb::RangeRequest*,
                                  etcdserverpb::RangeResponse*) override {
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx,
                                const etcdserverpb::PutRequest*,
                                etcdserverpb::PutResponse*) override {
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no"));
    return r;
  }
};

// Watch answers each request once and, like Synod's watch stream, finishes
// with OK once reading ends, also when the client cancelled.
class FakeWatch final : public etcdserverpb::Watch::CallbackService {
 public:
  absl::Notification done;

  grpc::ServerBidiReactor<etcdserverpb::WatchRequest,
                          etcdserverpb::WatchResponse>*
  Watch(grpc::CallbackServerContext*) override {
    return new Stream(&done);
  }

 private:
  class Stream final : public grpc::ServerBidiReactor<etcdserverpb::WatchRequest,
                                                      etcdserverpb::WatchResponse> {
   public:
    explicit Stream(absl::Notification* done) : done_(done) { StartRead(&req_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      StartWrite(&resp_);
    }
    void OnWriteDone(bool) override { StartRead(&req_); }
    void OnDone() override {
      done_->Notify();
      delete this;
    }

   private:
    absl::Notification* done_;
    etcdserverpb::WatchRequest req_;
    etcdserverpb::WatchResponse resp_;
  };
};

bool HasLine(const std::string& text, const std::string& line) {
  return absl::StrContains(absl::StrCat("\n", text), absl::StrCat("\n", line, "\n"));
}

TEST(GrpcMetricsTest, CountsAsGoGrpcPrometheus) {
  MetricsRegistry registry;
  FakeKv kv;
  FakeWatch watch;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&kv);
  builder.RegisterService(&watch);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      factories;
  factories.push_back(NewGrpcServerMetricsFactory(&registry));
  builder.experimental().SetInterceptorCreators(std::move(factories));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  auto deadline = [] {
    return std::chrono::system_clock::now() + std::chrono::seconds(10);
  };
  auto kv_stub = etcdserverpb::KV::NewStub(channel);
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    etcdserverpb::RangeResponse resp;
    ASSERT_TRUE(kv_stub->Range(&ctx, etcdserverpb::RangeRequest(), &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline());
    etcdserverpb::PutResponse resp;
    EXPECT_EQ(kv_stub->Put(&ctx, etcdserverpb::PutRequest(), &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    // A watch the client abandons: the server finishes it with OK, and it
    // counts as Canceled.
    auto watch_stub = etcdserverpb::Watch::NewStub(channel);
    grpc::ClientContext ctx;
    auto stream = watch_stub->Watch(&ctx);
    ASSERT_TRUE(stream->Write(etcdserverpb::WatchRequest()));
    etcdserverpb::WatchResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    ctx.TryCancel();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
    // The interceptor counted before OnDone ran.
    ASSERT_TRUE(watch.done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  }

  const std::string text = registry.RenderText();
  const std::string range =
      R"(grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary")";
  const std::string put =
      R"(grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary")";
  const std::string watch_labels =
      R"(grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream")";
  for (const std::string& line : {
           absl::StrCat(R"(grpc_server_handled_total{grpc_code="OK",)", range, "} 2"),
           absl::StrCat(R"(grpc_server_handled_total{grpc_code="Unknown",)", range, "} 0"),
           absl::StrCat(R"(grpc_server_handled_total{grpc_code="InvalidArgument",)", put,
                        "} 1"),
           absl::StrCat(R"(grpc_server_handled_total{grpc_code="Canceled",)",
                        watch_labels, "} 1"),
           absl::StrCat(R"(grpc_server_handled_total{grpc_code="OK",)", watch_labels,
                        "} 0"),
           absl::StrCat("grpc_server_started_total{", range, "} 2"),
           absl::StrCat("grpc_server_started_total{", watch_labels, "} 1"),
           absl::StrCat("grpc_server_msg_received_total{", range, "} 2"),
           absl::StrCat("grpc_server_msg_sent_total{", range, "} 2"),
           absl::StrCat("grpc_server_msg_sent_total{", put, "} 0"),
           absl::StrCat("grpc_server_msg_received_total{", watch_labels, "} 1"),
           absl::StrCat("grpc_server_msg_sent_total{", watch_labels, "} 1"),
       }) {
    EXPECT_TRUE(HasLine(text, line)) << line << "\nin:\n" << text;
  }
  server->Shutdown(deadline());
}

}  // namespace
}  // namespace synod::common
