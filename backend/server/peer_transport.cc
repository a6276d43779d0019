#include "backend/server/peer_transport.h"

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/tls.h"

namespace synod::server {

namespace {

// Messages queued for one peer before further ones are dropped (and the peer
// reported unreachable so that Raft probes it instead of pipelining).
constexpr size_t kMaxQueued = 4096;
// Messages per RaftBatch on the wire.
constexpr size_t kMaxBatch = 256;
constexpr absl::Duration kRedialBackoff = absl::Milliseconds(100);

absl::Mutex dial_creds_mu;
std::shared_ptr<grpc::ChannelCredentials>& DialCredentials()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(dial_creds_mu) {
  static auto* creds = new std::shared_ptr<grpc::ChannelCredentials>();
  return *creds;
}

std::shared_ptr<grpc::ChannelCredentials> CredentialsFor(const std::string& url) {
  if (!common::IsTlsUrl(url)) return grpc::InsecureChannelCredentials();
  absl::MutexLock l(&dial_creds_mu);
  if (DialCredentials() == nullptr) return grpc::SslCredentials(grpc::SslCredentialsOptions());
  return DialCredentials();
}

std::shared_ptr<grpc::Channel> Dial(const std::string& url) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // Reconnect quickly after a peer restarts: elections depend on it.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::string target = PeerGrpcAddress(url);
  if (target.empty()) target = url;  // not a peer URL: gRPC reports it unreachable
  return grpc::CreateCustomChannel(target, CredentialsFor(url), args);
}


// etcd's rafthttp metrics for the peer `id` (hex, as etcd labels it).
std::string PeerLabel(uint64_t id) { return absl::StrCat(absl::Hex(id)); }

common::Counter* PeerSentBytes(uint64_t to) {
  return common::DefaultMetrics().GetCounter(
      "etcd_network_peer_sent_bytes_total",
      "The total number of bytes sent to peers.", {{"To", PeerLabel(to)}});
}

common::Counter* PeerSentFailures(uint64_t to) {
  return common::DefaultMetrics().GetCounter(
      "etcd_network_peer_sent_failures_total",
      "The total number of send failures from peers.",
      {{"To", PeerLabel(to)}});
}

common::Counter* PeerReceivedBytes(uint64_t from) {
  return common::DefaultMetrics().GetCounter(
      "etcd_network_peer_received_bytes_total",
      "The total number of bytes received from peers.",
      {{"From", PeerLabel(from)}});
}

common::Gauge* ActivePeers(uint64_t local, uint64_t remote) {
  return common::DefaultMetrics().GetGauge(
      "etcd_network_active_peers",
      "The current number of active peer connections.",
      {{"Local", PeerLabel(local)}, {"Remote", PeerLabel(remote)}});
}

common::Counter* DisconnectedPeers(uint64_t local, uint64_t remote) {
  return common::DefaultMetrics().GetCounter(
      "etcd_network_disconnected_peers_total",
      "The total number of disconnected peers.",
      {{"Local", PeerLabel(local)}, {"Remote", PeerLabel(remote)}});
}

}  // namespace

std::string PeerGrpcAddress(absl::string_view url) {
  absl::string_view rest = url;
  const bool unix_socket =
      absl::ConsumePrefix(&rest, "unix://") || absl::ConsumePrefix(&rest, "unixs://");
  if (!unix_socket && !absl::ConsumePrefix(&rest, "http://") &&
      !absl::ConsumePrefix(&rest, "https://")) {
    return "";
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty()) return "";
  return unix_socket ? absl::StrCat("unix:", rest) : std::string(rest);
}

void SetPeerDialCredentials(std::shared_ptr<grpc::ChannelCredentials> creds) {
  absl::MutexLock l(&dial_creds_mu);
  DialCredentials() = std::move(creds);
}

