// etcd 3.4's per-client gRPC families on the client server, counted by a
// server interceptor:
//   etcd_server_client_requests_total{client_api_version, type}
//       RPCs started, by the client's "client-api-version" metadata (as
//       clientv3 sends it; "unknown" without it) and "unary" or "stream",
//       as etcd's v3rpc interceptors count them;
//   etcd_network_client_grpc_sent_bytes_total,
//   etcd_network_client_grpc_received_bytes_total
//       the encoded size of every message sent to / received from clients.
//
// Usage: add NewClientMetricsFactory() to the client gRPC server's
// ServerBuilder::experimental().SetInterceptorCreators() list.
//
// Ownership: the factory and its interceptors count into
// common::DefaultMetrics() (never destroyed). Thread safety: may be used from
// any number of gRPC threads at once.
#ifndef SYNOD_BACKEND_SERVER_CLIENT_METRICS_H_
#define SYNOD_BACKEND_SERVER_CLIENT_METRICS_H_

#include <memory>

#include <grpcpp/support/server_interceptor.h>

namespace synod::server {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewClientMetricsFactory();

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_CLIENT_METRICS_H_
