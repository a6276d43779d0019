// PeerTransport: the Raft message codec, and real gRPC delivery between
// transports in one process on 127.0.0.1 ports picked by the kernel:
// ordering, unreachable reports, reconnection, cluster-ID checks, snapshot
// transfer and FetchClusterInfo. Every wait polls with a deadline.
#include "backend/server/peer_transport.h"

#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace synod::server {
namespace {

constexpr absl::Duration kDeadline = absl::Seconds(10);
constexpr absl::Duration kPoll = absl::Milliseconds(10);

// Polls `cond` until it holds or kDeadline passes. `step` runs before each
// check (e.g. to send another probe).
bool PollUntil(const std::function<bool()>& cond,
               const std::function<void()>& step = nullptr) {
  const absl::Time end = absl::Now() + kDeadline;
  while (absl::Now() < end) {
    if (step) step();
    if (cond()) return true;
    absl::SleepFor(kPoll);  // polling interval, not synchronisation
  }
  return cond();
}

raft::Message Msg(uint64_t from, uint64_t to, uint64_t index,
                  raft::MessageType type = raft::MessageType::kApp) {
  raft::Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = 1;
  m.index = index;
  return m;
}

// One member's transport, its Peer gRPC server, and what its callbacks saw.
class Node {
 public:
  // Listens on 127.0.0.1:`port` (0: one the kernel picks), or on the Unix
  // socket `unix_path` when it is not empty.
  Node(uint64_t id, uint64_t cluster_id, int port = 0, std::string unix_path = "")
      : id_(id), unix_path_(std::move(unix_path)) {
    PeerTransport::Callbacks cb;
    cb.on_message = [this](raft::Message m) {
      absl::MutexLock l(&mu_);
      received_.push_back(std::move(m));
    };
    cb.on_unreachable = [this](uint64_t id) {
      absl::MutexLock l(&mu_);
      unreachable_.push_back(id);
    };
    cb.on_snapshot_status = [this](uint64_t id, bool ok) {
      absl::MutexLock l(&mu_);
      snapshot_status_.push_back({id, ok});
    };
    cb.snapshot_source =
        [this](const std::function<bool(std::string)>& emit) -> absl::Status {
      for (const std::string& c : snapshot_chunks_) {
        if (!emit(c)) return absl::UnavailableError("transfer broke");
      }
      return absl::OkStatus();
    };
    cb.on_snapshot = [this](const raft::Message& m,
                            const std::vector<std::string>& chunks) {
      absl::MutexLock l(&mu_);
      snap_msgs_.push_back(m);
      snap_chunks_ = chunks;
      return snapshot_reply_;
    };
    cb.on_members = [this, cluster_id](synodpb::ClusterInfo* info) {
      info->set_cluster_id(cluster_id);
      synodpb::Member* m = info->mutable_record()->add_members();
      m->set_id(id_);
      m->set_name("n" + std::to_string(id_));
      m->add_peer_urls(url());
      info->mutable_record()->add_removed(77);
    };
    transport_ = std::make_unique<PeerTransport>(id, cluster_id, std::move(cb));
    grpc::ServerBuilder b;
    if (unix_path_.empty()) {
      b.AddListeningPort("127.0.0.1:" + std::to_string(port),
                         grpc::InsecureServerCredentials(), &port_);
    } else {
      b.AddListeningPort(PeerGrpcAddress(url()), grpc::InsecureServerCredentials());
    }
    b.RegisterService(transport_->service());
    server_ = b.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    if (unix_path_.empty()) EXPECT_GT(port_, 0);
  }
  ~Node() { Shutdown(); }
  // Stops serving (the "process" goes down); the transport is stopped too.
  void Shutdown() {
    if (server_) {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
      server_->Wait();
      server_.reset();
    }
    transport_->Stop();
  }

  std::string url() const {
    return unix_path_.empty() ? "http://127.0.0.1:" + std::to_string(port_)
                              : "unix://" + unix_path_;
  }
  int port() const { return port_; }
  PeerTransport* t() { return transport_.get(); }

