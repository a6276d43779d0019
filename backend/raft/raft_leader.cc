// Raft: the leader role. Log replication with flow control (§5.3), commit by
// quorum of the current term only (§5.4.2), snapshots for followers behind
// the compacted log (§7), heartbeats, check-quorum (thesis §6.2), ReadIndex
// (thesis §6.4) and leadership transfer (§3.10).
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "backend/raft/raft.h"

namespace synod::raft {

namespace {
[[noreturn]] void Fatal(const std::string& msg) {
  fprintf(stderr, "raft: FATAL %s\n", msg.c_str());
  abort();
}
}  // namespace

const Progress* Raft::TEST_progress(uint64_t id) const {
  const auto* l = std::get_if<LeaderState>(&state_);
  if (l == nullptr) return nullptr;
  auto it = l->progress.find(id);
  return it == l->progress.end() ? nullptr : &it->second;
}

uint64_t Raft::TEST_lead_transferee() const {
  const auto* l = std::get_if<LeaderState>(&state_);
  return l == nullptr ? kNone : l->lead_transferee;
}

void Raft::TickHeartbeat() {
  auto& l = std::get<LeaderState>(state_);
  heartbeat_elapsed_++;
  election_elapsed_++;
  if (election_elapsed_ >= election_timeout_) {
    election_elapsed_ = 0;
    // Thesis §6.2: "a leader steps down if an election timeout elapses
    // without a successful round of heartbeats to a majority of its
    // cluster".
    if (check_quorum_ && !QuorumActive(l)) {
      BecomeFollower(term_, kNone);
      return;
    }
    // Thesis §3.10: abort a transfer that did not finish within an election
    // timeout, so that clients are served again.
    l.lead_transferee = kNone;
  }
  if (heartbeat_elapsed_ >= heartbeat_timeout_) {
    heartbeat_elapsed_ = 0;
    // §5.2: "Leaders send periodic heartbeats ... to all followers in order
    // to maintain their authority".
    BroadcastHeartbeat(l, "");
  }
}

bool Raft::QuorumActive(LeaderState& l) {
  // Learners are never counted.
  std::map<uint64_t, bool> active;
  for (auto& [id, pr] : l.progress) {
    if (id == id_ || pr.recent_active) active[id] = true;
    if (id != id_) pr.recent_active = false;
  }
  return TallyVotes(voters_, active) == VoteResult::kWon;
}

// ------------------------------------------------------------ replication

void Raft::AppendEntries(LeaderState& l, std::vector<Entry> ents) {
  // §5.3: "The leader appends the command to its log as a new entry".
  uint64_t index = log_.LastIndex();
  for (Entry& e : ents) {
    e.term = term_;
    e.index = ++index;
  }
  log_.Append(ents);
  BroadcastAppend(l);
}

bool Raft::SendAppend(LeaderState& l, uint64_t to, bool send_if_empty) {
  Progress& pr = l.progress.at(to);
  if (pr.IsPaused()) return false;
  std::optional<uint64_t> prev_term = log_.Term(pr.next - 1);
  absl::StatusOr<std::vector<Entry>> ents =
      log_.EntriesFrom(pr.next, max_size_per_msg_);
  if ((!ents.ok() || ents->empty()) && !send_if_empty) return false;
  // §7: the entries the follower needs were compacted away.
  if (!prev_term.has_value() || !ents.ok()) return SendSnapshot(pr, to);
  Message m;
  m.type = MessageType::kApp;
  m.to = to;
  m.index = pr.next - 1;
  m.log_term = *prev_term;
  m.entries = std::move(*ents);
  m.commit = log_.committed();
  pr.SentEntries(m.entries.empty() ? 0 : m.entries.back().index);
  Send(std::move(m));
  return true;
}

bool Raft::SendSnapshot(Progress& pr, uint64_t to) {
  // Only to a follower known to be alive: a snapshot is expensive.
  if (!pr.recent_active) return false;
  absl::StatusOr<Snapshot> snap = log_.GetSnapshot();
  if (!snap.ok()) {
    // Being built: try again on a later heartbeat response.
    if (absl::IsUnavailable(snap.status())) return false;
    Fatal(snap.status().ToString());
  }
  if (snap->empty()) Fatal("need a non-empty snapshot");
  pr.BecomeSnapshot(snap->metadata.index);
  Message m;
  m.type = MessageType::kSnap;
  m.to = to;
  m.snapshot = std::move(*snap);
  Send(std::move(m));
  return true;
}

void Raft::BroadcastAppend(LeaderState& l) {
  for (auto& [p, pr] : l.progress) {
    if (p != id_) SendAppend(l, p, /*send_if_empty=*/true);
  }
}

void Raft::SendHeartbeat(LeaderState& l, uint64_t to, const std::string& ctx) {
  // The follower may not have the leader's whole log yet: tell it to commit
  // only what it is known to hold.
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  m.commit = std::min(l.progress.at(to).match, log_.committed());
  m.context = ctx;
  Send(std::move(m));
}

void Raft::BroadcastHeartbeat(LeaderState& l, const std::string& ctx) {
  for (auto& [p, pr] : l.progress) {
    if (p != id_) SendHeartbeat(l, p, ctx);
  }
}

bool Raft::MaybeCommit(LeaderState& l) {
  // §5.3: "A log entry is committed once the leader that created the entry
  // has replicated it on a majority of the servers"; §5.4.2: only entries of
  // the current term are committed by counting replicas.
  std::vector<uint64_t> matches;
  for (const auto& [id, pr] : l.progress) {
    if (!pr.is_learner) matches.push_back(pr.match);
  }
  if (!log_.MaybeCommit(QuorumIndex(std::move(matches)), term_)) return false;
  ReleaseReadsBeforeCommit(l);
  return true;
}

void Raft::HandleAppendResponse(LeaderState& l, const Message& m) {
  auto it = l.progress.find(m.from);
  if (it == l.progress.end()) return;
  Progress& pr = it->second;
  pr.recent_active = true;
  if (m.reject) {
    // §5.3: "After a rejection, the leader decrements nextIndex and retries
    // the AppendEntries RPC"; the follower's hint skips a whole term.
    uint64_t next_probe = m.reject_hint;
    if (m.log_term > 0) {
      while (next_probe > 0 && log_.TermOrZero(next_probe) > m.log_term) {
        next_probe--;
      }
    }
    if (pr.MaybeDecrTo(m.index, next_probe)) {
      if (pr.state == Progress::State::kReplicate) pr.BecomeProbe();
      SendAppend(l, m.from, /*send_if_empty=*/true);
    }
    return;
  }
  bool was_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index)) return;
  switch (pr.state) {
    case Progress::State::kProbe:
      pr.BecomeReplicate();
      break;
    case Progress::State::kSnapshot:
      // The follower has the snapshot (or caught up past it otherwise).
      if (pr.match >= pr.pending_snapshot) {
        pr.BecomeProbe();
        pr.BecomeReplicate();
      }
      break;
    case Progress::State::kReplicate:
      pr.inflights.FreeLE(m.index);
      break;
  }
  if (MaybeCommit(l)) {
    BroadcastAppend(l);
  } else if (was_paused) {
    SendAppend(l, m.from, /*send_if_empty=*/true);
  }
  // Pipelining: fill the follower's window of in-flight MsgApps.
  while (SendAppend(l, m.from, /*send_if_empty=*/false)) {
  }
  if (m.from == l.lead_transferee && pr.match == log_.LastIndex()) {
    SendTimeoutNow(m.from);
  }
}

