#include "backend/lease/lessor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "backend/storage/schema.h"
#include "common/errors.h"
#include "proto/internal.pb.h"

namespace synod::lease {

using common::Err;
using common::EtcdError;

Lessor::Lessor(common::Clock* clock, int64_t min_ttl_s)
    : clock_(clock), min_ttl_s_(min_ttl_s) {}

void Lessor::Persist(int64_t id, const Lease& lease, storage::Batch* batch) {
  synodpb::LeaseRecord rec;
  rec.set_id(id);
  rec.set_ttl(lease.ttl);
  rec.set_remaining_ttl(lease.remaining_ttl);
  batch->Put(storage::LeaseKey(id), rec.SerializeAsString());
}

void Lessor::UnscheduleLocked(int64_t id, Lease& lease) {
  if (lease.checkpoint_at == absl::InfiniteFuture()) return;
  checkpoints_.erase({lease.checkpoint_at, id});
  lease.checkpoint_at = absl::InfiniteFuture();
}

void Lessor::ScheduleLocked(int64_t id, Lease& lease, absl::Time now) {
  UnscheduleLocked(id, lease);
  if (!primary_ || checkpoint_interval_ <= absl::ZeroDuration()) return;
  // etcd: lease.RemainingTTL() > int64(checkpointInterval.Seconds()).
  if (RenewalTtl(lease) <= absl::ToInt64Seconds(checkpoint_interval_)) return;
  lease.checkpoint_at = now + checkpoint_interval_;
  checkpoints_.insert({lease.checkpoint_at, id});
}

void Lessor::RescheduleAllLocked(absl::Time now) {
  checkpoints_.clear();
  for (auto& [id, lease] : leases_) {
    lease.checkpoint_at = absl::InfiniteFuture();
    ScheduleLocked(id, lease, now);
  }
}

void Lessor::SetCheckpointInterval(absl::Duration interval) {
  absl::MutexLock l(&mu_);
  checkpoint_interval_ = std::max(interval, absl::ZeroDuration());
  if (primary_) RescheduleAllLocked(clock_->Now());
}

absl::Status Lessor::Restore(
    storage::Backend* backend,
    const std::vector<std::pair<int64_t, std::string>>& leased_keys) {
  absl::MutexLock l(&mu_);
  const absl::Time now = clock_->Now();
  auto it = backend->NewIterator();
  for (it->Seek(std::string(1, storage::kLeasePrefix));
       it->Valid() && !it->key().empty() &&
       it->key()[0] == storage::kLeasePrefix;
       it->Next()) {
    synodpb::LeaseRecord rec;
    if (!rec.ParseFromArray(it->value().data(),
                            static_cast<int>(it->value().size()))) {
      return absl::DataLossError("corrupt lease record");
    }
    Lease& lease = leases_[rec.id()];
    lease.ttl = rec.ttl();
    lease.remaining_ttl = std::max<int64_t>(rec.remaining_ttl(), 0);
    lease.expiry = now + absl::Seconds(RenewalTtl(lease));
    ScheduleLocked(rec.id(), lease, now);
  }
  if (!it->status().ok()) return it->status();
  for (const auto& [id, key] : leased_keys) {
    auto l = leases_.find(id);
    if (l != leases_.end()) l->second.keys.insert(key);
  }
  return absl::OkStatus();
}

void Lessor::Clear() {
  absl::MutexLock l(&mu_);
  leases_.clear();
  checkpoints_.clear();
}

absl::StatusOr<int64_t> Lessor::Grant(int64_t id, int64_t ttl,
                                      storage::Batch* batch) {
  if (ttl > kMaxLeaseTTL) return Err(EtcdError::kLeaseTTLTooLarge);
  absl::MutexLock l(&mu_);
  if (leases_.contains(id)) return Err(EtcdError::kLeaseExist);
  ttl = std::max(ttl, min_ttl_s_);
  const absl::Time now = clock_->Now();
  Lease& lease = leases_[id];
  lease.ttl = ttl;
  lease.expiry = now + absl::Seconds(ttl);
  ScheduleLocked(id, lease, now);
  Persist(id, lease, batch);
  return ttl;
}

absl::StatusOr<std::vector<std::string>> Lessor::Revoke(int64_t id,
                                                        storage::Batch* batch) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return Err(EtcdError::kLeaseNotFound);
  std::vector<std::string> keys(it->second.keys.begin(), it->second.keys.end());
  UnscheduleLocked(id, it->second);
  leases_.erase(it);
  batch->Delete(storage::LeaseKey(id));
  return keys;
}

