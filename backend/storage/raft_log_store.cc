#include "backend/storage/raft_log_store.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backend/storage/schema.h"
#include "common/etcd_metrics.h"

namespace synod::storage {

namespace {

constexpr char kHardStateKey[] = "R/h";
constexpr char kSnapKey[] = "R/s";
constexpr char kConfKey[] = "R/c";
constexpr char kEntryPrefix[] = "R/e";

std::string EncodeHardState(const raft::HardState& hs) {
  return EncodeU64(hs.term) + EncodeU64(hs.vote) + EncodeU64(hs.commit);
}

std::string EncodeEntry(const raft::Entry& e) {
  std::string v = EncodeU64(e.term);
  v.push_back(static_cast<char>(e.type));
  v.append(e.data);
  return v;
}

absl::StatusOr<raft::Entry> DecodeEntry(uint64_t index, absl::string_view v) {
  if (v.size() < 9) {
    return absl::DataLossError(absl::StrCat("corrupt raft entry ", index));
  }
  raft::Entry e;
  e.index = index;
  e.term = GetBigEndian64(v);
  e.type = static_cast<raft::EntryType>(v[8]);
  e.data = std::string(v.substr(9));
  return e;
}

std::string EncodeConf(const raft::ConfState& cs, uint64_t index) {
  std::string v = EncodeU64(index) + EncodeU64(cs.voters.size());
  for (uint64_t id : cs.voters) v += EncodeU64(id);
  for (uint64_t id : cs.learners) v += EncodeU64(id);
  return v;
}

}  // namespace

std::string RaftEntryKey(uint64_t index) {
  std::string k(kEntryPrefix);
  PutBigEndian64(&k, index);
  return k;
}

absl::StatusOr<std::unique_ptr<RaftLogStore>> RaftLogStore::Open(
    Backend* backend) {
  std::unique_ptr<RaftLogStore> s(new RaftLogStore(backend));
  absl::Status st = s->Load();
  if (!st.ok()) return st;
  return s;
}

absl::Status RaftLogStore::Load() {
  absl::MutexLock l(&mu_);
  auto hs = backend_->Get(kHardStateKey);
  if (!hs.ok()) return hs.status();
  if (hs->has_value()) {
    if ((*hs)->size() != 24) return absl::DataLossError("corrupt hard state");
    hard_state_.term = GetBigEndian64(**hs);
    hard_state_.vote = GetBigEndian64((*hs)->substr(8));
    hard_state_.commit = GetBigEndian64((*hs)->substr(16));
  }
  auto snap = backend_->Get(kSnapKey);
  if (!snap.ok()) return snap.status();
  if (snap->has_value()) {
    if ((*snap)->size() != 16) return absl::DataLossError("corrupt snapshot point");
    snap_index_ = GetBigEndian64(**snap);
    snap_term_ = GetBigEndian64((*snap)->substr(8));
  }
  auto conf = backend_->Get(kConfKey);
  if (!conf.ok()) return conf.status();
  if (conf->has_value()) {
    const std::string& v = **conf;
    if (v.size() < 16 || v.size() % 8 != 0) {
      return absl::DataLossError("corrupt conf state");
    }
    conf_index_ = GetBigEndian64(v);
    const uint64_t voters = GetBigEndian64(v.substr(8));
    const uint64_t n = v.size() / 8 - 2;
    if (voters > n) return absl::DataLossError("corrupt conf state");
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t id = GetBigEndian64(v.substr(16 + 8 * i));
      (i < voters ? conf_state_.voters : conf_state_.learners).push_back(id);
    }
  }
  auto it = backend_->NewIterator();
  uint64_t expect = snap_index_ + 1;
  for (it->Seek(RaftEntryKey(expect)); it->Valid(); it->Next()) {
    absl::string_view k = it->key();
    if (k.size() != 11 || k.substr(0, 3) != kEntryPrefix) break;
    const uint64_t index = GetBigEndian64(k.substr(3));
    if (index != expect) {
      return absl::DataLossError(
          absl::StrCat("gap in the raft log: want ", expect, ", found ", index));
    }
    if (it->value().size() < 9) {
      return absl::DataLossError(absl::StrCat("corrupt raft entry ", index));
    }
    terms_.push_back(GetBigEndian64(it->value()));
    ++expect;
  }
  return it->status();
}

