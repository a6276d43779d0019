// Raft: the consensus state machine of one node (the Raft paper, Ongaro's
// thesis). Deterministic: its only inputs are Tick(), Step(message) and the
// seeded Random it is given; its outputs are the outbox, the log and the
// hard state, which RawNode packages into a Ready.
//
// Role state is a std::variant (ScyllaDB raft's habit): followers keep
// nothing extra, candidates keep their tally, leaders keep per-follower
// progress, pending ReadIndex requests and a leadership transfer.
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
  // Every voter of the cluster, this node included.
  std::vector<uint64_t> peers;
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

// The context of a MsgVote sent on a leadership transfer (thesis §3.10);
// such a vote overrides the check-quorum lease.
inline constexpr char kCampaignTransfer[] = "CampaignTransfer";

// The message of the FailedPrecondition returned for a proposal, ReadIndex or
// transfer request that cannot reach a leader.
inline constexpr char kErrProposalDropped[] = "raft: proposal dropped";

class Raft {
 public:
  // REQUIRES: config.Validate().ok().
  explicit Raft(const Config& config);

  void Tick();
  // Errors: FailedPrecondition "raft: proposal dropped" for a proposal (or
  // ReadIndex) that has no leader to go to.
  absl::Status Step(const Message& m);

  // Called by RawNode::Advance once entries up to `index` are durable.
  void OnPersisted();

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
  void SendTimeoutNow(uint64_t to);
  bool QuorumActive(LeaderState& l);
  bool CommittedEntryInCurrentTerm() const {
    return log_.TermOrZero(log_.committed()) == term_;
  }

  void Send(Message m);

  const uint64_t id_;
  const std::vector<uint64_t> peers_;  // sorted voters, self included
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
