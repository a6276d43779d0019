// RaftLogStore: the Raft log, hard state and log-compaction point of one
// member, kept in the member's LevelDB (Backend) beside the MVCC data. It is
// the raft::LogStorage the Raft core reads, and the raft thread writes it
// once per Ready with Save(): hard state and new entries in ONE synced batch
// (DESIGN.md "Threads in a member", step 1).
//
// Keys (PERSISTENT FORMAT, see schema.h):
//   "R/e" + index (8 bytes BE) -> term (8 bytes BE), type (1 byte), data
//   "R/h"                      -> term, vote, commit (3 x 8 bytes BE)
//   "R/s"                      -> snapshot point: index, term (2 x 8 BE)
//   "R/c"                      -> conf state: index it was applied at, then
//                                 voter count, voters, learners (8 bytes BE
//                                 each)
// Because the MVCC data lives in the same LevelDB, one synced Save also
// makes every earlier unsynced apply batch durable (LevelDB writes one log).
//
// Ownership: the store does not own the Backend, which must outlive it.
// Thread-safe: internally locked; Save/Compact are called by the raft thread
// only, the readers from any thread.
#ifndef SYNOD_BACKEND_STORAGE_RAFT_LOG_STORE_H_
#define SYNOD_BACKEND_STORAGE_RAFT_LOG_STORE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "backend/raft/storage.h"
#include "backend/raft/types.h"
#include "backend/storage/backend.h"

namespace synod::storage {

class RaftLogStore : public raft::LogStorage {
 public:
  // Loads the hard state, snapshot point and the terms of the stored entries
  // (8 bytes of memory per entry). Errors: DataLoss for a corrupt record or
  // a gap in the log; Internal from LevelDB.
  static absl::StatusOr<std::unique_ptr<RaftLogStore>> Open(Backend* backend);

  // raft::LogStorage.
  raft::InitialState GetInitialState() const override;
  absl::StatusOr<std::vector<raft::Entry>> Entries(
      uint64_t lo, uint64_t hi, uint64_t max_bytes) const override;
  absl::StatusOr<uint64_t> Term(uint64_t i) const override;
  uint64_t FirstIndex() const override;
  uint64_t LastIndex() const override;
  absl::StatusOr<raft::Snapshot> Snapshot() const override;

  // Persists `hs` (when set) and `entries` in one batch, synced when it
  // holds entries, a snapshot, or a new term or vote (etcd's MustSync). Entries at or
  // below LastIndex() replace the existing suffix from their first index
  // (a follower's log conflict, Raft §5.3). When `snapshot` is non-empty it
  // is recorded as the new compaction point first and every entry at or
  // below its index is dropped.
  // REQUIRES: entries are contiguous and entries[0].index <= LastIndex()+1.
  // Errors: Internal from LevelDB (fatal for the caller); readers then go on
  // seeing the store as it was before the call.
  absl::Status Save(const std::optional<raft::HardState>& hs,
                    const std::vector<raft::Entry>& entries,
                    const raft::Snapshot& snapshot);

  // Records the membership as of log index `index` (the raft thread calls it
  // when it applies a conf change). Synced. Errors: as Save.
  absl::Status SetConfState(const raft::ConfState& cs, uint64_t index);
  // The index SetConfState was last called with (0: never).
  uint64_t conf_index() const;

  // Log compaction: drops every entry below `index` and makes `index` the
  // snapshot point (its term is kept). A no-op when index < FirstIndex().
  // REQUIRES: index <= LastIndex(), and the application state at `index` is
  // durable (call after a synced write of the applied index).
  absl::Status Compact(uint64_t index);

 private:
  explicit RaftLogStore(Backend* backend) : backend_(backend) {}
  absl::Status Load();
  uint64_t TermLocked(uint64_t i) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  Backend* const backend_;
  mutable absl::Mutex mu_;
  raft::HardState hard_state_ ABSL_GUARDED_BY(mu_);
  raft::ConfState conf_state_ ABSL_GUARDED_BY(mu_);
  uint64_t conf_index_ ABSL_GUARDED_BY(mu_) = 0;
  // The snapshot point: entries up to snap_index_ are compacted away.
  uint64_t snap_index_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t snap_term_ ABSL_GUARDED_BY(mu_) = 0;
  // terms_[i] is the term of entry snap_index_ + 1 + i.
  std::deque<uint64_t> terms_ ABSL_GUARDED_BY(mu_);
};

// Key helpers (exposed for tests and the snapshot writer, which skips "R").
inline constexpr char kRaftPrefix = 'R';
std::string RaftEntryKey(uint64_t index);

}  // namespace synod::storage

#endif  // SYNOD_BACKEND_STORAGE_RAFT_LOG_STORE_H_
