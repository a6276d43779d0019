#include "proxy/kv_proxy.h"

#include <memory>

#include "proxy/unary_forward.h"

namespace synod::proxy {

using etcdserverpb::KV;

namespace {

// The client's credential: its "token" metadata, "" when it sent none.
std::string TokenOf(const grpc::CallbackServerContext* ctx) {
  auto it = ctx->client_metadata().find("token");
  if (it == ctx->client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// The request as sent upstream: `req` itself, or a namespaced copy owned
// by `*copy`.
template <typename Req>
const Req* Namespaced(const Namespace* ns, const Req* req,
                    std::shared_ptr<Req>* copy) {
  if (ns->empty()) return req;
  *copy = std::make_shared<Req>(*req);
  ns->Request(copy->get());
  return copy->get();
}

}  // namespace

grpc::ServerUnaryReactor* KvProxy::Range(grpc::CallbackServerContext* ctx,
                                         const etcdserverpb::RangeRequest* req,
                                         etcdserverpb::RangeResponse* resp) {
  std::shared_ptr<etcdserverpb::RangeRequest> copy;
  const etcdserverpb::RangeRequest* up = Namespaced(ns_, req, &copy);
  const Namespace* ns = ns_;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // `copy` (the namespaced request) lives until the cache has answered.
  auto done = [reactor, resp, ns, copy](const grpc::Status& s,
                                        const etcdserverpb::RangeResponse& r) {
    if (s.ok()) {
      *resp = r;
      ns->Response(resp);
    }
    reactor->Finish(s);
  };
  const std::string token = TokenOf(ctx);
  if (prefixes_ != nullptr && prefixes_->Range(*up, token, done)) {
    return reactor;
  }
  cache_->Range(*up, token, std::move(done));
  return reactor;
}

grpc::ServerUnaryReactor* KvProxy::Put(grpc::CallbackServerContext* ctx,
                                       const etcdserverpb::PutRequest* req,
                                       etcdserverpb::PutResponse* resp) {
  std::shared_ptr<etcdserverpb::PutRequest> copy;
  const etcdserverpb::PutRequest* up = Namespaced(ns_, req, &copy);
  RangeCache* cache = cache_;
  PrefixCache* prefixes = prefixes_;
  const Namespace* ns = ns_;
  return ForwardUnary<KV>(
      endpoints_, ctx, up, resp, /*idempotent=*/false,
      [](KV::Stub* s, grpc::ClientContext* c, const etcdserverpb::PutRequest* q,
         etcdserverpb::PutResponse* r, std::function<void(grpc::Status)> cb) {
        s->async()->Put(c, q, r, std::move(cb));
      },
      [cache, prefixes, ns, copy](etcdserverpb::PutResponse* r) {
        cache->NoteWriteRevision(r->header().revision());
        if (prefixes != nullptr) {
          prefixes->NoteWriteRevision(r->header().revision());
        }
        ns->Response(r);
      });
}

grpc::ServerUnaryReactor* KvProxy::DeleteRange(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::DeleteRangeRequest* req,
    etcdserverpb::DeleteRangeResponse* resp) {
  std::shared_ptr<etcdserverpb::DeleteRangeRequest> copy;
  const etcdserverpb::DeleteRangeRequest* up = Namespaced(ns_, req, &copy);
  RangeCache* cache = cache_;
  PrefixCache* prefixes = prefixes_;
  const Namespace* ns = ns_;
  return ForwardUnary<KV>(
      endpoints_, ctx, up, resp, /*idempotent=*/false,
      [](KV::Stub* s, grpc::ClientContext* c,
         const etcdserverpb::DeleteRangeRequest* q,
         etcdserverpb::DeleteRangeResponse* r,
         std::function<void(grpc::Status)> cb) {
        s->async()->DeleteRange(c, q, r, std::move(cb));
      },
      [cache, prefixes, ns, copy](etcdserverpb::DeleteRangeResponse* r) {
        cache->NoteWriteRevision(r->header().revision());
        if (prefixes != nullptr) {
          prefixes->NoteWriteRevision(r->header().revision());
        }
        ns->Response(r);
      });
}

grpc::ServerUnaryReactor* KvProxy::Txn(grpc::CallbackServerContext* ctx,
                                       const etcdserverpb::TxnRequest* req,
                                       etcdserverpb::TxnResponse* resp) {
  std::shared_ptr<etcdserverpb::TxnRequest> copy;
  const etcdserverpb::TxnRequest* up = Namespaced(ns_, req, &copy);
  RangeCache* cache = cache_;
  PrefixCache* prefixes = prefixes_;
  const Namespace* ns = ns_;
  return ForwardUnary<KV>(
      endpoints_, ctx, up, resp, /*idempotent=*/false,
      [](KV::Stub* s, grpc::ClientContext* c, const etcdserverpb::TxnRequest* q,
         etcdserverpb::TxnResponse* r, std::function<void(grpc::Status)> cb) {
        s->async()->Txn(c, q, r, std::move(cb));
      },
      [cache, prefixes, ns, copy](etcdserverpb::TxnResponse* r) {
        cache->NoteWriteRevision(r->header().revision());
        if (prefixes != nullptr) {
          prefixes->NoteWriteRevision(r->header().revision());
        }
        ns->Response(r);
      });
}

grpc::ServerUnaryReactor* KvProxy::Compact(
    grpc::CallbackServerContext* ctx, const etcdserverpb::CompactionRequest* req,
    etcdserverpb::CompactionResponse* resp) {
  PrefixCache* prefixes = prefixes_;
  const int64_t revision = req->revision();
  return ForwardUnary<KV>(
      endpoints_, ctx, req, resp, /*idempotent=*/false,
      [](KV::Stub* s, grpc::ClientContext* c,
         const etcdserverpb::CompactionRequest* q,
         etcdserverpb::CompactionResponse* r,
         std::function<void(grpc::Status)> cb) {
        s->async()->Compact(c, q, r, std::move(cb));
      },
      [prefixes, revision](etcdserverpb::CompactionResponse*) {
        if (prefixes != nullptr) prefixes->NoteCompaction(revision);
      });
}

}  // namespace synod::proxy
