#include "backend/lease/lessor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "backend/storage/schema.h"
#include "common/errors.h"
#include "proto/internal.pb.h"

namespace synod::lease {

using common::EtcdError;
using common::Err;

Lessor::Lessor(common::Clock* clock, int64_t min_ttl_s)
    : clock_(clock), min_ttl_s_(min_ttl_s) {}

absl::Status Lessor::Restore(
    storage::Backend* backend,
    const std::vector<std::pair<int64_t, std::string>>& leased_keys) {
  absl::MutexLock l(&mu_);
  const absl::Time now = clock_->Now();
  auto it = backend->NewIterator();
  for (it->Seek(std::string(1, storage::kLeasePrefix));
       it->Valid() && !it->key().empty() && it->key()[0] == storage::kLeasePrefix;
       it->Next()) {
    synodpb::LeaseRecord rec;
    if (!rec.ParseFromArray(it->value().data(),
                            static_cast<int>(it->value().size()))) {
      return absl::DataLossError("corrupt lease record");
    }
    Lease& lease = leases_[rec.id()];
    lease.ttl = rec.ttl();
    const int64_t ttl = rec.remaining_ttl() > 0 ? rec.remaining_ttl() : rec.ttl();
    lease.expiry = now + absl::Seconds(ttl);
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
}

absl::StatusOr<int64_t> Lessor::Grant(int64_t id, int64_t ttl,
                                      storage::Batch* batch) {
  if (ttl > kMaxLeaseTTL) return Err(EtcdError::kLeaseTTLTooLarge);
  absl::MutexLock l(&mu_);
  if (leases_.contains(id)) return Err(EtcdError::kLeaseExist);
  ttl = std::max(ttl, min_ttl_s_);
  Lease& lease = leases_[id];
  lease.ttl = ttl;
  lease.expiry = clock_->Now() + absl::Seconds(ttl);
  synodpb::LeaseRecord rec;
  rec.set_id(id);
  rec.set_ttl(ttl);
  batch->Put(storage::LeaseKey(id), rec.SerializeAsString());
  return ttl;
}

absl::StatusOr<std::vector<std::string>> Lessor::Revoke(int64_t id,
                                                        storage::Batch* batch) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return Err(EtcdError::kLeaseNotFound);
  std::vector<std::string> keys(it->second.keys.begin(), it->second.keys.end());
  leases_.erase(it);
  batch->Delete(storage::LeaseKey(id));
  return keys;
}

absl::StatusOr<int64_t> Lessor::KeepAlive(int64_t id) {
  absl::MutexLock l(&mu_);
  auto it = leases_.find(id);
  const absl::Time now = clock_->Now();
  if (it == leases_.end() || it->second.expiry <= now) {
    return Err(EtcdError::kLeaseNotFound);
  }
  it->second.expiry = now + absl::Seconds(it->second.ttl);
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
      left <= absl::ZeroDuration() ? 0 : absl::ToInt64Seconds(absl::Ceil(left, absl::Seconds(1)));
  if (with_keys) info.keys.assign(it->second.keys.begin(), it->second.keys.end());
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
  for (auto& [id, lease] : leases_) {
    lease.expiry = now + absl::Seconds(lease.ttl) + extend;
  }
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
