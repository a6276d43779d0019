// ClusterServerTest: three EtcdServer members in one process on a FakeClock
// and a FakeNetwork (tests/support/fake_network.h): no ports, no real
// timers. Heartbeat 20 ms, election 200 ms, in fake time; a wait advances
// the fake clock one heartbeat at a time until its condition holds (each
// Advance returns once the woken raft and timer threads have run), bounded
// in fake time. Subclasses tune the members' config through Tune(). Shared
// by the cluster_*_test.cc suites. Not thread-safe: the test thread drives
// it.
#ifndef SYNOD_TESTS_UNIT_CLUSTER_FIXTURE_H_
#define SYNOD_TESTS_UNIT_CLUSTER_FIXTURE_H_

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
#include "backend/server/etcd_server.h"
#include "backend/storage/schema.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "tests/support/fake_network.h"
#include "tests/support/fault_injection_env.h"

namespace synod::server {

inline constexpr int kMembers = 3;
inline constexpr absl::Duration kHeartbeat = absl::Milliseconds(20);
// How much fake time a wait may take before it fails.
inline constexpr absl::Duration kDeadline = absl::Seconds(30);

class ClusterServerTest : public ::testing::Test {
 protected:
  struct Member {
    ServerConfig cfg;
    std::unique_ptr<EtcdServer> server;
  };

  void SetUp() override {
    char tmpl[] = "/tmp/synod_cluster_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::vector<std::string> initial;
    for (int i = 0; i < kMembers; ++i) {
      initial.push_back(absl::StrCat("m", i, "=", PeerUrl(i)));
    }
    for (int i = 0; i < kMembers; ++i) {
      ServerConfig& c = m_[i].cfg;
      c.name = absl::StrCat("m", i);
      c.data_dir = absl::StrCat(dir_, "/m", i);
      const std::string url = PeerUrl(i);
      c.listen_peer_urls = {url};
      c.initial_advertise_peer_urls = {url};
      c.initial_cluster = absl::StrJoin(initial, ",");
      c.initial_cluster_token = "unit-cluster";
      c.heartbeat_interval = kHeartbeat;
      c.election_timeout = absl::Milliseconds(200);
      c.run_timer_thread = true;
      c.snapshot_count = SnapshotCount();
      if (FaultInjectingDisks()) {
        disks_[i] = std::make_unique<synod::testing::FaultInjectionEnv>(
            leveldb::Env::Default());
        c.env = disks_[i].get();
      }
      Tune(&c);
    }
    for (int i = 0; i < kMembers; ++i) Start(i);
  }

  // --snapshot-count for every member.
  virtual int64_t SnapshotCount() const { return 100000; }
  // Any other setting, for every member, before it first starts.
  virtual void Tune(ServerConfig* c) const {}
  // Whether each member's database goes through a FaultInjectionEnv
  // (disk(i)), so a test can cut its power.
  virtual bool FaultInjectingDisks() const { return false; }
  synod::testing::FaultInjectionEnv* disk(int i) { return disks_[i].get(); }

  void TearDown() override {
    for (int i = 0; i < kMembers; ++i) Kill(i);
    std::filesystem::remove_all(dir_);
  }

  // A peer URL on the fake network (nothing listens on it).
  static std::string PeerUrl(int i) {
    return absl::StrCat("http://member-", i, ".fake:2380");
  }

  // Opens member i's EtcdServer on the fake clock and network.
  void Start(int i) { Start(&m_[i]); }
  void Start(Member* m) {
    const size_t waiting = clock_.waiters();
    auto s = EtcdServer::Open(m->cfg, &clock_, &net_);
    ASSERT_TRUE(s.ok()) << s.status();
    m->server = std::move(*s);
    // Time moves on once its raft and timer threads wait on the clock, so
    // no Advance passes them by. (Other members' threads come and go from
    // the count, so this only paces; it asserts nothing.)
    clock_.WaitForWaiters(waiting + 2, absl::Seconds(2));
  }

  // Stops member i (its transport leaves the fake network first).
  void Kill(int i) { Kill(&m_[i]); }
  void Kill(Member* m) { m->server.reset(); }

  // Advances the fake clock one heartbeat at a time until cond() holds, for
  // at most `limit` of fake time.
  bool PollUntil(const std::function<bool()>& cond,
                 absl::Duration limit = kDeadline) {
    for (absl::Duration t; t < limit; t += kHeartbeat) {
      if (cond()) return true;
      clock_.Advance(kHeartbeat);
    }
    return cond();
  }

  // Waits for `n` while fake time passes (a proposal may wait for a leader
  // or a tick); false after kDeadline of fake time.
  bool AwaitDone(absl::Notification* n) {
    for (absl::Duration t; t < kDeadline; t += kHeartbeat) {
      // Real time only bounds each slice; the notification is the event.
      if (n->WaitForNotificationWithTimeout(absl::Milliseconds(5))) return true;
      clock_.Advance(kHeartbeat);
    }
    return n->HasBeenNotified();
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
    if (!AwaitDone(&done)) {
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
    if (!AwaitDone(&done)) {
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

  // Declared before the members: they must outlive every server.
  common::FakeClock clock_;
  synod::testing::FakeNetwork net_;
  std::unique_ptr<synod::testing::FaultInjectionEnv> disks_[kMembers];
  std::string dir_;
  Member m_[kMembers];
};

}  // namespace synod::server

#endif  // SYNOD_TESTS_UNIT_CLUSTER_FIXTURE_H_
