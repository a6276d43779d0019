// Randomized membership changes, log compaction, partitions and restarts on
// a bootstrapped cluster of up to five nodes, checking after every step the
// safety properties of the Raft paper's Figure 3 that reconfiguration and
// snapshots could break:
//   election safety ("at most one leader can be elected in a given term"),
//   state machine safety ("if a server has applied a log entry at a given
//   index ..., no other server will ever apply a different log entry for the
//   same index"), and that servers which applied the same prefix agree on
//   the membership (thesis §4.1: the configuration is a function of the log).
// At the end the network heals and the cluster must commit a new entry on
// every member.
//
// Replay one schedule: SYNOD_RAFT_SEED=<seed> raft_raft_reconfig_random_test
// Soak with more seeds: SYNOD_RAFT_SOAK=<n> raft_raft_reconfig_random_test
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "absl/strings/str_join.h"
#include "tests/raft/test_util.h"

namespace synod::raft {
namespace {

using testing::Cluster;
using testing::NodeOptions;
using testing::TestNode;

constexpr uint64_t kMaxId = 5;

class ReconfigRun {
 public:
  explicit ReconfigRun(uint64_t seed) : seed_(seed), rng_(seed) {
    NodeOptions o;
    o.seed = seed;
    o.bootstrap = true;
    o.pre_vote = rng_.OneIn(2);
    o.check_quorum = rng_.OneIn(2);
    opts_ = o;
    c_ = std::make_unique<Cluster>(3, o);
    for (uint64_t id = 4; id <= kMaxId; ++id) {
      // Joining nodes: no membership until the log tells them.
      c_->Add(std::make_unique<TestNode>(id, std::vector<uint64_t>{}, o));
    }
    c_->Stabilize();
  }

  struct Stats {
    size_t terms = 0, entries = 0, conf_changes = 0, snapshots = 0;
  };
  Stats stats() {
    Stats st;
    st.terms = leaders_.size();
    st.entries = applied_.size();
    for (auto& [i, e] : applied_) {
      st.conf_changes += e.type == EntryType::kConfChange;
    }
    for (auto& [id, n] : c_->nodes()) st.snapshots += n->snapshots.size();
    return st;
  }

  void Run(int steps) {
    for (int step = 0; step < steps && !::testing::Test::HasFailure(); ++step) {
      Step(step);
      Check(step);
    }
    if (::testing::Test::HasFailure()) return;
    Settle();
  }

 private:
  TestNode& N(uint64_t id) { return (*c_)[id]; }
  uint64_t RandomId() { return 1 + rng_.Uniform(kMaxId); }

  void Step(int step) {
    uint64_t leader = c_->Leader();
    switch (rng_.Uniform(10)) {
      case 0:
      case 1:
      case 2:
        c_->TickAll(1 + static_cast<int>(rng_.Uniform(5)));
        break;
      case 3:
      case 4:
        if (leader != kNone) {
          (void)N(leader)->Propose("s" + std::to_string(step));
          c_->Stabilize();
        }
        break;
      case 5:
        if (leader != kNone) ProposeChange(leader);
        break;
      case 6:
        if (rng_.OneIn(2)) {
          c_->Isolate(RandomId());
        } else {
          c_->Heal();
        }
        break;
      case 7:
        Compact(RandomId(), step);
        break;
      case 8: {
        uint64_t id = RandomId();
        N(id).Restart();
        c_->Stabilize();
        break;
      }
      case 9:
        if (leader != kNone) {
          (void)N(leader)->TransferLeadership(RandomId());
          c_->Stabilize();
        }
        break;
    }
  }

  void ProposeChange(uint64_t leader) {
    ConfState cs = N(leader).raft().conf_state();
    uint64_t id = RandomId();
    if (removed_.count(id)) return;  // ids are never reused (etcd)
    ConfChange cc;
    cc.node_id = id;
    switch (rng_.Uniform(3)) {
      case 0:
        cc.type = ConfChangeType::kAddLearnerNode;
        break;
      case 1:
        cc.type = ConfChangeType::kAddNode;
        break;
      case 2:
        // Keep two voters so that an isolated node cannot stall the run.
        if (cs.voters.size() <= 2) return;
        cc.type = ConfChangeType::kRemoveNode;
        break;
    }
    if (N(leader)->ProposeConfChange(cc).ok() &&
        cc.type == ConfChangeType::kRemoveNode) {
      // It may or may not commit; never reuse the id either way.
      removed_.insert(id);
    }
    c_->Stabilize();
  }

  void Compact(uint64_t id, int step) {
    TestNode& n = N(id);
    uint64_t at = n.applied_index;
    if (at < n.storage.FirstIndex()) return;
    absl::StatusOr<Snapshot> s = n.storage.CreateSnapshot(
        at, n.raft().conf_state(), "snap@" + std::to_string(step));
    if (!s.ok()) return;
    ASSERT_TRUE(n.storage.Compact(at).ok());
  }

