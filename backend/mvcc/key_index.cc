#include "backend/mvcc/key_index.h"

#include <algorithm>

namespace synod::mvcc {

const IndexEntry* KeyIndex::At(int64_t at_rev) const {
  // First entry with main > at_rev; the one before it is the answer.
  auto it = std::upper_bound(
      entries_.begin(), entries_.end(), at_rev,
      [](int64_t rev, const IndexEntry& e) { return rev < e.rev.main; });
  if (it == entries_.begin()) return nullptr;
  return &*(it - 1);
}

const IndexEntry& KeyIndex::Put(Revision rev, int64_t lease) {
  IndexEntry e;
  e.rev = rev;
  e.lease = lease;
  const IndexEntry* last = Last();
  if (last == nullptr || last->tombstone()) {
    e.create_revision = rev.main;
    e.version = 1;
  } else {
    e.create_revision = last->create_revision;
    e.version = last->version + 1;
  }
  entries_.push_back(e);
  return entries_.back();
}

void KeyIndex::Tombstone(Revision rev) {
  IndexEntry e;
  e.rev = rev;
  entries_.push_back(e);
}

bool KeyIndex::Compact(int64_t at_rev, std::vector<Revision>* dropped) {
  auto it = std::upper_bound(
      entries_.begin(), entries_.end(), at_rev,
      [](int64_t rev, const IndexEntry& e) { return rev < e.rev.main; });
  // [begin, it) have main <= at_rev. Keep the newest of them unless it is a
  // tombstone older than at_rev. A tombstone at exactly at_rev is kept until
  // the next compaction, so that a watch from at_rev (which etcd allows)
  // still sees every event of that revision.
  if (it == entries_.begin()) return entries_.empty();
  auto keep_from = it - 1;
  if (keep_from->tombstone() && keep_from->rev.main < at_rev) keep_from = it;
  for (auto d = entries_.begin(); d != keep_from; ++d) dropped->push_back(d->rev);
  entries_.erase(entries_.begin(), keep_from);
  return entries_.empty();
}

bool KeyIndex::TruncateAfter(int64_t rev) {
  while (!entries_.empty() && entries_.back().rev.main > rev) {
    entries_.pop_back();
  }
  return entries_.empty();
}

}  // namespace synod::mvcc
