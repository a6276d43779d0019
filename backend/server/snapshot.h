// Snapshot files: what `etcdctl snapshot save` receives from Maintenance.
// Snapshot, and what `synod --restore-snapshot FILE` loads into an empty data
// dir.
//
// Format (PERSISTENT: bump the magic to change it):
//   "SYNODSNAP2\n"
//   records: varint32 key length (> 0), key, varint32 value length, value
//            (every LevelDB key of the member at one point in time)
//   end:     a zero byte (a key length of 0)
//   padding: zero bytes, then the padding length (2 bytes big-endian), so
//            that everything so far is a multiple of 512 bytes
//   digest:  SHA-256 of everything before it (32 bytes).
// The 512-byte alignment and the trailing SHA-256 are what `etcdctl
// snapshot save` checks for (etcd appends the digest the same way). The
// body is not etcd's bbolt format: `etcdctl snapshot status/restore` do not
// read it; `synod --restore-snapshot` does.
//
// Not thread-safe; a SnapshotWriter reads a consistent LevelDB snapshot.
#ifndef SYNOD_BACKEND_SERVER_SNAPSHOT_H_
#define SYNOD_BACKEND_SERVER_SNAPSHOT_H_

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "backend/storage/backend.h"

namespace synod::server {

class SnapshotWriter {
 public:
  // `backend` not owned; must outlive the writer.
  explicit SnapshotWriter(storage::Backend* backend);
  // Fills `chunk` with the next bytes (up to ~64 KiB); *last is true when the
  // chunk ends the stream. Errors: storage errors.
  absl::Status Next(std::string* chunk, bool* last);

 private:
  std::unique_ptr<storage::Iterator> it_;
  bool started_ = false;
  bool done_ = false;
  uint64_t written_ = 0;  // bytes before the digest
  struct Sha;
  std::shared_ptr<Sha> sha_;
};

// Loads snapshot file `path` into `backend` (which should be empty) and
// syncs. Only the keyspace (all revisions, the compacted revision), the auth
// state and the
// leases are kept: the member then bootstraps a new cluster from its own
// --initial-cluster flags, as after `etcdctl snapshot restore`, so every
// member of the new cluster can be restored from the same file. Errors: DataLoss "snapshot file ... is corrupt" on a bad magic,
// record or digest; NotFound if the file cannot be read.
absl::Status RestoreSnapshot(const std::string& path, storage::Backend* backend);

// The record encoding of snapshot streams (LevelDB's varint32): appends `v`;
// reads one, advancing `in`, false when truncated or over 5 bytes.
void PutVarint32(std::string* dst, uint32_t v);
bool GetVarint32(absl::string_view* in, uint32_t* v);

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_SNAPSHOT_H_
