// Three EtcdServer members in one process, each serving its Peer service on
// a 127.0.0.1 port: leader election, a write proposed through a follower,
// a linearizable read on a follower, leader failure and re-election, and a
// restarted member catching up from its data dir. Heartbeat 20 ms, election
// 200 ms; every wait polls with a deadline.
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "backend/server/etcd_server.h"
#include "gtest/gtest.h"

namespace synod::server {
namespace {

constexpr int kMembers = 3;
constexpr absl::Duration kDeadline = absl::Seconds(10);
constexpr absl::Duration kPoll = absl::Milliseconds(10);

bool PollUntil(const std::function<bool()>& cond,
               absl::Duration deadline = kDeadline) {
  const absl::Time end = absl::Now() + deadline;
  while (absl::Now() < end) {
    if (cond()) return true;
    absl::SleepFor(kPoll);  // polling interval, not synchronisation
  }
  return cond();
}

// A port free on 127.0.0.1 right now (the kernel's pick; closed again so
// that the member's gRPC server can bind it).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

class ClusterServerTest : public ::testing::Test {
 protected:
  struct Member {
    ServerConfig cfg;
    int port = 0;
    std::unique_ptr<EtcdServer> server;
    std::unique_ptr<grpc::Server> peer;
  };

  void SetUp() override {
    char tmpl[] = "/tmp/synod_cluster_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::vector<std::string> initial;
    for (int i = 0; i < kMembers; ++i) {
      m_[i].port = FreePort();
      ASSERT_GT(m_[i].port, 0);
      initial.push_back(absl::StrCat("m", i, "=http://127.0.0.1:", m_[i].port));
    }
    for (int i = 0; i < kMembers; ++i) {
      ServerConfig& c = m_[i].cfg;
      c.name = absl::StrCat("m", i);
      c.data_dir = absl::StrCat(dir_, "/m", i);
      const std::string url = absl::StrCat("http://127.0.0.1:", m_[i].port);
      c.listen_peer_urls = {url};
      c.initial_advertise_peer_urls = {url};
      c.initial_cluster = absl::StrJoin(initial, ",");
      c.initial_cluster_token = "unit-cluster";
      c.heartbeat_interval = absl::Milliseconds(20);
      c.election_timeout = absl::Milliseconds(200);
      c.run_timer_thread = true;
    }
    for (int i = 0; i < kMembers; ++i) Start(i);
  }

  void TearDown() override {
    for (int i = 0; i < kMembers; ++i) Kill(i);
    std::filesystem::remove_all(dir_);
  }

  // Opens member i's EtcdServer and serves its Peer service on its port.
  void Start(int i) {
    auto s = EtcdServer::Open(m_[i].cfg);
    ASSERT_TRUE(s.ok()) << s.status();
    m_[i].server = std::move(*s);
    grpc::ServerBuilder b;
    int bound = 0;
    b.AddListeningPort(absl::StrCat("127.0.0.1:", m_[i].port),
                       grpc::InsecureServerCredentials(), &bound);
    b.SetMaxReceiveMessageSize(INT_MAX);
    b.RegisterService(m_[i].server->peer_service());
    m_[i].peer = b.BuildAndStart();
    ASSERT_NE(m_[i].peer, nullptr);
    ASSERT_EQ(bound, m_[i].port);
  }

  // Stops member i: its peer listener first (no more inbound calls into a
  // stopping server), then the server.
  void Kill(int i) {
    if (m_[i].peer) {
      m_[i].peer->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
      m_[i].peer->Wait();
      m_[i].peer.reset();
    }
    m_[i].server.reset();
  }

  EtcdServer* S(int i) { return m_[i].server.get(); }

  // The member index every running member agrees is the leader.
  std::optional<int> AgreedLeader() {
    uint64_t lead = 0;
    for (int i = 0; i < kMembers; ++i) {
      if (!S(i)) continue;
      const uint64_t l = S(i)->leader();
      if (l == 0 || (lead != 0 && l != lead)) return std::nullopt;
      lead = l;
    }
    for (int i = 0; i < kMembers; ++i) {
      if (S(i) && S(i)->member_id() == lead) return i;
    }
    return std::nullopt;
  }

  int WaitLeader() {
    std::optional<int> lead;
    EXPECT_TRUE(PollUntil([&] { return (lead = AgreedLeader()).has_value(); }))
        << "no agreed leader within the deadline";
    return lead.value_or(-1);
  }

  absl::Status Put(int i, const std::string& k, const std::string& v) {
    synodpb::Request req;
    req.mutable_put()->set_key(k);
    req.mutable_put()->set_value(v);
    etcdserverpb::PutResponse resp;
    absl::Notification done;
    absl::Status result;
    S(i)->Propose(std::move(req), &resp, [&](absl::Status st) {
      result = st;
      done.Notify();
    });
    // The server's own request timeout (5.4 s) fires before this one.
    if (!done.WaitForNotificationWithTimeout(absl::Seconds(15))) {
      ADD_FAILURE() << "Propose never completed";
      return absl::DeadlineExceededError("test wait");
    }
    return result;
  }