synodpb::RaftMessage EncodeRaftMessage(const raft::Message& m,
                                       uint64_t cluster_id) {
  synodpb::RaftMessage pb;
  pb.set_type(static_cast<uint32_t>(m.type));
  pb.set_from(m.from);
  pb.set_to(m.to);
  pb.set_term(m.term);
  pb.set_log_term(m.log_term);
  pb.set_index(m.index);
  for (const raft::Entry& e : m.entries) {
    synodpb::RaftEntry* pe = pb.add_entries();
    pe->set_term(e.term);
    pe->set_index(e.index);
    pe->set_type(static_cast<uint32_t>(e.type));
    pe->set_data(e.data);
  }
  pb.set_commit(m.commit);
  pb.set_reject(m.reject);
  pb.set_reject_hint(m.reject_hint);
  pb.set_context(m.context);
  if (!m.snapshot.empty()) {
    pb.set_snapshot_index(m.snapshot.metadata.index);
    pb.set_snapshot_term(m.snapshot.metadata.term);
    for (uint64_t id : m.snapshot.metadata.conf_state.voters) {
      pb.add_snapshot_voters(id);
    }
    for (uint64_t id : m.snapshot.metadata.conf_state.learners) {
      pb.add_snapshot_learners(id);
    }
  }
  pb.set_cluster_id(cluster_id);
  return pb;
}

raft::Message DecodeRaftMessage(const synodpb::RaftMessage& pb) {
  raft::Message m;
  m.type = static_cast<raft::MessageType>(pb.type());
  m.from = pb.from();
  m.to = pb.to();
  m.term = pb.term();
  m.log_term = pb.log_term();
  m.index = pb.index();
  m.entries.reserve(pb.entries_size());
  for (const auto& pe : pb.entries()) {
    raft::Entry e;
    e.term = pe.term();
    e.index = pe.index();
    e.type = static_cast<raft::EntryType>(pe.type());
    e.data = pe.data();
    m.entries.push_back(std::move(e));
  }
  m.commit = pb.commit();
  m.reject = pb.reject();
  m.reject_hint = pb.reject_hint();
  m.context = pb.context();
  if (pb.snapshot_index() != 0) {
    m.snapshot.metadata.index = pb.snapshot_index();
    m.snapshot.metadata.term = pb.snapshot_term();
    m.snapshot.metadata.conf_state.voters.assign(pb.snapshot_voters().begin(),
                                                 pb.snapshot_voters().end());
    m.snapshot.metadata.conf_state.learners.assign(
        pb.snapshot_learners().begin(), pb.snapshot_learners().end());
  }
  return m;
}

struct PeerTransport::Peer {
  uint64_t id = 0;
  absl::Mutex mu;
  std::vector<std::string> urls ABSL_GUARDED_BY(mu);
  std::deque<raft::Message> queue ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  bool snapshot_in_flight ABSL_GUARDED_BY(mu) = false;
  // The peer refused this member's certificate on the last stream (logged
  // once per run of refusals).
  bool refused ABSL_GUARDED_BY(mu) = false;
  std::shared_ptr<grpc::Channel> channel ABSL_GUARDED_BY(mu);
  // Shared: a call keeps its stub alive even if AddPeer replaces it.
  std::shared_ptr<synodpb::Peer::Stub> stub ABSL_GUARDED_BY(mu);
  // The open stream's context, so Stop() can cancel a blocked write.
  grpc::ClientContext* stream_ctx ABSL_GUARDED_BY(mu) = nullptr;
  // The snapshot call's context, so RemovePeer can cancel a stalled one.
  grpc::ClientContext* snapshot_ctx ABSL_GUARDED_BY(mu) = nullptr;
  std::thread sender;
  std::thread snapshot_sender;

  // nullptr when the peer has no URL.
  std::shared_ptr<synodpb::Peer::Stub> Stub() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (stub == nullptr && !urls.empty()) {
      channel = Dial(urls.front());
      stub = synodpb::Peer::NewStub(channel);
    }
    return stub;
  }
};

class PeerTransport::Service final : public synodpb::Peer::Service {
 public:
  explicit Service(PeerTransport* t) : t_(t) {}

