#include "proxy/permission_cache.h"

#include <utility>

#include "common/errors.h"

namespace synod::proxy {

using common::EtcdError;

PermissionCache::PermissionCache(Upstream* upstream, common::Clock* clock,
                                 PermissionCacheOptions options)
    : upstream_(upstream), clock_(clock), options_(options) {}

bool PermissionCache::IsDecision(const grpc::Status& s) {
  if (s.ok()) return true;
  const absl::Status st = common::FromGrpcStatus(s);
  return common::IsErr(st, EtcdError::kPermissionDenied) ||
         common::IsErr(st, EtcdError::kInvalidAuthToken) ||
         common::IsErr(st, EtcdError::kUserEmpty);
}

etcdserverpb::RangeRequest PermissionCache::Probe(const std::string& key,
                                                  const std::string& range_end,
                                                  bool serializable) {
  etcdserverpb::RangeRequest req;
  // An empty key is refused by Range ("key is not provided"); "\0" starts
  // the same range (no key is empty).
  req.set_key(key.empty() ? std::string(1, '\0') : key);
  req.set_range_end(range_end);
  req.set_count_only(true);
  req.set_limit(1);
  req.set_serializable(serializable);
  return req;
}

bool PermissionCache::ValidLocked(const Entry& e) const {
  if (!e.decided || e.epoch != epoch_) return false;
  const absl::Duration ttl =
      state_.known ? options_.max_age : options_.unknown_ttl;
  return clock_->Now() - e.at < ttl;
}

void PermissionCache::Check(const std::string& token, const std::string& key,
                            const std::string& range_end, Done done) {
  Key k(token, key, range_end);
  uint64_t probe_epoch = 0;
  bool ready = false;  // decided now: `status` at `probe_epoch`
  grpc::Status status;
  {
    absl::MutexLock l(&mu_);
    auto it = entries_.find(k);
    if (token.empty() && state_.known && !state_.enabled) {
      ready = true;  // auth is off: the member lets anyone read
      probe_epoch = epoch_;
    } else if (it != entries_.end() && ValidLocked(it->second)) {
      ready = true;
      status = it->second.status;
      probe_epoch = it->second.epoch;
    } else {
      if (it == entries_.end()) {
        if (entries_.size() >= options_.max_entries) {
          for (auto i = entries_.begin(); i != entries_.end();) {
            i = i->second.probing ? std::next(i) : entries_.erase(i);
          }
        }
        it = entries_.emplace(k, Entry()).first;
      }
      it->second.waiters.push_back(std::move(done));
      if (it->second.probing) return;
      it->second.probing = true;
      probe_epoch = epoch_;
    }
  }
  if (ready) {
    done(status, probe_epoch);
    return;
  }
  upstream_->Range(Probe(key, range_end, /*serializable=*/true),
                   CallAs::Client(token),
                   [this, k, probe_epoch](const grpc::Status& s,
                                          const etcdserverpb::RangeResponse&) {
                     OnProbe(k, probe_epoch, s);
                   });
}

void PermissionCache::OnProbe(const Key& k, uint64_t epoch,
                              const grpc::Status& s) {
  std::vector<Done> waiters;
  {
    absl::MutexLock l(&mu_);
    auto it = entries_.find(k);
    if (it == entries_.end()) return;  // cannot happen: probing is kept
    Entry& e = it->second;
    e.probing = false;
    waiters.swap(e.waiters);
    if (IsDecision(s) && epoch == epoch_) {
      e.decided = true;
      e.status = s;
      e.at = clock_->Now();
      e.epoch = epoch;
    } else if (!e.decided) {
      entries_.erase(it);
    }
  }
  for (auto& w : waiters) w(s, epoch);
}

void PermissionCache::Record(const std::string& token, const std::string& key,
                             const std::string& range_end,
                             const grpc::Status& s, uint64_t epoch) {
  if (!IsDecision(s)) return;
  absl::MutexLock l(&mu_);
  if (epoch != epoch_) return;
  auto it = entries_.find(Key(token, key, range_end));
  if (it == entries_.end()) {
    if (entries_.size() >= options_.max_entries) return;
    it = entries_.emplace(Key(token, key, range_end), Entry()).first;
  }
  it->second.decided = true;
  it->second.status = s;
  it->second.at = clock_->Now();
  it->second.epoch = epoch;
}

bool PermissionCache::SetAuthState(const UpstreamAuthState& state) {
  absl::MutexLock l(&mu_);
  if (state == state_) return false;
  state_ = state;
  NewEpochLocked();
  return true;
}

void PermissionCache::Invalidate() {
  absl::MutexLock l(&mu_);
  NewEpochLocked();
}

void PermissionCache::NewEpochLocked() {
  ++epoch_;
  for (auto i = entries_.begin(); i != entries_.end();) {
    if (i->second.probing) {
      i->second.decided = false;
      ++i;
    } else {
      i = entries_.erase(i);
    }
  }
}

uint64_t PermissionCache::epoch() const {
  absl::MutexLock l(&mu_);
  return epoch_;
}

size_t PermissionCache::TEST_entries() const {
  absl::MutexLock l(&mu_);
  return entries_.size();
}

}  // namespace synod::proxy
