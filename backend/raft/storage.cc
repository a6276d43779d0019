#include "backend/raft/storage.h"

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

namespace {
absl::Status Unavailable(uint64_t i) {
  return absl::OutOfRangeError(
      absl::StrCat("raft: requested entry at index is unavailable (", i, ")"));
}
}  // namespace

MemoryStorage::MemoryStorage() { ents_.push_back(Entry{}); }

HardState MemoryStorage::InitialState() const {
  absl::MutexLock l(&mu_);
  return hard_state_;
}

absl::StatusOr<std::vector<Entry>> MemoryStorage::Entries(
    uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  absl::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index;
  if (lo <= offset || hi > offset + ents_.size() || lo > hi) {
    return Unavailable(lo);
  }
  std::vector<Entry> out(ents_.begin() + (lo - offset),
                         ents_.begin() + (hi - offset));
  LimitSize(&out, max_bytes);
  return out;
}

absl::StatusOr<uint64_t> MemoryStorage::Term(uint64_t i) const {
  absl::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index;
  if (i < offset || i - offset >= ents_.size()) return Unavailable(i);
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

void MemoryStorage::SetHardState(const HardState& hs) {
  absl::MutexLock l(&mu_);
  hard_state_ = hs;
}

absl::Status MemoryStorage::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  absl::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index;
  uint64_t first = entries[0].index;
  if (first <= offset || first > offset + ents_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "raft: missing log entry [last: ", offset + ents_.size() - 1,
        ", append at: ", first, "]"));
  }
  ents_.resize(first - offset);
  ents_.insert(ents_.end(), entries.begin(), entries.end());
  return absl::OkStatus();
}

}  // namespace synod::raft