  grpc::Status Stream(grpc::ServerContext* ctx,
                      grpc::ServerReader<synodpb::RaftBatch>* reader,
                      synodpb::PeerAck* ack) override {
    synodpb::RaftBatch batch;
    common::Counter* received = nullptr;  // for received_from
    uint64_t received_from = 0;
    while (reader->Read(&batch)) {
      if (batch.messages_size() > 0) {
        const uint64_t from = batch.messages(0).from();
        if (received == nullptr || from != received_from) {
          received = PeerReceivedBytes(from);
          received_from = from;
        }
        received->Inc(batch.ByteSizeLong());
      }
      for (const auto& pb : batch.messages()) {
        if (pb.cluster_id() != t_->cluster_id_) {
          return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                              "etcdserver: cluster ID mismatch");
        }
        if (pb.to() != t_->member_id_) continue;
        t_->cb_.on_message(DecodeRaftMessage(pb));
      }
    }
    ack->set_member_id(t_->member_id_);
    ack->set_cluster_id(t_->cluster_id_);
    return grpc::Status::OK;
  }

  grpc::Status Snapshot(grpc::ServerContext* ctx,
                        grpc::ServerReader<synodpb::SnapshotChunk>* reader,
                        synodpb::PeerAck* ack) override {
    synodpb::SnapshotChunk chunk;
    raft::Message m;
    bool have_message = false;
    std::vector<std::string> chunks;
    while (reader->Read(&chunk)) {
      if (chunk.has_message()) {
        if (chunk.message().cluster_id() != t_->cluster_id_) {
          return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                              "etcdserver: cluster ID mismatch");
        }
        m = DecodeRaftMessage(chunk.message());
        have_message = true;
      }
      if (!chunk.data().empty()) chunks.push_back(std::move(*chunk.mutable_data()));
    }
    if (!have_message || m.type != raft::MessageType::kSnap) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "snapshot transfer without MsgSnap");
    }
    absl::Status st = t_->cb_.on_snapshot(m, chunks);
    if (!st.ok()) {
      return grpc::Status(static_cast<grpc::StatusCode>(st.code()),
                          std::string(st.message()));
    }
    ack->set_member_id(t_->member_id_);
    ack->set_cluster_id(t_->cluster_id_);
    return grpc::Status::OK;
  }

  grpc::Status LeaseRenew(grpc::ServerContext* ctx,
                          const etcdserverpb::LeaseKeepAliveRequest* req,
                          etcdserverpb::LeaseKeepAliveResponse* resp) override {
    return t_->cb_.on_lease_renew(*req, resp);
  }

  grpc::Status LeaseTimeToLive(
      grpc::ServerContext* ctx, const etcdserverpb::LeaseTimeToLiveRequest* req,
      etcdserverpb::LeaseTimeToLiveResponse* resp) override {
    return t_->cb_.on_lease_ttl(*req, resp);
  }

  grpc::Status Members(grpc::ServerContext* ctx, const synodpb::PeerAck* req,
                       synodpb::ClusterInfo* resp) override {
    t_->cb_.on_members(resp);
    return grpc::Status::OK;
  }

  grpc::Status MemberPromote(grpc::ServerContext* ctx,
                             const etcdserverpb::MemberPromoteRequest* req,
                             etcdserverpb::MemberPromoteResponse* resp) override {
    return t_->cb_.on_member_promote(*req, resp);
  }

  grpc::Status HashKV(grpc::ServerContext* ctx,
                      const etcdserverpb::HashKVRequest* req,
                      etcdserverpb::HashKVResponse* resp) override {
    if (!t_->cb_.on_hash_kv) {
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no HashKV");
    }
    return t_->cb_.on_hash_kv(*req, resp);
  }

 private:
  PeerTransport* const t_;
};

PeerTransport::PeerTransport(uint64_t member_id, uint64_t cluster_id,
                             Callbacks callbacks)
    : member_id_(member_id),
      cluster_id_(cluster_id),
      cb_(std::move(callbacks)),
      clock_(common::RealClock::Get()),
      service_(std::make_unique<Service>(this)) {}

PeerTransport::~PeerTransport() { Stop(); }

grpc::Service* PeerTransport::service() { return service_.get(); }

