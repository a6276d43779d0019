// v3lockpb.Lock and v3electionpb.Election, built on leases and revisions as
// etcd's clientv3/concurrency builds them (etcd's v3lock and v3election
// servers wrap that package):
//  * a holder's key is "<name>/<lease id in hex>", put with its lease;
//  * the holder with the lowest create_revision under "<name>/" owns the
//    lock (leads the election); the others wait until every key created
//    before theirs is deleted (waitDeletes).
//
// Calls that wait (Lock, Campaign, Observe) run their blocking steps on a
// thread of their own, so gRPC's callback threads never block. A canceled
// RPC stops waiting within 100 ms.
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "backend/server/services.h"
#include "common/errors.h"
#include "common/key_range.h"

namespace synod::server {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;

constexpr absl::Duration kPoll = absl::Milliseconds(100);
// etcd's clientv3/concurrency and v3election error strings.
constexpr char kNotLeader[] = "election: not leader";
constexpr char kNoLeader[] = "election: no leader";
constexpr char kMissingLeaderKey[] = "\"leader\" field must be provided";

// Blocking access to the member for the lock and election logic.
class Ops {
 public:
  Ops(EtcdServer* s, grpc::CallbackServerContext* ctx) : s_(s), ctx_(ctx) {}

  bool Cancelled() const { return ctx_ != nullptr && ctx_->IsCancelled(); }

  absl::StatusOr<TxnResponse> Txn(const TxnRequest& t) {
    synodpb::Request req;
    *req.mutable_txn() = t;
    TxnResponse resp;
    absl::Status result;
    absl::Notification done;
    s_->Propose(std::move(req), &resp, [&](absl::Status st) {
      result = st;
      done.Notify();
    });
    done.WaitForNotification();
    if (!result.ok()) return result;
    s_->FillHeader(resp.mutable_header());
    return resp;
  }

  absl::Status Delete(const std::string& key, etcdserverpb::ResponseHeader* h) {
    synodpb::Request req;
    req.mutable_delete_range()->set_key(key);
    etcdserverpb::DeleteRangeResponse resp;
    absl::Status result;
    absl::Notification done;
    s_->Propose(std::move(req), &resp, [&](absl::Status st) {
      result = st;
      done.Notify();
    });
    done.WaitForNotification();
    s_->FillHeader(resp.mutable_header());
    if (h != nullptr) *h = resp.header();
    return result;
  }

  absl::StatusOr<RangeResponse> Range(const RangeRequest& r) {
    RangeResponse resp;
    absl::Status st = s_->kv()->Range(r, &resp);
    if (!st.ok()) return st;
    s_->FillHeader(resp.mutable_header());
    return resp;
  }

  // The first (lowest create_revision) key under `prefix`, if any.
  absl::StatusOr<RangeResponse> FirstCreated(const std::string& prefix) {
    RangeRequest r;
    r.set_key(prefix);
    r.set_range_end(common::PrefixEnd(prefix));
    r.set_sort_target(RangeRequest::CREATE);
    r.set_sort_order(RangeRequest::ASCEND);
    r.set_limit(1);
    return Range(r);
  }

  // Events on [key, range_end) after revision `after`, blocking until at
  // least one arrives that `want` accepts, or the call is cancelled.
  // Returns the accepted events (whole revision), or Cancelled.
  absl::StatusOr<std::vector<mvccpb::Event>> WaitEvents(
      const std::string& key, const std::string& range_end, int64_t after,
      std::function<bool(const mvccpb::Event&)> want) {
    Sink sink(std::move(want));
    mvcc::WatchSpec spec;
    spec.key = key;
    spec.range_end = range_end;
    spec.start_revision = after + 1;
    uint64_t h = s_->watchable()->Watch(&sink, 0, spec);
    absl::StatusOr<std::vector<mvccpb::Event>> out = absl::CancelledError("canceled");
    while (true) {
      absl::MutexLock l(&sink.mu);
      if (sink.mu.AwaitWithTimeout(absl::Condition(&sink.fired), kPoll)) {
        out = std::move(sink.events);
        break;
      }
      if (Cancelled()) break;
    }
    s_->watchable()->Cancel(h);
    return out;
  }

