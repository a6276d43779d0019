// Helpers shared by the Raft core tests: a node with its own MemoryStorage
// and seeded Random, Ready draining, and a small synchronous cluster that
// delivers every message until the cluster is quiet (etcd raft's `network`).
#ifndef SYNOD_TESTS_RAFT_TEST_UTIL_H_
#define SYNOD_TESTS_RAFT_TEST_UTIL_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backend/raft/raw_node.h"
#include "gtest/gtest.h"

namespace synod::raft::testing {

struct NodeOptions {
  int election_tick = 10;
  int heartbeat_tick = 1;
  bool pre_vote = false;
  bool check_quorum = false;
  uint64_t max_size_per_msg = 1 << 20;
  size_t max_inflight_msgs = 256;
  uint64_t seed = 1;
  // Config::learners and Config::bootstrap.
  std::vector<uint64_t> learners;
  bool bootstrap = false;
  // Drain() calls ApplyConfChange for committed kConfChange entries (and
  // records the result in storage), as an application does.
  bool apply_conf_changes = true;
};

inline std::vector<uint64_t> Ids(int n) {
  std::vector<uint64_t> ids;
  for (int i = 1; i <= n; ++i) ids.push_back(i);
  return ids;
}

// Entries with the given terms at indexes 1, 2, ...
inline std::vector<Entry> EntriesWithTerms(const std::vector<uint64_t>& terms) {
  std::vector<Entry> ents;
  for (size_t i = 0; i < terms.size(); ++i) {
    Entry e;
    e.term = terms[i];
    e.index = i + 1;
    ents.push_back(e);
  }
  return ents;
}

// One node: storage, randomness and the RawNode over them.
struct TestNode {
  TestNode(uint64_t id, std::vector<uint64_t> peers, NodeOptions o = {},
           std::vector<Entry> log = {}, HardState hs = {})
      : id(id), peers(std::move(peers)), opts(o), random(o.seed * 1000 + id) {
    EXPECT_TRUE(storage.Append(log).ok());
    storage.SetHardState(hs);
    Restart();
  }

  Config MakeConfig() {
    Config c;
    c.id = id;
    c.peers = peers;
    c.learners = opts.learners;
    c.bootstrap = opts.bootstrap;
    c.election_tick = opts.election_tick;
    c.heartbeat_tick = opts.heartbeat_tick;
    c.storage = &storage;
    c.random = &random;
    c.applied = applied_index;
    c.max_size_per_msg = opts.max_size_per_msg;
    c.max_inflight_msgs = opts.max_inflight_msgs;
    c.pre_vote = opts.pre_vote;
    c.check_quorum = opts.check_quorum;
    return c;
  }

  // A new RawNode over what was persisted (a crash and restart).
  void Restart() {
    auto n = RawNode::Create(MakeConfig());
    ASSERT_TRUE(n.ok()) << n.status();
    node = std::move(*n);
  }

  // Processes every Ready: persist, apply, Advance. Returns the messages.
  std::vector<Message> Drain() {
    std::vector<Message> out;
    while (node->HasReady()) {
      Ready rd = node->GetReady();
      if (!rd.snapshot.empty()) {
        EXPECT_TRUE(storage.ApplySnapshot(rd.snapshot).ok());
        snapshots.push_back(rd.snapshot);
        applied_index = rd.snapshot.metadata.index;
      }
      if (rd.hard_state) storage.SetHardState(*rd.hard_state);
      EXPECT_TRUE(storage.Append(rd.entries).ok());
      for (Message& m : rd.messages) out.push_back(std::move(m));
      for (const Entry& e : rd.committed_entries) {
        applied.push_back(e);
        applied_index = e.index;
        if (e.type == EntryType::kConfChange && opts.apply_conf_changes) {
          absl::StatusOr<ConfChange> cc = DecodeConfChange(e.data);
          EXPECT_TRUE(cc.ok()) << cc.status();
          if (cc.ok()) storage.SetConfState(node->ApplyConfChange(*cc));
        }
      }
      for (ReadState& r : rd.read_states) read_states.push_back(std::move(r));
      node->Advance(rd);
    }
    return out;
  }

  const Raft& raft() const { return node->TEST_raft(); }
  RawNode* operator->() { return node.get(); }