void PeerTransport::AddPeer(uint64_t id, const std::vector<std::string>& urls) {
  if (id == member_id_) return;
  absl::MutexLock l(&mu_);
  if (stopped_) return;
  auto it = peers_.find(id);
  if (it != peers_.end()) {
    Peer* p = it->second.get();
    absl::MutexLock pl(&p->mu);
    if (p->urls != urls) {
      p->urls = urls;
      p->stub.reset();
      p->channel.reset();
    }
    return;
  }
  auto p = std::make_shared<Peer>();
  p->id = id;
  {
    absl::MutexLock pl(&p->mu);
    p->urls = urls;
  }
  Peer* raw = p.get();
  p->sender = std::thread([this, raw] { SenderLoop(raw); });
  peers_[id] = std::move(p);
}

void PeerTransport::RemovePeer(uint64_t id) {
  std::shared_ptr<Peer> p;
  {
    absl::MutexLock l(&mu_);
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    p = std::move(it->second);
    peers_.erase(it);
  }
  {
    absl::MutexLock pl(&p->mu);
    p->stop = true;
    if (p->stream_ctx != nullptr) p->stream_ctx->TryCancel();
    if (p->snapshot_ctx != nullptr) p->snapshot_ctx->TryCancel();
  }
  if (p->sender.joinable()) p->sender.join();
  if (p->snapshot_sender.joinable()) p->snapshot_sender.join();
}

bool PeerTransport::HasPeer(uint64_t id) const {
  absl::MutexLock l(&mu_);
  return peers_.contains(id);
}

std::shared_ptr<PeerTransport::Peer> PeerTransport::FindPeer(uint64_t id) const {
  absl::MutexLock l(&mu_);
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second;
}

void PeerTransport::Send(std::vector<raft::Message> msgs) {
  for (raft::Message& m : msgs) {
    std::shared_ptr<Peer> p = FindPeer(m.to);
    if (p == nullptr) {
      cb_.on_unreachable(m.to);
      continue;
    }
    if (m.type == raft::MessageType::kSnap) {
      absl::MutexLock pl(&p->mu);
      if (p->snapshot_in_flight || p->stop) continue;
      p->snapshot_in_flight = true;
      if (p->snapshot_sender.joinable()) p->snapshot_sender.join();
      Peer* raw = p.get();
      p->snapshot_sender = std::thread(
          [this, raw, m = std::move(m)]() mutable { SendSnapshot(raw, std::move(m)); });
      continue;
    }
    bool dropped = false;
    {
      absl::MutexLock pl(&p->mu);
      if (p->queue.size() >= kMaxQueued) {
        dropped = true;
      } else {
        p->queue.push_back(std::move(m));
      }
    }
    if (dropped) cb_.on_unreachable(p->id);
  }
}