  // Every message received, probes (index 0) included.
  size_t received_count() {
    absl::MutexLock l(&mu_);
    return received_.size();
  }
  // The messages received other than probes, in arrival order.
  std::vector<raft::Message> received() {
    absl::MutexLock l(&mu_);
    std::vector<raft::Message> out;
    for (const raft::Message& m : received_) {
      if (m.index != 0) out.push_back(m);
    }
    return out;
  }
  void clear_received() {
    absl::MutexLock l(&mu_);
    received_.clear();
  }
  bool saw_unreachable(uint64_t id) {
    absl::MutexLock l(&mu_);
    return std::find(unreachable_.begin(), unreachable_.end(), id) !=
           unreachable_.end();
  }
  void clear_unreachable() {
    absl::MutexLock l(&mu_);
    unreachable_.clear();
  }
  std::vector<std::pair<uint64_t, bool>> snapshot_status() {
    absl::MutexLock l(&mu_);
    return snapshot_status_;
  }
  std::vector<raft::Message> snap_msgs() {
    absl::MutexLock l(&mu_);
    return snap_msgs_;
  }
  std::vector<std::string> snap_chunks() {
    absl::MutexLock l(&mu_);
    return snap_chunks_;
  }
  // Set before any transfer starts (read by the gRPC threads).
  std::vector<std::string> snapshot_chunks_;
  absl::Status snapshot_reply_ = absl::OkStatus();

