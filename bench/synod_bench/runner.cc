#include "bench/synod_bench/runner.h"

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/rpc.grpc.pb.h"

namespace synod::bench {
namespace {

using etcdserverpb::KV;
using etcdserverpb::Lease;
using etcdserverpb::Watch;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// User + system CPU time of this process so far, in seconds.
double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// A steady-clock time in ns as the system_clock deadline gRPC wants.
std::chrono::system_clock::time_point ToDeadline(int64_t steady_ns) {
  return std::chrono::system_clock::now() +
         std::chrono::nanoseconds(steady_ns - NowNs());
}

std::chrono::system_clock::time_point After(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::OK:
      return "OK";
    case grpc::CANCELLED:
      return "CANCELLED";
    case grpc::UNKNOWN:
      return "UNKNOWN";
    case grpc::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::ABORTED:
      return "ABORTED";
    case grpc::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::INTERNAL:
      return "INTERNAL";
    case grpc::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "CODE_?";
  }
}

// The whole of file `path`, for the TLS flag `flag` ("--cacert").
// InvalidArgument when it cannot be read.
absl::StatusOr<std::string> ReadPem(absl::string_view flag,
                                    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read '", path, "'"));
  }
  if (data.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", path, "' is missing or empty"));
  }
  return data;
}

// The credentials of every TLS endpoint, from etcdctl's flags: the server
// verified against --cacert (or the system roots) and its address, unless
// --insecure-skip-tls-verify; --cert/--key presented when given.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsCredentials(
    const Options& o) {
  std::string roots, cert, key;
  if (!o.cacert.empty()) {
    auto r = ReadPem("--cacert", o.cacert);
    if (!r.ok()) return r.status();
    roots = *std::move(r);
  }
  if (!o.cert.empty()) {
    auto c = ReadPem("--cert", o.cert);
    if (!c.ok()) return c.status();
    auto k = ReadPem("--key", o.key);
    if (!k.ok()) return k.status();
    cert = *std::move(c);
    key = *std::move(k);
  }
  if (!o.insecure_skip_tls_verify) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = roots;
    ssl.pem_private_key = key;
    ssl.pem_cert_chain = cert;
    return grpc::SslCredentials(ssl);
  }
  // Only gRPC's TLS credentials can skip verification.
  namespace gx = grpc::experimental;
  gx::TlsChannelCredentialsOptions tls;
  std::vector<gx::IdentityKeyCertPair> pairs;
  if (!cert.empty()) pairs.push_back({key, cert});
  if (!roots.empty() || !pairs.empty()) {
    tls.set_certificate_provider(
        std::make_shared<gx::StaticDataCertificateProvider>(roots, pairs));
    if (!roots.empty()) tls.watch_root_certs();
    if (!pairs.empty()) tls.watch_identity_key_cert_pairs();
  }
  tls.set_verify_server_certs(false);
  tls.set_check_call_host(false);
  tls.set_certificate_verifier(std::make_shared<gx::NoOpCertificateVerifier>());
  std::shared_ptr<grpc::ChannelCredentials> creds = gx::TlsCredentials(tls);
  if (creds == nullptr) {
    return absl::InvalidArgumentError(
        "--insecure-skip-tls-verify: gRPC refused the TLS options");
  }
  return creds;
}

// Everything a completion-queue thread records. Only that thread writes it
// until the run is over.
struct ThreadStats {
  Histogram latency;
  Histogram put_latency;
  uint64_t ok = 0;
  uint64_t errors = 0;
  uint64_t puts_ok = 0;
  std::map<std::string, uint64_t> error_counts;

  void Error(const std::string& what, uint64_t n = 1) {
    errors += n;
    error_counts[what] += n;
  }
  void Error(const grpc::Status& s) {
    Error(absl::StrCat(CodeName(s.error_code()), ": ", s.error_message()));
  }
};

// A completion-queue tag: the polling thread calls Proceed(ok). Every tag
// handed to gRPC is a Tag*, so the void* round trip is exact.
class Tag {
 public:
  explicit Tag(std::function<void(bool)> fn) : fn_(std::move(fn)) {}
  void Proceed(bool ok) { fn_(ok); }

 private:
  std::function<void(bool)> fn_;
};

