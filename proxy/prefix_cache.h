// PrefixCache: the proxy's in-memory MVCC of a few key prefixes
// (--cache-prefixes), so that thousands of clients reading and watching
// their own keys under a prefix cost the cluster ONE upstream watch per
// prefix (issue 15; the design etcd #7624 proposed and Kubernetes'
// apiserver watch cache uses).
//
// Loading. Each prefix is read once, as the proxy (ProxyIdentity), by a
// paginated linearizable Range: the first page learns revision R, the next
// pages read at R. It is then kept current by one subscription to the
// prefix's shared WatchRange (WatchHub) from R + 1, with prev_kv: that
// range holds the one upstream watch, joins fragments, and on failover
// resumes right after the last event received (no loss, no duplicate).
//
// The MVCC. Per key, the versions with revision in the window, and below
// them the key's newest version at the window start W; plus the window's
// event log (whole revisions, with prev_kv). The state at every revision in
// [W, rev] is known, rev being the newest revision the cache has reached
// (its load revision, its newest event, or the member's watch progress).
// The log is bounded by `window_events`; trimming it raises W. A
// compaction made through this proxy (NoteCompaction) raises W to it.
//
// Ranges (Range()), for any key or sub-range inside a live prefix:
//   - revision 0, serializable: served when the prefix watch is up, its
//     last progress answer was asked within `serializable_bound`, and the
//     cache reached every revision written through this proxy
//     (read-your-writes); else it waits for that (asking progress) up to
//     `linearizable_wait`, then forwards.
//   - revision 0, linearizable: the caller's permission from
//     PermissionCache::Check (a decision kept per token and range), and
//     the cluster's revision Rq from the prefix's shared quorum read
//     (Upstream::CurrentRevision of the prefix key, as the proxy): one in
//     flight per prefix, and a read uses only one that started after it
//     arrived (reads arriving meanwhile wait for the next, started when it
//     returns), so thousands of concurrent reads cost about two member
//     reads. Served once the cache reached Rq (KEP-2340), asking the member
//     for progress if needed; forwarded after `linearizable_wait`. If the
//     shared read fails, the read probes as before: a count-only quorum
//     read with the caller's token over the caller's range.
//   - revision r > 0 with W <= r <= rev (and not below a compaction seen):
//     served from the history once the caller may read the range; other
//     revisions are forwarded (the member answers compacted / future).
// keys_only, count_only, limit, sort and the revision filters follow
// etcd's rules (common/etcd_range.h), as RangeCache.
//
// Watches (Subscribe()), for any key or sub-range inside a live prefix,
// from start 0 or any start > W: replayed from the log, then live, with no
// upstream call. A start at or below W is not served here (the caller uses
// the WatchHub, whose catch-up asks the member). The caller checks the
// client's permission before subscribing (WatchProxy does). Subscribers
// are RangeSubscribers, called as WatchRange calls them (whole revisions,
// in order; OnEvents returning false cancels them as too slow).
//
// Compactions made directly on a member. Every
// `compaction_check_interval` (on Tick) each live prefix sends one
// count-only serializable Range of its key, as the proxy, at revision
// L = max(W, compaction mark). If the member answers compacted, a binary
// search in (L, rev] (at most `compaction_check_probes` more probes)
// finds the compaction revision C (or a revision above it when the probes
// run out: forwarding more than needed is safe), and the compaction mark
// of every prefix is raised to C as NoteCompaction does: reads below C
// are forwarded (the member answers compacted) and watch starts below C
// take the per-range path (the member cancels them as compacted).
//
// Compaction and errors. If the prefix watch is canceled as compacted (it
// resumed after a failover past a compaction), every watcher of the prefix
// is canceled with that compact_revision, as a member cancels a watcher
// that fell behind a compaction, and the prefix reloads. If it is refused,
// its watchers are canceled with the member's reason and the load is
// retried with backoff.
//
// Memory. The bytes of a prefix (keys, values, history, log, overhead) are
// bounded by `max_prefix_bytes`, and all prefixes together by
// `max_total_bytes`. A prefix that outgrows them (at load or later) drops
// its data and falls back: Range() and Subscribe() decline it (the caller
// uses the per-range RangeCache and WatchHub, as without this cache), its
// existing watchers stay live on the prefix watch, it is logged and the
// prefix's fallback gauge is 1; the load is retried after a backoff
// (`retry_min` doubling to `retry_max`) and serving resumes when it fits.
//
// Thread-safety: safe for concurrent use. Range() callbacks run with no
// lock held; subscriber callbacks run with the cache's lock held (as a
// WatchRange runs them) and must not call back into the cache. Lock order:
// WatchRange::mu_ -> PrefixCache::mu_ -> subscriber locks.
#ifndef SYNOD_PROXY_PREFIX_CACHE_H_
#define SYNOD_PROXY_PREFIX_CACHE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "proxy/permission_cache.h"
#include "proxy/watch_hub.h"

