#include "backend/raft/raft_log.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace synod::raft {

namespace {
// A broken invariant of the in-memory log: stop rather than guess.
[[noreturn]] void Fatal(const std::string& msg) {
  fprintf(stderr, "raft: FATAL %s\n", msg.c_str());
  abort();
}
}  // namespace

RaftLog::RaftLog(const LogStorage* storage)
    : storage_(storage),
      offset_(storage->LastIndex() + 1),
      committed_(storage->FirstIndex() - 1),
      applied_(storage->FirstIndex() - 1) {}

uint64_t RaftLog::FirstIndex() const {
  if (pending_snapshot_) return pending_snapshot_->metadata.index + 1;
  return storage_->FirstIndex();
}

uint64_t RaftLog::LastIndex() const {
  if (!unstable_.empty()) return offset_ + unstable_.size() - 1;
  if (pending_snapshot_) return pending_snapshot_->metadata.index;
  return storage_->LastIndex();
}

std::optional<uint64_t> RaftLog::Term(uint64_t i) const {
  if (i >= offset_) {
    if (i - offset_ < unstable_.size()) return unstable_[i - offset_].term;
    return std::nullopt;
  }
  if (i + 1 < FirstIndex()) return std::nullopt;  // compacted
  if (pending_snapshot_) {
    // The stable log is superseded: only the snapshot's own index is known.
    if (i == pending_snapshot_->metadata.index) {
      return pending_snapshot_->metadata.term;
    }
    return std::nullopt;
  }
  absl::StatusOr<uint64_t> t = storage_->Term(i);
  if (!t.ok()) return std::nullopt;
  return *t;
}

bool RaftLog::MatchTerm(uint64_t i, uint64_t term) const {
  std::optional<uint64_t> t = Term(i);
  return t.has_value() && *t == term;
}

std::optional<uint64_t> RaftLog::MaybeAppend(uint64_t index, uint64_t log_term,
                                             uint64_t committed,
                                             const std::vector<Entry>& ents) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  uint64_t last_new = index + ents.size();
  uint64_t ci = FindConflict(ents);
  if (ci != 0) {
    if (ci <= committed_) {
      Fatal(absl::StrCat("entry ", ci, " conflicts with committed entry ",
                         committed_));
    }
    std::vector<Entry> rest(ents.begin() + (ci - (index + 1)), ents.end());
    Append(rest);
  }
  // Figure 2: "If leaderCommit > commitIndex, set commitIndex =
  // min(leaderCommit, index of last new entry)".
  CommitTo(std::min(committed, last_new));
  return last_new;
}

uint64_t RaftLog::FindConflict(const std::vector<Entry>& ents) const {
  for (const Entry& e : ents) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return 0;
}

uint64_t RaftLog::Append(const std::vector<Entry>& ents) {
  if (ents.empty()) return LastIndex();
  uint64_t after = ents[0].index;
  if (after <= committed_) {
    Fatal(
        absl::StrCat("append at ", after, " is below committed ", committed_));
  }
  if (after == offset_ + unstable_.size()) {
    unstable_.insert(unstable_.end(), ents.begin(), ents.end());
  } else if (after <= offset_) {
    // Replaces the whole unstable part and a suffix of the stable log; the
    // application truncates storage when it persists these.
    offset_ = after;
    unstable_ = ents;
  } else {
    unstable_.resize(after - offset_);
    unstable_.insert(unstable_.end(), ents.begin(), ents.end());
  }
  return LastIndex();
}

bool RaftLog::IsUpToDate(uint64_t last_index, uint64_t last_term) const {
  // §5.4.1: "If the logs have last entries with different terms, then the log
  // with the later term is more up-to-date. If the logs end with the same
  // term, then whichever log is longer is more up-to-date."
  uint64_t our_term = LastTerm();
  return last_term > our_term ||
         (last_term == our_term && last_index >= LastIndex());
}

