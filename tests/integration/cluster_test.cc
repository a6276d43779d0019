// A 3-member cluster of real processes driven by etcdctl 3.4: replication,
// leader failover under load, catch-up from the log and from a snapshot, and
// a paused (SIGSTOPped) leader that must not serve stale reads.
//
// Timing: every cluster runs with --heartbeat-interval=50
// --election-timeout=500 (ms) unless a test says otherwise.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/integration/cluster_load.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
  }
  void TearDown() override {
    if (cluster_ != nullptr && HasFailure()) {
      std::cerr << cluster_->LogTails() << "\n";
    }
    cluster_.reset();
  }
  void StartCluster(ClusterOptions options = {}) {
    cluster_ = std::make_unique<Cluster>(std::move(options));
    ASSERT_TRUE(cluster_->Start());
  }
  // A put that must succeed through member i; returns the header revision.
  int64_t MustPut(int i, const std::string& key, const std::string& value) {
    std::optional<Json> j = cluster_->CtlJson(i, {"put", key, value});
    EXPECT_TRUE(j.has_value()) << "put " << key << " via m" << i;
    return j.has_value() ? (*j)["header"]["revision"].Int() : 0;
  }
  // The current revision, by a linearizable get through member i.
  int64_t Revision(int i) {
    GetResult g = GetKey(cluster_->Endpoint(i), "synod-it-rev", false);
    EXPECT_TRUE(g.ok) << g.error;
    return g.revision;
  }
  // A member other than the ones in `not_these`.
  int Other(std::initializer_list<int> not_these) {
    for (int i = 0; i < cluster_->size(); ++i) {
      bool excluded = false;
      for (int n : not_these) excluded |= (n == i);
      if (!excluded) return i;
    }
    return -1;
  }
  // Expects `dump` to hold every acked key with its value, and nothing that
  // was never written.
  void ExpectHoldsAcked(const std::map<std::string, std::string>& dump,
                        const std::map<std::string, std::string>& acked,
                        const std::vector<std::string>& unknown,
                        const std::string& who) {
    for (const auto& [key, value] : acked) {
      auto it = dump.find(key);
      ASSERT_NE(it, dump.end()) << who << ": acknowledged put lost: " << key;
      EXPECT_EQ(it->second, value) << who << ": " << key;
    }
    for (const auto& [key, value] : dump) {
      bool maybe = acked.count(key) == 1 ||
                   std::find(unknown.begin(), unknown.end(), key) !=
                       unknown.end();
      EXPECT_TRUE(maybe) << who << ": a key nobody wrote: " << key;
    }
  }

  std::unique_ptr<Cluster> cluster_;
};

