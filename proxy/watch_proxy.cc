#include "proxy/watch_proxy.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/errors.h"
#include "common/key_range.h"
#include "common/watch_stream.h"

namespace synod::proxy {

using etcdserverpb::ResponseHeader;
using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

class ClientWatchStream;

// One client watcher: a subscriber of one WatchRange. Its state is guarded
// by its stream's mutex.
class ClientWatcher final : public RangeSubscriber {
 public:
  ClientWatcher(ClientWatchStream* stream, int64_t id,
                const etcdserverpb::WatchCreateRequest& c)
      : stream_(stream),
        id_(id),
        start_(c.start_revision()),
        prev_kv_(c.prev_kv()),
        progress_notify_(c.progress_notify()),
        fragment_(c.fragment()) {
    for (int f : c.filters()) {
      if (f == etcdserverpb::WatchCreateRequest::NOPUT) no_put_ = true;
      if (f == etcdserverpb::WatchCreateRequest::NODELETE) no_delete_ = true;
    }
  }

  void OnCreated(const ResponseHeader& header) override;
  bool OnEvents(const std::vector<const mvccpb::Event*>& events,
                const ResponseHeader& header) override;
  void OnStatus(const RangeStatus& status) override;
  void OnCanceled(int64_t compact_revision, const std::string& reason,
                  const ResponseHeader& header) override;

  ClientWatchStream* const stream_;
  const int64_t id_;
  const int64_t start_;
  const bool prev_kv_, progress_notify_, fragment_;
  bool no_put_ = false, no_delete_ = false;
  // The upstream (namespaced) range, for permission checks.
  std::string key_, up_end_;
  // Guarded by the stream's mu_.
  uint64_t epoch_ = 0;        // of the permission decision it was let in by
  bool rechecking_ = false;   // a re-check is in flight
  bool attached_ = false;     // subscribed to its range
  bool created_ = false;
  bool sent_since_tick_ = false;
  int64_t progress_ = 0;
  std::shared_ptr<WatchRange> range_;
  uint64_t handle_ = 0;
  // Or served by a cached prefix.
  PrefixCache::Attachment prefix_;
};

class ClientWatchStream final : public common::WatchStreamReactor {
 public:
  ClientWatchStream(WatchProxy* p, std::string token)
      : common::WatchStreamReactor(Limits(p->options_)),
        p_(p),
        token_(std::move(token)) {
    {
      absl::MutexLock l(&handle_->mu);
      handle_->s = this;
    }
    p_->AddStream(this);
    if (p_->metrics_ != nullptr) p_->metrics_->client_watch_streams->Inc();
    StartReading();
  }

  void OnDone() override {
    {
      absl::MutexLock l(&handle_->mu);
      handle_->s = nullptr;
    }
    UnsubscribeAll();
    p_->RemoveStream(this);
    if (p_->metrics_ != nullptr) p_->metrics_->client_watch_streams->Dec();
    bool del;
    {
      absl::MutexLock l(&mu_);
      done_ = true;
      del = pending_ == 0;
    }
    // Else the last permission check in flight deletes it.
    if (del) delete this;
  }

  // The auth state moved (or checks failed before): re-checks, one probe
  // per range, every watcher whose decision is older than `epoch`, and
  // cancels those now refused as the member does. Called with the
  // service's mu_ held (which keeps the stream alive); a watcher whose
  // re-check is in flight is skipped (its answer marks another re-check
  // if it cannot decide).
  void Recheck(uint64_t epoch) {
    std::map<std::pair<std::string, std::string>,
             std::vector<std::shared_ptr<ClientWatcher>>>
        groups;
    {
      absl::MutexLock l(&mu_);
      if (stopped_) return;
      for (auto& [id, w] : watchers_) {
        if (w->epoch_ >= epoch || w->rechecking_ || !w->attached_) continue;
        w->rechecking_ = true;
        groups[{w->key_, w->up_end_}].push_back(w);
      }
      pending_ += groups.size();
    }
    for (auto& [range, ws] : groups) {
      p_->perms_->Check(
          token_, range.first, range.second,
          [this, ws = std::move(ws)](const grpc::Status& s, uint64_t e) {
            Rechecked(ws, s, e);
          });
    }
  }

