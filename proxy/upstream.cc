#include "proxy/upstream.h"

#include <grpcpp/support/client_interceptor.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/logging.h"
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
  // `on_metadata` (optional) sees the server's initial metadata once,
  // before the first on_response.
  using OnMetadata = std::function<void(
      const std::multimap<grpc::string_ref, grpc::string_ref>&)>;
  GrpcStream(Endpoints* endpoints, std::function<void(const Resp&)> on_response,
             std::function<void(const grpc::Status&)> on_closed,
             OnMetadata on_metadata = nullptr)
      : endpoints_(endpoints),
        on_response_(std::move(on_response)),
        on_closed_(std::move(on_closed)),
        on_metadata_(std::move(on_metadata)) {}

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
    // The initial metadata has arrived once a message has (gRPC reads it
    // first).
    if (on_metadata_) {
      on_metadata_(ctx_.GetServerInitialMetadata());
      on_metadata_ = nullptr;
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
    on_metadata_ = nullptr;
    std::shared_ptr<GrpcStream> self = std::move(self_);
    // `self` may free this object when it goes out of scope.
  }

 private:
  Endpoints* endpoints_;
  std::function<void(const Resp&)> on_response_;
  std::function<void(const grpc::Status&)> on_closed_;
  OnMetadata on_metadata_;  // on the reaction threads only
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

// One unary call, retried on the next endpoint while UNAVAILABLE (at most
// once per endpoint), 5 s per attempt, carrying `token` (when not empty) in
// the metadata key "token". `done` also sees the attempt's context (for the
// server's initial metadata).
template <typename Service, typename Req, typename Resp>
struct UnaryCall {
  using Start = std::function<void(typename Service::Stub*,
                                   grpc::ClientContext*, const Req*, Resp*,
                                   std::function<void(grpc::Status)>)>;
  using Done = std::function<void(const grpc::Status&, const Resp&,
                                  const grpc::ClientContext&)>;
  Endpoints* endpoints;
  Req req;
  std::string token;
  Start start;
  Done done;
  size_t attempts = 0;

  struct Attempt {
    size_t index = 0;
    grpc::ClientContext ctx;
    std::unique_ptr<typename Service::Stub> stub;
    Resp resp;
  };

  static void Run(std::shared_ptr<UnaryCall> c) {
    auto a = std::make_shared<Attempt>();
    a->ctx.set_deadline(common::GrpcDeadlineAfter(absl::Seconds(5)));
    if (!c->token.empty()) a->ctx.AddMetadata("token", c->token);
    a->stub = Service::NewStub(c->endpoints->Current(&a->index));
    ++c->attempts;
    c->start(a->stub.get(), &a->ctx, &c->req, &a->resp,
             [c, a](grpc::Status s) {
               if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
                 c->endpoints->ReportFailure(a->index);
                 if (c->attempts < c->endpoints->size()) {
                   Run(c);
                   return;
                 }
               }
               c->done(s, a->resp, a->ctx);
             });
  }
};

template <typename Service, typename Req, typename Resp>
void StartUnary(Endpoints* endpoints, const Req& req, std::string token,
                typename UnaryCall<Service, Req, Resp>::Start start,
                typename UnaryCall<Service, Req, Resp>::Done done) {
  auto c = std::make_shared<UnaryCall<Service, Req, Resp>>();
  c->endpoints = endpoints;
  c->req = req;
  c->token = std::move(token);
  c->start = std::move(start);
  c->done = std::move(done);
  UnaryCall<Service, Req, Resp>::Run(std::move(c));
}

void RangeWithToken(Endpoints* endpoints, const etcdserverpb::RangeRequest& req,
                    std::string token, Upstream::RangeDone done) {
  StartUnary<etcdserverpb::KV, etcdserverpb::RangeRequest,
             etcdserverpb::RangeResponse>(
      endpoints, req, std::move(token),
      [](etcdserverpb::KV::Stub* stub, grpc::ClientContext* ctx,
         const etcdserverpb::RangeRequest* q, etcdserverpb::RangeResponse* r,
         std::function<void(grpc::Status)> cb) {
        stub->async()->Range(ctx, q, r, std::move(cb));
      },
      [done = std::move(done)](const grpc::Status& s,
                               const etcdserverpb::RangeResponse& r,
                               const grpc::ClientContext&) { done(s, r); });
}

// The proxy identity's token when it has one.
void AddToken(grpc::ClientContext* ctx, const std::string& token) {
  if (!token.empty()) ctx->AddMetadata("token", token);
}

