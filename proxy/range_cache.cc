#include "proxy/range_cache.h"

#include <algorithm>

#include "common/etcd_range.h"
#include "common/key_range.h"
#include "common/logging.h"

namespace synod::proxy {

using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using etcdserverpb::ResponseHeader;

namespace {
// Per-key bookkeeping counted on top of key and value bytes.
constexpr size_t kKeyOverhead = 64;
constexpr size_t kMaxTooBig = 1024;

size_t KvBytes(const mvccpb::KeyValue& kv) {
  return kv.key().size() + kv.value().size() + kKeyOverhead;
}
}  // namespace

void ComputeRange(const RangeRequest& r,
                  const std::map<std::string, mvccpb::KeyValue>& data,
                  RangeResponse* resp) {
  std::vector<const mvccpb::KeyValue*> m;
  for (const auto& [k, kv] : data) {
    if (common::InRange(k, r.key(), r.range_end())) m.push_back(&kv);
  }
  const int64_t count = static_cast<int64_t>(m.size());
  auto meta = [](const mvccpb::KeyValue* kv) { return common::MetaOf(*kv); };
  common::FilterByRevision(r, &m, meta);
  common::SortRange(r, &m, meta,
                    [](const mvccpb::KeyValue* kv) -> const std::string& {
                      return kv->value();
                    });
  const size_t n = common::ApplyLimit(r, m.size(), resp);
  resp->set_count(count);
  if (r.count_only()) return;
  for (size_t i = 0; i < n; ++i) {
    mvccpb::KeyValue* kv = resp->add_kvs();
    *kv = *m[i];
    if (r.keys_only()) kv->clear_value();
  }
}

// One cached range: the data, its revision, and its range subscription.
// Fields are guarded by the cache's mu_.
class RangeCache::Entry final : public RangeSubscriber {
 public:
  Entry(RangeCache* cache, Key key) : cache_(cache), key_(std::move(key)) {}

  void OnCreated(const ResponseHeader&) override {}

  bool OnEvents(const std::vector<const mvccpb::Event*>& events,
                const ResponseHeader& header) override {
    std::vector<Completion> out;
    {
      absl::MutexLock l(&cache_->mu_);
      if (removed || !loaded) return true;
      int64_t delta = 0;
      for (const mvccpb::Event* ev : events) {
        if (ev->kv().mod_revision() <= applied) continue;
        auto it = data.find(ev->kv().key());
        if (it != data.end()) {
          delta -= KvBytes(it->second);
          if (ev->type() == mvccpb::Event::DELETE) data.erase(it);
        }
        if (ev->type() == mvccpb::Event::PUT) {
          data[ev->kv().key()] = ev->kv();
          delta += KvBytes(ev->kv());
        }
      }
      applied = std::max(applied, events.back()->kv().mod_revision());
      rev = std::max(rev, applied);
      if (header.cluster_id() != 0) this->header = header;
      cache_->AddBytesLocked(this, delta);
      cache_->WakeLocked(this, &out);
      cache_->EvictLocked(&out);
    }
    Run(&out);
    return true;
  }

  void OnStatus(const RangeStatus& s) override {
    std::vector<Completion> out;
    {
      absl::MutexLock l(&cache_->mu_);
      if (removed) return;
      status = s;
      live = true;
      // FreshRev: against etcd 3.4 the member's answer may be ahead of
      // events still on their way (RangeStatus; DESIGN's ordering bound).
      rev = std::max(rev, s.FreshRev());
      cache_->WakeLocked(this, &out);
    }
    Run(&out);
  }

  void OnCanceled(int64_t, const std::string&,
                  const ResponseHeader&) override {
    std::vector<Completion> out;
    {
      absl::MutexLock l(&cache_->mu_);
      range = nullptr;  // the range already dropped us
      cache_->RemoveLocked(this, &out);
    }
    Run(&out);
  }