  uint64_t id;
  std::vector<uint64_t> peers;
  NodeOptions opts;
  MemoryStorage storage;
  Random random;
  std::unique_ptr<RawNode> node;
  std::vector<Entry> applied;
  uint64_t applied_index = 0;
  std::vector<Snapshot> snapshots;  // installed from Ready.snapshot
  std::vector<ReadState> read_states;
};

// Messages of one type from a batch.
inline std::vector<Message> OfType(const std::vector<Message>& ms,
                                   MessageType t) {
  std::vector<Message> out;
  for (const Message& m : ms) {
    if (m.type == t) out.push_back(m);
  }
  return out;
}

inline Message Msg(MessageType type, uint64_t from, uint64_t to,
                   uint64_t term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

// A synchronous cluster: Stabilize() drains and delivers until quiet.
class Cluster {
 public:
  explicit Cluster(int n, NodeOptions o = {}) {
    for (uint64_t id : Ids(n)) {
      nodes_.emplace(id, std::make_unique<TestNode>(id, Ids(n), o));
    }
  }
  // Voters and learners (o.learners is overridden).
  Cluster(const std::vector<uint64_t>& voters,
          const std::vector<uint64_t>& learners, NodeOptions o = {}) {
    o.learners = learners;
    for (uint64_t id : voters) {
      nodes_.emplace(id, std::make_unique<TestNode>(id, voters, o));
    }
    for (uint64_t id : learners) {
      nodes_.emplace(id, std::make_unique<TestNode>(id, voters, o));
    }
  }
  // Adds a node (e.g. one joining with no membership).
  void Add(std::unique_ptr<TestNode> n) {
    uint64_t id = n->id;
    nodes_[id] = std::move(n);
  }
  TestNode& operator[](uint64_t id) { return *nodes_.at(id); }

  void Cut(uint64_t a, uint64_t b) {
    cut_.insert({a, b});
    cut_.insert({b, a});
  }
  void Isolate(uint64_t id) {
    for (auto& [other, n] : nodes_) {
      if (other != id) Cut(id, other);
    }
  }
  void Heal() { cut_.clear(); }
  // Drops every message of type t while set.
  void DropType(MessageType t) { dropped_types_.insert(t); }
  void AllowType(MessageType t) { dropped_types_.erase(t); }

  // Drains and delivers until no node has anything to do.
  void Stabilize() {
    for (int round = 0; round < 10000; ++round) {
      std::vector<Message> q;
      for (auto& [id, n] : nodes_) {
        for (Message& m : n->Drain()) q.push_back(std::move(m));
      }
      if (q.empty()) return;
      for (const Message& m : q) Deliver(m);
    }
    ADD_FAILURE() << "cluster did not stabilize";
  }
  void Deliver(const Message& m) {
    bool dropped = cut_.count({m.from, m.to}) || dropped_types_.count(m.type);
    auto it = nodes_.find(m.to);
    if (it == nodes_.end()) dropped = true;
    if (!dropped) (void)it->second->node->Step(m);
    // Like a transport, tell the sender how a snapshot send went.
    if (m.type == MessageType::kSnap && report_snapshots_) {
      auto from = nodes_.find(m.from);
      if (from != nodes_.end())
        from->second->node->ReportSnapshot(m.to, !dropped);
    }
  }
  // Whether Deliver reports MsgSnap outcomes to the sender (default on).
  void set_report_snapshots(bool on) { report_snapshots_ = on; }
  // Ticks `id` until it campaigns (bypasses the randomized timeout).
  void Elect(uint64_t id) {
    (*this)[id]->Campaign();
    Stabilize();
  }
  // The leader with the highest term, or kNone.
  uint64_t Leader() {
    uint64_t best = kNone, term = 0;
    for (auto& [id, n] : nodes_) {
      if (n->raft().role() == Role::kLeader && n->raft().term() >= term) {
        best = id;
        term = n->raft().term();
      }
    }
    return best;
  }
  void TickAll(int ticks) {
    for (int i = 0; i < ticks; ++i) {
      for (auto& [id, n] : nodes_) n->node->Tick();
      Stabilize();
    }
  }
  std::map<uint64_t, std::unique_ptr<TestNode>>& nodes() { return nodes_; }

 private:
  std::map<uint64_t, std::unique_ptr<TestNode>> nodes_;
  std::set<std::pair<uint64_t, uint64_t>> cut_;
  std::set<MessageType> dropped_types_;
  bool report_snapshots_ = true;
};

// Makes `n` leader: campaigns and grants it every peer's vote. Returns the
// messages it sends as new leader.
inline std::vector<Message> MakeLeader(TestNode& n) {
  n->Campaign();
  n.Drain();
  for (uint64_t p : n.peers) {
    if (p == n.id) continue;
    EXPECT_TRUE(
        n->Step(Msg(MessageType::kVoteResp, p, n.id, n.raft().term())).ok());
  }
  EXPECT_EQ(n.raft().role(), Role::kLeader);
  return n.Drain();
}

// A successful MsgAppResp to node 1 in term 1 acknowledging `index`.
inline Message AppResp(uint64_t from, uint64_t index) {
  Message m = Msg(MessageType::kAppResp, from, 1, 1);
  m.index = index;
  return m;
}

}  // namespace synod::raft::testing

#endif  // SYNOD_TESTS_RAFT_TEST_UTIL_H_
