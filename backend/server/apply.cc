// EtcdServer's apply thread: committed entries in log order through the
// Applier (applier.h) into one LevelDB batch per group of entries; conf
// changes; install snapshot (both ends); log compaction.
#include "absl/strings/str_cat.h"
#include "backend/server/etcd_server.h"
#include "backend/server/snapshot.h"
#include "backend/storage/schema.h"
#include "common/errors.h"
#include "common/etcd_metrics.h"
#include "common/logging.h"

namespace synod::server {

using common::EtcdError;
using common::Err;

namespace {

// Entries applied per LevelDB batch (group commit).
constexpr size_t kMaxApplyBatch = 1024;
// Entries kept in the log behind a compaction for slow followers (etcd's
// SnapshotCatchUpEntries), at most --snapshot-count.
constexpr uint64_t kCatchUpEntries = 5000;
constexpr size_t kSnapshotChunkBytes = 1 << 20;

// Keys that belong to this member alone and never travel in a snapshot:
// the Raft log ("R...") and the member's own IDs.
bool LocalOnlyKey(absl::string_view k) {
  return (!k.empty() && k[0] == storage::kRaftPrefix) || k == storage::kMetaIds;
}

}  // namespace

void EtcdServer::ApplyLoop() {
  while (true) {
    std::deque<ApplyItem> items;
    {
      absl::MutexLock l(&apply_mu_);
      // Through the clock, with no deadline: a FakeClock then knows when
      // the apply thread is idle (see FakeClock::Advance).
      clock_->AwaitWithDeadline(&apply_mu_, absl::Condition(
          +[](EtcdServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->apply_mu_) {
            return s->stopping_ || s->removed_ || !s->apply_queue_.empty();
          },
          this), absl::InfiniteFuture());
      // Left-over entries are in the durable log: a restart replays them.
      // A removed member applies nothing more.
      if (stopping_ || removed_) break;
      items.swap(apply_queue_);
    }
    std::vector<raft::Entry> entries;
    for (ApplyItem& item : items) {
      if (!item.snapshot.empty()) {
        if (!entries.empty()) ApplyEntries(entries);
        entries.clear();
        absl::Status st = RestoreSnapshot(item.snapshot);
        if (!st.ok()) SYNOD_LOG(FATAL) << "installing snapshot failed: " << st;
        // Reads waiting for an index the snapshot covers may go now.
        reads_->Release(applied_index_.load());
      }
      for (raft::Entry& e : item.entries) {
        entries.push_back(std::move(e));
        if (entries.size() >= kMaxApplyBatch) {
          ApplyEntries(entries);
          entries.clear();
        }
      }
    }
    if (!entries.empty()) ApplyEntries(entries);
  }
}

void EtcdServer::ApplyEntries(std::vector<raft::Entry>& entries) {
  std::vector<std::pair<Done, absl::Status>> completions;
  std::vector<Done> conf_dones;
  uint64_t last = applied_index_.load();
  const uint64_t first_applied = last;
  const uint64_t auth_revision = auth_->Revision();
  size_t applied = 0;
  bool removed_self = false;
  for (raft::Entry& e : entries) {
    if (e.index <= last) continue;  // replayed after a restart or snapshot
    last = e.index;
    ++applied;
    if (e.type == raft::EntryType::kConfChange) {
      ApplyConfChangeEntry(e, &conf_dones);
      if (membership_.IsRemoved(member_id_)) removed_self = true;
      continue;
    }
    if (e.data.empty()) continue;  // a new leader's empty entry
    synodpb::Request req;
    if (!req.ParseFromString(e.data)) StopOnUndecodable(e, "request");
    std::optional<WaitRegistry::Waiter> w;
    if (req.proposer() == member_id_ && req.id() != 0) w = waiters_.Take(req.id());
    bool raise_nospace = false;
    const absl::Time apply_start = clock_->Now();
    absl::Status st = applier_->Apply(req, w.has_value() ? w->resp : nullptr,
                                      e.index, &raise_nospace);
    // etcd's slowApplies: a request whose apply took over its
    // warnApplyDuration (100 ms).
    if (clock_->Now() - apply_start > absl::Milliseconds(100)) {
      common::GetEtcdMetrics().slow_apply->Inc();
    }
    if (raise_nospace) {
      // As etcd: the ErrNoSpace answer goes out once the alarm is applied,
      // so a client that saw it finds the alarm in `alarm list`.
      Done answer;
      if (w.has_value()) {
        answer = [done = std::move(w->done), st](absl::Status) { done(st); };
      }
      RaiseAlarm(member_id_, etcdserverpb::NOSPACE, std::move(answer));
    } else if (w.has_value()) {
      completions.emplace_back(std::move(w->done), st);
    }
  }
  if (last == first_applied) return;

  std::vector<mvccpb::Event> events;
  const int64_t batch_bytes =
      static_cast<int64_t>(kv_->batch()->ApproximateSize());
  const absl::Time commit_start = clock_->Now();
  // Not synced: the entries are durable in the Raft log (on a quorum), and
  // a restart replays them from the applied index.
  absl::Status st = kv_->Commit(last, &events, /*sync=*/false);
  commit_seconds_->Observe(absl::ToDoubleSeconds(clock_->Now() - commit_start));
  proposals_committed_->Inc(applied);
  if (!st.ok()) {
    // The state on disk is unknown: never guess, stop.
    SYNOD_LOG(FATAL) << "write of applied batch failed: " << st;
  }
  applied_index_ = last;
  // The size scan lists the data dir, so it runs at most every 100 ms or
  // when the quota is near; in between, written bytes are added.
  db_size_ += batch_bytes;
  const absl::Time now = clock_->Now();
  if (now - last_size_check_ >= absl::Milliseconds(100) ||
      db_size_.load() > config_.quota_backend_bytes / 10 * 9) {
    last_size_check_ = now;
    db_size_ = backend_->DiskSizeBytes();
  }
  if (!events.empty()) watchable_->Notify(events, kv_->Rev());
  // Watchers whose permission was revoked are canceled before the change
  // is acknowledged.
  if (auth_->Revision() != auth_revision) NotifyAuthListeners();
  for (auto& [done, result] : completions) done(result);
  for (auto& done : conf_dones) done(absl::OkStatus());
  reads_->Release(last);  // linearizable reads whose ReadIndex is applied
  MaybeCompactLog();
  if (removed_self) {
    // etcd stops a member removed from the cluster.
    SYNOD_LOG(WARNING) << "this member (" << absl::StrCat(absl::Hex(member_id_))
                       << ") was removed from the cluster; shutting down";
    {
      absl::MutexLock l(&apply_mu_);
      removed_ = true;
    }
    if (config_.on_removed) config_.on_removed();
  }
}

void EtcdServer::ApplyConfChangeEntry(const raft::Entry& e,
                                      std::vector<Done>* dones) {
  auto cc = raft::DecodeConfChange(e.data);
  if (!cc.ok()) StopOnUndecodable(e, "conf change");
  synodpb::Request req;
  if (!cc->context.empty() && !req.ParseFromString(cc->context)) {
    StopOnUndecodable(e, "conf change context");
  }
  synodpb::Member m = req.member_attributes();
  m.set_id(cc->node_id);
  storage::Batch* b = kv_->batch();
  switch (cc->type) {
    case raft::ConfChangeType::kAddNode: {
      auto cur = membership_.Get(cc->node_id);
      if (cur.has_value() && cur->is_learner()) {
        membership_.Promote(cc->node_id, b);
      } else {
        m.set_is_learner(false);
        membership_.Add(m, b);
      }
      break;
    }
    case raft::ConfChangeType::kAddLearnerNode:
      m.set_is_learner(true);
      membership_.Add(m, b);
      break;
    case raft::ConfChangeType::kRemoveNode:
      membership_.Remove(cc->node_id, b);
      break;
    case raft::ConfChangeType::kUpdateNode:
      membership_.SetPeerUrls(
          cc->node_id, {m.peer_urls().begin(), m.peer_urls().end()}, b);
      break;
  }
  RefreshLearner();
  SYNOD_LOG(INFO) << "applied conf change at index " << e.index << ": "
                  << raft::ConfChangeTypeName(cc->type) << " member "
                  << absl::StrCat(absl::Hex(cc->node_id));
  if (req.proposer() == member_id_ && req.id() != 0) {
    std::optional<WaitRegistry::Waiter> w = waiters_.Take(req.id());
    if (w.has_value()) dones->push_back(std::move(w->done));
  }
}

void EtcdServer::MaybeCompactLog() {
  const uint64_t applied = applied_index_.load();
  const uint64_t count = static_cast<uint64_t>(std::max<int64_t>(config_.snapshot_count, 1));
  if (applied - last_log_compact_ < count) return;
  last_log_compact_ = applied;
  const uint64_t keep = std::min(kCatchUpEntries, count);
  if (applied <= keep) return;
  // The raft thread's compaction write is synced, which also makes this
  // thread's earlier (unsynced) apply batches durable: LevelDB has one log.
  raft_->CompactLog(applied - keep);
}

absl::Status EtcdServer::SnapshotSource(
    const std::function<bool(std::string)>& emit) {
  auto it = backend_->NewIterator();  // a consistent LevelDB snapshot
  std::string chunk;
  for (it->Seek(""); it->Valid(); it->Next()) {
    if (LocalOnlyKey(it->key())) continue;
    PutVarint32(&chunk, static_cast<uint32_t>(it->key().size()));
    chunk.append(it->key().data(), it->key().size());
    PutVarint32(&chunk, static_cast<uint32_t>(it->value().size()));
    chunk.append(it->value().data(), it->value().size());
    if (chunk.size() >= kSnapshotChunkBytes) {
      if (!emit(std::move(chunk))) return absl::UnavailableError("peer gone");
      chunk.clear();
    }
  }
  if (!it->status().ok()) return it->status();
  if (!chunk.empty() && !emit(std::move(chunk))) {
    return absl::UnavailableError("peer gone");
  }
  return absl::OkStatus();
}

absl::Status EtcdServer::ReceiveSnapshot(
    const raft::Message& m, const std::vector<std::string>& chunks) {
  // Validate the stream before handing the MsgSnap to Raft.
  for (const std::string& c : chunks) {
    absl::string_view in = c;
    while (!in.empty()) {
      uint32_t kl, vl;
      if (!GetVarint32(&in, &kl) || in.size() < kl) {
        return absl::DataLossError("corrupt snapshot chunk");
      }
      in.remove_prefix(kl);
      if (!GetVarint32(&in, &vl) || in.size() < vl) {
        return absl::DataLossError("corrupt snapshot chunk");
      }
      in.remove_prefix(vl);
    }
  }
  {
    absl::MutexLock l(&snap_mu_);
    received_snap_index_ = m.snapshot.metadata.index;
    received_snap_ = chunks;
  }
  SYNOD_LOG(INFO) << "received snapshot at index " << m.snapshot.metadata.index
                  << " from " << absl::StrCat(absl::Hex(m.from));
  raft_->Step(m);
  return absl::OkStatus();
}

absl::Status EtcdServer::RestoreSnapshot(const raft::Snapshot& snap) {
  std::vector<std::string> chunks;
  {
    absl::MutexLock l(&snap_mu_);
    if (received_snap_index_ != snap.metadata.index) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no state received for the snapshot at index ", snap.metadata.index));
    }
    chunks.swap(received_snap_);
    received_snap_index_ = 0;
  }
  // Replace every replicated key in one atomic batch.
  storage::Batch b;
  {
    auto it = backend_->NewIterator();
    for (it->Seek(""); it->Valid(); it->Next()) {
      if (!LocalOnlyKey(it->key())) b.Delete(it->key());
    }
    if (!it->status().ok()) return it->status();
  }
  for (const std::string& c : chunks) {
    absl::string_view in = c;
    while (!in.empty()) {
      uint32_t kl, vl;
      GetVarint32(&in, &kl);
      absl::string_view k = in.substr(0, kl);
      in.remove_prefix(kl);
      GetVarint32(&in, &vl);
      if (!LocalOnlyKey(k)) b.Put(k, in.substr(0, vl));
      in.remove_prefix(vl);
    }
  }
  absl::Status st = backend_->Write(&b, /*sync=*/true);
  if (!st.ok()) return st;
  st = kv_->Reload();
  if (!st.ok()) return st;
  lessor_->Clear();
  st = lessor_->Restore(backend_.get(), kv_->LeasedKeys());
  if (!st.ok()) return st;
  st = membership_.Load(backend_.get());
  if (!st.ok()) return st;
  st = alarms_.Load(backend_.get());
  if (!st.ok()) return st;
  const uint64_t auth_revision = auth_->Revision();
  st = auth_->Reload();
  if (!st.ok()) return st;
  if (auth_->Revision() != auth_revision) NotifyAuthListeners();
  for (const synodpb::Member& m : membership_.Members()) {
    if (m.id() != member_id_) {
      transport_->AddPeer(m.id(), {m.peer_urls().begin(), m.peer_urls().end()});
    }
  }
  RefreshLearner();
  applied_index_ = kv_->AppliedIndex();
  last_log_compact_ = applied_index_.load();
  // Watchers resume from the new history at their own revisions.
  watchable_->ResyncAll();
  SYNOD_LOG(INFO) << "installed snapshot at index " << snap.metadata.index
                  << ": applied index " << applied_index_.load()
                  << ", revision " << kv_->Rev();
  return absl::OkStatus();
}

}  // namespace synod::server
