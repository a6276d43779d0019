// Tests named after the sentences of the Raft paper (Ongaro & Ousterhout,
// "In Search of an Understandable Consensus Algorithm", extended version)
// that they check, in the paper's order, as etcd raft's raft_paper_test.go.
#include <set>

#include "tests/raft/test_util.h"

namespace synod::raft {
namespace {

using testing::Cluster;
using testing::EntriesWithTerms;
using testing::Ids;
using testing::MakeLeader;
using testing::Msg;
using testing::NodeOptions;
using testing::OfType;
using testing::TestNode;

// Makes `n` leader by granting it the votes of every peer.
Entry E(uint64_t term, uint64_t index) {
  Entry e;
  e.term = term;
  e.index = index;
  return e;
}

Message AppResp(uint64_t from, uint64_t to, uint64_t term, uint64_t index) {
  Message m = Msg(MessageType::kAppResp, from, to, term);
  m.index = index;
  return m;
}

// ------------------------------------------------------------------ §5.1

// §5.1: "Current terms are exchanged whenever servers communicate; if one
// server's current term is smaller than the other's, then it updates its
// current term to the larger value. If a candidate or leader discovers that
// its term is out of date, it immediately reverts to follower state."
TEST(RaftPaper, Sec51_ServerUpdatesTermAndRevertsToFollower) {
  for (Role start : {Role::kFollower, Role::kCandidate, Role::kLeader}) {
    TestNode n(1, Ids(3));
    if (start == Role::kCandidate) n->Campaign();
    if (start == Role::kLeader) MakeLeader(n);
    ASSERT_EQ(n.raft().role(), start);
    ASSERT_TRUE(n->Step(Msg(MessageType::kApp, 2, 1, 5)).ok());
    EXPECT_EQ(n.raft().term(), 5u) << RoleName(start);
    EXPECT_EQ(n.raft().role(), Role::kFollower) << RoleName(start);
    EXPECT_EQ(n.raft().lead(), 2u) << RoleName(start);
  }
}

// §5.1: "If a server receives a request with a stale term number, it
// rejects the request."
TEST(RaftPaper, Sec51_StaleTermRequestIsRejected) {
  TestNode n(1, Ids(3), {}, EntriesWithTerms({1, 2}), HardState{2, 0, 0});
  Message app = Msg(MessageType::kApp, 2, 1, 1);
  app.index = 2;
  app.log_term = 2;
  app.entries = EntriesWithTerms({1, 2, 1});
  app.entries = {app.entries[2]};
  app.commit = 3;
  ASSERT_TRUE(n->Step(app).ok());
  EXPECT_EQ(n.raft().log().LastIndex(), 2u);
  EXPECT_EQ(n.raft().log().committed(), 0u);
  EXPECT_EQ(n.raft().lead(), kNone);
  EXPECT_TRUE(n.Drain().empty() || n.raft().term() == 2);
  EXPECT_EQ(n.raft().term(), 2u);
}

// ------------------------------------------------------------------ §5.2

// §5.2: "When servers start up, they begin as followers."
TEST(RaftPaper, Sec52_ServersStartAsFollowers) {
  TestNode n(1, Ids(3));
  EXPECT_EQ(n.raft().role(), Role::kFollower);
  EXPECT_EQ(n.raft().term(), 0u);
}

// §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no
// log entries) to all followers in order to maintain their authority."
TEST(RaftPaper, Sec52_LeaderSendsHeartbeatsEveryHeartbeatTick) {
  NodeOptions o;
  o.heartbeat_tick = 2;
  TestNode n(1, Ids(3), o);
  MakeLeader(n);
  n->Tick();
  EXPECT_TRUE(OfType(n.Drain(), MessageType::kHeartbeat).empty());
  n->Tick();
  std::vector<Message> hb = OfType(n.Drain(), MessageType::kHeartbeat);
  ASSERT_EQ(hb.size(), 2u);
  std::set<uint64_t> to;
  for (const Message& m : hb) {
    to.insert(m.to);
    EXPECT_EQ(m.term, 1u);
    EXPECT_TRUE(m.entries.empty());
  }
  EXPECT_EQ(to, (std::set<uint64_t>{2, 3}));
}

// §5.2: "If a follower receives no communication over a period of time
// called the election timeout, then it assumes there is no viable leader and
// begins an election ... a follower increments its current term and
// transitions to candidate state. It then votes for itself and issues
// RequestVote RPCs in parallel to each of the other servers."
// "If ... election timeout elapses" for a candidate: "it starts a new
// election by incrementing its term and initiating another round".
TEST(RaftPaper, Sec52_NoCommunicationStartsElection) {
  for (bool as_candidate : {false, true}) {
    TestNode n(1, Ids(3), {}, {}, HardState{1, 0, 0});
    if (as_candidate) {
      n->Campaign();
      n.Drain();
    }
    uint64_t term = n.raft().term();
    for (int i = 0; i < 2 * 10; ++i) n->Tick();
    EXPECT_EQ(n.raft().role(), Role::kCandidate);
    EXPECT_EQ(n.raft().term(), term + 1);
    EXPECT_EQ(n.raft().vote(), 1u);
    std::vector<Message> votes = OfType(n.Drain(), MessageType::kVote);
    ASSERT_EQ(votes.size(), 2u);
    for (const Message& m : votes) EXPECT_EQ(m.term, term + 1);
    EXPECT_EQ(n.storage.InitialState().hard_state.vote, 1u) << "vote must be persisted";
  }
}

// §5.2: "A candidate wins an election if it receives votes from a majority
// of the servers in the full cluster for the same term." ... "if many
// followers become candidates at the same time, votes could be split so that
// no candidate obtains a majority."
TEST(RaftPaper, Sec52_CandidateWinsWithMajorityOfFullCluster) {
  struct Case {
    int size;
    std::map<uint64_t, bool> votes;  // beyond its own
    Role want;
  } cases[] = {
      {1, {}, Role::kLeader},
      {3, {{2, true}}, Role::kLeader},
      {3, {{2, true}, {3, true}}, Role::kLeader},
      {5, {{2, true}, {3, true}}, Role::kLeader},
      {5, {{2, true}}, Role::kCandidate},
      {5, {{2, true}, {3, false}, {4, false}}, Role::kCandidate},
      {3, {{2, false}, {3, false}}, Role::kFollower},
      {5, {{2, false}, {3, false}, {4, false}}, Role::kFollower},
      {3, {}, Role::kCandidate},
  };
  for (const Case& c : cases) {
    TestNode n(1, Ids(c.size));
    n->Campaign();
    for (auto [from, granted] : c.votes) {
      Message r = Msg(MessageType::kVoteResp, from, 1, 1);
      r.reject = !granted;
      ASSERT_TRUE(n->Step(r).ok());
    }
    EXPECT_EQ(n.raft().role(), c.want)
        << "size " << c.size << " votes " << c.votes.size();
    EXPECT_EQ(n.raft().term(), 1u);
  }
}

// §5.2: "Each server will vote for at most one candidate in a given term, on
// a first-come-first-served basis."
TEST(RaftPaper, Sec52_FollowerVotesAtMostOncePerTerm) {
  struct Case {
    uint64_t vote, from;
    bool reject;
  } cases[] = {{kNone, 2, false}, {kNone, 3, false}, {2, 2, false},
               {3, 3, false},     {2, 3, true},      {3, 2, true}};
  for (const Case& c : cases) {
    TestNode n(1, Ids(3), {}, {}, HardState{1, c.vote, 0});
    ASSERT_TRUE(n->Step(Msg(MessageType::kVote, c.from, 1, 1)).ok());
    std::vector<Message> r = OfType(n.Drain(), MessageType::kVoteResp);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].reject, c.reject) << c.vote << " " << c.from;
    EXPECT_EQ(r[0].to, c.from);
  }
}