 private:
  const uint64_t id_;
  const std::string unix_path_;
  int port_ = 0;
  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  std::vector<raft::Message> received_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> unreachable_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, bool>> snapshot_status_ ABSL_GUARDED_BY(mu_);
  std::vector<raft::Message> snap_msgs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> snap_chunks_ ABSL_GUARDED_BY(mu_);
};

// Sends probes (index 0) from `from` to `to` until one arrives: the stream
// is up. Probes still in flight may arrive later; received() skips them.
bool Connect(Node* from, uint64_t from_id, Node* to, uint64_t to_id) {
  bool ok = PollUntil([&] { return to->received_count() > 0; },
                      [&] { from->t()->Send({Msg(from_id, to_id, 0)}); });
  to->clear_received();
  return ok;
}

TEST(RaftMessageCodecTest, RoundTripsEveryField) {
  raft::Message m;
  m.type = raft::MessageType::kSnap;
  m.from = 0x1111222233334444ull;
  m.to = 0xfedcba9876543210ull;
  m.term = 7;
  m.log_term = 6;
  m.index = 1234567890123ull;
  m.commit = 99;
  m.reject = true;
  m.reject_hint = 55;
  m.context = std::string("ctx\0bin", 7);
  for (uint64_t i = 0; i < 3; ++i) {
    raft::Entry e;
    e.term = 5 + i;
    e.index = 100 + i;
    e.type = i == 1 ? raft::EntryType::kConfChange : raft::EntryType::kNormal;
    e.data = std::string(i * 1000, static_cast<char>('a' + i));
    m.entries.push_back(e);
  }
  m.snapshot.metadata.index = 90;
  m.snapshot.metadata.term = 4;
  m.snapshot.metadata.conf_state.voters = {1, 2, 3};
  m.snapshot.metadata.conf_state.learners = {4};
  m.snapshot.data = "not carried on the message";

  synodpb::RaftMessage pb = EncodeRaftMessage(m, 0xC1);
  EXPECT_EQ(pb.cluster_id(), 0xC1u);
  // Through the wire bytes, not just the in-memory proto.
  synodpb::RaftMessage parsed;
  ASSERT_TRUE(parsed.ParseFromString(pb.SerializeAsString()));
  raft::Message d = DecodeRaftMessage(parsed);
  EXPECT_EQ(d.type, m.type);
  EXPECT_EQ(d.from, m.from);
  EXPECT_EQ(d.to, m.to);
  EXPECT_EQ(d.term, m.term);
  EXPECT_EQ(d.log_term, m.log_term);
  EXPECT_EQ(d.index, m.index);
  EXPECT_EQ(d.commit, m.commit);
  EXPECT_EQ(d.reject, m.reject);
  EXPECT_EQ(d.reject_hint, m.reject_hint);
  EXPECT_EQ(d.context, m.context);
  EXPECT_EQ(d.entries, m.entries);
  EXPECT_EQ(d.snapshot.metadata.index, 90u);
  EXPECT_EQ(d.snapshot.metadata.term, 4u);
  EXPECT_EQ(d.snapshot.metadata.conf_state, m.snapshot.metadata.conf_state);
  EXPECT_TRUE(d.snapshot.data.empty()) << "data travels on Peer.Snapshot";

  // Every message type survives; a message without a snapshot decodes to an
  // empty one.
  for (int t = 0; t <= static_cast<int>(raft::MessageType::kUnreachable); ++t) {
    raft::Message x = Msg(1, 2, 3, static_cast<raft::MessageType>(t));
    raft::Message y = DecodeRaftMessage(EncodeRaftMessage(x, 1));
    EXPECT_EQ(y.type, x.type);
    EXPECT_TRUE(y.snapshot.empty());
    EXPECT_TRUE(y.entries.empty());
    EXPECT_FALSE(y.reject);
  }
}

TEST(PeerTransportTest, DeliversBothWaysInOrder) {
  Node a(1, 100), b(2, 100);
  a.t()->AddPeer(2, {b.url()});
  b.t()->AddPeer(1, {a.url()});
  EXPECT_TRUE(a.t()->HasPeer(2));
  EXPECT_FALSE(a.t()->HasPeer(1)) << "a member is not its own peer";
  a.t()->AddPeer(1, {a.url()});
  EXPECT_FALSE(a.t()->HasPeer(1));
  ASSERT_TRUE(Connect(&a, 1, &b, 2));
  ASSERT_TRUE(Connect(&b, 2, &a, 1));

  constexpr uint64_t kN = 1000;  // > one 256-message wire batch
  for (uint64_t i = 1; i <= kN; ++i) {
    a.t()->Send({Msg(1, 2, i)});
    raft::Message back = Msg(2, 1, i);
    back.entries.push_back(raft::Entry{3, i, raft::EntryType::kNormal, "e"});
    b.t()->Send({back});
  }
  ASSERT_TRUE(PollUntil([&] {
    return a.received().size() >= kN && b.received().size() >= kN;
  })) << "a got " << a.received().size() << ", b got " << b.received().size();
  auto at_b = b.received();
  auto at_a = a.received();
  ASSERT_EQ(at_b.size(), kN);
  ASSERT_EQ(at_a.size(), kN);
  for (uint64_t i = 0; i < kN; ++i) {
    EXPECT_EQ(at_b[i].index, i + 1);
    EXPECT_EQ(at_b[i].from, 1u);
    EXPECT_EQ(at_a[i].index, i + 1);
    ASSERT_EQ(at_a[i].entries.size(), 1u);
    EXPECT_EQ(at_a[i].entries[0].data, "e");
  }
  EXPECT_FALSE(a.saw_unreachable(2));
  EXPECT_FALSE(b.saw_unreachable(1));
}

TEST(PeerGrpcAddressTest, MapsPeerUrlsAsEtcdDoes) {
  EXPECT_EQ(PeerGrpcAddress("http://127.0.0.1:2380"), "127.0.0.1:2380");
  EXPECT_EQ(PeerGrpcAddress("https://localhost:2380/"), "localhost:2380");
  // etcd's TestEtcdUnixPeers: a socket file named "etcd.unix:1" in the
  // working directory.
  EXPECT_EQ(PeerGrpcAddress("unix://etcd.unix:1"), "unix:etcd.unix:1");
  EXPECT_EQ(PeerGrpcAddress("unixs://etcd.unix:1"), "unix:etcd.unix:1");
  EXPECT_EQ(PeerGrpcAddress("unix:///tmp/peer.sock"), "unix:/tmp/peer.sock");
  EXPECT_EQ(PeerGrpcAddress("ftp://h:1"), "");
  EXPECT_EQ(PeerGrpcAddress("127.0.0.1:2380"), "");
  EXPECT_EQ(PeerGrpcAddress("unix://"), "");
}

// A member whose peer URL is a Unix socket exchanges messages with one on
// TCP, both ways.
TEST(PeerTransportTest, DeliversOverAUnixSocketPeerUrl) {
  char dir_template[] = "/tmp/synod-peer-unix-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string sock = std::string(dir_template) + "/peer.unix:1";
  {
    Node a(1, 100), b(2, 100, 0, sock);
    ASSERT_EQ(b.url(), "unix://" + sock);
    a.t()->AddPeer(2, {b.url()});
    b.t()->AddPeer(1, {a.url()});
    ASSERT_TRUE(Connect(&a, 1, &b, 2));
    ASSERT_TRUE(Connect(&b, 2, &a, 1));
    a.t()->Send({Msg(1, 2, 7)});
    b.t()->Send({Msg(2, 1, 8)});
    ASSERT_TRUE(PollUntil([&] { return !a.received().empty() && !b.received().empty(); }));
    EXPECT_EQ(b.received()[0].index, 7u);
    EXPECT_EQ(a.received()[0].index, 8u);
    // FetchClusterInfo dials the socket too.
    auto info = PeerTransport::FetchClusterInfo(b.url(), kDeadline);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->cluster_id(), 100u);
  }
  unlink(sock.c_str());
  rmdir(dir_template);
}

