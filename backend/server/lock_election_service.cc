// v3lockpb.Lock and v3electionpb.Election, built on leases and revisions as
// etcd's clientv3/concurrency builds them (etcd's v3lock and v3election
// servers wrap that package):
//  * a holder's key is "<name>/<lease id in hex>", put with its lease;
//  * the holder with the lowest create_revision under "<name>/" owns the
//    lock (leads the election); the others wait until every key created
//    before theirs is deleted (waitDeletes).
//
// Calls that wait (Lock, Campaign, Observe) hold no thread while they wait:
// each is a small state machine whose steps (a local Range, a watch
// registration, a proposal handed to Raft) run on one worker thread shared
// by every such call of the member, woken by watch events, applied
// proposals, finished writes and cancellation (gRPC's OnCancel). Thousands
// of waiters cost memory for their keys and watchers, not threads. A
// canceled Lock or Campaign gives up its place: its key is deleted, as
// etcd's client does.
#include <deque>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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

// etcd's clientv3/concurrency and v3election error strings.
constexpr char kNotLeader[] = "election: not leader";
constexpr char kNoLeader[] = "election: no leader";
constexpr char kMissingLeaderKey[] = "\"leader\" field must be provided";

// The one thread that runs every step of every waiting call, in the order
// posted. Steps must not block. Lives until exit (the services do).
class Worker {
 public:
  Worker() : thread_([this] { Run(); }) {}
  ~Worker() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
  // Thread-safe; callable from gRPC, apply and watch-store threads.
  void Post(std::function<void()> fn) {
    absl::MutexLock l(&mu_);
    queue_.push_back(std::move(fn));
  }

