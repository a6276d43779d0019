// ReadIndex (thesis §6.4): linearizable reads without writing to the log.
#include "tests/raft/test_util.h"

namespace synod::raft {
namespace {

using testing::Cluster;
using testing::Ids;
using testing::AppResp;
using testing::MakeLeader;
using testing::Msg;
using testing::OfType;
using testing::TestNode;

TEST(RaftReadIndex, LeaderAnswersOnceQuorumConfirmsLeadership) {
  Cluster c(3);
  c.Elect(1);
  ASSERT_TRUE(c[1]->ReadIndex("a").ok());
  c.Stabilize();
  ASSERT_EQ(c[1].read_states.size(), 1u);
  EXPECT_EQ(c[1].read_states[0].index, 1u);
  EXPECT_EQ(c[1].read_states[0].request_ctx, "a");
}

// Thesis §6.4 steps 2-3: "the leader records its current commit index in a
// local variable readIndex" and "sends a new round of heartbeats; upon
// receiving acknowledgments from a majority of the cluster, the leader knows
// that there could not have existed a leader for a greater term".
TEST(RaftReadIndex, WaitsForHeartbeatAcksFromMajority) {
  TestNode n(1, Ids(5));
  MakeLeader(n);
  for (uint64_t p : {2, 3}) ASSERT_TRUE(n->Step(AppResp(p, 1)).ok());
  n.Drain();
  ASSERT_EQ(n.raft().log().committed(), 1u);
  ASSERT_TRUE(n->ReadIndex("ctx").ok());
  std::vector<Message> hb = OfType(n.Drain(), MessageType::kHeartbeat);
  ASSERT_EQ(hb.size(), 4u);
  for (const Message& m : hb) EXPECT_EQ(m.context, "ctx");
  Message ack = Msg(MessageType::kHeartbeatResp, 2, 1, 1);
  ack.context = "ctx";
  ASSERT_TRUE(n->Step(ack).ok());
  ASSERT_TRUE(n->Step(ack).ok());  // a duplicate counts once
  n.Drain();
  EXPECT_TRUE(n.read_states.empty());
  ack.from = 4;
  ASSERT_TRUE(n->Step(ack).ok());
  n.Drain();
  ASSERT_EQ(n.read_states.size(), 1u);
  EXPECT_EQ(n.read_states[0].index, 1u);
}

// Thesis §6.4 step 1: "If the leader has not yet marked an entry from its
// current term committed, it waits until it has done so."
TEST(RaftReadIndex, WaitsForEntryOfCurrentTermToCommit) {
  TestNode n(1, Ids(3));
  MakeLeader(n);
  ASSERT_TRUE(n->ReadIndex("early").ok());
  EXPECT_TRUE(OfType(n.Drain(), MessageType::kHeartbeat).empty());
  ASSERT_TRUE(n->Step(AppResp(2, 1)).ok());
  std::vector<Message> hb = OfType(n.Drain(), MessageType::kHeartbeat);
  ASSERT_EQ(hb.size(), 2u);
  EXPECT_EQ(hb[0].context, "early");
  Message ack = Msg(MessageType::kHeartbeatResp, 3, 1, 1);
  ack.context = "early";
  ASSERT_TRUE(n->Step(ack).ok());
  n.Drain();
  ASSERT_EQ(n.read_states.size(), 1u);
  EXPECT_EQ(n.read_states[0].index, 1u);
}

// An acknowledgment of a later round also confirms every earlier request.
TEST(RaftReadIndex, LaterAckReleasesEarlierRequestsInOrder) {
  TestNode n(1, Ids(3));
  MakeLeader(n);
  ASSERT_TRUE(n->Step(AppResp(2, 1)).ok());
  ASSERT_TRUE(n->ReadIndex("r1").ok());
  ASSERT_TRUE(n->Propose("x").ok());
  n.Drain();
  ASSERT_TRUE(n->Step(AppResp(2, 2)).ok());
  ASSERT_TRUE(n->ReadIndex("r2").ok());
  n.Drain();
  Message ack = Msg(MessageType::kHeartbeatResp, 3, 1, 1);
  ack.context = "r2";
  ASSERT_TRUE(n->Step(ack).ok());
  n.Drain();
  ASSERT_EQ(n.read_states.size(), 2u);
  EXPECT_EQ(n.read_states[0].request_ctx, "r1");
  EXPECT_EQ(n.read_states[0].index, 1u);
  EXPECT_EQ(n.read_states[1].request_ctx, "r2");
  EXPECT_EQ(n.read_states[1].index, 2u);
}

// Thesis §6.4: followers "issue a request to the leader to learn the
// current readIndex".
TEST(RaftReadIndex, FollowerLearnsReadIndexFromLeader) {
  Cluster c(3);
  c.Elect(1);
  ASSERT_TRUE(c[1]->Propose("x").ok());
  c.Stabilize();
  ASSERT_TRUE(c[2]->ReadIndex("f").ok());
  c.Stabilize();
  ASSERT_EQ(c[2].read_states.size(), 1u);
  EXPECT_EQ(c[2].read_states[0].index, 2u);
  EXPECT_EQ(c[2].read_states[0].request_ctx, "f");
  EXPECT_TRUE(c[1].read_states.empty());
}

TEST(RaftReadIndex, SingleNodeAnswersAtOnce) {
  TestNode n(1, {1});
  n->Campaign();
  n.Drain();
  ASSERT_TRUE(n->ReadIndex("s").ok());
  n.Drain();
  ASSERT_EQ(n.read_states.size(), 1u);
  EXPECT_EQ(n.read_states[0].index, 1u);
}

TEST(RaftReadIndex, WithoutLeaderIsDropped) {
  TestNode n(1, Ids(3));
  EXPECT_EQ(n->ReadIndex("x").message(), "raft proposal dropped");
}

// A leader cut off from the majority must not serve a read: a newer leader
// may have committed writes it has not seen.
TEST(RaftReadIndex, DeposedLeaderServesNoStaleRead) {
  Cluster c(3);
  c.Elect(1);
  c.Isolate(1);
  c.Elect(2);
  ASSERT_TRUE(c[2]->Propose("new").ok());
  c.Stabilize();
  ASSERT_EQ(c[2].raft().log().committed(), 3u);
  ASSERT_EQ(c[1].raft().role(), Role::kLeader) << "it does not know yet";
  ASSERT_TRUE(c[1]->ReadIndex("stale").ok());
  for (int i = 0; i < 5; ++i) {
    c[1]->Tick();
    c.Stabilize();
  }
  EXPECT_TRUE(c[1].read_states.empty());
  c.Heal();
  c.TickAll(3);
  EXPECT_TRUE(c[1].read_states.empty());
  EXPECT_EQ(c[1].raft().role(), Role::kFollower);
}

}  // namespace
}  // namespace synod::raft
