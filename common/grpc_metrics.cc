#include "common/grpc_metrics.h"

#include <array>
#include <chrono>
#include <utility>

#include <grpcpp/server_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace synod::common {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::ServerRpcInfo;

// grpc::StatusCode 0..16, as Go's codes package names them.
constexpr std::array<const char*, 17> kCodeNames = {
    "OK",           "Canceled",         "Unknown",
    "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted",
    "FailedPrecondition", "Aborted",    "OutOfRange",
    "Unimplemented", "Internal",         "Unavailable",
    "DataLoss",     "Unauthenticated"};

const char* TypeName(ServerRpcInfo::Type type) {
  switch (type) {
    case ServerRpcInfo::Type::UNARY:
      return "unary";
    case ServerRpcInfo::Type::CLIENT_STREAMING:
      return "client_stream";
    case ServerRpcInfo::Type::SERVER_STREAMING:
      return "server_stream";
    case ServerRpcInfo::Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unary";
}

// The series of one method.
struct MethodCounters {
  Counter* started = nullptr;
  Counter* received = nullptr;
  Counter* sent = nullptr;
  std::array<Counter*, kCodeNames.size()> handled{};
};

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(ServerRpcInfo* info, MethodCounters* counters)
      : info_(info), counters_(counters) {
    counters_->started->Inc();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {  // null: nothing was received
      counters_->received->Inc();
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      counters_->sent->Inc();
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      int code = methods->GetSendStatus().error_code();
      grpc::ServerContextBase* ctx = info_->server_context();
      // A call the client abandoned ends like any other here (a reactor
      // still finishes it); etcd's handler would return the stream's
      // context error instead.
      if (ctx != nullptr && ctx->IsCancelled()) {
        code = ctx->deadline() <= std::chrono::system_clock::now()
                   ? grpc::StatusCode::DEADLINE_EXCEEDED
                   : grpc::StatusCode::CANCELLED;
      }
      if (code < 0 || code >= static_cast<int>(kCodeNames.size())) {
        code = grpc::StatusCode::UNKNOWN;
      }
      counters_->handled[code]->Inc();
    }
    methods->Proceed();
  }

 private:
  ServerRpcInfo* const info_;
  MethodCounters* const counters_;
};

class Factory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(MetricsRegistry* registry) : registry_(registry) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      ServerRpcInfo* info) override {
    return new MetricsInterceptor(info, Counters(info));
  }

 private:
  MethodCounters* Counters(ServerRpcInfo* info) ABSL_LOCKS_EXCLUDED(mu_) {
    const char* type = TypeName(info->type());
    // "/etcdserverpb.Watch/Watch" -> service, method.
    std::string full = info->method() != nullptr ? info->method() : "";
    std::string key = absl::StrCat(type, " ", full);
    {
      absl::ReaderMutexLock l(&mu_);
      auto it = methods_.find(key);
      if (it != methods_.end()) return it->second.get();
    }
    absl::string_view name = full;
    if (!name.empty() && name.front() == '/') name.remove_prefix(1);
    size_t slash = name.find('/');
    std::string service(name.substr(0, slash));
    std::string method(slash == absl::string_view::npos
                           ? absl::string_view()
                           : name.substr(slash + 1));
    MetricLabels labels = {{"grpc_type", type},
                           {"grpc_service", service},
                           {"grpc_method", method}};
    auto c = std::make_unique<MethodCounters>();
    c->started = registry_->GetCounter(
        "grpc_server_started_total", "Total number of RPCs started on the server.",
        labels);
    c->received = registry_->GetCounter(
        "grpc_server_msg_received_total",
        "Total number of RPC stream messages received on the server.", labels);
    c->sent = registry_->GetCounter(
        "grpc_server_msg_sent_total",
        "Total number of gRPC stream messages sent by the server.", labels);
    for (size_t i = 0; i < kCodeNames.size(); ++i) {
      MetricLabels with_code = labels;
      with_code.emplace_back("grpc_code", kCodeNames[i]);
      c->handled[i] = registry_->GetCounter(
          "grpc_server_handled_total",
          "Total number of RPCs completed on the server, regardless of "
          "success or failure.",
          with_code);
    }
    absl::MutexLock l(&mu_);
    // Another thread may have got here first; the registry handed both the
    // same counters, so either entry serves.
    auto [it, inserted] = methods_.try_emplace(key, std::move(c));
    return it->second.get();
  }

  MetricsRegistry* const registry_;
  absl::Mutex mu_;
  // "<type> /<service>/<method>" -> its series. Entries are never removed,
  // so the pointers interceptors hold stay valid.
  absl::flat_hash_map<std::string, std::unique_ptr<MethodCounters>> methods_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewGrpcServerMetricsFactory(MetricsRegistry* registry) {
  return std::make_unique<Factory>(registry);
}

}  // namespace synod::common
