// Raft micro-benchmarks: the Step/Ready cycle of three RawNodes over
// MemoryStorage, exchanging messages in memory (no I/O, no threads, no
// clock), so the figures are the Raft core's own CPU cost per entry.
//
// One iteration of BM_ProposeCommit/<batch>/<bytes>: the leader proposes
// `batch` entries of `bytes` bytes; then every node drains its Ready
// (persist to MemoryStorage, send, apply, Advance) and the messages are
// delivered (MsgApp -> followers, MsgAppResp -> leader, the commit index in
// the next MsgApp or heartbeat) until no node has work left, at which point
// every entry is committed and applied on all three nodes.
// items_per_second is entries committed per second.
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/raft/random.h"
#include "backend/raft/raw_node.h"
#include "backend/raft/storage.h"
#include "bench/bench_main.h"
#include "benchmark/benchmark.h"

namespace synod::raft {
namespace {

// Three nodes, ids 1..3, with a network that is a FIFO queue.
class Cluster {
 public:
  static constexpr int kNodes = 3;

  Cluster() {
    for (int i = 0; i < kNodes; ++i) {
      auto n = std::make_unique<Node>(i + 1);
      Config c;
      c.id = i + 1;
      c.peers = {1, 2, 3};
      c.storage = &n->storage;
      c.random = &n->random;
      c.election_tick = 10;
      c.heartbeat_tick = 1;
      auto raw = RawNode::Create(c);
      if (!raw.ok()) abort();
      n->raw = std::move(*raw);
      nodes_.push_back(std::move(n));
    }
    nodes_[0]->raw->Campaign();
    Drain();
    if (nodes_[0]->raw->soft_state().role != Role::kLeader) abort();
  }

  RawNode* leader() { return nodes_[0]->raw.get(); }

  // Runs every node's Ready loop and delivers messages until quiet.
  // Returns the number of Ready cycles processed.
  int64_t Drain() {
    int64_t readies = 0;
    for (;;) {
      bool any = false;
      for (auto& n : nodes_) {
        while (n->raw->HasReady()) {
          any = true;
          ++readies;
          Ready rd = n->raw->GetReady();
          if (rd.hard_state.has_value()) n->storage.SetHardState(*rd.hard_state);
          if (!rd.entries.empty() && !n->storage.Append(rd.entries).ok()) {
            abort();
          }
          for (Message& m : rd.messages) net_.push_back(std::move(m));
          if (!rd.committed_entries.empty()) {
            n->applied = rd.committed_entries.back().index;
          }
          n->raw->Advance(rd);
        }
      }
      if (net_.empty() && !any) return readies;
      while (!net_.empty()) {
        Message m = std::move(net_.front());
        net_.pop_front();
        (void)nodes_[m.to - 1]->raw->Step(m);
      }
    }
  }

  // Keeps MemoryStorage from growing without bound on long runs.
  void MaybeCompact() {
    if (++cycles_ % 1024 != 0) return;
    for (auto& n : nodes_) {
      if (n->applied > 64 && !n->storage.Compact(n->applied - 64).ok()) {
        abort();
      }
    }
  }

  uint64_t MinApplied() const {
    uint64_t m = nodes_[0]->applied;
    for (const auto& n : nodes_) m = std::min(m, n->applied);
    return m;
  }

 private:
  struct Node {
    explicit Node(uint64_t seed) : random(seed) {}
    MemoryStorage storage;
    Random random;
    std::unique_ptr<RawNode> raw;
    uint64_t applied = 0;
  };
  std::vector<std::unique_ptr<Node>> nodes_;
  std::deque<Message> net_;
  int64_t cycles_ = 0;
};

void BM_ProposeCommit(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const std::string data(static_cast<size_t>(state.range(1)), 'x');
  Cluster c;
  int64_t readies = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      if (!c.leader()->Propose(data).ok()) abort();
    }
    readies += c.Drain();
    c.MaybeCompact();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * state.range(1));
  state.counters["readies_per_entry"] =
      static_cast<double>(readies) /
      static_cast<double>(std::max<int64_t>(1, state.iterations() * batch));
  benchmark::DoNotOptimize(c.MinApplied());
}
BENCHMARK(BM_ProposeCommit)
    ->ArgNames({"batch", "bytes"})
    ->Args({1, 128})
    ->Args({64, 128})
    ->Args({1, 4096});

// A leader's heartbeat round: Tick until a heartbeat goes out, deliver the
// heartbeats and their responses. The idle cost of a cluster.
void BM_HeartbeatRound(benchmark::State& state) {
  Cluster c;
  for (auto _ : state) {
    c.leader()->Tick();  // heartbeat_tick = 1: one round per tick
    c.Drain();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HeartbeatRound);

}  // namespace
}  // namespace synod::raft

SYNOD_BENCHMARK_MAIN();
