#include "proxy/kv_proxy.h"

#include "proxy/unary_forward.h"

namespace synod::proxy {

using etcdserverpb::KV;

namespace {
bool HasToken(const grpc::CallbackServerContext* ctx) {
  return ctx->client_metadata().count("token") > 0;
}
}  // namespace

grpc::ServerUnaryReactor* KvProxy::Range(grpc::CallbackServerContext* ctx,
                                         const etcdserverpb::RangeRequest* req,
                                         etcdserverpb::RangeResponse* resp) {
  if (HasToken(ctx)) {
    return ForwardUnary<KV>(
        endpoints_, ctx, req, resp, /*idempotent=*/true,
        [](KV::Stub* s, grpc::ClientContext* c,
           const etcdserverpb::RangeRequest* q, etcdserverpb::RangeResponse* r,
           std::function<void(grpc::Status)> cb) {
          s->async()->Range(c, q, r, std::move(cb));
        });
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  cache_->Range(*req, /*may_cache=*/true,
                [reactor, resp](const grpc::Status& s,
                                const etcdserverpb::RangeResponse& r) {
                  if (s.ok()) *resp = r;
                  reactor->Finish(s);
                });
  return reactor;
}

grpc::ServerUnaryReactor* KvProxy::Put(grpc::CallbackServerContext* ctx,
                                       const etcdserverpb::PutRequest* req,
                                       etcdserverpb::PutResponse* resp) {
  RangeCache* cache = cache_;
  return ForwardUnary<KV>(
      endpoints_, ctx, req, resp, /*idempotent=*/false,
      [](KV::Stub* s, grpc::ClientContext* c, const etcdserverpb::PutRequest* q,
         etcdserverpb::PutResponse* r, std::function<void(grpc::Status)> cb) {
        s->async()->Put(c, q, r, std::move(cb));
      },
      [cache](const etcdserverpb::PutResponse& r) {
        cache->NoteWriteRevision(r.header().revision());
      });
}

grpc::ServerUnaryReactor* KvProxy::DeleteRange(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::DeleteRangeRequest* req,
    etcdserverpb::DeleteRangeResponse* resp) {
  RangeCache* cache = cache_;
  return ForwardUnary<KV>(
      endpoints_, ctx, req, resp, /*idempotent=*/false,
      [](KV::Stub* s, grpc::ClientContext* c,
         const etcdserverpb::DeleteRangeRequest* q,
         etcdserverpb::DeleteRangeResponse* r,
         std::function<void(grpc::Status)> cb) {
        s->async()->DeleteRange(c, q, r, std::move(cb));
      },
      [cache](const etcdserverpb::DeleteRangeResponse& r) {
        cache->NoteWriteRevision(r.header().revision());
      });
}

grpc::ServerUnaryReactor* KvProxy::Txn(grpc::CallbackServerContext* ctx,
                                       const etcdserverpb::TxnRequest* req,
                                       etcdserverpb::TxnResponse* resp) {
  RangeCache* cache = cache_;
  return ForwardUnary<KV>(
      endpoints_, ctx, req, resp, /*idempotent=*/false,
      [](KV::Stub* s, grpc::ClientContext* c, const etcdserverpb::TxnRequest* q,
         etcdserverpb::TxnResponse* r, std::function<void(grpc::Status)> cb) {
        s->async()->Txn(c, q, r, std::move(cb));
      },
      [cache](const etcdserverpb::TxnResponse& r) {
        cache->NoteWriteRevision(r.header().revision());
      });
}

grpc::ServerUnaryReactor* KvProxy::Compact(
    grpc::CallbackServerContext* ctx, const etcdserverpb::CompactionRequest* req,
    etcdserverpb::CompactionResponse* resp) {
  return ForwardUnary<KV>(
      endpoints_, ctx, req, resp, /*idempotent=*/false,
      [](KV::Stub* s, grpc::ClientContext* c,
         const etcdserverpb::CompactionRequest* q,
         etcdserverpb::CompactionResponse* r,
         std::function<void(grpc::Status)> cb) {
        s->async()->Compact(c, q, r, std::move(cb));
      });
}

}  // namespace synod::proxy
