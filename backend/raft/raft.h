// Raft: the consensus state machine of one node (the Raft paper, Ongaro's
// thesis). Deterministic: its only inputs are Tick(), Step(message) and the
// seeded Random it is given; its outputs are the outbox, the log and the
// hard state, which RawNode packages into a Ready.
//
// Role state is a std::variant (ScyllaDB raft's habit): followers keep
// nothing extra, candidates keep their tally, leaders keep per-follower
// progress, pending ReadIndex requests, a leadership transfer and the index
// of the last conf change proposed.
//
// Membership (thesis §4.1, one server at a time, etcd raft 3.4): voters count
// towards every quorum (commit, votes, check-quorum, ReadIndex); learners are
// replicated to but never counted and never campaign. The application
// applies committed kConfChange entries through ApplyConfChange; raft applies
// them by itself only at bootstrap and when it installs a snapshot.
// Thread-safety: none. Use it through RawNode from one thread.
#ifndef SYNOD_BACKEND_RAFT_RAFT_H_
#define SYNOD_BACKEND_RAFT_RAFT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "backend/raft/progress.h"
#include "backend/raft/raft_log.h"
#include "backend/raft/random.h"
#include "backend/raft/storage.h"
#include "backend/raft/types.h"

namespace synod::raft {

struct Config {
  uint64_t id = kNone;
  // The initial voters and learners, this node included in one of them.
  // Used only when the storage's InitialState().conf_state is empty (a fresh
  // storage); otherwise that conf state is the membership and these are
  // ignored. How they are used depends on `bootstrap`:
  //  - false (etcd 3.4's raft.Config.peers, used by the unit tests): they
  //    become the membership in memory only; nothing is written to the log.
  //  - true (etcd's RawNode.Bootstrap / StartNode, what a server uses for a
  //    new cluster): on an empty storage (LastIndex() == 0) the node becomes
  //    a follower in term 1 and its log gets one kConfChange entry per voter
  //    (kAddNode) then per learner (kAddLearnerNode), term 1, indexes 1..n,
  //    all committed and already applied to the membership. The first Ready
  //    carries them in `entries` and `committed_entries` (the application
  //    then calls ApplyConfChange for them, which is idempotent), so a node
  //    that later replays the log from index 1 learns the first membership.
  // Both empty with an empty conf state: a node joining an existing cluster.
  // It knows no voters, never campaigns and learns the membership from the
  // leader's entries or snapshot.
  std::vector<uint64_t> peers;
  std::vector<uint64_t> learners;
  bool bootstrap = false;
  // Followers start an election after a random [election_tick,
  // 2*election_tick) ticks without hearing from a leader (§5.2).
  int election_tick = 10;
  // A leader sends heartbeats every heartbeat_tick ticks.
  // REQUIRES: 0 < heartbeat_tick < election_tick.
  int heartbeat_tick = 1;
  // Not owned; must outlive the node. Holds what the node persisted.
  const LogStorage* storage = nullptr;
  // Not owned; must outlive the node. Seeds the election timeouts.
  Random* random = nullptr;
  // The last entry the application applied before a restart.
  uint64_t applied = 0;
  // Data bytes per MsgApp (at least one entry is always sent).
  uint64_t max_size_per_msg = 1 << 20;
  // MsgApps pipelined to a follower in replicate state.
  size_t max_inflight_msgs = 256;
  // Thesis §9.6: a pre-vote round before incrementing the term.
  bool pre_vote = false;
  // Thesis §6.2: a leader steps down when it has not heard from a quorum for
  // an election timeout; followers ignore votes while they hear from one.
  bool check_quorum = false;

  // Errors: InvalidArgument naming the bad field.
  absl::Status Validate() const;
};

// What the leader knows about one member (Status::progress).
struct ProgressStatus {
  uint64_t match = 0;
  uint64_t next = 0;
  std::string state;  // "StateProbe", "StateReplicate" or "StateSnapshot"
  uint64_t pending_snapshot = 0;
  bool is_learner = false;
  bool recent_active = false;
};

// A snapshot of the node's state for the application (etcd's raft.Status).
struct Status {
  uint64_t id = kNone;
  HardState hard_state;
  SoftState soft_state;
  uint64_t applied = 0;
  ConfState conf_state;
  // Leader only (empty otherwise): every voter and learner, self included.
  std::map<uint64_t, ProgressStatus> progress;
  uint64_t lead_transferee = kNone;
};

// The context of a MsgVote sent on a leadership transfer (thesis §3.10);
// such a vote overrides the check-quorum lease.
inline constexpr char kCampaignTransfer[] = "CampaignTransfer";

// The message of the FailedPrecondition returned for a proposal, ReadIndex or
// transfer request that cannot reach a leader.
inline constexpr char kErrProposalDropped[] = "raft proposal dropped";

class Raft {
 public:
  // REQUIRES: config.Validate().ok().
  explicit Raft(const Config& config);

  void Tick();
  // Errors: FailedPrecondition "raft proposal dropped" for a proposal (or
  // ReadIndex) that has no leader to go to.
  absl::Status Step(const Message& m);

  // Called by RawNode::Advance once entries up to `index` are durable.
  void OnPersisted();

  // Applies one committed membership change (see RawNode::ApplyConfChange)
  // and returns the new membership.
  ConfState ApplyConfChange(const ConfChange& cc);
  ConfState conf_state() const { return ConfState{voters_, learners_}; }
  Status GetStatus() const;
  // Whether this node may campaign: it is a voter (etcd's promotable()).
  bool Promotable() const { return IsVoter(id_); }