raft::InitialState RaftLogStore::GetInitialState() const {
  absl::MutexLock l(&mu_);
  raft::InitialState s;
  s.hard_state = hard_state_;
  s.conf_state = conf_state_;
  return s;
}

uint64_t RaftLogStore::FirstIndex() const {
  absl::MutexLock l(&mu_);
  return snap_index_ + 1;
}

uint64_t RaftLogStore::LastIndex() const {
  absl::MutexLock l(&mu_);
  return snap_index_ + terms_.size();
}

uint64_t RaftLogStore::TermLocked(uint64_t i) const {
  if (i == snap_index_) return snap_term_;
  return terms_[i - snap_index_ - 1];
}

absl::StatusOr<uint64_t> RaftLogStore::Term(uint64_t i) const {
  absl::MutexLock l(&mu_);
  if (i < snap_index_) {
    return absl::OutOfRangeError(raft::kErrCompacted);
  }
  if (i > snap_index_ + terms_.size()) {
    return absl::OutOfRangeError(raft::kErrUnavailable);
  }
  return TermLocked(i);
}

absl::StatusOr<std::vector<raft::Entry>> RaftLogStore::Entries(
    uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  {
    absl::MutexLock l(&mu_);
    if (lo <= snap_index_) return absl::OutOfRangeError(raft::kErrCompacted);
    if (hi > snap_index_ + terms_.size() + 1) {
      return absl::OutOfRangeError(raft::kErrUnavailable);
    }
  }
  std::vector<raft::Entry> out;
  if (lo >= hi) return out;
  uint64_t size = 0;
  auto it = backend_->NewIterator();
  uint64_t expect = lo;
  for (it->Seek(RaftEntryKey(lo)); it->Valid() && expect < hi; it->Next()) {
    absl::string_view k = it->key();
    if (k.size() != 11 || k.substr(0, 3) != kEntryPrefix ||
        GetBigEndian64(k.substr(3)) != expect) {
      // Compacted or truncated under us by the raft thread.
      return absl::OutOfRangeError(raft::kErrUnavailable);
    }
    auto e = DecodeEntry(expect, it->value());
    if (!e.ok()) return e.status();
    size += e->data.size();
    if (!out.empty() && size > max_bytes) break;
    out.push_back(std::move(*e));
    ++expect;
  }
  if (!it->status().ok()) return it->status();
  if (out.empty()) return absl::OutOfRangeError(raft::kErrUnavailable);
  return out;
}

absl::StatusOr<raft::Snapshot> RaftLogStore::Snapshot() const {
  absl::MutexLock l(&mu_);
  raft::Snapshot s;
  s.metadata.index = snap_index_;
  s.metadata.term = snap_term_;
  s.metadata.conf_state = conf_state_;
  return s;
}

