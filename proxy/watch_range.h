// WatchRange: one watched range (key, range_end) of the proxy. It holds
// ONE upstream watch for the range, whatever start revisions its
// subscribers ask for, a bounded window of recent events, and broadcasts
// each upstream response to its subscribers (client watchers and cache
// entries).
//
// Revisions. `progress` P: every event of the range with revision <= P has
// been received. The window holds every event with revision in
// [covered_from, P]. A subscriber that starts at revision s:
//   - s == 0: starts after the newest revision known (etcd's "now");
//   - s >= covered_from: replayed from the window, then live;
//   - s <  covered_from: fed by a catch-up upstream watch (at most one per
//     range at a time, shared by every lagging subscriber) until it reaches
//     the window, then merged into the live broadcast and the catch-up
//     stream is closed. Until then the live stream's events are kept for it
//     in the window only; after the merge it gets those above the last
//     revision the catch-up gave it (repeats are dropped by revision).
//
// Progress answers. A member that says so in the Watch stream's initial
// metadata (synod: kWatchProgressMetadataKey) answers a progress request
// with a revision whose events it has already sent on the stream: such an
// answer moves P (main stream) and the catch-up's position (a catch-up
// then merges as soon as its answer reaches covered_from - 1). Without it
// (etcd 3.4) the answer is the store's revision, sent at once: it can
// overtake a replay of history by far, and events already queued on the
// stream (v3rpc/watch.go's sendLoop picks its event or control channel at
// random). So there:
//   - a catch-up's position moves by its events only: it merges once its
//     own watcher delivers an event at covered_from - 1 or later (a
//     watcher's events come in revision order, and every event from
//     covered_from on reaches the live stream too); a quiet range keeps
//     its catch-up open (one more upstream watcher) until such an event,
//     and its subscribers are told no progress meanwhile;
//   - an answer moves P only once the main watch no longer replays history
//     (it started at 0 or after the member's revision, or has delivered an
//     event at that revision or later). P can then be ahead only of events
//     etcd had queued on the stream when it answered -- the bound etcd 3.4
//     gives its own clients. Before that, answers raise only `fresh_rev`
//     (RangeStatus), a freshness hint.
// Failover: when the upstream stream fails, the next Tick() re-creates it
// right after the newest event received, on the then-current endpoint;
// events at or below it are dropped as repeats, so nothing is lost or
// duplicated.
//
// Compaction: the window may replay revisions the member has compacted
// since (the events are exact); a start older than the window goes to the
// member, which cancels it as compacted.
//
// Freshness: answers to progress requests tell the range that the cluster's
// state at the moment the request was sent is reflected up to `fresh_rev`
// (P on an ordered member); that moment is `fresh_at`. Subscribers see both
// through OnStatus.
//
// Thread-safety: all public methods are safe to call concurrently.
// Subscriber callbacks run with the range's lock held: they must be quick
// and must not call back into the range. Lock order: WatchRange::mu_ ->
// subscriber locks.
#ifndef SYNOD_PROXY_WATCH_RANGE_H_
#define SYNOD_PROXY_WATCH_RANGE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <utility>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "proto/kv.pb.h"
#include "proto/rpc.pb.h"
#include "proxy/proxy_metrics.h"
#include "proxy/upstream.h"

