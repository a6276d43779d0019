#include "backend/server/alarm_raiser.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace synod::server {

void AlarmRaiser::Raise(uint64_t member_id, etcdserverpb::AlarmType type,
                        Done then) {
  if (!alarms_->Get(member_id, type).empty()) {
    if (then) then(absl::OkStatus());
    return;
  }
  const std::pair<uint64_t, int> key{member_id, static_cast<int>(type)};
  {
    absl::MutexLock l(&mu_);
    auto [it, first] = raising_.try_emplace(key);
    if (then) it->second.push_back(std::move(then));
    if (!first) return;  // one proposal in flight; it answers us too
  }
  synodpb::Request req;
  req.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
  req.mutable_alarm()->set_memberid(member_id);
  req.mutable_alarm()->set_alarm(type);
  const std::string what =
      absl::StrCat(etcdserverpb::AlarmType_Name(type), " for member ",
                   absl::Hex(member_id));
  SYNOD_LOG(WARNING) << "raising alarm " << what;
  propose_(std::move(req), [this, key, what](absl::Status st) {
    if (!st.ok()) SYNOD_LOG(WARNING) << "raising alarm " << what << " failed: " << st;
    std::vector<Done> waiting;
    {
      absl::MutexLock l(&mu_);
      auto it = raising_.find(key);
      if (it != raising_.end()) {
        waiting.swap(it->second);
        raising_.erase(it);
      }
    }
    for (Done& d : waiting) d(st);
  });
}

}  // namespace synod::server
