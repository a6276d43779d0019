#include "proxy/upstream.h"

#include <grpcpp/support/client_interceptor.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/stream_writer.h"
#include "common/x509_util.h"

namespace synod::proxy {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

namespace {

// A request larger than --max-send-bytes is never sent to a member; gRPC
// fails the call itself with RESOURCE_EXHAUSTED "Sent message larger than
// max (N vs. M)". This interceptor answers such a call as the member
// answers a request over its --max-request-bytes (1.5 MiB by default, like
// --max-send-bytes): INVALID_ARGUMENT "etcdserver: request is too large".
// etcd's grpc-proxy passes its client's error on as is (RESOURCE_EXHAUSTED
// "trying to send message larger than max (N vs. M)"); synod-proxy gives
// the member's better answer instead.
class RequestSizeInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit RequestSizeInterceptor(size_t max_send_bytes)
      : max_send_bytes_(max_send_bytes) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    using Hook = grpc::experimental::InterceptionHookPoints;
    if (m->QueryInterceptionHookPoint(Hook::PRE_SEND_MESSAGE)) {
      // Serializes the message now rather than later; sent as serialized.
      const grpc::ByteBuffer* b = m->GetSerializedSendMessage();
      if (b != nullptr && b->Length() > max_send_bytes_) {
        too_large_.store(true, std::memory_order_relaxed);
      }
    }
    if (m->QueryInterceptionHookPoint(Hook::POST_RECV_STATUS) &&
        too_large_.load(std::memory_order_relaxed)) {
      grpc::Status* s = m->GetRecvStatus();
      if (s->error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        *s = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "etcdserver: request is too large");
      }
    }
    m->Proceed();
  }

 private:
  const size_t max_send_bytes_;
  std::atomic<bool> too_large_{false};
};

class RequestSizeInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit RequestSizeInterceptorFactory(size_t max_send_bytes)
      : max_send_bytes_(max_send_bytes) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new RequestSizeInterceptor(max_send_bytes_);
  }

 private:
  const size_t max_send_bytes_;
};

// The subject's Common Name of the first certificate in PEM file `path`, as
// Go's x509 reads it; "" when it has none.
absl::StatusOr<std::string> CertCommonName(const std::string& path) {
  absl::StatusOr<std::string> pem = common::ReadWholeFile(path);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<std::vector<common::X509Ptr>> certs =
      common::ParsePemCertificates(*pem);
  if (!certs.ok()) return certs.status();
  return common::SubjectCommonName(certs->front().get());
}

}  // namespace

