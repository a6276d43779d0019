// The server side of etcd's LeaseKeepAlive stream, as the member and
// synod-proxy serve it: every request read is handed to a renew function,
// which answers it (the lease id and its new TTL, 0 for an unknown lease)
// through a KeepAliveSink, at once or later, from any thread. Answers go
// out in the order they come, one write in flight (ServerStreamWriter).
//
// Half-close: every request read is answered, also after the client
// half-closes; the stream ends (OK) once the client has half-closed and
// every request read has been answered and written (python-etcd3's
// lease.refresh() sends one request and half-closes; etcd answers it, then
// ends the stream). A cancelled or broken stream ends without waiting for
// answers still due, and drops them.
//
// Ownership: a KeepAliveStream owns itself from construction until gRPC's
// OnDone. Its sink may outlive it (a renewer may keep it); answers given
// after the stream ended are dropped. Thread-safe.
#ifndef SYNOD_COMMON_KEEP_ALIVE_STREAM_H_
#define SYNOD_COMMON_KEEP_ALIVE_STREAM_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "common/stream_writer.h"
#include "proto/rpc.pb.h"

namespace synod::common {

// Where the answer to a keep-alive request goes.
class KeepAliveSink {
 public:
  virtual ~KeepAliveSink() = default;
  // Thread-safe; may be called with no lock of the caller's held only.
  virtual void Deliver(const etcdserverpb::LeaseKeepAliveResponse& r) = 0;
};

class KeepAliveStream final
    : public ServerStreamWriter<etcdserverpb::LeaseKeepAliveRequest,
                                etcdserverpb::LeaseKeepAliveResponse> {
 public:
  // Renews lease `lease_id` and calls sink->Deliver with its answer exactly
  // once, on any thread, possibly before returning. Called on a gRPC
  // thread, one request of the stream at a time, with no lock held.
  using Renew = std::function<void(int64_t lease_id,
                                   const std::shared_ptr<KeepAliveSink>& sink)>;

  // Starts reading requests.
  explicit KeepAliveStream(Renew renew);

  void OnReadDone(bool ok) override;
  void OnDone() override;

 private:
  class Sink;

  // One answer from the renewer.
  void Answer(const etcdserverpb::LeaseKeepAliveResponse& r);
  bool AnswersDueLocked() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return unanswered_ > 0;
  }

  const Renew renew_;
  const std::shared_ptr<Sink> sink_;
  etcdserverpb::LeaseKeepAliveRequest req_;
  // Requests read whose answer has not come back from the renewer.
  int64_t unanswered_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace synod::common

#endif  // SYNOD_COMMON_KEEP_ALIVE_STREAM_H_
