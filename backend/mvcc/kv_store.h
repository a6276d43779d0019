// KvStore: the MVCC key-value store. Every revision of every key lives in
// LevelDB (storage/schema.h); an in-memory index (key -> KeyIndex) is rebuilt
// from it at start-up.
//
// Revisions follow etcd: each Put, DeleteRange or Txn that writes makes one
// main revision; the writes of one txn are sub-revisions of it.
//
// Two sides:
//  * Readers (any thread): Range, ReadEvents, HashKV read the *published*
//    state: revisions whose write batch is durable.
//  * The writer (the apply thread only): WriteTxn applies requests, staging
//    them in one storage::Batch; Commit() writes the batch with the applied
//    index and publishes the new revision. Several entries share one Commit
//    (group commit). A member's Commit is not synced (sync=false): the
//    entries are already durable on a quorum in the Raft log, and a restart
//    replays them from the applied index; nothing is acknowledged before
//    its Commit returns.
//
// Thread-safety: readers are thread-safe; the write side (Write, Compact,
// Commit, batch) must only be used by one thread at a time (the apply
// thread). Lock order: KvStore::mu_ is a leaf lock.
#ifndef SYNOD_BACKEND_MVCC_KV_STORE_H_
#define SYNOD_BACKEND_MVCC_KV_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "backend/mvcc/key_index.h"
#include "backend/storage/backend.h"
#include "proto/kv.pb.h"
#include "proto/rpc.pb.h"

namespace synod::mvcc {

// What the store needs from the lessor. Implemented by lease::Lessor; called
// only from the apply thread.
class LeaseHooks {
 public:
  virtual ~LeaseHooks() = default;
  // True if lease `id` is granted and not revoked.
  virtual bool LeaseExists(int64_t id) const = 0;
  // Key `key` now belongs to lease `id` (id != 0).
  virtual void Attach(int64_t id, const std::string& key) = 0;
  // Key `key` no longer belongs to lease `id` (id != 0).
  virtual void Detach(int64_t id, const std::string& key) = 0;
};

class KvStore {
 public:
  // Opens the store on `backend` (not owned; must outlive the store) and
  // rebuilds the index. Errors: DataLoss on a corrupt record.
  static absl::StatusOr<std::unique_ptr<KvStore>> Open(
      storage::Backend* backend);

  // The published (durable) revision. Starts at 1 for an empty store, as in
  // etcd.
  int64_t Rev() const { return rev_.load(std::memory_order_acquire); }
  // The compacted revision (0 if never compacted).
  int64_t CompactRev() const;
  // The last log index whose effects are durable here.
  uint64_t AppliedIndex() const {
    return applied_index_.load(std::memory_order_acquire);
  }
  // Number of keys in the index (live or with history).
  size_t KeyCount() const;

  // Range per etcd's RangeRequest at the published state: range_end, limit
  // (with more and count), revision, sort, keys_only, count_only, min/max
  // mod and create revision (the rules of common/etcd_range.h). Fills
  // resp->kvs, more, count and header.revision (the current revision, also
  // for a historical read, as etcd). `serializable` is the caller's concern.
  // Errors: kCompacted (revision < CompactRev()), kFutureRev (revision >
  // Rev()).
  absl::Status Range(const etcdserverpb::RangeRequest& r,
                     etcdserverpb::RangeResponse* resp) const;

  // Reads the events of revisions [from_rev, to_rev] in revision order into
  // `out`, whole revisions only, stopping after the revision at which the
  // count reaches max_events (values below 1 count as 1). *next_rev is the first revision not read.
  // prev_kv of the events is left empty. Errors: kCompacted if from_rev <
  // CompactRev() (etcd's rule; events at exactly the compacted revision are
  // kept whole, see KeyIndex::Compact).
  absl::Status ReadEvents(int64_t from_rev, int64_t to_rev, size_t max_events,
                          std::vector<mvccpb::Event>* out,
                          int64_t* next_rev) const;

  // The key-value of `key` at revision `rev`, if it existed then.
  // Used for a watch's prev_kv. Errors: kCompacted.
  absl::StatusOr<std::optional<mvccpb::KeyValue>> Get(const std::string& key,
                                                      int64_t rev) const;

  // CRC-32 (IEEE) over every stored revision (key and record) with main
  // revision <= rev (0 = current). Stable across restarts and equal on
  // members that applied the same log. Errors: kCompacted, kFutureRev.
  absl::StatusOr<uint32_t> HashKV(int64_t rev) const;

  // ---- Write side: the apply thread only. ----

  class WriteTxn;
  // Starts a write at revision (last staged revision) + 1. One at a time.
  std::unique_ptr<WriteTxn> Write();

  // Compacts at revision `rev`: drops from the index and stages the removal
  // of every revision it no longer needs. Errors: kCompacted (rev <=
  // CompactRev()), kFutureRev (rev > the staged revision).
  absl::Status Compact(int64_t rev);

  // The batch that the next Commit writes; other apply-side state (leases,
  // alarms) stages its writes here so that all of it is durable together.
  storage::Batch* batch() { return &batch_; }