void PeerTransport::SenderLoop(Peer* p) {
  common::Counter* const sent_bytes = PeerSentBytes(p->id);
  common::Counter* const sent_failures = PeerSentFailures(p->id);
  common::Gauge* const active = ActivePeers(member_id_, p->id);
  common::Counter* const disconnected = DisconnectedPeers(member_id_, p->id);
  while (true) {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientWriter<synodpb::RaftBatch>> writer;
    std::shared_ptr<synodpb::Peer::Stub> stub_ref;
    synodpb::PeerAck ack;
    {
      absl::MutexLock l(&p->mu);
      p->mu.Await(absl::Condition(
          +[](Peer* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) {
            return p->stop || !p->queue.empty();
          },
          p));
      if (p->stop) return;
      stub_ref = p->Stub();
      synodpb::Peer::Stub* stub = stub_ref.get();
      if (stub == nullptr) {
        p->queue.clear();
        continue;
      }
      ctx = std::make_unique<grpc::ClientContext>();
      p->stream_ctx = ctx.get();
      writer = stub->Stream(ctx.get(), &ack);
    }
    bool broken = false;
    bool connected = false;  // a batch went through on this stream
    while (!broken) {
      synodpb::RaftBatch batch;
      {
        absl::MutexLock l(&p->mu);
        p->mu.Await(absl::Condition(
            +[](Peer* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) {
              return p->stop || !p->queue.empty();
            },
            p));
        if (p->stop) break;
        while (!p->queue.empty() && batch.messages_size() < static_cast<int>(kMaxBatch)) {
          *batch.add_messages() = EncodeRaftMessage(p->queue.front(), cluster_id_);
          p->queue.pop_front();
        }
      }
      if (writer->Write(batch)) {
        sent_bytes->Inc(batch.ByteSizeLong());
        if (!connected) active->Inc();
        connected = true;
      } else {
        sent_failures->Inc();
        broken = true;
      }
    }
    if (connected) {
      active->Dec();
      if (broken) disconnected->Inc();
    }
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    {
      absl::MutexLock l(&p->mu);
      p->stream_ctx = nullptr;
      if (p->stop) return;
      // A listener refuses a certificate whose CN or hostname it does not
      // allow call by call (common/tls.h), so the refusal arrives here;
      // etcd's member logs the same event as the TLS alert it receives.
      const bool refused = st.error_code() == grpc::StatusCode::UNAUTHENTICATED;
      if (refused && !p->refused) {
        SYNOD_LOG(WARNING) << "peer " << absl::StrCat(absl::Hex(p->id))
                           << " refused this member's certificate: remote error: tls: "
                              "bad certificate (" << st.error_message() << ")";
      }
      p->refused = refused;
      // Messages queued while the stream was down are stale: Raft resends
      // what matters after the unreachable report.
      p->queue.clear();
    }
    if (broken) {
      cb_.on_unreachable(p->id);
      // Redial pacing; Stop or RemovePeer end it at once.
      absl::MutexLock l(&p->mu);
      clock_->AwaitWithTimeout(&p->mu, absl::Condition(&p->stop),
                               kRedialBackoff);
      if (p->stop) return;
    }
  }
}

void PeerTransport::SendSnapshot(Peer* p, raft::Message m) {
  const uint64_t to = m.to;
  std::shared_ptr<synodpb::Peer::Stub> stub;
  grpc::ClientContext ctx;
  {
    absl::MutexLock l(&p->mu);
    if (!p->stop) stub = p->Stub();
    if (stub != nullptr) p->snapshot_ctx = &ctx;
  }
  bool ok = false;
  if (stub != nullptr) {
    synodpb::PeerAck ack;
    auto writer = stub->Snapshot(&ctx, &ack);
    synodpb::SnapshotChunk first;
    *first.mutable_message() = EncodeRaftMessage(m, cluster_id_);
    bool alive = writer->Write(first);
    absl::Status st = absl::OkStatus();
    if (alive) {
      st = cb_.snapshot_source([&](std::string data) {
        synodpb::SnapshotChunk c;
        c.set_data(std::move(data));
        alive = alive && writer->Write(c);
        return alive;
      });
    }
    writer->WritesDone();
    grpc::Status gst = writer->Finish();
    ok = alive && st.ok() && gst.ok();
    SYNOD_LOG(INFO) << "snapshot at index " << m.snapshot.metadata.index
                    << " to " << absl::StrCat(absl::Hex(to))
                    << (ok ? " sent" : " failed: ")
                    << (ok ? "" : (st.ok() ? gst.error_message()
                                           : std::string(st.message())));
  }
  {
    absl::MutexLock l(&p->mu);
    p->snapshot_ctx = nullptr;
  }
  cb_.on_snapshot_status(to, ok);
  absl::MutexLock l(&p->mu);
  p->snapshot_in_flight = false;
}

namespace {

// A unary call on the Peer service at `peer_url` (a new channel), bounded by
// `timeout`; for calls made before the transport knows the member.
template <typename Req, typename Resp, typename Method>
grpc::Status CallUrl(const std::string& peer_url, Method method,
                     const Req& req, Resp* resp, absl::Duration timeout) {
  auto stub = synodpb::Peer::NewStub(Dial(peer_url));
  grpc::ClientContext ctx;
  ctx.set_deadline(common::GrpcDeadlineAfter(timeout));
  return ((*stub).*method)(&ctx, req, resp);
}

}  // namespace

absl::StatusOr<synodpb::ClusterInfo> PeerTransport::FetchClusterInfo(
    const std::string& peer_url, absl::Duration timeout) {
  synodpb::ClusterInfo info;
  grpc::Status st = CallUrl(peer_url, &synodpb::Peer::Stub::Members,
                            synodpb::PeerAck(), &info, timeout);
  if (!st.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot fetch members from ", peer_url, ": ",
                     st.error_message()));
  }
  return info;
}

