#include "backend/server/raft_node.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/errors.h"
#include "common/etcd_metrics.h"
#include "common/logging.h"

namespace synod::server {

using common::EtcdError;
using common::Err;

namespace {
// A ReadIndex round that got no answer (lost heartbeat, leader change) is
// retried after this long (etcd's readIndexRetryTime).
constexpr absl::Duration kReadRetry = absl::Milliseconds(500);
}  // namespace

RaftNode::RaftNode(Options options, Callbacks callbacks)
    : opts_(std::move(options)),
      clock_(opts_.clock != nullptr ? opts_.clock : common::RealClock::Get()),
      cb_(std::move(callbacks)),
      random_(opts_.seed) {}

RaftNode::~RaftNode() { Stop(); }

absl::Status RaftNode::Start() {
  raft::Config c;
  c.id = opts_.id;
  c.peers = opts_.bootstrap_voters;
  c.bootstrap = !opts_.bootstrap_voters.empty();
  c.election_tick = opts_.election_tick;
  c.heartbeat_tick = 1;
  c.storage = opts_.log;
  c.random = &random_;
  c.applied = opts_.applied;
  c.pre_vote = opts_.pre_vote;
  c.check_quorum = true;  // etcd always runs with check-quorum
  auto raw = raft::RawNode::Create(c);
  if (!raw.ok()) return raw.status();
  raw_ = std::move(*raw);
  // The only voter need not wait out an election timeout (etcd fast-forwards
  // its ticks likewise for a one-member cluster).
  const raft::ConfState cs = raw_->GetStatus().conf_state;
  if (cs.voters.size() == 1 && cs.voters[0] == opts_.id) raw_->Campaign();
  term_ = raw_->hard_state().term;
  commit_ = raw_->hard_state().commit;
  last_index_ = opts_.log->LastIndex();
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void RaftNode::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  FailAll(Err(EtcdError::kStopped));
}

bool RaftNode::Enqueue(std::function<void()> fn) {
  absl::MutexLock l(&mu_);
  if (stopping_) return false;
  inbox_.push_back(std::move(fn));
  return true;
}

void RaftNode::Propose(std::string data, absl::Time deadline, Done dropped) {
  auto p = std::make_shared<PendingProposal>();
  p->data = std::move(data);
  p->deadline = deadline;
  p->dropped = std::move(dropped);
  if (!Enqueue([this, p] { proposals_.push_back(std::move(*p)); })) {
    p->dropped(Err(EtcdError::kStopped));
  }
}

void RaftNode::ProposeConfChange(raft::ConfChange cc, absl::Time deadline,
                                 Done dropped) {
  auto p = std::make_shared<PendingProposal>();
  p->conf = true;
  p->cc = std::move(cc);
  p->deadline = deadline;
  p->dropped = std::move(dropped);
  if (!Enqueue([this, p] { proposals_.push_back(std::move(*p)); })) {
    p->dropped(Err(EtcdError::kStopped));
  }
}

void RaftNode::ReadIndex(absl::Time deadline,
                         std::function<void(absl::StatusOr<uint64_t>)> done) {
  auto r = std::make_shared<PendingRead>(PendingRead{deadline, std::move(done)});
  if (!Enqueue([this, r] { reads_waiting_.push_back(std::move(*r)); })) {
    r->done(Err(EtcdError::kStopped));
  }
}

void RaftNode::TransferLeadership(uint64_t transferee, absl::Time deadline,
                                  Done done) {
  auto t = std::make_shared<PendingTransfer>(
      PendingTransfer{transferee, deadline, std::move(done)});
  if (!Enqueue([this, t] {
        absl::Status st = raw_->TransferLeadership(t->transferee);
        if (!st.ok()) return t->done(Err(EtcdError::kNotLeader));
        transfers_.push_back(std::move(*t));
      })) {
    t->done(Err(EtcdError::kStopped));
  }
}

void RaftNode::Step(raft::Message m) {
  Enqueue([this, m = std::move(m)]() mutable {
    absl::Status st = raw_->Step(m);
    (void)st;  // a dropped forwarded proposal is the sender's to retry
  });
}

void RaftNode::ReportUnreachable(uint64_t id) {
  Enqueue([this, id] { raw_->ReportUnreachable(id); });
}

void RaftNode::ReportSnapshot(uint64_t id, bool ok) {
  Enqueue([this, id, ok] { raw_->ReportSnapshot(id, ok); });
}

void RaftNode::CompactLog(uint64_t index) {
  Enqueue([this, index]() mutable {
    // Never compact past what the core has persisted or beyond the log.
    index = std::min(index, opts_.log->LastIndex());
    const absl::Time start = absl::Now();
    absl::Status st = opts_.log->Compact(index);
    if (!st.ok()) SYNOD_LOG(FATAL) << "raft log compaction failed: " << st;
    // Synod's raft snapshot is this compaction (the state machine is the
    // backend itself, nothing is marshalled into a snap file): its synced
    // write is what etcd times as a snapshot save and its fsync.
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    common::GetEtcdMetrics().snap_save_total_seconds->Observe(seconds);
    common::GetEtcdMetrics().snap_fsync_seconds->Observe(seconds);
    SYNOD_LOG(INFO) << "compacted raft log to index " << index;
  });
}

raft::Status RaftNode::GetStatus() {
  absl::Mutex m;
  bool ready = false;
  raft::Status out;
  if (!Enqueue([&] {
        absl::MutexLock l(&m);
        out = raw_->GetStatus();
        ready = true;
      })) {
    return out;
  }
  absl::MutexLock l(&m);
  m.Await(absl::Condition(&ready));
  return out;
}

void RaftNode::FailAll(const absl::Status& st) {
  for (auto& p : proposals_) p.dropped(st);
  proposals_.clear();
  for (auto& r : reads_waiting_) r.done(st);
  reads_waiting_.clear();
  for (auto& [ctx, rs] : reads_in_flight_) {
    for (auto& r : rs) r.done(st);
  }
  reads_in_flight_.clear();
  for (auto& t : transfers_) t.done(st);
  transfers_.clear();
}

void RaftNode::TryProposals() {
  // Proposals wait while there is no leader (or a transfer is under way),
  // then enter the log in arrival order. Consecutive normal proposals go in
  // one MsgProp (up to kMaxProposalBatch entries or bytes), so that a burst
  // costs one MsgApp per follower, not one per request.
  constexpr size_t kMaxProposalBatch = 512;
  constexpr size_t kMaxProposalBatchBytes = 1 << 20;
  while (!proposals_.empty()) {
    if (proposals_.front().conf) {
      // A copy: a refused proposal stays queued for the next try.
      if (!raw_->ProposeConfChange(proposals_.front().cc).ok()) break;
      proposals_.pop_front();
      continue;
    }
    size_t n = 0;
    size_t bytes = 0;
    std::vector<std::string> batch;
    while (n < proposals_.size() && !proposals_[n].conf &&
           n < kMaxProposalBatch &&
           (n == 0 || bytes + proposals_[n].data.size() <= kMaxProposalBatchBytes)) {
      bytes += proposals_[n].data.size();
      batch.push_back(proposals_[n].data);  // copies: kept until accepted
      ++n;
    }
    if (!raw_->ProposeBatch(std::move(batch)).ok()) break;
    proposals_.erase(proposals_.begin(), proposals_.begin() + n);
  }
}

void RaftNode::TryReads(absl::Time now) {
  // Retry a round that got no answer.
  if (!reads_in_flight_.empty() && now - reads_sent_at_ >= kReadRetry) {
    common::GetEtcdMetrics().slow_read_indexes->Inc();  // etcd's slowReadIndex
    for (auto& [ctx, rs] : reads_in_flight_) {
      for (auto& r : rs) reads_waiting_.push_back(std::move(r));
    }
    reads_in_flight_.clear();
  }
  if (reads_waiting_.empty() || !reads_in_flight_.empty()) return;
  std::string ctx = absl::StrCat(opts_.id, ":", ++read_seq_);
  if (!raw_->ReadIndex(ctx).ok()) return;  // no leader yet: retry next tick
  reads_sent_at_ = now;
  reads_in_flight_[ctx] = std::move(reads_waiting_);
  reads_waiting_.clear();
}

void RaftNode::ExpireWaiters(absl::Time now) {
  for (auto it = proposals_.begin(); it != proposals_.end();) {
    if (it->deadline <= now) {
      it->dropped(Err(EtcdError::kTimeout));
      it = proposals_.erase(it);
    } else {
      ++it;
    }
  }
  auto expire = [&](std::vector<PendingRead>& rs) {
    std::vector<PendingRead> keep;
    for (auto& r : rs) {
      if (r.deadline <= now) {
        common::GetEtcdMetrics().read_indexes_failed->Inc();
        r.done(Err(EtcdError::kTimeout));
      } else {
        keep.push_back(std::move(r));
      }
    }
    rs.swap(keep);
  };
  expire(reads_waiting_);
  for (auto it = reads_in_flight_.begin(); it != reads_in_flight_.end();) {
    expire(it->second);
    if (it->second.empty()) {
      it = reads_in_flight_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<PendingTransfer> keep;
  for (auto& t : transfers_) {
    if (lead_.load() == t.transferee) {
      t.done(absl::OkStatus());
    } else if (t.deadline <= now) {
      t.done(Err(EtcdError::kTimeout));
    } else {
      keep.push_back(std::move(t));
    }
  }
  transfers_.swap(keep);
}

void RaftNode::HandleReady() {
  while (raw_->HasReady()) {
    raft::Ready rd = raw_->GetReady();
    if (rd.soft_state.has_value()) {
      const uint64_t old = lead_.exchange(rd.soft_state->lead);
      if (old != rd.soft_state->lead) {
        // etcd counts a change to a known leader (not the loss of one).
        if (rd.soft_state->lead != 0) {
          common::GetEtcdMetrics().leader_changes->Inc();
        }
        SYNOD_LOG(INFO) << absl::StrCat(absl::Hex(opts_.id)) << " sees leader "
                        << absl::StrCat(absl::Hex(rd.soft_state->lead))
                        << " at term " << raw_->hard_state().term;
        cb_.leader_changed(rd.soft_state->lead, raw_->hard_state().term);
      }
    }
    const bool leader = raw_->soft_state().role == raft::Role::kLeader;
    if (leader) opts_.transport->Send(std::move(rd.messages));
    // Committed entries are durable on a quorum already, so they may be
    // applied while this member's own write is in flight (etcd 3.4 hands
    // them to its apply loop before storage.Save too). A snapshot, and
    // conf changes, keep the strict order below.
    bool applied_early = false;
    if (rd.snapshot.empty() && !rd.committed_entries.empty() &&
        std::none_of(rd.committed_entries.begin(), rd.committed_entries.end(),
                     [](const raft::Entry& e) {
                       return e.type == raft::EntryType::kConfChange;
                     })) {
      cb_.apply(raft::Snapshot{}, rd.committed_entries);
      applied_early = true;
    }
    absl::Status st = opts_.log->Save(rd.hard_state, rd.entries, rd.snapshot);
    if (!st.ok()) {
      // The log on disk is unknown: never guess.
      SYNOD_LOG(FATAL) << "raft log write failed: " << st;
    }
    if (!leader) opts_.transport->Send(std::move(rd.messages));
    if (rd.hard_state.has_value()) {
      const uint64_t old_term = term_.exchange(rd.hard_state->term);
      commit_ = rd.hard_state->commit;
      if (old_term != rd.hard_state->term) {
        cb_.leader_changed(lead_.load(), rd.hard_state->term);
      }
    }
    last_index_ = opts_.log->LastIndex();

    // Conf changes take effect in the core when they are applied (Raft
    // thesis §4.1 applies them on append; etcd, and we, on commit). The
    // store remembers the index so a restart does not apply one twice.
    for (const raft::Entry& e : rd.committed_entries) {
      if (e.type != raft::EntryType::kConfChange) continue;
      if (e.index <= opts_.log->conf_index()) continue;
      auto cc = raft::DecodeConfChange(e.data);
      if (!cc.ok()) {
        // The same rule as the apply thread: a member that cannot decode a
        // committed entry stops (EtcdServer::StopOnUndecodable).
        SYNOD_LOG(FATAL) << "committed entry at index " << e.index << " (term "
                         << e.term << ", " << e.data.size()
                         << " bytes) does not decode as a conf change ("
                         << cc.status().message()
                         << "); this member cannot apply its log and stops";
      }
      raft::ConfState cs = raw_->ApplyConfChange(*cc);
      st = opts_.log->SetConfState(cs, e.index);
      if (!st.ok()) SYNOD_LOG(FATAL) << "conf state write failed: " << st;
      cb_.conf_changed(*cc, cs, e.index);
    }
    if (!applied_early &&
        (!rd.snapshot.empty() || !rd.committed_entries.empty())) {
      cb_.apply(rd.snapshot, rd.committed_entries);
    }
    for (const raft::ReadState& rs : rd.read_states) {
      auto it = reads_in_flight_.find(rs.request_ctx);
      if (it == reads_in_flight_.end()) continue;
      for (auto& r : it->second) r.done(rs.index);
      reads_in_flight_.erase(it);
    }
    raw_->Advance(rd);
  }
}

void RaftNode::Loop() {
  absl::Time next_tick = clock_->Now() + opts_.tick_interval;
  std::vector<std::function<void()>> batch;
  while (true) {
    {
      absl::MutexLock l(&mu_);
      clock_->AwaitWithDeadline(
          &mu_,
          absl::Condition(
              +[](RaftNode* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(n->mu_) {
                return n->stopping_ || !n->inbox_.empty();
              },
              this),
          next_tick);
      batch.swap(inbox_);
      if (stopping_) break;
    }
    for (auto& fn : batch) fn();
    batch.clear();
    const absl::Time now = clock_->Now();
    if (now >= next_tick) {
      raw_->Tick();
      next_tick += opts_.tick_interval;
      // After a stall (e.g. SIGSTOP) do not replay the missed ticks in a
      // burst: that would call an election at once.
      if (next_tick < now) next_tick = now + opts_.tick_interval;
      ExpireWaiters(now);
    }
    TryProposals();
    TryReads(now);
    HandleReady();
  }
  // Closures that arrived before Stop still run (their callbacks then fail
  // in FailAll), with the core alive.
  for (auto& fn : batch) fn();
  raw_.reset();
}

}  // namespace synod::server