void Raft::HandleHeartbeatResponse(LeaderState& l, const Message& m) {
  auto it = l.progress.find(m.from);
  if (it == l.progress.end()) return;
  Progress& pr = it->second;
  pr.recent_active = true;
  pr.probe_sent = false;
  // A full window with a live follower: a MsgApp was probably lost.
  if (pr.state == Progress::State::kReplicate && pr.inflights.Full()) {
    pr.inflights.FreeFirstOne();
  }
  if (pr.match < log_.LastIndex()) SendAppend(l, m.from, true);

  if (m.context.empty()) return;
  // Thesis §6.4 step 3: the read index is safe once a majority acknowledged
  // the heartbeat round that carried its ctx (and, in order, every earlier
  // request).
  auto req =
      std::find_if(l.reads.begin(), l.reads.end(),
                   [&](const ReadRequest& r) { return r.ctx == m.context; });
  if (req == l.reads.end()) return;
  req->acks[m.from] = true;
  if (TallyVotes(voters_, req->acks) != VoteResult::kWon) return;
  auto end = req + 1;
  for (auto r = l.reads.begin(); r != end; ++r) {
    RespondToRead(r->from, r->index, r->ctx);
  }
  l.reads.erase(l.reads.begin(), end);
}

// --------------------------------------------------------------- reads

