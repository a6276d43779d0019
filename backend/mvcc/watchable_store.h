// WatchableStore: routes the events of each published revision to watchers
// (etcd's mvcc/watchable_store.go, with synced and unsynced groups).
//
//  * A synced watcher has seen every revision up to the last one notified;
//    Notify() hands it the events of new revisions directly.
//  * An unsynced watcher is behind: it started at a past revision, or its
//    sink was full (a "victim" in etcd's words). A sync thread reads its
//    missed revisions from the KvStore's history, delivers them, and moves it
//    to the synced group once it has caught up. A slow sink therefore never
//    blocks other watchers and never loses events: it is fed from history
//    when it has room again, or canceled with the compacted revision if that
//    history is gone.
//  * The events of one revision are always delivered together.
//  * Sinks are called with the store's lock held (on the apply thread from
//    Notify, or on the sync thread), so a delivery only queues. prev_kv is
//    not read there: a sink that wants it calls PrevKv from its own send
//    path, outside the lock (etcd's sendLoop reads it the same way).
//
// Thread-safety: thread-safe. Notify is called by the apply thread. Lock
// order: WatchableStore::mu_ is taken before any WatchSink lock; sinks must
// not call back into the store while holding their own locks.
#ifndef SYNOD_BACKEND_MVCC_WATCHABLE_STORE_H_
#define SYNOD_BACKEND_MVCC_WATCHABLE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "backend/mvcc/kv_store.h"
#include "common/clock.h"
#include "proto/kv.pb.h"

namespace synod::mvcc {

// Receives a watcher's events. Implemented by the gRPC watch stream (and by
// in-process users such as Lock and Election).
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // Events of whole revisions for watcher `watch_id`, in revision order;
  // `revision` is the store revision they bring the watcher to. Their
  // prev_kv is empty. Return false when the sink has no room: nothing was
  // taken, and the same events will be offered again later from history.
  // Called with the store's lock held, on the apply thread (Notify) or the
  // sync thread: it only takes or refuses the events. It must not block,
  // must not call into the store, and must not read the KvStore (LevelDB):
  // a sink that wants prev_kv reads it later with PrevKv, from its own
  // thread, after Deliver has returned.
  virtual bool Deliver(int64_t watch_id, std::vector<mvccpb::Event>* events,
                       int64_t revision) = 0;
  // The watcher's start revision has been compacted; it is removed from the
  // store. Same calling rules as Deliver.
  virtual void Compacted(int64_t watch_id, int64_t compact_revision) = 0;
};

// etcd's IsCreateEvent: a put of a key that had no value before it (its
// prev_kv is always empty).
inline bool IsCreateEvent(const mvccpb::Event& ev) {
  return ev.type() == mvccpb::Event::PUT &&
         ev.kv().create_revision() == ev.kv().mod_revision();
}

struct WatchSpec {
  std::string key;
  std::string range_end;  // etcd rules: empty = one key, "\0" = open end
  int64_t start_revision = 0;  // first revision to deliver; 0 = next one
  bool no_put = false;         // filter NOPUT
  bool no_delete = false;      // filter NODELETE
};

class WatchableStore {
 public:
  // `kv` is not owned and must outlive the store. Starts the sync thread.
  // `clock` (not owned, outlives the store; nullptr = RealClock::Get())
  // times the sync thread's waits: its 1 s idle poll and 10 ms back-off.
  explicit WatchableStore(KvStore* kv, common::Clock* clock = nullptr);
  ~WatchableStore();  // stops the sync thread

  // Registers a watcher; events go to `sink` (not owned; must stay valid
  // until Cancel returns) tagged with `watch_id`. Returns a handle for
  // Cancel. A start revision at or below the last notified one makes the
  // watcher unsynced (history is replayed first).
  uint64_t Watch(WatchSink* sink, int64_t watch_id, const WatchSpec& spec);

  // Removes a watcher. After it returns, its sink gets no more calls for it.
  // Returns false if the handle is unknown (already removed).
  bool Cancel(uint64_t handle);

  // The apply thread: `events` (all revisions up to `revision`) are now
  // published. Hands them to synced watchers.
  void Notify(const std::vector<mvccpb::Event>& events, int64_t revision);

  // The last revision notified: every synced watcher has seen up to it.
  int64_t NotifiedRev() const;

  // The store's history was replaced underneath (an installed snapshot):
  // every synced watcher becomes unsynced from the next revision it has not
  // seen, and the sync thread feeds it from the new history (or reports
  // compaction when that history no longer has it).
  void ResyncAll();

  // The revision up to which watcher `handle` has been given every event
  // (NotifiedRev() for a synced watcher). -1 if unknown.
  int64_t Progress(uint64_t handle) const;

  // The prev_kv of a delivered event: the key's value at revision
  // mod_revision - 1 (etcd's sendLoop: Range(key, rev = mod_revision - 1),
  // skipped for a create event, whose key had no value before). nullopt for
  // a create, a key that did not exist then, and -- as etcd, which sends
  // the event without prev_kv when that Range fails -- for a revision
  // compacted since the event was delivered, or a read error. A LevelDB
  // read: call it from a sink's own send path, never from Deliver or
  // Compacted. Takes no store lock (only the KvStore's, a leaf).
  std::optional<mvccpb::KeyValue> PrevKv(const mvccpb::Event& ev) const;

  // Test seam: `hook` runs at the start of every PrevKv call, on the calling
  // thread, with `in_delivery` true when that thread is inside a Deliver or
  // Compacted call of this store (so holds the store's lock). Not
  // synchronised with PrevKv: set it before any watcher exists.
  void TEST_SetPrevKvHook(std::function<void(bool in_delivery)> hook) {
    prev_kv_hook_ = std::move(hook);
  }

  // Counts, for metrics and tests.
  size_t WatcherCount() const;
  size_t UnsyncedCount() const;

  // A sink that refused events (Deliver returned false) has room again:
  // the sync thread retries its victims now rather than after its 10 ms
  // back-off. Any thread; must not be called with a sink's lock held.
  void Kick();

 private:
  struct Watcher {
    uint64_t handle;
    int64_t watch_id;
    WatchSink* sink;
    WatchSpec spec;
    int64_t next_rev;  // first revision not yet delivered
    bool synced;
  };
  class DeliveryScope;
  bool Matches(const Watcher& w, const mvccpb::Event& ev) const;
  void AddSyncedLocked(Watcher* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveSyncedLocked(Watcher* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SyncLoop();
  // One pass over the unsynced watchers. Returns true if any made progress.
  bool SyncOnce();

  KvStore* const kv_;
  common::Clock* const clock_;
  // Taken before any WatchSink's lock (sinks are called with it held); the
  // sinks' mutexes are not visible here, so the order is not annotated.
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Watcher>> watchers_
      ABSL_GUARDED_BY(mu_);
  // Synced watchers on a single key, by key; and those on a range.
  absl::flat_hash_map<std::string, absl::flat_hash_set<Watcher*>> key_synced_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<Watcher*> range_synced_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<Watcher*> unsynced_ ABSL_GUARDED_BY(mu_);
  int64_t notified_rev_ ABSL_GUARDED_BY(mu_);
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // A sink reported room since the sync thread last found every sink full.
  bool kicked_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(bool)> prev_kv_hook_;  // tests only; see TEST_ above
  std::thread sync_thread_;
};

}  // namespace synod::mvcc

#endif  // SYNOD_BACKEND_MVCC_WATCHABLE_STORE_H_