absl::Status RaftLogStore::Save(const std::optional<raft::HardState>& hs,
                                const std::vector<raft::Entry>& entries,
                                const raft::Snapshot& snapshot) {
  absl::MutexLock l(&mu_);
  Batch b;
  // etcd's MustSync: new entries, a snapshot, or a new term or vote must be
  // durable before anything depending on them is sent; a commit index that
  // only moved need not be (it is re-learned from the leader).
  const bool must_sync =
      !entries.empty() || !snapshot.empty() ||
      (hs.has_value() &&
       (hs->term != hard_state_.term || hs->vote != hard_state_.vote));
  // The log as the batch leaves it: compacted up to `snap_index`, entries up
  // to `last` kept, then `entries`. Memory follows only once it is written.
  const bool install =
      !snapshot.empty() && snapshot.metadata.index > snap_index_;
  uint64_t snap_index = snap_index_;
  uint64_t last = snap_index_ + terms_.size();
  if (install) {
    // Install snapshot: the whole old log goes.
    for (uint64_t i = snap_index_ + 1; i <= last; ++i) {
      b.Delete(RaftEntryKey(i));
    }
    snap_index = last = snapshot.metadata.index;
    b.Put(kSnapKey, EncodeU64(snap_index) + EncodeU64(snapshot.metadata.term));
    b.Put(kConfKey, EncodeConf(snapshot.metadata.conf_state, snap_index));
  }
  if (hs.has_value()) b.Put(kHardStateKey, EncodeHardState(*hs));
  const uint64_t first = entries.empty() ? last + 1 : entries.front().index;
  if (!entries.empty()) {
    if (first <= snap_index) {
      return absl::InternalError(
          absl::StrCat("append at ", first, " below snapshot ", snap_index));
    }
    if (first > last + 1) {
      return absl::InternalError(
          absl::StrCat("append at ", first, " leaves a gap after ", last));
    }
    // Drop the conflicting suffix.
    for (uint64_t i = first; i <= last; ++i) b.Delete(RaftEntryKey(i));
    for (const raft::Entry& e : entries) {
      b.Put(RaftEntryKey(e.index), EncodeEntry(e));
    }
  }
  if (b.Count() == 0) return absl::OkStatus();
  // etcd's WAL metrics: the bytes written, and the latency of a synced
  // write (the Raft log's fsync).
  const common::EtcdMetrics& metrics = common::GetEtcdMetrics();
  metrics.wal_write_bytes->Add(static_cast<double>(b.ApproximateSize()));
  const absl::Time start = absl::Now();
  absl::Status st = backend_->Write(&b, must_sync);
  if (!st.ok()) return st;
  if (must_sync) {
    metrics.wal_fsync_seconds->Observe(
        absl::ToDoubleSeconds(absl::Now() - start));
  }
  if (install) {
    terms_.clear();
    snap_index_ = snap_index;
    snap_term_ = snapshot.metadata.term;
    conf_state_ = snapshot.metadata.conf_state;
    conf_index_ = snap_index;
  }
  if (hs.has_value()) hard_state_ = *hs;
  if (!entries.empty()) {
    terms_.resize(first - snap_index_ - 1);
    for (const raft::Entry& e : entries) terms_.push_back(e.term);
  }
  return absl::OkStatus();
}

absl::Status RaftLogStore::SetConfState(const raft::ConfState& cs,
                                        uint64_t index) {
  absl::MutexLock l(&mu_);
  Batch b;
  b.Put(kConfKey, EncodeConf(cs, index));
  absl::Status st = backend_->Write(&b, /*sync=*/true);
  if (!st.ok()) return st;
  conf_state_ = cs;
  conf_index_ = index;
  return absl::OkStatus();
}

uint64_t RaftLogStore::conf_index() const {
  absl::MutexLock l(&mu_);
  return conf_index_;
}

absl::Status RaftLogStore::Compact(uint64_t index) {
  absl::MutexLock l(&mu_);
  if (index <= snap_index_) return absl::OkStatus();
  const uint64_t last = snap_index_ + terms_.size();
  if (index > last) {
    return absl::InternalError(
        absl::StrCat("compact at ", index, " beyond the last index ", last));
  }
  Batch b;
  const uint64_t term = TermLocked(index);
  for (uint64_t i = snap_index_ + 1; i <= index; ++i) b.Delete(RaftEntryKey(i));
  b.Put(kSnapKey, EncodeU64(index) + EncodeU64(term));
  absl::Status st = backend_->Write(&b, /*sync=*/true);
  if (!st.ok()) return st;
  terms_.erase(terms_.begin(), terms_.begin() + (index - snap_index_));
  snap_index_ = index;
  snap_term_ = term;
  return absl::OkStatus();
}

}  // namespace synod::storage
