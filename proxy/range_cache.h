// RangeCache: revision-checked cached reads for the proxy.
//
// A range (key, range_end) that clients read is loaded once with a full
// linearizable Range at revision R, then kept current by a subscription to
// the range's shared WatchRange from R + 1 — so every change in the
// cluster updates it, whichever client or member made it (unlike etcd's
// grpc-proxy, whose cache only sees writes that pass through it).
//
// Permissions: one cache serves every user, and nothing is served that the
// caller may not read. A serializable read is served only once the
// PermissionCache says the caller's token may read its exact range; a
// linearizable read learns the cluster's revision by a probe made with the
// caller's token over the caller's range, so the same round trip checks
// its permission (and the decision is kept for serializable reads). A
// refusal is answered with the member's error. The cache itself is loaded
// and kept current as the proxy (ProxyIdentity), and only for ranges a
// permitted caller asked for. Forwarded reads carry the caller's token.
//
// Serving (a Range at the current revision, on exactly a cached range):
//   - serializable: from the cache while it is live: the upstream watch is
//     healthy, the range's last answered progress request was sent within
//     `serializable_bound`, and the cache has reached every revision
//     written through this proxy (read-your-writes). Else forwarded.
//   - linearizable: the proxy learns the cluster's current revision Rq by a
//     quorum read with the caller's token over the caller's range
//     (batched: concurrent reads of one range and token share one, but only
//     one started after they arrived) and serves once the cache has reached
//     Rq (asking the member for watch progress if needed — the design of
//     Kubernetes KEP-2340). Waits longer than `linearizable_wait` are
//     forwarded.
//   "Reached" counts the range's progress answers (RangeStatus::FreshRev):
//   against etcd 3.4, whose answers can overtake events it had queued on
//   the stream, or still had to replay to a watch that started in the
//   past, a read may miss those (DESIGN's ordering bound).
//   - anything else (a past revision) is forwarded.
// keys_only, count_only, limit, sort and the revision filters are computed
// here (ComputeRange) with etcd's rules from common/etcd_range.h, the ones
// the member's store uses.
//
// Memory: an LRU of at most `max_bytes` (keys + values + overhead) and
// `max_ranges` ranges (each holds a range subscription, so this also bounds
// the upstream watches the cache causes).
//
// Thread-safety: safe for concurrent use. `done` callbacks run on gRPC or
// ticker threads, with no lock of the cache held. Lock order:
// WatchRange::mu_ -> RangeCache::mu_.
#ifndef SYNOD_PROXY_RANGE_CACHE_H_
#define SYNOD_PROXY_RANGE_CACHE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "proxy/permission_cache.h"
#include "proxy/watch_hub.h"

namespace synod::proxy {

struct RangeCacheOptions {
  size_t max_bytes = 64 << 20;
  size_t max_ranges = 1024;
  absl::Duration serializable_bound = absl::Seconds(1);
  absl::Duration linearizable_wait = absl::Milliseconds(500);
};

// etcd's Range over `data` (live keys in key order; those outside the
// request's range are skipped): count, revision filters, sort, limit/more,
// keys_only, count_only, as common/etcd_range.h. Sets everything but the
// header.
void ComputeRange(const etcdserverpb::RangeRequest& req,
                  const std::map<std::string, mvccpb::KeyValue>& data,
                  etcdserverpb::RangeResponse* resp);

class RangeCache {
 public:
  using Done = std::function<void(const grpc::Status&,
                                  const etcdserverpb::RangeResponse&)>;

  // `hub`, `upstream`, `perms`, `clock` and `metrics` (may be null)
  // outlive it.
  RangeCache(WatchHub* hub, Upstream* upstream, PermissionCache* perms,
             common::Clock* clock, RangeCacheOptions options,
             ProxyMetrics* metrics);
  ~RangeCache();

  // Answers `req`, made by a client with `token` ("" for none), from the
  // cache or forwards it; calls `done` exactly once (possibly before
  // returning). Errors: the member's, e.g. PermissionDenied "etcdserver:
  // permission denied" when the caller may not read the range.
  void Range(const etcdserverpb::RangeRequest& req, const std::string& token,
             Done done);
  // A write through the proxy produced `revision`: serializable reads wait
  // for the cache to reach it (read-your-writes).
  void NoteWriteRevision(int64_t revision);
  // Forwards linearizable reads that waited too long; drops the
  // subscriptions of evicted ranges.
  void Tick();

  size_t TEST_ranges() const;
  size_t TEST_bytes() const;

 private:
  class Entry;
  struct Waiter {
    int64_t revision;
    etcdserverpb::RangeRequest req;
    std::string token;
    Done done;
    absl::Time deadline;
  };
  using Key = std::pair<std::string, std::string>;
  // (token, key, range_end) of a quorum read.
  using QuorumKey = std::tuple<std::string, std::string, std::string>;
  using QuorumDone = std::function<void(const grpc::Status&, int64_t)>;
  struct QuorumBatch {
    bool inflight = false;
    std::vector<QuorumDone> next;
  };
  using Completion = std::function<void()>;

  void Forward(const etcdserverpb::RangeRequest& req, const std::string& token,
               Done done);
  // Range() once the caller may read (serializable) or will be checked by
  // the quorum read (linearizable).
  void RangePermitted(const etcdserverpb::RangeRequest& req,
                      const std::string& token, Done done);
  // Creates and loads the entry of `k` unless it exists or may not be.
  void MaybeLoad(const Key& k);
  void StartLoad(std::shared_ptr<Entry> e);
  void OnQuorum(const etcdserverpb::RangeRequest& req, const std::string& token,
                Done done, int64_t rev);
  // Serves `req` from `e` now.
  void ServeLocked(Entry* e, const etcdserverpb::RangeRequest& req,
                   std::vector<Completion>* out, Done done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool LinearizableReadyLocked(const Entry* e, int64_t rev) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool SerializableReadyLocked(const Entry* e) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After `e` advanced: serves the waiters it now satisfies.
  void WakeLocked(Entry* e, std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(Entry* e, std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictLocked(std::vector<Completion>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddBytesLocked(Entry* e, int64_t delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropUnsubscribes();
  void QuorumRead(const QuorumKey& k, QuorumDone done);
  void StartQuorum(const QuorumKey& k);
  static void Run(std::vector<Completion>* cs);

  WatchHub* const hub_;
  Upstream* const upstream_;
  PermissionCache* const perms_;
  common::Clock* const clock_;
  const RangeCacheOptions options_;
  ProxyMetrics* const metrics_;

  mutable absl::Mutex mu_;
  std::map<Key, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  std::list<Entry*> lru_ ABSL_GUARDED_BY(mu_);  // front = most recent
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t write_rev_ ABSL_GUARDED_BY(mu_) = 0;
  // Ranges too large to cache (not retried).
  std::set<Key> too_big_ ABSL_GUARDED_BY(mu_);
  // Ranges the proxy's own identity may not load, and the permission
  // epoch when it was refused (not retried before the epoch moves).
  std::map<Key, uint64_t> refused_ ABSL_GUARDED_BY(mu_);
  // Subscriptions of removed entries, dropped outside any range's lock.
  std::vector<std::pair<std::shared_ptr<WatchRange>, uint64_t>> unsubs_
      ABSL_GUARDED_BY(mu_);

  // Quorum-read batching.
  absl::Mutex qmu_ ABSL_ACQUIRED_AFTER(mu_);
  std::map<QuorumKey, QuorumBatch> quorum_ ABSL_GUARDED_BY(qmu_);
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_RANGE_CACHE_H_