  // ---- called by watchers (with their range's lock held) ----
  void WatcherCreated(ClientWatcher* w, const ResponseHeader& header) {
    absl::MutexLock l(&mu_);
    if (!ActiveLocked(w)) return;
    last_header_ = header;
    w->created_ = true;
    // Start 0: the watcher starts after header.revision. Otherwise nothing
    // before start_ concerns it.
    w->progress_ = std::max(
        w->progress_, w->start_ > 0 ? w->start_ - 1 : header.revision());
    WatchResponse resp;
    resp.set_watch_id(w->id_);
    resp.set_created(true);
    *resp.mutable_header() = header;
    PushLocked(std::move(resp));
  }

  bool WatcherEvents(ClientWatcher* w,
                     const std::vector<const mvccpb::Event*>& events,
                     const ResponseHeader& header) {
    absl::MutexLock l(&mu_);
    if (!ActiveLocked(w)) return true;  // canceled meanwhile: drop
    WatchResponse resp;
    resp.set_watch_id(w->id_);
    *resp.mutable_header() = header;
    int64_t last = 0;
    for (const mvccpb::Event* e : events) {
      last = e->kv().mod_revision();
      if (e->type() == mvccpb::Event::PUT && w->no_put_) continue;
      if (e->type() == mvccpb::Event::DELETE && w->no_delete_) continue;
      mvccpb::Event* ne = resp.add_events();
      *ne = *e;
      if (!w->prev_kv_) ne->clear_prev_kv();
      if (p_->options_.ns != nullptr) p_->options_.ns->Response(ne);
    }
    last_header_ = header;
    w->progress_ = std::max(w->progress_, last);
    if (resp.events_size() == 0) return true;
    if (FullLocked()) return false;
    w->sent_since_tick_ = true;
    EnqueueLocked(std::move(resp), w->fragment_);
    return true;
  }

  void WatcherStatus(ClientWatcher* w, const RangeStatus& status) {
    absl::MutexLock l(&mu_);
    if (!ActiveLocked(w)) return;
    w->progress_ = std::max(w->progress_, status.progress);
  }

  void WatcherCanceled(ClientWatcher* w, int64_t compact_revision,
                       const std::string& reason,
                       const ResponseHeader& header) {
    absl::MutexLock l(&mu_);
    if (!ActiveLocked(w)) return;
    watchers_.erase(w->id_);  // the range already dropped it
    if (p_->metrics_ != nullptr) p_->metrics_->client_watchers->Dec();
    WatchResponse resp;
    resp.set_watch_id(w->id_);
    resp.set_canceled(true);
    resp.set_compact_revision(compact_revision);
    resp.set_cancel_reason(reason);
    *resp.mutable_header() = header;
    PushLocked(std::move(resp));
  }

  // Periodic progress notify (etcd: progress_notify watchers that got no
  // event during the interval get an empty response).
  void ProgressTick() {
    absl::MutexLock l(&mu_);
    for (auto& [id, w] : watchers_) {
      if (w->progress_notify_ && w->created_ && !w->sent_since_tick_) {
        WatchResponse resp;
        resp.set_watch_id(id);
        *resp.mutable_header() = last_header_;
        resp.mutable_header()->set_revision(w->progress_);
        PushLocked(std::move(resp));
      }
      w->sent_since_tick_ = false;
    }
  }

 private:
  bool ActiveLocked(ClientWatcher* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = watchers_.find(w->id_);
    return it != watchers_.end() && it->second.get() == w;
  }

  // Creates and cancels are queued and handled in stream order: a create
  // waits for the caller's permission decision (PermissionCache), and what
  // follows it waits too, so responses keep the order of the requests.
  struct Op {
    bool cancel = false;
    etcdserverpb::WatchCreateRequest create;
    int64_t id = 0;
  };

  void Create(const etcdserverpb::WatchCreateRequest& c) override {
    Op op;
    op.create = c;
    Enqueue(std::move(op));
  }

