// AlarmRaiser: proposes alarms through Raft (etcd raises NOSPACE and CORRUPT
// by proposing an AlarmRequest, so alarms are cluster state). At most one
// proposal per (member, type) is in flight; whoever asks while one is in
// flight waits for that one.
//
// Ownership: borrows the AlarmStore; `propose` must outlive it.
// Thread-safe: one leaf mutex; callbacks run without it.
#ifndef SYNOD_BACKEND_SERVER_ALARM_RAISER_H_
#define SYNOD_BACKEND_SERVER_ALARM_RAISER_H_

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "backend/server/alarm_store.h"
#include "proto/internal.pb.h"
#include "proto/rpc.pb.h"

namespace synod::server {

class AlarmRaiser {
 public:
  using Done = std::function<void(absl::Status)>;
  // Proposes `req` through Raft; `done` runs once it is applied or failed.
  using Propose = std::function<void(synodpb::Request req, Done done)>;

  AlarmRaiser(const AlarmStore* alarms, Propose propose)
      : alarms_(alarms), propose_(std::move(propose)) {}

  // Raises alarm `type` for member `member_id`. `then` (may be empty) runs
  // once that proposal is applied or failed (with its status), or at once
  // with OK when the alarm is already raised. Failures are logged.
  void Raise(uint64_t member_id, etcdserverpb::AlarmType type,
             Done then = nullptr);

 private:
  const AlarmStore* const alarms_;
  const Propose propose_;
  absl::Mutex mu_;
  // (member id, type) -> what waits for the proposal in flight.
  absl::flat_hash_map<std::pair<uint64_t, int>, std::vector<Done>> raising_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_ALARM_RAISER_H_