void Raft::HandleReadIndex(LeaderState& l, const Message& m) {
  if (voters_.size() == 1 && IsVoter(id_)) {
    RespondToRead(m.from, log_.committed(), m.context);
    return;
  }
  // Thesis §6.4 step 1: the leader's commit index is only known to be
  // current once an entry of its term has committed; wait for that.
  if (!CommittedEntryInCurrentTerm()) {
    l.reads_before_commit.push_back(m);
    return;
  }
  // Step 2 and 3: record the commit index as the read index, then confirm
  // leadership with a round of heartbeats.
  ReadRequest r{log_.committed(), m.from, m.context, {}};
  r.acks[id_] = true;
  l.reads.push_back(std::move(r));
  BroadcastHeartbeat(l, m.context);
}

void Raft::ReleaseReadsBeforeCommit(LeaderState& l) {
  if (l.reads_before_commit.empty() || !CommittedEntryInCurrentTerm()) return;
  std::vector<Message> pending;
  pending.swap(l.reads_before_commit);
  for (const Message& m : pending) HandleReadIndex(l, m);
}

void Raft::RespondToRead(uint64_t from, uint64_t index,
                         const std::string& ctx) {
  if (from == kNone || from == id_) {
    read_states_.push_back(ReadState{index, ctx});
    return;
  }
  Message r;
  r.type = MessageType::kReadIndexResp;
  r.to = from;
  r.index = index;
  r.context = ctx;
  Send(std::move(r));
}

// ------------------------------------------------------------- transfer

void Raft::HandleTransferLeader(LeaderState& l, const Message& m) {
  uint64_t transferee = m.from;
  if (transferee == id_ || !IsVoter(transferee)) return;
  if (l.lead_transferee == transferee) return;  // already in progress
  // Thesis §3.10: stop accepting requests, bring the target up to date, then
  // tell it to start an election at once.
  l.lead_transferee = transferee;
  election_elapsed_ = 0;
  if (l.progress.at(transferee).match == log_.LastIndex()) {
    SendTimeoutNow(transferee);
  } else {
    SendAppend(l, transferee, /*send_if_empty=*/true);
  }
}

void Raft::HandleSnapStatus(LeaderState& l, const Message& m) {
  auto it = l.progress.find(m.from);
  if (it == l.progress.end()) return;
  Progress& pr = it->second;
  if (pr.state != Progress::State::kSnapshot) return;
  // On failure, forget the snapshot: probe from match again.
  if (m.reject) pr.pending_snapshot = 0;
  pr.BecomeProbe();
  // Wait for the follower's MsgAppResp (success) or the next heartbeat
  // response (failure) before sending again.
  pr.probe_sent = true;
}

void Raft::HandleUnreachable(LeaderState& l, const Message& m) {
  auto it = l.progress.find(m.from);
  if (it == l.progress.end()) return;
  // Pipelined MsgApps were probably lost: probe again.
  if (it->second.state == Progress::State::kReplicate) {
    it->second.BecomeProbe();
  }
}

void Raft::HandlePropose(LeaderState& l, const Message& m) {
  std::vector<Entry> ents = m.entries;
  uint64_t last = log_.LastIndex();
  for (size_t i = 0; i < ents.size(); ++i) {
    if (ents[i].type != EntryType::kConfChange) continue;
    if (l.pending_conf_index > log_.applied()) {
      // Thesis §4.1: one change at a time. Like etcd, the proposal becomes
      // an empty normal entry (it is not refused).
      ents[i] = Entry{};
    } else {
      l.pending_conf_index = last + i + 1;
    }
  }
  AppendEntries(l, std::move(ents));
}

void Raft::SendTimeoutNow(uint64_t to) {
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  Send(std::move(m));
}

// ----------------------------------------------------------------- step

absl::Status Raft::StepLeader(LeaderState& l, const Message& m) {
  switch (m.type) {
    case MessageType::kProp: {
      if (l.lead_transferee != kNone) {
        return absl::FailedPreconditionError(kErrProposalDropped);
      }
      HandlePropose(l, m);
      return absl::OkStatus();
    }
    case MessageType::kReadIndex:
      HandleReadIndex(l, m);
      return absl::OkStatus();
    case MessageType::kAppResp:
      HandleAppendResponse(l, m);
      return absl::OkStatus();
    case MessageType::kHeartbeatResp:
      HandleHeartbeatResponse(l, m);
      return absl::OkStatus();
    case MessageType::kTransferLeader:
      HandleTransferLeader(l, m);
      return absl::OkStatus();
    case MessageType::kSnapStatus:
      HandleSnapStatus(l, m);
      return absl::OkStatus();
    case MessageType::kUnreachable:
      HandleUnreachable(l, m);
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

}  // namespace synod::raft