  // etcd's waitDeletes: waits until no key under `prefix` has a
  // create_revision <= max_create_rev.
  absl::Status WaitDeletes(const std::string& prefix, int64_t max_create_rev) {
    while (true) {
      RangeRequest r;
      r.set_key(prefix);
      r.set_range_end(common::PrefixEnd(prefix));
      r.set_max_create_revision(max_create_rev);
      r.set_sort_target(RangeRequest::CREATE);
      r.set_sort_order(RangeRequest::DESCEND);
      r.set_limit(1);
      auto resp = Range(r);
      if (!resp.ok()) return resp.status();
      if (resp->kvs_size() == 0) return absl::OkStatus();
      auto evs = WaitEvents(resp->kvs(0).key(), "", resp->header().revision(),
                            [](const mvccpb::Event& ev) {
                              return ev.type() == mvccpb::Event::DELETE;
                            });
      if (!evs.ok()) return evs.status();
    }
  }

  EtcdServer* server() { return s_; }

 private:
  struct Sink : mvcc::WatchSink {
    explicit Sink(std::function<bool(const mvccpb::Event&)> w) : want(std::move(w)) {}
    bool Deliver(int64_t, std::vector<mvccpb::Event>* evs, int64_t) override {
      absl::MutexLock l(&mu);
      if (fired) return true;
      for (mvccpb::Event& ev : *evs) {
        if (want(ev)) {
          fired = true;
          events.push_back(ev);
        }
      }
      return true;
    }
    void Compacted(int64_t, int64_t) override {
      absl::MutexLock l(&mu);
      fired = true;  // history is gone: the caller re-reads the state
    }
    std::function<bool(const mvccpb::Event&)> want;
    absl::Mutex mu;
    bool fired ABSL_GUARDED_BY(mu) = false;
    std::vector<mvccpb::Event> events ABSL_GUARDED_BY(mu);
  };

  EtcdServer* s_;
  grpc::CallbackServerContext* ctx_;
};

std::string HolderKey(const std::string& name, int64_t lease) {
  return absl::StrCat(name, "/", absl::Hex(lease));
}

// A txn that runs its success branch only if `key` was created at revision
// `rev`: 0 means "does not exist"; a leader's revision means "still leads"
// (etcd's Proclaim/Resign).
TxnRequest IfCreatedAt(const std::string& key, int64_t rev) {
  TxnRequest t;
  Compare* c = t.add_compare();
  c->set_key(key);
  c->set_target(Compare::CREATE);
  c->set_result(Compare::EQUAL);
  c->set_create_revision(rev);
  return t;
}

// Txn: if create_revision(key) == 0 then put key=value with lease else get key.
TxnRequest CreateOrGet(const std::string& key, const std::string& value,
                       int64_t lease) {
  TxnRequest t = IfCreatedAt(key, 0);
  auto* put = t.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  t.add_failure()->mutable_request_range()->set_key(key);
  return t;
}

grpc::Status ToGrpc(const absl::Status& st) { return common::ToGrpcStatus(st); }

grpc::ServerUnaryReactor* MissingLeader(grpc::CallbackServerContext* ctx) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status(grpc::StatusCode::UNKNOWN, kMissingLeaderKey));
  return reactor;
}

class LockService final : public v3lockpb::Lock::CallbackService {
 public:
  explicit LockService(EtcdServer* s) : s_(s) {}

  grpc::ServerUnaryReactor* Lock(grpc::CallbackServerContext* ctx,
                                 const v3lockpb::LockRequest* req,
                                 v3lockpb::LockResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    EtcdServer* s = s_;
    std::thread([s, ctx, req, resp, reactor] {
      Ops ops(s, ctx);
      const std::string prefix = req->name() + "/";
      const std::string key = HolderKey(req->name(), req->lease());
      auto txn = ops.Txn(CreateOrGet(key, "", req->lease()));
      if (!txn.ok()) return reactor->Finish(ToGrpc(txn.status()));
      int64_t my_rev = txn->header().revision();
      if (!txn->succeeded()) {
        my_rev = txn->responses(0).response_range().kvs(0).create_revision();
      }
      absl::Status st = ops.WaitDeletes(prefix, my_rev - 1);
      if (!st.ok()) {
        (void)ops.Delete(key, nullptr);  // give up the place in the queue
        return reactor->Finish(ToGrpc(st));
      }
      // The lease may have expired while waiting: then the key is gone.
      RangeRequest r;
      r.set_key(key);
      auto mine = ops.Range(r);
      if (!mine.ok()) return reactor->Finish(ToGrpc(mine.status()));
      if (mine->kvs_size() == 0) {
        return reactor->Finish(ToGrpc(common::Err(common::EtcdError::kLeaseNotFound)));
      }
      *resp->mutable_header() = mine->header();
      resp->set_key(key);
      reactor->Finish(grpc::Status::OK);
    }).detach();
    return reactor;
  }

