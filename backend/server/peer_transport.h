// PeerTransport: the gRPC Transport (transport.h). It carries Raft messages between members over gRPC on the
// peer URLs (synodpb.Peer). Outbound, each peer has one sender thread with a
// bounded queue and one long-lived client stream (Peer.Stream); a broken
// stream is re-dialled with backoff and the peer is reported unreachable to
// Raft. Inbound, the Peer service hands each message to the raft thread.
// Install-snapshot messages (MsgSnap) go on their own Peer.Snapshot call,
// with the state produced by a SnapshotSource, so a large transfer never
// blocks heartbeats.
//
// Ownership: the transport owns its sender threads and channels; the
// callbacks must outlive it (Stop() before destroying their owners).
// Thread-safe: every method may be called from any thread.
#ifndef SYNOD_BACKEND_SERVER_PEER_TRANSPORT_H_
#define SYNOD_BACKEND_SERVER_PEER_TRANSPORT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/security/credentials.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/synchronization/mutex.h"
#include "backend/raft/types.h"
#include "proto/peer.grpc.pb.h"
#include "proto/rpc.pb.h"
#include "backend/server/transport.h"
#include "common/clock.h"

namespace synod::server {

// raft::Message <-> wire form. Decode never fails: unknown types are kept
// as numbers and the core rejects them.
synodpb::RaftMessage EncodeRaftMessage(const raft::Message& m,
                                       uint64_t cluster_id);
raft::Message DecodeRaftMessage(const synodpb::RaftMessage& pb);

// The gRPC address that serves or reaches a peer URL, as etcd 3.4 reads
// peer URLs: "http(s)://host:port[/]" -> "host:port"; "unix(s)://name" ->
// "unix:name", a Unix socket file named `name` (e.g. "etcd.unix:1", colon
// included) relative to the working directory, or absolute when `name`
// starts with '/'. gRPC listens on and dials that address alike. Returns ""
// for any other scheme or an empty host.
std::string PeerGrpcAddress(absl::string_view url);

// Credentials for dialling https:// peer URLs: etcd's --peer-cert-file,
// --peer-key-file and --peer-trusted-ca-file used as a client (from
// common::NewChannelCredentials). Process-wide, like GrpcNetwork(); set in
// main before the first dial, as a later call only affects later dials.
// Without it an https:// peer is dialled with gRPC's default TLS (system
// roots, no client certificate). http:// peers are always plaintext.
void SetPeerDialCredentials(std::shared_ptr<grpc::ChannelCredentials> creds);

class PeerTransport : public Transport {
 public:
  using Callbacks = PeerHandlers;

  // Asks the member at `peer_url` for its HashKV at `revision` (0 = its
  // current one). Errors: the peer's (kCompacted, kFutureRev), or
  // Unavailable when it cannot be reached within `timeout`.
  static absl::StatusOr<etcdserverpb::HashKVResponse> FetchHashKV(
      const std::string& peer_url, int64_t revision, absl::Duration timeout);

  // Asks the member at `peer_url` for the cluster's ID and members.
  // Errors: Unavailable when it cannot be reached within `timeout`.
  static absl::StatusOr<synodpb::ClusterInfo> FetchClusterInfo(
      const std::string& peer_url, absl::Duration timeout);

  PeerTransport(uint64_t member_id, uint64_t cluster_id, Callbacks callbacks);
  ~PeerTransport() override;  // Stop()

  // The service to register on the peer listener.
  grpc::Service* service() override;

  // Adds or updates a peer's URLs ("http(s)://host:port" or
  // "unix(s)://name", see PeerGrpcAddress; the first reachable one is
  // used). Idempotent.
  void AddPeer(uint64_t id, const std::vector<std::string>& urls) override;
  void RemovePeer(uint64_t id) override;
  bool HasPeer(uint64_t id) const override;

  // Queues messages for their peers (messages to unknown peers are dropped
  // and reported unreachable). Never blocks.
  void Send(std::vector<raft::Message> msgs) override;

  // Forwards a lease keep-alive / TimeToLive to member `id` (the leader).
  // Errors: Unavailable when it cannot be reached within `timeout`.
  grpc::Status LeaseRenew(uint64_t id,
                          const etcdserverpb::LeaseKeepAliveRequest& req,
                          etcdserverpb::LeaseKeepAliveResponse* resp,
                          absl::Duration timeout) override;
  grpc::Status LeaseTimeToLive(uint64_t id,
                               const etcdserverpb::LeaseTimeToLiveRequest& req,
                               etcdserverpb::LeaseTimeToLiveResponse* resp,
                               absl::Duration timeout) override;

  // Member `id`'s HashKV (see FetchHashKV).
  grpc::Status HashKV(uint64_t id, const etcdserverpb::HashKVRequest& req,
                      etcdserverpb::HashKVResponse* resp,
                      absl::Duration timeout) override;

  grpc::Status MemberPromote(uint64_t id,
                             const etcdserverpb::MemberPromoteRequest& req,
                             etcdserverpb::MemberPromoteResponse* resp,
                             absl::Duration timeout) override;

  // Stops the sender threads. Idempotent.
  void Stop() override;

 private:
  class Service;
  struct Peer;
  void SenderLoop(Peer* p);
  void SendSnapshot(Peer* p, raft::Message m);
  std::shared_ptr<Peer> FindPeer(uint64_t id) const;
  template <typename Req, typename Resp, typename Method>
  grpc::Status CallPeer(uint64_t id, Method method, const Req& req, Resp* resp,
                        absl::Duration timeout);

  const uint64_t member_id_;
  const uint64_t cluster_id_;
  const Callbacks cb_;
  common::Clock* const clock_;  // redial pacing
  std::unique_ptr<Service> service_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Peer>> peers_
      ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_PEER_TRANSPORT_H_