// §5.2: "While waiting for votes, a candidate may receive an AppendEntries
// RPC from another server claiming to be leader. If the leader's term ... is
// at least as large as the candidate's current term, then the candidate
// recognizes the leader as legitimate and returns to follower state."
TEST(RaftPaper, Sec52_CandidateFallsBackOnAppendFromLegitimateLeader) {
  for (uint64_t term : {1, 2}) {
    TestNode n(1, Ids(3));
    n->Campaign();
    ASSERT_EQ(n.raft().term(), 1u);
    ASSERT_TRUE(n->Step(Msg(MessageType::kApp, 2, 1, term)).ok());
    EXPECT_EQ(n.raft().role(), Role::kFollower);
    EXPECT_EQ(n.raft().term(), term);
    EXPECT_EQ(n.raft().lead(), 2u);
  }
}

// §5.2: "Raft uses randomized election timeouts ... election timeouts are
// chosen randomly from a fixed interval (e.g., 150-300ms)": here
// [election_tick, 2*election_tick).
TEST(RaftPaper, Sec52_ElectionTimeoutIsRandomizedInFixedInterval) {
  std::set<int> seen;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    NodeOptions o;
    o.seed = seed;
    TestNode n(1, Ids(3), o);
    int t = n.raft().TEST_randomized_election_timeout();
    EXPECT_GE(t, 10);
    EXPECT_LT(t, 20);
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 10u) << "every timeout in [et, 2et) is chosen";
}

