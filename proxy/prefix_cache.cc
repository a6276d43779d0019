#include "proxy/prefix_cache.h"

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/errors.h"
#include "common/key_range.h"
#include "common/logging.h"
#include "proxy/range_cache.h"

namespace synod::proxy {

using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using etcdserverpb::ResponseHeader;

namespace {

// Bookkeeping counted on top of each version's key and value, and of each
// logged event's encoded size.
constexpr size_t kVersionOverhead = 64;
constexpr size_t kEventOverhead = 32;

// One version of a key: a value, or its deletion.
struct Version {
  int64_t rev = 0;
  bool deleted = false;
  mvccpb::KeyValue kv;  // empty when deleted
};

size_t VersionBytes(const std::string& key, const Version& v) {
  return key.size() + v.kv.value().size() + kVersionOverhead;
}

// The events of one revision, as the member sent them (with prev_kv).
struct LogBatch {
  int64_t rev = 0;
  std::vector<mvccpb::Event> events;
  size_t bytes = 0;
};

// True when [key, end) (etcd's range_end rules) lies in [pk, pend).
bool Inside(const std::string& key, const std::string& end,
            const std::string& pk, const std::string& pend) {
  if (key < pk) return false;
  if (end.empty()) return common::InRange(key, pk, pend);
  if (common::IsOpenEnd(end)) return common::IsOpenEnd(pend);
  return common::IsOpenEnd(pend) || end <= pend;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseCachePrefixes(
    const std::string& flag) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(flag, ',')) {
    std::string p(absl::StripAsciiWhitespace(part));
    if (p.empty() || std::find(out.begin(), out.end(), p) != out.end()) {
      continue;
    }
    out.push_back(p);
  }
  for (const std::string& a : out) {
    for (const std::string& b : out) {
      if (a != b && absl::StartsWith(b, a)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--cache-prefixes: ", b, " is inside ", a));
      }
    }
  }
  return out;
}

// A read waiting for its prefix to reach a revision.
struct PrefixCache::Waiter {
  RangeRequest req;
  std::string token;
  Done done;
  bool serializable = false;
  int64_t target = 0;
  absl::Time deadline;
};

// One cached prefix. Fields are guarded by the cache's mu_.
class PrefixCache::Prefix {
 public:
  enum class State { kRetry, kLoading, kLive, kFallback };
  struct Sub {
    std::shared_ptr<RangeSubscriber> s;
    std::string key, end;
    int64_t next_rev = 0;
  };

  Prefix(std::string k, std::string e) : key(std::move(k)), end(std::move(e)) {}

  const std::string key, end;  // upstream range
  State state = State::kRetry;
  uint64_t gen = 0;        // of the load in progress
  bool settled = false;    // a first load is over (live or not)
  absl::Duration backoff;
  absl::Time retry_at = absl::InfinitePast();

  // A load in progress: its pages so far and its revision.
  std::map<std::string, std::vector<Version>> loading;
  int64_t load_rev = 0;

  // The MVCC: per key its versions (ascending), the newest at or below
  // window_start first; the log of events with revision > window_start.
  std::map<std::string, std::vector<Version>> keys;
  size_t live_keys = 0;
  std::deque<LogBatch> log;
  size_t log_events = 0;
  int64_t base = 0;          // load revision: events at or below are in it
  int64_t window_start = 0;  // W
  int64_t compacted = 0;     // a compaction seen through the proxy
  int64_t rev = 0;           // state known at every revision in [W, rev]
  size_t bytes = 0;

  // The feed (one subscription to the prefix's WatchRange).
  std::shared_ptr<Feed> feed;
  std::shared_ptr<WatchRange> range;
  uint64_t range_handle = 0;
  int64_t seen = 0;      // newest event revision received
  int64_t feed_rev = 0;  // every event at or below it was received
  bool healthy = false;
  // What the watchers were last told (OnStatus).
  int64_t told_rev = -1;
  bool told_healthy = false;
  absl::Time fresh_at = absl::InfinitePast();
  ResponseHeader header;

  // Client watchers, indexed by key (single-key) or kept apart (ranges).
  std::map<uint64_t, Sub> subs;
  std::map<std::string, std::set<uint64_t>> by_key;
  std::set<uint64_t> ranged;
  uint64_t next_handle = 1;
  std::vector<Waiter> waiters;
  // The shared revision read of linearizable reads: whether one is in
  // flight, and the reads that arrived since it started (they wait for
  // the next one).
  bool rev_read_inflight = false;
  std::vector<RevisionDone> rev_read_next;
  // The compaction check: when the next one is due, and whether one runs.
  absl::Time check_at = absl::InfinitePast();
  bool checking = false;

  // Metrics (null without a registry).
  common::Gauge* g_keys = nullptr;
  common::Gauge* g_bytes = nullptr;
  common::Gauge* g_window = nullptr;
  common::Gauge* g_fallback = nullptr;
  common::Counter* c_reads = nullptr;
  common::Counter* c_watches = nullptr;

  bool live() const { return state == State::kLive; }

  ResponseHeader Header() const {
    ResponseHeader h = header;
    h.set_revision(rev);
    return h;
  }

  RangeStatus Status() const { return RangeStatus{feed_rev, fresh_at, healthy}; }

  void Index(uint64_t h, const Sub& s) {
    if (s.end.empty()) {
      by_key[s.key].insert(h);
    } else {
      ranged.insert(h);
    }
  }

