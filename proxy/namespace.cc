#include "proxy/namespace.h"

#include "absl/strings/match.h"
#include "common/key_range.h"

namespace synod::proxy {

void Namespace::Interval(std::string* key, std::string* range_end) const {
  if (prefix_.empty()) return;
  *key = prefix_ + *key;
  if (common::IsOpenEnd(*range_end)) {
    *range_end = common::PrefixEnd(prefix_);
  } else if (!range_end->empty()) {
    *range_end = prefix_ + *range_end;
  }
}

void Namespace::Strip(std::string* key) const {
  if (!prefix_.empty() && absl::StartsWith(*key, prefix_)) {
    key->erase(0, prefix_.size());
  }
}

void Namespace::Request(etcdserverpb::RangeRequest* r) const {
  Interval(r->mutable_key(), r->mutable_range_end());
}
void Namespace::Request(etcdserverpb::PutRequest* r) const {
  *r->mutable_key() = Key(r->key());
}
void Namespace::Request(etcdserverpb::DeleteRangeRequest* r) const {
  Interval(r->mutable_key(), r->mutable_range_end());
}
void Namespace::Request(etcdserverpb::WatchCreateRequest* r) const {
  Interval(r->mutable_key(), r->mutable_range_end());
}

void Namespace::Request(etcdserverpb::TxnRequest* r) const {
  for (auto& c : *r->mutable_compare()) {
    Interval(c.mutable_key(), c.mutable_range_end());
  }
  for (auto* ops : {r->mutable_success(), r->mutable_failure()}) {
    for (auto& op : *ops) {
      if (op.has_request_range()) Request(op.mutable_request_range());
      if (op.has_request_put()) Request(op.mutable_request_put());
      if (op.has_request_delete_range()) {
        Request(op.mutable_request_delete_range());
      }
      if (op.has_request_txn()) Request(op.mutable_request_txn());
    }
  }
}

void Namespace::Response(etcdserverpb::RangeResponse* r) const {
  for (auto& kv : *r->mutable_kvs()) Strip(&kv);
}
void Namespace::Response(etcdserverpb::PutResponse* r) const {
  if (r->has_prev_kv()) Strip(r->mutable_prev_kv());
}
void Namespace::Response(etcdserverpb::DeleteRangeResponse* r) const {
  for (auto& kv : *r->mutable_prev_kvs()) Strip(&kv);
}
void Namespace::Response(etcdserverpb::TxnResponse* r) const {
  for (auto& op : *r->mutable_responses()) {
    if (op.has_response_range()) Response(op.mutable_response_range());
    if (op.has_response_put()) Response(op.mutable_response_put());
    if (op.has_response_delete_range()) {
      Response(op.mutable_response_delete_range());
    }
    if (op.has_response_txn()) Response(op.mutable_response_txn());
  }
}
void Namespace::Response(etcdserverpb::LeaseTimeToLiveResponse* r) const {
  for (auto& k : *r->mutable_keys()) Strip(&k);
}
void Namespace::Response(mvccpb::Event* e) const {
  Strip(e->mutable_kv());
  if (e->has_prev_kv()) Strip(e->mutable_prev_kv());
}

}  // namespace synod::proxy