// Wraps the on_closed of one of the proxy's own streams (`what`), opened
// with `token`: ended by a token error, it makes the identity refresh (the
// stream's owner re-opens it later, with the new token).
std::function<void(const grpc::Status&)> RefreshOnTokenError(
    ProxyIdentity* identity, std::string token, const char* what,
    std::function<void(const grpc::Status&)> cb) {
  return [identity, token = std::move(token), what,
          cb = std::move(cb)](const grpc::Status& st) {
    if (identity != nullptr && identity->configured() && NeedsReauth(st)) {
      SYNOD_LOG(INFO) << "the member ended synod-proxy's " << what << ": "
                      << st.error_message();
      identity->Refresh(token, [](bool) {});
    }
    cb(st);
  };
}

}  // namespace

std::shared_ptr<UpstreamWatch> GrpcUpstream::Watch(
    const etcdserverpb::WatchCreateRequest& create,
    UpstreamWatchCallbacks callbacks) {
  // The proxy's token, and what happens when the member refuses it: a
  // watch canceled for a token reason (etcd 3.4's isWatchPermitted), or
  // for any reason while the proxy had no token yet (auth was enabled after
  // it started; a synod member then cancels its watches as permission
  // denied) unless its password was refused, or a stream failing with a token error, makes the identity
  // refresh; such a cancel is not passed on but ends the stream, so that
  // the range re-creates it (with the new token, from where it was) instead
  // of canceling its subscribers. "permission denied" to a token is passed
  // on as it is.
  struct Reauth {
    absl::Mutex mu;
    std::weak_ptr<WatchStream> stream ABSL_GUARDED_BY(mu);
    bool swallowed = false;  // on the stream's reaction thread only
  };
  auto reauth = std::make_shared<Reauth>();
  ProxyIdentity* identity = identity_;
  const std::string token = ProxyToken();
  auto on_response = [reauth, identity, token,
                      cb = std::move(callbacks.on_response)](
                         const WatchResponse& r) {
    if (reauth->swallowed) return;
    if (identity != nullptr && identity->configured() && r.canceled() &&
        r.compact_revision() == 0 &&
        (ReasonNeedsReauth(r.cancel_reason()) ||
         (token.empty() && identity->MayAuthenticate()))) {
      reauth->swallowed = true;
      SYNOD_LOG(INFO) << "the member refused synod-proxy's watch: "
                      << r.cancel_reason();
      identity->Refresh(token, [](bool) {});
      std::shared_ptr<WatchStream> s;
      {
        absl::MutexLock l(&reauth->mu);
        s = reauth->stream.lock();
      }
      if (s != nullptr) s->Close();
      return;
    }
    cb(r);
  };
  WatchStream::OnMetadata on_metadata;
  if (callbacks.on_metadata) {
    on_metadata = [cb = std::move(callbacks.on_metadata)](
                      const std::multimap<grpc::string_ref,
                                          grpc::string_ref>& md) {
      cb(OrderedProgressFromMetadata(md));
    };
  }
  auto s = std::make_shared<WatchStream>(
      endpoints_, std::move(on_response),
      RefreshOnTokenError(identity, token, "watch",
                          std::move(callbacks.on_closed)),
      std::move(on_metadata));
  {
    absl::MutexLock l(&reauth->mu);
    reauth->stream = s;
  }
  WatchRequest first;
  *first.mutable_create_request() = create;
  s->Start(
      [token](const std::shared_ptr<grpc::Channel>& ch,
              grpc::ClientContext* ctx,
              grpc::ClientBidiReactor<WatchRequest, WatchResponse>* r) {
        AddToken(ctx, token);
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
  const std::string token = ProxyToken();
  auto s = std::make_shared<KeepAliveStream>(
      endpoints_, std::move(callbacks.on_response),
      RefreshOnTokenError(identity_, token, "keep-alives",
                          std::move(callbacks.on_closed)));
  s->Start(
      [token](const std::shared_ptr<grpc::Channel>& ch,
              grpc::ClientContext* ctx,
              grpc::ClientBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                      etcdserverpb::LeaseKeepAliveResponse>*
                  r) {
        AddToken(ctx, token);
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
  Range(req, CallAs::Proxy(),
        [done = std::move(done)](const grpc::Status& s,
                                 const etcdserverpb::RangeResponse& r) {
          if (!s.ok()) {
            done(absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                              s.error_message()));
            return;
          }
          done(r.header().revision());
        });
}

std::string GrpcUpstream::ProxyToken() const {
  return identity_ != nullptr ? identity_->Token() : "";
}

void GrpcUpstream::Range(const etcdserverpb::RangeRequest& req,
                         const CallAs& as, RangeDone done) {
  if (as.client) {
    RangeWithToken(endpoints_, req, as.token, std::move(done));
    return;
  }
  // As the proxy: once more with a new token when the member refuses it.
  auto resp = std::make_shared<etcdserverpb::RangeResponse>();
  Endpoints* endpoints = endpoints_;
  RunWithReauth(
      identity_,
      [endpoints, req, resp](const std::string& token,
                             std::function<void(const grpc::Status&)> cb) {
        RangeWithToken(endpoints, req, token,
                       [resp, cb](const grpc::Status& s,
                                  const etcdserverpb::RangeResponse& r) {
                         *resp = r;
                         cb(s);
                       });
      },
      [resp, done = std::move(done)](const grpc::Status& s) {
        done(s, *resp);
      });
}

bool OrderedProgressFromMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& md) {
  auto it = md.find(kWatchProgressMetadataKey);
  return it != md.end() &&
         absl::string_view(it->second.data(), it->second.size()) ==
             kWatchProgressSlowestWatcher;
}

UpstreamAuthState AuthStateFromMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& md) {
  UpstreamAuthState st;
  auto enabled = md.find("synod-auth-enabled");
  auto revision = md.find("synod-auth-revision");
  if (enabled == md.end() || revision == md.end()) return st;
  const absl::string_view e(enabled->second.data(), enabled->second.size());
  const absl::string_view r(revision->second.data(), revision->second.size());
  uint64_t rev = 0;
  if ((e != "true" && e != "false") || !absl::SimpleAtoi(r, &rev)) return st;
  st.known = true;
  st.enabled = e == "true";
  st.revision = rev;
  return st;
}

void GrpcUpstream::AuthStatus(
    std::function<void(absl::StatusOr<UpstreamAuthState>)> done) {
  auto state = std::make_shared<UpstreamAuthState>();
  Endpoints* endpoints = endpoints_;
  RunWithReauth(
      identity_,
      [endpoints, state](const std::string& token,
                         std::function<void(const grpc::Status&)> cb) {
        StartUnary<etcdserverpb::Maintenance, etcdserverpb::StatusRequest,
                   etcdserverpb::StatusResponse>(
            endpoints, etcdserverpb::StatusRequest(), token,
            [](etcdserverpb::Maintenance::Stub* stub, grpc::ClientContext* ctx,
               const etcdserverpb::StatusRequest* q,
               etcdserverpb::StatusResponse* r,
               std::function<void(grpc::Status)> f) {
              stub->async()->Status(ctx, q, r, std::move(f));
            },
            [state, cb](const grpc::Status& s,
                        const etcdserverpb::StatusResponse&,
                        const grpc::ClientContext& ctx) {
              if (s.ok()) {
                *state = AuthStateFromMetadata(ctx.GetServerInitialMetadata());
                if (!state->known) {
                  *state =
                      AuthStateFromMetadata(ctx.GetServerTrailingMetadata());
                }
              }
              cb(s);
            });
      },
      [state, done = std::move(done)](const grpc::Status& s) {
        if (!s.ok()) {
          done(common::FromGrpcStatus(s));
          return;
        }
        done(*state);
      });
}

ProxyIdentity::Authenticator GrpcAuthenticator(Endpoints* endpoints) {
  return [endpoints](const std::string& user, const std::string& password,
                     std::function<void(absl::StatusOr<std::string>)> done) {
    etcdserverpb::AuthenticateRequest req;
    req.set_name(user);
    req.set_password(password);
    StartUnary<etcdserverpb::Auth, etcdserverpb::AuthenticateRequest,
               etcdserverpb::AuthenticateResponse>(
        endpoints, req, "",
        [](etcdserverpb::Auth::Stub* stub, grpc::ClientContext* ctx,
           const etcdserverpb::AuthenticateRequest* q,
           etcdserverpb::AuthenticateResponse* r,
           std::function<void(grpc::Status)> f) {
          stub->async()->Authenticate(ctx, q, r, std::move(f));
        },
        [done = std::move(done)](const grpc::Status& s,
                                 const etcdserverpb::AuthenticateResponse& r,
                                 const grpc::ClientContext&) {
          if (!s.ok()) {
            done(common::FromGrpcStatus(s));
            return;
          }
          done(r.token());
        });
  };
}

}  // namespace synod::proxy
