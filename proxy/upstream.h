// The proxy's view of the cluster it fronts.
//
// Endpoints: the member endpoints from --endpoints, one gRPC channel each,
// and which one is current. A call that fails with UNAVAILABLE reports it
// and the next endpoint becomes current (round robin), so later calls and
// re-created watches go to another member.
//
// Upstream: the abstract interface the watch and cache logic use to reach
// the cluster (a watch stream per range, a quorum read for the current
// revision). GrpcUpstream implements it over Endpoints; unit tests use a
// fake.
//
// Thread-safety: Endpoints and GrpcUpstream are safe for concurrent use.
// Callbacks run on gRPC threads, never while a lock of the caller is held
// by this module.
#ifndef SYNOD_PROXY_UPSTREAM_H_
#define SYNOD_PROXY_UPSTREAM_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "proto/rpc.grpc.pb.h"
#include "proto/rpc.pb.h"

namespace synod::proxy {

// The member endpoints and the current one.
class Endpoints {
 public:
  // `endpoints`: "host:port" or "http://host:port"; at least one.
  // `max_send_bytes` / `max_recv_bytes`: the largest message sent to /
  // accepted from a member, in bytes (> 0). A call whose request is larger
  // than `max_send_bytes` is not sent; it fails as the member fails a
  // request over its --max-request-bytes: INVALID_ARGUMENT "etcdserver:
  // request is too large".
  Endpoints(std::vector<std::string> endpoints, int max_send_bytes,
            int max_recv_bytes);

  // The channel of the current endpoint and its index (for ReportFailure).
  std::shared_ptr<grpc::Channel> Current(size_t* index);
  // The call on endpoint `index` failed with UNAVAILABLE: if it is still
  // the current one, the next endpoint becomes current.
  void ReportFailure(size_t index);
  size_t size() const { return endpoints_.size(); }
  const std::string& endpoint(size_t i) const { return endpoints_[i]; }

 private:
  const std::vector<std::string> endpoints_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::atomic<size_t> current_{0};
};

// Callbacks of one upstream watch stream. Both run on gRPC threads, one at a
// time and in stream order.
struct UpstreamWatchCallbacks {
  // Every response on the stream (created, events, progress, canceled).
  std::function<void(const etcdserverpb::WatchResponse&)> on_response;
  // The stream ended; called once, after the last on_response.
  std::function<void(const grpc::Status&)> on_closed;
};

// One upstream watch stream carrying one watcher.
class UpstreamWatch {
 public:
  virtual ~UpstreamWatch() = default;
  // Sends a WatchProgressRequest on the stream.
  virtual void RequestProgress() = 0;
  // Ends the stream. Callbacks may still run until on_closed (which may
  // already have run).
  virtual void Close() = 0;
};

struct UpstreamKeepAliveCallbacks {
  std::function<void(const etcdserverpb::LeaseKeepAliveResponse&)>
      on_response;
  std::function<void(const grpc::Status&)> on_closed;
};

// One upstream LeaseKeepAlive stream, shared by every lease.
class UpstreamKeepAlive {
 public:
  virtual ~UpstreamKeepAlive() = default;
  // Sends one keep-alive request for `lease_id`.
  virtual void Send(int64_t lease_id) = 0;
  virtual void Close() = 0;
};

class Upstream {
 public:
  virtual ~Upstream() = default;
  // Opens a stream with one watcher created by `create`.
  virtual std::shared_ptr<UpstreamWatch> Watch(
      const etcdserverpb::WatchCreateRequest& create,
      UpstreamWatchCallbacks callbacks) = 0;
  // Opens a LeaseKeepAlive stream.
  virtual std::shared_ptr<UpstreamKeepAlive> KeepAlive(
      UpstreamKeepAliveCallbacks callbacks) = 0;
  // A linearizable (quorum) read; `done` gets the cluster's current
  // revision or the error.
  virtual void CurrentRevision(
      const std::string& key,
      std::function<void(absl::StatusOr<int64_t>)> done) = 0;
  // A full Range, forwarded as is (with failover on UNAVAILABLE).
  virtual void Range(
      const etcdserverpb::RangeRequest& req,
      std::function<void(const grpc::Status&,
                         const etcdserverpb::RangeResponse&)> done) = 0;
};

// Upstream over real members.
class GrpcUpstream final : public Upstream {
 public:
  explicit GrpcUpstream(Endpoints* endpoints) : endpoints_(endpoints) {}
  std::shared_ptr<UpstreamWatch> Watch(
      const etcdserverpb::WatchCreateRequest& create,
      UpstreamWatchCallbacks callbacks) override;
  std::shared_ptr<UpstreamKeepAlive> KeepAlive(
      UpstreamKeepAliveCallbacks callbacks) override;
  void CurrentRevision(
      const std::string& key,
      std::function<void(absl::StatusOr<int64_t>)> done) override;
  void Range(const etcdserverpb::RangeRequest& req,
             std::function<void(const grpc::Status&,
                                const etcdserverpb::RangeResponse&)> done)
      override;

 private:
  Endpoints* endpoints_;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_UPSTREAM_H_
