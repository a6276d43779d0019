// Snapshot files: what `etcdctl snapshot save` receives from Maintenance.
// Snapshot, and what `synod --restore-snapshot FILE` loads into an empty data
// dir.
//
// Format (PERSISTENT: bump the magic to change it):
//   "SYNODSNAP1\n"
//   records: varint32 key length, key, varint32 value length, value
//            (every LevelDB key of the member at one point in time)
//   trailer: a zero byte, then the CRC-32 (IEEE, 4 bytes big-endian) of all
//            bytes before the trailer.
// Not etcd's bbolt format: `etcdctl snapshot status/restore` do not read it.
//
// Not thread-safe; a SnapshotWriter reads a consistent LevelDB snapshot.
#ifndef SYNOD_BACKEND_SERVER_SNAPSHOT_H_
#define SYNOD_BACKEND_SERVER_SNAPSHOT_H_

#include <memory>
#include <string>

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
  uint32_t crc_;
};

// Loads snapshot file `path` into `backend` (which should be empty) and
// syncs. Errors: DataLoss "snapshot file ... is corrupt" on a bad magic,
// record or checksum; NotFound if the file cannot be read.
absl::Status RestoreSnapshot(const std::string& path, storage::Backend* backend);

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_SNAPSHOT_H_