  // Writes every staged change and `applied_index` in one batch (synced
  // when `sync`; a member whose Raft log is durable passes false: the log
  // replays what a crash loses), then publishes the staged revision. Moves the events of the
  // published revisions into `events` (may be null). Errors: Internal from
  // LevelDB; the caller must then stop the process (state unknown).
  absl::Status Commit(uint64_t applied_index,
                      std::vector<mvccpb::Event>* events, bool sync = true);

  // Drops everything in memory and rebuilds it from the backend (after a
  // snapshot was installed underneath). Apply thread only; readers may see
  // an empty store meanwhile. Errors: as Open.
  absl::Status Reload();

  // The last staged (maybe not yet durable) revision.
  int64_t StagedRev() const { return staged_rev_; }

  void SetLeaseHooks(LeaseHooks* hooks) { lease_hooks_ = hooks; }

  // Keys attached to leases, as (lease, key) for every live key with a
  // lease, at the published state. Used to rebuild the lessor at start-up.
  std::vector<std::pair<int64_t, std::string>> LeasedKeys() const;

 private:
  friend class WriteTxn;
  explicit KvStore(storage::Backend* backend) : backend_(backend) {}
  absl::Status Load();

  struct Match {
    std::string key;
    IndexEntry entry;
  };
  // Collects live keys of [key, range_end) at `rev`; counts all of them in
  // *count but keeps at most `limit` (0 = all) unless count_only.
  void CollectLocked(const std::string& key, const std::string& range_end,
                     int64_t rev, int64_t limit, bool count_only,
                     std::vector<Match>* out, int64_t* count) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Shared Range logic. `read_value` fetches the record of a revision.
  template <typename ReadValue>
  absl::Status RangeImpl(const etcdserverpb::RangeRequest& r, int64_t rev,
                         std::vector<Match> matches, int64_t count,
                         ReadValue read_value,
                         etcdserverpb::RangeResponse* resp) const;

  storage::Backend* const backend_;
  mutable absl::Mutex mu_;
  absl::btree_map<std::string, KeyIndex> index_ ABSL_GUARDED_BY(mu_);
  int64_t compact_rev_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> rev_{1};
  std::atomic<uint64_t> applied_index_{0};

  // Apply-thread state.
  int64_t staged_rev_ = 1;
  storage::Batch batch_;
  // Records staged in batch_ and not yet durable: revision key -> record.
  absl::flat_hash_map<std::string, std::string> staged_records_;
  std::vector<mvccpb::Event> staged_events_;
  LeaseHooks* lease_hooks_ = nullptr;
};

// One write transaction at revision Rev(). Reads see the txn's own writes and
// everything staged before it. Apply thread only.
class KvStore::WriteTxn {
 public:
  ~WriteTxn();
  // The revision this txn writes at.
  int64_t Rev() const { return rev_; }
  // The revision a reader of this txn sees (Rev() if it wrote, else Rev()-1).
  int64_t ReadRev() const { return sub_ > 0 ? rev_ : rev_ - 1; }

  // etcd's Put: lease, prev_kv, ignore_value, ignore_lease. Errors:
  // kKeyNotFound (ignore_value/ignore_lease on a missing key),
  // kLeaseNotFound. Request-shape errors (empty key, value with
  // ignore_value) are checked by the service before proposing.
  absl::Status Put(const etcdserverpb::PutRequest& r,
                   etcdserverpb::PutResponse* resp);
  // etcd's DeleteRange with prev_kv. Never fails on valid input.
  absl::Status DeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                           etcdserverpb::DeleteRangeResponse* resp);
  // Range seeing this txn's writes. Errors as KvStore::Range.
  absl::Status Range(const etcdserverpb::RangeRequest& r,
                     etcdserverpb::RangeResponse* resp);
  // etcd's Txn: every compare (including nested ones; rules in
  // common/etcd_compare.h) is evaluated against the state before the txn,
  // then the chosen branches are checked (leases, ignore_value, range
  // revisions) before anything is written, so a txn either applies whole
  // or fails with no effect.
  absl::Status Txn(const etcdserverpb::TxnRequest& r,
                   etcdserverpb::TxnResponse* resp);

  // Deletes `key` if live (used by lease revoke). Returns true if deleted.
  bool DeleteKey(const std::string& key);

 private:
  friend class KvStore;
  explicit WriteTxn(KvStore* s);
  void PutInternal(const std::string& key, const std::string& value,
                   int64_t lease);
  bool TombstoneInternal(const std::string& key);
  std::optional<mvccpb::KeyValue> ReadKv(const std::string& key,
                                         const IndexEntry& e) const;
  bool EvalCompare(const etcdserverpb::Compare& c) const;
  void ComputePath(const etcdserverpb::TxnRequest& r,
                   std::vector<bool>* path) const;
  absl::Status CheckTxn(const etcdserverpb::TxnRequest& r,
                        const std::vector<bool>& path, size_t* pos) const;
  absl::Status ExecTxn(const etcdserverpb::TxnRequest& r,
                       const std::vector<bool>& path, size_t* pos,
                       etcdserverpb::TxnResponse* resp);

  KvStore* s_;
  int64_t rev_;
  int64_t sub_ = 0;
};

// Reads the record of revision (main, sub): its kind byte and KeyValue.
bool ParseRecord(absl::string_view record, bool* tombstone,
                 mvccpb::KeyValue* kv);

}  // namespace synod::mvcc

#endif  // SYNOD_BACKEND_MVCC_KV_STORE_H_
