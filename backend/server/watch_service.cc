// The Watch service: one bidirectional stream per client, many watchers per
// stream (etcd's v3rpc/watch.go).
//
// Each stream is a WatchStream reactor and a mvcc::WatchSink. Deliver runs
// with the store's lock held (on the apply thread, or the store's sync
// thread) and only queues. Responses go out one write at a time from a
// bounded queue (common::WatchStreamReactor, shared with synod-proxy, which
// also splits the responses of fragment watchers at --max-request-bytes);
// when the queue is full the store stops delivering to that stream's
// watchers (they turn unsynced and are fed from history later), so a slow
// client never blocks others.
//
// prev_kv is read on the send path, as etcd's sendLoop reads it: just before
// the response at the head of the queue is written, its events' prev_kv are
// read (WatchableStore::PrevKv, a LevelDB read; FillDeferred) on a gRPC
// thread -- when the write before it ends, or, when the stream was idle, on
// a thread of gRPC's executor that an alarm wakes -- outside every lock, so
// many prev_kv watchers cost the apply thread no reads.
//
// Lock order: WatchableStore::mu_ -> WatchStream::mu_. The stream never
// calls the store while holding mu_.
#include <map>
#include <optional>
#include <vector>

#include "backend/server/services.h"
#include "absl/strings/str_cat.h"
#include "common/errors.h"
#include "common/etcd_metrics.h"
#include "common/logging.h"
#include "common/key_range.h"
#include "common/watch_stream.h"

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

