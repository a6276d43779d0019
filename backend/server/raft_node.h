// RaftNode: the raft thread of a member (DESIGN.md "Threads in a member").
// It alone owns the RawNode. Everything else talks to it through an inbox of
// closures (proposals, peer messages, ReadIndex requests, reports), and it
// drives the core with ticks every `tick_interval`. For each Ready it:
//   1. sends the leader's messages (before persisting, thesis §10.2.1);
//   2. persists hard state, entries and snapshot in one synced batch;
//   3. sends a follower's messages (after persisting, Raft §5.1);
//   4. applies committed conf changes to the core and hands committed
//      entries (and an incoming snapshot) to the apply callback, in order;
//   5. answers ReadIndex requests, then calls Advance.
// Proposals made while there is no leader wait (up to their deadline) for
// one, as etcd's do; ReadIndex requests are batched: one round of heartbeats
// serves every read that arrived while the previous round was in flight.
//
// Ownership: the node does not own the log store, the transport or the
// clock, which must outlive it. Thread-safe: every public method may be called from any
// thread; the callbacks run on the raft thread.
#ifndef SYNOD_BACKEND_SERVER_RAFT_NODE_H_
#define SYNOD_BACKEND_SERVER_RAFT_NODE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "backend/raft/random.h"
#include "backend/raft/raw_node.h"
#include "backend/server/transport.h"
#include "common/clock.h"
#include "backend/storage/raft_log_store.h"

namespace synod::server {

class RaftNode {
 public:
  struct Options {
    uint64_t id = 0;
    // A new cluster's voters (bootstrap only: ignored when the log is not
    // empty, and empty for a member joining an existing cluster).
    std::vector<uint64_t> bootstrap_voters;
    absl::Duration tick_interval = absl::Milliseconds(100);  // heartbeat
    int election_tick = 10;  // election timeout / heartbeat interval
    bool pre_vote = false;
    uint64_t applied = 0;  // the last index the state machine applied
    uint64_t seed = 1;     // election timeout randomness
    storage::RaftLogStore* log = nullptr;
    Transport* transport = nullptr;
    // Ticks and deadlines; nullptr: the real clock. Not owned.
    common::Clock* clock = nullptr;
  };
  struct Callbacks {
    // Committed work in log order: a snapshot to restore (when non-empty)
    // and then entries. Raft thread; must not block for long.
    std::function<void(raft::Snapshot, std::vector<raft::Entry>)> apply;
    // The known leader or term changed (lead 0: none). Raft thread.
    std::function<void(uint64_t lead, uint64_t term)> leader_changed;
    // A committed conf change was applied to the core (at log `index`);
    // `cs` is the new membership. Raft thread.
    std::function<void(const raft::ConfChange& cc, const raft::ConfState& cs,
                       uint64_t index)>
        conf_changed;
  };
  using Done = std::function<void(absl::Status)>;

  RaftNode(Options options, Callbacks callbacks);
  ~RaftNode();  // Stop()

  // Creates the core from the log store and starts the raft thread.
  // Errors: InvalidArgument from raft::Config::Validate.
  absl::Status Start();
  // Stops the raft thread; waiting proposals and reads fail with kStopped.
  void Stop();

  // Proposes `data` (a serialized synodpb.Request). `dropped` runs (any
  // thread) only if the proposal never entered the log: kTimeout when no
  // leader appeared before `deadline`, kStopped. Success is seen by the
  // apply callback.
  void Propose(std::string data, absl::Time deadline, Done dropped);
  void ProposeConfChange(raft::ConfChange cc, absl::Time deadline,
                         Done dropped);
  // Linearizable read barrier (thesis §6.4): `done` gets the index the
  // state machine must reach before the read may be served. Errors: kTimeout
  // (no leader or no quorum before `deadline`), kStopped.
  void ReadIndex(absl::Time deadline,
                 std::function<void(absl::StatusOr<uint64_t>)> done);
  // Leadership transfer (etcd's MoveLeader). `done` runs once `transferee`
  // is leader (OK), or with kTimeout at the deadline.
  void TransferLeadership(uint64_t transferee, absl::Time deadline, Done done);

  // From the transport.
  void Step(raft::Message m);
  void ReportUnreachable(uint64_t id);
  void ReportSnapshot(uint64_t id, bool ok);

  // The core's status, read on the raft thread (blocks until it answers;
  // a default Status after Stop).
  raft::Status GetStatus();

  // Cheap, possibly stale views (updated after each Ready).
  uint64_t leader() const { return lead_.load(); }
  uint64_t term() const { return term_.load(); }
  uint64_t commit_index() const { return commit_.load(); }
  uint64_t last_index() const { return last_index_.load(); }
  bool is_leader() const { return lead_.load() == opts_.id; }

  // Compacts the log up to `index` on the raft thread (log compaction after
  // a snapshot point; REQUIRES: the state at `index` is durable).
  void CompactLog(uint64_t index);

 private:
  struct PendingProposal {
    bool conf = false;
    std::string data;
    raft::ConfChange cc;
    absl::Time deadline;
    Done dropped;
  };
  struct PendingRead {
    absl::Time deadline;
    std::function<void(absl::StatusOr<uint64_t>)> done;
  };
  struct PendingTransfer {
    uint64_t transferee;
    absl::Time deadline;
    Done done;
  };

  // False once stopping: the closure will not run.
  bool Enqueue(std::function<void()> fn);
  void Loop();
  void HandleReady();
  void TryProposals();
  void TryReads(absl::Time now);
  void ExpireWaiters(absl::Time now);
  void FailAll(const absl::Status& st);

  const Options opts_;
  common::Clock* const clock_;
  const Callbacks cb_;
  raft::Random random_;
  std::unique_ptr<raft::RawNode> raw_;  // raft thread only

  absl::Mutex mu_;
  std::vector<std::function<void()>> inbox_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  bool started_ = false;

  // Raft thread only.
  std::deque<PendingProposal> proposals_;
  std::vector<PendingRead> reads_waiting_;
  std::map<std::string, std::vector<PendingRead>> reads_in_flight_;
  absl::Time reads_sent_at_;
  uint64_t read_seq_ = 0;
  std::vector<PendingTransfer> transfers_;

  std::atomic<uint64_t> lead_{0};
  std::atomic<uint64_t> term_{0};
  std::atomic<uint64_t> commit_{0};
  std::atomic<uint64_t> last_index_{0};
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_RAFT_NODE_H_
