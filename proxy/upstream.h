// The proxy's view of the cluster it fronts.
//
// Endpoints: the member endpoints from --endpoints, one gRPC channel each,
// and which one is current. A call that fails with UNAVAILABLE reports it
// and the next endpoint becomes current (round robin), so later calls and
// re-created watches go to another member. Channels to "https://" members
// (and, when a TLS flag is set, to members without a scheme) use TLS, as
// etcd's clientv3 decides (see UpstreamOptions).
//
// Upstream: the abstract interface the watch, cache and auth logic use to
// reach the cluster (a watch stream per range, ranges, the cluster's auth
// state). GrpcUpstream implements it over Endpoints; unit tests use a fake.
//
// Credentials: watches, the keep-alive stream, CurrentRevision and
// AuthStatus go as the proxy's own identity (ProxyIdentity: its token, and
// one re-authentication and retry when the member says the token is no
// good). Range says whose credentials it carries (CallAs): the proxy's, or
// a client's token as the client sent it (never re-authenticated: the
// client's own library does that on the member's answer).
//
// Thread-safety: Endpoints and GrpcUpstream are safe for concurrent use.
// Callbacks run on gRPC threads, never while a lock of the caller is held
// by this module.
#ifndef SYNOD_PROXY_UPSTREAM_H_
#define SYNOD_PROXY_UPSTREAM_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/tls.h"
#include "proto/rpc.grpc.pb.h"
#include "proto/rpc.pb.h"
#include "proxy/proxy_identity.h"

namespace synod::proxy {

// How the proxy dials its members.
struct UpstreamOptions {
  // The largest message sent to / accepted from a member, in bytes (> 0).
  // A call whose request is larger than `max_send_bytes` is not sent; it
  // fails as the member fails a request over its --max-request-bytes:
  // INVALID_ARGUMENT "etcdserver: request is too large".
  int max_send_bytes = 1572864;
  int max_recv_bytes = 2147483647;
  // etcd grpc-proxy's client TLS: --cacert (trusted_ca_file), --cert,
  // --key and --insecure-skip-tls-verify. Its other fields stay empty;
  // server_name must, so that each member's certificate is verified
  // against that endpoint's host. When none of the four is set, "https://"
  // members are verified against the system's roots.
  common::TlsInfo tls;

  // Any of the client TLS flags is set (etcd's newClientCfg makes a TLS
  // config then, and clientv3 dials members without a scheme with it).
  bool TlsConfigured() const {
    return !tls.Empty() || !tls.trusted_ca_file.empty() ||
           tls.insecure_skip_verify;
  }
};

// Checks what etcd 3.4's grpc-proxy checks of its client TLS flags before
// it dials (newClientCfg): cert and key both given, readable and matching,
// the CA file readable (common::ValidateTlsInfo), and a certificate whose
// subject has no Common Name: the proxy forwards every client's requests,
// so a CN would make the member take them all as that one user. OK when no
// flag is set. Errors: InvalidArgument, with etcd's words, e.g. "cert has
// non empty Common Name (root)".
absl::Status ValidateUpstreamTls(const UpstreamOptions& options);

// The member endpoints and the current one.
class Endpoints {
 public:
  // `endpoints`: at least one of "host:port", "http://host:port" or
  // "https://host:port" (a trailing '/' is ignored). As etcd's clientv3
  // dials them: "http://" in plaintext, "https://" with TLS, and without a
  // scheme with TLS iff options.TlsConfigured(). A TLS member's certificate
  // must name the endpoint's host (unless insecure_skip_verify).
  // Errors: InvalidArgument for another scheme, an empty list, or what
  // ValidateUpstreamTls rejects; what common::NewChannelCredentials returns.
  static absl::StatusOr<std::unique_ptr<Endpoints>> Create(
      const std::vector<std::string>& endpoints,
      const UpstreamOptions& options);

  // The channel of the current endpoint and its index (for ReportFailure).
  std::shared_ptr<grpc::Channel> Current(size_t* index);
  // The call on endpoint `index` failed with UNAVAILABLE: if it is still
  // the current one, the next endpoint becomes current.
  void ReportFailure(size_t index);
  size_t size() const { return endpoints_.size(); }
  // The endpoint as given to Create().
  const std::string& endpoint(size_t i) const { return endpoints_[i]; }

 private:
  Endpoints(std::vector<std::string> endpoints,
            std::vector<std::shared_ptr<grpc::Channel>> channels);

  const std::vector<std::string> endpoints_;
  const std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::atomic<size_t> current_{0};
};

// Whose credentials an upstream call carries.
struct CallAs {
  // False: the proxy's own identity. True: `token`, a client's "token"
  // metadata ("" = the client sent none), sent as it is.
  bool client = false;
  std::string token;

