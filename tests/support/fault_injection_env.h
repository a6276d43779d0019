// FaultInjectionEnv: a leveldb::Env for storage tests that remembers, per
// file, how much of it was made durable by a Sync, and can then simulate a
// power loss (drop what was not synced) or a failing disk (every write
// fails). Test-only; never linked into synod. Tests hand it to the member's
// LevelDB through storage::BackendOptions::env.
//
// The model of durability, as LevelDB's own db/fault_injection_test.cc:
//   - File contents: the bytes appended through this env up to a file's last
//     successful WritableFile::Sync are durable; later bytes are not.
//   - File creation: a file created through this env is volatile until its
//     directory is synced. A Sync of a file created since its directory was
//     last synced also syncs the directory (LevelDB's posix Env fsyncs the
//     directory when it syncs a MANIFEST; the model, like LevelDB's test and
//     a journaling file system, treats every newly created file that way), so
//     what a power loss deletes is the files created and never synced since.
//   - Renames and removals are durable at once; a rename carries the file's
//     state to its new name.
//   - Files this env did not write (there before it, or written behind its
//     back) are durable as they are.
//
// Ownership: the base Env is not owned and must outlive this env; this env
// must outlive every file and DB opened through it.
// Thread-safe: LevelDB calls it from its writer and compaction threads while
// the test thread flips SetFilesystemActive; one mutex serialises every write
// and sync, so once SetFilesystemActive(false) returns no further byte
// reaches the base env.
#ifndef SYNOD_TESTS_SUPPORT_FAULT_INJECTION_ENV_H_
#define SYNOD_TESTS_SUPPORT_FAULT_INJECTION_ENV_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "backend/raft/random.h"
#include "leveldb/env.h"

namespace synod::testing {

class FaultInjectionEnv : public leveldb::EnvWrapper {
 public:
  // `base` holds the files: a memory env (leveldb::NewMemEnv) so a test
  // touches no disk, or leveldb::Env::Default(). Not owned.
  explicit FaultInjectionEnv(leveldb::Env* base);
  ~FaultInjectionEnv() override;
  FaultInjectionEnv(const FaultInjectionEnv&) = delete;
  FaultInjectionEnv& operator=(const FaultInjectionEnv&) = delete;

  // Simulates a power loss: deletes every file created and never synced
  // since its directory was last synced, and truncates every other file
  // written through this env to its size at its last Sync.
  // REQUIRES: no file of this env is open for writing (close the DB first;
  // a test that wants nothing of the shutdown to count calls
  // SetFilesystemActive(false) before closing). Works while the filesystem
  // is inactive (the loss is not a write by the program under test).
  // Errors: FailedPrecondition naming a file still open for writing;
  // Internal with the base env's message when it cannot truncate or delete.
  absl::Status DropUnsyncedData();

  // As DropUnsyncedData, but a torn power loss: each file keeps its synced
  // bytes plus a prefix, of a length drawn from `rnd` (0 to all), of its
  // unsynced bytes, and a created-never-synced file is deleted or kept (then
  // as any other file) on a coin flip from `rnd`. Files are visited in name
  // order, so a seed replays the same loss. Errors: as DropUnsyncedData.
  absl::Status DropRandomUnsyncedData(raft::Random* rnd);

  // false: every write through this env (create, append, flush, sync,
  // close, rename, remove, create or remove a directory) fails with
  // IOError "filesystem inactive" and reaches nothing on the base env;
  // reads keep working. true (the initial state): writes pass.
  void SetFilesystemActive(bool active);
  bool IsFilesystemActive() const;

  // Successful WritableFile::Sync calls since construction.
  int64_t sync_count() const;

  // leveldb::Env: the calls that create, change or remove files are tracked
  // (and fail while inactive); everything else goes to the base env.
  leveldb::Status NewWritableFile(const std::string& fname,
                                  leveldb::WritableFile** result) override;
  leveldb::Status NewAppendableFile(const std::string& fname,
                                    leveldb::WritableFile** result) override;
  leveldb::Status RemoveFile(const std::string& fname) override;
  leveldb::Status RenameFile(const std::string& src,
                             const std::string& target) override;
  leveldb::Status CreateDir(const std::string& dirname) override;
  leveldb::Status RemoveDir(const std::string& dirname) override;

 private:
  class TrackedFile;
  // What the env knows of one file it wrote. Shared by the env's table and
  // the file's open writers, so a rename keeps a writer pointing at it.
  // Every field is guarded by mu_.
  struct FileState {
    std::string name;
    uint64_t size = 0;         // bytes appended, total
    uint64_t synced_size = 0;  // of which durable
    int writers = 0;           // TrackedFiles open on it
  };
  // Called by TrackedFile.
  leveldb::Status Append(FileState* state, leveldb::WritableFile* base,
                         const leveldb::Slice& data);
  leveldb::Status Flush(FileState* state, leveldb::WritableFile* base);
  leveldb::Status Sync(FileState* state, leveldb::WritableFile* base);
  leveldb::Status Close(FileState* state, leveldb::WritableFile* base);
  void WriterGone(FileState* state);

  // `rnd` null: the plain loss (DropUnsyncedData).
  absl::Status DropUnsynced(raft::Random* rnd);
  // Cuts the base env's file `fname` to its first `size` bytes.
  leveldb::Status TruncateBase(const std::string& fname, uint64_t size);
  // Hands out a writer on `state`.
  leveldb::Status Track(std::shared_ptr<FileState> state,
                        std::unique_ptr<leveldb::WritableFile> base,
                        leveldb::WritableFile** result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DirectorySynced(const std::string& dir)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  bool active_ ABSL_GUARDED_BY(mu_) = true;
  int64_t sync_count_ ABSL_GUARDED_BY(mu_) = 0;
  // Every file written through this env, by name (ordered: a seeded loss
  // visits files in a fixed order).
  std::map<std::string, std::shared_ptr<FileState>> files_ ABSL_GUARDED_BY(mu_);
  // Files created since their directory was last synced.
  std::set<std::string> created_unsynced_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::testing

#endif  // SYNOD_TESTS_SUPPORT_FAULT_INJECTION_ENV_H_
