// Nothing is acknowledged before it is durable on a quorum: three members
// on a fake clock and network, each on a disk that forgets whatever was not
// synced (FaultInjectionEnv). After acknowledged writes, every member loses
// power at once (its unsynced LevelDB data is dropped, torn on a seed) and
// restarts; every acknowledged write must be there, on every member, with
// the same HashKV. Apply batches are not synced (the Raft log is), so this
// also checks that a restart replays the log from the applied index.
#include <cstdlib>
#include <iostream>

#include "backend/raft/random.h"
#include "tests/unit/cluster_fixture.h"

namespace synod::server {
namespace {

class ClusterPowerLossTest : public ClusterServerTest {
 protected:
  bool FaultInjectingDisks() const override { return true; }
};

uint64_t Seed() {
  const char* env = std::getenv("SYNOD_POWER_LOSS_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 20261205;
}

TEST_F(ClusterPowerLossTest, AcknowledgedWritesSurviveLosingPowerEverywhere) {
  const uint64_t seed = Seed();
  std::cerr << "[power-loss] seed " << seed
            << " (replay with SYNOD_POWER_LOSS_SEED)\n";
  raft::Random rnd(seed);
  constexpr int kRounds = 3;
  constexpr int kKeys = 40;
  int acked = 0;
  for (int round = 0; round < kRounds; ++round) {
    const int lead = WaitLeader();
    ASSERT_GE(lead, 0);
    for (int k = 0; k < kKeys; ++k) {
      // Through every member in turn: followers forward to the leader.
      const int via = static_cast<int>(rnd.Uniform(kMembers));
      ASSERT_TRUE(Put(via, absl::StrCat("r", round, "/k", k),
                      absl::StrCat("v", round, ".", k))
                      .ok())
          << "round " << round << " key " << k;
      ++acked;
    }
    // Power loss everywhere, at once: no member gets to sync anything more.
    for (int i = 0; i < kMembers; ++i) Kill(i);
    for (int i = 0; i < kMembers; ++i) {
      absl::Status st = disk(i)->DropRandomUnsyncedData(&rnd);
      ASSERT_TRUE(st.ok()) << st;
    }
    for (int i = 0; i < kMembers; ++i) Start(i);
    // Every acknowledged write comes back, on every member.
    ASSERT_TRUE(PollUntil([&] {
      for (int r = 0; r <= round; ++r) {
        for (int k = 0; k < kKeys; ++k) {
          if (!AppliedEverywhere(absl::StrCat("r", r, "/k", k),
                                 absl::StrCat("v", r, ".", k))) {
            return false;
          }
        }
      }
      return true;
    })) << "an acknowledged write was lost in round " << round << " (seed "
        << seed << ")";
  }
  // The replicas are equal.
  ASSERT_TRUE(PollUntil([&] {
    return S(0)->kv()->Rev() == S(1)->kv()->Rev() &&
           S(1)->kv()->Rev() == S(2)->kv()->Rev();
  }));
  auto h0 = S(0)->LocalHashKV(0);
  ASSERT_TRUE(h0.ok()) << h0.status();
  for (int i = 1; i < kMembers; ++i) {
    auto h = S(i)->LocalHashKV(0);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->hash(), h0->hash()) << "member " << i << " diverged";
  }
  std::cerr << "[power-loss] " << acked << " acknowledged puts, all kept\n";
}

}  // namespace
}  // namespace synod::server