absl::Status Lessor::Checkpoint(int64_t id, int64_t remaining_ttl_s,
                                storage::Batch* batch) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return absl::OkStatus();
  Lease& lease = it->second;
  lease.remaining_ttl = std::max<int64_t>(remaining_ttl_s, 0);
  ScheduleLocked(id, lease, clock_->Now());
  Persist(id, lease, batch);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Lessor::KeepAlive(int64_t id,
                                          bool* needs_checkpoint_clear) {
  if (needs_checkpoint_clear != nullptr) *needs_checkpoint_clear = false;
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  const absl::Time now = clock_->Now();
  if (it == leases_.end() || it->second.expiry <= now) {
    return Err(EtcdError::kLeaseNotFound);
  }
  it->second.expiry = now + absl::Seconds(it->second.ttl);
  if (needs_checkpoint_clear != nullptr) {
    *needs_checkpoint_clear = checkpoint_interval_ > absl::ZeroDuration() &&
                              it->second.remaining_ttl > 0;
  }
  return it->second.ttl;
}

absl::StatusOr<LeaseInfo> Lessor::TimeToLive(int64_t id, bool with_keys) const {
  absl::ReaderMutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return Err(EtcdError::kLeaseNotFound);
  LeaseInfo info;
  info.id = id;
  info.ttl = it->second.ttl;
  absl::Duration left = it->second.expiry - clock_->Now();
  info.remaining =
      left <= absl::ZeroDuration()
          ? 0
          : absl::ToInt64Seconds(absl::Ceil(left, absl::Seconds(1)));
  if (with_keys)
    info.keys.assign(it->second.keys.begin(), it->second.keys.end());
  return info;
}

std::vector<int64_t> Lessor::Leases() const {
  absl::ReaderMutexLock l(&mu_);
  std::vector<int64_t> ids;
  ids.reserve(leases_.size());
  for (const auto& [id, lease] : leases_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<int64_t> Lessor::Expired(size_t max) const {
  absl::ReaderMutexLock l(&mu_);
  const absl::Time now = clock_->Now();
  std::vector<int64_t> ids;
  for (const auto& [id, lease] : leases_) {
    if (ids.size() >= max) break;
    if (lease.expiry <= now) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

void Lessor::Promote(absl::Duration extend) {
  absl::MutexLock l(&mu_);
  const absl::Time now = clock_->Now();
  primary_ = true;
  for (auto& [id, lease] : leases_) {
    lease.expiry = now + absl::Seconds(RenewalTtl(lease)) + extend;
  }
  RescheduleAllLocked(now);
}

void Lessor::Demote() {
  absl::MutexLock l(&mu_);
  primary_ = false;
  RescheduleAllLocked(clock_->Now());  // not primary: schedules nothing
}

std::vector<std::pair<int64_t, int64_t>> Lessor::DueCheckpoints(size_t max) {
  absl::MutexLock l(&mu_);
  std::vector<std::pair<int64_t, int64_t>> due;
  if (!primary_ || checkpoint_interval_ <= absl::ZeroDuration()) return due;
  const absl::Time now = clock_->Now();
  while (due.size() < max && !checkpoints_.empty() &&
         checkpoints_.begin()->first <= now) {
    const int64_t id = checkpoints_.begin()->second;
    checkpoints_.erase(checkpoints_.begin());
    auto it = leases_.find(id);
    if (it == leases_.end()) continue;  // not reached: Revoke unschedules
    Lease& lease = it->second;
    lease.checkpoint_at = absl::InfiniteFuture();
    if (lease.expiry <= now) continue;  // being revoked
    // Rescheduled after each due time (etcd drops it until the checkpoint
    // applies), so a lost proposal or a skip is retried an interval later.
    ScheduleLocked(id, lease, now);
    const int64_t remaining =
        absl::ToInt64Seconds(absl::Ceil(lease.expiry - now, absl::Seconds(1)));
    if (remaining >= lease.ttl) continue;  // just renewed: nothing to save
    due.emplace_back(id, remaining);
  }
  return due;
}

size_t Lessor::Count() const {
  absl::ReaderMutexLock l(&mu_);
  return leases_.size();
}

bool Lessor::LeaseExists(int64_t id) const {
  absl::ReaderMutexLock l(&mu_);
  return leases_.contains(id);
}

void Lessor::Attach(int64_t id, const std::string& key) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it != leases_.end()) it->second.keys.insert(key);
}

void Lessor::Detach(int64_t id, const std::string& key) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it != leases_.end()) it->second.keys.erase(key);
}

}  // namespace synod::lease
