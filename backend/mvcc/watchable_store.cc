#include "backend/mvcc/watchable_store.h"

#include <algorithm>

#include "common/errors.h"
#include "common/key_range.h"

namespace synod::mvcc {
namespace {
// Revisions read from history per watcher per sync pass.
constexpr size_t kSyncBatchEvents = 1000;

int64_t EventRev(const mvccpb::Event& ev) { return ev.kv().mod_revision(); }

// The store whose sink the current thread is calling (Deliver or
// Compacted), if any. Only for TEST_SetPrevKvHook's `in_delivery`.
thread_local const WatchableStore* tls_delivering = nullptr;
}  // namespace

// Marks the current thread as inside a sink call of `store` (with its lock
// held) for as long as the scope lives.
class WatchableStore::DeliveryScope {
 public:
  explicit DeliveryScope(const WatchableStore* store)
      : prev_(tls_delivering) {
    tls_delivering = store;
  }
  ~DeliveryScope() { tls_delivering = prev_; }
  DeliveryScope(const DeliveryScope&) = delete;
  DeliveryScope& operator=(const DeliveryScope&) = delete;

 private:
  const WatchableStore* const prev_;
};

WatchableStore::WatchableStore(KvStore* kv, common::Clock* clock)
    : kv_(kv), clock_(clock != nullptr ? clock : common::RealClock::Get()) {
  notified_rev_ = kv->Rev();
  sync_thread_ = std::thread([this] { SyncLoop(); });
}

WatchableStore::~WatchableStore() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  sync_thread_.join();
}

bool WatchableStore::Matches(const Watcher& w, const mvccpb::Event& ev) const {
  if (w.spec.no_put && ev.type() == mvccpb::Event::PUT) return false;
  if (w.spec.no_delete && ev.type() == mvccpb::Event::DELETE) return false;
  return common::InRange(ev.kv().key(), w.spec.key, w.spec.range_end);
}

void WatchableStore::AddSyncedLocked(Watcher* w) {
  w->synced = true;
  if (w->spec.range_end.empty()) {
    key_synced_[w->spec.key].insert(w);
  } else {
    range_synced_.insert(w);
  }
}

void WatchableStore::RemoveSyncedLocked(Watcher* w) {
  w->synced = false;
  if (w->spec.range_end.empty()) {
    auto it = key_synced_.find(w->spec.key);
    if (it != key_synced_.end()) {
      it->second.erase(w);
      if (it->second.empty()) key_synced_.erase(it);
    }
  } else {
    range_synced_.erase(w);
  }
}

uint64_t WatchableStore::Watch(WatchSink* sink, int64_t watch_id,
                               const WatchSpec& spec) {
  absl::MutexLock l(&mu_);
  auto w = std::make_unique<Watcher>();
  w->handle = next_handle_++;
  w->watch_id = watch_id;
  w->sink = sink;
  w->spec = spec;
  w->next_rev = spec.start_revision > 0 ? spec.start_revision
                                        : notified_rev_ + 1;
  Watcher* raw = w.get();
  watchers_[raw->handle] = std::move(w);
  if (raw->next_rev > notified_rev_) {
    AddSyncedLocked(raw);
  } else {
    raw->synced = false;
    unsynced_.insert(raw);
  }
  return raw->handle;
}

bool WatchableStore::Cancel(uint64_t handle) {
  absl::MutexLock l(&mu_);
  auto it = watchers_.find(handle);
  if (it == watchers_.end()) return false;
  Watcher* w = it->second.get();
  if (w->synced) {
    RemoveSyncedLocked(w);
  } else {
    unsynced_.erase(w);
  }
  watchers_.erase(it);
  return true;
}

void WatchableStore::Notify(const std::vector<mvccpb::Event>& events,
                            int64_t revision) {
  absl::MutexLock l(&mu_);
  // Per watcher, the events it wants, in order.
  absl::flat_hash_map<Watcher*, std::vector<mvccpb::Event>> out;
  for (const mvccpb::Event& ev : events) {
    auto k = key_synced_.find(ev.kv().key());
    if (k != key_synced_.end()) {
      for (Watcher* w : k->second) {
        if (EventRev(ev) >= w->next_rev && Matches(*w, ev)) out[w].push_back(ev);
      }
    }
    for (Watcher* w : range_synced_) {
      if (EventRev(ev) >= w->next_rev && Matches(*w, ev)) out[w].push_back(ev);
    }
  }
  bool victims = false;
  DeliveryScope delivering(this);
  for (auto& [w, evs] : out) {
    const int64_t first = EventRev(evs.front());
    if (w->sink->Deliver(w->watch_id, &evs, revision)) continue;
    // No room: the watcher becomes unsynced and is fed from history.
    RemoveSyncedLocked(w);
    w->next_rev = first;
    unsynced_.insert(w);
    victims = true;
  }
  // Synced watchers have now seen up to `revision`; their next_rev is
  // implied by notified_rev_ (it only matters for a future start revision).
  notified_rev_ = std::max(notified_rev_, revision);
  (void)victims;
}

