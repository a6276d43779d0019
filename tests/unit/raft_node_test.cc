// RaftNode, the member's raft thread, on fakes: three nodes in one process,
// each with its Raft log in LevelDB on a memory Env, messages carried by the
// in-memory FakeNetwork, and time from a FakeClock (heartbeat 20 ms,
// election 200 ms of fake time). No ports, no sleeps: waits advance the fake
// clock one tick at a time until a condition holds.
#include "backend/server/raft_node.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "backend/storage/backend.h"
#include "backend/storage/raft_log_store.h"
#include "common/clock.h"
#include "common/errors.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "tests/support/fake_network.h"

namespace synod::server {
namespace {

constexpr int kNodes = 3;
constexpr absl::Duration kTick = absl::Milliseconds(20);
constexpr absl::Duration kLimit = absl::Seconds(20);  // fake time per wait

class RaftNodeTest : public ::testing::Test {
 protected:
  struct Node {
    uint64_t id = 0;
    std::unique_ptr<storage::Backend> backend;
    std::unique_ptr<storage::RaftLogStore> log;
    std::unique_ptr<Transport> transport;
    std::unique_ptr<RaftNode> raft;
    absl::Mutex mu;
    std::vector<std::string> applied ABSL_GUARDED_BY(mu);  // normal entries
  };

  void SetUp() override {
    env_.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
    for (int i = 0; i < kNodes; ++i) {
      n_[i].id = static_cast<uint64_t>(i + 1);
      storage::BackendOptions o;
      o.env = env_.get();
      auto b = storage::Backend::Open(absl::StrCat("/raft-node-", i), o);
      ASSERT_TRUE(b.ok()) << b.status();
      n_[i].backend = std::move(*b);
      auto log = storage::RaftLogStore::Open(n_[i].backend.get());
      ASSERT_TRUE(log.ok()) << log.status();
      n_[i].log = std::move(*log);
    }
    for (int i = 0; i < kNodes; ++i) StartNode(i);
    // Time starts once every raft thread waits on the clock.
    ASSERT_TRUE(clock_.WaitForWaiters(kNodes));
  }

  void TearDown() override {
    for (int i = 0; i < kNodes; ++i) {
      if (n_[i].raft) n_[i].raft->Stop();
      if (n_[i].transport) n_[i].transport->Stop();
    }
  }

  void StartNode(int i) {
    Node& n = n_[i];
    PeerHandlers h;
    h.on_message = [&n](raft::Message m) { n.raft->Step(std::move(m)); };
    h.on_unreachable = [&n](uint64_t id) { n.raft->ReportUnreachable(id); };
    h.on_snapshot_status = [&n](uint64_t id, bool ok) {
      n.raft->ReportSnapshot(id, ok);
    };
    h.snapshot_source = [](const std::function<bool(std::string)>&) {
      return absl::OkStatus();
    };
    h.on_snapshot = [&n](const raft::Message& m,
                         const std::vector<std::string>&) {
      n.raft->Step(m);
      return absl::OkStatus();
    };
    n.transport = net_.NewTransport(n.id, 1, {absl::StrCat("fake://", n.id)},
                                    std::move(h));
    for (int j = 0; j < kNodes; ++j) {
      if (j != i) n.transport->AddPeer(n_[j].id, {});
    }
    RaftNode::Options o;
    o.id = n.id;
    for (int j = 0; j < kNodes; ++j) o.bootstrap_voters.push_back(n_[j].id);
    o.tick_interval = kTick;
    o.election_tick = 10;
    o.seed = 100 + n.id;
    o.log = n.log.get();
    o.transport = n.transport.get();
    o.clock = &clock_;
    RaftNode::Callbacks cb;
    cb.apply = [&n](raft::Snapshot, std::vector<raft::Entry> entries) {
      absl::MutexLock l(&n.mu);
      for (const raft::Entry& e : entries) {
        if (e.type == raft::EntryType::kNormal && !e.data.empty()) {
          n.applied.push_back(e.data);
        }
      }
    };
    cb.leader_changed = [](uint64_t, uint64_t) {};
    cb.conf_changed = [](const raft::ConfChange&, const raft::ConfState&,
                         uint64_t) {};
    n.raft = std::make_unique<RaftNode>(std::move(o), std::move(cb));
    ASSERT_TRUE(n.raft->Start().ok());
  }