TEST_F(ClusterTest, WritesThroughOneMemberAreReadableOnEveryMember) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const int leader = cluster_->Leader();
  ASSERT_GE(leader, 0);
  // Write through a follower: it must forward to the leader.
  const int writer = Other({leader});
  const int64_t rev = MustPut(writer, "rep/k", "v1");
  ASSERT_GT(rev, 0);
  for (int i = 0; i < 3; ++i) {
    // Linearizable: must see the write at once, on every member.
    GetResult g = GetKey(cluster_->Endpoint(i), "rep/k", false);
    ASSERT_TRUE(g.ok) << "m" << i << ": " << g.error;
    EXPECT_EQ(g.value, "v1") << "m" << i;
    EXPECT_GE(g.revision, rev) << "m" << i;
    // Serializable: once the member has applied rev.
    ASSERT_TRUE(cluster_->WaitForRevision(i, rev, absl::Seconds(10)));
    GetResult s = GetKey(cluster_->Endpoint(i), "rep/k", true);
    ASSERT_TRUE(s.ok) << "m" << i << ": " << s.error;
    EXPECT_EQ(s.value, "v1") << "m" << i;
  }
  // All three endpoints at once (etcdctl's client balancer picks one).
  GetResult all = GetKey(cluster_->Endpoints(), "rep/k", false);
  ASSERT_TRUE(all.ok) << all.error;
  EXPECT_EQ(all.value, "v1");
  CmdResult put = Etcdctl(cluster_->Endpoints(), {"put", "rep/k", "v2"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
  for (int i = 0; i < 3; ++i) {
    GetResult g = GetKey(cluster_->Endpoint(i), "rep/k", false);
    EXPECT_EQ(g.value, "v2") << "m" << i << ": " << g.error;
  }
  CmdResult text = Etcdctl(cluster_->Endpoints(), {"get", "rep/k"});
  EXPECT_EQ(text.out, "rep/k\nv2\n");
}

// Slack on top of 2 election timeouts when timing a failover: each poll is
// one etcdctl process (~50-100 ms on an idle machine, several times that on a
// loaded 2-core CI box), the election itself needs a round trip, and the
// write loop competes for the same CPUs. 1 s is far below what a broken
// failover (no election, or one only after many timeouts) would take.
constexpr absl::Duration kFailoverSlack = absl::Milliseconds(1000);

TEST_F(ClusterTest, NewLeaderWithinTwoElectionTimeoutsAfterKill9UnderLoad) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const absl::Duration election =
      absl::Milliseconds(cluster_->options().election_ms);
  const int leader = cluster_->Leader();
  ASSERT_GE(leader, 0);
  const uint64_t old_id = cluster_->MemberId(leader);
  std::vector<int> survivors;
  for (int i = 0; i < 3; ++i) {
    if (i != leader) survivors.push_back(i);
  }

  WriteLoop load({cluster_->Endpoint(0), cluster_->Endpoint(1),
                  cluster_->Endpoint(2)},
                 "load/", /*max_puts=*/600, /*max_time=*/absl::Seconds(30));
  ASSERT_TRUE(load.WaitForAcked(20, absl::Seconds(15)));
  load.SetEndpoints({cluster_->Endpoint(survivors[0]),
                     cluster_->Endpoint(survivors[1])});
  const int acked_at_kill = load.acked();
  const absl::Time killed_at = absl::Now();
  cluster_->Kill9(leader);

  // Poll the survivors until one reports a leader other than the dead one.
  absl::Duration failover = absl::InfiniteDuration();
  int new_leader = -1;
  while (absl::Now() - killed_at < absl::Seconds(10)) {
    std::vector<std::optional<MemberStatus>> st =
        cluster_->Statuses(survivors, absl::Seconds(1));
    for (int i : survivors) {
      if (st[i].has_value() && st[i]->leader != 0 &&
          st[i]->leader != old_id) {
        failover = absl::Now() - killed_at;
        new_leader = cluster_->IndexOf(st[i]->leader);
      }
    }
    if (new_leader >= 0) break;
  }
  std::cerr << "[cluster] failover after kill -9 of the leader took "
            << failover << " (election timeout " << election << ")\n";
  ASSERT_GE(new_leader, 0) << "no new leader within 10s";
  EXPECT_NE(new_leader, leader);
  EXPECT_LE(failover, 2 * election + kFailoverSlack);

  // Writes resume through the survivors.
  ASSERT_TRUE(load.WaitForAcked(acked_at_kill + 10, absl::Seconds(15)))
      << "writes did not resume; errors: "
      << absl::StrJoin(load.Errors(), "\n");
  load.Stop();
  const auto acked = load.Acked();
  const auto unknown = load.Unknown();
  std::cerr << "[cluster] " << acked.size() << " puts acked, "
            << unknown.size() << " failed/unknown\n";
  for (int i : survivors) {
    auto dump = Dump(cluster_->Endpoint(i), "load/", /*serializable=*/false);
    ASSERT_TRUE(dump.has_value()) << "m" << i;
    ExpectHoldsAcked(*dump, acked, unknown, absl::StrCat("m", i));
  }

  // The killed member comes back and has every acknowledged write too.
  ASSERT_TRUE(cluster_->StartMember(leader));
  const int64_t rev = Revision(survivors[0]);
  ASSERT_TRUE(cluster_->WaitForRevision(leader, rev, absl::Seconds(15)));
  for (int i = 0; i < 3; ++i) {
    auto dump = Dump(cluster_->Endpoint(i), "load/", /*serializable=*/true);
    ASSERT_TRUE(dump.has_value()) << "m" << i;
    ExpectHoldsAcked(*dump, acked, unknown, absl::StrCat("m", i));
  }
  EXPECT_TRUE(cluster_->WaitForEqualHashKv({0, 1, 2}, rev, absl::Seconds(15)));
}