namespace synod::proxy {

// What a subscriber learns about the range's upstream state.
struct RangeStatus {
  // Every event <= progress was delivered (to live subscribers), safe to
  // tell clients (progress notifies and answers). Against etcd 3.4 (see
  // "Progress answers") events it had queued on the stream when it answered
  // may still follow, as they may for etcd's own clients.
  int64_t progress = 0;
  absl::Time fresh_at = absl::InfinitePast();
  bool healthy = false;  // the upstream watch is up
  // The newest revision the member answered a progress request of the
  // live stream with, when above `progress` (else 0): against etcd 3.4
  // while it still replays history to the range's watch (a start in the
  // past, a resumed stream). For freshness checks (RangeCache) only, never
  // to be told to a client. Use FreshRev().
  int64_t fresh_rev = 0;
  int64_t FreshRev() const { return progress > fresh_rev ? progress : fresh_rev; }
};

class RangeSubscriber {
 public:
  virtual ~RangeSubscriber() = default;
  // The subscription is set up; `header.revision` is the revision the
  // watcher starts after (for start 0) or the newest known revision.
  virtual void OnCreated(const etcdserverpb::ResponseHeader& header) = 0;
  // Events (each with prev_kv when the member had one) of whole revisions,
  // in order, never before the subscriber's start. Returns false when the
  // subscriber cannot take them: it is then removed and gets OnCanceled.
  virtual bool OnEvents(const std::vector<const mvccpb::Event*>& events,
                        const etcdserverpb::ResponseHeader& header) = 0;
  // Progress and health changed (only sent to live subscribers).
  virtual void OnStatus(const RangeStatus& status) {}
  // The range dropped the subscriber: compacted (compact_revision > 0),
  // too slow, or the member refused the watch.
  virtual void OnCanceled(int64_t compact_revision, const std::string& reason,
                          const etcdserverpb::ResponseHeader& header) = 0;
};

struct WatchRangeOptions {
  size_t window_events = 4096;       // events kept, at most
  size_t window_bytes = 8 << 20;     // bytes of events kept, at most
  // How often a range with a freshness-needing subscriber asks the member
  // for progress.
  absl::Duration progress_interval = absl::Milliseconds(250);
  // How long to wait before re-creating a failed upstream stream.
  absl::Duration retry_interval = absl::Milliseconds(100);
};

// Reason sent with a slow watcher's cancel.
inline constexpr char kSlowWatcherReason[] =
    "synod-proxy: watcher canceled, the client is too slow to keep up";

class WatchRange : public std::enable_shared_from_this<WatchRange> {
 public:
  // `upstream`, `clock` and `metrics` (may be null) outlive the range.
  WatchRange(std::string key, std::string range_end, Upstream* upstream,
             common::Clock* clock, WatchRangeOptions options,
             ProxyMetrics* metrics);
  ~WatchRange();

  // Adds a subscriber starting at `start_revision` (0 = now). Returns a
  // handle (> 0) for Unsubscribe, or 0 if the range is closed (make a new
  // one). `needs_fresh`: keep asking the member for progress while it is
  // subscribed (cache entries). OnCreated may run before this returns.
  uint64_t Subscribe(std::shared_ptr<RangeSubscriber> sub,
                     int64_t start_revision, bool needs_fresh);
  // Removes a subscriber; after it returns, no callback of it runs.
  // Unknown handles are ignored.
  void Unsubscribe(uint64_t handle);
  // Asks the member for progress now (a client's progress request, or a
  // linearizable read waiting for the range to catch up). `answered`, if
  // set, runs once the answer has been applied (so subscribers' FreshRev()
  // is at least the member's revision when it answered, and so is their
  // progress unless an unordered member still replays history to the
  // watch; see "Progress answers"), or at once if the
  // upstream watch is not up, or when the stream fails first. It runs with
  // the range's lock held (like subscriber callbacks).
  void RequestProgress(std::function<void()> answered = nullptr);
  // Timer work: reconnects, catch-up and freshness progress requests.
  // Returns true when the range has had no subscriber for `linger`.
  bool Tick(absl::Duration linger);
  // Closes the range if it has no subscriber; returns whether it did.
  // A closed range refuses Subscribe and keeps no upstream stream.
  bool CloseIfIdle();

  const std::string& key() const { return key_; }
  const std::string& range_end() const { return range_end_; }
  RangeStatus Status() const;
  // For tests: the window's first covered revision and its event count.
  int64_t TEST_covered_from() const;
  size_t TEST_window_events() const;
  size_t TEST_subscribers() const;

 private:
  // These name mu_ in their lock-order annotations (ABSL_ACQUIRED_BEFORE /
  // _AFTER): WatchHub::mu_ and WatchProxy::mu_ come before it,
  // RangeCache::mu_ after it.
  friend class WatchHub;
  friend class WatchProxy;
  friend class RangeCache;

