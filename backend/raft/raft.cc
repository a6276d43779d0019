// Raft: election (§5.2, §5.4.1, thesis §9.6), the follower and candidate
// roles, and the generic term rules of Figure 2. The leader role is in
// raft_leader.cc.
#include "backend/raft/raft.h"

#include <algorithm>

namespace synod::raft {

const char* MessageTypeName(MessageType t) {
  switch (t) {
    case MessageType::kHup:
      return "MsgHup";
    case MessageType::kVote:
      return "MsgVote";
    case MessageType::kVoteResp:
      return "MsgVoteResp";
    case MessageType::kPreVote:
      return "MsgPreVote";
    case MessageType::kPreVoteResp:
      return "MsgPreVoteResp";
    case MessageType::kApp:
      return "MsgApp";
    case MessageType::kAppResp:
      return "MsgAppResp";
    case MessageType::kHeartbeat:
      return "MsgHeartbeat";
    case MessageType::kHeartbeatResp:
      return "MsgHeartbeatResp";
    case MessageType::kProp:
      return "MsgProp";
    case MessageType::kReadIndex:
      return "MsgReadIndex";
    case MessageType::kReadIndexResp:
      return "MsgReadIndexResp";
    case MessageType::kTimeoutNow:
      return "MsgTimeoutNow";
    case MessageType::kTransferLeader:
      return "MsgTransferLeader";
    case MessageType::kSnap:
      return "MsgSnap";
    case MessageType::kSnapStatus:
      return "MsgSnapStatus";
    case MessageType::kUnreachable:
      return "MsgUnreachable";
  }
  return "MsgUnknown";
}

const char* RoleName(Role r) {
  switch (r) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "unknown";
}

absl::Status Config::Validate() const {
  if (id == kNone) return absl::InvalidArgumentError("raft: id must not be 0");
  if ((!peers.empty() || !learners.empty()) &&
      std::find(peers.begin(), peers.end(), id) == peers.end() &&
      std::find(learners.begin(), learners.end(), id) == learners.end()) {
    return absl::InvalidArgumentError(
        "raft: peers or learners must include id");
  }
  if (heartbeat_tick <= 0) {
    return absl::InvalidArgumentError("raft: heartbeat_tick must be > 0");
  }
  if (election_tick <= heartbeat_tick) {
    return absl::InvalidArgumentError(
        "raft: election_tick must be greater than heartbeat_tick");
  }
  if (storage == nullptr) {
    return absl::InvalidArgumentError("raft: storage must not be null");
  }
  if (random == nullptr) {
    return absl::InvalidArgumentError("raft: random must not be null");
  }
  if (max_inflight_msgs == 0) {
    return absl::InvalidArgumentError("raft: max_inflight_msgs must be > 0");
  }
  return absl::OkStatus();
}

namespace {
std::vector<uint64_t> Sorted(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}
}  // namespace

Raft::Raft(const Config& c)
    : id_(c.id),
      election_timeout_(c.election_tick),
      heartbeat_timeout_(c.heartbeat_tick),
      max_size_per_msg_(c.max_size_per_msg),
      max_inflight_(c.max_inflight_msgs),
      pre_vote_(c.pre_vote),
      check_quorum_(c.check_quorum),
      random_(c.random),
      log_(c.storage) {
  InitialState init = c.storage->InitialState();
  const HardState& hs = init.hard_state;
  std::vector<uint64_t> voters = Sorted(c.peers);
  std::vector<uint64_t> learners = Sorted(c.learners);
  // A learner listed as a voter too is a voter.
  learners.erase(std::remove_if(learners.begin(), learners.end(),
                                [&](uint64_t id) {
                                  return std::binary_search(voters.begin(),
                                                            voters.end(), id);
                                }),
                 learners.end());
  bool bootstrap = false;
  if (!init.conf_state.empty()) {
    voters_ = Sorted(init.conf_state.voters);
    learners_ = Sorted(init.conf_state.learners);
  } else if (!c.bootstrap) {
    voters_ = voters;
    learners_ = learners;
  } else {
    bootstrap =
        c.storage->LastIndex() == 0 && (!voters.empty() || !learners.empty());
  }
  log_.CommitTo(hs.commit);
  if (c.applied > log_.applied()) {
    log_.AppliedTo(std::min(c.applied, log_.committed()));
  }
  // Figure 2: currentTerm and votedFor survive restarts.
  BecomeFollower(hs.term, kNone);
  vote_ = hs.vote;
  if (bootstrap) Bootstrap(voters, learners);
}

Role Raft::role() const {
  if (std::holds_alternative<LeaderState>(state_)) return Role::kLeader;
  if (const auto* c = std::get_if<CandidateState>(&state_)) {
    return c->pre ? Role::kPreCandidate : Role::kCandidate;
  }
  return Role::kFollower;
}

bool Raft::IsVoter(uint64_t id) const {
  return std::binary_search(voters_.begin(), voters_.end(), id);
}

bool Raft::IsLearner(uint64_t id) const {
  return std::binary_search(learners_.begin(), learners_.end(), id);
}

std::vector<Message> Raft::TakeMessages() {
  std::vector<Message> out;
  out.swap(msgs_);
  return out;
}

std::vector<ReadState> Raft::TakeReadStates() {
  std::vector<ReadState> out;
  out.swap(read_states_);
  return out;
}

void Raft::Send(Message m) {
  m.from = id_;
  // Vote messages carry their term explicitly (a pre-vote asks for term+1);
  // proposals and read requests are forwarded as local messages (term 0).
  if (m.type != MessageType::kVote && m.type != MessageType::kPreVote &&
      m.type != MessageType::kVoteResp && m.type != MessageType::kPreVoteResp &&
      m.type != MessageType::kProp && m.type != MessageType::kReadIndex) {
    m.term = term_;
  }
  msgs_.push_back(std::move(m));
}

// ---------------------------------------------------------------- roles

void Raft::ResetRandomizedElectionTimeout() {
  // §5.2: "election timeouts are chosen randomly from a fixed interval".
  randomized_election_timeout_ =
      election_timeout_ + static_cast<int>(random_->Uniform(election_timeout_));
}

void Raft::Reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNone;
  }
  lead_ = kNone;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
}