class WatchStream final : public common::WatchStreamReactor,
                          public mvcc::WatchSink {
 public:
  WatchStream(EtcdServer* s, const grpc::CallbackServerContext* ctx)
      : common::WatchStreamReactor(Limits(s->config())), s_(s), ctx_(ctx) {
    ticker_ = s_->AddProgressTicker([this] { ProgressTick(); });
    auth_listener_ = s_->AddAuthListener([this] { RecheckPermissions(); });
    common::GetEtcdMetrics().watch_streams->Inc();
    StartReading();
  }

  // ---- gRPC side ----
  void OnDone() override {
    common::GetEtcdMetrics().watch_streams->Dec();
    s_->RemoveAuthListener(auth_listener_);
    s_->RemoveProgressTicker(ticker_);
    CancelAll();
    delete this;
  }

  // ---- mvcc::WatchSink (called with the store's lock held) ----
  // Queues the events; reads nothing (prev_kv is read by FillDeferred).
  bool Deliver(int64_t watch_id, std::vector<mvccpb::Event>* events,
               int64_t revision) override {
    absl::MutexLock l(&mu_);
    if (ClosedLocked()) return true;  // drop: the stream is going away
    if (FullLocked()) {
      refused_ = true;  // OnWritten kicks the store once there is room
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
    const size_t bytes = SizeWithPrevKv(resp);
    EnqueueDeferredLocked(std::move(resp), bytes, it->second.fragment);
    return true;
  }

  // A write ended: once a stream that refused events has room, the store
  // retries its watchers at once (not after its back-off).
  void OnWritten() override {
    bool kick = false;
    {
      absl::MutexLock l(&mu_);
      if (refused_ && !FullLocked()) {
        refused_ = false;
        kick = true;
      }
    }
    if (kick) s_->watchable()->Kick();
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
    std::string key, range_end;  // for re-checks after an auth change
    bool prev_kv = false;
    bool progress_notify = false;
    bool fragment = false;
    bool sent_since_tick = false;
  };

  void Create(const etcdserverpb::WatchCreateRequest& c) override {
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
      error = common::kWatcherRangeEmpty;
    }
    // etcd's isWatchPermitted: READ on the range, with the stream's
    // credentials; refused as a created and canceled response.
    auth::AuthInfo info;
    std::string denied;
    if (error == nullptr) {
      absl::Status st = CheckCaller(s_, *ctx_, [&](const auth::AuthInfo& ai) {
        return s_->auth_store()->IsRangePermitted(ai, c.key(), range_end);
      }, &info);
      if (!st.ok()) {
        denied = CancelReason(st);
        error = denied.c_str();
      }
    }
    {
      absl::MutexLock l(&mu_);
      if (error == nullptr) user_ = info.username;
      if (error == nullptr) {
        if (id == 0) {
          // etcd: 0 asks for an id; automatic ids count up from 0.
          while ((watchers_.count(next_id_) > 0)) ++next_id_;
          id = next_id_++;
        } else if ((watchers_.count(id) > 0)) {
          error = common::kWatcherDuplicateId;
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
      w.key = c.key();
      w.range_end = range_end;
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

  void CancelWatch(int64_t id) override {
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

  // etcd's cancel reason for an auth error: the gRPC error's text.
  static std::string CancelReason(const absl::Status& st) {
    return absl::StrCat("rpc error: code = ",
                        common::GrpcCodeName(st.code()), " desc = ",
                        st.message());
  }

  // After an applied auth change (apply thread): cancels every watcher
  // whose range the stream's user may no longer read, with etcd's
  // permission denied reason. etcd 3.4 keeps sending their events.
  void RecheckPermissions() {
    auth::AuthStore* as = s_->auth_store();
    std::vector<std::pair<int64_t, uint64_t>> revoked;
    std::string user;
    {
      absl::MutexLock l(&mu_);
      user = user_;
      const auth::AuthInfo info{user_, as->Revision()};
      for (auto it = watchers_.begin(); it != watchers_.end();) {
        absl::Status st =
            as->IsRangePermitted(info, it->second.key, it->second.range_end);
        if (st.ok()) {
          ++it;
          continue;
        }
        revoked.emplace_back(it->first, it->second.handle);
        WatchResponse resp;
        resp.set_watch_id(it->first);
        resp.set_canceled(true);
        resp.set_cancel_reason(
            CancelReason(common::Err(common::EtcdError::kPermissionDenied)));
        s_->FillHeader(resp.mutable_header());
        EnqueueLocked(std::move(resp), false);
        it = watchers_.erase(it);
      }
    }
    for (const auto& [id, handle] : revoked) {
      SYNOD_LOG(INFO) << "canceled watch " << id << " of user \"" << user
                      << "\": permission revoked";
      if (handle != 0) s_->watchable()->Cancel(handle);
    }
  }

  // WatchProgressRequest: a response with watch_id -1 whose revision every
  // watcher of the stream has reached (etcd 3.4 answers with the store's
  // revision even when a watcher lags; we report the slowest watcher's).
  void RequestProgress() override {
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
    // After FillHeader, which would take a 0 (no watcher has been given
    // anything yet) for unset and put the store's revision there: a client
    // (synod-proxy) would then skip events still on their way.
    s_->FillHeader(resp.mutable_header());
    resp.mutable_header()->set_revision(rev);
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
      s_->FillHeader(resp.mutable_header());
      resp.mutable_header()->set_revision(p);  // even 0, as above
      absl::MutexLock l(&mu_);
      if ((watchers_.count(id) > 0)) EnqueueLocked(std::move(resp), false);
    }
  }

  static common::WatchStreamLimits Limits(const ServerConfig& cfg) {
    common::WatchStreamLimits l;
    l.fragment_bytes = static_cast<size_t>(cfg.max_request_bytes);
    l.max_queued_responses = kMaxQueuedResponses;
    l.max_queued_bytes = kMaxQueuedBytes;
    return l;
  }

  // etcd's sendLoop: each event's prev_kv is the key at mod_revision - 1;
  // an event whose previous revision was compacted since Deliver goes
  // without prev_kv, as in etcd.
  void FillDeferred(WatchResponse* resp) override {
    for (mvccpb::Event& ev : *resp->mutable_events()) {
      std::optional<mvccpb::KeyValue> prev = s_->watchable()->PrevKv(ev);
      if (prev.has_value()) *ev.mutable_prev_kv() = std::move(*prev);
    }
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

  // The client closed its side: stop watching (the stream then flushes and
  // finishes).
  void StopWatching() override { CancelAll(); }

  EtcdServer* s_;
  const grpc::CallbackServerContext* const ctx_;  // outlives the reactor
  uint64_t ticker_ = 0;
  uint64_t auth_listener_ = 0;
  // The user of the stream's credentials (its last permitted create).
  std::string user_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, WatcherState> watchers_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> orphan_handles_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Deliver refused events (the queue was full) since the last room report.
  bool refused_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerBidiReactor<WatchRequest, WatchResponse>* WatchService::Watch(
    grpc::CallbackServerContext* ctx) {
  if (s_->is_learner()) {
    return new RejectedStream<WatchRequest, WatchResponse>(
        common::Err(common::EtcdError::kNotSupportedForLearner));
  }
  // Tells synod-proxy how RequestProgress answers (the slowest watcher's
  // revision, after its events), which etcd 3.4 does not promise; sent with
  // the first response (proxy/upstream.h kWatchProgressMetadataKey).
  ctx->AddInitialMetadata("synod-progress", "slowest-watcher");
  return new WatchStream(s_, ctx);
}

}  // namespace synod::server
