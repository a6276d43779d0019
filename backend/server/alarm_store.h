// AlarmStore: the cluster's alarms (etcd's etcdserver/api/v3alarm), as
// replicated state. An alarm is raised or cleared only by applying an Alarm
// request from the Raft log, so every member holds the same list at the same
// applied index, and the list travels in snapshots (it is stored under
// storage::kMetaAlarms, in the same batch as the entry that changed it).
//
// What the alarms mean is decided elsewhere (the applier refuses writes while
// NOSPACE is raised and everything while CORRUPT is raised, as etcd's capped
// and corrupt appliers); this class only keeps the list.
//
// Thread-safe: Activate/Deactivate/Load run on the apply thread; Get, Has and
// Empty may be called from any thread. The mutex is a leaf lock.
#ifndef SYNOD_BACKEND_SERVER_ALARM_STORE_H_
#define SYNOD_BACKEND_SERVER_ALARM_STORE_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "backend/storage/backend.h"
#include "proto/rpc.pb.h"

namespace synod::server {

class AlarmStore {
 public:
  AlarmStore() = default;

  // Replaces the list with the one stored in `backend` (none stored: empty).
  // Called at start and after installing a snapshot. Errors: DataLoss when
  // the stored record does not decode; the backend's read errors.
  absl::Status Load(storage::Backend* backend);

  // Raises alarm `type` for member `member_id`, staging the new list in
  // `batch`. Returns the alarm if it was not raised before, nullopt if it
  // was (or `type` is NONE): etcd's AlarmStore.Activate.
  std::optional<etcdserverpb::AlarmMember> Activate(
      uint64_t member_id, etcdserverpb::AlarmType type, storage::Batch* batch);

  // Clears every alarm that matches: `member_id` 0 matches any member and
  // `type` NONE any type (etcd clears one exact pair; `etcdctl alarm disarm`
  // sends one request per listed alarm, which this serves the same way).
  // Stages the new list in `batch` when something was cleared. Returns the
  // cleared alarms.
  std::vector<etcdserverpb::AlarmMember> Deactivate(
      uint64_t member_id, etcdserverpb::AlarmType type, storage::Batch* batch);

  // The raised alarms matching `member_id` (0 = any) and `type` (NONE =
  // any), in the order they were raised.
  std::vector<etcdserverpb::AlarmMember> Get(
      uint64_t member_id = 0,
      etcdserverpb::AlarmType type = etcdserverpb::NONE) const;

  // Whether any member has alarm `type` raised. Lock-free.
  bool Has(etcdserverpb::AlarmType type) const;

 private:
  void PersistLocked(storage::Batch* batch) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshFlagsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<etcdserverpb::AlarmMember> alarms_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> nospace_{false};
  std::atomic<bool> corrupt_{false};
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_ALARM_STORE_H_
