// Pre-vote (thesis §9.6) and check-quorum (thesis §6.2, §4.2.3): the
// elections a cut-off or rejoining server would otherwise disrupt.
#include "tests/raft/test_util.h"

namespace synod::raft {
namespace {

using testing::Cluster;
using testing::EntriesWithTerms;
using testing::Ids;
using testing::Msg;
using testing::NodeOptions;
using testing::OfType;
using testing::TestNode;

NodeOptions PreVote() {
  NodeOptions o;
  o.pre_vote = true;
  return o;
}
NodeOptions CheckQuorum() {
  NodeOptions o;
  o.check_quorum = true;
  return o;
}
NodeOptions Both() {
  NodeOptions o;
  o.pre_vote = true;
  o.check_quorum = true;
  return o;
}

// Thesis §9.6: "a candidate would first ask other servers whether its log
// was up-to-date enough to get their vote. Only if the candidate believed it
// could get votes from a majority of the cluster would it increment its term
// and start a normal election."
TEST(RaftPreVote, PreCandidateKeepsTermAndVote) {
  TestNode n(1, Ids(3), PreVote(), {}, HardState{2, 3, 0});
  n->Campaign();
  EXPECT_EQ(n.raft().role(), Role::kPreCandidate);
  EXPECT_EQ(n.raft().term(), 2u);
  EXPECT_EQ(n.raft().vote(), 3u);
  std::vector<Message> pv = OfType(n.Drain(), MessageType::kPreVote);
  ASSERT_EQ(pv.size(), 2u);
  for (const Message& m : pv) EXPECT_EQ(m.term, 3u) << "the term it would use";
  EXPECT_EQ(n.storage.InitialState().hard_state.term, 2u);
}

TEST(RaftPreVote, WinningPreVoteStartsRealElection) {
  TestNode n(1, Ids(3), PreVote(), {}, HardState{2, 0, 0});
  n->Campaign();
  n.Drain();
  ASSERT_TRUE(n->Step(Msg(MessageType::kPreVoteResp, 2, 1, 3)).ok());
  EXPECT_EQ(n.raft().role(), Role::kCandidate);
  EXPECT_EQ(n.raft().term(), 3u);
  EXPECT_EQ(n.raft().vote(), 1u);
  EXPECT_EQ(OfType(n.Drain(), MessageType::kVote).size(), 2u);
  ASSERT_TRUE(n->Step(Msg(MessageType::kVoteResp, 3, 1, 3)).ok());
  EXPECT_EQ(n.raft().role(), Role::kLeader);
}

TEST(RaftPreVote, LosingPreVoteReturnsToFollowerAtSameTerm) {
  TestNode n(1, Ids(3), PreVote(), {}, HardState{2, 0, 0});
  n->Campaign();
  for (uint64_t from : {2, 3}) {
    Message r = Msg(MessageType::kPreVoteResp, from, 1, 2);
    r.reject = true;
    ASSERT_TRUE(n->Step(r).ok());
  }
  EXPECT_EQ(n.raft().role(), Role::kFollower);
  EXPECT_EQ(n.raft().term(), 2u);
}

// A pre-vote is granted on the same log rule as a vote (§5.4.1) but binds
// nothing: the voter keeps its term and its vote.
TEST(RaftPreVote, GrantingPreVoteChangesNothing) {
  for (bool up_to_date : {true, false}) {
    TestNode n(1, Ids(3), PreVote(), EntriesWithTerms({1, 2}),
               HardState{2, 3, 0});
    Message pv = Msg(MessageType::kPreVote, 2, 1, 3);
    pv.index = 2;
    pv.log_term = up_to_date ? 2 : 1;
    ASSERT_TRUE(n->Step(pv).ok());
    std::vector<Message> r = OfType(n.Drain(), MessageType::kPreVoteResp);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].reject, !up_to_date);
    EXPECT_EQ(n.raft().term(), 2u);
    EXPECT_EQ(n.raft().vote(), 3u);
  }
}

