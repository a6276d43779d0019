// A Watch stream's reactor, as the member and synod-proxy serve it (etcd's
// v3rpc/watch.go): the read side hands each request (create, cancel,
// progress) to the subclass in stream order, and the send side writes
// responses one at a time from a bounded queue (ServerStreamWriter),
// splitting the responses of watchers that asked for `fragment` by etcd's
// sendFragments rule (AppendWatchFragments) at the server's request limit.
//
// Also etcd's error strings for watch creation, which both servers answer
// with.
//
// Thread-safety: as ServerStreamWriter; AppendWatchFragments is a pure
// function.
#ifndef SYNOD_COMMON_WATCH_STREAM_H_
#define SYNOD_COMMON_WATCH_STREAM_H_

#include <cstddef>
#include <limits>
#include <vector>

#include "common/stream_writer.h"
#include "proto/rpc.pb.h"

namespace synod::common {

// etcd's cancel reasons for a refused watch creation (mvcc/watcher.go).
inline constexpr char kWatcherRangeEmpty[] = "mvcc: watcher range is empty";
inline constexpr char kWatcherDuplicateId[] =
    "mvcc: duplicate watch ID provided on the WatchStream";

// etcd's sendFragments: a response of at least `limit` bytes (serialized)
// with more than one event is split over several, each cut before the
// event that would make it reach `limit` (a single event larger than
// `limit` goes alone); every part but the last is marked `fragment`, and
// each keeps the response's other fields. Without `fragment`, or when
// smaller, `resp` goes whole. Appends the parts to `out`.
// etcd's limit is its --max-request-bytes plus a 512 KiB allowance for gRPC
// overhead; Synod passes the server's request limit itself.
void AppendWatchFragments(etcdserverpb::WatchResponse resp, bool fragment,
                          size_t limit,
                          std::vector<etcdserverpb::WatchResponse>* out);

struct WatchStreamLimits {
  // Where a fragment watcher's responses are split: the server's request
  // limit (the member's --max-request-bytes, the proxy's --max-send-bytes),
  // in bytes, > 0.
  size_t fragment_bytes = 1572864;
  // FullLocked() holds once this many responses, or bytes, are queued
  // (max_queued_bytes > 0, so that an empty queue is never full).
  size_t max_queued_responses = std::numeric_limits<size_t>::max();
  size_t max_queued_bytes = 1 << 20;
};

// The base of a Watch stream's reactor. The subclass calls StartReading at
// the end of its constructor, handles requests (Create, CancelWatch,
// RequestProgress) and queues responses under mu_ with EnqueueLocked (or
// EnqueueDeferredLocked when part of a response is read on the send path).
// When the client half-closes (or the call ends), StopWatching runs and the
// stream finishes (OK) once what is queued is written. The subclass owns
// itself until gRPC's OnDone, as any reactor.
class WatchStreamReactor
    : public ServerStreamWriter<etcdserverpb::WatchRequest,
                                etcdserverpb::WatchResponse> {
 public:
  void OnReadDone(bool ok) final;

 protected:
  explicit WatchStreamReactor(WatchStreamLimits limits) : limits_(limits) {}

  // Starts reading requests. Call once, when the subclass is ready for them.
  void StartReading() { StartRead(&req_); }

  // The requests, each called on a gRPC thread, one at a time in stream
  // order, with no lock held.
  virtual void Create(const etcdserverpb::WatchCreateRequest& c) = 0;
  // etcd ignores an unknown id.
  virtual void CancelWatch(int64_t watch_id) = 0;
  virtual void RequestProgress() = 0;
  // The read side has ended: stop every watcher of the stream. Called once,
  // with no lock held; the stream then finishes once its queue drains.
  virtual void StopWatching() = 0;

  // Queues `resp`, split into fragments if `fragment` (AppendWatchFragments
  // at limits.fragment_bytes). Dropped once the stream is broken or
  // finished.
  void EnqueueLocked(etcdserverpb::WatchResponse resp, bool fragment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Queues `resp` to be completed by FillDeferred on the send path (with no
  // lock held; see ServerStreamWriter::PushDeferredLocked) and then split
  // if `fragment`; it counts `bytes` (an estimate) until then.
  void EnqueueDeferredLocked(etcdserverpb::WatchResponse resp, size_t bytes,
                             bool fragment) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Completes a response queued by EnqueueDeferredLocked, just before it is
  // written. Called on a gRPC thread, no lock held. The default does
  // nothing.
  virtual void FillDeferred(etcdserverpb::WatchResponse* resp) {}

  // The queue has reached limits.max_queued_responses or max_queued_bytes:
  // the subclass should stop taking events for it (its watchers fall
  // behind, or are canceled) rather than queue without bound.
  bool FullLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return QueuedLocked() >= limits_.max_queued_responses ||
           QueuedBytesLocked() >= limits_.max_queued_bytes;
  }

 private:
  const WatchStreamLimits limits_;
  etcdserverpb::WatchRequest req_;
};

}  // namespace synod::common

#endif  // SYNOD_COMMON_WATCH_STREAM_H_
