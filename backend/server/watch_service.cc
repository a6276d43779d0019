// The Watch service: one bidirectional stream per client, many watchers per
// stream (etcd's v3rpc/watch.go).
//
// Each stream is a WatchStream reactor and a mvcc::WatchSink. Deliver runs
// with the store's lock held (on the apply thread, or the store's sync
// thread) and only queues. Responses go out one write at a time from a
// bounded queue; when the queue is full the store stops delivering to that
// stream's watchers (they turn unsynced and are fed from history later), so
// a slow client never blocks others.
//
// prev_kv is read on the send path, as etcd's sendLoop reads it: just before
// the response at the head of the queue is written, its events' prev_kv are
// read (WatchableStore::PrevKv, a LevelDB read) on a gRPC thread -- in
// OnWriteDone, or, when the stream was idle, on a thread of gRPC's executor
// that an alarm wakes -- outside every lock, so many prev_kv watchers cost
// the apply thread no reads.
//
// Lock order: WatchableStore::mu_ -> WatchStream::mu_. The stream never
// calls the store while holding mu_.
#include <grpcpp/alarm.h>

#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "backend/server/services.h"
#include "common/errors.h"
#include "common/key_range.h"

namespace synod::server {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

// What a stream may queue before its watchers become victims: responses,
// and bytes (one response can carry a whole group commit's events; one
// whose prev_kv is not read yet counts for an estimate, see
// SizeWithPrevKv). A delivery into an empty queue is always taken, however
// large.
constexpr size_t kMaxQueuedResponses = 1024;
constexpr size_t kMaxQueuedBytes = 1 << 20;
// etcd's error strings for watch creation (mvcc/watcher.go).
constexpr char kEmptyWatcherRange[] = "mvcc: watcher range is empty";
constexpr char kDuplicateWatchId[] =
    "mvcc: duplicate watch ID provided on the WatchStream";

// The size `resp` will have once its events' prev_kv are read, before they
// are: each prev_kv is taken to be as large as the kv that replaced it. A
// delete's kv holds only its key, so a delete of a large value is
// undercounted until read; the response bound (kMaxQueuedResponses) holds
// regardless, and the real size is charged once the prev_kv is read.
size_t SizeWithPrevKv(const WatchResponse& resp) {
  size_t n = resp.ByteSizeLong();
  for (const mvccpb::Event& ev : resp.events()) {
    // + the prev_kv field's tag and length (at most 1 + 5 bytes).
    if (!mvcc::IsCreateEvent(ev)) n += ev.kv().ByteSizeLong() + 6;
  }
  return n;
}

// etcd's sendFragments: a response larger than `limit` with more than one
// event is split over several, all but the last marked fragment. Appends the
// parts (or `resp` whole) to `out`.
void AppendFragments(WatchResponse resp, bool fragment, size_t limit,
                     std::vector<WatchResponse>* out) {
  if (!fragment || resp.ByteSizeLong() <= limit || resp.events_size() <= 1) {
    out->push_back(std::move(resp));
    return;
  }
  WatchResponse cur;
  cur.mutable_header()->CopyFrom(resp.header());
  cur.set_watch_id(resp.watch_id());
  for (int i = 0; i < resp.events_size(); ++i) {
    *cur.add_events() = resp.events(i);
    if (cur.ByteSizeLong() > limit && cur.events_size() > 1) {
      cur.mutable_events()->RemoveLast();
      cur.set_fragment(true);
      out->push_back(cur);
      cur.clear_events();
      *cur.add_events() = resp.events(i);
    }
  }
  cur.set_fragment(false);
  out->push_back(std::move(cur));
}

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
    {
      absl::MutexLock l(&mu_);
      queued_bytes_ -= queue_.front().bytes;
      queue_.pop_front();
      if (!ok) {
        queue_.clear();
        queued_bytes_ = 0;
        writing_ = false;
        broken_ = true;
        MaybeFinishLocked();
        return;
      }
      if (queue_.empty()) {
        writing_ = false;
        MaybeFinishLocked();
        return;
      }
      if (!queue_.front().needs_prev_kv) {
        WriteFrontLocked();
        return;
      }
    }
    SendFront();  // a gRPC thread, no lock held: read prev_kv here
  }

  void OnCancel() override {}

  void OnDone() override {
    s_->RemoveProgressTicker(ticker_);
    CancelAll();
    delete this;
  }

  // ---- mvcc::WatchSink (called with the store's lock held) ----
  // Queues the events; reads nothing (prev_kv is read by SendFront).
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
    bool needs_prev_kv = false;
    for (mvccpb::Event& ev : *events) {
      if (it->second.prev_kv && !mvcc::IsCreateEvent(ev)) needs_prev_kv = true;
      *resp.add_events() = std::move(ev);
    }
    resp.mutable_header()->set_revision(revision);
    s_->FillHeader(resp.mutable_header());
    it->second.sent_since_tick = true;
    if (!needs_prev_kv) {
      EnqueueLocked(std::move(resp), it->second.fragment);
      return true;
    }
    // Fragmented, if asked, once its prev_kv are read and its size known.
    Outgoing o;
    o.bytes = SizeWithPrevKv(resp);
    o.resp = std::move(resp);
    o.needs_prev_kv = true;
    o.fragment = it->second.fragment;
    PushLocked(std::move(o));
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

  // A response in the queue.
  struct Outgoing {
    WatchResponse resp;
    // What it counts for in queued_bytes_: its size, or, while its prev_kv
    // are unread, SizeWithPrevKv's estimate.
    size_t bytes = 0;
    // Its events' prev_kv are still to be read (by SendFront, before it is
    // written); it is then split into fragments if `fragment`.
    bool needs_prev_kv = false;
    bool fragment = false;
  };

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

  // Queues a response that needs no prev_kv read, split into fragments if
  // `fragment` (and larger than --max-request-bytes).
  void EnqueueLocked(WatchResponse resp, bool fragment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (broken_ || finished_) return;  // never write after Finish
    std::vector<WatchResponse> parts;
    AppendFragments(std::move(resp), fragment, Limit(), &parts);
    for (WatchResponse& p : parts) {
      Outgoing o;
      o.bytes = p.ByteSizeLong();
      o.resp = std::move(p);
      PushLocked(std::move(o));
    }
  }

  size_t Limit() const {
    return static_cast<size_t>(s_->config().max_request_bytes);
  }

  // Queues `o`; if the stream was idle, this call takes the send role
  // (writing_: one write, or one SendFront, in flight) and starts sending.
  void PushLocked(Outgoing o) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queued_bytes_ += o.bytes;
    queue_.push_back(std::move(o));
    if (writing_) return;
    writing_ = true;
    if (!queue_.front().needs_prev_kv) {
      WriteFrontLocked();
      return;
    }
    // The caller may be the apply thread holding the store's lock: the
    // prev_kv read goes to a thread of gRPC's executor. A new alarm each
    // time: the previous one has fired (its SendFront started the write
    // that ended before the stream went idle), and re-arming an alarm
    // whose callback may still be returning is not safe.
    kick_ = std::make_unique<grpc::Alarm>();
    kick_->Set(gpr_inf_past(GPR_CLOCK_MONOTONIC), [this](bool) { SendFront(); });
  }

  // Holding the send role, on a gRPC thread, with no lock held: reads the
  // prev_kv of the head of the queue (etcd's sendLoop: the key at
  // mod_revision - 1; an event whose previous revision was compacted since
  // Deliver goes without prev_kv, as in etcd), puts it back at the head,
  // split into fragments if asked, and starts its write. Nothing else takes
  // from the head meanwhile (only the send role does), and responses queued
  // meanwhile stay behind it, so progress notifications still follow the
  // events queued before them. After StartWrite `this` is not touched: the
  // write may end, and the stream with it, before StartWrite returns.
  void SendFront() ABSL_LOCKS_EXCLUDED(mu_) {
    Outgoing o;
    {
      absl::MutexLock l(&mu_);
      o = std::move(queue_.front());
      queue_.pop_front();
    }
    for (mvccpb::Event& ev : *o.resp.mutable_events()) {
      std::optional<mvccpb::KeyValue> prev = s_->watchable()->PrevKv(ev);
      if (prev.has_value()) *ev.mutable_prev_kv() = std::move(*prev);
    }
    std::vector<WatchResponse> parts;
    AppendFragments(std::move(o.resp), o.fragment, Limit(), &parts);
    const WatchResponse* next = nullptr;
    grpc::WriteOptions options;
    {
      absl::MutexLock l(&mu_);
      queued_bytes_ -= o.bytes;
      for (auto p = parts.rbegin(); p != parts.rend(); ++p) {
        Outgoing part;
        part.bytes = p->ByteSizeLong();
        part.resp = std::move(*p);
        queued_bytes_ += part.bytes;
        queue_.push_front(std::move(part));
      }
      // The element stays put until OnWriteDone pops it (a deque keeps
      // references across pushes at either end).
      next = &queue_.front().resp;
      options = WriteOptionsLocked();
    }
    StartWrite(next, options);
  }

  // gRPC's buffer hint while more responses wait behind the head (one
  // revision fanned out to many watchers of this stream): they leave in a
  // few frames, and the last one, written without the hint, flushes them.
  grpc::WriteOptions WriteOptionsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    grpc::WriteOptions options;
    if (queue_.size() > 1) options.set_buffer_hint();
    return options;
  }

  // Writes the head of the queue (its prev_kv, if any, already read).
  void WriteFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StartWrite(&queue_.front().resp, WriteOptionsLocked());
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
  std::deque<Outgoing> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // The send role: a write in flight, or a SendFront running or due (the
  // head is then out of queue_ for a moment, or about to be read).
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // Wakes SendFront on gRPC's executor when an idle stream is handed a
  // response whose prev_kv must be read. Replaced per use.
  std::unique_ptr<grpc::Alarm> kick_ ABSL_GUARDED_BY(mu_);
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