TEST_F(ClusterTest, RestartedMemberCatchesUpFromTheLog) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const int leader = cluster_->Leader();
  ASSERT_GE(leader, 0);
  const int lagging = Other({leader});
  cluster_->Stop(lagging);
  constexpr int kKeys = 40;
  for (int i = 0; i < kKeys; ++i) {
    MustPut(leader, absl::StrFormat("log/%03d", i), absl::StrCat("v", i));
  }
  ASSERT_EQ(cluster_->Ctl(leader, {"del", "log/007"}).out, "1\n");
  const int64_t rev = Revision(leader);

  ASSERT_TRUE(cluster_->StartMember(lagging));
  ASSERT_TRUE(cluster_->WaitForRevision(lagging, rev, absl::Seconds(15)));
  auto got = Dump(cluster_->Endpoint(lagging), "log/", /*serializable=*/true);
  auto want = Dump(cluster_->Endpoint(leader), "log/", /*serializable=*/false);
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(want.has_value());
  EXPECT_EQ(got->size(), static_cast<size_t>(kKeys - 1));
  EXPECT_EQ(*got, *want);
  EXPECT_EQ(got->count("log/007"), 0u);
  EXPECT_TRUE(cluster_->WaitForEqualHashKv({0, 1, 2}, rev, absl::Seconds(15)));
}

// With --snapshot-count=100 the leader snapshots every 100 entries; real etcd
// 3.4 still keeps the last 5000 entries for slow followers, so the lagging
// member must miss more than 5000 + 100 entries before the leader can only
// send it a snapshot. The bulk load makes them over gRPC, one entry per put.
TEST_F(ClusterTest, StoppedMemberCatchesUpFromASnapshotAfterCompaction) {
  ClusterOptions options;
  options.snapshot_count = 100;
  ASSERT_NO_FATAL_FAILURE(StartCluster(options));
  const int leader = cluster_->Leader();
  ASSERT_GE(leader, 0);
  const int lagging = Other({leader});
  MustPut(leader, "snapk/before", "1");
  cluster_->Stop(lagging);

  constexpr int64_t kBulk = 5400;
  BulkPutResult bulk = BulkPut(cluster_->Endpoint(leader), "snap/", kBulk,
                               /*threads=*/16, absl::Seconds(40));
  ASSERT_EQ(bulk.acked, kBulk) << "failed " << bulk.failed << ": "
                               << bulk.first_error;
  MustPut(leader, "snapk/after", "2");
  ASSERT_EQ(cluster_->Ctl(leader, {"del", "snap/000003"}).out, "1\n");
  const int64_t rev = Revision(leader);
  CmdResult compact = cluster_->Ctl(leader, {"compact", std::to_string(rev)});
  ASSERT_EQ(compact.exit_code, 0) << compact.err;
  EXPECT_EQ(compact.out, absl::StrCat("compacted revision ", rev, "\n"));

  // hashkv needs a revision above the compaction point: at it, real etcd
  // says "required revision has been compacted".
  CmdResult at_compact = cluster_->Ctl(
      leader, {"endpoint", "hashkv", absl::StrCat("--rev=", rev)});
  EXPECT_NE(at_compact.exit_code, 0);
  EXPECT_EQ(ErrorLine(at_compact.err),
            "Error: etcdserver: mvcc: required revision has been compacted");
  const int64_t last = MustPut(leader, "snapk/last", "3");

  ASSERT_TRUE(cluster_->StartMember(lagging));
  ASSERT_TRUE(cluster_->WaitForRevision(lagging, last, absl::Seconds(30)));
  auto dump = Dump(cluster_->Endpoint(lagging), "snap/", true);
  ASSERT_TRUE(dump.has_value());
  EXPECT_EQ(dump->size(), static_cast<size_t>(kBulk - 1));
  for (int64_t i = 0; i < kBulk; ++i) {
    std::string key = absl::StrFormat("snap/%06d", i);
    if (i == 3) {
      EXPECT_EQ(dump->count(key), 0u);
      continue;
    }
    auto it = dump->find(key);
    ASSERT_NE(it, dump->end()) << key;
    ASSERT_EQ(it->second, BulkValueFor("snap/", i)) << key;
  }
  GetResult before = GetKey(cluster_->Endpoint(lagging), "snapk/before", true);
  GetResult after = GetKey(cluster_->Endpoint(lagging), "snapk/after", true);
  EXPECT_EQ(before.value, "1");
  EXPECT_EQ(after.value, "2");
  // The compaction reached the lagging member too.
  CmdResult old = cluster_->Ctl(
      lagging, {"get", "snapk/before", "--consistency=s", "--rev",
                std::to_string(rev - 1)});
  EXPECT_EQ(ErrorLine(old.err),
            "Error: etcdserver: mvcc: required revision has been compacted");
  EXPECT_TRUE(
      cluster_->WaitForEqualHashKv({0, 1, 2}, last, absl::Seconds(15)));
  // Check the scenario itself: the member really got a snapshot (each
  // server logs it in its own words).
  const char* installed =
      UsingRealEtcd() ? "applied snapshot" : "installed snapshot at index";
  EXPECT_NE(cluster_->member(lagging).LogTail(1 << 20).find(installed),
            std::string::npos)
      << "the member was not caught up from a snapshot";
}