absl::Status ValidateUpstreamTls(const UpstreamOptions& options) {
  const common::TlsInfo& tls = options.tls;
  if (!options.TlsConfigured()) return absl::OkStatus();
  // Only --insecure-skip-tls-verify: etcd's empty TLSInfo, nothing to read.
  if (tls.Empty() && tls.trusted_ca_file.empty()) return absl::OkStatus();
  if (absl::Status st = common::ValidateTlsInfo(tls); !st.ok()) return st;
  if (tls.cert_file.empty()) return absl::OkStatus();
  // etcd 3.4 (newTLS sets EmptyCN; TLSInfo.ClientConfig refuses a CN).
  absl::StatusOr<std::string> cn = CertCommonName(tls.cert_file);
  if (!cn.ok()) return cn.status();
  if (!cn->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cert has non empty Common Name (", *cn, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Endpoints>> Endpoints::Create(
    const std::vector<std::string>& endpoints, const UpstreamOptions& options) {
  if (endpoints.empty()) {
    return absl::InvalidArgumentError("no endpoints");
  }
  if (absl::Status st = ValidateUpstreamTls(options); !st.ok()) return st;
  // One set of credentials serves every TLS member: each is verified
  // against the host of its own target (tls.server_name is empty).
  std::shared_ptr<grpc::ChannelCredentials> tls_creds;
  auto tls_credentials = [&]() -> absl::Status {
    if (tls_creds != nullptr) return absl::OkStatus();
    // Without TLS flags an https:// member is verified against the
    // system's roots (clientv3's credentials.Config{}).
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> c =
        common::NewChannelCredentials(
            options.TlsConfigured() ? options.tls : common::TlsInfo());
    if (!c.ok()) return c.status();
    tls_creds = *std::move(c);
    return absl::OkStatus();
  };
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (const std::string& e : endpoints) {
    absl::string_view hp = e;
    absl::ConsumeSuffix(&hp, "/");
    // clientv3 (processCreds): http:// is plaintext even with TLS flags,
    // https:// is TLS even without, no scheme follows the flags.
    bool use_tls = options.TlsConfigured();
    if (absl::ConsumePrefix(&hp, "https://")) {
      use_tls = true;
    } else if (absl::ConsumePrefix(&hp, "http://")) {
      use_tls = false;
    } else if (absl::StrContains(hp, "://")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported endpoint scheme in \"", e,
                       "\" (want http:// or https://)"));
    }
    if (hp.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("empty endpoint \"", e, "\""));
    }
    if (use_tls) {
      if (absl::Status st = tls_credentials(); !st.ok()) return st;
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(options.max_recv_bytes);
    args.SetMaxSendMessageSize(options.max_send_bytes);
    // Fail over quickly: a dead member should not hold a call for long.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    std::vector<
        std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(std::make_unique<RequestSizeInterceptorFactory>(
        static_cast<size_t>(options.max_send_bytes)));
    channels.push_back(grpc::experimental::CreateCustomChannelWithInterceptors(
        std::string(hp),
        use_tls ? tls_creds : grpc::InsecureChannelCredentials(), args,
        std::move(interceptors)));
  }
  return std::unique_ptr<Endpoints>(
      new Endpoints(endpoints, std::move(channels)));
}

Endpoints::Endpoints(std::vector<std::string> endpoints,
                     std::vector<std::shared_ptr<grpc::Channel>> channels)
    : endpoints_(std::move(endpoints)), channels_(std::move(channels)) {}

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

// One bidi stream to a member: one write in flight (common::WriteQueue),
// reads in a loop.
// Owns itself from Start() until OnDone.
//
// Send() starts writes from outside the reactor's reactions, so the stream
// holds the call (AddHold) until its read side has ended: without the hold
// the call could complete, and its state be freed, between Send()'s check
// of done_ and its StartWrite (gRPC forbids starting an operation from
// outside a reaction once nothing holds the call).
template <typename Req, typename Resp>
class GrpcStream final : public grpc::ClientBidiReactor<Req, Resp>,
                         public std::enable_shared_from_this<GrpcStream<Req, Resp>> {
 public:
  // Starts the call on the channel; returns what must outlive it (the
  // stub).
  using Open = std::function<std::shared_ptr<void>(
      const std::shared_ptr<grpc::Channel>&, grpc::ClientContext*,
      grpc::ClientBidiReactor<Req, Resp>*)>;
  GrpcStream(Endpoints* endpoints, std::function<void(const Resp&)> on_response,
             std::function<void(const grpc::Status&)> on_closed)
      : endpoints_(endpoints),
        on_response_(std::move(on_response)),
        on_closed_(std::move(on_closed)) {}

  // Opens the call with `open`, sending `first` (if any) first.
  void Start(const Open& open, const Req* first) {
    self_ = this->shared_from_this();
    stub_ = open(endpoints_->Current(&endpoint_index_), &ctx_, this);
    if (first != nullptr) Send(*first);
    this->StartRead(&resp_);
    this->AddHold();  // removed when the read side ends
    this->StartCall();
  }

  void Send(Req req) {
    absl::MutexLock l(&mu_);
    if (done_) return;
    if (queue_.Push(std::move(req))) this->StartWrite(&queue_.front());
  }

  void Close() { ctx_.TryCancel(); }

  // A failed write drops what is queued: the call is over, and its read
  // side ends too.
  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    if (queue_.Pop(ok)) this->StartWrite(&queue_.front());
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The call is over (the member ended it, it failed, or Close()): no
      // more writes; OnDone follows with the status.
      {
        absl::MutexLock l(&mu_);
        done_ = true;
      }
      this->RemoveHold();
      return;
    }
    if (on_response_) on_response_(resp_);
    this->StartRead(&resp_);
  }

  void OnDone(const grpc::Status& s) override {
    {
      absl::MutexLock l(&mu_);
      done_ = true;
    }
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      endpoints_->ReportFailure(endpoint_index_);
    }
    if (on_closed_) on_closed_(s);
    on_response_ = nullptr;
    on_closed_ = nullptr;
    std::shared_ptr<GrpcStream> self = std::move(self_);
    // `self` may free this object when it goes out of scope.
  }

 private:
  Endpoints* endpoints_;
  std::function<void(const Resp&)> on_response_;
  std::function<void(const grpc::Status&)> on_closed_;
  size_t endpoint_index_ = 0;
  std::shared_ptr<void> stub_;
  grpc::ClientContext ctx_;
  Resp resp_;
  std::shared_ptr<GrpcStream> self_;
  absl::Mutex mu_;
  common::WriteQueue<Req> queue_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

