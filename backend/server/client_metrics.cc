#include "backend/server/client_metrics.h"

#include <string>

#include <google/protobuf/message_lite.h>
#include <grpcpp/support/byte_buffer.h>

#include "common/etcd_metrics.h"
#include "common/metrics.h"

namespace synod::server {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::ServerRpcInfo;

// etcd's rpctypes.MetadataClientAPIVersionKey.
constexpr char kClientApiVersionKey[] = "client-api-version";

class ClientMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ClientMetricsInterceptor(ServerRpcInfo* info)
      : stream_(info->type() != ServerRpcInfo::Type::UNARY) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    const common::EtcdMetrics& m = common::GetEtcdMetrics();
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      std::string version = "unknown";
      auto* md = methods->GetRecvInitialMetadata();
      if (md != nullptr) {
        auto it = md->find(kClientApiVersionKey);
        if (it != md->end()) version.assign(it->second.data(), it->second.size());
      }
      common::DefaultMetrics()
          .GetCounter("etcd_server_client_requests_total",
                      "The total number of client requests per client version.",
                      {{"type", stream_ ? "stream" : "unary"},
                       {"client_api_version", version}})
          ->Inc();
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      // Every Synod client service speaks protobuf: the message is a
      // MessageLite (null when nothing was received).
      const auto* msg = static_cast<const google::protobuf::MessageLite*>(
          methods->GetRecvMessage());
      if (msg != nullptr) m.client_grpc_received_bytes->Inc(msg->ByteSizeLong());
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      const auto* msg = static_cast<const google::protobuf::MessageLite*>(
          methods->GetSendMessage());
      if (msg != nullptr) m.client_grpc_sent_bytes->Inc(msg->ByteSizeLong());
    }
    methods->Proceed();
  }

 private:
  const bool stream_;
};

class Factory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      ServerRpcInfo* info) override {
    return new ClientMetricsInterceptor(info);
  }
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewClientMetricsFactory() {
  return std::make_unique<Factory>();
}

}  // namespace synod::server