  grpc::ServerUnaryReactor* Unlock(grpc::CallbackServerContext* ctx,
                                   const v3lockpb::UnlockRequest* req,
                                   v3lockpb::UnlockResponse* resp) override {
    synodpb::Request r;
    r.mutable_delete_range()->set_key(req->key());
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    auto* del = new etcdserverpb::DeleteRangeResponse();
    EtcdServer* s = s_;
    s_->Propose(std::move(r), del, [s, del, resp, reactor](absl::Status st) {
      *resp->mutable_header() = del->header();
      s->FillHeader(resp->mutable_header());
      delete del;
      reactor->Finish(ToGrpc(st));
    });
    return reactor;
  }

 private:
  EtcdServer* s_;
};

class ElectionService final : public v3electionpb::Election::CallbackService {
 public:
  explicit ElectionService(EtcdServer* s) : s_(s) {}

  grpc::ServerUnaryReactor* Campaign(grpc::CallbackServerContext* ctx,
                                     const v3electionpb::CampaignRequest* req,
                                     v3electionpb::CampaignResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    EtcdServer* s = s_;
    std::thread([s, ctx, req, resp, reactor] {
      Ops ops(s, ctx);
      const std::string prefix = req->name() + "/";
      const std::string key = HolderKey(req->name(), req->lease());
      auto txn = ops.Txn(CreateOrGet(key, req->value(), req->lease()));
      if (!txn.ok()) return reactor->Finish(ToGrpc(txn.status()));
      int64_t rev = txn->header().revision();
      if (!txn->succeeded()) {
        const auto& kv = txn->responses(0).response_range().kvs(0);
        rev = kv.create_revision();
        if (kv.value() != req->value()) {
          absl::Status st = Proclaim(&ops, key, rev, req->value(), nullptr);
          if (!st.ok()) {
            (void)ops.Delete(key, nullptr);
            return reactor->Finish(ToGrpc(st));
          }
        }
      }
      absl::Status st = ops.WaitDeletes(prefix, rev - 1);
      if (!st.ok()) {
        if (ops.Cancelled()) (void)ops.Delete(key, nullptr);
        return reactor->Finish(ToGrpc(st));
      }
      *resp->mutable_header() = txn->header();
      auto* leader = resp->mutable_leader();
      leader->set_name(req->name());
      leader->set_key(key);
      leader->set_rev(rev);
      leader->set_lease(req->lease());
      reactor->Finish(grpc::Status::OK);
    }).detach();
    return reactor;
  }

  grpc::ServerUnaryReactor* Proclaim(grpc::CallbackServerContext* ctx,
                                     const v3electionpb::ProclaimRequest* req,
                                     v3electionpb::ProclaimResponse* resp) override {
    if (!req->has_leader()) return MissingLeader(ctx);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    EtcdServer* s = s_;
    std::thread([s, ctx, req, resp, reactor] {
      Ops ops(s, ctx);
      absl::Status st = Proclaim(&ops, req->leader().key(), req->leader().rev(),
                                 req->value(), resp->mutable_header());
      reactor->Finish(ToGrpc(st));
    }).detach();
    return reactor;
  }

