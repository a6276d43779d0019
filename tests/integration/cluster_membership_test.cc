// Membership changes (learner add, promote, remove) under a write load, and
// the errors a cluster gives etcdctl: learners, unstarted learners, and a
// member that has lost its quorum. Every expected error line was taken from
// real etcd 3.4.
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

class ClusterMembershipTest : public ::testing::Test {
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
  // The member list as seen through `via`; fails the test when unavailable.
  std::vector<MemberInfo> Members(int via) {
    auto list = cluster_->MemberList(via);
    EXPECT_TRUE(list.has_value()) << "member list via m" << via;
    return list.value_or(std::vector<MemberInfo>{});
  }
  static const MemberInfo* Find(const std::vector<MemberInfo>& list,
                                uint64_t id) {
    for (const auto& m : list) {
      if (m.id == id) return &m;
    }
    return nullptr;
  }
  // Writes keep being acknowledged: at least `n` more within 15 s.
  void ExpectProgress(WriteLoop& load, int n, const std::string& phase) {
    const int before = load.acked();
    EXPECT_TRUE(load.WaitForAcked(before + n, absl::Seconds(15)))
        << "writes stalled " << phase << "; errors: "
        << absl::StrJoin(load.Errors(), "\n");
  }

  std::unique_ptr<Cluster> cluster_;
};

TEST_F(ClusterMembershipTest, AddLearnerPromoteAndRemoveWhileWriting) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const int leader = cluster_->Leader();
  ASSERT_GE(leader, 0);
  // Remove a follower later; the load never goes through it.
  const int doomed = leader == 0 ? 1 : 0;
  std::vector<std::string> writers;
  for (int i = 0; i < 3; ++i) {
    if (i != doomed) writers.push_back(cluster_->Endpoint(i));
  }
  WriteLoop load(writers, "mem/", /*max_puts=*/1500,
                 /*max_time=*/absl::Seconds(50));
  ASSERT_TRUE(load.WaitForAcked(5, absl::Seconds(15)));

  // 1. Add a learner: listed with isLearner, and it catches up.
  int learner = -1;
  ASSERT_TRUE(cluster_->AddMember(/*learner=*/true, &learner));
  ASSERT_EQ(learner, 3);
  // The member that added it answered; the leader lists it once it has
  // applied the change too.
  ASSERT_TRUE(cluster_->WaitForMemberList(
      leader,
      [&](const std::vector<MemberInfo>& l) {
        return Find(l, cluster_->MemberId(learner)) != nullptr;
      },
      absl::Seconds(10)));
  {
    std::vector<MemberInfo> list = Members(leader);
    ASSERT_EQ(list.size(), 4u);
    const MemberInfo* m = Find(list, cluster_->MemberId(learner));
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->is_learner);
    EXPECT_EQ(m->peer_urls,
              std::vector<std::string>{cluster_->PeerUrl(learner)});
    for (int i = 0; i < 3; ++i) {
      const MemberInfo* v = Find(list, cluster_->MemberId(i));
      ASSERT_NE(v, nullptr) << "m" << i;
      EXPECT_FALSE(v->is_learner) << "m" << i;
      EXPECT_EQ(v->name, absl::StrCat("m", i));
    }
  }
  std::optional<MemberStatus> ls = cluster_->Status(learner);
  ASSERT_TRUE(ls.has_value());
  EXPECT_TRUE(ls->is_learner);
  EXPECT_EQ(ls->member_id, cluster_->MemberId(learner));
  ExpectProgress(load, 3, "after adding a learner");

  // 2. Promote it once it is in sync (the leader refuses before that).
  std::vector<std::string> promote_errors;
  const absl::Time promote_deadline = absl::Now() + absl::Seconds(20);
  bool promoted = false;
  while (!promoted && absl::Now() < promote_deadline) {
    ::testing::AssertionResult r = cluster_->PromoteMember(learner);
    promoted = static_cast<bool>(r);
    if (!promoted) {
      promote_errors.push_back(r.message());
      absl::SleepFor(absl::Milliseconds(100));  // polling interval
    }
  }
  ASSERT_TRUE(promoted) << absl::StrJoin(promote_errors, "\n");
  // The leader shows the promotion once it has applied it, and the new
  // member's client URLs once it has published them.
  ASSERT_TRUE(cluster_->WaitForMemberList(
      leader,
      [&](const std::vector<MemberInfo>& l) {
        const MemberInfo* m = Find(l, cluster_->MemberId(learner));
        return m != nullptr && !m->is_learner && !m->client_urls.empty();
      },
      absl::Seconds(10)));
  {
    std::vector<MemberInfo> list = Members(leader);
    ASSERT_EQ(list.size(), 4u);
    const MemberInfo* m = Find(list, cluster_->MemberId(learner));
    ASSERT_NE(m, nullptr);
    EXPECT_FALSE(m->is_learner);
    EXPECT_EQ(m->name, absl::StrCat("m", learner));
    EXPECT_EQ(m->client_urls,
              std::vector<std::string>{
                  absl::StrCat("http://", cluster_->Endpoint(learner))});
  }
  ExpectProgress(load, 3, "after the promotion");
  // The promoted member now serves linearizable reads.
  GetResult g = GetKey(cluster_->Endpoint(learner), "mem/000000", false);
  EXPECT_TRUE(g.ok) << g.error;

  // 3. Remove an original follower.
  const uint64_t doomed_id = cluster_->MemberId(doomed);
  ASSERT_TRUE(cluster_->RemoveMember(doomed));
  // Another member made the change; this one lists it once applied.
  ASSERT_TRUE(cluster_->WaitForMemberList(
      learner,
      [&](const std::vector<MemberInfo>& l) {
        return Find(l, doomed_id) == nullptr;
      },
      absl::Seconds(10)));
  {
    std::vector<MemberInfo> list = Members(learner);
    EXPECT_EQ(list.size(), 3u);
    EXPECT_EQ(Find(list, doomed_id), nullptr);
  }
  ExpectProgress(load, 3, "after removing a member");
  // The removed process stops by itself (real etcd exits), or at least no
  // longer serves linearizable reads as a member.
  const absl::Time gone_deadline = absl::Now() + absl::Seconds(15);
  bool gone = false;
  while (!gone && absl::Now() < gone_deadline) {
    gone = cluster_->member(doomed).ExitedByItself();
    if (!gone) absl::SleepFor(absl::Milliseconds(100));  // polling interval
  }
  if (!gone) {
    GetResult r = GetKey(cluster_->Endpoint(doomed), "mem/000000", false,
                         absl::Seconds(4));
    EXPECT_FALSE(r.ok) << "the removed member still serves linearizable reads";
  }
  std::cerr << "[membership] removed member "
            << (gone ? "exited by itself" : "still running") << "\n";

  load.Stop();
  const auto acked = load.Acked();
  std::cerr << "[membership] " << acked.size() << " puts acked, "
            << load.failed() << " failed\n";
  std::vector<int> remaining;
  for (int i = 0; i < cluster_->size(); ++i) {
    if (i != doomed) remaining.push_back(i);
  }
  for (int i : remaining) {
    auto dump = Dump(cluster_->Endpoint(i), "mem/", /*serializable=*/false);
    ASSERT_TRUE(dump.has_value()) << "m" << i;
    for (const auto& [key, value] : acked) {
      auto it = dump->find(key);
      ASSERT_NE(it, dump->end()) << "m" << i << " lost " << key;
      EXPECT_EQ(it->second, value);
    }
  }
  GetResult rev = GetKey(cluster_->Endpoint(remaining[0]), "x", false);
  ASSERT_TRUE(rev.ok) << rev.error;
  EXPECT_TRUE(
      cluster_->WaitForEqualHashKv(remaining, rev.revision, absl::Seconds(15)));
}

