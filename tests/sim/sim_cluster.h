// SimCluster: a deterministic simulation of a 3- or 5-node Raft cluster over
// a simulated network that drops, delays, reorders and duplicates messages,
// partitions nodes, and crashes and restarts them (keeping only what they
// persisted). Every schedule comes from one seed, so a seed replays a run
// exactly (only ordered containers are iterated; no pointers are hashed).
//
// After every step the safety properties of Figure 3 of the Raft paper are
// checked: election safety, log matching, leader completeness and state
// machine safety; ReadIndex answers are checked against the commits known
// when the read started (thesis §6.4). With compaction on, the state
// machines of nodes that reach the same applied index (by entries or by an
// installed snapshot) must be identical there. Storms (crashes, partitions)
// alternate with calm spells. At the end the network heals and the cluster
// must commit a new entry on every member (liveness).
//
// On top runs a small KV service: each node applies commands (read, write,
// compare-and-set on a few keys) from its log to a map, exactly once per
// (client id, sequence number). Simulated clients call whichever node they
// think leads, get their answer when that node applies their command (or
// serves their ReadIndex read), and record the history with the step
// counter as the clock; a client that times out, or whose node crashes,
// records an unknown outcome. A proposal the node refuses at once ("raft:
// proposal dropped") never happened and is left out. Times are
// step * 1000 + the event's rank within the step, so real-time order is
// exact. At the end the history goes through synod::lincheck::Check.
//
// Thread-safety: none; a SimCluster is driven by one thread.
#ifndef SYNOD_TESTS_SIM_SIM_CLUSTER_H_
#define SYNOD_TESTS_SIM_SIM_CLUSTER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/raft/raw_node.h"
#include "backend/raft/storage.h"
#include "tests/lincheck/lincheck.h"

namespace synod::sim {

// How clients read.
enum class ReadMode {
  kLog,        // a read command goes through the log like a write
  kReadIndex,  // RawNode::ReadIndex, then wait for applied >= index
  kMixed,      // each read picks one of the two at random
  // BROKEN on purpose: a node that believes it leads answers from its local
  // state machine at once. A deposed leader serves stale reads; tests use it
  // to show the pipeline catches them.
  kUnsafeLocal,
};

struct SimOptions {
  int nodes = 3;
  bool pre_vote = false;
  bool check_quorum = false;
  int steps = 3000;
  int clients = 4;  // 0: no KV workload
  int keys = 3;
  ReadMode read_mode = ReadMode::kMixed;
  // Every node takes a snapshot of its state machine and compacts its log
  // once it applied this many entries past its last snapshot (0: never),
  // so lagging and restarted followers get MsgSnap.
  int compact_every = 0;
  // Membership changes (thesis §4.1, one at a time): nodes 1-3 bootstrap
  // the cluster, the others start empty; the schedule adds them as learners
  // or voters, promotes learners and removes voters (keeping at least 3).
  // REQUIRES: nodes == 5 when set.
  bool membership = false;
  // A client gives up (unknown outcome) after this many steps.
  int client_timeout = 600;
  // Whether a non-linearizable history is a failure (false: just counted).
  bool require_linearizable = true;
};

std::string Describe(const SimOptions& o);

struct SimStats {
  uint64_t committed = 0;  // entries known committed by some leader
  uint64_t elections = 0;  // terms that had a leader
  uint64_t reads_served = 0;  // ReadIndex answers
  uint64_t snapshots_installed = 0;  // MsgSnap applied by followers
  uint64_t conf_changes = 0;  // kConfChange entries applied (incl. bootstrap)
  uint64_t ops = 0;           // client ops in the history
  uint64_t ops_ok = 0;        // ... with a known outcome
  bool linearizable = true;
  std::string lincheck_explanation;
};

class SimCluster {
 public:
  SimCluster(uint64_t seed, SimOptions options);
  ~SimCluster();

  // Runs the schedule, then checks the history. Returns false on a
  // violation (see failure()).
  bool Run();
  const std::string& failure() const { return failure_; }
  const SimStats& stats() const { return stats_; }
  const std::vector<lincheck::Operation>& history() const { return history_; }

