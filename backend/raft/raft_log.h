// RaftLog: the log as the core sees it, stable entries (read through
// LogStorage) followed by unstable ones (appended in memory, handed out in a
// Ready, and dropped from memory once Advance says they are durable), plus the
// commit and applied indexes. A snapshot received from the leader is also
// unstable until Advance (etcd's unstable.snapshot): while it is pending it
// replaces the whole stable log.
// Thread-safety: none; owned by one Raft.
#ifndef SYNOD_BACKEND_RAFT_RAFT_LOG_H_
#define SYNOD_BACKEND_RAFT_RAFT_LOG_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "backend/raft/storage.h"
#include "backend/raft/types.h"

namespace synod::raft {

inline constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

class RaftLog {
 public:
  // Does not take ownership; storage must outlive the log.
  explicit RaftLog(const LogStorage* storage);

  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  uint64_t LastTerm() const { return TermOrZero(LastIndex()); }
  // The last index known durable (everything before the unstable part).
  uint64_t StableLastIndex() const { return offset_ - 1; }
  // Term of entry i, or nullopt if it is not (or no longer) in the log.
  std::optional<uint64_t> Term(uint64_t i) const;
  uint64_t TermOrZero(uint64_t i) const { return Term(i).value_or(0); }
  bool MatchTerm(uint64_t i, uint64_t term) const;

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }

  // The AppendEntries consistency check and conflict resolution (§5.3): if
  // the entry at `index` has `log_term`, deletes any conflicting suffix,
  // appends the new entries, advances commit to min(committed, last new
  // index) and returns the last new index; otherwise nullopt.
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term,
                                      uint64_t committed,
                                      const std::vector<Entry>& ents);
  // Appends (truncating an overlapped unstable/stable suffix) and returns the
  // new last index. REQUIRES: ents[0].index > committed().
  uint64_t Append(const std::vector<Entry>& ents);

  // Figure 2 "RequestVote RPC", §5.4.1: is a log ending at (last_index,
  // last_term) at least as up-to-date as ours?
  bool IsUpToDate(uint64_t last_index, uint64_t last_term) const;
  // §5.4.2: commits max_index only if its entry is of `term` (the leader's
  // current term). Returns whether commit moved.
  bool MaybeCommit(uint64_t max_index, uint64_t term);
  void CommitTo(uint64_t index);
  void AppliedTo(uint64_t index);
  // Entries up to (index, term) are durable; drops them from memory.
  void StableTo(uint64_t index, uint64_t term);

  // Entries [lo, hi), stopping at max_bytes (at least one entry).
  // REQUIRES: FirstIndex() <= lo, hi <= LastIndex() + 1 (aborts otherwise).
  std::vector<Entry> Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const;
  // Entries [lo, LastIndex() + 1), stopping at max_bytes; empty if lo is past
  // the end. Errors: OutOfRange kErrCompacted if lo < FirstIndex() (or the
  // storage compacted them meanwhile): send a snapshot instead.
  absl::StatusOr<std::vector<Entry>> EntriesFrom(uint64_t lo,
                                                 uint64_t max_bytes) const;

  // Replaces the log by `snap` (a follower installing the leader's
  // snapshot, §7): everything up to snap's index is committed, the unstable
  // part is dropped, and the snapshot is pending until StableSnapTo.
  void Restore(const Snapshot& snap);
  // The snapshot handed out in a Ready is durable.
  void StableSnapTo(uint64_t index);
  // The snapshot received but not yet persisted, or nullptr.
  const Snapshot* PendingSnapshot() const {
    return pending_snapshot_ ? &*pending_snapshot_ : nullptr;
  }
  // The newest snapshot: the pending one, else the storage's.
  // Errors: from LogStorage::Snapshot().
  absl::StatusOr<Snapshot> GetSnapshot() const;
  const std::vector<Entry>& UnstableEntries() const { return unstable_; }
  bool HasNextCommittedEntries() const;
  std::vector<Entry> NextCommittedEntries() const;
  // Every entry from FirstIndex(), for tests and invariant checks.
  std::vector<Entry> AllEntries() const;

 private:
  // Index of the first entry that conflicts with (same index, other term)
  // or extends the log, or 0 if every entry is already present.
  uint64_t FindConflict(const std::vector<Entry>& ents) const;

  const LogStorage* storage_;
  std::optional<Snapshot> pending_snapshot_;
  std::vector<Entry> unstable_;  // unstable_[k].index == offset_ + k
  uint64_t offset_;
  uint64_t committed_;
  uint64_t applied_;
};

}  // namespace synod::raft

#endif  // SYNOD_BACKEND_RAFT_RAFT_LOG_H_