TEST_F(ClusterTest, PausedLeaderStepsDownAndNeverServesAStaleRead) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const absl::Duration election =
      absl::Milliseconds(cluster_->options().election_ms);
  const int old = cluster_->Leader();
  ASSERT_GE(old, 0);
  const uint64_t old_id = cluster_->MemberId(old);
  MustPut(old, "pause/k", "old");
  ASSERT_TRUE(cluster_->WaitForRevision(Other({old}), Revision(old),
                                        absl::Seconds(5)));

  const absl::Time paused_at = absl::Now();
  cluster_->Pause(old);
  // The others elect a new leader and take writes while the old one sleeps.
  // A put in flight when the leader stopped fails with "etcdserver: request
  // timed out, possibly due to previous leader failure"; overwriting the
  // same value again is harmless, so retry until one is acknowledged.
  const int writer = Other({old});
  std::vector<std::string> put_errors;
  const absl::Time put_deadline = absl::Now() + absl::Seconds(15);
  bool put_ok = false;
  while (!put_ok && absl::Now() < put_deadline) {
    CmdResult put = cluster_->Ctl(writer, {"put", "pause/k", "new"},
                                  std::nullopt, absl::Seconds(5));
    put_ok = put.exit_code == 0;
    if (!put_ok) put_errors.push_back(ErrorLine(put.err));
  }
  ASSERT_TRUE(put_ok) << absl::StrJoin(put_errors, "\n");
  std::cerr << "[cluster] puts during the pause failed " << put_errors.size()
            << " times first: " << absl::StrJoin(put_errors, " | ") << "\n";
  for (int i = 0; i < 5; ++i) {
    MustPut(Other({old, writer}), absl::StrCat("pause/other", i), "x");
  }
  const int new_leader = cluster_->WaitForLeader(absl::Seconds(10));
  ASSERT_GE(new_leader, 0);
  ASSERT_NE(new_leader, old);
  // Keep the old leader stopped for at least 3 election timeouts in all
  // (a pause duration, not synchronisation).
  const absl::Duration rest = paused_at + 3 * election - absl::Now();
  if (rest > absl::ZeroDuration()) absl::SleepFor(rest);

  cluster_->Resume(old);
  const absl::Time resumed_at = absl::Now();
  // Linearizable read through the old leader right away: it may fail, but
  // must never return the value it had before it was paused.
  GetResult g = GetKey(cluster_->Endpoint(old), "pause/k", false,
                       absl::Seconds(8));
  std::cerr << "[cluster] read via the resumed old leader: "
            << (g.ok ? "value " + g.value.value_or("<absent>")
                     : "error " + g.error)
            << "\n";
  if (g.ok) {
    EXPECT_EQ(g.value, "new") << "stale read from the resumed old leader";
  }
  // It steps down: its own status names the new leader.
  absl::Duration stepped_down = absl::InfiniteDuration();
  while (absl::Now() - resumed_at < absl::Seconds(10)) {
    std::optional<MemberStatus> st = cluster_->Status(old, absl::Seconds(1));
    if (st.has_value() && st->leader != 0 && st->leader != old_id) {
      stepped_down = absl::Now() - resumed_at;
      break;
    }
  }
  std::cerr << "[cluster] old leader reported another leader " << stepped_down
            << " after SIGCONT\n";
  EXPECT_LE(stepped_down, 2 * election + kFailoverSlack);
  GetResult later = GetKey(cluster_->Endpoint(old), "pause/k", false);
  ASSERT_TRUE(later.ok) << later.error;
  EXPECT_EQ(later.value, "new");
}


