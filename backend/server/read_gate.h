// ReadGate: linearizable reads waiting for this member to apply up to their
// ReadIndex (Raft thesis §6.4; etcd's linearizableReadLoop hands them to the
// read path the same way). The apply thread calls Release with each new
// applied index; released reads run on the gate's read threads, so a slow
// read never holds up apply.
//
// Ownership: the gate owns its read threads and the queued callbacks.
// Thread-safe: one leaf mutex; callbacks run on the read threads without it.
#ifndef SYNOD_BACKEND_SERVER_READ_GATE_H_
#define SYNOD_BACKEND_SERVER_READ_GATE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace synod::server {

class ReadGate {
 public:
  using Done = std::function<void(absl::Status)>;

  // Starts `threads` read threads (>= 1). `applied`: the applied index now.
  ReadGate(int threads, uint64_t applied);
  ~ReadGate();  // Stop()

  // Runs done(OK) on a read thread once the applied index reaches `index`
  // (at once if it has).
  void WaitApplied(uint64_t index, Done done);
  // Runs fn on a read thread.
  void Run(std::function<void()> fn);
  // The apply thread: everything up to `applied` is applied.
  void Release(uint64_t applied);
  // Fails waiting reads with kStopped, runs what is queued, joins the
  // threads. Idempotent.
  void Stop();

 private:
  void Loop();

  absl::Mutex mu_;
  uint64_t applied_ ABSL_GUARDED_BY(mu_);
  std::multimap<uint64_t, Done> waiting_ ABSL_GUARDED_BY(mu_);
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_READ_GATE_H_