class Runner {
 public:
  explicit Runner(const Options& o) : o_(o), stats_(o.threads) {
    std::mt19937_64 rng(o.seed);
    // Values are slices of a random pool at random offsets: incompressible
    // (LevelDB compresses its blocks, bbolt does not) and cheap to make.
    pool_.resize(kPoolSize + o.val_size);
    for (size_t i = 0; i + 8 <= pool_.size(); i += 8) {
      uint64_t x = rng();
      std::memcpy(&pool_[i], &x, 8);
    }
  }

  absl::StatusOr<Result> Run(
      const std::function<void(double, uint64_t)>& progress);

  // --- Called by clients, from completion-queue threads. ---
  const Options& opts() const { return o_; }
  ThreadStats& stats(int thread) { return stats_[thread]; }
  // A value of --val-size random bytes; `rng` picks which.
  std::string Value(std::mt19937_64& rng) const {
    return pool_.substr(rng() % kPoolSize, o_.val_size);
  }

  // Claims the next op. False when the run is over. *due_ns is when the op
  // may be issued (--rate), or 0 for now.
  bool Claim(int64_t* index, int64_t* due_ns) {
    if (stopping_.load(std::memory_order_relaxed)) return false;
    int64_t i = next_op_.fetch_add(1, std::memory_order_relaxed);
    if (o_.total > 0 && i >= o_.total) return false;
    int64_t now = NowNs();
    if (deadline_ns_ > 0 && now >= deadline_ns_) return false;
    *index = i;
    *due_ns = 0;
    if (o_.rate > 0) {
      int64_t due =
          start_ns_ +
          static_cast<int64_t>(static_cast<long double>(i) * 1e9L / o_.rate);
      if (deadline_ns_ > 0 && due >= deadline_ns_) return false;
      if (due > now) *due_ns = due;
    }
    return true;
  }
  void OpCompleted() { completed_.fetch_add(1, std::memory_order_relaxed); }
  void PutDone() { puts_ok_.fetch_add(1, std::memory_order_relaxed); }
  void EventsReceived(uint64_t n) {
    events_.fetch_add(n, std::memory_order_relaxed);
    completed_.fetch_add(n, std::memory_order_relaxed);
  }
  void ClientDone() { Done(&active_); }
  void StreamReady() { Done(&unready_streams_); }
  void StreamDone() { Done(&active_streams_); }
  void SetupError(const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    if (setup_error_.empty()) setup_error_ = what;
  }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  // Adds the auth token (if any) to a call's metadata; before the call
  // starts. token_ is set in Connect(), before any client runs.
  void Authorize(grpc::ClientContext* ctx) const {
    if (!token_.empty()) ctx->AddMetadata("token", token_);
  }
  void RegisterStream(grpc::ClientContext* ctx) {
    std::lock_guard<std::mutex> l(mu_);
    stream_ctxs_.push_back(ctx);
  }

 private:
  void Done(std::atomic<int>* counter) {
    if (counter->fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> l(mu_);
      cv_.notify_all();
    }
  }
  // Waits until pred() or `limit_ns` (0 = none), calling progress; cancels
  // the streams when nothing completes for --timeout. False on the limit.
  bool WaitFor(const std::function<bool()>& pred, int64_t limit_ns,
               const std::function<void(double, uint64_t)>& progress);
  void CancelStreams() {
    std::lock_guard<std::mutex> l(mu_);
    for (grpc::ClientContext* c : stream_ctxs_) c->TryCancel();
  }
  absl::Status Connect();
  absl::Status Authenticate();
  void StartThreads();
  void StopThreads();
  absl::Status RunUnary(const std::function<void(double, uint64_t)>& progress);
  absl::Status RunKeepAlive(
      const std::function<void(double, uint64_t)>& progress);
  absl::Status RunWatchLatency(
      const std::function<void(double, uint64_t)>& progress);
  // --watch-read: reads each watcher's key, one call at a time on each
  // connection, all connections at once; (*starts)[i] becomes watcher i's
  // start revision (the read's header revision + 1).
  absl::Status ReadWatchedKeys(std::vector<int64_t>* starts);
  double Fraction() const;
  // The measured phase begins (ends): its time and this process's CPU.
  void MarkStart() {
    start_ns_ = NowNs();
    start_cpu_s_ = ProcessCpuSeconds();
  }
  void MarkEnd() {
    end_ns_ = NowNs();
    end_cpu_s_ = ProcessCpuSeconds();
  }

