// ForwardingService: forwards every call the proxy does not serve itself
// (Lock, Election, Maintenance, Cluster, Auth, the rest of Lease and KV) to
// the current member, as raw bytes, whatever its streaming shape.
//
// Each call is a pipe: client messages go upstream one at a time and member
// messages come back one at a time (flow control end to end). Client
// metadata and the deadline are passed on. If the member fails with
// UNAVAILABLE before sending anything back, and the client has already sent
// its whole request (every unary call), the call is replayed on the next
// endpoint, once per endpoint.
//
// Ownership: each call is a Pipe (the client's server-side reactor), which
// owns its current upstream call (a ClientBidiReactor) and deletes itself
// once both have ended. The service owns nothing per call; `endpoints`
// is borrowed.
//
// The hold rule: the upstream call is driven from the client side's
// callbacks (outside its own reactions), so it is held (AddHold) from
// before StartCall until its read side ends: its read fails, or a write of
// one of its messages back to the client fails. Without the hold gRPC may
// finish and free the call while the client side is starting a read or a
// write on it. Nothing is started on it once the hold is removed.
//
// Thread-safety: gRPC drives the service; each pipe has its own lock.
#ifndef SYNOD_PROXY_FORWARDER_H_
#define SYNOD_PROXY_FORWARDER_H_

#include <grpcpp/generic/async_generic_service.h>

#include "proxy/upstream.h"

namespace synod::proxy {

class ForwardingService final : public grpc::CallbackGenericService {
 public:
  // `endpoints` must outlive the service.
  explicit ForwardingService(Endpoints* endpoints) : endpoints_(endpoints) {}
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* ctx) override;

 private:
  Endpoints* endpoints_;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_FORWARDER_H_