void Raft::BecomeFollower(uint64_t term, uint64_t lead) {
  Reset(term);
  lead_ = lead;
  state_ = FollowerState{};
}

void Raft::BecomePreCandidate() {
  // Thesis §9.6: a pre-candidate changes neither its term nor its vote.
  lead_ = kNone;
  state_ = CandidateState{/*pre=*/true, {}};
}

void Raft::BecomeCandidate() {
  // §5.2: "a follower increments its current term and transitions to
  // candidate state. It then votes for itself".
  Reset(term_ + 1);
  vote_ = id_;
  state_ = CandidateState{/*pre=*/false, {}};
}

void Raft::BecomeLeader() {
  Reset(term_);
  lead_ = id_;
  LeaderState l;
  uint64_t last = log_.LastIndex();
  // Any unapplied entry may be a conf change: allow a new one only once
  // everything up to here is applied (etcd's pendingConfIndex).
  l.pending_conf_index = last;
  for (uint64_t p : learners_) {
    Progress pr(last + 1, max_inflight_);
    pr.is_learner = true;
    l.progress.emplace(p, std::move(pr));
  }
  for (uint64_t p : voters_) {
    // §5.3: "the leader initializes all nextIndex values to the index just
    // after the last one in its log".
    auto it = l.progress.emplace(p, Progress(last + 1, max_inflight_)).first;
    if (p == id_) {
      // The leader counts only what it has made durable (thesis §10.2.1).
      it->second.match = log_.StableLastIndex();
      it->second.BecomeReplicate();
      it->second.recent_active = true;
    }
  }
  state_ = std::move(l);
  // Thesis §6.4 / §8 of the paper: "each leader commit a blank no-op entry
  // into the log at the start of its term".
  AppendEntries(std::get<LeaderState>(state_), {Entry{}});
}

void Raft::Hup(bool transfer) {
  if (role() == Role::kLeader) return;
  if (!Promotable()) return;
  Campaign(pre_vote_ && !transfer, transfer);
}

