// EtcdServer's apply thread: committed entries in log order -> MVCC, lease
// and membership state, one LevelDB batch per group of entries; install
// snapshot (both ends); log compaction.
#include <signal.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "backend/server/etcd_server.h"
#include "backend/server/snapshot.h"
#include "backend/storage/schema.h"
#include "common/errors.h"
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
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](EtcdServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stopping_ || !s->apply_queue_.empty();
          },
          this));
      // Left-over entries are in the durable log: a restart replays them.
      if (stopping_) break;
      items.swap(apply_queue_);
    }
    std::vector<raft::Entry> entries;
    for (ApplyItem& item : items) {
      if (!item.snapshot.empty()) {
        if (!entries.empty()) ApplyEntries(entries);
        entries.clear();
        absl::Status st = RestoreSnapshot(item.snapshot);
        if (!st.ok()) SYNOD_LOG(FATAL) << "installing snapshot failed: " << st;
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
    std::optional<Waiter> w;
    if (req.proposer() == member_id_ && req.id() != 0) w = TakeWaiter(req.id());
    bool raise_nospace = false;
    absl::Status st = Apply(req, w.has_value() ? w->resp : nullptr, e.index,
                            &raise_nospace);
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
  for (auto& [done, result] : completions) done(result);
  for (auto& done : conf_dones) done(absl::OkStatus());
  {
    // Release linearizable reads whose ReadIndex is now applied.
    absl::MutexLock l(&read_mu_);
    while (!reads_by_index_.empty() && reads_by_index_.begin()->first <= last) {
      Done d = std::move(reads_by_index_.begin()->second);
      reads_by_index_.erase(reads_by_index_.begin());
      read_queue_.push_back([d = std::move(d)] { d(absl::OkStatus()); });
    }
  }
  MaybeCompactLog();
  if (removed_self) {
    // etcd stops a member removed from the cluster.
    SYNOD_LOG(WARNING) << "this member (" << absl::StrCat(absl::Hex(member_id_))
                       << ") was removed from the cluster; shutting down";
    kill(getpid(), SIGTERM);
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
    std::optional<Waiter> w = TakeWaiter(req.id());
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

bool EtcdServer::WritesKeys(const synodpb::Request& req) {
  std::function<bool(const etcdserverpb::TxnRequest&)> txn_puts =
      [&](const etcdserverpb::TxnRequest& t) {
        for (const auto* ops : {&t.success(), &t.failure()}) {
          for (const auto& op : *ops) {
            if (op.has_request_put()) return true;
            if (op.has_request_txn() && txn_puts(op.request_txn())) return true;
          }
        }
        return false;
      };
  switch (req.op_case()) {
    case synodpb::Request::kPut:
    case synodpb::Request::kLeaseGrant:
      return true;
    case synodpb::Request::kTxn:
      return txn_puts(req.txn());
    default:
      return false;
  }
}

absl::Status EtcdServer::CheckAlarmsForApply(
    const synodpb::Request& req) const {
  // etcd's applierV3Corrupt: while a member is CORRUPT, the cluster applies
  // no KV or lease write (etcd lets DeleteRange through; we refuse it too).
  if (alarms_.Has(etcdserverpb::CORRUPT)) {
    switch (req.op_case()) {
      case synodpb::Request::kPut:
      case synodpb::Request::kDeleteRange:
      case synodpb::Request::kTxn:
      case synodpb::Request::kCompaction:
      case synodpb::Request::kLeaseGrant:
      case synodpb::Request::kLeaseRevoke:
        return Err(EtcdError::kCorrupt);
      default:
        break;
    }
  }
  // etcd's applierV3Capped: while NOSPACE is raised, nothing that adds data.
  if (alarms_.Has(etcdserverpb::NOSPACE) && WritesKeys(req)) {
    return Err(EtcdError::kNoSpace);
  }
  return absl::OkStatus();
}

void EtcdServer::StopOnUndecodable(const raft::Entry& e, const char* what) {
  // The log is the same on every member: a member that cannot decode an
  // entry cannot compute the state the others have, so it must not serve
  // one (etcd panics here too).
  SYNOD_LOG(FATAL) << "committed entry at index " << e.index << " (term "
                   << e.term << ", " << e.data.size()
                   << " bytes) does not decode as a " << what
                   << "; this member cannot apply its log and stops";
  std::abort();  // not reached: FATAL aborts
}

absl::Status EtcdServer::Apply(const synodpb::Request& req,
                               google::protobuf::Message* resp,
                               uint64_t index, bool* raise_nospace) {
  // Everything decided here comes from replicated state (the alarms), so
  // every member applies the same result.
  absl::Status st = CheckAlarmsForApply(req);
  if (!st.ok()) return st;
  st = ApplyOp(req, resp, index);
  // etcd's quotaApplierV3: the write is applied everywhere; a member over
  // its quota answers ErrNoSpace and raises NOSPACE for itself through Raft.
  // The answer differs between members, the state does not.
  if (st.ok() && config_.quota_backend_bytes > 0 && WritesKeys(req) &&
      !QuotaAvailable(req)) {
    st = Err(EtcdError::kNoSpace);
    if (!alarms_.Has(etcdserverpb::NOSPACE)) {  // etcd's rule
      SYNOD_LOG(WARNING) << "database space exceeded (" << db_size_.load()
                         << " bytes, quota " << config_.quota_backend_bytes
                         << ")";
      *raise_nospace = true;
    }
  }
  return st;
}

absl::Status EtcdServer::ApplyOp(const synodpb::Request& req,
                                 google::protobuf::Message* resp,
                                 uint64_t index) {
  // Internal proposals may pass no response; the ops still need one.
  auto out = [resp](auto* local) {
    using T = std::remove_pointer_t<decltype(local)>;
    return resp != nullptr ? static_cast<T*>(resp) : local;
  };
  switch (req.op_case()) {
    case synodpb::Request::kPut: {
      etcdserverpb::PutResponse local;
      auto txn = kv_->Write();
      return txn->Put(req.put(), out(&local));
    }
    case synodpb::Request::kDeleteRange: {
      etcdserverpb::DeleteRangeResponse local;
      auto txn = kv_->Write();
      return txn->DeleteRange(req.delete_range(), out(&local));
    }
    case synodpb::Request::kTxn: {
      etcdserverpb::TxnResponse local;
      auto txn = kv_->Write();
      return txn->Txn(req.txn(), out(&local));
    }
    case synodpb::Request::kCompaction: {
      // Compaction works on published state: commit what is staged first.
      if (kv_->StagedRev() != kv_->Rev()) {
        std::vector<mvccpb::Event> events;
        absl::Status st = kv_->Commit(index - 1, &events);
        if (!st.ok()) SYNOD_LOG(FATAL) << "write failed: " << st;
        watchable_->Notify(events, kv_->Rev());
      }
      absl::Status st = kv_->Compact(req.compaction().revision());
      if (st.ok() && resp != nullptr) {
        static_cast<etcdserverpb::CompactionResponse*>(resp)
            ->mutable_header()
            ->set_revision(kv_->Rev());
      }
      return st;
    }
    case synodpb::Request::kLeaseGrant: {
      auto ttl = lessor_->Grant(req.lease_grant().id(), req.lease_grant().ttl(),
                                kv_->batch());
      if (!ttl.ok()) return ttl.status();
      auto* r = static_cast<etcdserverpb::LeaseGrantResponse*>(resp);
      if (r != nullptr) {
        r->set_id(req.lease_grant().id());
        r->set_ttl(*ttl);
        r->mutable_header()->set_revision(kv_->StagedRev());
      }
      return absl::OkStatus();
    }
    case synodpb::Request::kLeaseRevoke: {
      absl::Status st = ApplyLeaseRevoke(req.lease_revoke().id());
      if (st.ok() && resp != nullptr) {
        static_cast<etcdserverpb::LeaseRevokeResponse*>(resp)
            ->mutable_header()
            ->set_revision(kv_->StagedRev());
      }
      return st;
    }
    case synodpb::Request::kAlarm: {
      etcdserverpb::AlarmResponse local;
      return ApplyAlarm(req.alarm(), out(&local));
    }
    case synodpb::Request::kLeaseCheckpoint:
      return lessor_->Checkpoint(req.lease_checkpoint().id(),
                                 req.lease_checkpoint().remaining_ttl(),
                                 kv_->batch());
    case synodpb::Request::kLeaseCheckpoints:
      for (const auto& cp : req.lease_checkpoints().checkpoints()) {
        absl::Status st =
            lessor_->Checkpoint(cp.id(), cp.remaining_ttl(), kv_->batch());
        if (!st.ok()) return st;
      }
      return absl::OkStatus();
    case synodpb::Request::kMemberAttributes: {
      const synodpb::Member& m = req.member_attributes();
      membership_.SetAttributes(
          m.id(), m.name(), {m.client_urls().begin(), m.client_urls().end()},
          kv_->batch());
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError("empty request");
  }
}

absl::Status EtcdServer::ApplyLeaseRevoke(int64_t id) {
  auto keys = lessor_->Revoke(id, kv_->batch());
  {
    absl::MutexLock l(&lease_mu_);
    revoking_.erase(id);
  }
  if (!keys.ok()) return keys.status();
  // All attached keys go in one revision.
  auto txn = kv_->Write();
  for (const std::string& k : *keys) txn->DeleteKey(k);
  return absl::OkStatus();
}

absl::Status EtcdServer::ApplyAlarm(const etcdserverpb::AlarmRequest& r,
                                    etcdserverpb::AlarmResponse* resp) {
  // Only the request decides: the proposer stamped the member id, so every
  // member applies the same change.
  switch (r.action()) {
    case etcdserverpb::AlarmRequest::GET:
      for (const auto& a : alarms_.Get(r.memberid(), r.alarm())) {
        *resp->add_alarms() = a;
      }
      break;
    case etcdserverpb::AlarmRequest::ACTIVATE: {
      auto m = alarms_.Activate(r.memberid(), r.alarm(), kv_->batch());
      if (m.has_value()) {
        *resp->add_alarms() = *m;
        SYNOD_LOG(WARNING) << "alarm " << etcdserverpb::AlarmType_Name(m->alarm())
                           << " raised for member "
                           << absl::StrCat(absl::Hex(m->memberid()));
      }
      break;
    }
    case etcdserverpb::AlarmRequest::DEACTIVATE:
      for (const auto& a :
           alarms_.Deactivate(r.memberid(), r.alarm(), kv_->batch())) {
        *resp->add_alarms() = a;
        SYNOD_LOG(INFO) << "alarm " << etcdserverpb::AlarmType_Name(a.alarm())
                        << " cleared for member "
                        << absl::StrCat(absl::Hex(a.memberid()));
      }
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

}  // namespace synod::server
