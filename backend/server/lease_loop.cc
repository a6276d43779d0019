#include "backend/server/lease_loop.h"

#include <utility>

#include "common/etcd_metrics.h"
#include "common/logging.h"

namespace synod::server {

void LeaseLoop::Tick(bool is_leader) {
  if (!is_leader) return;
  for (int64_t id : lessor_->Expired(1000)) {
    {
      absl::MutexLock l(&mu_);
      if (!revoking_.insert(id).second) continue;
    }
    synodpb::Request req;
    req.mutable_lease_revoke()->set_id(id);
    propose_(std::move(req), [this, id](absl::Status st) {
      if (st.ok()) common::GetEtcdMetrics().lease_expired->Inc();
      if (!st.ok()) Revoked(id);  // not applied: a later pass retries
    });
  }
  if (checkpoints_) ProposeCheckpoints();
}

void LeaseLoop::Revoked(int64_t id) {
  absl::MutexLock l(&mu_);
  revoking_.erase(id);
}

absl::StatusOr<int64_t> LeaseLoop::KeepAlive(int64_t id) {
  bool clear = false;
  auto ttl = lessor_->KeepAlive(id, &clear);
  if (ttl.ok()) common::GetEtcdMetrics().lease_renewed->Inc();
  if (!ttl.ok() || !clear) return ttl;
  // The lease has a checkpointed remaining TTL: clear it through the log, so
  // that a later leader does not restart it from that (etcd's Renew). One
  // clear in flight per lease; a failed one is retried by the next renewal.
  {
    absl::MutexLock l(&mu_);
    if (!clearing_checkpoints_.insert(id).second) return ttl;
  }
  synodpb::Request req;
  auto* cp = req.mutable_lease_checkpoints()->add_checkpoints();
  cp->set_id(id);
  cp->set_remaining_ttl(0);
  propose_(std::move(req), [this, id](absl::Status) {
    absl::MutexLock l(&mu_);
    clearing_checkpoints_.erase(id);
  });
  return ttl;
}

void LeaseLoop::ProposeCheckpoints() {
  auto due = lessor_->DueCheckpoints(1000);
  if (due.empty()) return;
  synodpb::Request req;
  for (const auto& [id, remaining] : due) {
    auto* cp = req.mutable_lease_checkpoints()->add_checkpoints();
    cp->set_id(id);
    cp->set_remaining_ttl(remaining);
  }
  const size_t n = due.size();
  propose_(std::move(req), [n](absl::Status st) {
    if (!st.ok()) {
      SYNOD_LOG(WARNING) << "lease checkpoint of " << n << " leases: " << st;
    }
  });
}

}  // namespace synod::server