  void CancelWatch(int64_t id) override {
    Op op;
    op.cancel = true;
    op.id = id;
    Enqueue(std::move(op));
  }

  void Enqueue(Op op) {
    {
      absl::MutexLock l(&mu_);
      ops_.push_back(std::move(op));
      if (running_) return;
      running_ = true;
    }
    RunOps();
  }

  // Handles queued ops until the queue is empty or a create waits for its
  // permission check (whose callback resumes here).
  void RunOps() {
    for (;;) {
      Op op;
      {
        absl::MutexLock l(&mu_);
        if (ops_.empty() || stopped_) {
          running_ = false;
          return;
        }
        op = std::move(ops_.front());
        ops_.pop_front();
      }
      if (op.cancel) {
        DoCancel(op.id);
        continue;
      }
      // etcd checks the watch's permission first (isWatchPermitted).
      std::string key = op.create.key(), up_end = op.create.range_end();
      if (p_->options_.ns != nullptr) p_->options_.ns->Interval(&key, &up_end);
      auto sync = std::make_shared<int>(0);  // 0 checking, 1 done, 2 async
      {
        absl::MutexLock l(&mu_);
        ++pending_;
      }
      p_->perms_->Check(
          token_, key, up_end,
          [this, sync, c = std::move(op.create), key, up_end](
              const grpc::Status& s, uint64_t epoch) {
            bool resume;
            {
              absl::MutexLock l(&mu_);
              resume = *sync == 2;
              *sync = 1;
            }
            Checked(c, key, up_end, s, epoch);
            if (resume) RunOps();
            ReleasePending();
          });
      absl::MutexLock l(&mu_);
      if (*sync == 0) {
        *sync = 2;  // the callback resumes the queue
        return;
      }
    }
  }

  // A create's permission decision is in: refused as the member refuses
  // it, or the watcher is made and subscribed.
  void Checked(const etcdserverpb::WatchCreateRequest& c,
               const std::string& key, const std::string& up_end,
               const grpc::Status& s, uint64_t epoch) {
    if (!s.ok()) {
      absl::MutexLock l(&mu_);
      if (stopped_) return;
      WatchResponse resp;
      resp.set_watch_id(-1);
      resp.set_created(true);
      resp.set_canceled(true);
      resp.set_cancel_reason(CreateRefusedReason(s));
      *resp.mutable_header() = last_header_;
      PushLocked(std::move(resp));
      return;
    }
    const std::string& end = c.range_end();
    int64_t id = c.watch_id();
    const char* error = nullptr;
    std::shared_ptr<ClientWatcher> w;
    {
      absl::MutexLock l(&mu_);
      if (stopped_) return;
      if (!end.empty() && !common::IsOpenEnd(end) && !(c.key() < end)) {
        error = common::kWatcherRangeEmpty;
      } else if (id == 0) {
        while (watchers_.count(next_id_) > 0) ++next_id_;
        id = next_id_++;
      } else if (watchers_.count(id) > 0) {
        error = common::kWatcherDuplicateId;
      }
      if (error != nullptr) {
        WatchResponse resp;
        resp.set_watch_id(-1);
        resp.set_created(true);
        resp.set_canceled(true);
        resp.set_cancel_reason(error);
        *resp.mutable_header() = last_header_;
        PushLocked(std::move(resp));
        return;
      }
      w = std::make_shared<ClientWatcher>(this, id, c);
      w->key_ = key;
      w->up_end_ = up_end;
      w->epoch_ = epoch;
      watchers_[id] = w;
      if (p_->metrics_ != nullptr) p_->metrics_->client_watchers->Inc();
    }
    PrefixCache::Attachment prefix;
    if (p_->options_.prefixes != nullptr) {
      prefix = p_->options_.prefixes->Subscribe(key, up_end, w,
                                                c.start_revision());
    }
    std::shared_ptr<WatchRange> range;
    uint64_t handle = 0;
    if (!prefix) {
      std::tie(range, handle) =
          p_->hub_->Subscribe(key, up_end, w, c.start_revision(), false);
    }
    bool attached = false;
    {
      absl::MutexLock l(&mu_);
      if (ActiveLocked(w.get())) {
        w->range_ = range;
        w->handle_ = handle;
        w->prefix_ = prefix;
        w->attached_ = true;
        attached = true;
      }
    }
    // Stopped or canceled meanwhile (the check may complete on another
    // thread than the stream's reactions): the subscription must not
    // outlive the stream.
    if (!attached) {
      if (range != nullptr) range->Unsubscribe(handle);
      if (prefix) p_->options_.prefixes->Unsubscribe(prefix);
    }
    // Decided before the auth state last moved: the next Tick re-checks.
    if (attached && epoch != p_->perms_->epoch()) p_->MarkRecheck();
  }