 private:
  void Run() {
    std::deque<std::function<void()>> batch;
    while (true) {
      {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(
            +[](Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
              return w->stop_ || !w->queue_.empty();
            },
            this));
        if (stop_) return;
        batch.swap(queue_);
      }
      for (auto& fn : batch) fn();
      batch.clear();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

using EventsDone = std::function<void(absl::StatusOr<std::vector<mvccpb::Event>>)>;

// One call's wait for events, at most one at a time. Start/Stop and the
// `done` callbacks run on the worker; Deliver/Compacted run on the watch
// store's threads (under its lock) and only post to the worker.
class EventWait final : public mvcc::WatchSink {
 public:
  EventWait(EtcdServer* s, Worker* w) : s_(s), w_(w) {}
  ~EventWait() override { Stop(); }

  // Waits for events on [key, range_end) after revision `after`. `done`
  // gets the events that `want` accepts from the first revision that has
  // any; an empty vector when that history was compacted (re-read the
  // state); Cancelled "canceled" after Stop. REQUIRES: no wait in progress.
  void Start(const std::string& key, const std::string& range_end, int64_t after,
             std::function<bool(const mvccpb::Event&)> want, EventsDone done) {
    want_ = std::move(want);
    done_ = std::move(done);
    mvcc::WatchSpec spec;
    spec.key = key;
    spec.range_end = range_end;
    spec.start_revision = after + 1;
    // The watch id tags this registration, so that a late post from an
    // earlier one is recognised and dropped.
    handle_ = s_->watchable()->Watch(this, ++gen_, spec);
  }
  // Ends the wait in progress, if any: its `done` runs now with Cancelled.
  void Stop() {
    if (handle_ == 0) return;
    EventsDone d = End();
    d(absl::CancelledError("canceled"));
  }

  bool Deliver(int64_t watch_id, std::vector<mvccpb::Event>* evs, int64_t) override {
    std::vector<mvccpb::Event> accepted;
    for (const mvccpb::Event& ev : *evs) {
      if (want_(ev)) accepted.push_back(ev);
    }
    if (!accepted.empty()) {
      w_->Post([this, watch_id, accepted = std::move(accepted)]() mutable {
        Fire(watch_id, std::move(accepted));
      });
    }
    return true;
  }
  void Compacted(int64_t watch_id, int64_t) override {
    w_->Post([this, watch_id] { Fire(watch_id, {}); });
  }

 private:
  void Fire(int64_t watch_id, std::vector<mvccpb::Event> evs) {
    if (handle_ == 0 || watch_id != gen_) return;  // an ended registration
    EventsDone d = End();
    d(std::move(evs));
  }
  EventsDone End() {
    // After Cancel returns the store calls this sink no more; what it had
    // posted is dropped by Fire's check.
    s_->watchable()->Cancel(handle_);
    handle_ = 0;
    ++gen_;
    return std::move(done_);
  }

  EtcdServer* s_;
  Worker* w_;
  std::function<bool(const mvccpb::Event&)> want_;
  EventsDone done_;
  uint64_t handle_ = 0;
  int64_t gen_ = 0;
};

// Proposes `t`; `cont` runs on the worker with the response (header filled).
void ProposeTxn(EtcdServer* s, Worker* w, TxnRequest t,
                std::function<void(absl::StatusOr<TxnResponse>)> cont) {
  auto resp = std::make_shared<TxnResponse>();
  synodpb::Request req;
  *req.mutable_txn() = std::move(t);
  s->Propose(std::move(req), resp.get(),
             [s, w, resp, cont = std::move(cont)](absl::Status st) mutable {
               w->Post([s, resp, st, cont = std::move(cont)]() mutable {
                 if (!st.ok()) return cont(st);
                 s->FillHeader(resp->mutable_header());
                 cont(std::move(*resp));
               });
             });
}

// Deletes `key`; `cont` runs on the worker when it is applied (or failed).
void ProposeDelete(EtcdServer* s, Worker* w, const std::string& key,
                   std::function<void()> cont) {
  auto resp = std::make_shared<etcdserverpb::DeleteRangeResponse>();
  synodpb::Request req;
  req.mutable_delete_range()->set_key(key);
  s->Propose(std::move(req), resp.get(),
             [w, resp, cont = std::move(cont)](absl::Status) mutable {
               w->Post(std::move(cont));
             });
}

absl::StatusOr<RangeResponse> LocalRange(EtcdServer* s, const RangeRequest& r) {
  RangeResponse resp;
  absl::Status st = s->kv()->Range(r, &resp);
  if (!st.ok()) return st;
  s->FillHeader(resp.mutable_header());
  return resp;
}

// The first (lowest create_revision) key under `prefix`, if any.
absl::StatusOr<RangeResponse> FirstCreated(EtcdServer* s, const std::string& prefix) {
  RangeRequest r;
  r.set_key(prefix);
  r.set_range_end(common::PrefixEnd(prefix));
  r.set_sort_target(RangeRequest::CREATE);
  r.set_sort_order(RangeRequest::ASCEND);
  r.set_limit(1);
  return LocalRange(s, r);
}

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

// etcd's Election.Proclaim txn: put the new value only while still leader.
TxnRequest ProclaimTxn(const std::string& key, int64_t rev, const std::string& value) {
  TxnRequest t = IfCreatedAt(key, rev);
  auto* put = t.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_ignore_lease(true);
  return t;
}

grpc::Status ToGrpc(const absl::Status& st) { return common::ToGrpcStatus(st); }

grpc::ServerUnaryReactor* MissingLeader(grpc::CallbackServerContext* ctx) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status(grpc::StatusCode::UNKNOWN, kMissingLeaderKey));
  return reactor;
}

// A Lock or Campaign: create the holder key (or find it), then etcd's
// waitDeletes until every key created before it under the prefix is gone.
// Owned by gRPC until OnDone, which posts its deletion to the worker after
// every step already posted. All members but the gRPC callbacks are used on
// the worker only.
class WaitingCall : public grpc::ServerUnaryReactor {
 public:
  WaitingCall(EtcdServer* s, Worker* w, std::string name, int64_t lease)
      : s_(s), w_(w), wait_(s, w), prefix_(name + "/"), key_(HolderKey(name, lease)) {}