TEST(PeerTransportTest, UnknownPeerIsReportedUnreachable) {
  Node a(1, 100);
  a.t()->Send({Msg(1, 42, 1)});
  // Reported synchronously by Send.
  EXPECT_TRUE(a.saw_unreachable(42));
  a.t()->AddPeer(43, {"http://127.0.0.1:1"});
  a.t()->RemovePeer(43);
  EXPECT_FALSE(a.t()->HasPeer(43));
  a.clear_unreachable();
  a.t()->Send({Msg(1, 43, 1)});
  EXPECT_TRUE(a.saw_unreachable(43));
}

TEST(PeerTransportTest, DownPeerIsUnreachableAndDeliveryResumesWhenBack) {
  Node a(1, 100);
  auto b = std::make_unique<Node>(2, 100);
  const int port = b->port();
  a.t()->AddPeer(2, {b->url()});
  ASSERT_TRUE(Connect(&a, 1, b.get(), 2));
  b->Shutdown();
  b.reset();
  a.clear_unreachable();
  ASSERT_TRUE(PollUntil([&] { return a.saw_unreachable(2); },
                        [&] { a.t()->Send({Msg(1, 2, 0)}); }))
      << "a down peer was never reported unreachable";

  // The member comes back on the same port (a restarted process).
  b = std::make_unique<Node>(2, 100, port);
  ASSERT_EQ(b->port(), port);
  ASSERT_TRUE(PollUntil([&] { return b->received_count() > 0; },
                        [&] { a.t()->Send({Msg(1, 2, 0)}); }))
      << "delivery did not resume after the peer came back";
  // And keeps flowing in order after the reconnection.
  b->clear_received();
  for (uint64_t k = 1; k <= 50; ++k) a.t()->Send({Msg(1, 2, 1000 + k)});
  ASSERT_TRUE(PollUntil([&] { return b->received().size() >= 50; }));
  auto got = b->received();
  ASSERT_EQ(got.size(), 50u);
  for (uint64_t k = 0; k < 50; ++k) EXPECT_EQ(got[k].index, 1001 + k);
}

// A TCP listener on 127.0.0.1 that completes the TCP handshake (the kernel
// does) but never speaks HTTP/2: a hung peer, or one behind a firewall that
// drops packets, as gRPC sees it (the channel stays CONNECTING until its
// ~20 s connect deadline).
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        listen(fd_, 16) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
    }
  }
  ~SilentListener() { Close(); }
  // Waits (bounded) for a client to connect; keeps the connection open.
  bool AcceptOne() {
    pollfd pfd{fd_, POLLIN, 0};
    if (poll(&pfd, 1, absl::ToInt64Milliseconds(kDeadline)) != 1) return false;
    const int c = accept(fd_, nullptr, nullptr);
    if (c < 0) return false;
    accepted_.push_back(c);
    return true;
  }
  // Closes everything: the client's handshake fails at once.
  void Close() {
    for (int c : accepted_) close(c);
    accepted_.clear();
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> accepted_;
};