namespace synod::proxy {

struct PrefixCacheOptions {
  size_t max_prefix_bytes = size_t{256} << 20;  // per prefix (> 0)
  size_t max_total_bytes = size_t{1} << 30;     // all prefixes (> 0)
  // Events kept in each prefix's window log (> 0).
  size_t window_events = 100000;
  // Keys per page of a load (> 0).
  int64_t page_keys = 1000;
  absl::Duration serializable_bound = absl::Seconds(1);
  absl::Duration linearizable_wait = absl::Milliseconds(500);
  // Backoff of a failed or over-budget load.
  absl::Duration retry_min = absl::Seconds(1);
  absl::Duration retry_max = absl::Seconds(60);
  // How often a live prefix checks for a compaction made directly on a
  // member (> 0), and the most probes one check may add to find its
  // revision (>= 1).
  absl::Duration compaction_check_interval = absl::Seconds(5);
  int compaction_check_probes = 16;
};

// Splits --cache-prefixes ("/cfg/,/services/"): non-empty prefixes in the
// given order, blanks and duplicates dropped. Errors: InvalidArgument for a
// prefix that contains another one (they would hold the same keys twice).
absl::StatusOr<std::vector<std::string>> ParseCachePrefixes(
    const std::string& flag);

class PrefixCache {
 public:
  using Done = std::function<void(const grpc::Status&,
                                  const etcdserverpb::RangeResponse&)>;
  class Prefix;
  // A watcher's subscription (Subscribe); empty when not served here.
  struct Attachment {
    std::shared_ptr<Prefix> prefix;
    uint64_t handle = 0;
    explicit operator bool() const { return prefix != nullptr; }
  };

  // `prefixes`: upstream (namespaced) key prefixes, as ParseCachePrefixes
  // returns them. `hub`, `upstream`, `perms`, `clock`, `metrics` and
  // `registry` (both may be null) outlive the cache.
  PrefixCache(std::vector<std::string> prefixes, WatchHub* hub,
              Upstream* upstream, PermissionCache* perms,
              common::Clock* clock, PrefixCacheOptions options,
              ProxyMetrics* metrics, common::MetricsRegistry* registry);
  ~PrefixCache();

  // Starts loading every prefix (asynchronously).
  void Start();
  // True when every prefix is live or has fallen back (the first loads
  // are over, successfully or not).
  bool Settled() const;

  // If `req` (upstream keys, made by a client with `token`) lies inside a
  // prefix this cache is responsible for now, answers it (served or
  // forwarded with the caller's token; errors are the member's, e.g.
  // PermissionDenied) by calling `done` exactly once, possibly before
  // returning, and returns true. Returns false, without calling `done`,
  // when the caller must answer it (no such prefix, or it fell back).
  bool Range(const etcdserverpb::RangeRequest& req, const std::string& token,
             Done done);

  // Subscribes `sub` to [key, range_end) (upstream keys; etcd's range_end
  // rules) from `start_revision` (0 = now) when a live prefix holds the
  // range and the start is in its window; OnCreated runs before this
  // returns. Else returns an empty Attachment and `sub` is not called.
  Attachment Subscribe(const std::string& key, const std::string& range_end,
                       std::shared_ptr<RangeSubscriber> sub,
                       int64_t start_revision);
  // Removes a subscription; after it returns no callback of it runs.
  // Unknown or already canceled subscriptions are ignored.
  void Unsubscribe(const Attachment& a);
  // Asks the member for the prefix watch's progress; `answered` runs once
  // the answer reached the subscribers (with a WatchRange's lock held, see
  // WatchRange::RequestProgress), or at once if the watch is not up.
  void RequestProgress(const Attachment& a, std::function<void()> answered);

  // A write through the proxy produced `revision` (read-your-writes).
  void NoteWriteRevision(int64_t revision);
  // A compaction at `revision` succeeded through the proxy: revisions
  // below it are no longer served.
  void NoteCompaction(int64_t revision);
  // Timer work: retries loads, forwards reads that waited too long,
  // checks for compactions made on a member, publishes metrics.
  void Tick();

  // For tests.
  struct PrefixStats {
    bool live = false, fallback = false;
    size_t keys = 0, bytes = 0, subscribers = 0, log_events = 0;
    int64_t window_start = 0, revision = 0;
  };
  PrefixStats TEST_stats(const std::string& prefix) const;