  bool AdvanceUntil(const std::function<bool()>& cond,
                    absl::Duration limit = kLimit) {
    for (absl::Duration t; t < limit; t += kTick) {
      if (cond()) return true;
      clock_.Advance(kTick);
    }
    return cond();
  }

  // The index of the node every node not in `except` agrees leads.
  std::optional<int> AgreedLeader(int except = -1) {
    uint64_t lead = 0;
    for (int i = 0; i < kNodes; ++i) {
      if (i == except) continue;
      const uint64_t l = n_[i].raft->leader();
      if (l == 0 || (lead != 0 && l != lead)) return std::nullopt;
      lead = l;
    }
    for (int i = 0; i < kNodes; ++i) {
      if (n_[i].id == lead && i != except) return i;
    }
    return std::nullopt;
  }

  int WaitLeader(int except = -1) {
    std::optional<int> lead;
    EXPECT_TRUE(AdvanceUntil([&] { return (lead = AgreedLeader(except)).has_value(); }))
        << "no agreed leader";
    return lead.value_or(-1);
  }

  std::vector<std::string> Applied(int i) {
    absl::MutexLock l(&n_[i].mu);
    return n_[i].applied;
  }

  // Proposes `data` on node i; the drop callback's status, if it ran.
  void Propose(int i, const std::string& data, absl::Duration timeout,
               absl::Status* dropped = nullptr) {
    n_[i].raft->Propose(data, clock_.Now() + timeout,
                        [dropped](absl::Status st) {
                          if (dropped != nullptr) *dropped = st;
                        });
  }