  const Options o_;
  static constexpr size_t kPoolSize = size_t{4} << 20;
  std::string pool_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<KV::Stub>> kv_;
  std::vector<std::unique_ptr<Watch::Stub>> watch_;
  std::vector<std::unique_ptr<Lease::Stub>> lease_;
  std::string token_;  // From Authenticate(); empty: anonymous.
  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs_;
  std::vector<std::thread> threads_;
  std::vector<ThreadStats> stats_;

  int64_t start_ns_ = 0;
  int64_t deadline_ns_ = 0;  // 0: no --duration.
  int64_t end_ns_ = 0;
  double start_cpu_s_ = 0;
  double end_cpu_s_ = 0;
  std::atomic<int64_t> next_op_{0};
  std::atomic<uint64_t> completed_{0};
  std::atomic<uint64_t> puts_ok_{0};
  std::atomic<uint64_t> events_{0};
  std::atomic<int> active_{0};
  std::atomic<int> unready_streams_{0};
  std::atomic<int> active_streams_{0};
  std::atomic<bool> stopping_{false};
  uint64_t missing_events_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<grpc::ClientContext*> stream_ctxs_;  // Guarded by mu_.
  std::string setup_error_;                        // Guarded by mu_.
};

// put, range, txn-put, and the puts of the watch workloads: one unary call
// in flight at a time.
class UnaryClient {
 public:
  UnaryClient(Runner* r, int id, KV::Stub* kv, grpc::CompletionQueue* cq,
              int thread)
      : r_(r),
        o_(r->opts()),
        kv_(kv),
        cq_(cq),
        thread_(thread),
        rng_(o_.seed * 1000003 + id) {}

  void Start() { Next(); }

  void Proceed(bool ok) {
    if (in_alarm_) {
      in_alarm_ = false;
      Issue();
      return;
    }
    int64_t lat = NowNs() - t0_;
    ThreadStats& s = r_->stats(thread_);
    if (!status_.ok()) {
      s.Error(status_);
    } else if (IsWatchWorkload(o_.workload)) {
      s.puts_ok++;
      s.put_latency.Record(lat);
      r_->PutDone();
    } else {
      s.ok++;
      s.latency.Record(lat);
    }
    r_->OpCompleted();
    Next();
  }

 private:
  void Next() {
    int64_t due = 0;
    if (!r_->Claim(&op_, &due)) {
      r_->ClientDone();  // Must be the last touch of *this.
      return;
    }
    if (due > 0) {
      in_alarm_ = true;
      alarm_.Set(cq_, ToDeadline(due), &tag_);
      return;
    }
    Issue();
  }

  int64_t KeyNumber() {
    if (o_.seq_keys) return op_ % o_.key_space;
    return static_cast<int64_t>(rng_() % static_cast<uint64_t>(o_.key_space));
  }
  // The key a watch workload's put writes: key 0, or with
  // --watch-keys=distinct one watcher's key (key_space is --watchers).
  int64_t WatchedKeyNumber() {
    return o_.watch_keys == WatchKeys::kDistinct ? KeyNumber() : 0;
  }

  void Issue() {
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(After(o_.timeout));
    r_->Authorize(ctx_.get());
    status_ = grpc::Status();
    t0_ = NowNs();
    switch (o_.workload) {
      case Workload::kPut: {
        etcdserverpb::PutRequest req;
        req.set_key(KeyOf(o_, KeyNumber()));
        req.set_value(r_->Value(rng_));
        put_ = kv_->AsyncPut(ctx_.get(), req, cq_);
        put_->Finish(&put_resp_, &status_, &tag_);
        break;
      }
      case Workload::kWatch:
      case Workload::kWatchLatency: {
        etcdserverpb::PutRequest req;
        req.set_key(KeyOf(o_, WatchedKeyNumber()));
        std::string v = r_->Value(rng_);
        std::memcpy(v.data(), &t0_, sizeof(t0_));  // val_size >= 8.
        req.set_value(std::move(v));
        put_ = kv_->AsyncPut(ctx_.get(), req, cq_);
        put_->Finish(&put_resp_, &status_, &tag_);
        break;
      }
      case Workload::kRange: {
        etcdserverpb::RangeRequest req;
        req.set_key(KeyOf(o_, KeyNumber()));
        req.set_serializable(o_.serializable);
        range_ = kv_->AsyncRange(ctx_.get(), req, cq_);
        range_->Finish(&range_resp_, &status_, &tag_);
        break;
      }
      case Workload::kTxnPut: {
        etcdserverpb::TxnRequest req;
        int64_t k = KeyNumber();
        for (int j = 0; j < o_.txn_ops; ++j) {
          etcdserverpb::PutRequest* p =
              req.add_success()->mutable_request_put();
          p->set_key(KeyOf(o_, (k + j) % o_.key_space));
          p->set_value(r_->Value(rng_));
        }
        txn_ = kv_->AsyncTxn(ctx_.get(), req, cq_);
        txn_->Finish(&txn_resp_, &status_, &tag_);
        break;
      }
      case Workload::kLeaseKeepAlive:
        break;  // Not a unary workload.
    }
  }