// §5.2: "This spreads out the servers so that in most cases only a single
// server will time out".
TEST(RaftPaper, Sec52_ElectionTimeoutsRarelyConflict) {
  int conflicts = 0, rounds = 500;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::unique_ptr<TestNode>> nodes;
    NodeOptions o;
    o.seed = round + 1;
    for (uint64_t id : Ids(5)) {
      nodes.push_back(std::make_unique<TestNode>(id, Ids(5), o));
    }
    for (int tick = 0; tick < 20; ++tick) {
      int timed_out = 0;
      for (auto& n : nodes) {
        n->node->Tick();
        if (n->raft().role() == Role::kCandidate) timed_out++;
      }
      if (timed_out > 0) {
        if (timed_out > 1) conflicts++;
        break;
      }
    }
  }
  EXPECT_LE(conflicts, rounds * 3 / 10);
}

// ------------------------------------------------------------------ §5.3

// §5.3: "The leader appends the command to its log as a new entry, then
// issues AppendEntries RPCs in parallel to each of the other servers".
TEST(RaftPaper, Sec53_LeaderAppendsProposalAndReplicatesIt) {
  TestNode n(1, Ids(3));
  MakeLeader(n);
  // Followers acknowledge the no-op, moving them to replicate state.
  ASSERT_TRUE(n->Step(AppResp(2, 1, 1, 1)).ok());
  ASSERT_TRUE(n->Step(AppResp(3, 1, 1, 1)).ok());
  n.Drain();
  ASSERT_TRUE(n->Propose("x").ok());
  EXPECT_EQ(n.raft().log().LastIndex(), 2u);
  std::vector<Message> apps = OfType(n.Drain(), MessageType::kApp);
  ASSERT_EQ(apps.size(), 2u);
  for (const Message& m : apps) {
    EXPECT_EQ(m.index, 1u);
    EXPECT_EQ(m.log_term, 1u);
    EXPECT_EQ(m.commit, 1u);
    ASSERT_EQ(m.entries.size(), 1u);
    EXPECT_EQ(m.entries[0].data, "x");
    EXPECT_EQ(m.entries[0].term, 1u);
    EXPECT_EQ(m.entries[0].index, 2u);
  }
}

// §5.3: "A log entry is committed once the leader that created the entry has
// replicated it on a majority of the servers ... The leader keeps track of
// the highest index it knows to be committed, and it includes that index in
// future AppendEntries RPCs ... so that the other servers eventually find
// out."
TEST(RaftPaper, Sec53_LeaderCommitsOnMajorityAndTellsFollowers) {
  struct Case {
    int size;
    std::vector<uint64_t> acks;
    bool committed;
  } cases[] = {{1, {}, true},          {3, {}, false},  {3, {2}, true},
               {3, {2, 3}, true},      {5, {2}, false}, {5, {2, 3}, true},
               {5, {2, 3, 4, 5}, true}};
  for (const Case& c : cases) {
    TestNode n(1, Ids(c.size));
    if (c.size == 1) {
      n->Campaign();
      n.Drain();
    } else {
      MakeLeader(n);
    }
    std::vector<Message> out;
    for (uint64_t a : c.acks) {
      ASSERT_TRUE(n->Step(AppResp(a, 1, 1, 1)).ok());
    }
    out = n.Drain();
    EXPECT_EQ(n.raft().log().committed(), c.committed ? 1u : 0u)
        << "size " << c.size << " acks " << c.acks.size();
    EXPECT_EQ(n.applied.size(), c.committed ? 1u : 0u);
    if (c.committed && c.size > 1) {
      std::vector<Message> apps = OfType(out, MessageType::kApp);
      // Followers that acknowledged hear of the commit at once; one still
      // being probed hears of it once it answers.
      std::map<uint64_t, uint64_t> last_commit;  // per follower
      for (const Message& m : apps) last_commit[m.to] = m.commit;
      for (uint64_t a : c.acks) EXPECT_EQ(last_commit[a], 1u) << a;
    }
  }
}

// The same, end to end: every follower eventually applies the entry.
TEST(RaftPaper, Sec53_FollowersEventuallyLearnCommitIndex) {
  Cluster c(5);
  c.Elect(1);
  ASSERT_TRUE(c[1]->Propose("v").ok());
  c.Stabilize();
  for (auto& [id, n] : c.nodes()) {
    EXPECT_EQ(n->raft().log().committed(), 2u) << id;
    ASSERT_EQ(n->applied.size(), 2u) << id;
    EXPECT_EQ(n->applied[1].data, "v");
  }
}