TEST_F(ClusterMembershipTest, MembershipErrorsFromEtcd) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  int learner = -1;
  ASSERT_TRUE(cluster_->AddMemberUnstarted(/*learner=*/true, &learner));
  std::vector<MemberInfo> list = Members(0);
  ASSERT_EQ(list.size(), 4u);
  const MemberInfo* m = Find(list, cluster_->MemberId(learner));
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->is_learner);
  EXPECT_EQ(m->name, "");  // never started
  EXPECT_TRUE(m->client_urls.empty());

  // A learner that never started is not in sync.
  const std::string id = HexId(cluster_->MemberId(learner));
  CmdResult promote = cluster_->Ctl(0, {"member", "promote", id});
  EXPECT_EQ(promote.exit_code, 1);
  EXPECT_EQ(ErrorLine(promote.err),
            "Error: etcdserver: can only promote a learner member which is "
            "in sync with leader");
  // Only one learner at a time.
  CmdResult second = cluster_->Ctl(
      0, {"member", "add", "extra", "--peer-urls=http://127.0.0.1:1",
          "--learner"});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_EQ(ErrorLine(second.err),
            "Error: etcdserver: too many learner members in cluster");
  // Promoting a voting member.
  CmdResult voter =
      cluster_->Ctl(0, {"member", "promote", HexId(cluster_->MemberId(1))});
  EXPECT_EQ(voter.exit_code, 1);
  EXPECT_EQ(ErrorLine(voter.err),
            "Error: etcdserver: can only promote a learner member");
  // Removing an unknown member.
  CmdResult unknown = cluster_->Ctl(0, {"member", "remove", "1234abcd"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(ErrorLine(unknown.err), "Error: etcdserver: member not found");
  // The unstarted learner can be removed, and the cluster still works.
  const uint64_t learner_id = cluster_->MemberId(learner);
  ASSERT_TRUE(cluster_->RemoveMember(learner));
  // m0 made the change; m1 lists it once it has applied it too.
  ASSERT_TRUE(cluster_->WaitForMemberList(
      1,
      [&](const std::vector<MemberInfo>& l) {
        return Find(l, learner_id) == nullptr;
      },
      absl::Seconds(10)));
  EXPECT_EQ(Members(1).size(), 3u);
  CmdResult put = cluster_->Ctl(2, {"put", "after", "x"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
}

TEST_F(ClusterMembershipTest, LearnerServesOnlySerializableReads) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  int learner = -1;
  ASSERT_TRUE(cluster_->AddMember(/*learner=*/true, &learner));
  CmdResult put = cluster_->Ctl(0, {"put", "lk", "lv"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  GetResult at = GetKey(cluster_->Endpoint(0), "lk", false);
  ASSERT_TRUE(at.ok);

  // Writes are refused at once.
  CmdResult lput = cluster_->Ctl(learner, {"put", "lk", "other"});
  EXPECT_EQ(lput.exit_code, 1);
  EXPECT_EQ(ErrorLine(lput.err),
            "Error: etcdserver: rpc not supported for learner");
  // A linearizable read is refused too, but etcdctl retries that
  // (Unavailable) until its command timeout (here 2 s).
  CmdResult lget = cluster_->Ctl(learner, {"get", "lk"}, std::nullopt,
                                 absl::Seconds(4));
  EXPECT_EQ(lget.exit_code, 1);
  EXPECT_EQ(ErrorLine(lget.err), "Error: context deadline exceeded");
  EXPECT_TRUE(absl::StrContains(
      lget.err,
      "rpc error: code = Unavailable desc = etcdserver: rpc not supported "
      "for learner"))
      << lget.err.substr(0, 2000);
  // Serializable reads are served from the learner's own state.
  ASSERT_TRUE(
      cluster_->WaitForRevision(learner, at.revision, absl::Seconds(10)));
  CmdResult sget = cluster_->Ctl(learner, {"get", "lk", "--consistency=s"});
  EXPECT_EQ(sget.exit_code, 0) << sget.err;
  EXPECT_EQ(sget.out, "lk\nlv\n");
  std::optional<MemberStatus> st = cluster_->Status(learner);
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->is_learner);
}

TEST_F(ClusterMembershipTest, MinorityRefusesWritesAndLinearizableReads) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  const int survivor = 0;
  CmdResult put = cluster_->Ctl(1, {"put", "q", "before"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  GetResult at = GetKey(cluster_->Endpoint(1), "q", false);
  ASSERT_TRUE(at.ok);
  ASSERT_TRUE(
      cluster_->WaitForRevision(survivor, at.revision, absl::Seconds(10)));
  cluster_->Kill9(1);
  cluster_->Kill9(2);

  // Within an election timeout or two its status says it has no leader.
  std::optional<MemberStatus> st;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    st = cluster_->Status(survivor);
    if (st.has_value() && st->leader == 0) break;
    absl::SleepFor(absl::Milliseconds(50));  // polling interval
  }
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->leader, 0u);
  EXPECT_EQ(st->errors, std::vector<std::string>{"etcdserver: no leader"});

  // etcd does not fail fast: a request waits for a quorum until etcdctl's
  // deadline (3 s here) or etcd's own request timeout, whichever comes
  // first; real etcd gave each of these lines in runs of this test.
  auto is_timeout_line = [](const std::string& line) {
    return line == "Error: context deadline exceeded" ||
           line == "Error: etcdserver: request timed out" ||
           line == "Error: rpc error: code = Unknown desc = context deadline "
                   "exceeded";
  };
  CmdResult put2 = cluster_->Ctl(survivor, {"put", "q", "after"}, std::nullopt,
                                 absl::Seconds(5));
  EXPECT_EQ(put2.exit_code, 1);
  EXPECT_TRUE(is_timeout_line(ErrorLine(put2.err))) << ErrorLine(put2.err);
  CmdResult get = cluster_->Ctl(survivor, {"get", "q"}, std::nullopt,
                                absl::Seconds(5));
  EXPECT_EQ(get.exit_code, 1);
  EXPECT_TRUE(is_timeout_line(ErrorLine(get.err))) << ErrorLine(get.err);
  std::cerr << "[minority] put: " << ErrorLine(put2.err)
            << " | linearizable get: " << ErrorLine(get.err) << "\n";
  // A serializable read is still served from the survivor's state.
  CmdResult sget = cluster_->Ctl(survivor, {"get", "q", "--consistency=s"});
  EXPECT_EQ(sget.exit_code, 0) << sget.err;
  EXPECT_EQ(sget.out, "q\nbefore\n");

  // One member back: a quorum again; the put that timed out may or may not
  // have been applied, a new one succeeds.
  ASSERT_TRUE(cluster_->StartMember(1));
  CmdResult put3 = cluster_->Ctl(survivor, {"put", "q", "healed"});
  EXPECT_EQ(put3.exit_code, 0) << put3.err;
  GetResult healed = GetKey(cluster_->Endpoint(1), "q", false);
  EXPECT_EQ(healed.value, "healed") << healed.error;
}

}  // namespace
}  // namespace synod::testing