  void OnCancel() override {
    w_->Post([this] {
      cancelled_ = true;
      wait_.Stop();  // a wait in progress ends with Cancelled
    });
  }
  void OnDone() override {
    w_->Post([this] { delete this; });
  }

 protected:
  // Waits until no key under the prefix has create_revision <= max_rev;
  // then `then` runs with OK, or with the error (Cancelled when the client
  // went away).
  void WaitDeletes(int64_t max_rev, std::function<void(absl::Status)> then) {
    if (cancelled_) return then(absl::CancelledError("canceled"));
    RangeRequest r;
    r.set_key(prefix_);
    r.set_range_end(common::PrefixEnd(prefix_));
    r.set_max_create_revision(max_rev);
    r.set_sort_target(RangeRequest::CREATE);
    r.set_sort_order(RangeRequest::DESCEND);
    r.set_limit(1);
    auto resp = LocalRange(s_, r);
    if (!resp.ok()) return then(resp.status());
    if (resp->kvs_size() == 0) return then(absl::OkStatus());
    wait_.Start(resp->kvs(0).key(), "", resp->header().revision(),
                [](const mvccpb::Event& ev) { return ev.type() == mvccpb::Event::DELETE; },
                [this, max_rev, then = std::move(then)](
                    absl::StatusOr<std::vector<mvccpb::Event>> evs) mutable {
                  if (!evs.ok()) return then(evs.status());
                  WaitDeletes(max_rev, std::move(then));
                });
  }
  // Gives up the place in the queue (deletes the key), then finishes.
  void GiveUp(const absl::Status& why) {
    ProposeDelete(s_, w_, key_, [this, why] { Finish(ToGrpc(why)); });
  }

  EtcdServer* s_;
  Worker* w_;
  EventWait wait_;
  const std::string prefix_;
  const std::string key_;
  bool cancelled_ = false;
};

class LockCall final : public WaitingCall {
 public:
  LockCall(EtcdServer* s, Worker* w, const v3lockpb::LockRequest* req,
           v3lockpb::LockResponse* resp)
      : WaitingCall(s, w, req->name(), req->lease()), req_(req), resp_(resp) {
    w_->Post([this] { Begin(); });
  }

 private:
  void Begin() {
    ProposeTxn(s_, w_, CreateOrGet(key_, "", req_->lease()),
               [this](absl::StatusOr<TxnResponse> txn) {
                 if (!txn.ok()) return Finish(ToGrpc(txn.status()));
                 int64_t my_rev = txn->header().revision();
                 if (!txn->succeeded()) {
                   my_rev = txn->responses(0).response_range().kvs(0).create_revision();
                 }
                 WaitDeletes(my_rev - 1, [this](absl::Status st) { Acquired(st); });
               });
  }
  void Acquired(const absl::Status& st) {
    if (!st.ok()) return GiveUp(st);
    // The lease may have expired while waiting: then the key is gone.
    RangeRequest r;
    r.set_key(key_);
    auto mine = LocalRange(s_, r);
    if (!mine.ok()) return Finish(ToGrpc(mine.status()));
    if (mine->kvs_size() == 0) {
      return Finish(ToGrpc(common::Err(common::EtcdError::kLeaseNotFound)));
    }
    *resp_->mutable_header() = mine->header();
    resp_->set_key(key_);
    Finish(grpc::Status::OK);
  }

  const v3lockpb::LockRequest* req_;
  v3lockpb::LockResponse* resp_;
};

class CampaignCall final : public WaitingCall {
 public:
  CampaignCall(EtcdServer* s, Worker* w, const v3electionpb::CampaignRequest* req,
               v3electionpb::CampaignResponse* resp)
      : WaitingCall(s, w, req->name(), req->lease()), req_(req), resp_(resp) {
    w_->Post([this] { Begin(); });
  }