 private:
  class Feed;
  struct Waiter;
  using Completion = std::function<void()>;
  // The cluster's revision, or the error (then the revision is 0).
  using RevisionDone = std::function<void(const grpc::Status&, int64_t)>;
  using Unsub = std::pair<std::shared_ptr<WatchRange>, uint64_t>;

  // The prefix holding [key, range_end), or null.
  std::shared_ptr<Prefix> Find(const std::string& key,
                               const std::string& range_end) const;
  void StartLoad(const std::shared_ptr<Prefix>& p, uint64_t gen);
  void LoadPage(const std::shared_ptr<Prefix>& p, uint64_t gen,
                const std::string& from, int64_t revision);
  // The last page is in: the prefix goes live. Returns whether it needs a
  // new feed (then subscribes it, outside the lock, from load revision + 1).
  bool OnLoadedLocked(Prefix* p, std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SubscribeFeed(const std::shared_ptr<Prefix>& p, int64_t start);
  void Forward(const etcdserverpb::RangeRequest& req, const std::string& token,
               Done done);
  // Linearizable reads: `done` gets the revision of the prefix's shared
  // quorum read, the first one started after this call (no lock held).
  void ReadRevision(const std::shared_ptr<Prefix>& p, RevisionDone done);
  void StartRevisionRead(const std::shared_ptr<Prefix>& p);
  // The per-caller path: a linearizable probe with the caller's token over
  // its range learns the revision and the permission at once.
  void ProbeLinearizable(const std::shared_ptr<Prefix>& p,
                         const etcdserverpb::RangeRequest& req,
                         const std::string& token, Done done);
  // Compaction check: probes revision `at`; `compacted` is the newest
  // revision found compacted (0: none yet), `ok` the oldest found readable
  // (or rev + 1); `left` more probes are allowed. Ends the check with the
  // compaction revision found (0: none).
  void CompactionProbe(const std::shared_ptr<Prefix>& p, int64_t at,
                       int64_t compacted, int64_t ok, int left);
  void EndCompactionCheck(const std::shared_ptr<Prefix>& p,
                          int64_t compact_revision);
  // Revisions below `revision` are compacted: marks every prefix.
  void NoteCompactionLocked(int64_t revision)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A caller found permitted (or checked by its probe): serves `req` once
  // the prefix reached `target` (and is fresh, for serializable reads), or
  // makes it wait.
  void RangePermitted(const std::shared_ptr<Prefix>& p,
                      const etcdserverpb::RangeRequest& req,
                      const std::string& token, Done done, int64_t target);
  void ServeLocked(Prefix* p, const etcdserverpb::RangeRequest& req, Done done,
                   std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ReadyLocked(const Prefix* p, bool serializable, int64_t target) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeLocked(Prefix* p, bool expire, std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Feed callbacks.
  void OnFeedEventsLocked(Prefix* p,
                          const std::vector<const mvccpb::Event*>& events,
                          const etcdserverpb::ResponseHeader& header,
                          std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnFeedStatusLocked(Prefix* p, const RangeStatus& s,
                          std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnFeedCanceledLocked(Prefix* p, int64_t compact_revision,
                            const std::string& reason,
                            const etcdserverpb::ResponseHeader& header,
                            std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The MVCC: trims the log and histories up to `window_start`.
  void TrimLocked(Prefix* p, int64_t window_start)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Over budget: shrinks the log, else drops the data and falls back.
  // Returns whether it fell back.
  bool EnforceBudgetLocked(Prefix* p, std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool OverBudgetLocked(const Prefix* p) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropDataLocked(Prefix* p, std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RetryLaterLocked(Prefix* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropFeedLocked(Prefix* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddBytesLocked(Prefix* p, int64_t delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelAllLocked(Prefix* p, int64_t compact_revision,
                       const std::string& reason,
                       const etcdserverpb::ResponseHeader& header)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(Prefix* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropUnsubscribes();
  static void Run(std::vector<Completion>* cs);

  WatchHub* const hub_;
  Upstream* const upstream_;
  PermissionCache* const perms_;
  common::Clock* const clock_;
  const PrefixCacheOptions options_;
  ProxyMetrics* const metrics_;

  mutable absl::Mutex mu_;
  // One per prefix, fixed at construction (the objects are not replaced).
  std::vector<std::shared_ptr<Prefix>> prefixes_;
  size_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t write_rev_ ABSL_GUARDED_BY(mu_) = 0;
  // Subscriptions of dropped feeds, ended outside any range's lock.
  std::vector<Unsub> unsubs_ ABSL_GUARDED_BY(mu_);
  common::Gauge* cached_prefixes_ = nullptr;  // may be null
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_PREFIX_CACHE_H_
