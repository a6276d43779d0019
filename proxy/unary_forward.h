// ForwardUnary: forwards one typed unary call to the current member, with
// the client's metadata (auth token) and deadline, and answers the client
// with the member's response and status.
//
// Failover: on UNAVAILABLE the endpoint is reported failed and the call is
// retried on the next endpoint (at most once per endpoint) when it is safe:
// always for reads (`idempotent`), and for writes only if the channel was
// not connected when the call started, so the member cannot have seen it
// (the rule etcd's clientv3 uses for mutating calls).
//
// `on_ok` may edit the response; it runs on a gRPC thread before the client
// is answered, and whatever it captures lives until the call ends (so it
// may own a rewritten copy of `req`).
// Thread-safety: the returned reactor is driven by gRPC.
#ifndef SYNOD_PROXY_UNARY_FORWARD_H_
#define SYNOD_PROXY_UNARY_FORWARD_H_

#include <functional>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "proxy/upstream.h"

namespace synod::proxy {

// Copies client metadata (except transport headers) and the deadline.
void PrepareUpstreamContext(const grpc::ServerContextBase& sctx,
                            grpc::ClientContext* ctx);

template <typename Service, typename Req, typename Resp>
using AsyncUnaryCall =
    std::function<void(typename Service::Stub*, grpc::ClientContext*,
                       const Req*, Resp*, std::function<void(grpc::Status)>)>;

// Keeps a parameter out of template argument deduction.
template <typename T>
struct NonDeduced {
  using type = T;
};

template <typename Service, typename Req, typename Resp>
grpc::ServerUnaryReactor* ForwardUnary(
    Endpoints* endpoints, grpc::CallbackServerContext* sctx, const Req* req,
    Resp* resp, bool idempotent,
    typename NonDeduced<AsyncUnaryCall<Service, Req, Resp>>::type call,
    typename NonDeduced<std::function<void(Resp*)>>::type on_ok = nullptr) {
  struct State {
    Endpoints* endpoints;
    grpc::CallbackServerContext* sctx;
    const Req* req;
    Resp* resp;
    bool idempotent;
    AsyncUnaryCall<Service, Req, Resp> call;
    std::function<void(Resp*)> on_ok;
    grpc::ServerUnaryReactor* reactor;
    size_t attempts = 0;
  };
  struct Attempt {
    grpc::ClientContext ctx;
    std::unique_ptr<typename Service::Stub> stub;
    size_t index = 0;
    bool was_ready = false;
  };
  auto st = std::make_shared<State>();
  st->endpoints = endpoints;
  st->sctx = sctx;
  st->req = req;
  st->resp = resp;
  st->idempotent = idempotent;
  st->call = std::move(call);
  st->on_ok = std::move(on_ok);
  st->reactor = sctx->DefaultReactor();
  auto run = std::make_shared<std::function<void()>>();
  *run = [st, run] {
    auto a = std::make_shared<Attempt>();
    auto channel = st->endpoints->Current(&a->index);
    a->was_ready = channel->GetState(true) == GRPC_CHANNEL_READY;
    a->stub = Service::NewStub(channel);
    PrepareUpstreamContext(*st->sctx, &a->ctx);
    ++st->attempts;
    st->resp->Clear();
    st->call(a->stub.get(), &a->ctx, st->req, st->resp,
             [st, run, a](grpc::Status s) {
               if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
                 st->endpoints->ReportFailure(a->index);
                 if ((st->idempotent || !a->was_ready) &&
                     st->attempts < st->endpoints->size()) {
                   (*run)();
                   return;
                 }
               }
               if (s.ok() && st->on_ok) st->on_ok(st->resp);
               st->reactor->Finish(s);
               *run = nullptr;  // breaks the st <-> run cycle
             });
  };
  (*run)();
  return st->reactor;
}

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_UNARY_FORWARD_H_