 private:
  void Begin() {
    ProposeTxn(s_, w_, CreateOrGet(key_, req_->value(), req_->lease()),
               [this](absl::StatusOr<TxnResponse> txn) {
                 if (!txn.ok()) return Finish(ToGrpc(txn.status()));
                 header_ = txn->header();
                 rev_ = header_.revision();
                 if (txn->succeeded()) return Wait();
                 const mvccpb::KeyValue& kv = txn->responses(0).response_range().kvs(0);
                 rev_ = kv.create_revision();
                 if (kv.value() == req_->value()) return Wait();
                 // Already a candidate with another value: proclaim the new one.
                 ProposeTxn(s_, w_, ProclaimTxn(key_, rev_, req_->value()),
                            [this](absl::StatusOr<TxnResponse> p) {
                              if (!p.ok()) return GiveUp(p.status());
                              if (!p->succeeded()) return GiveUp(absl::UnknownError(kNotLeader));
                              Wait();
                            });
               });
  }
  void Wait() {
    WaitDeletes(rev_ - 1, [this](absl::Status st) {
      if (!st.ok()) {
        if (cancelled_) return GiveUp(st);
        return Finish(ToGrpc(st));
      }
      *resp_->mutable_header() = header_;
      auto* leader = resp_->mutable_leader();
      leader->set_name(req_->name());
      leader->set_key(key_);
      leader->set_rev(rev_);
      leader->set_lease(req_->lease());
      Finish(grpc::Status::OK);
    });
  }

  const v3electionpb::CampaignRequest* req_;
  v3electionpb::CampaignResponse* resp_;
  etcdserverpb::ResponseHeader header_;
  int64_t rev_ = 0;
};

// Streams the leader of an election: the current one, each new value it
// proclaims, and its successor when it resigns or its lease expires (etcd's
// Election.observe). One write in flight at a time; between writes it
// waits on a watch. Lifetime and threading as for WaitingCall.
class ObserveCall final : public grpc::ServerWriteReactor<v3electionpb::LeaderResponse> {
 public:
  ObserveCall(EtcdServer* s, Worker* w, std::string name)
      : s_(s), w_(w), wait_(s, w), prefix_(std::move(name) + "/") {
    w_->Post([this] { ReadLeader(); });
  }

  void OnWriteDone(bool ok) override {
    w_->Post([this, ok] {
      writing_ = false;
      if (!ok) return End(absl::OkStatus());  // the client is gone
      if (finishing_) return End(end_);
      Next();
    });
  }
  void OnCancel() override {
    w_->Post([this] { End(absl::OkStatus()); });
  }
  void OnDone() override {
    w_->Post([this] { delete this; });
  }

 private:
  // The current leader, or a wait for the first candidate.
  void ReadLeader() {
    if (finishing_) return;
    auto first = FirstCreated(s_, prefix_);
    if (!first.ok()) return End(first.status());
    if (first->kvs_size() > 0) {
      key_ = first->kvs(0).key();
      after_ = first->header().revision();
      return Send(first->header(), first->kvs(0));
    }
    const int64_t rev = first->header().revision();
    wait_.Start(prefix_, common::PrefixEnd(prefix_), rev,
                [](const mvccpb::Event& ev) { return ev.type() == mvccpb::Event::PUT; },
                [this](absl::StatusOr<std::vector<mvccpb::Event>> evs) {
                  if (!evs.ok()) return End(absl::OkStatus());
                  if (evs->empty()) return ReadLeader();  // compacted: re-read
                  const mvccpb::KeyValue& kv = evs->front().kv();
                  etcdserverpb::ResponseHeader h;
                  h.set_revision(kv.mod_revision());
                  s_->FillHeader(&h);
                  key_ = kv.key();
                  after_ = kv.mod_revision();
                  Send(h, kv);
                });
  }
  // After a write: the next followed event, or a new wait on the leader key.
  void Next() {
    while (!pending_.empty()) {
      mvccpb::Event ev = std::move(pending_.front());
      pending_.pop_front();
      after_ = ev.kv().mod_revision();
      if (ev.type() == mvccpb::Event::DELETE) {
        pending_.clear();
        return ReadLeader();  // resigned or expired: the successor
      }
      etcdserverpb::ResponseHeader h;
      h.set_revision(after_);
      s_->FillHeader(&h);
      return Send(h, ev.kv());
    }
    wait_.Start(key_, "", after_, [](const mvccpb::Event&) { return true; },
                [this](absl::StatusOr<std::vector<mvccpb::Event>> evs) {
                  if (!evs.ok()) return End(absl::OkStatus());
                  if (evs->empty()) return ReadLeader();  // compacted: start over
                  for (auto& ev : *evs) pending_.push_back(std::move(ev));
                  Next();
                });
  }
  void Send(const etcdserverpb::ResponseHeader& h, const mvccpb::KeyValue& kv) {
    resp_.Clear();
    *resp_.mutable_header() = h;
    *resp_.mutable_kv() = kv;
    writing_ = true;
    StartWrite(&resp_);
  }
  // Finishes once, after the write in flight (if any) completes.
  void End(const absl::Status& st) {
    if (finished_) return;
    if (!finishing_) {
      finishing_ = true;
      end_ = st;
      wait_.Stop();  // its callback comes back here and may finish
      if (finished_) return;
    }
    if (writing_) return;  // OnWriteDone comes back here
    finished_ = true;
    Finish(ToGrpc(end_));
  }