// §5.3: "This also commits all preceding entries in the leader's log,
// including entries created by previous leaders."
TEST(RaftPaper, Sec53_CommitIncludesPrecedingEntriesOfEarlierTerms) {
  TestNode n(1, Ids(3), {}, EntriesWithTerms({1, 2, 2}), HardState{2, 0, 0});
  MakeLeader(n);  // term 3, no-op at index 4
  ASSERT_TRUE(n->Step(AppResp(2, 1, 3, 4)).ok());
  n.Drain();
  EXPECT_EQ(n.raft().log().committed(), 4u);
  ASSERT_EQ(n.applied.size(), 4u);
  EXPECT_EQ(n.applied[3].term, 3u);
}

// §5.3: "Once a follower learns that a log entry is committed, it applies
// the entry to its local state machine (in log order)."
TEST(RaftPaper, Sec53_FollowerAppliesEntriesLearnedCommitted) {
  TestNode n(1, Ids(3));
  Message app = Msg(MessageType::kApp, 2, 1, 1);
  app.entries = EntriesWithTerms({1, 1, 1});
  app.commit = 2;
  ASSERT_TRUE(n->Step(app).ok());
  n.Drain();
  EXPECT_EQ(n.raft().log().committed(), 2u);
  ASSERT_EQ(n.applied.size(), 2u);
  EXPECT_EQ(n.applied[1].index, 2u);
  EXPECT_EQ(n.storage.LastIndex(), 3u) << "the entries are persisted";
}

// §5.3: "When sending an AppendEntries RPC, the leader includes the index
// and term of the entry in its log that immediately precedes the new
// entries. If the follower does not find an entry in its log with the same
// index and term, then it refuses the new entries."
TEST(RaftPaper, Sec53_FollowerRefusesEntriesWithoutMatchingPrev) {
  struct Case {
    uint64_t index, log_term;
    bool reject;
  } cases[] = {{0, 0, false}, {1, 1, false}, {2, 2, false}, {1, 2, true},
               {2, 1, true},  {3, 3, true},  {3, 2, true}};
  for (const Case& c : cases) {
    TestNode n(1, Ids(3), {}, EntriesWithTerms({1, 2}), HardState{2, 0, 0});
    Message app = Msg(MessageType::kApp, 2, 1, 2);
    app.index = c.index;
    app.log_term = c.log_term;
    ASSERT_TRUE(n->Step(app).ok());
    std::vector<Message> r = OfType(n.Drain(), MessageType::kAppResp);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].reject, c.reject) << c.index << "/" << c.log_term;
  }
}

// §5.3: "If an existing entry conflicts with a new one (same index but
// different terms), delete the existing entry and all that follow it; append
// any new entries not already in the log."
TEST(RaftPaper, Sec53_FollowerDeletesConflictsAndAppendsNewEntries) {
  struct Case {
    uint64_t index, log_term;
    std::vector<Entry> ents;
    std::vector<uint64_t> want_terms;
  } cases[] = {
      {2, 2, {E(3, 3)}, {1, 2, 3}},
      {1, 1, {E(3, 2), E(4, 3)}, {1, 3, 4}},
      {0, 0, {E(1, 1)}, {1, 2}},
      {0, 0, {E(3, 1)}, {3}},
  };
  for (const Case& c : cases) {
    TestNode n(1, Ids(3), {}, EntriesWithTerms({1, 2}), HardState{2, 0, 0});
    Message app = Msg(MessageType::kApp, 2, 1, 3);
    app.index = c.index;
    app.log_term = c.log_term;
    app.entries = c.ents;
    ASSERT_TRUE(n->Step(app).ok());
    n.Drain();
    std::vector<uint64_t> terms;
    for (const Entry& e : n.raft().log().AllEntries()) terms.push_back(e.term);
    EXPECT_EQ(terms, c.want_terms) << "append after " << c.index;
    std::vector<uint64_t> stored;
    auto ents = n.storage.Entries(1, n.storage.LastIndex() + 1, kNoLimit);
    ASSERT_TRUE(ents.ok());
    for (const Entry& e : *ents) stored.push_back(e.term);
    EXPECT_EQ(stored, c.want_terms) << "storage after " << c.index;
  }
}