  // etcd's cancel_reason for a refused create (isWatchPermitted): the
  // token errors as they are, other refusals as permission denied. A check
  // the member could not answer (unavailable...) refuses the create too,
  // with that error's text: nothing is let in undecided.
  static std::string CreateRefusedReason(const grpc::Status& s) {
    const absl::Status st = common::FromGrpcStatus(s);
    if (!PermissionCache::IsDecision(s) ||
        common::IsErr(st, common::EtcdError::kInvalidAuthToken) ||
        common::IsErr(st, common::EtcdError::kAuthOldRevision) ||
        common::IsErr(st, common::EtcdError::kUserEmpty)) {
      return CancelReason(st);
    }
    return CancelReason(common::Err(common::EtcdError::kPermissionDenied));
  }

  // etcd's cancel reason for an auth error: the gRPC error's text, "rpc
  // error: code = PermissionDenied desc = etcdserver: permission denied".
  static std::string CancelReason(const absl::Status& st) {
    return absl::StrCat("rpc error: code = ", common::GrpcCodeName(st.code()),
                        " desc = ", st.message());
  }

  // The cancel_reason of a watcher found refused by a re-check: permission
  // denied, as a synod member cancels a watch whose permission was revoked
  // (also when auth was enabled under an anonymous watch), or the token
  // error when the client's token can no longer be checked: invalid, or
  // older than the auth change (a JWT token carries its auth revision, so
  // after any change the member answers "revision of auth store is old"
  // until the client logs in again; the proxy cannot tell what that token
  // may read now, so the watcher goes, and the client re-authenticates and
  // watches again).
  static bool RecheckRefuses(const grpc::Status& s) {
    return !s.ok() &&
           (PermissionCache::IsDecision(s) ||
            common::IsErr(common::FromGrpcStatus(s),
                          common::EtcdError::kAuthOldRevision));
  }
  static std::string RevokedReason(const grpc::Status& s) {
    const absl::Status st = common::FromGrpcStatus(s);
    if (common::IsErr(st, common::EtcdError::kInvalidAuthToken) ||
        common::IsErr(st, common::EtcdError::kAuthOldRevision)) {
      return CancelReason(st);
    }
    return CancelReason(common::Err(common::EtcdError::kPermissionDenied));
  }

  // A re-check's decision for watchers `ws` (one range): those refused are
  // canceled, as the member cancels a watch whose permission was revoked.
  void Rechecked(const std::vector<std::shared_ptr<ClientWatcher>>& ws,
                 const grpc::Status& s, uint64_t epoch) {
    const bool refused = RecheckRefuses(s);
    std::vector<std::shared_ptr<ClientWatcher>> cancel;
    {
      absl::MutexLock l(&mu_);
      for (const auto& w : ws) {
        w->rechecking_ = false;
        if (!ActiveLocked(w.get())) continue;
        if (s.ok()) {
          w->epoch_ = std::max(w->epoch_, epoch);
        } else if (refused) {
          watchers_.erase(w->id_);
          if (p_->metrics_ != nullptr) p_->metrics_->client_watchers->Dec();
          cancel.push_back(w);
          WatchResponse resp;
          resp.set_watch_id(w->id_);
          resp.set_canceled(true);
          resp.set_cancel_reason(RevokedReason(s));
          *resp.mutable_header() = last_header_;
          PushLocked(std::move(resp));
        }
      }
    }
    for (const auto& w : cancel) {
      Detach(*w);
    }
    // Undecided (e.g. the member was unreachable): try again next Tick.
    if (!s.ok() && !refused) p_->MarkRecheck(/*undecided=*/true);
    ReleasePending();
  }

