#include "proxy/watch_proxy.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

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
  // Guarded by the stream's mu_.
  bool created_ = false;
  bool sent_since_tick_ = false;
  int64_t progress_ = 0;
  std::shared_ptr<WatchRange> range_;
  uint64_t handle_ = 0;
};

class ClientWatchStream final : public common::WatchStreamReactor {
 public:
  explicit ClientWatchStream(WatchProxy* p)
      : common::WatchStreamReactor(Limits(p->options_)), p_(p) {
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
    delete this;
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

  void Create(const etcdserverpb::WatchCreateRequest& c) override {
    const std::string& end = c.range_end();
    int64_t id = c.watch_id();
    const char* error = nullptr;
    std::shared_ptr<ClientWatcher> w;
    {
      absl::MutexLock l(&mu_);
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
      watchers_[id] = w;
      if (p_->metrics_ != nullptr) p_->metrics_->client_watchers->Inc();
    }
    std::string key = c.key(), up_end = end;
    if (p_->options_.ns != nullptr) p_->options_.ns->Interval(&key, &up_end);
    auto [range, handle] =
        p_->hub_->Subscribe(key, up_end, w, c.start_revision(), false);
    absl::MutexLock l(&mu_);
    if (ActiveLocked(w.get())) {
      w->range_ = range;
      w->handle_ = handle;
    }
  }

  void CancelWatch(int64_t id) override {
    std::shared_ptr<ClientWatcher> w;
    {
      absl::MutexLock l(&mu_);
      auto it = watchers_.find(id);
      if (it == watchers_.end()) return;  // etcd ignores unknown ids
      w = it->second;
      watchers_.erase(it);
      if (p_->metrics_ != nullptr) p_->metrics_->client_watchers->Dec();
    }
    if (w->range_ != nullptr) w->range_->Unsubscribe(w->handle_);
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
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, w] : watchers_) {
        if (w->created_ && w->range_ != nullptr) ranges.push_back(w->range_);
      }
    }
    std::sort(ranges.begin(), ranges.end());
    ranges.erase(std::unique(ranges.begin(), ranges.end()), ranges.end());
    if (ranges.empty()) {
      AnswerProgress();
      return;
    }
    auto left = std::make_shared<std::atomic<size_t>>(ranges.size());
    std::shared_ptr<Handle> handle = handle_;
    for (const auto& r : ranges) {
      r->RequestProgress([left, handle] {
        if (left->fetch_sub(1) != 1) return;
        absl::MutexLock l(&handle->mu);
        if (handle->s != nullptr) handle->s->AnswerProgress();
      });
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
      if (w->range_ != nullptr) w->range_->Unsubscribe(w->handle_);
    }
  }

  void StopWatching() override { UnsubscribeAll(); }

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
  std::shared_ptr<Handle> handle_ = std::make_shared<Handle>();
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

WatchProxy::WatchProxy(WatchHub* hub, common::Clock* clock,
                       WatchProxyOptions options, ProxyMetrics* metrics)
    : hub_(hub), clock_(clock), options_(options), metrics_(metrics) {
  last_notify_ = clock_->Now();
}

grpc::ServerBidiReactor<WatchRequest, WatchResponse>* WatchProxy::Watch(
    grpc::CallbackServerContext*) {
  return new ClientWatchStream(this);
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
  absl::MutexLock l(&mu_);
  const absl::Time now = clock_->Now();
  if (now - last_notify_ < options_.progress_notify_interval) return;
  last_notify_ = now;
  for (ClientWatchStream* s : streams_) s->ProgressTick();
}

}  // namespace synod::proxy
