// LogStorage: the Raft core's read-only view of the durable log and hard
// state. The application writes to its storage while handling a Ready, then
// calls RawNode::Advance; the core only reads through this interface.
//
// Index 0 is a dummy entry of term 0 until log compaction (a later slice)
// moves the first index forward.
// Thread-safety: implementations are used by the raft thread only, unless
// they say otherwise (MemoryStorage is internally locked).
#ifndef SYNOD_BACKEND_RAFT_STORAGE_H_
#define SYNOD_BACKEND_RAFT_STORAGE_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "backend/raft/types.h"

namespace synod::raft {

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // The persisted hard state (zero if none).
  virtual HardState InitialState() const = 0;
  // Entries [lo, hi), at least one entry if any is in range, then stopping
  // before the total data size would exceed max_bytes.
  // REQUIRES: FirstIndex() <= lo <= hi <= LastIndex() + 1.
  // Errors: OutOfRange "raft: requested entry at index is unavailable".
  virtual absl::StatusOr<std::vector<Entry>> Entries(
      uint64_t lo, uint64_t hi, uint64_t max_bytes) const = 0;
  // Term of entry i, for FirstIndex() - 1 <= i <= LastIndex().
  // Errors: OutOfRange "raft: requested entry at index is unavailable".
  virtual absl::StatusOr<uint64_t> Term(uint64_t i) const = 0;
  // Index of the first entry still available (1 with no compaction).
  virtual uint64_t FirstIndex() const = 0;
  virtual uint64_t LastIndex() const = 0;
};

// An in-memory LogStorage for tests and the simulation. Thread-safe.
class MemoryStorage : public LogStorage {
 public:
  MemoryStorage();

  HardState InitialState() const override;
  absl::StatusOr<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_bytes) const override;
  absl::StatusOr<uint64_t> Term(uint64_t i) const override;
  uint64_t FirstIndex() const override;
  uint64_t LastIndex() const override;

  void SetHardState(const HardState& hs);
  // Appends entries, truncating any existing suffix they overlap.
  // REQUIRES: entries are contiguous and entries[0].index <= LastIndex() + 1.
  absl::Status Append(const std::vector<Entry>& entries);

 private:
  mutable absl::Mutex mu_;
  HardState hard_state_ ABSL_GUARDED_BY(mu_);
  // ents_[0] is the dummy entry at index 0 (term 0).
  std::vector<Entry> ents_ ABSL_GUARDED_BY(mu_);
};

// Sum of data sizes, the measure max_bytes limits (etcd counts proto size).
uint64_t EntriesSize(const std::vector<Entry>& ents);
// Truncates ents to the longest prefix of size <= max_bytes, keeping at
// least one entry.
void LimitSize(std::vector<Entry>* ents, uint64_t max_bytes);

}  // namespace synod::raft

#endif  // SYNOD_BACKEND_RAFT_STORAGE_H_