  Runner* const r_;
  const Options& o_;
  KV::Stub* const kv_;
  grpc::CompletionQueue* const cq_;
  const int thread_;
  std::mt19937_64 rng_;
  Tag tag_{[this](bool ok) { Proceed(ok); }};
  grpc::Alarm alarm_;
  bool in_alarm_ = false;
  int64_t op_ = 0;
  int64_t t0_ = 0;
  std::unique_ptr<grpc::ClientContext> ctx_;
  grpc::Status status_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::PutResponse>>
      put_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::RangeResponse>>
      range_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::TxnResponse>>
      txn_;
  etcdserverpb::PutResponse put_resp_;
  etcdserverpb::RangeResponse range_resp_;
  etcdserverpb::TxnResponse txn_resp_;
};

// lease-keepalive: one lease and one LeaseKeepAlive stream; an op is one
// request written and its response read.
class KeepAliveClient {
 public:
  KeepAliveClient(Runner* r, int64_t lease_id, Lease::Stub* lease,
                  grpc::CompletionQueue* cq, int thread)
      : r_(r),
        id_(lease_id),
        lease_(lease),
        cq_(cq),
        thread_(thread),
        start_tag_([this](bool ok) { ok ? Next() : Fail(); }),
        alarm_tag_([this](bool) { Issue(); }),
        write_tag_([this](bool ok) {
          ok ? stream_->Read(&resp_, &read_tag_) : Fail();
        }),
        read_tag_([this](bool ok) { ok ? OnResponse() : Fail(); }),
        finish_tag_([this](bool) { OnFinish(); }) {}

  void Start() {
    r_->Authorize(&ctx_);
    r_->RegisterStream(&ctx_);
    stream_ = lease_->PrepareAsyncLeaseKeepAlive(&ctx_, cq_);
    stream_->StartCall(&start_tag_);
  }

 private:
  void Next() {
    int64_t op = 0, due = 0;
    if (!r_->Claim(&op, &due)) {
      ended_ = true;
      ctx_.TryCancel();
      stream_->Finish(&status_, &finish_tag_);
      return;
    }
    if (due > 0) {
      alarm_.Set(cq_, ToDeadline(due), &alarm_tag_);
      return;
    }
    Issue();
  }
  void Issue() {
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(id_);
    t0_ = NowNs();
    stream_->Write(req, &write_tag_);
  }
  void OnResponse() {
    ThreadStats& s = r_->stats(thread_);
    if (resp_.ttl() > 0) {
      s.ok++;
      s.latency.Record(NowNs() - t0_);
    } else {
      s.Error("NOT_FOUND: lease not found (keep-alive answered TTL <= 0)");
    }
    r_->OpCompleted();
    Next();
  }
  // The stream broke: collect its status.
  void Fail() { stream_->Finish(&status_, &finish_tag_); }
  void OnFinish() {
    if (!ended_) {
      ThreadStats& s = r_->stats(thread_);
      if (status_.ok()) {
        s.Error("stream closed by the server");
      } else {
        s.Error(status_);
      }
      r_->OpCompleted();
    }
    r_->ClientDone();
  }

  Runner* const r_;
  const int64_t id_;
  Lease::Stub* const lease_;
  grpc::CompletionQueue* const cq_;
  const int thread_;
  Tag start_tag_, alarm_tag_, write_tag_, read_tag_, finish_tag_;
  grpc::ClientContext ctx_;
  std::unique_ptr<
      grpc::ClientAsyncReaderWriter<etcdserverpb::LeaseKeepAliveRequest,
                                    etcdserverpb::LeaseKeepAliveResponse>>
      stream_;
  etcdserverpb::LeaseKeepAliveResponse resp_;
  grpc::Status status_;
  grpc::Alarm alarm_;
  bool ended_ = false;
  int64_t t0_ = 0;
};