  // Removes a subscriber; returns it (null `s` when unknown).
  Sub Remove(uint64_t h) {
    auto it = subs.find(h);
    if (it == subs.end()) return Sub();
    Sub s = std::move(it->second);
    subs.erase(it);
    if (s.end.empty()) {
      auto k = by_key.find(s.key);
      if (k != by_key.end()) {
        k->second.erase(h);
        if (k->second.empty()) by_key.erase(k);
      }
    } else {
      ranged.erase(h);
    }
    return s;
  }

  // Delivers `batches` (ascending) to every subscriber whose range and
  // next revision they concern, one OnEvents per subscriber; returns the
  // handles that refused them.
  std::vector<uint64_t> Deliver(const std::vector<const LogBatch*>& batches,
                                const ResponseHeader& h) {
    std::map<uint64_t, std::vector<const mvccpb::Event*>> per;
    for (const LogBatch* b : batches) {
      for (const mvccpb::Event& e : b->events) {
        auto k = by_key.find(e.kv().key());
        if (k != by_key.end()) {
          for (uint64_t hd : k->second) {
            if (subs[hd].next_rev <= b->rev) per[hd].push_back(&e);
          }
        }
        for (uint64_t hd : ranged) {
          const Sub& s = subs[hd];
          if (s.next_rev <= b->rev &&
              common::InRange(e.kv().key(), s.key, s.end)) {
            per[hd].push_back(&e);
          }
        }
      }
    }
    std::vector<uint64_t> slow;
    for (auto& [hd, evs] : per) {
      Sub& s = subs[hd];
      if (!s.s->OnEvents(evs, h)) {
        slow.push_back(hd);
      } else {
        s.next_rev = evs.back()->kv().mod_revision() + 1;
      }
    }
    return slow;
  }

  // Applies one event to the key histories; returns the byte delta.
  int64_t Apply(const mvccpb::Event& e) {
    const bool del = e.type() == mvccpb::Event::DELETE;
    auto it = keys.find(e.kv().key());
    if (it == keys.end()) {
      if (del) return 0;  // nothing to delete (already trimmed)
      it = keys.emplace(e.kv().key(), std::vector<Version>()).first;
    }
    std::vector<Version>& h = it->second;
    const bool was_live = !h.empty() && !h.back().deleted;
    Version v;
    v.rev = e.kv().mod_revision();
    v.deleted = del;
    if (!del) v.kv = e.kv();
    const int64_t delta = static_cast<int64_t>(VersionBytes(it->first, v));
    h.push_back(std::move(v));
    if (was_live && del) --live_keys;
    if (!was_live && !del) ++live_keys;
    return delta;
  }

  // Drops the versions of `key` no read at or above `w` needs; returns the
  // byte delta.
  int64_t TrimKey(const std::string& k, int64_t w) {
    auto it = keys.find(k);
    if (it == keys.end()) return 0;
    std::vector<Version>& h = it->second;
    size_t i = 0;  // the newest version at or below w
    while (i + 1 < h.size() && h[i + 1].rev <= w) ++i;
    size_t drop = i;
    if (h[i].rev <= w && h[i].deleted) drop = i + 1;
    int64_t delta = 0;
    for (size_t j = 0; j < drop; ++j) {
      delta -= static_cast<int64_t>(VersionBytes(it->first, h[j]));
    }
    h.erase(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(drop));
    if (h.empty()) keys.erase(it);
    return delta;
  }

  // The live key-values in [k, e) at revision `at`, in key order.
  std::vector<const mvccpb::KeyValue*> At(const std::string& k,
                                          const std::string& e,
                                          int64_t at) const {
    std::vector<const mvccpb::KeyValue*> out;
    auto visit = [&](const std::vector<Version>& h) {
      const Version* found = nullptr;
      for (const Version& v : h) {
        if (v.rev > at) break;
        found = &v;
      }
      if (found != nullptr && !found->deleted) out.push_back(&found->kv);
    };
    if (e.empty()) {
      auto it = keys.find(k);
      if (it != keys.end()) visit(it->second);
      return out;
    }
    for (auto it = keys.lower_bound(k);
         it != keys.end() && (common::IsOpenEnd(e) || it->first < e); ++it) {
      visit(it->second);
    }
    return out;
  }
};

// The prefix's subscription to its WatchRange. Callbacks run with the
// range's lock held; a feed that is no longer its prefix's is ignored.
class PrefixCache::Feed final : public RangeSubscriber {
 public:
  Feed(PrefixCache* c, Prefix* p) : c_(c), p_(p) {}

  void OnCreated(const ResponseHeader& h) override {
    absl::MutexLock l(&c_->mu_);
    if (p_->feed.get() == this && h.cluster_id() != 0) p_->header = h;
  }
  bool OnEvents(const std::vector<const mvccpb::Event*>& events,
                const ResponseHeader& h) override {
    std::vector<Completion> out;
    {
      absl::MutexLock l(&c_->mu_);
      if (p_->feed.get() == this) c_->OnFeedEventsLocked(p_, events, h, &out);
    }
    Run(&out);
    return true;
  }
  void OnStatus(const RangeStatus& s) override {
    std::vector<Completion> out;
    {
      absl::MutexLock l(&c_->mu_);
      if (p_->feed.get() == this) c_->OnFeedStatusLocked(p_, s, &out);
    }
    Run(&out);
  }
  void OnCanceled(int64_t compact_revision, const std::string& reason,
                  const ResponseHeader& h) override {
    std::vector<Completion> out;
    {
      absl::MutexLock l(&c_->mu_);
      if (p_->feed.get() == this) {
        c_->OnFeedCanceledLocked(p_, compact_revision, reason, h, &out);
      }
    }
    Run(&out);
  }

