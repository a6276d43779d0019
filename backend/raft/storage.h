// LogStorage: the Raft core's read-only view of the durable log, hard state,
// membership and latest snapshot. The application writes to its storage while
// handling a Ready, then calls RawNode::Advance; the core only reads through
// this interface.
//
// The log holds the entries after the latest snapshot: FirstIndex() is
// snapshot.index + 1 (1 with no snapshot), and Term(FirstIndex() - 1) is the
// snapshot's term (0 with no snapshot: a dummy entry at index 0).
//
// Errors carry etcd's texts exactly (the constants below), so callers may
// match on them as on etcd's raft.Err* values.
//
// Note for implementers: override GetInitialState() (InitialState() is a
// non-virtual alias, named after etcd's Storage.InitialState). Inside a class
// derived from LogStorage the method names InitialState and Snapshot hide the
// types of the same name; spell the types raft::InitialState and
// raft::Snapshot there.
// Thread-safety: implementations are used by the raft thread only, unless
// they say otherwise (MemoryStorage is internally locked).
#ifndef SYNOD_BACKEND_RAFT_STORAGE_H_
#define SYNOD_BACKEND_RAFT_STORAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "backend/raft/types.h"

namespace synod::raft {

// etcd's ErrCompacted: the index is at or below the snapshot (OutOfRange).
inline constexpr char kErrCompacted[] =
    "requested index is unavailable due to compaction";
// etcd's ErrSnapOutOfDate: a snapshot not newer than the current one
// (FailedPrecondition).
inline constexpr char kErrSnapOutOfDate[] =
    "requested index is older than the existing snapshot";
// etcd's ErrUnavailable: the index is beyond the last entry (OutOfRange).
inline constexpr char kErrUnavailable[] =
    "requested entry at index is unavailable";
// etcd's ErrSnapshotTemporarilyUnavailable: Snapshot() is not ready yet; the
// core retries later (Unavailable).
inline constexpr char kErrSnapshotTemporarilyUnavailable[] =
    "snapshot is temporarily unavailable";

// What a node restarts from.
struct InitialState {
  HardState hard_state;
  // The membership as of the storage's snapshot, or as the application last
  // persisted it (it keeps this current as it applies conf changes). Empty
  // for a fresh storage.
  ConfState conf_state;
};

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // The persisted hard state and membership (zero/empty if none).
  virtual raft::InitialState GetInitialState() const = 0;
  raft::InitialState InitialState() const { return GetInitialState(); }
  // Entries [lo, hi), at least one entry if any is in range, then stopping
  // before the total data size would exceed max_bytes.
  // REQUIRES: lo <= hi <= LastIndex() + 1.
  // Errors: OutOfRange kErrCompacted if lo < FirstIndex(); OutOfRange
  // kErrUnavailable if hi > LastIndex() + 1.
  virtual absl::StatusOr<std::vector<Entry>> Entries(
      uint64_t lo, uint64_t hi, uint64_t max_bytes) const = 0;
  // Term of entry i, for FirstIndex() - 1 <= i <= LastIndex().
  // Errors: OutOfRange kErrCompacted below FirstIndex() - 1, OutOfRange
  // kErrUnavailable above LastIndex().
  virtual absl::StatusOr<uint64_t> Term(uint64_t i) const = 0;
  // Index of the first entry still available (snapshot index + 1).
  virtual uint64_t FirstIndex() const = 0;
  virtual uint64_t LastIndex() const = 0;
  // The most recent snapshot (empty() if there is none). The core asks for
  // it when a follower needs entries that were compacted away.
  // Errors: Unavailable kErrSnapshotTemporarilyUnavailable if it is being
  // built; the core then tries again on a later heartbeat response.
  virtual absl::StatusOr<raft::Snapshot> Snapshot() const = 0;
};

// An in-memory LogStorage for tests and the simulation. Thread-safe.
class MemoryStorage : public LogStorage {
 public:
  MemoryStorage();

  raft::InitialState GetInitialState() const override;
  absl::StatusOr<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_bytes) const override;
  absl::StatusOr<uint64_t> Term(uint64_t i) const override;
  uint64_t FirstIndex() const override;
  uint64_t LastIndex() const override;
  absl::StatusOr<raft::Snapshot> Snapshot() const override;

  void SetHardState(const HardState& hs);
  void SetConfState(const ConfState& cs);
  // Appends entries, truncating any existing suffix they overlap; the part
  // of `entries` at or below the snapshot is ignored.
  // Errors: InvalidArgument if entries[0].index > LastIndex() + 1 (a gap).
  absl::Status Append(const std::vector<Entry>& entries);
  // Replaces the whole log by `snap` (a follower installing a leader's
  // snapshot, Ready.snapshot); the membership becomes snap's conf state.
  // Errors: FailedPrecondition kErrSnapOutOfDate unless snap is newer than
  // the current snapshot.
  absl::Status ApplySnapshot(const raft::Snapshot& snap);
  // Records a snapshot of the state machine as of entry `index` (which the
  // application has applied), with membership `cs` and state `data`, and
  // returns it. Does not compact; call Compact for that.
  // Errors: FailedPrecondition kErrSnapOutOfDate if index <= the current
  // snapshot's index; OutOfRange kErrUnavailable if index > LastIndex().
  absl::StatusOr<raft::Snapshot> CreateSnapshot(uint64_t index,
                                                const ConfState& cs,
                                                std::string data);
  // Drops the entries before `compact_index`; it becomes the dummy entry
  // (FirstIndex() == compact_index + 1). The application must not compact
  // past what it applied and covered by a snapshot.
  // Errors: OutOfRange kErrCompacted if compact_index <= FirstIndex() - 1;
  // OutOfRange kErrUnavailable if compact_index > LastIndex().
  absl::Status Compact(uint64_t compact_index);

  // Makes Snapshot() fail with kErrSnapshotTemporarilyUnavailable while set.
  void TEST_SetSnapshotUnavailable(bool unavailable);

 private:
  mutable absl::Mutex mu_;
  HardState hard_state_ ABSL_GUARDED_BY(mu_);
  ConfState conf_state_ ABSL_GUARDED_BY(mu_);
  raft::Snapshot snapshot_ ABSL_GUARDED_BY(mu_);
  bool snapshot_unavailable_ ABSL_GUARDED_BY(mu_) = false;
  // ents_[0] is the dummy entry at the snapshot's index and term (index 0,
  // term 0 with no snapshot).
  std::vector<Entry> ents_ ABSL_GUARDED_BY(mu_);
};

// Sum of data sizes, the measure max_bytes limits (etcd counts proto size).
uint64_t EntriesSize(const std::vector<Entry>& ents);
// Truncates ents to the longest prefix of size <= max_bytes, keeping at
// least one entry.
void LimitSize(std::vector<Entry>* ents, uint64_t max_bytes);

// Whether `s` is the storage's "compacted" error.
bool IsCompacted(const absl::Status& s);

}  // namespace synod::raft

#endif  // SYNOD_BACKEND_RAFT_STORAGE_H_
