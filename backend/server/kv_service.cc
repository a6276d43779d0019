#include <set>
#include <string>

#include "backend/server/services.h"
#include "common/errors.h"
#include "common/etcd_metrics.h"
#include "common/key_range.h"

namespace synod::server {

using common::EtcdError;
using common::Err;
using etcdserverpb::RequestOp;

void FinishWith(grpc::ServerUnaryReactor* reactor, const absl::Status& st) {
  reactor->Finish(common::ToGrpcStatus(st));
}

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx,
                                    const absl::Status& st) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  FinishWith(reactor, st);
  return reactor;
}

namespace {

// etcd's checkRequestOp / checkTxnRequest (v3rpc/key.go).
absl::Status CheckTxn(const etcdserverpb::TxnRequest& r, int max_txn_ops);

absl::Status CheckOp(const RequestOp& op, int max_txn_ops) {
  if (op.has_request_range()) {
    if (op.request_range().key().empty()) return Err(EtcdError::kEmptyKey);
  } else if (op.has_request_put()) {
    const auto& p = op.request_put();
    if (p.key().empty()) return Err(EtcdError::kEmptyKey);
    if (p.ignore_value() && !p.value().empty()) return Err(EtcdError::kValueProvided);
    if (p.ignore_lease() && p.lease() != 0) return Err(EtcdError::kLeaseProvided);
  } else if (op.has_request_delete_range()) {
    if (op.request_delete_range().key().empty()) return Err(EtcdError::kEmptyKey);
  } else if (op.has_request_txn()) {
    return CheckTxn(op.request_txn(), max_txn_ops);
  } else {
    // An op with no request set, as etcd's checkRequestOp answers it (e2e
    // TestV3CurlTxn sends one through the JSON gateway).
    return Err(EtcdError::kKeyNotFound);
  }
  return absl::OkStatus();
}

absl::Status CheckTxn(const etcdserverpb::TxnRequest& r, int max_txn_ops) {
  int opc = std::max({r.compare_size(), r.success_size(), r.failure_size()});
  if (opc > max_txn_ops) return Err(EtcdError::kTooManyOps);
  for (const auto& c : r.compare()) {
    if (c.key().empty()) return Err(EtcdError::kEmptyKey);
  }
  for (const auto* ops : {&r.success(), &r.failure()}) {
    for (const RequestOp& op : *ops) {
      absl::Status st = CheckOp(op, max_txn_ops - opc);
      if (!st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

// A set of deleted ranges, for etcd's duplicate-key check.
struct Deletes {
  std::vector<std::pair<std::string, std::string>> ranges;  // key, range_end
  bool Covers(const std::string& k) const {
    for (const auto& [key, end] : ranges) {
      if (common::InRange(k, key, end)) return true;
    }
    return false;
  }
};

// etcd's checkIntervals: no key is put twice, or put and deleted, in one
// txn (then/else branches of a nested txn may put the same key).
absl::Status CheckIntervals(const google::protobuf::RepeatedPtrField<RequestOp>& reqs,
                            std::set<std::string>* puts, Deletes* dels) {
  for (const RequestOp& op : reqs) {
    if (op.has_request_delete_range()) {
      dels->ranges.emplace_back(op.request_delete_range().key(),
                                op.request_delete_range().range_end());
    }
  }
  for (const RequestOp& op : reqs) {
    if (!op.has_request_txn()) continue;
    std::set<std::string> puts_then, puts_else;
    Deletes dels_then, dels_else;
    absl::Status st = CheckIntervals(op.request_txn().success(), &puts_then, &dels_then);
    if (!st.ok()) return st;
    st = CheckIntervals(op.request_txn().failure(), &puts_else, &dels_else);
    if (!st.ok()) return st;
    for (const std::string& k : puts_then) {
      if (puts->count(k) || dels->Covers(k)) return Err(EtcdError::kDuplicateKey);
      puts->insert(k);
    }
    for (const std::string& k : puts_else) {
      if (puts->count(k) && !puts_then.count(k)) return Err(EtcdError::kDuplicateKey);
      if (dels->Covers(k)) return Err(EtcdError::kDuplicateKey);
      puts->insert(k);
    }
    for (auto* d : {&dels_then, &dels_else}) {
      dels->ranges.insert(dels->ranges.end(), d->ranges.begin(), d->ranges.end());
    }
  }
  for (const RequestOp& op : reqs) {
    if (!op.has_request_put()) continue;
    const std::string& k = op.request_put().key();
    if (puts->count(k) || dels->Covers(k)) return Err(EtcdError::kDuplicateKey);
    puts->insert(k);
  }
  return absl::OkStatus();
}

absl::Status CheckSize(EtcdServer* s, const google::protobuf::Message& m) {
  if (static_cast<int64_t>(m.ByteSizeLong()) > s->config().max_request_bytes) {
    return Err(EtcdError::kRequestTooLarge);
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* KvService::Range(grpc::CallbackServerContext* ctx,
                                           const etcdserverpb::RangeRequest* req,
                                           etcdserverpb::RangeResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (req->key().empty()) {
    FinishWith(reactor, Err(EtcdError::kEmptyKey));
    return reactor;
  }
  const common::EtcdMetrics& m = common::GetEtcdMetrics();
  m.mvcc_range->Inc();
  m.debugging_mvcc_range->Inc();
  EtcdServer* s = s_;
  // etcd's doSerialize: the caller's READ permission on the range, checked
  // once the read may go, and the auth state unchanged while reading.
  auto serve = [s, ctx, req, resp, reactor](absl::Status st) {
    auth::AuthInfo info;
    if (st.ok()) {
      st = CheckCaller(s, *ctx, [s, req](const auth::AuthInfo& ai) {
        return s->auth_store()->IsRangePermitted(ai, req->key(),
                                                 req->range_end());
      }, &info);
    }
    if (st.ok()) st = s->kv()->Range(*req, resp);
    if (st.ok()) st = ReadStillPermitted(s, info);
    if (st.ok()) s->FillHeader(resp->mutable_header());
    FinishWith(reactor, st);
  };
  if (req->serializable()) {
    serve(absl::OkStatus());  // local state, no round trip
  } else {
    // Linearizable: wait for ReadIndex (thesis §6.4), then read locally.
    s_->LinearizableRead(std::move(serve));
  }
  return reactor;
}

grpc::ServerUnaryReactor* KvService::Put(grpc::CallbackServerContext* ctx,
                                         const etcdserverpb::PutRequest* req,
                                         etcdserverpb::PutResponse* resp) {
  absl::Status st;
  if (req->key().empty()) {
    st = Err(EtcdError::kEmptyKey);
  } else if (req->ignore_value() && !req->value().empty()) {
    st = Err(EtcdError::kValueProvided);
  } else if (req->ignore_lease() && req->lease() != 0) {
    st = Err(EtcdError::kLeaseProvided);
  } else {
    st = CheckSize(s_, *req);
  }
  if (!st.ok()) return FinishNow(ctx, st);
  synodpb::Request r;
  *r.mutable_put() = *req;
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

grpc::ServerUnaryReactor* KvService::DeleteRange(
    grpc::CallbackServerContext* ctx,
    const etcdserverpb::DeleteRangeRequest* req,
    etcdserverpb::DeleteRangeResponse* resp) {
  absl::Status st = req->key().empty() ? Err(EtcdError::kEmptyKey)
                                       : CheckSize(s_, *req);
  if (!st.ok()) return FinishNow(ctx, st);
  synodpb::Request r;
  *r.mutable_delete_range() = *req;
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

grpc::ServerUnaryReactor* KvService::Txn(grpc::CallbackServerContext* ctx,
                                         const etcdserverpb::TxnRequest* req,
                                         etcdserverpb::TxnResponse* resp) {
  absl::Status st = CheckTxn(*req, s_->config().max_txn_ops);
  if (st.ok()) {
    std::set<std::string> puts;
    Deletes dels;
    st = CheckIntervals(req->success(), &puts, &dels);
    if (st.ok()) {
      puts.clear();
      dels.ranges.clear();
      st = CheckIntervals(req->failure(), &puts, &dels);
    }
  }
  if (st.ok()) st = CheckSize(s_, *req);
  if (!st.ok()) return FinishNow(ctx, st);
  synodpb::Request r;
  *r.mutable_txn() = *req;
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

grpc::ServerUnaryReactor* KvService::Compact(
    grpc::CallbackServerContext* ctx, const etcdserverpb::CompactionRequest* req,
    etcdserverpb::CompactionResponse* resp) {
  synodpb::Request r;
  *r.mutable_compaction() = *req;
  return ProposeAndFinish(s_, ctx, std::move(r), resp);
}

}  // namespace synod::server