  void Check(int step) {
    for (auto& [id, n] : c_->nodes()) {
      if (n->raft().role() == Role::kLeader) {
        auto [it, fresh] = leaders_.emplace(n->raft().term(), id);
        ASSERT_TRUE(fresh || it->second == id)
            << "two leaders in term " << n->raft().term() << ": " << it->second
            << " and " << id << " (step " << step << ")";
      }
      // State machine safety on every entry applied since the last check.
      size_t& seen = checked_[id];
      for (; seen < n->applied.size(); ++seen) {
        const Entry& e = n->applied[seen];
        auto [it, fresh] = applied_.emplace(e.index, e);
        ASSERT_TRUE(fresh || it->second == e)
            << "node " << id << " applied a different entry at " << e.index
            << " (step " << step << ")";
      }
      // The membership is a function of the applied prefix.
      auto [it, fresh] =
          conf_at_.emplace(n->applied_index, n->raft().conf_state());
      ASSERT_TRUE(fresh || it->second == n->raft().conf_state())
          << "node " << id << " disagrees on the membership at applied index "
          << n->applied_index << " (step " << step << ")";
    }
  }

  // Liveness under good conditions: after healing, within a bounded number
  // of ticks, a leader whose term is the highest of its members commits and
  // every member applies a new entry.
  void Settle() {
    c_->Heal();
    uint64_t proposed_term = 0;
    uint64_t leader = kNone;
    for (int tick = 0; tick < 500; ++tick) {
      c_->TickAll(1);
      Check(-1);
      if (::testing::Test::HasFailure()) return;
      leader = c_->Leader();
      if (leader == kNone) continue;
      ConfState cs = N(leader).raft().conf_state();
      std::vector<uint64_t> members = cs.voters;
      members.insert(members.end(), cs.learners.begin(), cs.learners.end());
      uint64_t term = N(leader).raft().term();
      if (proposed_term != term && N(leader)->Propose("final").ok()) {
        proposed_term = term;
      }
      bool done = true;
      for (uint64_t id : members) {
        bool found = false;
        for (const Entry& e : N(id).applied) found |= e.data == "final";
        done &= found;
      }
      if (done) return;
    }
    ADD_FAILURE() << "the healed cluster did not commit on every member"
                  << Dump(leader);
  }

  std::string Dump(uint64_t leader) {
    std::string out = absl::StrCat("\nleader ", leader);
    for (auto& [id, n] : c_->nodes()) {
      const Raft& r = n->raft();
      ConfState cs = r.conf_state();
      absl::StrAppend(
          &out, "\n node ", id, " ", RoleName(r.role()), " term ", r.term(),
          " lead ", r.lead(), " first ", r.log().FirstIndex(), " last ",
          r.log().LastIndex(), " commit ", r.log().committed(), " applied ",
          n->applied_index, " voters ", absl::StrJoin(cs.voters, ","),
          " learners ", absl::StrJoin(cs.learners, ","));
    }
    for (auto& [id, p] : N(leader)->GetStatus().progress) {
      absl::StrAppend(&out, "\n  pr ", id, " match ", p.match, " next ", p.next,
                      " ", p.state, " pending ", p.pending_snapshot, " active ",
                      p.recent_active);
    }
    return out;
  }

  uint64_t seed_;
  Random rng_;
  NodeOptions opts_;
  std::unique_ptr<Cluster> c_;
  std::set<uint64_t> removed_;
  std::map<uint64_t, uint64_t> leaders_;   // term -> leader
  std::map<uint64_t, Entry> applied_;      // index -> the entry applied there
  std::map<uint64_t, size_t> checked_;     // node -> applied entries checked
  std::map<uint64_t, ConfState> conf_at_;  // applied index -> membership
};

TEST(RaftReconfigRandom, SafetyUnderMembershipChangesCompactionAndFaults) {
  std::vector<uint64_t> seeds;
  if (const char* env = getenv("SYNOD_RAFT_SEED")) {
    seeds.push_back(strtoull(env, nullptr, 10));
  } else {
    uint64_t n = 40;
    if (const char* soak = getenv("SYNOD_RAFT_SOAK")) {
      n = strtoull(soak, nullptr, 10);
    }
    for (uint64_t s = 1; s <= n; ++s) seeds.push_back(s);
  }
  ReconfigRun::Stats total;
  for (uint64_t seed : seeds) {
    printf("RaftReconfigRandom seed=%" PRIu64 "\n", seed);
    ReconfigRun run(seed);
    run.Run(300);
    ASSERT_FALSE(::testing::Test::HasFailure())
        << "replay: SYNOD_RAFT_SEED=" << seed;
    ReconfigRun::Stats st = run.stats();
    printf("  leaders %zu, entries %zu, conf changes %zu, snapshots %zu\n",
           st.terms, st.entries, st.conf_changes, st.snapshots);
    total.conf_changes += st.conf_changes;
    total.snapshots += st.snapshots;
  }
  if (seeds.size() > 1) {
    EXPECT_GT(total.conf_changes, 3 * seeds.size()) << "coverage";
    EXPECT_GT(total.snapshots, 0u) << "coverage: no snapshot was installed";
  }
}

}  // namespace
}  // namespace synod::raft
