// The deterministic cluster simulation (see sim_cluster.h): thousands of
// seeded schedules of 3- and 5-node clusters, with and without pre-vote and
// check-quorum, under drops, delays, reordering, duplication, partitions,
// crashes and restarts. After every step the Raft safety properties are
// checked; at the end of each schedule the history of the simulated KV
// clients must be linearizable.
//
// Each configuration is split into shards of seeds (separate ctest tests,
// so `ctest -j2 -L sim` spreads them). A failure prints the exact command
// that replays its seed.
//
// Replay one schedule:  SYNOD_RAFT_SEED=<seed> sim_sim_test --gtest_filter=<test>
// Soak more seeds:      SYNOD_RAFT_SOAK=<n> sim_sim_test   (n seeds per shard)
#include <cstdio>
#include <cstdlib>
#include <ostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/sim/sim_cluster.h"

#ifndef SYNOD_SIM_BINARY
#define SYNOD_SIM_BINARY "sim_sim_test"
#endif

namespace synod::sim {
namespace {

constexpr int kShards = 4;
constexpr uint64_t kSeedsPerShard = 75;

struct NamedConfig {
  const char* name;
  SimOptions options;
};

// Names the configuration in test names and messages (not its bytes).
void PrintTo(const NamedConfig& c, std::ostream* os) { *os << c.name; }

SimOptions Opts(int nodes, bool pre_vote, bool check_quorum, ReadMode mode,
                int clients, int compact_every = 0, bool membership = false) {
  SimOptions o;
  o.nodes = nodes;
  o.pre_vote = pre_vote;
  o.check_quorum = check_quorum;
  o.read_mode = mode;
  o.clients = clients;
  o.steps = 8000;
  o.compact_every = compact_every;
  o.membership = membership;
  return o;
}

const NamedConfig kConfigs[] = {
    {"ThreeNodes", Opts(3, false, false, ReadMode::kMixed, 3)},
    {"FiveNodes", Opts(5, false, false, ReadMode::kMixed, 5)},
    {"ThreeNodesPreVoteCheckQuorumCompaction",
     Opts(3, true, true, ReadMode::kMixed, 4, 4)},
    {"FiveNodesPreVoteCheckQuorum", Opts(5, true, true, ReadMode::kMixed, 4)},
    {"FiveNodesPreVoteCompaction", Opts(5, true, false, ReadMode::kMixed, 3, 5)},
    {"ThreeNodesCheckQuorumLogReads", Opts(3, false, true, ReadMode::kLog, 5)},
    {"FiveNodesReadIndexReadsCompaction",
     Opts(5, false, false, ReadMode::kReadIndex, 4, 3)},
    {"MembershipChanges", Opts(5, false, false, ReadMode::kMixed, 4, 0, true)},
    {"MembershipChangesPreVoteCheckQuorumCompaction",
     Opts(5, true, true, ReadMode::kMixed, 4, 4, true)},
};

std::string CurrentTest() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string(info->test_suite_name()) + "." + info->name();
}

std::string ReplayCommand(uint64_t seed) {
  return "SYNOD_RAFT_SEED=" + std::to_string(seed) + " " SYNOD_SIM_BINARY
         " --gtest_filter='" + CurrentTest() + "'";
}

// The seeds of one shard, or the one seed to replay, or a soak.
std::vector<uint64_t> Seeds(int shard) {
  if (const char* s = std::getenv("SYNOD_RAFT_SEED")) {
    return {std::strtoull(s, nullptr, 10)};
  }
  uint64_t n = kSeedsPerShard;
  uint64_t first = 1 + shard * kSeedsPerShard;
  if (const char* s = std::getenv("SYNOD_RAFT_SOAK")) {
    n = std::strtoull(s, nullptr, 10);
    first = 1 + shard * n;
  }
  std::vector<uint64_t> seeds;
  for (uint64_t i = 0; i < n; ++i) seeds.push_back(first + i);
  return seeds;
}

class RaftSim
    : public ::testing::TestWithParam<std::tuple<NamedConfig, int>> {};

TEST_P(RaftSim, SafetyAndLinearizability) {
  const SimOptions o = std::get<0>(GetParam()).options;
  const int shard = std::get<1>(GetParam());
  SimStats total;
  uint64_t runs = 0;
  for (uint64_t seed : Seeds(shard)) {
    SimCluster sim(seed, o);
    if (!sim.Run()) {
      ADD_FAILURE() << sim.failure() << "  replay: " << ReplayCommand(seed);
      return;
    }
    const SimStats& s = sim.stats();
    total.committed += s.committed;
    total.elections += s.elections;
    total.reads_served += s.reads_served;
    total.ops += s.ops;
    total.ops_ok += s.ops_ok;
    total.snapshots_installed += s.snapshots_installed;
    total.conf_changes += s.conf_changes;
    runs++;
  }
  // The schedules must exercise the protocol and the clients, not idle
  // (on average: a single replayed seed may be quiet).
  if (runs >= 20) {
    EXPECT_GT(total.committed, runs * 5);
    EXPECT_GT(total.elections, runs);
    EXPECT_GT(total.reads_served, runs / 2);
    EXPECT_GT(total.ops_ok, runs * 5);
    if (o.compact_every > 0) {
      EXPECT_GT(total.snapshots_installed, runs / 10);
    }
    if (o.membership) {
      EXPECT_GT(total.conf_changes, runs * 4);
    }
  }
  printf("%s: %llu schedules: %llu entries committed, %llu terms with a "
         "leader, %llu ReadIndex answers, %llu client ops (%llu known), "
         "%llu snapshots installed, %llu membership entries applied\n",
         Describe(o).c_str(), static_cast<unsigned long long>(runs),
         static_cast<unsigned long long>(total.committed),
         static_cast<unsigned long long>(total.elections),
         static_cast<unsigned long long>(total.reads_served),
         static_cast<unsigned long long>(total.ops),
         static_cast<unsigned long long>(total.ops_ok),
         static_cast<unsigned long long>(total.snapshots_installed),
         static_cast<unsigned long long>(total.conf_changes));
}

INSTANTIATE_TEST_SUITE_P(
    Seeds, RaftSim,
    ::testing::Combine(::testing::ValuesIn(kConfigs),
                       ::testing::Range(0, kShards)),
    [](const ::testing::TestParamInfo<std::tuple<NamedConfig, int>>& info) {
      return std::string(std::get<0>(info.param).name) + "_Shard" +
             std::to_string(std::get<1>(info.param));
    });

// A seed must replay exactly: the same schedule, the same history.
TEST(RaftSimReplay, SameSeedSameHistory) {
  for (uint64_t seed : {7u, 1234u}) {
    SimOptions o = kConfigs[1].options;
    SimCluster a(seed, o), b(seed, o);
    ASSERT_TRUE(a.Run()) << a.failure();
    ASSERT_TRUE(b.Run()) << b.failure();
    ASSERT_EQ(a.history().size(), b.history().size());
    ASSERT_FALSE(a.history().empty());
    for (size_t i = 0; i < a.history().size(); ++i) {
      EXPECT_EQ(lincheck::Describe(a.history()[i]),
                lincheck::Describe(b.history()[i]));
    }
    EXPECT_EQ(a.stats().committed, b.stats().committed);
    EXPECT_EQ(a.stats().elections, b.stats().elections);
    EXPECT_EQ(a.stats().reads_served, b.stats().reads_served);
  }
}

// The harness must be able to fail: with reads served from a possibly
// deposed leader's local state (no ReadIndex), partitions must produce at
// least one history the checker rejects. Raft's own invariants still hold.
TEST(RaftSimBroken, UnsafeLocalReadsAreCaught) {
  SimOptions o = Opts(3, false, false, ReadMode::kUnsafeLocal, 5);
  o.require_linearizable = false;
  uint64_t runs = 0, caught = 0;
  std::string first;
  std::vector<uint64_t> seeds;
  if (std::getenv("SYNOD_RAFT_SEED")) {
    seeds = Seeds(0);
  } else {
    for (uint64_t seed = 1; seed <= 200; ++seed) seeds.push_back(seed);
  }
  for (uint64_t seed : seeds) {
    SimCluster sim(seed, o);
    if (!sim.Run()) {
      ADD_FAILURE() << sim.failure() << "  replay: " << ReplayCommand(seed);
      return;
    }
    runs++;
    if (!sim.stats().linearizable) {
      if (caught++ == 0) {
        first = "seed " + std::to_string(seed) + ": " +
                sim.stats().lincheck_explanation;
      }
    }
  }
  printf("unsafe local reads: %llu of %llu histories not linearizable\n",
         static_cast<unsigned long long>(caught),
         static_cast<unsigned long long>(runs));
  if (!first.empty()) printf("first: %s\n", first.c_str());
  // (A replayed seed only shows its verdict.)
  if (runs > 1) {
    EXPECT_GT(caught, 0u);
  }
}

}  // namespace
}  // namespace synod::sim