 private:
  // A read waiting for its node's applied index to reach `index`.
  struct PendingRead {
    uint64_t index;
    int client;
    std::string ctx;
  };
  struct Node {
    raft::MemoryStorage storage;       // what survives a crash
    // The state machine, durable as a whole: the last entry applied, the
    // KV map and per client the last sequence number applied (exactly
    // once).
    uint64_t applied = 0;
    std::map<std::string, std::string> kv;
    std::map<int, uint64_t> last_seq;
    std::unique_ptr<raft::Random> random;
    std::unique_ptr<raft::RawNode> raw;  // null while crashed
    std::optional<raft::Ready> pending;  // a leader's Ready sent, not persisted
    std::vector<PendingRead> reads;      // volatile
    int restarts = 0;
  };
  struct Client {
    int id = 0;
    uint64_t target = 0;  // the node it believes leads
    uint64_t seq = 0;
    bool busy = false;
    uint64_t node = 0;  // where the outstanding op went
    std::string ctx;    // its ReadIndex ctx, if any
    int deadline = 0;   // step at which it gives up
    lincheck::Operation op;
    // The last value it saw per key: CAS expects it.
    std::map<std::string, std::optional<std::string>> seen;
  };
  struct InFlight {
    raft::Message m;
    int deliver_at;
  };
  struct Committed {
    uint64_t term;  // the entry's term
    uint64_t data_hash;
    uint64_t commit_term;  // term of the leader first seen committing it
  };
  // What an entry (index, term) must look like in every log.
  struct Shape {
    uint64_t data_hash;
    uint64_t prev_term;  // term of the entry before it
  };

  void Fail(const std::string& what);
  std::string Dump();
  void Start(uint64_t id);
  std::vector<uint64_t> Live() const;
  template <typename V>
  uint64_t Pick(const V& v) {
    return v[rng_.Uniform(v.size())];
  }
  void RandomStep();
  bool Connected(uint64_t a, uint64_t b);
  bool DeliverOne();
  void Crash(uint64_t id);
  void SendAll(std::vector<raft::Message>& msgs, bool reliable);
  void ProcessReady(uint64_t id, bool reliable = false);
  void FinishReady(uint64_t id, raft::Ready& rd, bool reliable);
  void Apply(uint64_t id, const raft::Entry& e);
  void InstallSnapshot(uint64_t id, const raft::Snapshot& snap);
  void MaybeCompact(uint64_t id);
  // Checks (or records) the state machine's hash at index `index`.
  void CheckStateAt(uint64_t id, uint64_t index);
  // The transport's report on a MsgSnap it delivered or lost.
  void ReportSnap(const raft::Message& m, bool delivered);
  void Deliver(raft::Message& m);
  void ProposeConfChange();
  // The committed membership (every node when membership is off).
  std::vector<uint64_t> Members() const;
  void Check(uint64_t id);
  void Settle();

  // The KV workload (sim_clients.cc).
  int64_t Now();
  void IssueOp(Client& c);
  void ApplyCommand(uint64_t id, const raft::Entry& e);
  // The state machine as snapshot data, and back.
  static std::string StateData(const Node& n);
  static bool RestoreState(Node& n, const std::string& data);
  void OnReadState(uint64_t id, const raft::ReadState& rs);
  void ServeReads(uint64_t id);
  void Complete(Client& c, bool known);
  void ClientTimeouts();
  void CheckHistory();

  const uint64_t seed_;
  const SimOptions opts_;
  raft::Random rng_;
  std::vector<uint64_t> ids_;
  std::map<uint64_t, std::unique_ptr<Node>> nodes_;
  std::vector<InFlight> net_;
  std::map<uint64_t, int> side_;  // empty: no partition
  int step_ = 0;
  int clock_step_ = -1;  // Now(): the step of the last event ...
  int64_t clock_sub_ = 0;  // ... and how many events it had
  bool calm_ = false;  // no crashes nor partitions for a while
  bool ok_ = true;
  std::string failure_;
  SimStats stats_;

  std::map<uint64_t, uint64_t> leaders_;  // term -> leader
  // (index << 20 | term) -> the entry's shape; lookups only.
  std::unordered_map<uint64_t, Shape> shapes_;
  // applied index -> hash of the state machine there (only at snapshots).
  std::map<uint64_t, uint64_t> state_at_;
  std::map<uint64_t, Committed> committed_;
  std::map<uint64_t, raft::Entry> applied_;
  std::map<std::string, uint64_t> reads_;  // ctx -> commit index at request

  // The membership applied at the highest index any node applied.
  raft::ConfState conf_;
  uint64_t conf_index_ = 0;
  std::vector<uint64_t> removed_;  // never added back (as etcd requires)

  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<lincheck::Operation> history_;
};

}  // namespace synod::sim

#endif  // SYNOD_TESTS_SIM_SIM_CLUSTER_H_