// Send() must never block (the raft thread calls it in every Ready): a
// peer whose connection hangs in the HTTP/2 handshake must not stall
// messages to anyone else.
TEST(PeerTransportTest, SendDoesNotBlockOnAHungPeer) {
  SilentListener silent;
  ASSERT_GT(silent.port(), 0);
  Node a(1, 100), b(3, 100);
  a.t()->AddPeer(2, {silent.url()});
  a.t()->AddPeer(3, {b.url()});
  a.t()->Send({Msg(1, 2, 1)});
  // The sender to 2 is now opening its stream on a connection that will
  // never finish its handshake.
  ASSERT_TRUE(silent.AcceptOne());

  absl::Notification sent;
  std::thread sender([&] {
    a.t()->Send({Msg(1, 2, 2), Msg(1, 3, 7)});
    sent.Notify();
  });
  const bool returned = sent.WaitForNotificationWithTimeout(absl::Seconds(3));
  silent.Close();  // unblocks the transport either way
  sender.join();
  EXPECT_TRUE(returned) << "Send() blocked behind a peer that is connecting";
  // The healthy peer gets its message.
  EXPECT_TRUE(PollUntil([&] { return !b.received().empty(); },
                        [&] { a.t()->Send({Msg(1, 3, 8)}); }));
}

// A Peer service whose Snapshot handler stops reading: a member that hangs
// (SIGSTOP, disk stall) mid-transfer, as the sender sees it.
class StalledPeer final : public synodpb::Peer::Service {
 public:
  grpc::Status Snapshot(grpc::ServerContext* ctx,
                        grpc::ServerReader<synodpb::SnapshotChunk>* reader,
                        synodpb::PeerAck* ack) override {
    entered_.Notify();
    release_.WaitForNotification();
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "stalled");
  }
  absl::Notification entered_;
  absl::Notification release_;
};

// RemovePeer runs on the raft thread (applying a conf change that removes
// the member), and Stop on shutdown: neither may wait for a transfer that
// is stuck on a hung peer.
TEST(PeerTransportTest, RemovePeerDoesNotWaitForAStalledSnapshot) {
  StalledPeer stalled;
  int port = 0;
  grpc::ServerBuilder sb;
  sb.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  sb.RegisterService(&stalled);
  std::unique_ptr<grpc::Server> server = sb.BuildAndStart();
  ASSERT_NE(server, nullptr);
  Node a(1, 100);
  // 16 MiB: far beyond what HTTP/2 flow control buffers for a reader that
  // does not read.
  a.snapshot_chunks_.assign(16, std::string(1 << 20, 's'));
  a.t()->AddPeer(2, {"http://127.0.0.1:" + std::to_string(port)});
  raft::Message snap = Msg(1, 2, 0, raft::MessageType::kSnap);
  snap.snapshot.metadata.index = 9;
  snap.snapshot.metadata.term = 1;
  a.t()->Send({snap});
  ASSERT_TRUE(stalled.entered_.WaitForNotificationWithTimeout(kDeadline));

  absl::Notification removed;
  std::thread remover([&] {
    a.t()->RemovePeer(2);
    removed.Notify();
  });
  const bool returned = removed.WaitForNotificationWithTimeout(absl::Seconds(3));
  stalled.release_.Notify();  // unblocks the transfer either way
  remover.join();
  EXPECT_TRUE(returned) << "RemovePeer waited for a stalled snapshot transfer";
  EXPECT_FALSE(a.t()->HasPeer(2));
  ASSERT_TRUE(PollUntil([&] { return !a.snapshot_status().empty(); }));
  EXPECT_FALSE(a.snapshot_status()[0].second);
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(200)));
}