void Raft::Campaign(bool pre, bool transfer) {
  uint64_t vote_term;
  MessageType type;
  if (pre) {
    BecomePreCandidate();
    type = MessageType::kPreVote;
    vote_term = term_ + 1;  // the term it would campaign for
  } else {
    BecomeCandidate();
    type = MessageType::kVote;
    vote_term = term_;
  }
  auto& c = std::get<CandidateState>(state_);
  c.votes[id_] = true;
  if (TallyVotes(voters_, c.votes) == VoteResult::kWon) {
    // A single-voter cluster wins at once.
    if (pre) {
      Campaign(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (uint64_t p : voters_) {
    if (p == id_) continue;
    Message m;
    m.type = type;
    m.to = p;
    m.term = vote_term;
    m.index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    if (transfer) m.context = kCampaignTransfer;
    Send(std::move(m));
  }
}

// ---------------------------------------------------------------- ticks

void Raft::Tick() {
  if (std::holds_alternative<LeaderState>(state_)) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  election_elapsed_++;
  // §5.2: "If a follower receives no communication over a period of time
  // called the election timeout, then it ... begins an election".
  // A learner or a node outside the membership never campaigns.
  if (Promotable() && PastElectionTimeout()) {
    election_elapsed_ = 0;
    Message m;
    m.type = MessageType::kHup;
    m.from = id_;
    (void)Step(m);
  }
}

// ---------------------------------------------------------------- step

absl::Status Raft::Step(const Message& m) {
  // Figure 2, "Rules for all servers": "If RPC request or response contains
  // term T > currentTerm: set currentTerm = T, convert to follower".
  if (m.term == 0) {
    // Local message.
  } else if (m.term > term_) {
    if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
      bool force = m.context == kCampaignTransfer;
      bool in_lease = check_quorum_ && lead_ != kNone &&
                      election_elapsed_ < election_timeout_;
      // Thesis §4.2.3/§6.2: a server that heard from a leader within the
      // minimum election timeout neither updates its term nor votes.
      if (!force && in_lease) return absl::OkStatus();
    }
    if (m.type == MessageType::kPreVote) {
      // A pre-vote never changes the term (thesis §9.6).
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // The granted pre-vote carries the future term; ours rises only once
      // the pre-vote is won.
    } else if (m.type == MessageType::kApp ||
               m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnap) {
      BecomeFollower(m.term, m.from);
    } else {
      BecomeFollower(m.term, kNone);
    }
  } else if (m.term < term_) {
    if ((check_quorum_ || pre_vote_) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kApp)) {
      // A stale leader, probably cut off: tell it the newer term so it steps
      // down (with check-quorum or pre-vote a partitioned node's term no
      // longer forces the others' up, so it must hear it from us).
      Message r;
      r.type = MessageType::kAppResp;
      r.to = m.from;
      Send(std::move(r));
    } else if (m.type == MessageType::kPreVote) {
      Message r;
      r.type = MessageType::kPreVoteResp;
      r.to = m.from;
      r.term = term_;
      r.reject = true;
      Send(std::move(r));
    }
    // §5.1: "If a server receives a request with a stale term number, it
    // rejects the request" (stale responses are simply ignored).
    return absl::OkStatus();
  }

  switch (m.type) {
    case MessageType::kHup:
      Hup(/*transfer=*/false);
      return absl::OkStatus();
    case MessageType::kVote:
    case MessageType::kPreVote:
      HandleVoteRequest(m);
      return absl::OkStatus();
    default:
      break;
  }
  if (auto* l = std::get_if<LeaderState>(&state_)) return StepLeader(*l, m);
  if (auto* c = std::get_if<CandidateState>(&state_)) {
    return StepCandidate(*c, m);
  }
  return StepFollower(m);
}

void Raft::HandleVoteRequest(const Message& m) {
  // §5.2: "Each server will vote for at most one candidate in a given term,
  // on a first-come-first-served basis". A pre-vote for a later term binds
  // nothing, so it may always be granted.
  bool can_vote = vote_ == m.from || (vote_ == kNone && lead_ == kNone) ||
                  (m.type == MessageType::kPreVote && m.term > term_);
  Message r;
  r.type = m.type == MessageType::kVote ? MessageType::kVoteResp
                                        : MessageType::kPreVoteResp;
  r.to = m.from;
  // §5.4.1: "the voter denies its vote if its own log is more up-to-date
  // than that of the candidate".
  if (can_vote && log_.IsUpToDate(m.index, m.log_term)) {
    r.term = m.term;
    Send(r);
    if (m.type == MessageType::kVote) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
    Send(r);
  }
}

absl::Status Raft::StepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::kProp:
    case MessageType::kReadIndex:
    case MessageType::kTransferLeader: {
      // Followers forward client requests to the leader (§8).
      if (lead_ == kNone) {
        return absl::FailedPreconditionError(kErrProposalDropped);
      }
      Message f = m;
      f.to = lead_;
      if (m.type == MessageType::kTransferLeader) {
        // Keep the transferee as `from`.
        f.term = term_;
        msgs_.push_back(std::move(f));
      } else {
        Send(std::move(f));
      }
      return absl::OkStatus();
    }
    case MessageType::kApp:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleAppendEntries(m);
      return absl::OkStatus();
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleHeartbeat(m);
      return absl::OkStatus();
    case MessageType::kSnap:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleSnapshot(m);
      return absl::OkStatus();
    case MessageType::kTimeoutNow:
      // Thesis §3.10: the transferee starts an election at once, without a
      // pre-vote and past the check-quorum lease.
      Hup(/*transfer=*/true);
      return absl::OkStatus();
    case MessageType::kReadIndexResp:
      read_states_.push_back(ReadState{m.index, m.context});
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

absl::Status Raft::StepCandidate(CandidateState& c, const Message& m) {
  MessageType my_resp =
      c.pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  switch (m.type) {
    case MessageType::kProp:
    case MessageType::kReadIndex:
    case MessageType::kTransferLeader:
      return absl::FailedPreconditionError(kErrProposalDropped);
    case MessageType::kApp:
      // §5.2: "If the leader's term ... is at least as large as the
      // candidate's current term, then the candidate recognizes the leader
      // as legitimate and returns to follower state".
      BecomeFollower(m.term, m.from);
      HandleAppendEntries(m);
      return absl::OkStatus();
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      return absl::OkStatus();
    case MessageType::kSnap:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      return absl::OkStatus();
    default:
      break;
  }
  if (m.type != my_resp) return absl::OkStatus();
  c.votes.emplace(m.from, !m.reject);
  switch (TallyVotes(voters_, c.votes)) {
    case VoteResult::kWon:
      // §5.2: "A candidate wins an election if it receives votes from a
      // majority of the servers in the full cluster for the same term".
      if (c.pre) {
        Campaign(/*pre=*/false, /*transfer=*/false);
      } else {
        BecomeLeader();
      }
      break;
    case VoteResult::kLost:
      BecomeFollower(term_, kNone);
      break;
    case VoteResult::kPending:
      break;
  }
  return absl::OkStatus();
}

// ------------------------------------------------- follower log handling

void Raft::HandleAppendEntries(const Message& m) {
  Message r;
  r.type = MessageType::kAppResp;
  r.to = m.from;
  if (m.index < log_.committed()) {
    // Already committed here: acknowledge what we have.
    r.index = log_.committed();
    Send(std::move(r));
    return;
  }
  // §5.3: "If a follower's log does not contain an entry at prevLogIndex
  // whose term matches prevLogTerm, it rejects"; otherwise it deletes
  // conflicting entries and appends the new ones.
  if (std::optional<uint64_t> last =
          log_.MaybeAppend(m.index, m.log_term, m.commit, m.entries)) {
    r.index = *last;
    Send(std::move(r));
    return;
  }
  // Hint the leader where our log may match: the last index at or below
  // m.index whose term is <= m.log_term (§5.3's optimization, etcd's
  // findConflictByTerm).
  uint64_t hint = std::min(m.index, log_.LastIndex());
  while (hint > 0 && log_.TermOrZero(hint) > m.log_term) hint--;
  r.index = m.index;
  r.reject = true;
  r.reject_hint = hint;
  r.log_term = log_.TermOrZero(hint);
  Send(std::move(r));
}

void Raft::HandleHeartbeat(const Message& m) {
  log_.CommitTo(m.commit);
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  r.context = m.context;
  Send(std::move(r));
}

void Raft::OnPersisted() {
  auto* l = std::get_if<LeaderState>(&state_);
  if (l == nullptr) return;
  auto it = l->progress.find(id_);
  if (it == l->progress.end()) return;
  // Thesis §10.2.1: the leader's own log counts towards a quorum once it is
  // durable, like any follower's.
  if (it->second.MaybeUpdate(log_.StableLastIndex()) && MaybeCommit(*l)) {
    BroadcastAppend(*l);
  }
}

}  // namespace synod::raft