  uint64_t id() const { return id_; }
  uint64_t term() const { return term_; }
  uint64_t vote() const { return vote_; }
  uint64_t lead() const { return lead_; }
  Role role() const;
  HardState hard_state() const { return {term_, vote_, log_.committed()}; }
  SoftState soft_state() const { return {lead_, role()}; }
  const RaftLog& log() const { return log_; }
  RaftLog& mutable_log() { return log_; }
  std::vector<Message> TakeMessages();
  std::vector<ReadState> TakeReadStates();
  bool HasMessagesOrReadStates() const {
    return !msgs_.empty() || !read_states_.empty();
  }
  // Leader only: the progress of `id`, or nullptr.
  const Progress* TEST_progress(uint64_t id) const;
  uint64_t TEST_lead_transferee() const;
  int TEST_randomized_election_timeout() const {
    return randomized_election_timeout_;
  }

 private:
  struct FollowerState {};
  struct CandidateState {
    bool pre = false;
    std::map<uint64_t, bool> votes;
  };
  // A ReadIndex request waiting for a quorum of heartbeat acks (§6.4).
  struct ReadRequest {
    uint64_t index;
    uint64_t from;
    std::string ctx;
    std::map<uint64_t, bool> acks;
  };
  struct LeaderState {
    std::map<uint64_t, Progress> progress;
    std::deque<ReadRequest> reads;
    // ReadIndex requests received before an entry of this term committed.
    std::vector<Message> reads_before_commit;
    uint64_t lead_transferee = kNone;
    // Index of the last conf change appended; a conf change proposed while
    // this is above the applied index is replaced by an empty entry.
    uint64_t pending_conf_index = 0;
  };

  // Role transitions (§5.2, thesis §9.6).
  void Reset(uint64_t term);
  void BecomeFollower(uint64_t term, uint64_t lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Campaign(bool pre, bool transfer);
  void Hup(bool transfer);
  void ResetRandomizedElectionTimeout();
  bool PastElectionTimeout() const {
    return election_elapsed_ >= randomized_election_timeout_;
  }
  bool IsVoter(uint64_t id) const;
  bool IsLearner(uint64_t id) const;
  // Etcd's RawNode.Bootstrap: see Config::bootstrap.
  void Bootstrap(const std::vector<uint64_t>& voters,
                 const std::vector<uint64_t>& learners);
  // Installs a leader's snapshot (§7); false if it is stale or already in
  // the log (then only commit moves).
  bool Restore(const Snapshot& snap);
  void HandleSnapshot(const Message& m);

  void TickElection();
  void TickHeartbeat();
  void HandleVoteRequest(const Message& m);

  absl::Status StepFollower(const Message& m);
  absl::Status StepCandidate(CandidateState& c, const Message& m);
  absl::Status StepLeader(LeaderState& l, const Message& m);

  // Follower side of AppendEntries and heartbeats (§5.3).
  void HandleAppendEntries(const Message& m);
  void HandleHeartbeat(const Message& m);

  // Leader side (raft_leader.cc).
  void AppendEntries(LeaderState& l, std::vector<Entry> ents);
  bool SendAppend(LeaderState& l, uint64_t to, bool send_if_empty);
  bool SendSnapshot(Progress& pr, uint64_t to);
  void BroadcastAppend(LeaderState& l);
  void SendHeartbeat(LeaderState& l, uint64_t to, const std::string& ctx);
  void BroadcastHeartbeat(LeaderState& l, const std::string& ctx);
  bool MaybeCommit(LeaderState& l);
  void HandleAppendResponse(LeaderState& l, const Message& m);
  void HandleHeartbeatResponse(LeaderState& l, const Message& m);
  void HandleReadIndex(LeaderState& l, const Message& m);
  void RespondToRead(uint64_t from, uint64_t index, const std::string& ctx);
  void ReleaseReadsBeforeCommit(LeaderState& l);
  void HandleTransferLeader(LeaderState& l, const Message& m);
  void HandleSnapStatus(LeaderState& l, const Message& m);
  void HandleUnreachable(LeaderState& l, const Message& m);
  void HandlePropose(LeaderState& l, const Message& m);
  // The leader's part of a membership change (etcd's switchToConfig).
  void AfterConfChangeAsLeader(LeaderState& l, uint64_t added);
  Progress NewProgress(bool is_learner) const;
  void SendTimeoutNow(uint64_t to);
  bool QuorumActive(LeaderState& l);
  bool CommittedEntryInCurrentTerm() const {
    return log_.TermOrZero(log_.committed()) == term_;
  }

  void Send(Message m);

  const uint64_t id_;
  std::vector<uint64_t> voters_;    // sorted
  std::vector<uint64_t> learners_;  // sorted, disjoint from voters_
  const int election_timeout_;
  const int heartbeat_timeout_;
  const uint64_t max_size_per_msg_;
  const size_t max_inflight_;
  const bool pre_vote_;
  const bool check_quorum_;
  Random* const random_;

  uint64_t term_ = 0;
  uint64_t vote_ = kNone;
  uint64_t lead_ = kNone;
  RaftLog log_;
  std::variant<FollowerState, CandidateState, LeaderState> state_;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;

  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
};

}  // namespace synod::raft

#endif  // SYNOD_BACKEND_RAFT_RAFT_H_
