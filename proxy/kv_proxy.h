// KvProxy: the proxy's KV service. Range goes through the RangeCache
// (served from it when the caller's permission for the range and the
// revision checks allow, else forwarded with the caller's token); Put,
// DeleteRange, Txn and Compact are forwarded to the current member with
// the client's metadata (its token) and deadline, and the revision of each
// successful write is noted in the cache so that serializable reads
// through this proxy see the proxy's own writes. With --namespace, keys
// are rewritten on the way up and back (Namespace). A Range inside a
// cached prefix (--cache-prefixes) goes to the PrefixCache first; writes
// are noted there too, and a successful Compact raises its window start.
// Thread-safety: driven by gRPC; the cache and endpoints are thread-safe.
#ifndef SYNOD_PROXY_KV_PROXY_H_
#define SYNOD_PROXY_KV_PROXY_H_

#include "proto/rpc.grpc.pb.h"
#include "proxy/namespace.h"
#include "proxy/prefix_cache.h"
#include "proxy/range_cache.h"
#include "proxy/upstream.h"

namespace synod::proxy {

class KvProxy final : public etcdserverpb::KV::CallbackService {
 public:
  // `endpoints`, `cache`, `ns` and `prefixes` (null for none) outlive the
  // service.
  KvProxy(Endpoints* endpoints, RangeCache* cache, const Namespace* ns,
          PrefixCache* prefixes = nullptr)
      : endpoints_(endpoints), cache_(cache), ns_(ns), prefixes_(prefixes) {}

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx,
                                  const etcdserverpb::RangeRequest* req,
                                  etcdserverpb::RangeResponse* resp) override;
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx,
                                const etcdserverpb::PutRequest* req,
                                etcdserverpb::PutResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteRange(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::DeleteRangeRequest* req,
      etcdserverpb::DeleteRangeResponse* resp) override;
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* ctx,
                                const etcdserverpb::TxnRequest* req,
                                etcdserverpb::TxnResponse* resp) override;
  grpc::ServerUnaryReactor* Compact(
      grpc::CallbackServerContext* ctx,
      const etcdserverpb::CompactionRequest* req,
      etcdserverpb::CompactionResponse* resp) override;

 private:
  Endpoints* const endpoints_;
  RangeCache* const cache_;
  const Namespace* const ns_;
  PrefixCache* const prefixes_;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_KV_PROXY_H_
