// Progress: what a leader knows about one follower's log (Figure 2
// "nextIndex[]" and "matchIndex[]"), plus the flow control that etcd's raft
// layers on top: a follower is probed one MsgApp at a time until its log
// matches, then replicated to with up to max_inflight pipelined MsgApps; a
// follower that needs compacted entries is sent a snapshot and paused until
// it acknowledges it (or the send fails).
// Thread-safety: none; owned by the leader's state.
#ifndef SYNOD_BACKEND_RAFT_PROGRESS_H_
#define SYNOD_BACKEND_RAFT_PROGRESS_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <vector>

namespace synod::raft {

// The last indexes of the MsgApps sent but not yet acknowledged.
class Inflights {
 public:
  explicit Inflights(size_t capacity) : capacity_(capacity) {}
  bool Full() const { return q_.size() >= capacity_; }
  size_t Count() const { return q_.size(); }
  // REQUIRES: !Full() and index > every index already added.
  void Add(uint64_t index) { q_.push_back(index); }
  // Frees every in-flight message up to and including `index`.
  void FreeLE(uint64_t index) {
    while (!q_.empty() && q_.front() <= index) q_.pop_front();
  }
  void FreeFirstOne() {
    if (!q_.empty()) q_.pop_front();
  }
  void Reset() { q_.clear(); }

 private:
  size_t capacity_;
  std::deque<uint64_t> q_;
};

class Progress {
 public:
  enum class State { kProbe, kReplicate, kSnapshot };

  Progress(uint64_t next, size_t max_inflight)
      : next(next), inflights(max_inflight) {}

  uint64_t match = 0;
  uint64_t next;
  State state = State::kProbe;
  // Probe: a MsgApp is out; wait for its answer or a heartbeat response.
  bool probe_sent = false;
  // Heard from since the last check-quorum round (thesis §6.2).
  bool recent_active = false;
  // Snapshot: the index of the snapshot being sent.
  uint64_t pending_snapshot = 0;
  // Replicated to but never counted in a quorum.
  bool is_learner = false;
  Inflights inflights;

  // From a snapshot state, next resumes after the snapshot if it was sent.
  void BecomeProbe();
  void BecomeReplicate();
  // A snapshot at `snapshot_index` is on its way; paused until it lands.
  void BecomeSnapshot(uint64_t snapshot_index);
  // The follower acknowledged entries up to n. Returns whether match moved.
  bool MaybeUpdate(uint64_t n);
  // The follower rejected a MsgApp whose prev index was `rejected`; it hints
  // that its log matches at most up to `hint`. Returns false if the
  // rejection is stale.
  bool MaybeDecrTo(uint64_t rejected, uint64_t hint);
  // Records a MsgApp sent whose last entry is `last` (0: no entries).
  void SentEntries(uint64_t last);
  bool IsPaused() const;
};

// The index a quorum of `matches` has reached: with n voters, the
// (n/2+1)-th largest match (§5.3, §5.4.2).
uint64_t QuorumIndex(std::vector<uint64_t> matches);

// etcd's names: "StateProbe", "StateReplicate", "StateSnapshot".
const char* ProgressStateName(Progress::State s);

enum class VoteResult { kPending, kWon, kLost };
// Tallies granted/rejected votes among `voters`.
VoteResult TallyVotes(const std::vector<uint64_t>& voters,
                      const std::map<uint64_t, bool>& votes);

}  // namespace synod::raft

#endif  // SYNOD_BACKEND_RAFT_PROGRESS_H_
