// The Watch service: one bidirectional stream per client, many watchers per
// stream (etcd's v3rpc/watch.go).
//
// Each stream is a WatchStream reactor and a mvcc::WatchSink. Responses go
// out one write at a time from a bounded queue; when the queue is full the
// store stops delivering to that stream's watchers (they turn unsynced and
// are fed from history later), so a slow client never blocks others.
//
// Lock order: WatchableStore::mu_ -> WatchStream::mu_. The stream never
// calls the store while holding mu_.
#include <deque>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "backend/server/services.h"
#include "common/errors.h"
#include "common/key_range.h"

namespace synod::server {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

// What a stream may queue before its watchers become victims: responses,
// and bytes (one response can carry a whole group commit's events). A
// delivery into an empty queue is always taken, however large.
constexpr size_t kMaxQueuedResponses = 1024;
constexpr size_t kMaxQueuedBytes = 1 << 20;
// etcd's error strings for watch creation (mvcc/watcher.go).
constexpr char kEmptyWatcherRange[] = "mvcc: watcher range is empty";
constexpr char kDuplicateWatchId[] =
    "mvcc: duplicate watch ID provided on the WatchStream";

class WatchStream final
    : public grpc::ServerBidiReactor<WatchRequest, WatchResponse>,
      public mvcc::WatchSink {
 public:
  explicit WatchStream(EtcdServer* s) : s_(s) {
    ticker_ = s_->AddProgressTicker([this] { ProgressTick(); });
    StartRead(&req_);
  }

  // ---- gRPC side ----
  void OnReadDone(bool ok) override {
    if (!ok) {
      Shutdown();
      return;
    }
    if (req_.has_create_request()) {
      Create(req_.create_request());
    } else if (req_.has_cancel_request()) {
      CancelWatch(req_.cancel_request().watch_id());
    } else if (req_.has_progress_request()) {
      RequestProgress();
    }
    StartRead(&req_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    queued_bytes_ -= queue_.front().ByteSizeLong();
    queue_.pop_front();
    if (!ok) {
      queue_.clear();
      queued_bytes_ = 0;
      writing_ = false;
      broken_ = true;
      MaybeFinishLocked();
      return;
    }
    if (!queue_.empty()) {
      WriteFrontLocked();
      return;
    }
    writing_ = false;
    MaybeFinishLocked();
  }

  void OnCancel() override {}

  void OnDone() override {
    s_->RemoveProgressTicker(ticker_);
    CancelAll();
    delete this;
  }

  // ---- mvcc::WatchSink (called with the store's lock held) ----
  bool Deliver(int64_t watch_id, std::vector<mvccpb::Event>* events,
               int64_t revision) override {
    absl::MutexLock l(&mu_);
    if (broken_ || finished_) return true;  // drop: the stream is going away
    if (queue_.size() >= kMaxQueuedResponses ||
        queued_bytes_ >= kMaxQueuedBytes) {
      return false;
    }
    auto it = watchers_.find(watch_id);
    if (it == watchers_.end()) return true;
    WatchResponse resp;
    resp.set_watch_id(watch_id);
    for (mvccpb::Event& ev : *events) {
      if (it->second.prev_kv) FillPrevKv(&ev);
      *resp.add_events() = std::move(ev);
    }
    resp.mutable_header()->set_revision(revision);
    s_->FillHeader(resp.mutable_header());
    it->second.sent_since_tick = true;
    EnqueueLocked(std::move(resp), it->second.fragment);
    return true;
  }

  void Compacted(int64_t watch_id, int64_t compact_revision) override {
    absl::MutexLock l(&mu_);
    auto it = watchers_.find(watch_id);
    if (it == watchers_.end()) return;
    watchers_.erase(it);
    WatchResponse resp;
    resp.set_watch_id(watch_id);
    resp.set_canceled(true);
    resp.set_compact_revision(compact_revision);
    resp.set_cancel_reason(
        "etcdserver: mvcc: required revision has been compacted");
    s_->FillHeader(resp.mutable_header());
    EnqueueLocked(std::move(resp), false);
  }

 private:
  struct WatcherState {
    uint64_t handle = 0;
    bool prev_kv = false;
    bool progress_notify = false;
    bool fragment = false;
    bool sent_since_tick = false;
  };

  void FillPrevKv(mvccpb::Event* ev) {
    auto prev = s_->kv()->Get(ev->kv().key(), ev->kv().mod_revision() - 1);
    if (prev.ok() && prev->has_value()) *ev->mutable_prev_kv() = std::move(**prev);
  }

  void Create(const etcdserverpb::WatchCreateRequest& c) {
    std::string range_end = c.range_end();
    const int64_t rev = s_->kv()->Rev();
    WatchResponse resp;
    resp.set_created(true);
    resp.mutable_header()->set_revision(rev);
    s_->FillHeader(resp.mutable_header());
    int64_t id = c.watch_id();
    const char* error = nullptr;
    if (!range_end.empty() && !common::IsOpenEnd(range_end) &&
        !(c.key() < range_end)) {
      error = kEmptyWatcherRange;
    }
    {
      absl::MutexLock l(&mu_);
      if (error == nullptr) {
        if (id == 0) {
          // etcd: 0 asks for an id; automatic ids count up from 0.
          while ((watchers_.count(next_id_) > 0)) ++next_id_;
          id = next_id_++;
        } else if ((watchers_.count(id) > 0)) {
          error = kDuplicateWatchId;
        }
      }
      if (error != nullptr) {
        resp.set_watch_id(-1);
        resp.set_canceled(true);
        resp.set_cancel_reason(error);
        EnqueueLocked(std::move(resp), false);
        return;
      }
      WatcherState& w = watchers_[id];
      w.prev_kv = c.prev_kv();
      w.progress_notify = c.progress_notify();
      w.fragment = c.fragment();
      resp.set_watch_id(id);
      // The created response goes out before any event of this watcher.
      EnqueueLocked(std::move(resp), false);
    }
    mvcc::WatchSpec spec;
    spec.key = c.key();
    spec.range_end = range_end;
    spec.start_revision = c.start_revision() > 0 ? c.start_revision() : rev + 1;
    for (int f : c.filters()) {
      if (f == etcdserverpb::WatchCreateRequest::NOPUT) spec.no_put = true;
      if (f == etcdserverpb::WatchCreateRequest::NODELETE) spec.no_delete = true;
    }
    uint64_t handle = s_->watchable()->Watch(this, id, spec);
    absl::MutexLock l(&mu_);
    auto it = watchers_.find(id);
    if (it != watchers_.end()) {
      it->second.handle = handle;
    } else {
      // Canceled (compacted) before we stored the handle.
      orphan_handles_.push_back(handle);
    }
  }

  void CancelWatch(int64_t id) {
    uint64_t handle = 0;
    {
      absl::MutexLock l(&mu_);
      auto it = watchers_.find(id);
      if (it == watchers_.end()) return;  // etcd ignores unknown ids
      handle = it->second.handle;
      watchers_.erase(it);
    }
    if (handle != 0) s_->watchable()->Cancel(handle);
    WatchResponse resp;
    resp.set_watch_id(id);
    resp.set_canceled(true);
    s_->FillHeader(resp.mutable_header());
    absl::MutexLock l(&mu_);
    EnqueueLocked(std::move(resp), false);
  }

  // WatchProgressRequest: a response with watch_id -1 whose revision every
  // watcher of the stream has reached (etcd 3.4 answers with the store's
  // revision even when a watcher lags; we report the slowest watcher's).
  void RequestProgress() {
    std::vector<uint64_t> handles;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, w] : watchers_) handles.push_back(w.handle);
    }
    int64_t rev = s_->watchable()->NotifiedRev();
    for (uint64_t h : handles) {
      int64_t p = s_->watchable()->Progress(h);
      if (p >= 0) rev = std::min(rev, p);
    }
    WatchResponse resp;
    resp.set_watch_id(-1);
    resp.mutable_header()->set_revision(rev);
    s_->FillHeader(resp.mutable_header());
    absl::MutexLock l(&mu_);
    EnqueueLocked(std::move(resp), false);
  }

  // Periodic progress notify: each progress_notify watcher that got nothing
  // during the interval gets an empty response at its progress revision.
  void ProgressTick() {
    std::vector<std::pair<int64_t, uint64_t>> due;
    {
      absl::MutexLock l(&mu_);
      for (auto& [id, w] : watchers_) {
        if (w.progress_notify && !w.sent_since_tick && w.handle != 0) {
          due.emplace_back(id, w.handle);
        }
        w.sent_since_tick = false;
      }
    }
    for (const auto& [id, handle] : due) {
      const int64_t p = s_->watchable()->Progress(handle);
      if (p < 0) continue;
      WatchResponse resp;
      resp.set_watch_id(id);
      resp.mutable_header()->set_revision(p);
      s_->FillHeader(resp.mutable_header());
      absl::MutexLock l(&mu_);
      if ((watchers_.count(id) > 0)) EnqueueLocked(std::move(resp), false);
    }
  }

  void EnqueueLocked(WatchResponse resp, bool fragment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (broken_ || finished_) return;  // never write after Finish
    const size_t limit = static_cast<size_t>(s_->config().max_request_bytes);
    if (fragment && resp.ByteSizeLong() > limit && resp.events_size() > 1) {
      // etcd's sendFragments: split the events over several responses, all
      // but the last marked fragment.
      WatchResponse cur;
      cur.mutable_header()->CopyFrom(resp.header());
      cur.set_watch_id(resp.watch_id());
      for (int i = 0; i < resp.events_size(); ++i) {
        *cur.add_events() = resp.events(i);
        if (cur.ByteSizeLong() > limit && cur.events_size() > 1) {
          cur.mutable_events()->RemoveLast();
          cur.set_fragment(true);
          PushLocked(cur);
          cur.clear_events();
          *cur.add_events() = resp.events(i);
        }
      }
      cur.set_fragment(false);
      PushLocked(std::move(cur));
      return;
    }
    PushLocked(std::move(resp));
  }

  void PushLocked(WatchResponse resp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queued_bytes_ += resp.ByteSizeLong();
    queue_.push_back(std::move(resp));
    if (!writing_) {
      writing_ = true;
      WriteFrontLocked();
    }
  }

  // Writes the head of the queue, with gRPC's buffer hint while more
  // responses wait behind it (one revision fanned out to many watchers of
  // this stream): they leave in a few frames, and the last one, written
  // without the hint, flushes them.
  void WriteFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    grpc::WriteOptions options;
    if (queue_.size() > 1) options.set_buffer_hint();
    StartWrite(&queue_.front(), options);
  }

  void CancelAll() {
    std::vector<uint64_t> handles;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, w] : watchers_) handles.push_back(w.handle);
      watchers_.clear();
      handles.insert(handles.end(), orphan_handles_.begin(),
                     orphan_handles_.end());
      orphan_handles_.clear();
    }
    for (uint64_t h : handles) {
      if (h != 0) s_->watchable()->Cancel(h);
    }
  }

  // The client closed its side: stop watching, flush, finish.
  void Shutdown() {
    CancelAll();
    absl::MutexLock l(&mu_);
    reads_done_ = true;
    MaybeFinishLocked();
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // A broken stream still waits for its read side to end (it will, as
    // gRPC cancels the call) before finishing.
    if (reads_done_ && !writing_ && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  EtcdServer* s_;
  uint64_t ticker_ = 0;
  WatchRequest req_;
  absl::Mutex mu_;
  std::map<int64_t, WatcherState> watchers_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> orphan_handles_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<WatchResponse> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerBidiReactor<WatchRequest, WatchResponse>* WatchService::Watch(
    grpc::CallbackServerContext*) {
  if (s_->is_learner()) {
    return new RejectedStream<WatchRequest, WatchResponse>(
        common::Err(common::EtcdError::kNotSupportedForLearner));
  }
  return new WatchStream(s_);
}

}  // namespace synod::server