  enum class SubState { kPending, kWaitCatchUp, kCatchUp, kLive };
  struct Sub {
    std::shared_ptr<RangeSubscriber> s;
    int64_t start = 0;
    int64_t next_rev = 0;
    SubState state = SubState::kPending;
    bool needs_fresh = false;
  };
  struct Batch {
    int64_t rev;
    std::vector<mvccpb::Event> events;
    size_t bytes;
  };
  // One upstream stream and what we know of it.
  struct Stream {
    std::shared_ptr<UpstreamWatch> watch;
    uint64_t gen = 0;
    bool created = false;
    bool up = false;          // created and not closed
    // The member said its progress answers are ordered (see above); false
    // until its initial metadata is in.
    bool ordered = false;
    // Main only: the member's revision when it created a watch that starts
    // in the past, until an event at or after it arrives (0: none, or done).
    int64_t replay_until = 0;
    int64_t start = 0;
    int64_t progress = 0;     // catch-up only
    // Progress requests in flight: when sent, and who waits for the answer.
    std::deque<std::pair<absl::Time, std::function<void()>>> progress_sent;
    etcdserverpb::WatchResponse frag;  // fragments being joined
    bool has_frag = false;
  };

  void OpenMainLocked(int64_t start) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OpenCatchUpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<UpstreamWatch> OpenLocked(Stream* st, int64_t start)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnResponse(uint64_t gen, const etcdserverpb::WatchResponse& r);
  void OnMetadata(uint64_t gen, bool ordered_progress);
  void OnClosed(uint64_t gen, const grpc::Status& s);
  // A whole (defragmented) response of the main stream / catch-up stream.
  void OnMainResponseLocked(const etcdserverpb::WatchResponse& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnCatchUpResponseLocked(const etcdserverpb::WatchResponse& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Places a pending subscriber: window replay or catch-up.
  void ResolveLocked(uint64_t handle, Sub* sub)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Delivers events >= sub->next_rev from `batches`; false if refused.
  bool DeliverLocked(Sub* sub, const std::vector<const Batch*>& batches,
                     const etcdserverpb::ResponseHeader& header)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Splits a response's events into whole revisions newer than `after`.
  static std::vector<Batch> ToBatches(const etcdserverpb::WatchResponse& r,
                                      int64_t after);
  void TryMergeCatchUpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseCatchUpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RangeStatus StatusLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelSubsLocked(const std::vector<uint64_t>& handles,
                        int64_t compact_revision, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BroadcastStatusLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TrimWindowLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  etcdserverpb::ResponseHeader HeaderLocked(int64_t revision) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetStreamUpLocked(Stream* st, bool up)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveSubLocked(uint64_t handle) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the waiters of every progress request in flight on `st` (one of
  // main_ and catchup_), with the lock held as RequestProgress promises.
  void FlushProgressWaitersLocked(Stream* st)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string key_, range_end_;
  Upstream* const upstream_;
  common::Clock* const clock_;
  const WatchRangeOptions options_;
  ProxyMetrics* const metrics_;

  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_gen_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Sub> subs_ ABSL_GUARDED_BY(mu_);
  size_t fresh_subs_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time idle_since_ ABSL_GUARDED_BY(mu_);

  Stream main_ ABSL_GUARDED_BY(mu_);
  bool main_open_ ABSL_GUARDED_BY(mu_) = false;  // a stream exists
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool have_progress_ ABSL_GUARDED_BY(mu_) = false;
  int64_t progress_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t covered_from_ ABSL_GUARDED_BY(mu_) = 0;
  // The newest event revision received: events at or below it are repeats
  // (after a reconnect), and a new stream resumes right after it. Kept
  // apart from progress_ so that a member that answers progress requests
  // ahead of its queued events (etcd 3.4) cannot make us drop events.
  int64_t last_event_rev_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t known_rev_ ABSL_GUARDED_BY(mu_) = 0;  // newest header revision
  // The newest answer to a progress request of the main stream (RangeStatus
  // fresh_rev).
  int64_t answered_rev_ ABSL_GUARDED_BY(mu_) = 0;
  etcdserverpb::ResponseHeader header_ ABSL_GUARDED_BY(mu_);
  absl::Time fresh_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_progress_request_ ABSL_GUARDED_BY(mu_) =
      absl::InfinitePast();
  std::deque<Batch> window_ ABSL_GUARDED_BY(mu_);
  size_t window_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t window_count_ ABSL_GUARDED_BY(mu_) = 0;  // events in window_

  Stream catchup_ ABSL_GUARDED_BY(mu_);
  bool catchup_open_ ABSL_GUARDED_BY(mu_) = false;
  bool catchup_retry_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_WATCH_RANGE_H_