// Forwarded calls to a peer with no URL fail cleanly.
TEST(PeerTransportTest, ForwardToPeerWithoutUrlsIsUnavailable) {
  Node a(1, 100);
  a.t()->AddPeer(5, {});
  etcdserverpb::LeaseKeepAliveRequest req;
  req.set_id(1);
  etcdserverpb::LeaseKeepAliveResponse resp;
  grpc::Status st = a.t()->LeaseRenew(5, req, &resp, absl::Seconds(1));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(PeerTransportTest, ClusterIdMismatchIsRefused) {
  Node a(1, 100);
  Node other(2, 200);
  a.t()->AddPeer(2, {other.url()});
  uint64_t i = 0;
  ASSERT_TRUE(PollUntil([&] { return a.saw_unreachable(2); },
                        [&] { a.t()->Send({Msg(1, 2, ++i)}); }))
      << "the sender never saw its stream refused";
  EXPECT_EQ(other.received_count(), 0u) << "accepted another cluster's messages";

  // A snapshot from another cluster is refused too.
  a.snapshot_chunks_ = {"x"};
  raft::Message snap = Msg(1, 2, 0, raft::MessageType::kSnap);
  snap.snapshot.metadata.index = 5;
  snap.snapshot.metadata.term = 1;
  a.t()->Send({snap});
  ASSERT_TRUE(PollUntil([&] { return !a.snapshot_status().empty(); }));
  EXPECT_EQ(a.snapshot_status()[0], (std::pair<uint64_t, bool>(2, false)));
  EXPECT_TRUE(other.snap_msgs().empty());
}

TEST(PeerTransportTest, SnapshotTransferDeliversEveryChunkAndReportsOk) {
  Node a(1, 100), b(2, 100);
  a.t()->AddPeer(2, {b.url()});
  a.snapshot_chunks_ = {"first", std::string(1 << 20, 'z'), "", "last"};
  raft::Message snap = Msg(1, 2, 0, raft::MessageType::kSnap);
  snap.term = 3;
  snap.snapshot.metadata.index = 50;
  snap.snapshot.metadata.term = 3;
  snap.snapshot.metadata.conf_state.voters = {1, 2};
  a.t()->Send({snap});
  ASSERT_TRUE(PollUntil([&] { return !a.snapshot_status().empty(); }));
  EXPECT_EQ(a.snapshot_status()[0], (std::pair<uint64_t, bool>(2, true)));
  ASSERT_EQ(b.snap_msgs().size(), 1u);
  const raft::Message got = b.snap_msgs()[0];
  EXPECT_EQ(got.type, raft::MessageType::kSnap);
  EXPECT_EQ(got.from, 1u);
  EXPECT_EQ(got.snapshot.metadata.index, 50u);
  EXPECT_EQ(got.snapshot.metadata.term, 3u);
  EXPECT_EQ(got.snapshot.metadata.conf_state.voters,
            (std::vector<uint64_t>{1, 2}));
  // Empty chunks carry nothing; the rest arrive whole and in order.
  EXPECT_EQ(b.snap_chunks(), (std::vector<std::string>{
                                 "first", std::string(1 << 20, 'z'), "last"}));

  // The receiver failing to take the snapshot is reported as a failure, and
  // a new transfer may start once the previous one finished.
  b.snapshot_reply_ = absl::InternalError("disk full");
  a.t()->Send({snap});
  ASSERT_TRUE(PollUntil([&] { return a.snapshot_status().size() >= 2; }));
  EXPECT_EQ(a.snapshot_status()[1], (std::pair<uint64_t, bool>(2, false)));
}

TEST(PeerTransportTest, FetchClusterInfo) {
  Node b(2, 0xABCD);
  auto info = PeerTransport::FetchClusterInfo(b.url(), absl::Seconds(5));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->cluster_id(), 0xABCDu);
  ASSERT_EQ(info->record().members_size(), 1);
  EXPECT_EQ(info->record().members(0).id(), 2u);
  EXPECT_EQ(info->record().members(0).peer_urls(0), b.url());
  ASSERT_EQ(info->record().removed_size(), 1);
  EXPECT_EQ(info->record().removed(0), 77u);

  const std::string url = b.url();
  b.Shutdown();
  auto down = PeerTransport::FetchClusterInfo(url, absl::Milliseconds(500));
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace synod::server
