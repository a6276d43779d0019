#include "backend/raft/storage.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace synod::raft {

uint64_t EntriesSize(const std::vector<Entry>& ents) {
  uint64_t n = 0;
  for (const Entry& e : ents) n += e.data.size();
  return n;
}

void LimitSize(std::vector<Entry>* ents, uint64_t max_bytes) {
  if (ents->empty()) return;
  uint64_t size = (*ents)[0].data.size();
  size_t keep = 1;
  for (; keep < ents->size(); ++keep) {
    size += (*ents)[keep].data.size();
    if (size > max_bytes) break;
  }
  ents->resize(keep);
}

bool IsCompacted(const absl::Status& s) {
  return absl::IsOutOfRange(s) && s.message() == kErrCompacted;
}

namespace {
absl::Status Compacted() { return absl::OutOfRangeError(kErrCompacted); }
absl::Status Unavailable() { return absl::OutOfRangeError(kErrUnavailable); }
absl::Status SnapOutOfDate() {
  return absl::FailedPreconditionError(kErrSnapOutOfDate);
}
}  // namespace

MemoryStorage::MemoryStorage() { ents_.push_back(Entry{}); }

InitialState MemoryStorage::GetInitialState() const {
  absl::MutexLock l(&mu_);
  return raft::InitialState{hard_state_, conf_state_};
}

absl::StatusOr<std::vector<Entry>> MemoryStorage::Entries(
    uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  absl::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index;
  if (lo <= offset) return Compacted();
  if (hi > offset + ents_.size() || lo > hi) return Unavailable();
  std::vector<Entry> out(ents_.begin() + (lo - offset),
                         ents_.begin() + (hi - offset));
  LimitSize(&out, max_bytes);
  return out;
}

absl::StatusOr<uint64_t> MemoryStorage::Term(uint64_t i) const {
  absl::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index;
  if (i < offset) return Compacted();
  if (i - offset >= ents_.size()) return Unavailable();
  return ents_[i - offset].term;
}

uint64_t MemoryStorage::FirstIndex() const {
  absl::MutexLock l(&mu_);
  return ents_[0].index + 1;
}

uint64_t MemoryStorage::LastIndex() const {
  absl::MutexLock l(&mu_);
  return ents_[0].index + ents_.size() - 1;
}

absl::StatusOr<Snapshot> MemoryStorage::Snapshot() const {
  absl::MutexLock l(&mu_);
  if (snapshot_unavailable_) {
    return absl::UnavailableError(kErrSnapshotTemporarilyUnavailable);
  }
  return snapshot_;
}

void MemoryStorage::SetHardState(const HardState& hs) {
  absl::MutexLock l(&mu_);
  hard_state_ = hs;
}

void MemoryStorage::SetConfState(const ConfState& cs) {
  absl::MutexLock l(&mu_);
  conf_state_ = cs;
}

void MemoryStorage::TEST_SetSnapshotUnavailable(bool unavailable) {
  absl::MutexLock l(&mu_);
  snapshot_unavailable_ = unavailable;
}

absl::Status MemoryStorage::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  absl::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index;
  uint64_t first = entries[0].index;
  uint64_t last = first + entries.size() - 1;
  // Entirely covered by the snapshot: nothing new.
  if (last <= offset) return absl::OkStatus();
  size_t skip = first <= offset ? offset + 1 - first : 0;
  first += skip;
  if (first > offset + ents_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "raft: missing log entry [last: ", offset + ents_.size() - 1,
        ", append at: ", first, "]"));
  }
  ents_.resize(first - offset);
  ents_.insert(ents_.end(), entries.begin() + skip, entries.end());
  return absl::OkStatus();
}

absl::Status MemoryStorage::ApplySnapshot(const raft::Snapshot& snap) {
  absl::MutexLock l(&mu_);
  if (snapshot_.metadata.index >= snap.metadata.index) return SnapOutOfDate();
  snapshot_ = snap;
  conf_state_ = snap.metadata.conf_state;
  Entry dummy;
  dummy.index = snap.metadata.index;
  dummy.term = snap.metadata.term;
  ents_.assign(1, dummy);
  return absl::OkStatus();
}

absl::StatusOr<Snapshot> MemoryStorage::CreateSnapshot(uint64_t index,
                                                       const ConfState& cs,
                                                       std::string data) {
  absl::MutexLock l(&mu_);
  if (index <= snapshot_.metadata.index) return SnapOutOfDate();
  uint64_t offset = ents_[0].index;
  if (index > offset + ents_.size() - 1) return Unavailable();
  snapshot_.metadata.index = index;
  snapshot_.metadata.term = ents_[index - offset].term;
  snapshot_.metadata.conf_state = cs;
  snapshot_.data = std::move(data);
  return snapshot_;
}

absl::Status MemoryStorage::Compact(uint64_t compact_index) {
  absl::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index;
  if (compact_index <= offset) return Compacted();
  if (compact_index > offset + ents_.size() - 1) return Unavailable();
  size_t i = compact_index - offset;
  std::vector<Entry> rest;
  rest.reserve(ents_.size() - i);
  Entry dummy;
  dummy.index = ents_[i].index;
  dummy.term = ents_[i].term;
  rest.push_back(dummy);
  rest.insert(rest.end(), ents_.begin() + i + 1, ents_.end());
  ents_ = std::move(rest);
  return absl::OkStatus();
}

}  // namespace synod::raft