// §5.3 and Figure 7: "the leader handles inconsistencies by forcing the
// followers' logs to duplicate its own ... the leader must find the latest
// log entry where the two logs agree, delete any entries in the follower's
// log after that point, and send the follower all of the leader's entries
// after that point."
TEST(RaftPaper, Sec53_LeaderForcesFollowerLogsToDuplicateItsOwn) {
  std::vector<uint64_t> leader = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  std::vector<std::vector<uint64_t>> followers = {
      {1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a)
      {1, 1, 1, 4},                          // (b)
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c)
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d)
      {1, 1, 1, 4, 4, 4, 4},                 // (e)
      {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f)
  };
  for (size_t i = 0; i < followers.size(); ++i) {
    std::vector<std::unique_ptr<TestNode>> nodes;
    Cluster c(0);
    c.nodes().emplace(1, std::make_unique<TestNode>(1, Ids(3), NodeOptions{},
                                                    EntriesWithTerms(leader),
                                                    HardState{8, 0, 0}));
    c.nodes().emplace(2,
                      std::make_unique<TestNode>(2, Ids(3), NodeOptions{},
                                                 EntriesWithTerms(followers[i]),
                                                 HardState{8, 0, 0}));
    // A third voter with an empty log guarantees the leader its majority.
    c.nodes().emplace(3, std::make_unique<TestNode>(3, Ids(3), NodeOptions{},
                                                    std::vector<Entry>{},
                                                    HardState{8, 0, 0}));
    c.Elect(1);
    ASSERT_EQ(c.Leader(), 1u) << "case " << char('a' + i);
    EXPECT_EQ(c[2].raft().log().AllEntries(), c[1].raft().log().AllEntries())
        << "case " << char('a' + i);
    EXPECT_EQ(c[1].raft().log().committed(), leader.size() + 1);
  }
}

// ---------------------------------------------------------------- §5.4.1

// §5.4.1: "The RequestVote RPC implements this restriction: the RPC includes
// information about the candidate's log".
TEST(RaftPaper, Sec541_VoteRequestCarriesLastLogIndexAndTerm) {
  TestNode n(1, Ids(3), {}, EntriesWithTerms({1, 1, 2}), HardState{2, 0, 0});
  n->Campaign();
  std::vector<Message> votes = OfType(n.Drain(), MessageType::kVote);
  ASSERT_EQ(votes.size(), 2u);
  for (const Message& m : votes) {
    EXPECT_EQ(m.index, 3u);
    EXPECT_EQ(m.log_term, 2u);
    EXPECT_EQ(m.term, 3u);
  }
}

// §5.4.1: "the voter denies its vote if its own log is more up-to-date than
// that of the candidate. ... If the logs have last entries with different
// terms, then the log with the later term is more up-to-date. If the logs end
// with the same term, then whichever log is longer is more up-to-date."
TEST(RaftPaper, Sec541_VoterDeniesCandidateWithLessUpToDateLog) {
  struct Case {
    std::vector<uint64_t> log;
    uint64_t index, log_term;
    bool reject;
  } cases[] = {
      {{1}, 1, 1, false},   {{1}, 1, 2, false},    {{1, 1}, 1, 1, true},
      {{2}, 1, 1, true},    {{2}, 1, 2, false},    {{2}, 1, 3, false},
      {{2, 2}, 1, 2, true}, {{2, 2}, 2, 2, false}, {{1, 1}, 5, 1, false},
  };
  for (const Case& c : cases) {
    TestNode n(1, Ids(3), {}, EntriesWithTerms(c.log), HardState{3, 0, 0});
    Message v = Msg(MessageType::kVote, 2, 1, 4);
    v.index = c.index;
    v.log_term = c.log_term;
    ASSERT_TRUE(n->Step(v).ok());
    std::vector<Message> r = OfType(n.Drain(), MessageType::kVoteResp);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].reject, c.reject) << "log size " << c.log.size() << " cand "
                                     << c.index << "/" << c.log_term;
  }
}

// ---------------------------------------------------------------- §5.4.2

// §5.4.2: "Raft never commits log entries from previous terms by counting
// replicas. Only log entries from the leader's current term are committed by
// counting replicas".
TEST(RaftPaper, Sec542_OnlyEntriesOfCurrentTermCommitByCounting) {
  TestNode n(1, Ids(3), {}, EntriesWithTerms({1, 2}), HardState{2, 0, 0});
  MakeLeader(n);  // term 3, no-op at index 3
  ASSERT_EQ(n.raft().term(), 3u);
  // A follower holding index 2 (of term 2) is a majority with the leader,
  // but index 2 is not of the current term.
  ASSERT_TRUE(n->Step(AppResp(2, 1, 3, 2)).ok());
  n.Drain();
  EXPECT_EQ(n.raft().log().committed(), 0u);
  ASSERT_TRUE(n->Step(AppResp(2, 1, 3, 3)).ok());
  n.Drain();
  EXPECT_EQ(n.raft().log().committed(), 3u);
}

}  // namespace
}  // namespace synod::raft
