// KeyIndex: the in-memory history of one key, every revision still on disk,
// oldest first. The generations of etcd's keyIndex are implied: a tombstone
// closes a generation, and the next put opens a new one (create_revision is
// that put's main revision, version restarts at 1).
//
// Each entry carries what a Range needs besides the value (create_revision,
// version, lease), so keys_only/count_only reads and txn compares other than
// VALUE never touch LevelDB.
//
// Not thread-safe: KvStore guards every KeyIndex with its index mutex.
#ifndef SYNOD_BACKEND_MVCC_KEY_INDEX_H_
#define SYNOD_BACKEND_MVCC_KEY_INDEX_H_

#include <cstdint>
#include <vector>

namespace synod::mvcc {

// A revision: main is the store revision of the write, sub orders the writes
// of one txn. Both >= 0.
struct Revision {
  int64_t main = 0;
  int64_t sub = 0;
  friend bool operator<(const Revision& a, const Revision& b) {
    return a.main != b.main ? a.main < b.main : a.sub < b.sub;
  }
  friend bool operator==(const Revision& a, const Revision& b) {
    return a.main == b.main && a.sub == b.sub;
  }
};

struct IndexEntry {
  Revision rev;                 // mod_revision is rev.main
  int64_t create_revision = 0;  // 0 for a tombstone
  int64_t version = 0;          // 0 for a tombstone, else >= 1
  int64_t lease = 0;
  bool tombstone() const { return version == 0; }
};

class KeyIndex {
 public:
  // The newest entry with rev.main <= at_rev, or nullptr. The entry may be a
  // tombstone (the key did not exist at at_rev).
  const IndexEntry* At(int64_t at_rev) const;

  // The newest entry, or nullptr if empty.
  const IndexEntry* Last() const {
    return entries_.empty() ? nullptr : &entries_.back();
  }

  // Appends a put at `rev` with `lease`, computing create_revision and
  // version from the previous entry. REQUIRES: rev newer than Last().
  const IndexEntry& Put(Revision rev, int64_t lease);

  // Appends a tombstone at `rev`. REQUIRES: Last() is a live put.
  void Tombstone(Revision rev);

  // Appends `e` as it was stored (start-up rebuild).
  // REQUIRES: e.rev newer than Last().
  void Restore(const IndexEntry& e) { entries_.push_back(e); }

  // Compacts at main revision `at_rev` (etcd's compaction rule): the newest
  // entry with main <= at_rev is kept unless it is a tombstone older than
  // at_rev (one at exactly at_rev stays, so a watch from at_rev loses no
  // event); every older one is dropped. Dropped revisions are appended to `dropped`.
  // Returns true when the index is empty afterwards (the key can be erased).
  bool Compact(int64_t at_rev, std::vector<Revision>* dropped);

  // Drops every entry with main > rev (undo of unpublished writes).
  // Returns true when empty afterwards.
  bool TruncateAfter(int64_t rev);

  const std::vector<IndexEntry>& entries() const { return entries_; }

 private:
  std::vector<IndexEntry> entries_;
};

}  // namespace synod::mvcc

#endif  // SYNOD_BACKEND_MVCC_KEY_INDEX_H_