 private:
  PrefixCache* const c_;
  Prefix* const p_;
};

PrefixCache::PrefixCache(std::vector<std::string> prefixes, WatchHub* hub,
                         Upstream* upstream, PermissionCache* perms,
                         common::Clock* clock, PrefixCacheOptions options,
                         ProxyMetrics* metrics,
                         common::MetricsRegistry* registry)
    : hub_(hub),
      upstream_(upstream),
      perms_(perms),
      clock_(clock),
      options_(options),
      metrics_(metrics) {
  if (registry != nullptr) {
    cached_prefixes_ = registry->GetGauge(
        "synod_proxy_cached_prefixes",
        "Prefixes of --cache-prefixes served from the proxy's prefix cache.");
  }
  for (const std::string& pre : prefixes) {
    auto p = std::make_shared<Prefix>(pre, common::PrefixEnd(pre));
    p->backoff = options_.retry_min;
    if (registry != nullptr) {
      const common::MetricLabels l = {{"prefix", pre}};
      p->g_keys = registry->GetGauge("synod_proxy_prefix_cache_keys",
                                     "Live keys held by the prefix cache.", l);
      p->g_bytes = registry->GetGauge(
          "synod_proxy_prefix_cache_bytes",
          "Bytes held by the prefix cache (keys, values, history, window).",
          l);
      p->g_window = registry->GetGauge(
          "synod_proxy_prefix_cache_window_revisions",
          "Revisions of history the prefix cache can serve (rev - window "
          "start).",
          l);
      p->g_fallback = registry->GetGauge(
          "synod_proxy_prefix_cache_fallback",
          "1 while the prefix is over its memory budget (or cannot load) "
          "and served per range.",
          l);
      p->c_reads = registry->GetCounter(
          "synod_proxy_prefix_cache_reads_total",
          "Range requests served from the prefix cache.", l);
      p->c_watches = registry->GetCounter(
          "synod_proxy_prefix_cache_watches_total",
          "Client watchers served from the prefix cache.", l);
    }
    prefixes_.push_back(std::move(p));
  }
}

PrefixCache::~PrefixCache() {
  {
    absl::MutexLock l(&mu_);
    for (auto& p : prefixes_) {
      ++p->gen;
      DropFeedLocked(p.get());
    }
  }
  DropUnsubscribes();
}

void PrefixCache::Run(std::vector<Completion>* cs) {
  for (auto& c : *cs) c();
  cs->clear();
}

void PrefixCache::Start() {
  std::vector<std::pair<std::shared_ptr<Prefix>, uint64_t>> load;
  {
    absl::MutexLock l(&mu_);
    for (auto& p : prefixes_) {
      p->state = Prefix::State::kLoading;
      load.emplace_back(p, ++p->gen);
      PublishLocked(p.get());
    }
  }
  for (auto& [p, gen] : load) StartLoad(p, gen);
}

bool PrefixCache::Settled() const {
  absl::MutexLock l(&mu_);
  for (const auto& p : prefixes_) {
    if (!p->settled) return false;
  }
  return true;
}

std::shared_ptr<PrefixCache::Prefix> PrefixCache::Find(
    const std::string& key, const std::string& range_end) const {
  for (const auto& p : prefixes_) {
    if (Inside(key, range_end, p->key, p->end)) return p;
  }
  return nullptr;
}

// ---- loading ----

void PrefixCache::StartLoad(const std::shared_ptr<Prefix>& p, uint64_t gen) {
  SYNOD_LOG(INFO) << "synod-proxy: loading cached prefix " << p->key;
  LoadPage(p, gen, p->key, 0);
}

void PrefixCache::LoadPage(const std::shared_ptr<Prefix>& p, uint64_t gen,
                           const std::string& from, int64_t revision) {
  RangeRequest r;
  r.set_key(from);
  r.set_range_end(p->end);
  r.set_limit(options_.page_keys);
  r.set_revision(revision);  // 0 for the first page: the current revision
  upstream_->Range(r, CallAs::Proxy(), [this, p, gen](const grpc::Status& s,
                                                       const RangeResponse&
                                                           resp) {
    std::vector<Completion> out;
    bool next = false, subscribe = false;
    std::string from;
    int64_t rev = 0;
    {
      absl::MutexLock l(&mu_);
      if (p->gen != gen || p->state != Prefix::State::kLoading) return;
      if (!s.ok()) {
        SYNOD_LOG(WARNING) << "synod-proxy: cannot load cached prefix "
                           << p->key << ": " << s.error_message()
                           << " (with auth on, the proxy's --user needs READ "
                              "on it); served per range until a retry loads "
                              "it";
        const bool compacted = common::IsErr(common::FromGrpcStatus(s),
                                             common::EtcdError::kCompacted);
        DropDataLocked(p.get(), &out);
        p->state = Prefix::State::kRetry;
        p->settled = true;
        if (compacted) {
          p->retry_at = clock_->Now();  // read again at a newer revision
        } else {
          RetryLaterLocked(p.get());
        }
        PublishLocked(p.get());
      } else {
        if (p->loading.empty() && p->load_rev == 0) {
          p->load_rev = resp.header().revision();
          if (resp.header().cluster_id() != 0) p->header = resp.header();
        }
        for (const mvccpb::KeyValue& kv : resp.kvs()) {
          Version v;
          v.rev = kv.mod_revision();
          v.kv = kv;
          AddBytesLocked(p.get(),
                         static_cast<int64_t>(VersionBytes(kv.key(), v)));
          p->loading[kv.key()].push_back(std::move(v));
        }
        if (!EnforceBudgetLocked(p.get(), &out)) {
          if (resp.more() && resp.kvs_size() > 0) {
            next = true;
            from = resp.kvs(resp.kvs_size() - 1).key() + std::string(1, '\0');
            rev = p->load_rev;
          } else {
            subscribe = OnLoadedLocked(p.get(), &out);
            rev = p->base + 1;
          }
        }
      }
    }
    Run(&out);
    if (next) LoadPage(p, gen, from, rev);
    if (subscribe) SubscribeFeed(p, rev);
  });
}

bool PrefixCache::OnLoadedLocked(Prefix* p, std::vector<Completion>* out) {
  p->keys.swap(p->loading);
  p->loading.clear();
  p->live_keys = p->keys.size();
  p->base = p->load_rev;
  p->load_rev = 0;
  p->window_start = p->base;
  const bool need_feed = p->feed == nullptr;
  if (need_feed) {
    p->seen = p->feed_rev = p->base;
    p->healthy = false;
  }
  // Events the feed brought while loading: those after the load apply.
  std::deque<LogBatch> buffered;
  buffered.swap(p->log);
  p->log_events = 0;
  for (LogBatch& b : buffered) {
    if (b.rev <= p->base) {
      AddBytesLocked(p, -static_cast<int64_t>(b.bytes));
      continue;
    }
    for (const mvccpb::Event& e : b.events) AddBytesLocked(p, p->Apply(e));
    p->log_events += b.events.size();
    p->log.push_back(std::move(b));
  }
  p->rev = std::max(p->base, p->feed_rev);
  p->state = Prefix::State::kLive;
  p->check_at = clock_->Now() + options_.compaction_check_interval;
  p->settled = true;
  p->backoff = options_.retry_min;
  SYNOD_LOG(INFO) << "synod-proxy: cached prefix " << p->key << " is live: "
                  << p->live_keys << " keys at revision " << p->base;
  if (!EnforceBudgetLocked(p, out)) WakeLocked(p, false, out);
  PublishLocked(p);
  return need_feed && p->live();
}

void PrefixCache::SubscribeFeed(const std::shared_ptr<Prefix>& p,
                                int64_t start) {
  std::shared_ptr<Feed> feed;
  {
    absl::MutexLock l(&mu_);
    if (!p->live() || p->feed != nullptr) return;
    feed = std::make_shared<Feed>(this, p.get());
    p->feed = feed;
  }
  // Callbacks (OnCreated, a replay, OnStatus) may run before it returns.
  auto [range, handle] =
      hub_->Subscribe(p->key, p->end, feed, start, /*needs_fresh=*/true);
  {
    absl::MutexLock l(&mu_);
    if (p->feed == feed) {
      p->range = range;
      p->range_handle = handle;
      return;
    }
    unsubs_.emplace_back(range, handle);
  }
  DropUnsubscribes();
}

// ---- the feed ----

void PrefixCache::OnFeedEventsLocked(
    Prefix* p, const std::vector<const mvccpb::Event*>& events,
    const ResponseHeader& header, std::vector<Completion>* out) {
  if (header.cluster_id() != 0) p->header = header;
  std::vector<LogBatch> batches;
  for (const mvccpb::Event* e : events) {
    const int64_t rev = e->kv().mod_revision();
    if (rev <= p->seen) continue;  // a repeat
    if (batches.empty() || batches.back().rev != rev) {
      batches.push_back(LogBatch{rev, {}, 0});
    }
    batches.back().events.push_back(*e);
    batches.back().bytes += e->ByteSizeLong() + kEventOverhead;
  }
  if (batches.empty()) return;
  p->seen = batches.back().rev;
  p->feed_rev = std::max(p->feed_rev, p->seen);
  // Watchers first (they are live in every state).
  std::vector<const LogBatch*> ptrs;
  for (const LogBatch& b : batches) ptrs.push_back(&b);
  if (p->live()) p->rev = std::max(p->rev, p->feed_rev);
  const ResponseHeader h = header.cluster_id() != 0 ? header : p->Header();
  for (uint64_t hd : p->Deliver(ptrs, h)) {
    Prefix::Sub s = p->Remove(hd);
    if (metrics_ != nullptr) metrics_->slow_canceled->Inc();
    s.s->OnCanceled(0, kSlowWatcherReason, h);
  }
  if (p->live()) {
    for (LogBatch& b : batches) {
      if (b.rev <= p->base) continue;
      for (const mvccpb::Event& e : b.events) AddBytesLocked(p, p->Apply(e));
      AddBytesLocked(p, static_cast<int64_t>(b.bytes));
      p->log_events += b.events.size();
      p->log.push_back(std::move(b));
    }
    p->rev = std::max(p->rev, p->feed_rev);
    while (p->log_events > options_.window_events) {
      TrimLocked(p, p->log.front().rev);
    }
  } else if (p->state == Prefix::State::kLoading) {
    for (LogBatch& b : batches) {  // applied when the load is in
      AddBytesLocked(p, static_cast<int64_t>(b.bytes));
      p->log_events += b.events.size();
      p->log.push_back(std::move(b));
    }
  }
  if (!EnforceBudgetLocked(p, out) && p->live()) WakeLocked(p, false, out);
  PublishLocked(p);
}

void PrefixCache::OnFeedStatusLocked(Prefix* p, const RangeStatus& s,
                                     std::vector<Completion>* out) {
  p->healthy = s.healthy;
  p->fresh_at = std::max(p->fresh_at, s.fresh_at);
  p->feed_rev = std::max(p->feed_rev, s.progress);
  if (p->live()) p->rev = std::max(p->rev, p->feed_rev);
  // Watchers learn the progress (for progress requests and notifies) when
  // it moved since they were last told: at most once per answer, not per
  // event.
  if (p->feed_rev != p->told_rev || p->healthy != p->told_healthy) {
    p->told_rev = p->feed_rev;
    p->told_healthy = p->healthy;
    const RangeStatus st = p->Status();
    for (auto& [h, sub] : p->subs) sub.s->OnStatus(st);
  }
  if (p->live()) WakeLocked(p, false, out);
  PublishLocked(p);
}

void PrefixCache::OnFeedCanceledLocked(Prefix* p, int64_t compact_revision,
                                       const std::string& reason,
                                       const ResponseHeader& header,
                                       std::vector<Completion>* out) {
  // The range already dropped the feed.
  p->feed = nullptr;
  p->range = nullptr;
  p->healthy = false;
  SYNOD_LOG(WARNING) << "synod-proxy: the watch of cached prefix " << p->key
                     << " was canceled (" << reason
                     << (compact_revision > 0
                             ? absl::StrCat(", compacted at ",
                                            compact_revision)
                             : std::string())
                     << "); reloading";
  ResponseHeader h = header;
  if (h.cluster_id() == 0) h = p->Header();
  CancelAllLocked(p, compact_revision, reason, h);
  DropDataLocked(p, out);
  ++p->gen;
  p->state = Prefix::State::kRetry;
  if (compact_revision > 0) {
    p->compacted = std::max(p->compacted, compact_revision);
    p->retry_at = clock_->Now();  // reload at the next Tick
  } else {
    RetryLaterLocked(p);
  }
  PublishLocked(p);
}

// ---- the MVCC and its budget ----

void PrefixCache::TrimLocked(Prefix* p, int64_t window_start) {
  window_start = std::min(window_start, p->rev);
  if (window_start <= p->window_start) return;
  p->window_start = window_start;
  while (!p->log.empty() && p->log.front().rev <= window_start) {
    LogBatch b = std::move(p->log.front());
    p->log.pop_front();
    p->log_events -= b.events.size();
    AddBytesLocked(p, -static_cast<int64_t>(b.bytes));
    for (const mvccpb::Event& e : b.events) {
      AddBytesLocked(p, p->TrimKey(e.kv().key(), window_start));
    }
  }
}

bool PrefixCache::EnforceBudgetLocked(Prefix* p,
                                      std::vector<Completion>* out) {
  if (!OverBudgetLocked(p)) return false;
  // History is optional: shrink the window first (while live).
  while (OverBudgetLocked(p) && p->live() && !p->log.empty()) {
    TrimLocked(p, p->log.front().rev);
  }
  if (!OverBudgetLocked(p)) return false;
  SYNOD_LOG(WARNING) << "synod-proxy: cached prefix " << p->key << " needs "
                     << p->bytes << " bytes (budget " << options_.max_prefix_bytes
                     << " per prefix, " << options_.max_total_bytes
                     << " in total): served per range until it fits; retry in "
                     << absl::FormatDuration(p->backoff);
  DropDataLocked(p, out);
  ++p->gen;
  p->state = Prefix::State::kFallback;
  p->settled = true;
  RetryLaterLocked(p);
  // Its watchers stay on the feed; without any, the feed goes too.
  if (p->subs.empty()) DropFeedLocked(p);
  PublishLocked(p);
  return true;
}

bool PrefixCache::OverBudgetLocked(const Prefix* p) const {
  return p->bytes > options_.max_prefix_bytes ||
         total_bytes_ > options_.max_total_bytes;
}

void PrefixCache::DropDataLocked(Prefix* p, std::vector<Completion>* out) {
  p->keys.clear();
  p->loading.clear();
  p->log.clear();
  p->log_events = 0;
  p->live_keys = 0;
  p->load_rev = 0;
  AddBytesLocked(p, -static_cast<int64_t>(p->bytes));
  for (Waiter& w : p->waiters) {
    out->push_back([this, w = std::move(w)] { Forward(w.req, w.token, w.done); });
  }
  p->waiters.clear();
}

void PrefixCache::RetryLaterLocked(Prefix* p) {
  p->retry_at = clock_->Now() + p->backoff;
  p->backoff = std::min(p->backoff * 2, options_.retry_max);
}

void PrefixCache::DropFeedLocked(Prefix* p) {
  if (p->range != nullptr) unsubs_.emplace_back(p->range, p->range_handle);
  p->feed = nullptr;
  p->range = nullptr;
  p->healthy = false;
}

void PrefixCache::AddBytesLocked(Prefix* p, int64_t delta) {
  p->bytes = static_cast<size_t>(static_cast<int64_t>(p->bytes) + delta);
  total_bytes_ =
      static_cast<size_t>(static_cast<int64_t>(total_bytes_) + delta);
}

void PrefixCache::CancelAllLocked(Prefix* p, int64_t compact_revision,
                                  const std::string& reason,
                                  const ResponseHeader& header) {
  std::map<uint64_t, Prefix::Sub> subs;
  subs.swap(p->subs);
  p->by_key.clear();
  p->ranged.clear();
  for (auto& [h, s] : subs) s.s->OnCanceled(compact_revision, reason, header);
}

void PrefixCache::PublishLocked(Prefix* p) {
  if (p->g_keys != nullptr) {
    p->g_keys->Set(static_cast<double>(p->live() ? p->live_keys : 0));
    p->g_bytes->Set(static_cast<double>(p->bytes));
    p->g_window->Set(
        static_cast<double>(p->live() ? p->rev - p->window_start : 0));
    p->g_fallback->Set(p->state == Prefix::State::kFallback ||
                               (p->state == Prefix::State::kRetry &&
                                p->settled)
                           ? 1
                           : 0);
  }
  if (cached_prefixes_ != nullptr) {
    size_t live = 0;
    for (const auto& q : prefixes_) live += q->live() ? 1 : 0;
    cached_prefixes_->Set(static_cast<double>(live));
  }
}

void PrefixCache::DropUnsubscribes() {
  std::vector<Unsub> drop;
  {
    absl::MutexLock l(&mu_);
    drop.swap(unsubs_);
  }
  for (auto& [range, handle] : drop) range->Unsubscribe(handle);
}

// ---- reads ----

void PrefixCache::Forward(const RangeRequest& req, const std::string& token,
                          Done done) {
  if (metrics_ != nullptr) metrics_->cache_misses->Inc();
  upstream_->Range(req, CallAs::Client(token), std::move(done));
}

bool PrefixCache::Range(const RangeRequest& req, const std::string& token,
                        Done done) {
  if (req.key().empty()) return false;
  std::shared_ptr<Prefix> p = Find(req.key(), req.range_end());
  if (p == nullptr) return false;
  bool forward;
  {
    absl::MutexLock l(&mu_);
    if (p->state == Prefix::State::kFallback ||
        p->state == Prefix::State::kRetry) {
      return false;  // per range, as without this cache
    }
    // Loading: forwarded as is (ranges cached on their own would cost a
    // watch each, for a prefix about to serve them). A revision the
    // history does not hold: the member answers (compacted, future).
    forward = p->state == Prefix::State::kLoading ||
              (req.revision() > 0 &&
               (req.revision() < std::max(p->window_start, p->compacted) ||
                req.revision() > p->rev));
  }
  if (forward) {
    Forward(req, token, std::move(done));
    return true;
  }
  // The caller's permission (a decision kept per token and range), then
  // for a linearizable read the cluster's revision from the prefix's
  // shared quorum read, started after this read arrived.
  const bool linearizable = req.revision() == 0 && !req.serializable();
  perms_->Check(
      token, req.key(), req.range_end(),
      [this, p, req, token, done, linearizable](const grpc::Status& s,
                                                uint64_t) {
        if (!s.ok()) {
          if (PermissionCache::IsDecision(s)) {
            done(s, RangeResponse());  // refused, as the member
          } else {
            Forward(req, token, done);  // the member will answer
          }
        } else if (!linearizable) {
          RangePermitted(p, req, token, done, 0);
        } else {
          ReadRevision(p, [this, p, req, token, done](const grpc::Status& rs,
                                                      int64_t rev) {
            if (rs.ok()) {
              RangePermitted(p, req, token, done, rev);
            } else {
              ProbeLinearizable(p, req, token, done);
            }
          });
        }
      });
  return true;
}

void PrefixCache::ReadRevision(const std::shared_ptr<Prefix>& p,
                               RevisionDone done) {
  bool start = false;
  {
    absl::MutexLock l(&mu_);
    p->rev_read_next.push_back(std::move(done));
    start = !p->rev_read_inflight;
    p->rev_read_inflight = true;
  }
  if (start) StartRevisionRead(p);
}

// The batch is the reads that arrived before this read started, so its
// revision is at least the cluster's revision when each of them arrived;
// reads arriving while it is in flight wait for the next one, started
// when it returns.
void PrefixCache::StartRevisionRead(const std::shared_ptr<Prefix>& p) {
  auto batch = std::make_shared<std::vector<RevisionDone>>();
  {
    absl::MutexLock l(&mu_);
    batch->swap(p->rev_read_next);
  }
  upstream_->CurrentRevision(
      p->key, [this, p, batch](absl::StatusOr<int64_t> rev) {
        const grpc::Status s = common::ToGrpcStatus(rev.status());
        for (const RevisionDone& cb : *batch) cb(s, rev.ok() ? *rev : 0);
        bool again;
        {
          absl::MutexLock l(&mu_);
          again = !p->rev_read_next.empty();
          p->rev_read_inflight = again;
        }
        if (again) StartRevisionRead(p);
      });
}

void PrefixCache::ProbeLinearizable(const std::shared_ptr<Prefix>& p,
                                    const RangeRequest& req,
                                    const std::string& token, Done done) {
  const uint64_t epoch = perms_->epoch();
  upstream_->Range(
      PermissionCache::Probe(req.key(), req.range_end(),
                             /*serializable=*/false),
      CallAs::Client(token),
      [this, p, req, token, done, epoch](const grpc::Status& s,
                                          const RangeResponse& r) {
        perms_->Record(token, req.key(), req.range_end(), s, epoch);
        if (s.ok()) {
          RangePermitted(p, req, token, done, r.header().revision());
        } else if (PermissionCache::IsDecision(s)) {
          done(s, RangeResponse());
        } else {
          Forward(req, token, done);
        }
      });
}

void PrefixCache::RangePermitted(const std::shared_ptr<Prefix>& p,
                                 const RangeRequest& req,
                                 const std::string& token, Done done,
                                 int64_t target) {
  std::vector<Completion> out;
  std::shared_ptr<WatchRange> ask;
  bool forward = false;
  {
    absl::MutexLock l(&mu_);
    if (!p->live()) {
      forward = true;
    } else if (req.revision() > 0) {
      // A past revision: the history answers if it holds it.
      if (req.revision() >= std::max(p->window_start, p->compacted) &&
          req.revision() <= p->rev) {
        ServeLocked(p.get(), req, done, &out);
      } else {
        forward = true;
      }
    } else {
      if (req.serializable()) target = std::max(target, write_rev_);
      if (ReadyLocked(p.get(), req.serializable(), target)) {
        ServeLocked(p.get(), req, done, &out);
      } else {
        p->waiters.push_back(Waiter{req, token, done, req.serializable(),
                                    target,
                                    clock_->Now() + options_.linearizable_wait});
        ask = p->range;
      }
    }
  }
  Run(&out);
  if (forward) Forward(req, token, std::move(done));
  // Not there yet: ask the member how far the watch is (its answer comes
  // after every event before it).
  if (ask != nullptr) ask->RequestProgress();
}

bool PrefixCache::ReadyLocked(const Prefix* p, bool serializable,
                              int64_t target) const {
  if (!p->live() || !p->healthy || p->rev < target) return false;
  return !serializable ||
         clock_->Now() - p->fresh_at <= options_.serializable_bound;
}

void PrefixCache::WakeLocked(Prefix* p, bool expire,
                             std::vector<Completion>* out) {
  const absl::Time now = clock_->Now();
  auto& ws = p->waiters;
  for (auto it = ws.begin(); it != ws.end();) {
    if (ReadyLocked(p, it->serializable, it->target)) {
      ServeLocked(p, it->req, std::move(it->done), out);
      it = ws.erase(it);
    } else if (expire && it->deadline <= now) {
      out->push_back(
          [this, w = std::move(*it)] { Forward(w.req, w.token, w.done); });
      it = ws.erase(it);
    } else {
      ++it;
    }
  }
}

void PrefixCache::ServeLocked(Prefix* p, const RangeRequest& r, Done done,
                              std::vector<Completion>* out) {
  const int64_t at = r.revision() > 0 ? r.revision() : p->rev;
  // The range's state at `at`, answered by RangeCache's etcd rules.
  std::map<std::string, mvccpb::KeyValue> state;
  for (const mvccpb::KeyValue* kv : p->At(r.key(), r.range_end(), at)) {
    state.emplace_hint(state.end(), kv->key(), *kv);
  }
  auto resp = std::make_shared<RangeResponse>();
  ComputeRange(r, state, resp.get());
  *resp->mutable_header() = p->Header();
  if (p->c_reads != nullptr) p->c_reads->Inc();
  if (metrics_ != nullptr) metrics_->cache_hits->Inc();
  out->push_back([resp, done = std::move(done)] { done(grpc::Status::OK, *resp); });
}

// ---- watches ----

PrefixCache::Attachment PrefixCache::Subscribe(
    const std::string& key, const std::string& range_end,
    std::shared_ptr<RangeSubscriber> sub, int64_t start_revision) {
  std::shared_ptr<Prefix> p = Find(key, range_end);
  if (p == nullptr || key.empty()) return Attachment();
  absl::MutexLock l(&mu_);
  if (!p->live() || start_revision < 0) return Attachment();
  if (start_revision != 0 && (start_revision <= p->window_start ||
                              start_revision < p->compacted)) {
    return Attachment();  // before the window: the member catches it up
  }
  const uint64_t h = p->next_handle++;
  Prefix::Sub& s = p->subs[h];
  s.s = std::move(sub);
  s.key = key;
  s.end = range_end;
  s.next_rev = start_revision == 0 ? p->rev + 1 : start_revision;
  p->Index(h, s);
  if (p->c_watches != nullptr) p->c_watches->Inc();
  const ResponseHeader header = p->Header();
  s.s->OnCreated(header);
  std::vector<const LogBatch*> replay;
  for (const LogBatch& b : p->log) {
    if (b.rev >= s.next_rev) replay.push_back(&b);
  }
  // Deliver() goes to every subscriber: give it only this one.
  std::vector<const mvccpb::Event*> evs;
  for (const LogBatch* b : replay) {
    for (const mvccpb::Event& e : b->events) {
      if (common::InRange(e.kv().key(), s.key, s.end)) evs.push_back(&e);
    }
  }
  if (!evs.empty()) {
    if (metrics_ != nullptr) metrics_->window_replays->Inc();
    if (!s.s->OnEvents(evs, header)) {
      Prefix::Sub gone = p->Remove(h);
      if (metrics_ != nullptr) metrics_->slow_canceled->Inc();
      gone.s->OnCanceled(0, kSlowWatcherReason, header);
      return Attachment{p, h};
    }
    s.next_rev = evs.back()->kv().mod_revision() + 1;
  }
  s.s->OnStatus(p->Status());
  return Attachment{p, h};
}

void PrefixCache::Unsubscribe(const Attachment& a) {
  if (!a) return;
  absl::MutexLock l(&mu_);
  a.prefix->Remove(a.handle);
}

void PrefixCache::RequestProgress(const Attachment& a,
                                  std::function<void()> answered) {
  std::shared_ptr<WatchRange> range;
  if (a) {
    absl::MutexLock l(&mu_);
    range = a.prefix->range;
  }
  if (range != nullptr) {
    range->RequestProgress(std::move(answered));
  } else if (answered) {
    answered();
  }
}

// ---- notes and timer ----

void PrefixCache::NoteWriteRevision(int64_t revision) {
  absl::MutexLock l(&mu_);
  write_rev_ = std::max(write_rev_, revision);
}

void PrefixCache::NoteCompaction(int64_t revision) {
  absl::MutexLock l(&mu_);
  NoteCompactionLocked(revision);
}

void PrefixCache::NoteCompactionLocked(int64_t revision) {
  for (auto& p : prefixes_) {
    p->compacted = std::max(p->compacted, revision);
    if (p->live()) {
      TrimLocked(p.get(), revision - 1);
      PublishLocked(p.get());
    }
  }
}

void PrefixCache::Tick() {
  DropUnsubscribes();
  std::vector<Completion> out;
  std::vector<std::pair<std::shared_ptr<Prefix>, uint64_t>> load;
  // Compaction checks to start: the prefix, its first probe's revision
  // and the search's upper bound.
  std::vector<std::tuple<std::shared_ptr<Prefix>, int64_t, int64_t>> checks;
  {
    absl::MutexLock l(&mu_);
    const absl::Time now = clock_->Now();
    for (auto& p : prefixes_) {
      if (p->live() && !p->checking && now >= p->check_at) {
        p->check_at = now + options_.compaction_check_interval;
        // Revisions from `from` on are served from the window.
        const int64_t from = std::max(p->window_start, p->compacted);
        if (from > 0 && from <= p->rev) {
          p->checking = true;
          checks.emplace_back(p, from, p->rev + 1);
        }
      }
      if ((p->state == Prefix::State::kRetry ||
           p->state == Prefix::State::kFallback) &&
          now >= p->retry_at) {
        p->state = Prefix::State::kLoading;
        load.emplace_back(p, ++p->gen);
      }
      if (p->live()) WakeLocked(p.get(), /*expire=*/true, &out);
      PublishLocked(p.get());
    }
  }
  Run(&out);
  for (auto& [p, gen] : load) StartLoad(p, gen);
  for (auto& [p, from, end] : checks) {
    CompactionProbe(p, from, 0, end, options_.compaction_check_probes);
  }
}

// The member answers a Range below its compaction revision C with
// ErrCompacted and one at or above it normally; the probe reads one key,
// count only, from the member's own store (serializable).
void PrefixCache::CompactionProbe(const std::shared_ptr<Prefix>& p,
                                  int64_t at, int64_t compacted, int64_t ok,
                                  int left) {
  RangeRequest r = PermissionCache::Probe(p->key, "", /*serializable=*/true);
  r.set_revision(at);
  upstream_->Range(r, CallAs::Proxy(), [this, p, at, compacted, ok, left](
                                           const grpc::Status& s,
                                           const RangeResponse&) {
    const bool below = common::IsErr(common::FromGrpcStatus(s),
                                     common::EtcdError::kCompacted);
    if (!s.ok() && !below) {
      // No answer: keep what was found (the next check goes on).
      EndCompactionCheck(p, compacted > 0 ? compacted + 1 : 0);
      return;
    }
    const int64_t bad = below ? at : compacted;
    const int64_t good = below ? ok : at;
    if (bad == 0) {
      EndCompactionCheck(p, 0);  // the window's start is readable
    } else if (good - bad <= 1 || left <= 0) {
      // C is `good`, or at most `good` when the probes ran out.
      EndCompactionCheck(p, good);
    } else {
      CompactionProbe(p, bad + (good - bad) / 2, bad, good, left - 1);
    }
  });
}

void PrefixCache::EndCompactionCheck(const std::shared_ptr<Prefix>& p,
                                     int64_t compact_revision) {
  absl::MutexLock l(&mu_);
  p->checking = false;
  if (compact_revision <= p->compacted) return;
  SYNOD_LOG(WARNING) << "synod-proxy: the cluster was compacted at revision "
                     << compact_revision << " (seen by cached prefix "
                     << p->key
                     << "'s check); older revisions are left to the member";
  NoteCompactionLocked(compact_revision);
}

PrefixCache::PrefixStats PrefixCache::TEST_stats(
    const std::string& prefix) const {
  absl::MutexLock l(&mu_);
  PrefixStats st;
  for (const auto& p : prefixes_) {
    if (p->key != prefix) continue;
    st.live = p->live();
    st.fallback = p->state == Prefix::State::kFallback;
    st.keys = p->live_keys;
    st.bytes = p->bytes;
    st.subscribers = p->subs.size();
    st.log_events = p->log_events;
    st.window_start = p->window_start;
    st.revision = p->rev;
  }
  return st;
}

}  // namespace synod::proxy
