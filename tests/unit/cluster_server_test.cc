// Three EtcdServer members in one process on a fake clock and a fake
// network (cluster_fixture.h): leader election, a write proposed through a
// follower, a linearizable read on a follower, leader failure and
// re-election, a restarted member catching up from its data dir and by
// install snapshot, and runtime reconfiguration.
#include "tests/unit/cluster_fixture.h"

namespace synod::server {
namespace {

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

// etcd's runtime reconfiguration: a learner is added through a follower,
// a fourth server joins with --initial-cluster-state=existing (learning the
// cluster from a peer), catches up, is promoted, then removed.
TEST_F(ClusterServerTest, LearnerJoinsIsPromotedAndRemoved) {
  const int lead = WaitLeader();
  ASSERT_GE(lead, 0);
  const int f = (lead + 1) % kMembers;
  ASSERT_TRUE(Put(lead, "before", "join").ok());

  Member extra;
  const std::string url = PeerUrl(kMembers);
  absl::Notification added;
  absl::StatusOr<synodpb::Member> member;
  S(f)->AddMember({url}, /*is_learner=*/true,
                  [&](absl::StatusOr<synodpb::Member> m) {
                    member = std::move(m);
                    added.Notify();
                  });
  ASSERT_TRUE(AwaitDone(&added));
  ASSERT_TRUE(member.ok()) << member.status();
  EXPECT_TRUE(member->is_learner());
  const uint64_t id = member->id();
  // Every member applies the change.
  ASSERT_TRUE(PollUntil([&] {
    for (int i = 0; i < kMembers; ++i) {
      auto m = S(i)->membership()->Get(id);
      if (!m.has_value() || !m->is_learner()) return false;
    }
    return true;
  }));
  // The same peer URL cannot be added twice.
  absl::Notification dup_done;
  absl::StatusOr<synodpb::Member> dup;
  S(lead)->AddMember({url}, true, [&](absl::StatusOr<synodpb::Member> m) {
    dup = std::move(m);
    dup_done.Notify();
  });
  ASSERT_TRUE(AwaitDone(&dup_done));
  EXPECT_FALSE(dup.ok());

  extra.cfg = m_[0].cfg;
  extra.cfg.name = "extra";
  extra.cfg.data_dir = dir_ + "/extra";
  extra.cfg.listen_peer_urls = {url};
  extra.cfg.initial_advertise_peer_urls = {url};
  extra.cfg.initial_cluster = absl::StrCat(m_[0].cfg.initial_cluster, ",extra=", url);
  extra.cfg.initial_cluster_state = "existing";
  absl::Notification removed_hook;
  extra.cfg.on_removed = [&removed_hook] { removed_hook.Notify(); };
  Start(&extra);
  ASSERT_NE(extra.server, nullptr);
  EXPECT_EQ(extra.server->member_id(), id);
  EXPECT_EQ(extra.server->cluster_id(), S(0)->cluster_id());
  auto get_extra = [&](const std::string& k) -> std::optional<std::string> {
    etcdserverpb::RangeRequest r;
    r.set_key(k);
    etcdserverpb::RangeResponse resp;
    EXPECT_TRUE(extra.server->kv()->Range(r, &resp).ok());
    if (resp.kvs_size() == 0) return std::nullopt;
    return resp.kvs(0).value();
  };
  ASSERT_TRUE(PollUntil([&] { return get_extra("before") == "join"; }))
      << "the learner did not catch up";
  EXPECT_TRUE(extra.server->is_learner());

  // Promote (through a follower: forwarded to the leader), retrying while
  // the leader does not yet consider the learner caught up.
  absl::Status promoted = absl::UnknownError("not tried");
  ASSERT_TRUE(PollUntil([&] {
    absl::Notification done;
    S(f)->PromoteMember(id, [&](absl::Status st) {
      promoted = st;
      done.Notify();
    });
    if (!AwaitDone(&done)) return false;
    return promoted.ok();
  })) << promoted;
  ASSERT_TRUE(PollUntil([&] {
    for (int i = 0; i < kMembers; ++i) {
      auto m = S(i)->membership()->Get(id);
      if (!m.has_value() || m->is_learner()) return false;
    }
    return !extra.server->is_learner();
  }));
  ASSERT_TRUE(Put(lead, "with", "four").ok());
  ASSERT_TRUE(PollUntil([&] { return get_extra("with") == "four"; }));

  // Remove it again, while it runs: everyone forgets it, and it stops
  // applying and tells its embedder (on_removed), without signalling the
  // process.
  absl::Notification removed;
  absl::Status rm;
  S(lead)->RemoveMember(id, [&](absl::Status st) {
    rm = st;
    removed.Notify();
  });
  ASSERT_TRUE(AwaitDone(&removed));
  ASSERT_TRUE(rm.ok()) << rm;
  ASSERT_TRUE(PollUntil([&] {
    for (int i = 0; i < kMembers; ++i) {
      if (S(i)->membership()->Get(id).has_value() ||
          !S(i)->membership()->IsRemoved(id)) {
        return false;
      }
    }
    return true;
  }));
  ASSERT_TRUE(PollUntil([&] { return removed_hook.HasBeenNotified(); }))
      << "the removed member did not report its removal";
  ASSERT_TRUE(PollUntil([&] { return AgreedLeader().has_value(); }));
  const int now_lead = *AgreedLeader();
  ASSERT_TRUE(Put(now_lead, "after", "remove").ok());
  ASSERT_TRUE(PollUntil([&] { return AppliedEverywhere("after", "remove"); }));
  EXPECT_EQ(get_extra("after"), std::nullopt)
      << "a removed member kept applying";
  // Proposals on it fail at once.
  absl::Notification refused;
  absl::Status refused_st;
  synodpb::Request late;
  late.mutable_put()->set_key("late");
  etcdserverpb::PutResponse late_resp;
  extra.server->Propose(late, &late_resp, [&](absl::Status st) {
    refused_st = st;
    refused.Notify();
  });
  ASSERT_TRUE(AwaitDone(&refused));
  EXPECT_FALSE(refused_st.ok());
  Kill(&extra);
}

// With --snapshot-count 20 the leader compacts its log while a follower is
// down, so the follower can only catch up by an install-snapshot transfer:
// every key written (and deleted) while it was away must be right after.
class ClusterSnapshotTest : public ClusterServerTest {
 protected:
  int64_t SnapshotCount() const override { return 20; }
};

// Auth state is replicated state: users, roles, permissions and the
// enabled flag reach a follower that missed them through the snapshot, and
// its checks then decide as the leader's do.
TEST_F(ClusterSnapshotTest, AuthStateTravelsInTheSnapshot) {
  const int lead = WaitLeader();
  ASSERT_GE(lead, 0);
  const int f = (lead + 1) % kMembers;
  ASSERT_TRUE(Put(lead, "k", "v").ok());
  ASSERT_TRUE(PollUntil([&] { return AppliedEverywhere("k", "v"); }));
  const uint64_t f_applied = S(f)->applied_index();
  Kill(f);

  auto run = [&](synodpb::Request req) {
    etcdserverpb::AuthUserAddResponse resp;  // every auth answer is a header
    return Run(lead, std::move(req), &resp);
  };
  synodpb::Request r;
  r.mutable_user_add()->set_name("root");
  r.mutable_user_add()->set_hashed_password(
      *S(lead)->auth_store()->HashPassword("rootpw"));
  ASSERT_TRUE(run(r).ok());
  r.Clear();
  r.mutable_user_grant_role()->set_user("root");
  r.mutable_user_grant_role()->set_role("root");
  ASSERT_TRUE(run(r).ok());
  r.Clear();
  r.mutable_role_add()->set_name("svc");
  ASSERT_TRUE(run(r).ok());
  r.Clear();
  r.mutable_role_grant_permission()->set_name("svc");
  r.mutable_role_grant_permission()->mutable_perm()->set_permtype(
      authpb::Permission::READ);
  r.mutable_role_grant_permission()->mutable_perm()->set_key("/svc/");
  r.mutable_role_grant_permission()->mutable_perm()->set_range_end("/svc0");
  ASSERT_TRUE(run(r).ok());
  r.Clear();
  r.mutable_user_add()->set_name("u");
  r.mutable_user_add()->set_no_password(true);
  ASSERT_TRUE(run(r).ok());
  r.Clear();
  r.mutable_user_grant_role()->set_user("u");
  r.mutable_user_grant_role()->set_role("svc");
  ASSERT_TRUE(run(r).ok());
  r.Clear();
  r.mutable_auth_enable();
  ASSERT_TRUE(run(r).ok());
  for (int k = 0; k < 60; ++k) {  // past --snapshot-count: the log compacts
    ASSERT_TRUE(Put(lead, absl::StrCat("key", k), "v").ok());
  }
  auto needed = S(lead)->backend()->Get(storage::RaftEntryKey(f_applied + 1));
  ASSERT_TRUE(needed.ok());
  ASSERT_FALSE(needed->has_value()) << "the log was not compacted";

  Start(f);
  auth::AuthStore* want = S(lead)->auth_store();
  ASSERT_TRUE(PollUntil([&] {
    return S(f)->auth_store()->IsAuthEnabled() &&
           S(f)->auth_store()->Revision() == want->Revision();
  })) << "the follower never got the auth state";
  auth::AuthStore* got = S(f)->auth_store();
  EXPECT_EQ(got->UserList(), want->UserList());
  EXPECT_EQ(got->RoleList(), want->RoleList());
  auto perms = got->RoleGet("svc");
  ASSERT_TRUE(perms.ok());
  ASSERT_EQ(perms->size(), 1u);
  EXPECT_EQ((*perms)[0].key(), "/svc/");
  const auth::AuthInfo u{"u", got->Revision()};
  EXPECT_TRUE(got->IsRangePermitted(u, "/svc/a", "").ok());
  EXPECT_FALSE(got->IsPutPermitted(u, "/svc/a").ok());
  EXPECT_FALSE(got->IsRangePermitted(u, "/other", "").ok());
  EXPECT_TRUE(got->CheckPassword("root", "rootpw").ok());
}

TEST_F(ClusterSnapshotTest, RestartedFollowerCatchesUpBySnapshot) {
  const int lead = WaitLeader();
  ASSERT_GE(lead, 0);
  const int f = (lead + 1) % kMembers;
  ASSERT_TRUE(Put(lead, "gone", "soon").ok());
  ASSERT_TRUE(Put(lead, "kept", "old").ok());
  ASSERT_TRUE(PollUntil([&] { return AppliedEverywhere("kept", "old"); }));
  const uint64_t f_applied = S(f)->applied_index();
  Kill(f);

  ASSERT_TRUE(Delete(lead, "gone").ok());
  ASSERT_TRUE(Put(lead, "kept", "new").ok());
  constexpr int kKeys = 120;
  for (int k = 0; k < kKeys; ++k) {
    ASSERT_TRUE(Put(lead, absl::StrCat("key", k), absl::StrCat("v", k)).ok());
  }
  // Precondition: the leader no longer has the entry the follower needs.
  auto needed = S(lead)->backend()->Get(storage::RaftEntryKey(f_applied + 1));
  ASSERT_TRUE(needed.ok());
  ASSERT_FALSE(needed->has_value())
      << "the leader's log was not compacted past index " << f_applied + 1;

  Start(f);
  ASSERT_TRUE(PollUntil([&] {
    return Get(f, absl::StrCat("key", kKeys - 1)) ==
           std::optional<std::string>(absl::StrCat("v", kKeys - 1));
  })) << "the follower never caught up";
  // A linearizable read right after the install, with no write after it:
  // its ReadIndex is covered by the snapshot alone.
  ASSERT_TRUE(Read(f).ok()) << "a read waited on an index the snapshot covers";
  for (int k = 0; k < kKeys; ++k) {
    ASSERT_EQ(Get(f, absl::StrCat("key", k)),
              std::optional<std::string>(absl::StrCat("v", k)));
  }
  EXPECT_EQ(Get(f, "kept"), std::optional<std::string>("new"));
  EXPECT_EQ(Get(f, "gone"), std::nullopt) << "a deleted key survived";
  EXPECT_EQ(S(f)->kv()->Rev(), S(lead)->kv()->Rev());
  EXPECT_EQ(S(f)->membership()->Members().size(), 3u);
  // It keeps applying afterwards, through itself too.
  ASSERT_TRUE(PollUntil([&] { return AgreedLeader().has_value(); }));
  ASSERT_TRUE(Put(f, "after", "snap").ok());
  ASSERT_TRUE(PollUntil([&] { return AppliedEverywhere("after", "snap"); }));
  ASSERT_TRUE(Read(f).ok());
  // And restarts from the installed state.
  Kill(f);
  Start(f);
  EXPECT_EQ(Get(f, "after"), std::optional<std::string>("snap"));
  EXPECT_EQ(Get(f, "gone"), std::nullopt);
  ASSERT_TRUE(Put(lead, "after2", "x").ok());
  ASSERT_TRUE(PollUntil([&] { return AppliedEverywhere("after2", "x"); }));
}

// A member killed after InitIdentity recorded its IDs ("m/ids", synced) but
// before the raft thread persisted the bootstrap conf changes restarts with
// IDs and an empty Raft log. It must bootstrap again (same IDs, same
// members), as etcd does when it finds no WAL.
TEST(ClusterServerCrashTest, RestartBetweenIdsAndFirstReadyBootstraps) {
  char tmpl[] = "/tmp/synod_cluster_crash_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ServerConfig c;
  c.name = "solo";
  c.data_dir = dir + "/solo";
  const std::string url = "http://solo.fake:2380";
  c.listen_peer_urls = {url};
  c.initial_advertise_peer_urls = {url};
  c.initial_cluster = "solo=" + url;
  c.initial_cluster_token = "crash";
  c.heartbeat_interval = absl::Milliseconds(20);
  c.election_timeout = absl::Milliseconds(200);
  {
    // What InitIdentity wrote before the "crash".
    std::filesystem::create_directories(c.data_dir + "/member");
    auto b = storage::Backend::Open(c.data_dir + "/member/db");
    ASSERT_TRUE(b.ok()) << b.status();
    const uint64_t id = ComputeMemberId("solo", {url}, "crash");
    const uint64_t cid = ComputeClusterId({id}, "crash");
    synodpb::MemberRecord rec;
    synodpb::Member* m = rec.add_members();
    m->set_id(id);
    m->set_name("solo");
    m->add_peer_urls(url);
    storage::Batch batch;
    batch.Put(storage::kMetaIds, storage::EncodeU64(cid) + storage::EncodeU64(id));
    batch.Put(kMetaMembers, rec.SerializeAsString());
    ASSERT_TRUE((*b)->Write(&batch, true).ok());
  }
  common::FakeClock clock;
  synod::testing::FakeNetwork net;
  auto s = EtcdServer::Open(c, &clock, &net);
  ASSERT_TRUE(s.ok()) << s.status();
  // Its raft and timer threads wait on the clock before time moves.
  ASSERT_TRUE(clock.WaitForWaiters(2));
  bool elected = false;
  for (int i = 0; i < 250 && !elected; ++i) {  // 5 s of fake time
    elected = (*s)->leader() != 0;
    clock.Advance(kHeartbeat);
  }
  EXPECT_TRUE(elected) << "the single member never elected itself";
  s->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace synod::server