bool RaftLog::MaybeCommit(uint64_t max_index, uint64_t term) {
  // §5.4.2: "Raft never commits log entries from previous terms by counting
  // replicas. Only log entries from the leader's current term are committed
  // by counting replicas."
  if (max_index > committed_ && TermOrZero(max_index) == term) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::CommitTo(uint64_t index) {
  if (index <= committed_) return;  // commit never decreases
  if (index > LastIndex()) {
    Fatal(
        absl::StrCat("commit ", index, " is beyond last index ", LastIndex()));
  }
  committed_ = index;
}

void RaftLog::AppliedTo(uint64_t index) {
  if (index == 0) return;
  if (index > committed_ || index < applied_) {
    Fatal(absl::StrCat("applied ", index, " outside [", applied_, ", ",
                       committed_, "]"));
  }
  applied_ = index;
}

void RaftLog::StableTo(uint64_t index, uint64_t term) {
  // Only if the entry is still the one handed out: a later Append may have
  // replaced it, and then the replacement is still unstable.
  if (index < offset_ || index - offset_ >= unstable_.size()) return;
  if (unstable_[index - offset_].term != term) return;
  unstable_.erase(unstable_.begin(), unstable_.begin() + (index - offset_ + 1));
  offset_ = index + 1;
}

std::vector<Entry> RaftLog::Slice(uint64_t lo, uint64_t hi,
                                  uint64_t max_bytes) const {
  std::vector<Entry> out;
  if (lo >= hi) return out;
  if (lo < FirstIndex() || hi > LastIndex() + 1) {
    Fatal(absl::StrCat("slice [", lo, ", ", hi, ") out of bounds [",
                       FirstIndex(), ", ", LastIndex(), "]"));
  }
  if (lo < offset_) {
    absl::StatusOr<std::vector<Entry>> stored =
        storage_->Entries(lo, std::min(hi, offset_), max_bytes);
    if (!stored.ok()) Fatal(stored.status().ToString());
    out = std::move(*stored);
    // Storage stopped early because of the size limit.
    if (out.size() < std::min(hi, offset_) - lo) return out;
  }
  if (hi > offset_) {
    for (uint64_t i = std::max(lo, offset_); i < hi; ++i) {
      out.push_back(unstable_[i - offset_]);
    }
  }
  LimitSize(&out, max_bytes);
  return out;
}

absl::StatusOr<std::vector<Entry>> RaftLog::EntriesFrom(
    uint64_t lo, uint64_t max_bytes) const {
  if (lo < FirstIndex()) return absl::OutOfRangeError(kErrCompacted);
  uint64_t hi = LastIndex() + 1;
  if (lo >= hi) return std::vector<Entry>{};
  std::vector<Entry> out;
  if (lo < offset_) {
    absl::StatusOr<std::vector<Entry>> stored =
        storage_->Entries(lo, std::min(hi, offset_), max_bytes);
    if (IsCompacted(stored.status())) return stored.status();
    if (!stored.ok()) Fatal(stored.status().ToString());
    out = std::move(*stored);
    if (out.size() < std::min(hi, offset_) - lo) return out;
  }
  for (uint64_t i = std::max(lo, offset_); i < hi; ++i) {
    out.push_back(unstable_[i - offset_]);
  }
  LimitSize(&out, max_bytes);
  return out;
}

void RaftLog::Restore(const Snapshot& snap) {
  committed_ = snap.metadata.index;
  offset_ = snap.metadata.index + 1;
  unstable_.clear();
  pending_snapshot_ = snap;
}

void RaftLog::StableSnapTo(uint64_t index) {
  if (pending_snapshot_ && pending_snapshot_->metadata.index == index) {
    pending_snapshot_.reset();
  }
}

absl::StatusOr<Snapshot> RaftLog::GetSnapshot() const {
  if (pending_snapshot_) return *pending_snapshot_;
  return storage_->Snapshot();
}

bool RaftLog::HasNextCommittedEntries() const {
  return committed_ > std::max(applied_, FirstIndex() - 1);
}

std::vector<Entry> RaftLog::NextCommittedEntries() const {
  uint64_t lo = std::max(applied_ + 1, FirstIndex());
  if (committed_ + 1 <= lo) return {};
  return Slice(lo, committed_ + 1, kNoLimit);
}

std::vector<Entry> RaftLog::AllEntries() const {
  return Slice(FirstIndex(), LastIndex() + 1, kNoLimit);
}

}  // namespace synod::raft
