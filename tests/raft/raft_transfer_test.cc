// Leadership transfer (thesis §3.10).
#include "tests/raft/test_util.h"

namespace synod::raft {
namespace {

using testing::Cluster;
using testing::NodeOptions;

NodeOptions Both() {
  NodeOptions o;
  o.pre_vote = true;
  o.check_quorum = true;
  return o;
}

// Thesis §3.10: "the prior leader sends a TimeoutNow request to the target
// server. This request has the same effect as the target server's election
// timer firing: the target server starts a new election".
TEST(RaftTransfer, UpToDateFollowerBecomesLeader) {
  for (NodeOptions o : {NodeOptions{}, Both()}) {
    Cluster c(3, o);
    c.Elect(1);
    ASSERT_TRUE(c[1]->TransferLeadership(2).ok());
    c.Stabilize();
    EXPECT_EQ(c.Leader(), 2u) << "pre-vote/check-quorum " << o.pre_vote;
    EXPECT_EQ(c[2].raft().term(), 2u);
    EXPECT_EQ(c[1].raft().role(), Role::kFollower);
    EXPECT_EQ(c[1].raft().lead(), 2u);
  }
}

// Thesis §3.10: "the prior leader ... brings the target server's log up to
// date ... using the normal log replication mechanism".
TEST(RaftTransfer, LaggingTargetCatchesUpFirst) {
  Cluster c(3);
  c.Elect(1);
  c.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c[1]->Propose("x").ok());
  c.Stabilize();
  c.Heal();
  ASSERT_LT(c[3].raft().log().LastIndex(), c[1].raft().log().LastIndex());
  ASSERT_TRUE(c[1]->TransferLeadership(3).ok());
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 3u);
  EXPECT_EQ(c[3].raft().log().committed(), 7u);  // 6 + its own no-op
  for (uint64_t id : {1, 2, 3}) EXPECT_EQ(c[id].applied.size(), 7u) << id;
}

// Thesis §3.10: "the prior leader stops accepting new client requests"
// during the transfer, and "if the transfer does not complete within an
// election timeout, the prior leader aborts the transfer and resumes
// accepting client requests".
TEST(RaftTransfer, ProposalsDroppedUntilTransferAborts) {
  Cluster c(3);
  c.Elect(1);
  c.Isolate(3);
  ASSERT_TRUE(c[1]->TransferLeadership(3).ok());
  EXPECT_EQ(c[1].raft().TEST_lead_transferee(), 3u);
  EXPECT_EQ(c[1]->Propose("x").message(), "raft proposal dropped");
  for (int i = 0; i < 10; ++i) {
    c[1]->Tick();
    c.Stabilize();
  }
  EXPECT_EQ(c[1].raft().TEST_lead_transferee(), kNone);
  EXPECT_EQ(c.Leader(), 1u);
  EXPECT_TRUE(c[1]->Propose("x").ok());
}

TEST(RaftTransfer, FollowerForwardsRequestToLeader) {
  Cluster c(3);
  c.Elect(1);
  ASSERT_TRUE(c[2]->TransferLeadership(2).ok());
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 2u);
}

TEST(RaftTransfer, ToSelfOrUnknownNodeIsIgnored) {
  Cluster c(3);
  c.Elect(1);
  ASSERT_TRUE(c[1]->TransferLeadership(1).ok());
  ASSERT_TRUE(c[1]->TransferLeadership(9).ok());
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 1u);
  EXPECT_EQ(c[1].raft().term(), 1u);
  EXPECT_EQ(c[1].raft().TEST_lead_transferee(), kNone);
}

TEST(RaftTransfer, NewRequestRetargetsTransfer) {
  Cluster c(3);
  c.Elect(1);
  c.Isolate(3);
  ASSERT_TRUE(c[1]->TransferLeadership(3).ok());
  c.Stabilize();
  ASSERT_TRUE(c[1]->TransferLeadership(2).ok());
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 2u);
}

}  // namespace
}  // namespace synod::raft