// watch, watch-latency: one Watch stream carrying `n` watchers, numbered
// first .. first + n - 1 in the run: of key 0, or each of its own key with
// --watch-keys=distinct. `starts` (watcher number -> start revision; empty:
// every watcher starts now) must outlive the stream.
class WatchStream {
 public:
  WatchStream(Runner* r, int first, int n, const std::vector<int64_t>& starts,
              Watch::Stub* watch, grpc::CompletionQueue* cq, int thread)
      : r_(r),
        first_(first),
        n_(n),
        starts_(starts),
        watch_(watch),
        cq_(cq),
        thread_(thread),
        start_tag_([this](bool ok) {
          if (!ok) return Finish();
          WriteCreate();
          stream_->Read(&resp_, &read_tag_);
        }),
        write_tag_([this](bool ok) {
          if (ok && sent_ < n_) WriteCreate();
        }),
        read_tag_([this](bool ok) { ok ? OnResponse() : Finish(); }),
        finish_tag_([this](bool) { OnFinish(); }) {}

  void Start() {
    r_->Authorize(&ctx_);
    r_->RegisterStream(&ctx_);
    stream_ = watch_->PrepareAsyncWatch(&ctx_, cq_);
    stream_->StartCall(&start_tag_);
  }

 private:
  void WriteCreate() {
    const Options& o = r_->opts();
    const int w = first_ + sent_;
    etcdserverpb::WatchRequest req;
    auto* create = req.mutable_create_request();
    create->set_key(KeyOf(o, o.watch_keys == WatchKeys::kDistinct ? w : 0));
    if (!starts_.empty()) create->set_start_revision(starts_[w]);
    ++sent_;
    stream_->Write(req, &write_tag_);
  }
  void OnResponse() {
    ThreadStats& s = r_->stats(thread_);
    if (resp_.created() && ++created_ == n_) r_->StreamReady();
    if (resp_.canceled()) {
      s.Error(absl::StrCat("watch canceled: ", resp_.cancel_reason()));
    }
    if (resp_.events_size() > 0) {
      int64_t now = NowNs();
      for (const auto& ev : resp_.events()) {
        int64_t sent = 0;
        if (ev.kv().value().size() >= sizeof(sent)) {
          std::memcpy(&sent, ev.kv().value().data(), sizeof(sent));
          s.latency.Record(now - sent);
          s.ok++;
        } else {
          s.Error("event without a send time (another writer on the key?)");
        }
      }
      r_->EventsReceived(resp_.events_size());
    }
    stream_->Read(&resp_, &read_tag_);
  }
  void Finish() { stream_->Finish(&status_, &finish_tag_); }
  void OnFinish() {
    if (created_ < n_) {
      // Never blocks setup forever; reported by RunWatchLatency.
      r_->SetupError(absl::StrCat(CodeName(status_.error_code()), ": ",
                                  status_.error_message()));
      r_->StreamReady();
    } else if (!r_->stopping()) {
      r_->stats(thread_).Error(status_);
    }
    r_->StreamDone();
  }

  Runner* const r_;
  const int first_;
  const int n_;
  const std::vector<int64_t>& starts_;
  Watch::Stub* const watch_;
  grpc::CompletionQueue* const cq_;
  const int thread_;
  Tag start_tag_, write_tag_, read_tag_, finish_tag_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<etcdserverpb::WatchRequest,
                                                etcdserverpb::WatchResponse>>
      stream_;
  etcdserverpb::WatchResponse resp_;
  grpc::Status status_;
  int sent_ = 0;
  int created_ = 0;
};