  common::FakeClock clock_;
  synod::testing::FakeNetwork net_;
  std::unique_ptr<leveldb::Env> env_;
  Node n_[kNodes];
};

// Raft §5.2/§5.3: one leader is elected, and entries proposed through the
// leader and through a follower are applied on every node in one order.
TEST_F(RaftNodeTest, ElectsALeaderAndEveryNodeAppliesTheSameLog) {
  const int lead = WaitLeader();
  ASSERT_GE(lead, 0);
  const int f = (lead + 1) % kNodes;
  std::vector<std::string> want;
  for (int k = 0; k < 20; ++k) {
    const std::string v = absl::StrCat("e", k);
    Propose(k % 2 ? lead : f, v, absl::Seconds(5));
    // Each proposal is committed before the next, so the order is known.
    ASSERT_TRUE(AdvanceUntil([&] { return Applied(lead).size() == want.size() + 1; }))
        << "entry " << k << " was not applied";
    want.push_back(v);
  }
  ASSERT_TRUE(AdvanceUntil([&] {
    for (int i = 0; i < kNodes; ++i) {
      if (Applied(i) != want) return false;
    }
    return true;
  })) << "the nodes applied different logs";
  ASSERT_TRUE(AdvanceUntil([&] {
    for (int i = 0; i < kNodes; ++i) {
      if (n_[i].raft->commit_index() != n_[lead].raft->commit_index()) {
        return false;
      }
    }
    return true;
  })) << "the followers never learned the leader's commit index";
}

// Raft §5.2: when the leader is cut off, the other two elect a new leader
// in a higher term, which commits; the old leader, once healed, follows it
// and applies what it missed.
TEST_F(RaftNodeTest, IsolatedLeaderIsReplacedAndCatchesUpWhenHealed) {
  const int lead = WaitLeader();
  ASSERT_GE(lead, 0);
  const uint64_t old_term = n_[lead].raft->term();
  net_.SetIsolated(n_[lead].id, true);
  const int next = WaitLeader(lead);
  ASSERT_GE(next, 0);
  ASSERT_NE(next, lead);
  EXPECT_GT(n_[next].raft->term(), old_term);
  Propose(next, "after-partition", absl::Seconds(5));
  ASSERT_TRUE(AdvanceUntil([&] {
    auto a = Applied(next);
    return !a.empty() && a.back() == "after-partition";
  }));
  // Check-quorum: the isolated leader steps down on its own.
  ASSERT_TRUE(AdvanceUntil([&] { return !n_[lead].raft->is_leader(); }))
      << "an isolated leader kept leading";
  net_.SetIsolated(n_[lead].id, false);
  ASSERT_TRUE(AdvanceUntil([&] {
    auto a = Applied(lead);
    return !a.empty() && a.back() == "after-partition";
  })) << "the healed node did not catch up";
  EXPECT_EQ(n_[lead].raft->leader(), n_[next].id);
}

// A proposal waits for a leader up to its deadline, then fails with etcd's
// "request timed out"; nothing is applied.
TEST_F(RaftNodeTest, ProposalWithoutALeaderTimesOutAtItsDeadline) {
  const int lead = WaitLeader();
  ASSERT_GE(lead, 0);
  const int f = (lead + 1) % kNodes;
  // Cut the follower off and let it lose the leader.
  net_.SetIsolated(n_[f].id, true);
  ASSERT_TRUE(AdvanceUntil([&] { return n_[f].raft->leader() == 0; }));
  absl::Status dropped = absl::UnknownError("not yet");
  Propose(f, "lost", absl::Seconds(1), &dropped);
  AdvanceUntil([&] { return false; }, absl::Milliseconds(900));
  EXPECT_EQ(dropped.code(), absl::StatusCode::kUnknown)
      << "dropped before its deadline: " << dropped;
  ASSERT_TRUE(AdvanceUntil([&] { return dropped.code() != absl::StatusCode::kUnknown; },
                           absl::Seconds(1)));
  EXPECT_EQ(dropped.message(), "etcdserver: request timed out") << dropped;
  for (int i = 0; i < kNodes; ++i) {
    for (const std::string& e : Applied(i)) EXPECT_NE(e, "lost");
  }
}

// ReadIndex (thesis §6.4): on a connected node it returns at least every
// index committed before the read began; on a node cut off from the quorum
// it fails at its deadline instead of answering.
TEST_F(RaftNodeTest, ReadIndexCoversCommittedWritesAndFailsWithoutAQuorum) {
  const int lead = WaitLeader();
  ASSERT_GE(lead, 0);
  Propose(lead, "w", absl::Seconds(5));
  ASSERT_TRUE(AdvanceUntil([&] { return !Applied(lead).empty(); }));
  const uint64_t committed = n_[lead].raft->commit_index();
  const int f = (lead + 1) % kNodes;
  absl::Notification done;
  absl::StatusOr<uint64_t> index = absl::UnknownError("not yet");
  n_[f].raft->ReadIndex(clock_.Now() + absl::Seconds(5),
                        [&](absl::StatusOr<uint64_t> i) {
                          index = i;
                          done.Notify();
                        });
  ASSERT_TRUE(AdvanceUntil([&] { return done.HasBeenNotified(); }));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_GE(*index, committed);

  net_.SetIsolated(n_[f].id, true);
  absl::Notification failed;
  absl::StatusOr<uint64_t> lone = absl::UnknownError("not yet");
  n_[f].raft->ReadIndex(clock_.Now() + absl::Seconds(1),
                        [&](absl::StatusOr<uint64_t> i) {
                          lone = i;
                          failed.Notify();
                        });
  ASSERT_TRUE(AdvanceUntil([&] { return failed.HasBeenNotified(); },
                           absl::Seconds(3)));
  EXPECT_FALSE(lone.ok()) << "a node without a quorum served a ReadIndex";
}

// Leadership transfer (etcd's MoveLeader, thesis §3.10).
TEST_F(RaftNodeTest, TransferLeadershipMovesTheLeaderToTheTransferee) {
  const int lead = WaitLeader();
  ASSERT_GE(lead, 0);
  const int to = (lead + 2) % kNodes;
  absl::Notification done;
  absl::Status st = absl::UnknownError("not yet");
  n_[lead].raft->TransferLeadership(n_[to].id, clock_.Now() + absl::Seconds(5),
                                    [&](absl::Status s) {
                                      st = s;
                                      done.Notify();
                                    });
  ASSERT_TRUE(AdvanceUntil([&] { return done.HasBeenNotified(); }));
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(AdvanceUntil([&] {
    auto l = AgreedLeader();
    return l.has_value() && *l == to;
  }));
}

}  // namespace
}  // namespace synod::server