  // One permission check of this stream is over; deletes the stream if it
  // was the last thing keeping it after OnDone.
  void ReleasePending() {
    bool del;
    {
      absl::MutexLock l(&mu_);
      --pending_;
      del = done_ && pending_ == 0;
    }
    if (del) delete this;
  }

  void DoCancel(int64_t id) {
    std::shared_ptr<ClientWatcher> w;
    {
      absl::MutexLock l(&mu_);
      auto it = watchers_.find(id);
      if (it == watchers_.end()) return;  // etcd ignores unknown ids
      w = it->second;
      watchers_.erase(it);
      if (p_->metrics_ != nullptr) p_->metrics_->client_watchers->Dec();
    }
    Detach(*w);
    absl::MutexLock l(&mu_);
    WatchResponse resp;
    resp.set_watch_id(id);
    resp.set_canceled(true);
    *resp.mutable_header() = last_header_;
    PushLocked(std::move(resp));
  }

  // WatchProgressRequest: each range of the stream's watchers asks its
  // member for progress; once every answer is in, the client gets the
  // lowest progress of its watchers (so, like a member, the proxy answers
  // with a revision every watcher has been sent events up to, as fresh as
  // the members' answers).
  void RequestProgress() override {
    std::vector<std::shared_ptr<WatchRange>> ranges;
    // One watcher per cached prefix (they share the prefix's watch).
    std::map<const void*, PrefixCache::Attachment> prefixes;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, w] : watchers_) {
        if (!w->created_) continue;
        if (w->range_ != nullptr) ranges.push_back(w->range_);
        if (w->prefix_) prefixes.emplace(w->prefix_.prefix.get(), w->prefix_);
      }
    }
    std::sort(ranges.begin(), ranges.end());
    ranges.erase(std::unique(ranges.begin(), ranges.end()), ranges.end());
    if (ranges.empty() && prefixes.empty()) {
      AnswerProgress();
      return;
    }
    auto left = std::make_shared<std::atomic<size_t>>(ranges.size() +
                                                      prefixes.size());
    std::shared_ptr<Handle> handle = handle_;
    auto answered = [left, handle] {
      if (left->fetch_sub(1) != 1) return;
      absl::MutexLock l(&handle->mu);
      if (handle->s != nullptr) handle->s->AnswerProgress();
    };
    for (const auto& r : ranges) r->RequestProgress(answered);
    for (const auto& [k, a] : prefixes) {
      p_->options_.prefixes->RequestProgress(a, answered);
    }
  }

  void AnswerProgress() {
    absl::MutexLock l(&mu_);
    int64_t rev = -1;
    for (const auto& [id, w] : watchers_) {
      if (!w->created_) continue;
      rev = rev < 0 ? w->progress_ : std::min(rev, w->progress_);
    }
    WatchResponse resp;
    resp.set_watch_id(-1);
    *resp.mutable_header() = last_header_;
    if (rev >= 0) resp.mutable_header()->set_revision(rev);
    PushLocked(std::move(resp));
  }

  // Ends a watcher's subscription (its range's or its prefix's).
  void Detach(const ClientWatcher& w) {
    if (w.range_ != nullptr) w.range_->Unsubscribe(w.handle_);
    if (w.prefix_) p_->options_.prefixes->Unsubscribe(w.prefix_);
  }

  void UnsubscribeAll() {
    std::map<int64_t, std::shared_ptr<ClientWatcher>> all;
    {
      absl::MutexLock l(&mu_);
      all.swap(watchers_);
      if (p_->metrics_ != nullptr) {
        p_->metrics_->client_watchers->Add(-static_cast<double>(all.size()));
      }
    }
    for (const auto& [id, w] : all) {
      Detach(*w);
    }
  }

  void StopWatching() override {
    {
      absl::MutexLock l(&mu_);
      stopped_ = true;
      ops_.clear();
    }
    UnsubscribeAll();
  }

  static common::WatchStreamLimits Limits(const WatchProxyOptions& o) {
    common::WatchStreamLimits l;
    l.fragment_bytes = o.fragment_bytes;
    l.max_queued_bytes = o.client_queue_bytes;
    return l;
  }

  // What outlives the stream: progress answers pending in ranges reach it
  // through here until OnDone detaches it.
  struct Handle {
    absl::Mutex mu;
    ClientWatchStream* s ABSL_GUARDED_BY(mu);
  };

  WatchProxy* const p_;
  const std::string token_;  // the client's "token" metadata, "" if none
  std::shared_ptr<Handle> handle_ = std::make_shared<Handle>();
  std::deque<Op> ops_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;  // RunOps is at work
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // StopWatching ran
  bool done_ ABSL_GUARDED_BY(mu_) = false;     // OnDone ran
  size_t pending_ ABSL_GUARDED_BY(mu_) = 0;    // permission checks in flight
  std::map<int64_t, std::shared_ptr<ClientWatcher>> watchers_
      ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  ResponseHeader last_header_ ABSL_GUARDED_BY(mu_);
};