absl::Status Runner::Connect() {
  std::shared_ptr<grpc::ChannelCredentials> tls;
  for (bool t : o_.endpoint_tls) {
    if (!t || tls != nullptr) continue;
    auto c = TlsCredentials(o_);
    if (!c.ok()) return c.status();
    tls = *std::move(c);
  }
  for (int i = 0; i < o_.conns; ++i) {
    const size_t e = i % o_.endpoints.size();
    const std::string& ep = o_.endpoints[e];
    grpc::ChannelArguments args;
    // A channel of its own, on a connection of its own.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("synod_bench.conn", i);
    args.SetMaxReceiveMessageSize(-1);
    auto ch = grpc::CreateCustomChannel(
        ep, o_.endpoint_tls[e] ? tls : grpc::InsecureChannelCredentials(),
        args);
    if (!ch->WaitForConnected(After(absl::Seconds(5)))) {
      return absl::UnavailableError(absl::StrCat(
          "cannot connect to ", o_.endpoint_tls[e] ? "https://" : "", ep,
          " within 5 s",
          o_.endpoint_tls[e] ? " (or the TLS handshake failed)" : ""));
    }
    kv_.push_back(KV::NewStub(ch));
    watch_.push_back(Watch::NewStub(ch));
    lease_.push_back(Lease::NewStub(ch));
    channels_.push_back(std::move(ch));
  }
  return Authenticate();
}

absl::Status Runner::Authenticate() {
  if (o_.user.empty()) return absl::OkStatus();
  auto auth = etcdserverpb::Auth::NewStub(channels_[0]);
  grpc::ClientContext ctx;
  ctx.set_deadline(After(o_.timeout));
  etcdserverpb::AuthenticateRequest req;
  req.set_name(o_.user);
  req.set_password(o_.password);
  etcdserverpb::AuthenticateResponse resp;
  grpc::Status s = auth->Authenticate(&ctx, req, &resp);
  if (!s.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("authenticate as '", o_.user,
                     "': ", CodeName(s.error_code()), ": ", s.error_message()));
  }
  token_ = resp.token();
  return absl::OkStatus();
}

void Runner::StartThreads() {
  for (int t = 0; t < o_.threads; ++t) {
    cqs_.push_back(std::make_unique<grpc::CompletionQueue>());
  }
  for (int t = 0; t < o_.threads; ++t) {
    threads_.emplace_back([cq = cqs_[t].get()] {
      void* tag;
      bool ok;
      while (cq->Next(&tag, &ok)) static_cast<Tag*>(tag)->Proceed(ok);
    });
  }
}

void Runner::StopThreads() {
  for (auto& cq : cqs_) cq->Shutdown();
  for (auto& t : threads_) t.join();
}

double Runner::Fraction() const {
  double f = 0;
  if (o_.total > 0) {
    uint64_t n =
        IsWatchWorkload(o_.workload) ? puts_ok_.load() : completed_.load();
    f = static_cast<double>(n) / o_.total;
  }
  if (deadline_ns_ > 0) {
    f = std::max(f, static_cast<double>(NowNs() - start_ns_) /
                        (deadline_ns_ - start_ns_));
  }
  return std::min(f, 1.0);
}

bool Runner::WaitFor(const std::function<bool()>& pred, int64_t limit_ns,
                     const std::function<void(double, uint64_t)>& progress) {
  const int64_t timeout_ns = absl::ToInt64Nanoseconds(o_.timeout);
  uint64_t last_done = completed_.load();
  int64_t last_change = NowNs();
  bool cancelled = false;
  std::unique_lock<std::mutex> l(mu_);
  while (!pred()) {
    cv_.wait_for(l, std::chrono::milliseconds(100));
    int64_t now = NowNs();
    if (limit_ns > 0 && now >= limit_ns) return pred();
    uint64_t done = completed_.load();
    if (done != last_done) {
      last_done = done;
      last_change = now;
    } else if (!cancelled && now - last_change > timeout_ns &&
               !stream_ctxs_.empty()) {
      // Streams have no deadline of their own: a stalled server would hang
      // the run. Unary calls carry --timeout already.
      cancelled = true;
      stopping_ = true;
      for (grpc::ClientContext* c : stream_ctxs_) c->TryCancel();
    }
    if (progress) {
      l.unlock();
      progress(Fraction(), done);
      l.lock();
    }
  }
  return true;
}