// Thesis §9.6: "This prevents a partitioned server from ... incrementing its
// term" and so from disrupting the cluster when it rejoins.
TEST(RaftPreVote, PartitionedServerDoesNotDisruptOnRejoin) {
  for (bool pre_vote : {true, false}) {
    NodeOptions o;
    o.pre_vote = pre_vote;
    Cluster c(3, o);
    c.Elect(1);
    c.Isolate(3);
    for (int i = 0; i < 100; ++i) c[3]->Tick();
    c.Stabilize();
    if (pre_vote) {
      EXPECT_EQ(c[3].raft().term(), 1u);
    } else {
      EXPECT_GT(c[3].raft().term(), 1u) << "without pre-vote, terms grow";
    }
    c.Heal();
    c.TickAll(25);
    if (pre_vote) {
      EXPECT_EQ(c.Leader(), 1u);
      EXPECT_EQ(c[1].raft().term(), 1u);
    } else {
      EXPECT_GT(c[1].raft().term(), 1u) << "the rejoining node disrupted";
    }
  }
}

// Thesis §6.2: "a leader steps down if an election timeout elapses without
// a successful round of heartbeats to a majority of its cluster".
TEST(RaftCheckQuorum, LeaderStepsDownWhenCutOffFromQuorum) {
  Cluster c(3, CheckQuorum());
  c.Elect(1);
  c.Isolate(1);
  for (int i = 0; i < 10; ++i) c[1]->Tick();
  EXPECT_EQ(c[1].raft().role(), Role::kLeader) << "first round was active";
  for (int i = 0; i < 10; ++i) c[1]->Tick();
  EXPECT_EQ(c[1].raft().role(), Role::kFollower);
  EXPECT_EQ(c[1].raft().term(), 1u);
}

TEST(RaftCheckQuorum, LeaderStaysWhileQuorumAnswers) {
  Cluster c(3, CheckQuorum());
  c.Elect(1);
  c.Isolate(3);
  for (int i = 0; i < 50; ++i) {
    c[1]->Tick();
    c.Stabilize();
  }
  EXPECT_EQ(c[1].raft().role(), Role::kLeader);
}

// Thesis §4.2.3: "if a server receives a RequestVote request within the
// minimum election timeout of hearing from a current leader, it does not
// update its term or grant its vote".
TEST(RaftCheckQuorum, FollowerIgnoresVotesWhileLeaderIsAlive) {
  Cluster c(3, CheckQuorum());
  c.Elect(1);
  Message v = Msg(MessageType::kVote, 3, 2, 5);
  v.index = 100;
  v.log_term = 4;
  ASSERT_TRUE(c[2]->Step(v).ok());
  EXPECT_EQ(c[2].raft().term(), 1u);
  EXPECT_TRUE(OfType(c[2].Drain(), MessageType::kVoteResp).empty());
  // After an election timeout without the leader, it votes again.
  for (int i = 0; i < 10; ++i) c[2]->Tick();
  c[2].Drain();
  if (c[2].raft().role() == Role::kFollower) {
    ASSERT_TRUE(c[2]->Step(v).ok());
    EXPECT_EQ(c[2].raft().term(), 5u);
    EXPECT_EQ(c[2].raft().vote(), 3u);
  }
}

// With check-quorum a cut-off leader may keep its term while the others move
// on: a message of its stale term gets an answer in the new term, which
// makes it step down.
TEST(RaftCheckQuorum, StaleLeaderLearnsNewerTermFromFollower) {
  TestNode n(2, Ids(3), CheckQuorum(), {}, HardState{5, 0, 0});
  ASSERT_TRUE(n->Step(Msg(MessageType::kHeartbeat, 1, 2, 3)).ok());
  std::vector<Message> r = OfType(n.Drain(), MessageType::kAppResp);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].term, 5u);
  EXPECT_EQ(r[0].to, 1u);

  Cluster c(3, CheckQuorum());
  c.Elect(1);
  ASSERT_TRUE(c[1]->Step(r[0]).ok());
  EXPECT_EQ(c[1].raft().role(), Role::kFollower);
  EXPECT_EQ(c[1].raft().term(), 5u);
}

// Both together: a rejoining server neither bumps its term nor wins a
// pre-vote from followers that still hear from the leader.
TEST(RaftPreVote, WithCheckQuorumRejoiningServerCannotDisrupt) {
  Cluster c(3, Both());
  c.Elect(1);
  c.Isolate(3);
  for (int i = 0; i < 100; ++i) c[3]->Tick();
  c.Stabilize();
  c.Heal();
  c[3]->Campaign();
  c.Stabilize();
  c.TickAll(25);
  EXPECT_EQ(c.Leader(), 1u);
  EXPECT_EQ(c[1].raft().term(), 1u);
  EXPECT_EQ(c[3].raft().lead(), 1u);
}

}  // namespace
}  // namespace synod::raft
