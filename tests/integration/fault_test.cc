// Jepsen-style fault test: concurrent etcdctl clients read, write and
// compare-and-set a few keys through random members of a 3-member cluster
// while a nemesis kills -9, pauses (SIGSTOP/SIGCONT) and restarts members,
// at most one at a time. The recorded history must be linearizable
// (tests/lincheck). A failed or timed-out etcdctl call is an operation with
// an unknown outcome.
//
// Seeded: set SYNOD_FAULT_SEED to replay a schedule (the seed is printed).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/integration/harness.h"
#include "tests/lincheck/lincheck.h"

namespace synod::testing {
namespace {

using lincheck::HistoryRecorder;
using lincheck::OpKind;
using lincheck::Operation;

constexpr int kClients = 4;
constexpr int kMaxOpsPerClient = 200;
constexpr absl::Duration kRunTime = absl::Seconds(25);
// Each etcdctl call: --command-timeout=2s, the process killed after 4 s.
constexpr absl::Duration kOpTimeout = absl::Seconds(4);
const char* const kKeys[] = {"f/k0", "f/k1", "f/k2"};

uint64_t Seed() {
  uint64_t seed = 0;
  const char* v = getenv("SYNOD_FAULT_SEED");
  if (v != nullptr && absl::SimpleAtoi(v, &seed)) return seed;
  return static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
  }
  void TearDown() override {
    if (cluster_ != nullptr && HasFailure()) {
      std::cerr << cluster_->LogTails() << "\n";
    }
    cluster_.reset();
  }

  // One client operation against `endpoint`, recorded in `rec`.
  void RunOp(int client, int seq, std::mt19937_64& rng,
             const std::string& endpoint,
             std::vector<std::optional<std::string>>& last_seen,
             HistoryRecorder& rec) {
    Operation op;
    op.client = client;
    const int k = static_cast<int>(rng() % 3);
    op.key = kKeys[k];
    const int dice = static_cast<int>(rng() % 10);
    op.call_ns = rec.Now();
    if (dice < 4) {  // read
      op.kind = OpKind::kRead;
      GetResult g = GetKey(endpoint, op.key, /*serializable=*/false,
                           kOpTimeout);
      op.return_ns = rec.Now();
      op.unknown = !g.ok;
      op.output = g.value;
      if (g.ok) last_seen[k] = g.value;
    } else if (dice < 7) {  // write
      op.kind = OpKind::kWrite;
      op.value = absl::StrCat("c", client, "-", seq);
      CmdResult r =
          Etcdctl(endpoint, {"put", op.key, op.value}, std::nullopt,
                  kOpTimeout);
      op.return_ns = rec.Now();
      op.unknown = r.exit_code != 0;
      if (!op.unknown) last_seen[k] = op.value;
    } else {  // compare-and-set against what this client saw last
      op.kind = OpKind::kCas;
      op.value = absl::StrCat("c", client, "-", seq);
      op.expected = last_seen[k];
      const std::string compare =
          op.expected.has_value()
              ? absl::StrCat("value(\"", op.key, "\") = \"", *op.expected,
                             "\"")
              : absl::StrCat("create(\"", op.key, "\") = \"0\"");
      // etcdctl txn's interactive format: compares, a blank line, success
      // ops, a blank line, failure ops, a blank line.
      const std::string script =
          absl::StrCat(compare, "\n\nput ", op.key, " ", op.value, "\n\n\n");
      CmdResult r = Etcdctl(endpoint, {"txn", "-w", "json"}, script,
                            kOpTimeout);
      op.return_ns = rec.Now();
      std::optional<Json> j;
      if (r.exit_code == 0) j = Json::Parse(r.out);
      op.unknown = !j.has_value();
      // Real etcd omits "succeeded" when the compare failed.
      op.cas_succeeded = j.has_value() && (*j)["succeeded"].Bool();
      if (op.cas_succeeded) last_seen[k] = op.value;
    }
    if (op.unknown) ++unknown_ops_;
    else ++known_ops_;
    if (op.kind == OpKind::kCas && op.cas_succeeded) ++cas_ok_;
    rec.Record(std::move(op));
  }