void WatchableStore::ResyncAll() {
  absl::MutexLock l(&mu_);
  for (auto& [handle, w] : watchers_) {
    if (!w->synced) continue;
    RemoveSyncedLocked(w.get());
    w->next_rev = std::max(w->next_rev, notified_rev_ + 1);
    unsynced_.insert(w.get());
  }
  notified_rev_ = std::max(notified_rev_, kv_->Rev());
}

int64_t WatchableStore::NotifiedRev() const {
  absl::MutexLock l(&mu_);
  return notified_rev_;
}

int64_t WatchableStore::Progress(uint64_t handle) const {
  absl::MutexLock l(&mu_);
  auto it = watchers_.find(handle);
  if (it == watchers_.end()) return -1;
  if (it->second->synced) return notified_rev_;
  return it->second->next_rev - 1;
}

std::optional<mvccpb::KeyValue> WatchableStore::PrevKv(
    const mvccpb::Event& ev) const {
  if (prev_kv_hook_) prev_kv_hook_(tls_delivering == this);
  if (IsCreateEvent(ev)) return std::nullopt;
  absl::StatusOr<std::optional<mvccpb::KeyValue>> prev =
      kv_->Get(ev.kv().key(), ev.kv().mod_revision() - 1);
  // kCompacted: the previous revision was compacted after the event was
  // delivered. etcd's sendLoop sends the event without prev_kv then (its
  // Range fails with ErrCompacted), and so do we.
  if (!prev.ok()) return std::nullopt;
  return std::move(*prev);
}

size_t WatchableStore::WatcherCount() const {
  absl::MutexLock l(&mu_);
  return watchers_.size();
}

size_t WatchableStore::UnsyncedCount() const {
  absl::MutexLock l(&mu_);
  return unsynced_.size();
}

void WatchableStore::Kick() {
  absl::MutexLock l(&mu_);
  kicked_ = true;
}

void WatchableStore::SyncLoop() {
  while (true) {
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !unsynced_.empty();
      };
      // Victims are retried every 10 ms while their sinks stay full.
      clock_->AwaitWithTimeout(&mu_, absl::Condition(&ready),
                               absl::Seconds(1));
      if (stop_) return;
      if (unsynced_.empty()) continue;
    }
    if (!SyncOnce()) {
      // Nothing could move (sinks full): wait until a sink reports room
      // (Kick), or retry after 10 ms.
      absl::MutexLock l(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || kicked_;
      };
      clock_->AwaitWithTimeout(&mu_, absl::Condition(&woken),
                               absl::Milliseconds(10));
      kicked_ = false;
    }
  }
}

bool WatchableStore::SyncOnce() {
  struct Job {
    uint64_t handle;
    int64_t from;
    int64_t to;
  };
  std::vector<Job> jobs;
  {
    absl::MutexLock l(&mu_);
    for (Watcher* w : unsynced_) {
      jobs.push_back(Job{w->handle, w->next_rev, notified_rev_});
    }
  }
  bool progress = false;
  for (const Job& job : jobs) {
    std::vector<mvccpb::Event> evs;
    int64_t next = job.from;
    absl::Status st = kv_->ReadEvents(job.from, job.to, kSyncBatchEvents, &evs,
                                      &next);
    absl::MutexLock l(&mu_);
    auto it = watchers_.find(job.handle);
    if (it == watchers_.end() || it->second->synced ||
        it->second->next_rev != job.from) {
      continue;  // canceled or changed meanwhile
    }
    Watcher* w = it->second.get();
    DeliveryScope delivering(this);
    if (common::IsErr(st, common::EtcdError::kCompacted)) {
      unsynced_.erase(w);
      w->sink->Compacted(w->watch_id, kv_->CompactRev());
      watchers_.erase(it);
      progress = true;
      continue;
    }
    if (!st.ok()) continue;  // retried next pass
    std::vector<mvccpb::Event> mine;
    for (mvccpb::Event& ev : evs) {
      if (Matches(*w, ev)) mine.push_back(std::move(ev));
    }
    if (!mine.empty() && !w->sink->Deliver(w->watch_id, &mine, next - 1)) {
      continue;  // still no room
    }
    progress = true;
    w->next_rev = next;
    if (w->next_rev > notified_rev_) {
      unsynced_.erase(w);
      AddSyncedLocked(w);
    }
  }
  return progress;
}

}  // namespace synod::mvcc
