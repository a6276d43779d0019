#include "backend/server/alarm_store.h"

#include "backend/storage/schema.h"
#include "proto/internal.pb.h"

namespace synod::server {

absl::Status AlarmStore::Load(storage::Backend* backend) {
  auto stored = backend->Get(storage::kMetaAlarms);
  if (!stored.ok()) return stored.status();
  synodpb::AlarmRecord rec;
  if (stored->has_value() && !rec.ParseFromString(**stored)) {
    return absl::DataLossError("corrupt alarm record");
  }
  absl::MutexLock l(&mu_);
  alarms_.assign(rec.alarms().begin(), rec.alarms().end());
  RefreshFlagsLocked();
  return absl::OkStatus();
}

namespace {

// 0 matches any member and NONE any type.
bool Matches(const etcdserverpb::AlarmMember& a, uint64_t member_id,
             etcdserverpb::AlarmType type) {
  return (member_id == 0 || a.memberid() == member_id) &&
         (type == etcdserverpb::NONE || a.alarm() == type);
}

}  // namespace

std::optional<etcdserverpb::AlarmMember> AlarmStore::Activate(
    uint64_t member_id, etcdserverpb::AlarmType type, storage::Batch* batch) {
  if (type == etcdserverpb::NONE) return std::nullopt;
  absl::MutexLock l(&mu_);
  for (const auto& a : alarms_) {
    if (a.memberid() == member_id && a.alarm() == type) return std::nullopt;
  }
  etcdserverpb::AlarmMember m;
  m.set_memberid(member_id);
  m.set_alarm(type);
  alarms_.push_back(m);
  RefreshFlagsLocked();
  PersistLocked(batch);
  return m;
}

std::vector<etcdserverpb::AlarmMember> AlarmStore::Deactivate(
    uint64_t member_id, etcdserverpb::AlarmType type, storage::Batch* batch) {
  std::vector<etcdserverpb::AlarmMember> cleared, keep;
  absl::MutexLock l(&mu_);
  for (auto& a : alarms_) {
    (Matches(a, member_id, type) ? cleared : keep).push_back(std::move(a));
  }
  alarms_.swap(keep);
  if (!cleared.empty()) {
    RefreshFlagsLocked();
    PersistLocked(batch);
  }
  return cleared;
}

std::vector<etcdserverpb::AlarmMember> AlarmStore::Get(
    uint64_t member_id, etcdserverpb::AlarmType type) const {
  std::vector<etcdserverpb::AlarmMember> out;
  absl::MutexLock l(&mu_);
  for (const auto& a : alarms_) {
    if (Matches(a, member_id, type)) out.push_back(a);
  }
  return out;
}

bool AlarmStore::Has(etcdserverpb::AlarmType type) const {
  switch (type) {
    case etcdserverpb::NOSPACE:
      return nospace_.load();
    case etcdserverpb::CORRUPT:
      return corrupt_.load();
    default:
      return !Get(0, type).empty();
  }
}

void AlarmStore::PersistLocked(storage::Batch* batch) const {
  synodpb::AlarmRecord rec;
  for (const auto& a : alarms_) *rec.add_alarms() = a;
  batch->Put(storage::kMetaAlarms, rec.SerializeAsString());
}

void AlarmStore::RefreshFlagsLocked() {
  bool nospace = false, corrupt = false;
  for (const auto& a : alarms_) {
    if (a.alarm() == etcdserverpb::NOSPACE) nospace = true;
    if (a.alarm() == etcdserverpb::CORRUPT) corrupt = true;
  }
  nospace_ = nospace;
  corrupt_ = corrupt;
}

}  // namespace synod::server