  EtcdServer* s_;
  Worker* w_;
  EventWait wait_;
  const std::string prefix_;
  std::string key_;    // the leader key being followed
  int64_t after_ = 0;  // revision seen up to on key_
  std::deque<mvccpb::Event> pending_;
  v3electionpb::LeaderResponse resp_;
  bool writing_ = false;
  bool finishing_ = false;
  bool finished_ = false;
  absl::Status end_;
};

// A lock or election named `name` works on the keys under name + "/"; etcd
// runs its steps with the caller's credentials, key by key. Synod checks the
// caller once, on the whole prefix, before the first step (READ, and WRITE
// when `write`), then runs the steps as internal proposals. Errors:
// kInvalidAuthToken, kUserEmpty, kAuthOldRevision, kPermissionDenied.
absl::Status CheckPrefix(EtcdServer* s, const grpc::ServerContextBase& ctx,
                         const std::string& name, bool write) {
  if (!s->auth_store()->IsAuthEnabled()) return absl::OkStatus();
  const std::string prefix = name + "/";
  const std::string end = common::PrefixEnd(prefix);
  return CheckCaller(s, ctx, [&](const auth::AuthInfo& ai) {
    absl::Status st = s->auth_store()->IsRangePermitted(ai, prefix, end);
    if (st.ok() && write) {
      st = s->auth_store()->IsDeleteRangePermitted(ai, prefix, end);
    }
    return st;
  });
}

// Proposes a client's step (stamped with the caller, so the applier checks
// it); an auth error finishes at once.
void ProposeAsCaller(EtcdServer* s, const grpc::ServerContextBase& ctx,
                     synodpb::Request r, google::protobuf::Message* resp,
                     EtcdServer::Done done) {
  absl::Status st = StampCaller(s, ctx, &r);
  if (!st.ok()) return done(st);
  s->Propose(std::move(r), resp, std::move(done));
}

class LockService final : public v3lockpb::Lock::CallbackService {
 public:
  explicit LockService(EtcdServer* s) : s_(s) {}

  grpc::ServerUnaryReactor* Lock(grpc::CallbackServerContext* ctx,
                                 const v3lockpb::LockRequest* req,
                                 v3lockpb::LockResponse* resp) override {
    absl::Status st = CheckPrefix(s_, *ctx, req->name(), /*write=*/true);
    if (!st.ok()) return FinishNow(ctx, st);
    return new LockCall(s_, &worker_, req, resp);
  }

