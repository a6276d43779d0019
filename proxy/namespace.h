// Namespace: the proxy's --namespace. Keys of KV, Watch and Lease requests
// get the prefix on the way to the cluster and lose it on the way back, as
// with etcd's grpc-proxy (clientv3/namespace): a range end of "\0" (to the
// end of the keyspace) becomes the end of the namespace. Lock and Election
// are not namespaced (neither are they by etcd's grpc-proxy).
// Thread-safety: immutable after construction.
#ifndef SYNOD_PROXY_NAMESPACE_H_
#define SYNOD_PROXY_NAMESPACE_H_

#include <string>

#include "proto/rpc.pb.h"

namespace synod::proxy {

class Namespace {
 public:
  explicit Namespace(std::string prefix) : prefix_(std::move(prefix)) {}
  bool empty() const { return prefix_.empty(); }

  // Rewrites (key, range_end) into the namespace.
  void Interval(std::string* key, std::string* range_end) const;
  std::string Key(const std::string& key) const { return prefix_ + key; }
  // Removes the prefix from a key the cluster returned.
  void Strip(std::string* key) const;
  void Strip(mvccpb::KeyValue* kv) const { Strip(kv->mutable_key()); }

  void Request(etcdserverpb::RangeRequest* r) const;
  void Request(etcdserverpb::PutRequest* r) const;
  void Request(etcdserverpb::DeleteRangeRequest* r) const;
  void Request(etcdserverpb::TxnRequest* r) const;
  void Request(etcdserverpb::WatchCreateRequest* r) const;

  void Response(etcdserverpb::RangeResponse* r) const;
  void Response(etcdserverpb::PutResponse* r) const;
  void Response(etcdserverpb::DeleteRangeResponse* r) const;
  void Response(etcdserverpb::TxnResponse* r) const;
  void Response(etcdserverpb::LeaseTimeToLiveResponse* r) const;
  void Response(mvccpb::Event* e) const;

 private:
  const std::string prefix_;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_NAMESPACE_H_
