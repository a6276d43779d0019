// gRPC server metrics with go-grpc-prometheus's names and meaning, as etcd
// serves them on /metrics (etcd registers grpc_prometheus on its client gRPC
// server). Every series carries grpc_type ("unary", "client_stream",
// "server_stream" or "bidi_stream"), grpc_service (e.g.
// "etcdserverpb.Watch") and grpc_method (e.g. "Watch"):
//   grpc_server_started_total      RPCs started
//   grpc_server_handled_total      RPCs finished, by grpc_code: Go's name of
//                                  the status code ("OK", "Canceled", ...)
//   grpc_server_msg_received_total messages received
//   grpc_server_msg_sent_total     messages sent
// An RPC that the client cancels or abandons (its process killed, its
// connection closed) is handled with grpc_code "Canceled" whatever status
// the handler finished with, as etcd reports it; one past its deadline,
// "DeadlineExceeded". The first RPC of a method creates its handled series
// for every code, at 0, as go-grpc-prometheus does for every method at
// start. Calls to unknown methods are not counted (nor are they in Go).
//
// Usage: pass NewGrpcServerMetricsFactory() to
// ServerBuilder::experimental().SetInterceptorCreators() (with any other
// interceptor factories).
//
// Ownership: the factory keeps `registry` (not owned; must outlive every
// server built with it) and a cache of the series it registered. Thread
// safety: the factory and its interceptors may be used from any number of
// gRPC threads at once; updates are the registry's lock-free counters.
#ifndef SYNOD_COMMON_GRPC_METRICS_H_
#define SYNOD_COMMON_GRPC_METRICS_H_

#include <memory>

#include <grpcpp/support/server_interceptor.h>

#include "common/metrics.h"

namespace synod::common {

// A factory of per-RPC interceptors that count into `registry`.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewGrpcServerMetricsFactory(MetricsRegistry* registry);

}  // namespace synod::common

#endif  // SYNOD_COMMON_GRPC_METRICS_H_