absl::StatusOr<etcdserverpb::HashKVResponse> PeerTransport::FetchHashKV(
    const std::string& peer_url, int64_t revision, absl::Duration timeout) {
  etcdserverpb::HashKVRequest req;
  req.set_revision(revision);
  etcdserverpb::HashKVResponse resp;
  grpc::Status st =
      CallUrl(peer_url, &synodpb::Peer::Stub::HashKV, req, &resp, timeout);
  if (!st.ok()) return common::FromGrpcStatus(st);
  return resp;
}

// A unary call to member `id` on its Peer stub, bounded by `timeout`.
template <typename Req, typename Resp, typename Method>
grpc::Status PeerTransport::CallPeer(uint64_t id, Method method,
                                     const Req& req, Resp* resp,
                                     absl::Duration timeout) {
  std::shared_ptr<Peer> p = FindPeer(id);
  if (p == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader");
  }
  std::shared_ptr<synodpb::Peer::Stub> stub;
  {
    absl::MutexLock l(&p->mu);
    stub = p->Stub();
  }
  if (stub == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "etcdserver: peer has no URL");
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(common::GrpcDeadlineAfter(timeout));
  return ((*stub).*method)(&ctx, req, resp);
}

grpc::Status PeerTransport::MemberPromote(
    uint64_t id, const etcdserverpb::MemberPromoteRequest& req,
    etcdserverpb::MemberPromoteResponse* resp, absl::Duration timeout) {
  return CallPeer(id, &synodpb::Peer::Stub::MemberPromote, req, resp, timeout);
}

grpc::Status PeerTransport::HashKV(uint64_t id,
                                   const etcdserverpb::HashKVRequest& req,
                                   etcdserverpb::HashKVResponse* resp,
                                   absl::Duration timeout) {
  return CallPeer(id, &synodpb::Peer::Stub::HashKV, req, resp, timeout);
}

grpc::Status PeerTransport::LeaseRenew(
    uint64_t id, const etcdserverpb::LeaseKeepAliveRequest& req,
    etcdserverpb::LeaseKeepAliveResponse* resp, absl::Duration timeout) {
  return CallPeer(id, &synodpb::Peer::Stub::LeaseRenew, req, resp, timeout);
}

grpc::Status PeerTransport::LeaseTimeToLive(
    uint64_t id, const etcdserverpb::LeaseTimeToLiveRequest& req,
    etcdserverpb::LeaseTimeToLiveResponse* resp, absl::Duration timeout) {
  return CallPeer(id, &synodpb::Peer::Stub::LeaseTimeToLive, req, resp,
                  timeout);
}

void PeerTransport::Stop() {
  std::vector<uint64_t> ids;
  {
    absl::MutexLock l(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [id, p] : peers_) ids.push_back(id);
  }
  for (uint64_t id : ids) RemovePeer(id);
}

}  // namespace synod::server

namespace synod::server {
namespace {

class GrpcPeerNetwork final : public Network {
 public:
  absl::StatusOr<synodpb::ClusterInfo> FetchClusterInfo(
      const std::string& peer_url, absl::Duration timeout) override {
    return PeerTransport::FetchClusterInfo(peer_url, timeout);
  }
  absl::StatusOr<etcdserverpb::HashKVResponse> FetchHashKV(
      const std::string& peer_url, int64_t revision,
      absl::Duration timeout) override {
    return PeerTransport::FetchHashKV(peer_url, revision, timeout);
  }
  std::unique_ptr<Transport> NewTransport(
      uint64_t member_id, uint64_t cluster_id,
      const std::vector<std::string>& peer_urls,
      PeerHandlers handlers) override {
    return std::make_unique<PeerTransport>(member_id, cluster_id,
                                           std::move(handlers));
  }
};

}  // namespace

Network* GrpcNetwork() {
  static Network* network = new GrpcPeerNetwork();
  return network;
}

}  // namespace synod::server