absl::Status Runner::RunUnary(
    const std::function<void(double, uint64_t)>& progress) {
  std::vector<std::unique_ptr<UnaryClient>> clients;
  for (int i = 0; i < o_.clients; ++i) {
    int c = i % o_.conns, t = i % o_.threads;
    clients.push_back(
        std::make_unique<UnaryClient>(this, i, kv_[c].get(), cqs_[t].get(), t));
  }
  active_ = o_.clients;
  MarkStart();
  if (o_.duration > absl::ZeroDuration()) {
    deadline_ns_ = start_ns_ + absl::ToInt64Nanoseconds(o_.duration);
  }
  for (auto& c : clients) c->Start();
  WaitFor([this] { return active_.load() == 0; }, 0, progress);
  MarkEnd();
  StopThreads();
  return absl::OkStatus();
}

absl::Status Runner::RunKeepAlive(
    const std::function<void(double, uint64_t)>& progress) {
  std::vector<int64_t> ids;
  for (int i = 0; i < o_.clients; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(After(o_.timeout));
    Authorize(&ctx);
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(o_.lease_ttl);
    etcdserverpb::LeaseGrantResponse resp;
    grpc::Status s = lease_[i % o_.conns]->LeaseGrant(&ctx, req, &resp);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("lease grant failed: ", CodeName(s.error_code()), ": ",
                       s.error_message()));
    }
    ids.push_back(resp.id());
  }
  std::vector<std::unique_ptr<KeepAliveClient>> clients;
  for (int i = 0; i < o_.clients; ++i) {
    int c = i % o_.conns, t = i % o_.threads;
    clients.push_back(std::make_unique<KeepAliveClient>(
        this, ids[i], lease_[c].get(), cqs_[t].get(), t));
  }
  active_ = o_.clients;
  MarkStart();
  if (o_.duration > absl::ZeroDuration()) {
    deadline_ns_ = start_ns_ + absl::ToInt64Nanoseconds(o_.duration);
  }
  for (auto& c : clients) c->Start();
  WaitFor([this] { return active_.load() == 0; }, 0, progress);
  MarkEnd();
  StopThreads();
  // Best effort: give the leases back.
  for (size_t i = 0; i < ids.size(); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(After(absl::Seconds(2)));
    Authorize(&ctx);
    etcdserverpb::LeaseRevokeRequest req;
    req.set_id(ids[i]);
    etcdserverpb::LeaseRevokeResponse resp;
    (void)lease_[i % o_.conns]->LeaseRevoke(&ctx, req, &resp);
  }
  return absl::OkStatus();
}

absl::Status Runner::RunWatchLatency(
    const std::function<void(double, uint64_t)>& progress) {
  const int streams = o_.watch_streams;
  std::vector<int64_t> starts;  // Empty: every watcher starts now.
  if (o_.watch_read) {
    if (absl::Status s = ReadWatchedKeys(&starts); !s.ok()) {
      StopThreads();
      return s;
    }
  }
  std::vector<std::unique_ptr<WatchStream>> ws;
  for (int i = 0, first = 0; i < streams; ++i) {
    // Watchers spread as evenly as possible over the streams.
    int n = o_.watchers / streams + (i < o_.watchers % streams ? 1 : 0);
    int c = i % o_.conns, t = i % o_.threads;
    ws.push_back(std::make_unique<WatchStream>(
        this, first, n, starts, watch_[c].get(), cqs_[t].get(), t));
    first += n;
  }
  unready_streams_ = streams;
  active_streams_ = streams;
  for (auto& w : ws) w->Start();
  const int64_t setup_limit = NowNs() + absl::ToInt64Nanoseconds(o_.timeout);
  bool ready = WaitFor([this] { return unready_streams_.load() == 0; },
                       setup_limit, nullptr);
  absl::Status st;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!setup_error_.empty()) {
      st = absl::UnavailableError(
          absl::StrCat("watch setup failed: ", setup_error_));
    }
  }
  if (!ready && st.ok()) {
    st = absl::UnavailableError(
        absl::StrCat(o_.watchers, " watchers were not all created within ",
                     absl::FormatDuration(o_.timeout)));
  }
  if (st.ok()) {
    // compare.sh waits for this line to sample a server's or proxy's memory
    // while the watchers sit idle.
    std::fprintf(stderr, "synod-bench: %d watchers ready\n", o_.watchers);
    std::fflush(stderr);
    if (o_.watch_idle > absl::ZeroDuration()) {
      // A fixed pause asked for on the command line, not a synchronisation.
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(o_.watch_idle));
    }
    std::vector<std::unique_ptr<UnaryClient>> putters;
    for (int i = 0; i < o_.clients; ++i) {
      int c = i % o_.conns, t = i % o_.threads;
      putters.push_back(std::make_unique<UnaryClient>(this, i, kv_[c].get(),
                                                      cqs_[t].get(), t));
    }
    active_ = o_.clients;
    MarkStart();
    if (o_.duration > absl::ZeroDuration()) {
      deadline_ns_ = start_ns_ + absl::ToInt64Nanoseconds(o_.duration);
    }
    for (auto& p : putters) p->Start();
    WaitFor([this] { return active_.load() == 0; }, 0, progress);
    // Every watcher should see every successful put (of its own key, with
    // --watch-keys=distinct: one event per put).
    const uint64_t expected =
        puts_ok_.load() *
        (o_.watch_keys == WatchKeys::kDistinct ? 1 : o_.watchers);
    const int64_t grace = NowNs() + absl::ToInt64Nanoseconds(o_.timeout);
    WaitFor([&] { return events_.load() >= expected; }, grace, progress);
    MarkEnd();
    uint64_t got = events_.load();
    missing_events_ = got < expected ? expected - got : 0;
  }
  stopping_ = true;
  CancelStreams();
  WaitFor([this] { return active_streams_.load() == 0; }, 0, nullptr);
  StopThreads();
  return st;
}