void ClientWatcher::OnCreated(const ResponseHeader& header) {
  stream_->WatcherCreated(this, header);
}
bool ClientWatcher::OnEvents(const std::vector<const mvccpb::Event*>& events,
                             const ResponseHeader& header) {
  return stream_->WatcherEvents(this, events, header);
}
void ClientWatcher::OnStatus(const RangeStatus& status) {
  stream_->WatcherStatus(this, status);
}
void ClientWatcher::OnCanceled(int64_t compact_revision,
                               const std::string& reason,
                               const ResponseHeader& header) {
  stream_->WatcherCanceled(this, compact_revision, reason, header);
}

WatchProxy::WatchProxy(WatchHub* hub, PermissionCache* perms,
                       common::Clock* clock, WatchProxyOptions options,
                       ProxyMetrics* metrics)
    : hub_(hub),
      perms_(perms),
      clock_(clock),
      options_(options),
      metrics_(metrics) {
  last_notify_ = clock_->Now();
}

grpc::ServerBidiReactor<WatchRequest, WatchResponse>* WatchProxy::Watch(
    grpc::CallbackServerContext* ctx) {
  std::string token;
  auto it = ctx->client_metadata().find("token");
  if (it != ctx->client_metadata().end()) {
    token.assign(it->second.data(), it->second.size());
  }
  return new ClientWatchStream(this, std::move(token));
}

void WatchProxy::Recheck() {
  absl::MutexLock l(&mu_);
  recheck_.store(false);
  retry_undecided_.store(false);
  last_recheck_ = clock_->Now();
  checked_epoch_ = perms_->epoch();
  for (ClientWatchStream* s : streams_) s->Recheck(checked_epoch_);
}

void WatchProxy::MarkRecheck(bool undecided) {
  (undecided ? retry_undecided_ : recheck_).store(true);
}

void WatchProxy::AddStream(ClientWatchStream* s) {
  absl::MutexLock l(&mu_);
  streams_.insert(s);
}

void WatchProxy::RemoveStream(ClientWatchStream* s) {
  absl::MutexLock l(&mu_);
  streams_.erase(s);
}

void WatchProxy::Tick() {
  bool recheck;
  {
    absl::MutexLock l(&mu_);
    recheck = recheck_.load() || checked_epoch_ != perms_->epoch() ||
              (retry_undecided_.load() &&
               clock_->Now() - last_recheck_ >= kUndecidedRetry);
  }
  if (recheck) Recheck();
  absl::MutexLock l(&mu_);
  const absl::Time now = clock_->Now();
  if (now - last_notify_ < options_.progress_notify_interval) return;
  last_notify_ = now;
  for (ClientWatchStream* s : streams_) s->ProgressTick();
}

}  // namespace synod::proxy