  RangeCache* const cache_;
  const Key key_;
  std::map<std::string, mvccpb::KeyValue> data;
  size_t bytes = 0;
  int64_t applied = 0;  // newest revision applied to data
  int64_t rev = 0;      // data is the range's state at this revision
  bool loaded = false, live = false, removed = false;
  RangeStatus status;
  ResponseHeader header;
  std::shared_ptr<WatchRange> range;
  uint64_t handle = 0;
  std::list<Entry*>::iterator lru;
  std::vector<Waiter> waiters;
};

RangeCache::RangeCache(WatchHub* hub, Upstream* upstream,
                       PermissionCache* perms, common::Clock* clock,
                       RangeCacheOptions options, ProxyMetrics* metrics)
    : hub_(hub),
      upstream_(upstream),
      perms_(perms),
      clock_(clock),
      options_(options),
      metrics_(metrics) {}

RangeCache::~RangeCache() {
  std::vector<Completion> out;
  {
    absl::MutexLock l(&mu_);
    while (!lru_.empty()) RemoveLocked(lru_.back(), &out);
  }
  DropUnsubscribes();
}

void RangeCache::Run(std::vector<Completion>* cs) {
  for (auto& c : *cs) c();
  cs->clear();
}

void RangeCache::Forward(const RangeRequest& req, const std::string& token,
                         Done done) {
  if (metrics_ != nullptr) metrics_->cache_misses->Inc();
  upstream_->Range(req, CallAs::Client(token), std::move(done));
}

void RangeCache::Range(const RangeRequest& req, const std::string& token,
                       Done done) {
  DropUnsubscribes();
  if (req.revision() != 0 || req.key().empty()) {
    Forward(req, token, std::move(done));
    return;
  }
  if (!req.serializable()) {
    RangePermitted(req, token, std::move(done));
    return;
  }
  perms_->Check(token, req.key(), req.range_end(),
                [this, req, token, done](const grpc::Status& s, uint64_t) {
                  if (s.ok()) {
                    RangePermitted(req, token, done);
                  } else if (PermissionCache::IsDecision(s)) {
                    done(s, RangeResponse());  // refused, as the member does
                  } else {
                    Forward(req, token, done);  // the member will answer
                  }
                });
}

void RangeCache::RangePermitted(const RangeRequest& req,
                                const std::string& token, Done done) {
  const Key k(req.key(), req.range_end());
  std::vector<Completion> out;
  bool served = false, linearizable = false, load = false;
  {
    absl::MutexLock l(&mu_);
    auto it = entries_.find(k);
    if (it == entries_.end()) {
      // A serializable caller was just found permitted; a linearizable
      // one is, once its forwarded read succeeds.
      load = req.serializable();
    } else {
      Entry* e = it->second.get();
      lru_.splice(lru_.begin(), lru_, e->lru);
      if (req.serializable()) {
        if (SerializableReadyLocked(e)) {
          ServeLocked(e, req, &out, done);
          served = true;
        }
      } else if (e->loaded && e->live) {
        linearizable = true;
      }
    }
  }
  Run(&out);
  if (served) return;
  if (load) MaybeLoad(k);
  if (linearizable) {
    QuorumRead(QuorumKey(token, req.key(), req.range_end()),
               [this, req, token, done](const grpc::Status& s, int64_t rev) {
                 if (s.ok()) {
                   OnQuorum(req, token, done, rev);
                 } else if (PermissionCache::IsDecision(s)) {
                   done(s, RangeResponse());
                 } else {
                   Forward(req, token, done);
                 }
               });
    return;
  }
  if (req.serializable()) {
    Forward(req, token, std::move(done));
    return;
  }
  Forward(req, token,
          [this, k, done](const grpc::Status& s, const RangeResponse& r) {
            if (s.ok()) MaybeLoad(k);
            done(s, r);
          });
}

void RangeCache::MaybeLoad(const Key& k) {
  std::vector<Completion> out;
  std::shared_ptr<Entry> load;
  const uint64_t epoch = perms_->epoch();
  {
    absl::MutexLock l(&mu_);
    auto refused = refused_.find(k);
    if (refused != refused_.end() && refused->second != epoch) {
      refused_.erase(refused);
      refused = refused_.end();
    }
    if (entries_.count(k) > 0 || too_big_.count(k) > 0 ||
        refused != refused_.end()) {
      return;
    }
    load = std::make_shared<Entry>(this, k);
    entries_.emplace(k, load);
    lru_.push_front(load.get());
    load->lru = lru_.begin();
    if (metrics_ != nullptr) {
      metrics_->cache_entries->Set(static_cast<double>(entries_.size()));
    }
    EvictLocked(&out);
  }
  Run(&out);
  StartLoad(load);
}

void RangeCache::NoteWriteRevision(int64_t revision) {
  absl::MutexLock l(&mu_);
  write_rev_ = std::max(write_rev_, revision);
}

void RangeCache::Tick() {
  DropUnsubscribes();
  std::vector<Completion> out;
  {
    absl::MutexLock l(&mu_);
    const absl::Time now = clock_->Now();
    for (auto& [k, e] : entries_) {
      auto& ws = e->waiters;
      for (auto it = ws.begin(); it != ws.end();) {
        if (it->deadline <= now) {
          out.push_back(
              [this, w = std::move(*it)] { Forward(w.req, w.token, w.done); });
          it = ws.erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  Run(&out);
}

size_t RangeCache::TEST_ranges() const {
  absl::MutexLock l(&mu_);
  return entries_.size();
}
size_t RangeCache::TEST_bytes() const {
  absl::MutexLock l(&mu_);
  return bytes_;
}

void RangeCache::StartLoad(std::shared_ptr<Entry> e) {
  RangeRequest full;
  full.set_key(e->key_.first);
  full.set_range_end(e->key_.second);
  const uint64_t epoch = perms_->epoch();
  upstream_->Range(full, CallAs::Proxy(), [this, e, epoch](
                                              const grpc::Status& s,
                                              const RangeResponse& resp) {
    std::vector<Completion> out;
    {
      absl::MutexLock l(&mu_);
      if (e->removed) return;
      size_t bytes = 0;
      for (const auto& kv : resp.kvs()) bytes += KvBytes(kv);
      if (!s.ok() || bytes > options_.max_bytes / 2) {
        if (s.ok()) {
          if (too_big_.size() >= kMaxTooBig) too_big_.clear();
          too_big_.insert(e->key_);
        } else if (PermissionCache::IsDecision(s) || NeedsReauth(s)) {
          // The proxy's own user may not read it (or has no token yet):
          // reads of it are forwarded until the auth state moves.
          if (refused_.size() >= kMaxTooBig) refused_.clear();
          refused_[e->key_] = epoch;
          SYNOD_LOG(WARNING)
              << "synod-proxy's user cannot read the range it caches ["
              << e->key_.first << ", " << e->key_.second
              << "): " << s.error_message()
              << " (grant it READ on every range clients read)";
        }
        RemoveLocked(e.get(), &out);
      } else {
        for (const auto& kv : resp.kvs()) e->data.emplace(kv.key(), kv);
        e->rev = e->applied = resp.header().revision();
        e->header = resp.header();
        e->loaded = true;
        AddBytesLocked(e.get(), static_cast<int64_t>(bytes));
        EvictLocked(&out);
      }
    }
    Run(&out);
    if (!s.ok()) return;
    auto [range, handle] = hub_->Subscribe(e->key_.first, e->key_.second, e,
                                           resp.header().revision() + 1,
                                           /*needs_fresh=*/true);
    absl::MutexLock l(&mu_);
    if (e->removed) {
      unsubs_.emplace_back(range, handle);
    } else {
      e->range = range;
      e->handle = handle;
    }
  });
}

void RangeCache::OnQuorum(const RangeRequest& req, const std::string& token,
                          Done done, int64_t rev) {
  std::vector<Completion> out;
  std::shared_ptr<WatchRange> ask;
  bool forward = false;
  {
    absl::MutexLock l(&mu_);
    auto it = entries_.find(Key(req.key(), req.range_end()));
    if (it == entries_.end() || !it->second->loaded) {
      forward = true;
    } else if (LinearizableReadyLocked(it->second.get(), rev)) {
      ServeLocked(it->second.get(), req, &out, done);
    } else {
      it->second->waiters.push_back(Waiter{
          rev, req, token, done, clock_->Now() + options_.linearizable_wait});
      ask = it->second->range;
    }
  }
  Run(&out);
  if (forward) Forward(req, token, std::move(done));
  // The watch has not shown revision `rev` yet: ask the member how far the
  // stream is (its answer arrives after every event before it).
  if (ask != nullptr) ask->RequestProgress();
}

void RangeCache::ServeLocked(Entry* e, const RangeRequest& req,
                             std::vector<Completion>* out, Done done) {
  auto resp = std::make_shared<RangeResponse>();
  ComputeRange(req, e->data, resp.get());
  *resp->mutable_header() = e->header;
  resp->mutable_header()->set_revision(e->rev);
  if (metrics_ != nullptr) metrics_->cache_hits->Inc();
  out->push_back([resp, done = std::move(done)] {
    done(grpc::Status::OK, *resp);
  });
}

bool RangeCache::LinearizableReadyLocked(const Entry* e, int64_t rev) const {
  return e->loaded && e->live && e->status.healthy && e->rev >= rev;
}

bool RangeCache::SerializableReadyLocked(const Entry* e) const {
  return e->loaded && e->live && e->status.healthy &&
         clock_->Now() - e->status.fresh_at <= options_.serializable_bound &&
         e->rev >= write_rev_;
}

void RangeCache::WakeLocked(Entry* e, std::vector<Completion>* out) {
  auto& ws = e->waiters;
  for (auto it = ws.begin(); it != ws.end();) {
    if (LinearizableReadyLocked(e, it->revision)) {
      ServeLocked(e, it->req, out, std::move(it->done));
      it = ws.erase(it);
    } else {
      ++it;
    }
  }
}

void RangeCache::RemoveLocked(Entry* e, std::vector<Completion>* out) {
  if (e->removed) return;
  e->removed = true;
  auto it = entries_.find(e->key_);
  std::shared_ptr<Entry> keep;
  if (it != entries_.end() && it->second.get() == e) {
    keep = std::move(it->second);
    entries_.erase(it);
  }
  lru_.erase(e->lru);
  bytes_ -= e->bytes;
  e->bytes = 0;
  e->data.clear();
  if (e->range != nullptr) unsubs_.emplace_back(e->range, e->handle);
  e->range = nullptr;
  for (Waiter& w : e->waiters) {
    out->push_back(
        [this, w = std::move(w)] { Forward(w.req, w.token, w.done); });
  }
  e->waiters.clear();
  // The entry may be in use by the caller: free it after the lock.
  out->push_back([keep] {});
  if (metrics_ != nullptr) {
    metrics_->cache_bytes->Set(static_cast<double>(bytes_));
    metrics_->cache_entries->Set(static_cast<double>(entries_.size()));
  }
}

void RangeCache::EvictLocked(std::vector<Completion>* out) {
  while (!lru_.empty() && (bytes_ > options_.max_bytes ||
                           entries_.size() > options_.max_ranges)) {
    RemoveLocked(lru_.back(), out);
  }
}

void RangeCache::AddBytesLocked(Entry* e, int64_t delta) {
  e->bytes = static_cast<size_t>(static_cast<int64_t>(e->bytes) + delta);
  bytes_ = static_cast<size_t>(static_cast<int64_t>(bytes_) + delta);
  if (metrics_ != nullptr) {
    metrics_->cache_bytes->Set(static_cast<double>(bytes_));
  }
}

void RangeCache::DropUnsubscribes() {
  std::vector<std::pair<std::shared_ptr<WatchRange>, uint64_t>> drop;
  {
    absl::MutexLock l(&mu_);
    drop.swap(unsubs_);
  }
  for (auto& [range, handle] : drop) range->Unsubscribe(handle);
}

void RangeCache::QuorumRead(const QuorumKey& k, QuorumDone done) {
  bool start = false;
  {
    absl::MutexLock l(&qmu_);
    QuorumBatch& b = quorum_[k];
    b.next.push_back(std::move(done));
    if (!b.inflight) {
      b.inflight = true;
      start = true;
    }
  }
  if (start) StartQuorum(k);
}

// Reads that arrive while a quorum read of their (token, range) is in
// flight wait for the next one: its revision is then at least the
// cluster's revision when they arrived. The quorum read is the caller's
// permission probe, linearizable: its answer is kept as a decision.
void RangeCache::StartQuorum(const QuorumKey& k) {
  std::vector<QuorumDone> batch;
  {
    absl::MutexLock l(&qmu_);
    batch.swap(quorum_[k].next);
  }
  const auto& [token, key, range_end] = k;
  const uint64_t epoch = perms_->epoch();
  upstream_->Range(
      PermissionCache::Probe(key, range_end, /*serializable=*/false),
      CallAs::Client(token),
      [this, k, batch, epoch](const grpc::Status& s, const RangeResponse& r) {
        const auto& [token, key, range_end] = k;
        perms_->Record(token, key, range_end, s, epoch);
        for (const auto& cb : batch) cb(s, r.header().revision());
        bool again;
        {
          absl::MutexLock l(&qmu_);
          auto it = quorum_.find(k);
          again = !it->second.next.empty();
          if (!again) quorum_.erase(it);
        }
        if (again) StartQuorum(k);
      });
}

}  // namespace synod::proxy