  std::unique_ptr<Cluster> cluster_;
  std::atomic<int> known_ops_{0}, unknown_ops_{0}, cas_ok_{0};
};

TEST_F(FaultTest, HistoryUnderKillPauseAndRestartIsLinearizable) {
  const uint64_t seed = Seed();
  std::cerr << "[fault] seed " << seed
            << " (replay with SYNOD_FAULT_SEED=" << seed << ")\n";
  cluster_ = std::make_unique<Cluster>();
  ASSERT_TRUE(cluster_->Start());
  const int n = cluster_->size();

  HistoryRecorder rec;
  std::atomic<bool> stop{false};
  const absl::Time end = absl::Now() + kRunTime;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937_64 rng(seed * 1000003 + c);
      std::vector<std::optional<std::string>> last_seen(3);
      for (int seq = 0; seq < kMaxOpsPerClient && !stop && absl::Now() < end;
           ++seq) {
        const int member = static_cast<int>(rng() % n);
        RunOp(c, seq, rng, cluster_->Endpoint(member), last_seen, rec);
      }
    });
  }

  // The nemesis: one fault at a time, paced by sleeps (pacing and fault
  // durations, not synchronisation).
  std::mt19937_64 nem(seed);
  std::vector<std::string> faults;
  int restart_failures = 0;
  auto pace = [&](int min_ms, int max_ms) {
    absl::SleepFor(absl::Milliseconds(
        min_ms + static_cast<int>(nem() % (max_ms - min_ms + 1))));
  };
  pace(500, 1000);
  while (absl::Now() + absl::Seconds(3) < end) {
    const int victim = static_cast<int>(nem() % n);
    const int kind = static_cast<int>(nem() % 3);
    if (kind == 0) {
      faults.push_back(absl::StrCat("kill9 m", victim));
      cluster_->Kill9(victim);
      pace(500, 1500);
      if (!cluster_->StartMember(victim)) ++restart_failures;
    } else if (kind == 1) {
      faults.push_back(absl::StrCat("pause m", victim));
      cluster_->Pause(victim);
      pace(500, 1500);
      cluster_->Resume(victim);
    } else {
      faults.push_back(absl::StrCat("restart m", victim));
      cluster_->Stop(victim);
      pace(200, 800);
      if (!cluster_->StartMember(victim)) ++restart_failures;
    }
    pace(500, 1500);
  }
  stop = true;
  for (auto& t : clients) t.join();
  // Heal: every member running; then a final read of every key.
  for (int i = 0; i < n; ++i) {
    cluster_->Resume(i);
    if (!cluster_->member(i).Running()) {
      ASSERT_TRUE(cluster_->StartMember(i));
    }
  }
  ASSERT_GE(cluster_->WaitForLeader(absl::Seconds(10)), 0);
  std::mt19937_64 rng(seed + 7);
  std::vector<std::optional<std::string>> ignored(3);
  for (int i = 0; i < 6; ++i) {
    RunOp(kClients, 100000 + i, rng, cluster_->Endpoint(i % n), ignored, rec);
  }

  std::vector<Operation> history = rec.Take();
  std::cerr << "[fault] faults: " << faults.size() << " (";
  for (const auto& f : faults) std::cerr << f << "; ";
  std::cerr << ")\n[fault] " << history.size() << " ops: " << known_ops_
            << " known, " << unknown_ops_ << " unknown, " << cas_ok_
            << " successful CAS\n";
  EXPECT_EQ(restart_failures, 0);
  EXPECT_GE(faults.size(), 3u);
  // The run means something only if enough operations completed.
  EXPECT_GE(known_ops_.load(), 50);
  EXPECT_GE(cas_ok_.load(), 1);

  const absl::Time check_start = absl::Now();
  lincheck::CheckResult result = lincheck::Check(history, absl::Seconds(60));
  std::cerr << "[fault] linearizability check took "
            << absl::Now() - check_start << "\n";
  EXPECT_EQ(result.verdict, lincheck::CheckResult::kLinearizable)
      << (result.verdict == lincheck::CheckResult::kTimedOut
              ? "checker timed out (no verdict) on key "
              : "NOT linearizable on key ")
      << result.key << " (seed " << seed << "):\n"
      << result.explanation;
}

}  // namespace
}  // namespace synod::testing
