// ClusterServerTest: three EtcdServer members in one process, each serving
// its Peer service on a 127.0.0.1 port the kernel picked. Heartbeat 20 ms,
// election 200 ms; every wait polls with a deadline. Subclasses tune the
// members' config through Tune(). Shared by the cluster_*_test.cc suites.
// Not thread-safe: the test thread drives it.
#ifndef SYNOD_TESTS_UNIT_CLUSTER_FIXTURE_H_
#define SYNOD_TESTS_UNIT_CLUSTER_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "backend/server/etcd_server.h"
#include "backend/storage/schema.h"
#include "gtest/gtest.h"
#include "tests/support/free_port.h"

namespace synod::server {


inline constexpr int kMembers = 3;
inline constexpr absl::Duration kDeadline = absl::Seconds(10);
inline constexpr absl::Duration kPoll = absl::Milliseconds(10);

inline bool PollUntil(const std::function<bool()>& cond,
               absl::Duration deadline = kDeadline) {
  const absl::Time end = absl::Now() + deadline;
  while (absl::Now() < end) {
    if (cond()) return true;
    absl::SleepFor(kPoll);  // polling interval, not synchronisation
  }
  return cond();
}

// Ports are reserved across test processes (tests/support/free_port.h).
inline int FreePort() { return synod::testing::PickFreePort(); }

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
      c.snapshot_count = SnapshotCount();
      Tune(&c);
    }
    for (int i = 0; i < kMembers; ++i) Start(i);
  }

  // --snapshot-count for every member.
  virtual int64_t SnapshotCount() const { return 100000; }
  // Any other setting, for every member, before it first starts.
  virtual void Tune(ServerConfig* c) const {}

  void TearDown() override {
    for (int i = 0; i < kMembers; ++i) Kill(i);
    std::filesystem::remove_all(dir_);
  }

  // Opens member i's EtcdServer and serves its Peer service on its port.
  void Start(int i) { Start(&m_[i]); }
  void Start(Member* m) {
    auto s = EtcdServer::Open(m->cfg);
    ASSERT_TRUE(s.ok()) << s.status();
    m->server = std::move(*s);
    grpc::ServerBuilder b;
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // as synod's main
    int bound = 0;
    b.AddListeningPort(absl::StrCat("127.0.0.1:", m->port),
                       grpc::InsecureServerCredentials(), &bound);
    b.SetMaxReceiveMessageSize(INT_MAX);
    b.RegisterService(m->server->peer_service());
    m->peer = b.BuildAndStart();
    ASSERT_NE(m->peer, nullptr);
    ASSERT_EQ(bound, m->port);
  }

  // Stops member i: its peer listener first (no more inbound calls into a
  // stopping server), then the server.
  void Kill(int i) { Kill(&m_[i]); }
  void Kill(Member* m) {
    if (m->peer) {
      m->peer->Shutdown(
          absl::ToChronoTime(absl::Now() + absl::Milliseconds(200)));
      m->peer->Wait();
      m->peer.reset();
    }
    m->server.reset();
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
    return Run(i, std::move(req), &resp);
  }

  absl::Status Delete(int i, const std::string& k) {
    synodpb::Request req;
    req.mutable_delete_range()->set_key(k);
    etcdserverpb::DeleteRangeResponse resp;
    return Run(i, std::move(req), &resp);
  }

  // Proposes `req` on member i and waits for its result.
  absl::Status Run(int i, synodpb::Request req,
                   google::protobuf::Message* resp) {
    absl::Notification done;
    absl::Status result;
    S(i)->Propose(std::move(req), resp, [&](absl::Status st) {
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

}  // namespace synod::server

#endif  // SYNOD_TESTS_UNIT_CLUSTER_FIXTURE_H_
