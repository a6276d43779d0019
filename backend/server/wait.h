// WaitRegistry: the proposals this member made and waits on, by request ID
// (etcd's pkg/wait). A proposal registers before it enters Raft; the apply
// thread takes its waiter when the entry is applied here, and the timer
// fails the ones past their deadline with etcd's "request timed out".
//
// Ownership: the registry owns the waiters (their callbacks and deadlines);
// a waiter's response message belongs to the caller.
// Thread-safe: one leaf mutex; callbacks run after it is released.
#ifndef SYNOD_BACKEND_SERVER_WAIT_H_
#define SYNOD_BACKEND_SERVER_WAIT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"

namespace synod::server {

class WaitRegistry {
 public:
  using Done = std::function<void(absl::Status)>;
  struct Waiter {
    google::protobuf::Message* resp = nullptr;  // the caller's; may be null
    Done done;
    absl::Time deadline;
  };

  // `max_pending`: waiters held at most (etcd's bound of 5,000 proposals
  // between commit and apply).
  explicit WaitRegistry(size_t max_pending) : max_pending_(max_pending) {}

  // Registers `w` under `id` (unique), moving from it. False, with `w`
  // left as it was, when max_pending waiters are held (the caller answers
  // w.done with kTooManyRequests).
  bool Register(uint64_t id, Waiter&& w);
  // Removes and returns the waiter of `id`, if it still waits.
  std::optional<Waiter> Take(uint64_t id);
  // Runs the waiter of `id`, if any, with `st`.
  void Fail(uint64_t id, const absl::Status& st);
  // Fails every waiter whose deadline is at or before `now` with kTimeout
  // ("etcdserver: request timed out").
  void ExpireBefore(absl::Time now);
  // Fails every waiter with `st` (kStopped when the member stops).
  void FailAll(const absl::Status& st);
  size_t size() const;

 private:
  const size_t max_pending_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_WAIT_H_
