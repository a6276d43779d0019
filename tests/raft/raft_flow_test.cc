// Replication beyond the paper: flow control (probe and replicate states,
// max in-flight MsgApps, max bytes per MsgApp), proposal forwarding,
// restarts and the Ready contract.
#include "tests/raft/test_util.h"

namespace synod::raft {
namespace {

using testing::Cluster;
using testing::Ids;
using testing::AppResp;
using testing::MakeLeader;
using testing::Msg;
using testing::NodeOptions;
using testing::OfType;
using testing::TestNode;

std::vector<Message> AppsTo(const std::vector<Message>& ms, uint64_t to) {
  std::vector<Message> out;
  for (const Message& m : OfType(ms, MessageType::kApp)) {
    if (m.to == to) out.push_back(m);
  }
  return out;
}

TEST(RaftFlow, ProbeSendsOneMsgAppUntilAnswered) {
  TestNode n(1, Ids(3));
  ASSERT_EQ(AppsTo(MakeLeader(n), 2).size(), 1u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(n->Propose("p").ok());
  EXPECT_TRUE(AppsTo(n.Drain(), 2).empty()) << "paused while probing";
  // A heartbeat response proves the follower alive: probe again, with
  // everything the leader has.
  ASSERT_TRUE(n->Step(Msg(MessageType::kHeartbeatResp, 2, 1, 1)).ok());
  std::vector<Message> apps = AppsTo(n.Drain(), 2);
  ASSERT_EQ(apps.size(), 1u);
  EXPECT_EQ(apps[0].index, 0u);
  EXPECT_EQ(apps[0].entries.size(), 4u);
  EXPECT_EQ(n.raft().TEST_progress(2)->state, Progress::State::kProbe);
}

TEST(RaftFlow, ReplicateStatePipelinesUpToMaxInflight) {
  NodeOptions o;
  o.max_inflight_msgs = 3;
  TestNode n(1, Ids(3), o);
  MakeLeader(n);
  ASSERT_TRUE(n->Step(AppResp(2, 1)).ok());
  n.Drain();
  ASSERT_EQ(n.raft().TEST_progress(2)->state, Progress::State::kReplicate);
  size_t sent = 0;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(n->Propose("p").ok());
    sent += AppsTo(n.Drain(), 2).size();
  }
  EXPECT_EQ(sent, 3u);
  EXPECT_TRUE(n.raft().TEST_progress(2)->IsPaused());
  // Acknowledging the first frees one slot: the rest goes out in one MsgApp.
  ASSERT_TRUE(n->Step(AppResp(2, 2)).ok());
  std::vector<Message> apps = AppsTo(n.Drain(), 2);
  ASSERT_EQ(apps.size(), 1u);
  EXPECT_EQ(apps[0].index, 4u);
  EXPECT_EQ(apps[0].entries.size(), 7u);
}

TEST(RaftFlow, HeartbeatResponseFreesFullWindow) {
  NodeOptions o;
  o.max_inflight_msgs = 1;
  TestNode n(1, Ids(3), o);
  MakeLeader(n);
  ASSERT_TRUE(n->Step(AppResp(2, 1)).ok());
  n.Drain();
  ASSERT_TRUE(n->Propose("a").ok());
  ASSERT_EQ(AppsTo(n.Drain(), 2).size(), 1u);
  ASSERT_TRUE(n->Propose("b").ok());
  EXPECT_TRUE(AppsTo(n.Drain(), 2).empty());
  // The MsgApp may have been lost: a live follower gets the next one.
  ASSERT_TRUE(n->Step(Msg(MessageType::kHeartbeatResp, 2, 1, 1)).ok());
  EXPECT_EQ(AppsTo(n.Drain(), 2).size(), 1u);
}

TEST(RaftFlow, MaxSizePerMsgLimitsEntriesPerMsgApp) {
  NodeOptions o;
  o.max_size_per_msg = 10;
  TestNode n(1, Ids(3), o);
  MakeLeader(n);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(n->Propose("12345").ok());
  ASSERT_TRUE(n->Propose(std::string(100, 'x')).ok());
  n.Drain();
  ASSERT_TRUE(n->Step(Msg(MessageType::kHeartbeatResp, 2, 1, 1)).ok());
  std::vector<Message> apps = AppsTo(n.Drain(), 2);
  ASSERT_EQ(apps.size(), 1u);
  EXPECT_EQ(apps[0].entries.size(), 3u);  // no-op + 2 x 5 bytes
  // Replicate state sends the rest in messages of at most 10 bytes, and an
  // entry larger than the limit alone.
  ASSERT_TRUE(n->Step(AppResp(2, 3)).ok());
  apps = AppsTo(n.Drain(), 2);
  ASSERT_EQ(apps.size(), 3u);
  EXPECT_EQ(apps[0].entries.size(), 2u);
  EXPECT_EQ(apps[1].entries.size(), 2u);
  EXPECT_EQ(apps[2].entries.size(), 1u);
  EXPECT_EQ(apps[2].entries[0].data.size(), 100u);
}

TEST(RaftFlow, RejectionMovesLeaderBackPastConflictingTerm) {
  // The follower's log diverges at a whole term; its hint lets the leader
  // skip the term in one round trip instead of one per entry.
  TestNode n(1, Ids(3), {}, testing::EntriesWithTerms({1, 2, 2, 2, 2}),
             HardState{2, 0, 0});
  MakeLeader(n);  // term 3; probes 2 at index 5
  Message rej = Msg(MessageType::kAppResp, 2, 1, 3);
  rej.index = 5;
  rej.reject = true;
  rej.reject_hint = 5;  // follower log: 1 1 1 1 1 (terms)
  rej.log_term = 1;
  ASSERT_TRUE(n->Step(rej).ok());
  std::vector<Message> apps = AppsTo(n.Drain(), 2);
  ASSERT_EQ(apps.size(), 1u);
  EXPECT_EQ(apps[0].index, 1u);
  EXPECT_EQ(apps[0].log_term, 1u);
}

TEST(RaftFlow, FollowerForwardsProposalToLeader) {
  Cluster c(3);
  c.Elect(1);
  ASSERT_TRUE(c[2]->Propose("fwd").ok());
  c.Stabilize();
  ASSERT_EQ(c[1].applied.size(), 2u);
  EXPECT_EQ(c[1].applied[1].data, "fwd");
}

TEST(RaftFlow, BatchedProposalIsOneMsgAppPerFollower) {
  TestNode n(1, Ids(3));
  MakeLeader(n);
  ASSERT_TRUE(n->Step(AppResp(2, 1)).ok());
  ASSERT_TRUE(n->Step(AppResp(3, 1)).ok());
  n.Drain();
  ASSERT_TRUE(n->ProposeBatch({"a", "b", "c"}).ok());
  std::vector<Message> out = n.Drain();
  for (uint64_t to : {2u, 3u}) {
    std::vector<Message> apps = AppsTo(out, to);
    ASSERT_EQ(apps.size(), 1u) << "to " << to;
    ASSERT_EQ(apps[0].entries.size(), 3u);
    EXPECT_EQ(apps[0].entries[0].data, "a");
    EXPECT_EQ(apps[0].entries[2].data, "c");
    EXPECT_EQ(apps[0].entries[2].index, 4u);
  }
}

TEST(RaftFlow, FollowerForwardsABatchInOneMessageAndAllCommitInOrder) {
  Cluster c(3);
  c.Elect(1);
  ASSERT_TRUE(c[3]->ProposeBatch({"x", "y"}).ok());
  std::vector<Message> out = c[3].Drain();
  std::vector<Message> props = OfType(out, MessageType::kProp);
  ASSERT_EQ(props.size(), 1u);
  EXPECT_EQ(props[0].entries.size(), 2u);
  for (const Message& m : out) c.Deliver(m);
  c.Stabilize();
  for (uint64_t id : {1u, 2u, 3u}) {
    ASSERT_EQ(c[id].applied.size(), 3u) << "node " << id;
    EXPECT_EQ(c[id].applied[1].data, "x");
    EXPECT_EQ(c[id].applied[2].data, "y");
  }
}

TEST(RaftFlow, BatchWithoutLeaderIsDroppedWhole) {
  TestNode n(1, Ids(3));
  absl::Status s = n->ProposeBatch({"a", "b"});
  EXPECT_EQ(s.message(), "raft proposal dropped");
  EXPECT_EQ(n.raft().log().LastIndex(), 0u);
}

TEST(RaftFlow, ProposalWithoutLeaderIsDropped) {
  TestNode n(1, Ids(3));
  absl::Status s = n->Propose("x");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "raft proposal dropped");
  n->Campaign();
  EXPECT_EQ(n->Propose("x").message(), "raft proposal dropped");
}

TEST(RaftFlow, SingleNodeCommitsOnceDurable) {
  TestNode n(1, {1});
  n->Campaign();
  ASSERT_EQ(n.raft().role(), Role::kLeader);
  ASSERT_TRUE(n->Propose("a").ok());
  // Nothing commits before the entries are persisted (thesis §10.2.1).
  EXPECT_EQ(n.raft().log().committed(), 0u);
  Ready rd = n->GetReady();
  EXPECT_EQ(rd.entries.size(), 2u);
  EXPECT_TRUE(rd.committed_entries.empty());
  ASSERT_TRUE(n.storage.Append(rd.entries).ok());
  n->Advance(rd);
  EXPECT_EQ(n.raft().log().committed(), 2u);
  n.Drain();
  ASSERT_EQ(n.applied.size(), 2u);
  EXPECT_EQ(n.applied[1].data, "a");
}

TEST(RaftFlow, RestartRestoresTermVoteCommitAndLog) {
  Cluster c(3);
  c.Elect(1);
  ASSERT_TRUE(c[1]->Propose("a").ok());
  c.Stabilize();
  TestNode& f = c[2];
  HardState before = f.raft().hard_state();
  std::vector<Entry> log = f.raft().log().AllEntries();
  f.Restart();
  EXPECT_EQ(f.raft().hard_state(), before);
  EXPECT_EQ(f.raft().log().AllEntries(), log);
  EXPECT_EQ(f.raft().role(), Role::kFollower);
  EXPECT_FALSE(f->HasReady()) << "everything was applied before";
}

TEST(RaftFlow, ConfigIsValidated) {
  MemoryStorage s;
  Random r(1);
  Config c;
  c.id = 1;
  c.peers = {1, 2};
  c.storage = &s;
  c.random = &r;
  EXPECT_TRUE(RawNode::Create(c).ok());
  c.election_tick = 1;
  EXPECT_FALSE(RawNode::Create(c).ok());
  c.election_tick = 10;
  c.peers = {2, 3};
  EXPECT_FALSE(RawNode::Create(c).ok());
}

}  // namespace
}  // namespace synod::raft
