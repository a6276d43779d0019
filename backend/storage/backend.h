// Backend: Synod's durable store, a thin wrapper over one LevelDB database.
// It is the only place that includes leveldb/, and it converts LevelDB status
// to absl::Status at its edge.
//
// Everything a member keeps lives here, under the key schema in schema.h:
// MVCC revisions, leases, and meta keys (applied index, compacted revision,
// alarms, format version). A Batch is applied atomically; with sync=true it is
// durable (fsync) before Write() returns.
//
// Thread-safe: Write, Get and NewIterator may be called from any thread.
// Writes are serialised by the Backend (see Write); reads run concurrently
// (LevelDB's own guarantee). The Backend owns the LevelDB handle.
#ifndef SYNOD_BACKEND_STORAGE_BACKEND_H_
#define SYNOD_BACKEND_STORAGE_BACKEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace leveldb {
class DB;
class Env;
class Iterator;
class Snapshot;
class WriteBatch;
}  // namespace leveldb

namespace synod::storage {

// A set of writes applied atomically by Backend::Write.
// Not thread-safe.
class Batch {
 public:
  Batch();
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  void Put(absl::string_view key, absl::string_view value);
  void Delete(absl::string_view key);
  // Approximate encoded size, bytes.
  size_t ApproximateSize() const;
  // Number of Put and Delete calls since construction or Clear().
  int Count() const { return count_; }
  void Clear();

 private:
  friend class Backend;
  std::unique_ptr<leveldb::WriteBatch> batch_;
  int count_ = 0;
};

// A forward iterator over a consistent view of the keys.
// Not thread-safe; REQUIRES for key()/value()/Next(): Valid().
class Iterator {
 public:
  ~Iterator();
  void Seek(absl::string_view target);
  bool Valid() const;
  void Next();
  absl::string_view key() const;
  absl::string_view value() const;
  absl::Status status() const;

 private:
  friend class Backend;
  Iterator(leveldb::Iterator* it, const leveldb::Snapshot* snap,
           leveldb::DB* db);
  std::unique_ptr<leveldb::Iterator> it_;
  const leveldb::Snapshot* snapshot_;  // released in the destructor
  leveldb::DB* db_;
};

struct BackendOptions {
  // The LevelDB Env every file of the database (and DiskSizeBytes) goes
  // through; nullptr: leveldb::Env::Default(), the real file system. Tests
  // pass a memory env (leveldb::NewMemEnv) or tests/support's
  // FaultInjectionEnv. Not owned; must outlive the Backend. A caller needs
  // only the forward declaration above, not LevelDB's headers.
  leveldb::Env* env = nullptr;
  // LevelDB block cache size, bytes.
  size_t block_cache_bytes = 32 << 20;
  // LevelDB write buffer (memtable) size, bytes.
  size_t write_buffer_bytes = 8 << 20;
};

class Backend {
 public:
  // Opens (creating if needed) the database in directory `path`.
  // Errors: Internal or DataLoss with LevelDB's message when the directory
  // cannot be opened or is corrupt.
  static absl::StatusOr<std::unique_ptr<Backend>> Open(
      const std::string& path, const BackendOptions& options = {});
  ~Backend();

  // Applies `batch` atomically. sync=true: durable (fsync'd) on return.
  // One write at a time. Once a write has failed, synced or not, every
  // later Write fails too, with the first error, until the Backend is
  // reopened: LevelDB's log writer counts the bytes of a failed append as
  // written, so records appended after it are misplaced in the log and
  // recovery drops them, synced ones included (storage_fault_test).
  // Errors: Internal with LevelDB's message; Internal "refusing writes
  // after a failed write: ..." after one failed. The caller must treat a
  // failed write as fatal: the state on disk is unknown.
  absl::Status Write(Batch* batch, bool sync) ABSL_LOCKS_EXCLUDED(write_mu_);

  // Reads one key. Returns nullopt when absent.
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view key) const;

  // An iterator over a snapshot taken now. Caller owns it.
  std::unique_ptr<Iterator> NewIterator() const;

  // Compacts LevelDB's files over the whole key space (defragment).
  void CompactAll();

  // Bytes used by the database files on disk (sum of file sizes in the
  // directory). Cheap enough to call after each write batch.
  int64_t DiskSizeBytes() const;

  const std::string& path() const { return path_; }

 private:
  Backend(std::string path, leveldb::DB* db, leveldb::Env* env);
  std::string path_;
  std::unique_ptr<leveldb::DB> db_;
  leveldb::Env* env_;
  // Serialises writes, so none starts after one has failed. A leaf: held
  // only around LevelDB's write (callers may hold their own locks).
  absl::Mutex write_mu_;
  // The first failed write's error; OK while every write succeeded.
  absl::Status write_error_ ABSL_GUARDED_BY(write_mu_);
  struct CacheHolder;
  std::unique_ptr<CacheHolder> cache_;
};

}  // namespace synod::storage

#endif  // SYNOD_BACKEND_STORAGE_BACKEND_H_
