// EtcdServer on a FakeClock with the timer thread off: auto-compaction,
// lease expiry through the log, quota, and restart durability. Time moves
// only by FakeClock::Advance and TEST_Tick; ordering is by proposals (a
// proposal's done callback runs after every earlier proposal is applied).
#include "backend/server/etcd_server.h"

#include <cstdlib>
#include <filesystem>

#include "absl/synchronization/notification.h"
#include "common/errors.h"
#include "gtest/gtest.h"

namespace synod::server {
namespace {

class EtcdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/synod_server_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cfg_.name = "t";
    cfg_.data_dir = dir_ + "/data";
    cfg_.run_timer_thread = false;
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open() {
    auto s = EtcdServer::Open(cfg_, &clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  // Proposes and waits for the result.
  absl::Status Run(synodpb::Request req, google::protobuf::Message* resp) {
    absl::Notification done;
    absl::Status result;
    server_->Propose(std::move(req), resp, [&](absl::Status st) {
      result = st;
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
  absl::Status Put(const std::string& k, const std::string& v, int64_t lease = 0) {
    synodpb::Request req;
    req.mutable_put()->set_key(k);
    req.mutable_put()->set_value(v);
    req.mutable_put()->set_lease(lease);
    etcdserverpb::PutResponse resp;
    return Run(std::move(req), &resp);
  }
  int64_t Count(const std::string& k) {
    etcdserverpb::RangeRequest r;
    r.set_key(k);
    etcdserverpb::RangeResponse resp;
    EXPECT_TRUE(server_->kv()->Range(r, &resp).ok());
    return resp.count();
  }

  std::string dir_;
  ServerConfig cfg_;
  common::FakeClock clock_;
  std::unique_ptr<EtcdServer> server_;
};

TEST_F(EtcdServerTest, PeriodicAutoCompactionCompactsToTheRevisionOneRetentionAgo) {
  cfg_.auto_compaction_mode = "periodic";
  cfg_.auto_compaction_retention = "1h";
  Open();
  ASSERT_TRUE(Put("k", "v1").ok());  // revision 2
  server_->TEST_Tick();              // sample (t0, 2)
  ASSERT_TRUE(Put("k", "v2").ok());  // revision 3
  clock_.Advance(absl::Minutes(30));
  server_->TEST_Tick();              // sample (t0+30m, 3); nothing is 1h old
  ASSERT_TRUE(Put("k", "v3").ok());  // revision 4; also a barrier
  EXPECT_EQ(server_->kv()->CompactRev(), 0);
  clock_.Advance(absl::Minutes(31));
  server_->TEST_Tick();              // t0 is 61m old: compact at 2
  ASSERT_TRUE(Put("k", "v4").ok());  // barrier: the compaction was applied
  EXPECT_EQ(server_->kv()->CompactRev(), 2);
}

TEST_F(EtcdServerTest, RevisionAutoCompactionKeepsTheLastRetentionRevisions) {
  cfg_.auto_compaction_mode = "revision";
  cfg_.auto_compaction_retention = "3";
  Open();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Put("k", std::to_string(i)).ok());
  ASSERT_EQ(server_->kv()->Rev(), 11);
  clock_.Advance(absl::Minutes(4));
  server_->TEST_Tick();  // before etcd's 5-minute interval: nothing
  ASSERT_TRUE(Put("barrier", "x").ok());  // revision 12
  EXPECT_EQ(server_->kv()->CompactRev(), 0);
  clock_.Advance(absl::Minutes(2));
  server_->TEST_Tick();  // compact at 12 - 3 = 9
  ASSERT_TRUE(Put("barrier", "y").ok());
  EXPECT_EQ(server_->kv()->CompactRev(), 9);
}

TEST_F(EtcdServerTest, ExpiredLeaseIsRevokedThroughTheLogWithItsKeys) {
  Open();
  synodpb::Request grant;
  grant.mutable_lease_grant()->set_id(7);
  grant.mutable_lease_grant()->set_ttl(5);
  etcdserverpb::LeaseGrantResponse gr;
  ASSERT_TRUE(Run(std::move(grant), &gr).ok());
  EXPECT_EQ(gr.ttl(), 5);
  ASSERT_TRUE(Put("a", "1", 7).ok());
  ASSERT_TRUE(Put("b", "2", 7).ok());
  const int64_t before = server_->kv()->Rev();
  clock_.Advance(absl::Seconds(4));
  server_->TEST_Tick();
  ASSERT_TRUE(Put("barrier", "1").ok());
  EXPECT_EQ(Count("a"), 1) << "revoked before its TTL";
  clock_.Advance(absl::Seconds(2));
  server_->TEST_Tick();
  ASSERT_TRUE(Put("barrier", "2").ok());
  EXPECT_EQ(Count("a"), 0);
  EXPECT_EQ(Count("b"), 0);
  // barrier(1), revoke (both keys in one revision), barrier(2).
  EXPECT_EQ(server_->kv()->Rev(), before + 3);
  EXPECT_FALSE(server_->lessor()->LeaseExists(7));
}

TEST_F(EtcdServerTest, PutWithUnknownLeaseFailsAndChangesNothing) {
  Open();
  const int64_t rev = server_->kv()->Rev();
  absl::Status st = Put("k", "v", 12345);
  EXPECT_TRUE(common::IsErr(st, common::EtcdError::kLeaseNotFound)) << st;
  EXPECT_EQ(server_->kv()->Rev(), rev);
}

TEST_F(EtcdServerTest, QuotaRaisesNoSpaceAndRefusesPutsButNotDeletes) {
  cfg_.quota_backend_bytes = 64 << 10;
  Open();
  absl::Status st;
  int i = 0;
  for (; i < 1000; ++i) {
    st = Put("k" + std::to_string(i), std::string(1024, 'x'));
    if (!st.ok()) break;
  }
  ASSERT_TRUE(common::IsErr(st, common::EtcdError::kNoSpace)) << st;
  // The alarm is raised through the log, proposed before the answer above:
  // applied before the delete proposed now.
  synodpb::Request del;
  del.mutable_delete_range()->set_key("k0");
  etcdserverpb::DeleteRangeResponse dr;
  ASSERT_TRUE(Run(std::move(del), &dr).ok());
  EXPECT_EQ(dr.deleted(), 1);
  ASSERT_EQ(server_->Alarms().size(), 1u);
  EXPECT_EQ(server_->Alarms()[0].alarm(), etcdserverpb::NOSPACE);
  EXPECT_EQ(server_->Alarms()[0].memberid(), server_->member_id());
  // The alarm is persisted: still raised after a restart.
  server_.reset();
  Open();
  EXPECT_EQ(server_->Alarms().size(), 1u);
  EXPECT_TRUE(common::IsErr(Put("again", "x"), common::EtcdError::kNoSpace));
}

// A committed entry that does not decode stops the member with a clear
// line: skipping it would leave this member serving a state the others do
// not have. The put after it must never be acknowledged.
TEST_F(EtcdServerTest, UndecodableCommittedEntryStopsTheMember) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Open();
  ASSERT_TRUE(Put("before", "x").ok());
  EXPECT_DEATH(
      {
        server_->TEST_ProposeRaw(std::string(8, '\xff'));
        (void)Put("after", "x");  // applied only if the entry was skipped
      },
      "does not decode as a request; this member cannot apply its log");
}

TEST_F(EtcdServerTest, AcknowledgedWritesAndLeasesSurviveRestart) {
  Open();
  synodpb::Request grant;
  grant.mutable_lease_grant()->set_id(9);
  grant.mutable_lease_grant()->set_ttl(60);
  etcdserverpb::LeaseGrantResponse gr;
  ASSERT_TRUE(Run(std::move(grant), &gr).ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(Put("k" + std::to_string(i), "v", i % 2 ? 9 : 0).ok());
  const int64_t rev = server_->kv()->Rev();
  const uint64_t applied = server_->kv()->AppliedIndex();
  auto hash = server_->kv()->HashKV(0);
  ASSERT_TRUE(hash.ok());
  server_.reset();
  Open();
  EXPECT_EQ(server_->kv()->Rev(), rev);
  EXPECT_EQ(server_->kv()->AppliedIndex(), applied);
  auto hash2 = server_->kv()->HashKV(0);
  ASSERT_TRUE(hash2.ok());
  EXPECT_EQ(*hash2, *hash);
  auto ttl = server_->lessor()->TimeToLive(9, /*with_keys=*/true);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(ttl->keys.size(), 25u);
  EXPECT_EQ(ttl->remaining, 60) << "renewal rule: a full TTL after restart";
}

}  // namespace
}  // namespace synod::server