// `etcdctl snapshot save` from one member, then `synod --restore-snapshot` into
// three empty data dirs with a new --initial-cluster: a new cluster with the
// old keyspace (every revision, compaction, leases) and only its own members,
// as `etcdctl snapshot restore` gives with etcd.
TEST_F(ClusterTest, EveryMemberRestoredFromOneSnapshotFormsANewCluster) {
  if (UsingRealEtcd()) {
    GTEST_SKIP() << "etcd restores with `etcdctl snapshot restore`, not a flag";
  }
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  MustPut(0, "restore/a", "1");
  const int64_t compact_to = MustPut(1, "restore/a", "2");
  std::optional<Json> grant = cluster_->CtlJson(0, {"lease", "grant", "600"});
  ASSERT_TRUE(grant.has_value());
  const std::string lease = absl::StrFormat("%x", (*grant)["ID"].Int());
  ASSERT_EQ(cluster_->Ctl(2, {"put", "--lease=" + lease, "restore/leased", "x"})
                .exit_code,
            0);
  const int64_t last = MustPut(2, "restore/a", "3");
  ASSERT_EQ(cluster_->Ctl(0, {"compact", absl::StrCat(compact_to)}).exit_code, 0);
  const std::string snap = cluster_->dir() + "/backup.snap";
  CmdResult save = cluster_->Ctl(0, {"snapshot", "save", snap});
  ASSERT_EQ(save.exit_code, 0) << save.err;
  ASSERT_TRUE(cluster_->WaitForEqualHashKv({0}, last, absl::Seconds(5)));
  std::optional<std::pair<uint64_t, int64_t>> old_hash = cluster_->HashKv(0, last);
  ASSERT_TRUE(old_hash.has_value());

  ClusterOptions options;
  options.token = "synod-it-restored";
  options.extra_flags = {"--restore-snapshot=" + snap};
  Cluster restored(options);
  ASSERT_TRUE(restored.Start()) << restored.LogTails();

  std::optional<std::vector<MemberInfo>> members = restored.MemberList(0);
  ASSERT_TRUE(members.has_value());
  ASSERT_EQ(members->size(), 3u);
  for (const MemberInfo& m : *members) {
    EXPECT_GE(restored.IndexOf(m.id), 0) << "old member " << HexId(m.id);
  }
  for (int i = 0; i < 3; ++i) {
    GetResult g = GetKey(restored.Endpoint(i), "restore/a", false);
    ASSERT_TRUE(g.ok) << g.error;
    EXPECT_EQ(g.value, "3");
    EXPECT_EQ(g.revision, last);
  }
  ASSERT_TRUE(restored.WaitForEqualHashKv({0, 1, 2}, last, absl::Seconds(10)));
  std::optional<std::pair<uint64_t, int64_t>> new_hash = restored.HashKv(1, last);
  ASSERT_TRUE(new_hash.has_value());
  EXPECT_EQ(*new_hash, *old_hash);
  CmdResult compacted = restored.Ctl(2, {"get", "restore/a",
                                         absl::StrCat("--rev=", compact_to - 1)});
  EXPECT_NE(compacted.exit_code, 0);
  EXPECT_NE(compacted.err.find("required revision has been compacted"),
            std::string::npos)
      << compacted.err;
  CmdResult ttl = restored.Ctl(1, {"lease", "timetolive", lease, "--keys"});
  EXPECT_EQ(ttl.exit_code, 0) << ttl.err;
  EXPECT_NE(ttl.out.find("restore/leased"), std::string::npos) << ttl.out;
  std::optional<Json> put = restored.CtlJson(0, {"put", "restore/a", "4"});
  ASSERT_TRUE(put.has_value());
  EXPECT_EQ((*put)["header"]["revision"].Int(), last + 1);
}

}  // namespace
}  // namespace synod::testing