  grpc::ServerUnaryReactor* Unlock(grpc::CallbackServerContext* ctx,
                                   const v3lockpb::UnlockRequest* req,
                                   v3lockpb::UnlockResponse* resp) override {
    synodpb::Request r;
    r.mutable_delete_range()->set_key(req->key());
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    auto* del = new etcdserverpb::DeleteRangeResponse();
    EtcdServer* s = s_;
    ProposeAsCaller(s_, *ctx, std::move(r), del,
                    [s, del, resp, reactor](absl::Status st) {
      *resp->mutable_header() = del->header();
      s->FillHeader(resp->mutable_header());
      delete del;
      reactor->Finish(ToGrpc(st));
    });
    return reactor;
  }

 private:
  EtcdServer* s_;
  Worker worker_;
};

class ElectionService final : public v3electionpb::Election::CallbackService {
 public:
  explicit ElectionService(EtcdServer* s) : s_(s) {}

  grpc::ServerUnaryReactor* Campaign(grpc::CallbackServerContext* ctx,
                                     const v3electionpb::CampaignRequest* req,
                                     v3electionpb::CampaignResponse* resp) override {
    absl::Status st = CheckPrefix(s_, *ctx, req->name(), /*write=*/true);
    if (!st.ok()) return FinishNow(ctx, st);
    return new CampaignCall(s_, &worker_, req, resp);
  }

  grpc::ServerUnaryReactor* Proclaim(grpc::CallbackServerContext* ctx,
                                     const v3electionpb::ProclaimRequest* req,
                                     v3electionpb::ProclaimResponse* resp) override {
    if (!req->has_leader()) return MissingLeader(ctx);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    auto txn = std::make_shared<TxnResponse>();
    synodpb::Request r;
    *r.mutable_txn() = ProclaimTxn(req->leader().key(), req->leader().rev(), req->value());
    EtcdServer* s = s_;
    ProposeAsCaller(s_, *ctx, std::move(r), txn.get(),
                    [s, txn, resp, reactor](absl::Status st) {
      if (st.ok() && !txn->succeeded()) st = absl::UnknownError(kNotLeader);
      if (st.ok()) {
        *resp->mutable_header() = txn->header();
        s->FillHeader(resp->mutable_header());
      }
      reactor->Finish(ToGrpc(st));
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Leader(grpc::CallbackServerContext* ctx,
                                   const v3electionpb::LeaderRequest* req,
                                   v3electionpb::LeaderResponse* resp) override {
    absl::Status st = CheckPrefix(s_, *ctx, req->name(), /*write=*/false);
    if (!st.ok()) return FinishNow(ctx, st);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    auto r = FirstCreated(s_, req->name() + "/");
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
    TxnRequest t = IfCreatedAt(req->leader().key(), req->leader().rev());
    t.add_success()->mutable_request_delete_range()->set_key(req->leader().key());
    auto txn = std::make_shared<TxnResponse>();
    synodpb::Request r;
    *r.mutable_txn() = std::move(t);
    EtcdServer* s = s_;
    ProposeAsCaller(s_, *ctx, std::move(r), txn.get(),
                    [s, txn, resp, reactor](absl::Status st) {
      if (st.ok()) {
        *resp->mutable_header() = txn->header();
        s->FillHeader(resp->mutable_header());
      }
      reactor->Finish(ToGrpc(st));
    });
    return reactor;
  }

  grpc::ServerWriteReactor<v3electionpb::LeaderResponse>* Observe(
      grpc::CallbackServerContext* ctx,
      const v3electionpb::LeaderRequest* req) override {
    absl::Status st = CheckPrefix(s_, *ctx, req->name(), /*write=*/false);
    if (!st.ok()) {
      return new RejectedWriteStream<v3electionpb::LeaderResponse>(st);
    }
    return new ObserveCall(s_, &worker_, req->name());
  }

 private:
  EtcdServer* s_;
  Worker worker_;
};

}  // namespace

void RegisterLockElection(grpc::ServerBuilder* builder, EtcdServer* s) {
  // The services must outlive the gRPC server; they live until exit.
  builder->RegisterService(new LockService(s));
  builder->RegisterService(new ElectionService(s));
}

}  // namespace synod::server