  grpc::ServerUnaryReactor* Leader(grpc::CallbackServerContext* ctx,
                                   const v3electionpb::LeaderRequest* req,
                                   v3electionpb::LeaderResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    Ops ops(s_, ctx);
    auto r = ops.FirstCreated(req->name() + "/");
    if (!r.ok()) {
      reactor->Finish(ToGrpc(r.status()));
    } else if (r->kvs_size() == 0) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNKNOWN, kNoLeader));
    } else {
      *resp->mutable_header() = r->header();
      *resp->mutable_kv() = r->kvs(0);
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* Resign(grpc::CallbackServerContext* ctx,
                                   const v3electionpb::ResignRequest* req,
                                   v3electionpb::ResignResponse* resp) override {
    if (!req->has_leader()) return MissingLeader(ctx);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    EtcdServer* s = s_;
    std::thread([s, ctx, req, resp, reactor] {
      Ops ops(s, ctx);
      TxnRequest t = IfCreatedAt(req->leader().key(), req->leader().rev());
      t.add_success()->mutable_request_delete_range()->set_key(req->leader().key());
      auto txn = ops.Txn(t);
      if (txn.ok()) *resp->mutable_header() = txn->header();
      reactor->Finish(ToGrpc(txn.status()));
    }).detach();
    return reactor;
  }

  grpc::ServerWriteReactor<v3electionpb::LeaderResponse>* Observe(
      grpc::CallbackServerContext* ctx,
      const v3electionpb::LeaderRequest* req) override {
    return new ObserveReactor(s_, ctx, req->name());
  }

 private:
  // etcd's Election.Proclaim: put the new value only while still leader.
  static absl::Status Proclaim(Ops* ops, const std::string& key, int64_t rev,
                               const std::string& value,
                               etcdserverpb::ResponseHeader* header) {
    TxnRequest t = IfCreatedAt(key, rev);
    auto* put = t.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(value);
    put->set_ignore_lease(true);
    auto txn = ops->Txn(t);
    if (!txn.ok()) return txn.status();
    if (!txn->succeeded()) return absl::UnknownError(kNotLeader);
    if (header != nullptr) *header = txn->header();
    return absl::OkStatus();
  }

  // Streams the leader of an election: the current one, each new value it
  // proclaims, and its successor when it resigns or its lease expires
  // (etcd's Election.observe).
  class ObserveReactor final
      : public grpc::ServerWriteReactor<v3electionpb::LeaderResponse> {
   public:
    ObserveReactor(EtcdServer* s, grpc::CallbackServerContext* ctx, std::string name)
        : s_(s), ctx_(ctx), prefix_(std::move(name) + "/") {
      thread_ = std::thread([this] { Run(); });
    }
    void OnWriteDone(bool ok) override {
      absl::MutexLock l(&mu_);
      writing_ = false;
      write_ok_ = ok;
    }
    void OnDone() override {
      thread_.join();
      delete this;
    }

   private:
    bool Send(const etcdserverpb::ResponseHeader& h, const mvccpb::KeyValue& kv) {
      resp_.Clear();
      *resp_.mutable_header() = h;
      *resp_.mutable_kv() = kv;
      absl::MutexLock l(&mu_);
      writing_ = true;
      StartWrite(&resp_);
      auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_; };
      mu_.Await(absl::Condition(&done));
      return write_ok_;
    }

    void Run() {
      Ops ops(s_, ctx_);
      absl::Status end = absl::OkStatus();
      bool broken = false;  // a write failed: the client is gone
      while (!broken && !ops.Cancelled()) {
        auto first = ops.FirstCreated(prefix_);
        if (!first.ok()) {
          end = first.status();
          break;
        }
        etcdserverpb::ResponseHeader hdr = first->header();
        mvccpb::KeyValue kv;
        if (first->kvs_size() == 0) {
          // Wait for the first put under the prefix.
          auto evs = ops.WaitEvents(prefix_, common::PrefixEnd(prefix_), hdr.revision(),
                                    [](const mvccpb::Event& ev) {
                                      return ev.type() == mvccpb::Event::PUT;
                                    });
          if (!evs.ok()) break;
          if (evs->empty()) continue;  // compacted: re-read
          kv = evs->front().kv();
          hdr.set_revision(kv.mod_revision());
        } else {
          kv = first->kvs(0);
        }
        if (!Send(hdr, kv)) {
          broken = true;
          break;
        }
        // Follow the leader key until it is deleted.
        int64_t after = hdr.revision();
        bool deleted = false;
        while (!deleted && !ops.Cancelled()) {
          auto evs = ops.WaitEvents(kv.key(), "", after,
                                    [](const mvccpb::Event&) { return true; });
          if (!evs.ok()) break;
          if (evs->empty()) break;  // compacted: start over
          for (const mvccpb::Event& ev : *evs) {
            after = ev.kv().mod_revision();
            if (ev.type() == mvccpb::Event::DELETE) {
              deleted = true;
              break;
            }
            etcdserverpb::ResponseHeader h;
            h.set_revision(after);
            s_->FillHeader(&h);
            if (!Send(h, ev.kv())) {
              broken = deleted = true;
              break;
            }
          }
        }
      }
      Finish(ToGrpc(end));
    }

    EtcdServer* s_;
    grpc::CallbackServerContext* ctx_;
    std::string prefix_;
    v3electionpb::LeaderResponse resp_;
    absl::Mutex mu_;
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool write_ok_ ABSL_GUARDED_BY(mu_) = true;
    std::thread thread_;
  };

  EtcdServer* s_;
};

}  // namespace

void RegisterLockElection(grpc::ServerBuilder* builder, EtcdServer* s) {
  // The services must outlive the gRPC server; they live until exit.
  builder->RegisterService(new LockService(s));
  builder->RegisterService(new ElectionService(s));
}

}  // namespace synod::server
