#include "proxy/upstream.h"

#include <deque>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace synod::proxy {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

Endpoints::Endpoints(std::vector<std::string> endpoints, int max_send_bytes,
                     int max_recv_bytes)
    : endpoints_(std::move(endpoints)) {
  for (const std::string& e : endpoints_) {
    absl::string_view hp = e;
    absl::ConsumePrefix(&hp, "http://");
    absl::ConsumeSuffix(&hp, "/");
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(max_recv_bytes);
    args.SetMaxSendMessageSize(max_send_bytes);
    // Fail over quickly: a dead member should not hold a call for long.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    channels_.push_back(grpc::CreateCustomChannel(
        std::string(hp), grpc::InsecureChannelCredentials(), args));
  }
}

std::shared_ptr<grpc::Channel> Endpoints::Current(size_t* index) {
  size_t i = current_.load(std::memory_order_acquire) % channels_.size();
  if (index != nullptr) *index = i;
  return channels_[i];
}

void Endpoints::ReportFailure(size_t index) {
  size_t expected = index;
  current_.compare_exchange_strong(expected, (index + 1) % channels_.size(),
                                   std::memory_order_acq_rel);
}

namespace {

// One watch stream to a member: one write in flight, reads in a loop.
// Owns itself from the constructor until OnDone.
class GrpcWatchStream final
    : public grpc::ClientBidiReactor<WatchRequest, WatchResponse>,
      public UpstreamWatch,
      public std::enable_shared_from_this<GrpcWatchStream> {
 public:
  GrpcWatchStream(Endpoints* endpoints, UpstreamWatchCallbacks callbacks)
      : endpoints_(endpoints), callbacks_(std::move(callbacks)) {}

  void Start(const etcdserverpb::WatchCreateRequest& create) {
    self_ = shared_from_this();
    auto channel = endpoints_->Current(&endpoint_index_);
    stub_ = etcdserverpb::Watch::NewStub(channel);
    stub_->async()->Watch(&ctx_, this);
    WatchRequest req;
    *req.mutable_create_request() = create;
    {
      absl::MutexLock l(&mu_);
      queue_.push_back(std::move(req));
      writing_ = true;
      StartWrite(&queue_.front());
    }
    StartRead(&resp_);
    StartCall();
  }

  void RequestProgress() override {
    WatchRequest req;
    req.mutable_progress_request();
    absl::MutexLock l(&mu_);
    if (done_) return;
    queue_.push_back(std::move(req));
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  void Close() override { ctx_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    queue_.pop_front();
    if (!ok) {
      queue_.clear();
      writing_ = false;
      return;
    }
    if (queue_.empty()) {
      writing_ = false;
    } else {
      StartWrite(&queue_.front());
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status
    if (callbacks_.on_response) callbacks_.on_response(resp_);
    StartRead(&resp_);
  }

  void OnDone(const grpc::Status& s) override {
    {
      absl::MutexLock l(&mu_);
      done_ = true;
    }
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      endpoints_->ReportFailure(endpoint_index_);
    }
    if (callbacks_.on_closed) callbacks_.on_closed(s);
    callbacks_ = UpstreamWatchCallbacks();
    std::shared_ptr<GrpcWatchStream> self = std::move(self_);
    // `self` may free this object when it goes out of scope.
  }

 private:
  Endpoints* endpoints_;
  UpstreamWatchCallbacks callbacks_;
  size_t endpoint_index_ = 0;
  std::unique_ptr<etcdserverpb::Watch::Stub> stub_;
  grpc::ClientContext ctx_;
  WatchResponse resp_;
  std::shared_ptr<GrpcWatchStream> self_;
  absl::Mutex mu_;
  std::deque<WatchRequest> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// One Range call, retried on the next endpoint while UNAVAILABLE (at most
// once per endpoint). Each attempt has its own context.
struct RangeCall {
  Endpoints* endpoints;
  etcdserverpb::RangeRequest req;
  std::function<void(const grpc::Status&, const etcdserverpb::RangeResponse&)>
      done;
  size_t attempts = 0;

  struct Attempt {
    size_t index = 0;
    grpc::ClientContext ctx;
    std::unique_ptr<etcdserverpb::KV::Stub> stub;
    etcdserverpb::RangeResponse resp;
  };

  static void Run(std::shared_ptr<RangeCall> c) {
    auto a = std::make_shared<Attempt>();
    a->ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(5));
    a->stub = etcdserverpb::KV::NewStub(c->endpoints->Current(&a->index));
    ++c->attempts;
    a->stub->async()->Range(&a->ctx, &c->req, &a->resp,
                            [c, a](grpc::Status s) {
                              if (s.error_code() ==
                                  grpc::StatusCode::UNAVAILABLE) {
                                c->endpoints->ReportFailure(a->index);
                                if (c->attempts < c->endpoints->size()) {
                                  Run(c);
                                  return;
                                }
                              }
                              c->done(s, a->resp);
                            });
  }
};

}  // namespace

std::shared_ptr<UpstreamWatch> GrpcUpstream::Watch(
    const etcdserverpb::WatchCreateRequest& create,
    UpstreamWatchCallbacks callbacks) {
  auto w = std::make_shared<GrpcWatchStream>(endpoints_, std::move(callbacks));
  w->Start(create);
  return w;
}

void GrpcUpstream::CurrentRevision(
    const std::string& key,
    std::function<void(absl::StatusOr<int64_t>)> done) {
  etcdserverpb::RangeRequest req;
  req.set_key(key.empty() ? std::string(1, '\0') : key);
  req.set_count_only(true);
  req.set_limit(1);
  Range(req, [done = std::move(done)](const grpc::Status& s,
                                      const etcdserverpb::RangeResponse& r) {
    if (!s.ok()) {
      done(absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        s.error_message()));
      return;
    }
    done(r.header().revision());
  });
}

void GrpcUpstream::Range(
    const etcdserverpb::RangeRequest& req,
    std::function<void(const grpc::Status&, const etcdserverpb::RangeResponse&)>
        done) {
  auto c = std::make_shared<RangeCall>();
  c->endpoints = endpoints_;
  c->req = req;
  c->done = std::move(done);
  RangeCall::Run(std::move(c));
}

}  // namespace synod::proxy