  absl::Status Read(int i) {
    absl::Notification done;
    absl::Status result;
    S(i)->LinearizableRead([&](absl::Status st) {
      result = st;
      done.Notify();
    });
    if (!done.WaitForNotificationWithTimeout(absl::Seconds(15))) {
      ADD_FAILURE() << "LinearizableRead never completed";
      return absl::DeadlineExceededError("test wait");
    }
    return result;
  }

  // Serializable local read of `k` on member i; nullopt when absent.
  std::optional<std::string> Get(int i, const std::string& k) {
    etcdserverpb::RangeRequest r;
    r.set_key(k);
    r.set_serializable(true);
    etcdserverpb::RangeResponse resp;
    absl::Status st = S(i)->kv()->Range(r, &resp);
    EXPECT_TRUE(st.ok()) << st;
    if (resp.kvs_size() == 0) return std::nullopt;
    return resp.kvs(0).value();
  }

  bool AppliedEverywhere(const std::string& k, const std::string& v) {
    for (int i = 0; i < kMembers; ++i) {
      if (S(i) && Get(i, k) != std::optional<std::string>(v)) return false;
    }
    return true;
  }

  std::string dir_;
  Member m_[kMembers];
};

TEST_F(ClusterServerTest, ElectsProposesReadsFailsOverAndCatchesUp) {
  // All three agree on the cluster and the membership.
  for (int i = 1; i < kMembers; ++i) {
    EXPECT_EQ(S(i)->cluster_id(), S(0)->cluster_id());
    EXPECT_NE(S(i)->member_id(), S(0)->member_id());
  }
  EXPECT_EQ(S(0)->membership()->Members().size(), 3u);

  const int lead = WaitLeader();
  ASSERT_GE(lead, 0);
  const int f1 = (lead + 1) % kMembers;
  const int f2 = (lead + 2) % kMembers;

  // A put proposed through a follower is applied on all three.
  ASSERT_TRUE(Put(f1, "k1", "v1").ok());
  EXPECT_EQ(Get(f1, "k1"), std::optional<std::string>("v1"))
      << "done ran before the proposer applied its own write";
  ASSERT_TRUE(PollUntil([&] { return AppliedEverywhere("k1", "v1"); }));

  // A write acknowledged by the leader is visible on a follower once a
  // linearizable read there returns (ReadIndex waits for the apply).
  for (int round = 0; round < 20; ++round) {
    const std::string v = absl::StrCat("r", round);
    ASSERT_TRUE(Put(lead, "lin", v).ok());
    const int f = round % 2 ? f1 : f2;
    ASSERT_TRUE(Read(f).ok());
    ASSERT_EQ(Get(f, "lin"), std::optional<std::string>(v))
        << "stale linearizable read on member " << f << " in round " << round;
  }

  // The leader goes down: the other two elect a new leader and keep
  // taking writes.
  const uint64_t old_id = S(lead)->member_id();
  Kill(lead);
  std::optional<int> next;
  ASSERT_TRUE(PollUntil([&] {
    next = AgreedLeader();
    return next.has_value() && S(*next)->member_id() != old_id;
  })) << "no new leader after the old one stopped";
  ASSERT_TRUE(Put(f1, "k2", "v2").ok());
  ASSERT_TRUE(Put(f2, "k3", "v3").ok());
  ASSERT_TRUE(PollUntil([&] {
    return AppliedEverywhere("k2", "v2") && AppliedEverywhere("k3", "v3");
  }));

  // It restarts from its data dir and catches up, keeping its identity.
  Start(lead);
  ASSERT_NE(S(lead), nullptr);
  EXPECT_EQ(S(lead)->member_id(), old_id);
  EXPECT_EQ(S(lead)->cluster_id(), S(f1)->cluster_id());
  EXPECT_EQ(Get(lead, "k1"), std::optional<std::string>("v1"))
      << "applied state lost across restart";
  ASSERT_TRUE(PollUntil([&] {
    return Get(lead, "k2") == std::optional<std::string>("v2") &&
           Get(lead, "k3") == std::optional<std::string>("v3");
  })) << "the restarted member did not catch up";
  // And takes part again: a write through it is applied everywhere.
  ASSERT_TRUE(PollUntil([&] { return AgreedLeader().has_value(); }));
  ASSERT_TRUE(Put(lead, "k4", "v4").ok());
  ASSERT_TRUE(PollUntil([&] { return AppliedEverywhere("k4", "v4"); }));
  ASSERT_TRUE(Read(lead).ok());
}

}  // namespace
}  // namespace synod::server