using WatchStream = GrpcStream<WatchRequest, WatchResponse>;
using KeepAliveStream = GrpcStream<etcdserverpb::LeaseKeepAliveRequest,
                                   etcdserverpb::LeaseKeepAliveResponse>;

class GrpcWatchHandle final : public UpstreamWatch {
 public:
  explicit GrpcWatchHandle(std::shared_ptr<WatchStream> s) : s_(std::move(s)) {}
  void RequestProgress() override {
    WatchRequest req;
    req.mutable_progress_request();
    s_->Send(std::move(req));
  }
  void Close() override { s_->Close(); }

 private:
  std::shared_ptr<WatchStream> s_;
};

class GrpcKeepAliveHandle final : public UpstreamKeepAlive {
 public:
  explicit GrpcKeepAliveHandle(std::shared_ptr<KeepAliveStream> s)
      : s_(std::move(s)) {}
  void Send(int64_t lease_id) override {
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(lease_id);
    s_->Send(std::move(req));
  }
  void Close() override { s_->Close(); }

 private:
  std::shared_ptr<KeepAliveStream> s_;
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
    a->ctx.set_deadline(common::GrpcDeadlineAfter(absl::Seconds(5)));
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
  auto s = std::make_shared<WatchStream>(endpoints_,
                                         std::move(callbacks.on_response),
                                         std::move(callbacks.on_closed));
  WatchRequest first;
  *first.mutable_create_request() = create;
  s->Start(
      [](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext* ctx,
         grpc::ClientBidiReactor<WatchRequest, WatchResponse>* r) {
        std::shared_ptr<etcdserverpb::Watch::Stub> stub =
            etcdserverpb::Watch::NewStub(ch);
        stub->async()->Watch(ctx, r);
        return std::shared_ptr<void>(stub);
      },
      &first);
  return std::make_shared<GrpcWatchHandle>(std::move(s));
}

std::shared_ptr<UpstreamKeepAlive> GrpcUpstream::KeepAlive(
    UpstreamKeepAliveCallbacks callbacks) {
  auto s = std::make_shared<KeepAliveStream>(endpoints_,
                                             std::move(callbacks.on_response),
                                             std::move(callbacks.on_closed));
  s->Start(
      [](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext* ctx,
         grpc::ClientBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                 etcdserverpb::LeaseKeepAliveResponse>* r) {
        std::shared_ptr<etcdserverpb::Lease::Stub> stub =
            etcdserverpb::Lease::NewStub(ch);
        stub->async()->LeaseKeepAlive(ctx, r);
        return std::shared_ptr<void>(stub);
      },
      nullptr);
  return std::make_shared<GrpcKeepAliveHandle>(std::move(s));
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
