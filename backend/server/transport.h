// Transport and Network: how a member reaches its peers, as interfaces, so
// that RaftNode and EtcdServer run the same over gRPC (PeerTransport, the
// default) and over an in-memory fake in tests (tests/support/fake_network.h).
//
// A Network is the peer network as one member sees it before it knows its
// cluster (calls by peer URL: joining, the initial corruption check) and the
// factory of the member's Transport once it does. A Transport carries Raft
// messages and the few member-to-member calls etcd makes over the peer URLs
// (lease renewal and TimeToLive at the leader, learner promotion, HashKV).
//
// Ownership: EtcdServer owns its Transport; a Network is not owned by the
// servers that use it and must outlive them. The handlers must outlive the
// Transport (Stop() it before destroying their owner).
// Thread-safe: every method of both may be called from any thread.
#ifndef SYNOD_BACKEND_SERVER_TRANSPORT_H_
#define SYNOD_BACKEND_SERVER_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "backend/raft/types.h"
#include "proto/peer.pb.h"
#include "proto/rpc.pb.h"

namespace synod::server {

// What a member answers to its peers. Every handler may run on any thread
// (a gRPC thread for PeerTransport, the caller's for the fake).
struct PeerHandlers {
  // A message from a peer of our cluster.
  std::function<void(raft::Message)> on_message;
  // Delivery to `id` failed (stream broken or queue full): Raft should probe
  // it (MsgUnreachable).
  std::function<void(uint64_t id)> on_unreachable;
  // A MsgSnap to `id` finished (ok) or failed.
  std::function<void(uint64_t id, bool ok)> on_snapshot_status;
  // Writes the state to send with a MsgSnap, in chunks of at most ~1 MiB
  // passed to `emit` (which returns false when the transfer broke).
  std::function<absl::Status(const std::function<bool(std::string)>& emit)>
      snapshot_source;
  // A received snapshot's state, all chunks, before the MsgSnap is stepped.
  // An error refuses the snapshot (the sender sees it fail).
  std::function<absl::Status(const raft::Message& m,
                             const std::vector<std::string>& chunks)>
      on_snapshot;
  // Keep-alive and TimeToLive forwarded to the leader (etcd forwards these to
  // the leader's peer URL).
  std::function<grpc::Status(const etcdserverpb::LeaseKeepAliveRequest&,
                             etcdserverpb::LeaseKeepAliveResponse*)>
      on_lease_renew;
  std::function<grpc::Status(const etcdserverpb::LeaseTimeToLiveRequest&,
                             etcdserverpb::LeaseTimeToLiveResponse*)>
      on_lease_ttl;
  // The cluster ID and membership (a joining member asks for them).
  std::function<void(synodpb::ClusterInfo*)> on_members;
  std::function<grpc::Status(const etcdserverpb::MemberPromoteRequest&,
                             etcdserverpb::MemberPromoteResponse*)>
      on_member_promote;
  // This member's HashKV (Maintenance.HashKV's semantics) for a peer's
  // corruption check.
  std::function<grpc::Status(const etcdserverpb::HashKVRequest&,
                             etcdserverpb::HashKVResponse*)>
      on_hash_kv;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Adds or updates a peer's URLs ("http://host:port"; the first reachable
  // one is used). Idempotent.
  virtual void AddPeer(uint64_t id, const std::vector<std::string>& urls) = 0;
  virtual void RemovePeer(uint64_t id) = 0;
  virtual bool HasPeer(uint64_t id) const = 0;

  // Queues messages for their peers; never blocks. A message to an unknown
  // or unreachable peer is dropped and the peer reported unreachable.
  virtual void Send(std::vector<raft::Message> msgs) = 0;

  // Calls on member `id` (the leader, for the first two), each bounded by
  // `timeout`. Errors: the callee's, or UNAVAILABLE when it cannot be
  // reached in time ("etcdserver: no leader" when `id` is unknown).
  virtual grpc::Status LeaseRenew(
      uint64_t id, const etcdserverpb::LeaseKeepAliveRequest& req,
      etcdserverpb::LeaseKeepAliveResponse* resp, absl::Duration timeout) = 0;
  virtual grpc::Status LeaseTimeToLive(
      uint64_t id, const etcdserverpb::LeaseTimeToLiveRequest& req,
      etcdserverpb::LeaseTimeToLiveResponse* resp, absl::Duration timeout) = 0;
  virtual grpc::Status HashKV(uint64_t id,
                              const etcdserverpb::HashKVRequest& req,
                              etcdserverpb::HashKVResponse* resp,
                              absl::Duration timeout) = 0;
  virtual grpc::Status MemberPromote(
      uint64_t id, const etcdserverpb::MemberPromoteRequest& req,
      etcdserverpb::MemberPromoteResponse* resp, absl::Duration timeout) = 0;

  // The gRPC service to register on the peer listener; nullptr when the
  // transport has no listener (the fake).
  virtual grpc::Service* service() { return nullptr; }

  // Stops sending and answering; pending sends are dropped. Idempotent.
  virtual void Stop() = 0;
};

class Network {
 public:
  virtual ~Network() = default;

  // Asks the member at `peer_url` for the cluster's ID and members.
  // Errors: UNAVAILABLE when it cannot be reached within `timeout`.
  virtual absl::StatusOr<synodpb::ClusterInfo> FetchClusterInfo(
      const std::string& peer_url, absl::Duration timeout) = 0;

  // Asks the member at `peer_url` for its HashKV at `revision` (0 = its
  // current one). Errors: the peer's (kCompacted, kFutureRev), or
  // UNAVAILABLE when it cannot be reached within `timeout`.
  virtual absl::StatusOr<etcdserverpb::HashKVResponse> FetchHashKV(
      const std::string& peer_url, int64_t revision,
      absl::Duration timeout) = 0;

  // The transport of member `member_id` of cluster `cluster_id`, which
  // serves on `peer_urls` and answers peers through `handlers`.
  virtual std::unique_ptr<Transport> NewTransport(
      uint64_t member_id, uint64_t cluster_id,
      const std::vector<std::string>& peer_urls, PeerHandlers handlers) = 0;
};

// The gRPC peer network (PeerTransport); process-wide, never destroyed.
Network* GrpcNetwork();

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_TRANSPORT_H_