absl::Status Runner::ReadWatchedKeys(std::vector<int64_t>* starts) {
  starts->assign(o_.watchers, 0);
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> readers;
  for (int c = 0; c < o_.conns; ++c) {
    readers.emplace_back([this, c, starts, &next, &failed] {
      for (int i = next.fetch_add(1); i < o_.watchers && !failed.load();
           i = next.fetch_add(1)) {
        grpc::ClientContext ctx;
        ctx.set_deadline(After(o_.timeout));
        Authorize(&ctx);
        etcdserverpb::RangeRequest req;
        req.set_key(
            KeyOf(o_, o_.watch_keys == WatchKeys::kDistinct ? i : 0));
        req.set_serializable(o_.serializable);
        etcdserverpb::RangeResponse resp;
        grpc::Status s = kv_[c]->Range(&ctx, req, &resp);
        if (!s.ok()) {
          SetupError(absl::StrCat("read of ", req.key(), ": ",
                                  CodeName(s.error_code()), ": ",
                                  s.error_message()));
          failed = true;
          return;
        }
        (*starts)[i] = resp.header().revision() + 1;
      }
    });
  }
  for (std::thread& t : readers) t.join();
  std::lock_guard<std::mutex> l(mu_);
  if (!setup_error_.empty()) {
    return absl::UnavailableError(
        absl::StrCat("watch setup failed: ", setup_error_));
  }
  return absl::OkStatus();
}

absl::StatusOr<Result> Runner::Run(
    const std::function<void(double, uint64_t)>& progress) {
  if (absl::Status s = Connect(); !s.ok()) return s;
  StartThreads();
  absl::Status st;
  switch (o_.workload) {
    case Workload::kPut:
    case Workload::kRange:
    case Workload::kTxnPut:
      st = RunUnary(progress);
      break;
    case Workload::kLeaseKeepAlive:
      st = RunKeepAlive(progress);
      break;
    case Workload::kWatch:
    case Workload::kWatchLatency:
      st = RunWatchLatency(progress);
      break;
  }
  if (!st.ok()) return st;
  Result r;
  r.options = o_;
  r.elapsed_s = (end_ns_ - start_ns_) / 1e9;
  r.cpu_s = end_cpu_s_ - start_cpu_s_;
  for (const ThreadStats& s : stats_) {
    r.ok += s.ok;
    r.errors += s.errors;
    r.puts_ok += s.puts_ok;
    r.latency.Merge(s.latency);
    r.put_latency.Merge(s.put_latency);
    for (const auto& [what, n] : s.error_counts) r.error_counts[what] += n;
  }
  if (missing_events_ > 0) {
    r.errors += missing_events_;
    r.error_counts[absl::StrCat("event not delivered within ",
                                absl::FormatDuration(o_.timeout),
                                " of the last put")] += missing_events_;
  }
  return r;
}

}  // namespace

absl::StatusOr<Result> RunWorkload(
    const Options& opts,
    const std::function<void(double fraction, uint64_t done)>& progress) {
  Runner runner(opts);
  return runner.Run(progress);
}

}  // namespace synod::bench