  static CallAs Proxy() { return CallAs(); }
  static CallAs Client(std::string token) {
    CallAs a;
    a.client = true;
    a.token = std::move(token);
    return a;
  }
};

// The cluster's auth state, as a synod member tells it in the initial
// metadata of Maintenance.Status: "synod-auth-enabled" ("true"/"false") and
// "synod-auth-revision" (decimal). Auth changes go through Raft, so every
// member tells the same state once it has applied them.
struct UpstreamAuthState {
  // The member sent both keys. False for a member that does not (etcd).
  bool known = false;
  bool enabled = false;
  uint64_t revision = 0;
  bool operator==(const UpstreamAuthState& o) const {
    return known == o.known && enabled == o.enabled && revision == o.revision;
  }
  bool operator!=(const UpstreamAuthState& o) const { return !(*this == o); }
};

// Reads UpstreamAuthState from a Status response's metadata; known is false
// when a key is missing or malformed.
UpstreamAuthState AuthStateFromMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& md);

// The initial metadata a synod member sends on every Watch stream: its
// answer to a WatchProgressRequest (watch_id -1) is a revision every watcher
// of the stream has been sent all events up to, and it comes after them
// (backend/server/watch_service.cc). etcd 3.4 sends no such key: it answers
// with the store's revision at once, even while a watcher of the stream is
// still replaying history, and its answer can overtake events it had
// already queued (v3rpc/watch.go's sendLoop picks between its event and
// control channels at random).
inline constexpr char kWatchProgressMetadataKey[] = "synod-progress";
inline constexpr char kWatchProgressSlowestWatcher[] = "slowest-watcher";

// True when `md` (a Watch stream's initial metadata) says the member's
// progress answers are ordered as above.
bool OrderedProgressFromMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& md);

// Callbacks of one upstream watch stream. They run on gRPC threads, one at a
// time and in stream order.
struct UpstreamWatchCallbacks {
  // Once, before the first on_response (when the member's initial metadata
  // has arrived): whether the member's progress answers are ordered
  // (OrderedProgressFromMetadata). Optional; a stream that ends before any
  // response never calls it.
  std::function<void(bool ordered_progress)> on_metadata;
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
  using RangeDone = std::function<void(const grpc::Status&,
                                       const etcdserverpb::RangeResponse&)>;
  virtual ~Upstream() = default;
  // Opens a stream with one watcher created by `create`, as the proxy.
  virtual std::shared_ptr<UpstreamWatch> Watch(
      const etcdserverpb::WatchCreateRequest& create,
      UpstreamWatchCallbacks callbacks) = 0;
  // Opens a LeaseKeepAlive stream, as the proxy.
  virtual std::shared_ptr<UpstreamKeepAlive> KeepAlive(
      UpstreamKeepAliveCallbacks callbacks) = 0;
  // A linearizable (quorum) read as the proxy; `done` gets the cluster's
  // current revision or the error.
  virtual void CurrentRevision(
      const std::string& key,
      std::function<void(absl::StatusOr<int64_t>)> done) = 0;
  // A Range as `as`, forwarded as is (with failover on UNAVAILABLE).
  virtual void Range(const etcdserverpb::RangeRequest& req, const CallAs& as,
                     RangeDone done) = 0;
  // Maintenance.Status as the proxy: the cluster's auth state, or the error.
  virtual void AuthStatus(
      std::function<void(absl::StatusOr<UpstreamAuthState>)> done) = 0;
};

// Upstream over real members.
class GrpcUpstream final : public Upstream {
 public:
  // `endpoints` and `identity` (null: no identity, no token) outlive it.
  explicit GrpcUpstream(Endpoints* endpoints,
                        ProxyIdentity* identity = nullptr)
      : endpoints_(endpoints), identity_(identity) {}
  std::shared_ptr<UpstreamWatch> Watch(
      const etcdserverpb::WatchCreateRequest& create,
      UpstreamWatchCallbacks callbacks) override;
  std::shared_ptr<UpstreamKeepAlive> KeepAlive(
      UpstreamKeepAliveCallbacks callbacks) override;
  void CurrentRevision(
      const std::string& key,
      std::function<void(absl::StatusOr<int64_t>)> done) override;
  void Range(const etcdserverpb::RangeRequest& req, const CallAs& as,
             RangeDone done) override;
  void AuthStatus(
      std::function<void(absl::StatusOr<UpstreamAuthState>)> done) override;

 private:
  std::string ProxyToken() const;
  Endpoints* const endpoints_;
  ProxyIdentity* const identity_;
};

// Auth.Authenticate on the current member (failing over on UNAVAILABLE,
// 5 s per attempt), for ProxyIdentity.
ProxyIdentity::Authenticator GrpcAuthenticator(Endpoints* endpoints);

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_UPSTREAM_H_
