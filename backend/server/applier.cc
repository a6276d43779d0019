#include "backend/server/applier.h"

#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/errors.h"
#include "common/etcd_metrics.h"
#include "common/logging.h"

namespace synod::server {

using common::EtcdError;
using common::Err;

bool Applier::QuotaAvailable(const synodpb::Request& req) const {
  if (d_.quota_bytes <= 0 || !WritesKeys(req)) return true;
  return d_.db_size() + static_cast<int64_t>(req.ByteSizeLong()) <=
         d_.quota_bytes;
}

bool Applier::WritesKeys(const synodpb::Request& req) {
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

absl::Status Applier::CheckAlarms(const synodpb::Request& req) const {
  // etcd's applierV3Corrupt: while a member is CORRUPT, the cluster applies
  // no KV or lease write (etcd lets DeleteRange through; we refuse it too).
  if (d_.alarms->Has(etcdserverpb::CORRUPT)) {
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
  if (d_.alarms->Has(etcdserverpb::NOSPACE) && WritesKeys(req)) {
    return Err(EtcdError::kNoSpace);
  }
  return absl::OkStatus();
}

namespace {

// The auth ops: fields 20..35 of Request's oneof (internal.proto).
bool IsAuthOp(const synodpb::Request& req) {
  return req.op_case() >= synodpb::Request::kAuthEnable &&
         req.op_case() <= synodpb::Request::kRoleList;
}

// etcd's needAdminPermission: every auth op but Authenticate and the reads
// of one user or role (which have rules of their own).
bool NeedsAdmin(const synodpb::Request& req) {
  switch (req.op_case()) {
    case synodpb::Request::kAuthenticate:
    case synodpb::Request::kUserGet:
    case synodpb::Request::kRoleGet:
      return false;
    default:
      return IsAuthOp(req);
  }
}

}  // namespace

absl::Status Applier::CheckLeasePuts(const auth::AuthInfo& ai,
                                     int64_t lease) const {
  if (lease == 0) return absl::OkStatus();
  auto info = d_.lessor->TimeToLive(lease, /*with_keys=*/true);
  if (!info.ok()) return absl::OkStatus();  // the op itself reports it
  for (const std::string& k : info->keys) {
    absl::Status st = d_.auth->IsPutPermitted(ai, k);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status Applier::CheckTxnAuth(const auth::AuthInfo& ai,
                                   const etcdserverpb::TxnRequest& t) const {
  const auth::AuthStore& as = *d_.auth;
  for (const auto& c : t.compare()) {
    absl::Status st = as.IsRangePermitted(ai, c.key(), c.range_end());
    if (!st.ok()) return st;
  }
  for (const auto* ops : {&t.success(), &t.failure()}) {
    for (const etcdserverpb::RequestOp& op : *ops) {
      absl::Status st;
      if (op.has_request_range()) {
        st = as.IsRangePermitted(ai, op.request_range().key(),
                                 op.request_range().range_end());
      } else if (op.has_request_put()) {
        const auto& p = op.request_put();
        st = as.IsPutPermitted(ai, p.key());
        if (st.ok() && p.prev_kv()) st = as.IsRangePermitted(ai, p.key(), "");
        if (st.ok()) st = CheckLeasePuts(ai, p.lease());
      } else if (op.has_request_delete_range()) {
        const auto& d = op.request_delete_range();
        st = as.IsDeleteRangePermitted(ai, d.key(), d.range_end());
        if (st.ok() && d.prev_kv()) {
          st = as.IsRangePermitted(ai, d.key(), d.range_end());
        }
      } else if (op.has_request_txn()) {
        st = CheckTxnAuth(ai, op.request_txn());
      }
      if (!st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

absl::Status Applier::CheckAuth(const synodpb::Request& req) const {
  // Only requests proposed for a client carry a header; auth off passes
  // every check inside the store.
  if (!req.has_header() || d_.auth == nullptr || !d_.auth->IsAuthEnabled()) {
    return absl::OkStatus();
  }
  const auth::AuthInfo ai{req.header().username(),
                          req.header().auth_revision()};
  const auth::AuthStore& as = *d_.auth;
  if (NeedsAdmin(req)) return as.IsAdminPermitted(ai);
  switch (req.op_case()) {
    case synodpb::Request::kPut: {
      const auto& p = req.put();
      absl::Status st = as.IsPutPermitted(ai, p.key());
      if (st.ok()) st = CheckLeasePuts(ai, p.lease());
      if (st.ok() && p.prev_kv()) st = as.IsRangePermitted(ai, p.key(), "");
      return st;
    }
    case synodpb::Request::kDeleteRange: {
      const auto& d = req.delete_range();
      absl::Status st = as.IsDeleteRangePermitted(ai, d.key(), d.range_end());
      if (st.ok() && d.prev_kv()) {
        st = as.IsRangePermitted(ai, d.key(), d.range_end());
      }
      return st;
    }
    case synodpb::Request::kTxn:
      return CheckTxnAuth(ai, req.txn());
    case synodpb::Request::kLeaseRevoke:
      return CheckLeasePuts(ai, req.lease_revoke().id());
    case synodpb::Request::kCompaction:
    case synodpb::Request::kAlarm:
      // Admin calls (Synod checks what etcd 3.4 lets anyone do; an alarm
      // GET is answered by the service without a proposal check).
      if (req.op_case() == synodpb::Request::kAlarm &&
          req.alarm().action() == etcdserverpb::AlarmRequest::GET) {
        return absl::OkStatus();
      }
      return as.IsAdminPermitted(ai);
    case synodpb::Request::kUserGet: {
      absl::Status st = as.IsAdminPermitted(ai);
      if (!st.ok() && req.user_get().name() != ai.username) return st;
      return absl::OkStatus();
    }
    case synodpb::Request::kRoleGet: {
      absl::Status st = as.IsAdminPermitted(ai);
      if (!st.ok() && !as.HasRole(ai.username, req.role_get().role())) {
        return st;
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status Applier::ApplyAuthOp(const synodpb::Request& req,
                                  google::protobuf::Message* resp,
                                  uint64_t index) {
  auth::AuthStore& as = *d_.auth;
  storage::Batch* b = d_.kv->batch();
  switch (req.op_case()) {
    case synodpb::Request::kAuthEnable: {
      absl::Status st = as.ApplyAuthEnable(b);
      if (st.ok()) SYNOD_LOG(INFO) << "enabled authentication";
      return st;
    }
    case synodpb::Request::kAuthDisable: {
      absl::Status st = as.ApplyAuthDisable(b);
      if (st.ok()) SYNOD_LOG(INFO) << "disabled authentication";
      return st;
    }
    case synodpb::Request::kAuthenticate: {
      auto token = as.ApplyAuthenticate(req.authenticate().name(),
                                        req.authenticate().token_prefix(),
                                        index);
      if (!token.ok()) return token.status();
      if (resp != nullptr) {
        static_cast<etcdserverpb::AuthenticateResponse*>(resp)->set_token(
            *token);
      }
      return absl::OkStatus();
    }
    case synodpb::Request::kUserAdd:
      return as.ApplyUserAdd(req.user_add().name(),
                             req.user_add().hashed_password(),
                             req.user_add().no_password(), b);
    case synodpb::Request::kUserDelete:
      return as.ApplyUserDelete(req.user_delete().name(), b);
    case synodpb::Request::kUserChangePassword:
      return as.ApplyUserChangePassword(
          req.user_change_password().name(),
          req.user_change_password().hashed_password(), b);
    case synodpb::Request::kUserGrantRole:
      return as.ApplyUserGrantRole(req.user_grant_role().user(),
                                   req.user_grant_role().role(), b);
    case synodpb::Request::kUserRevokeRole:
      return as.ApplyUserRevokeRole(req.user_revoke_role().name(),
                                    req.user_revoke_role().role(), b);
    case synodpb::Request::kRoleAdd:
      return as.ApplyRoleAdd(req.role_add().name(), b);
    case synodpb::Request::kRoleDelete:
      return as.ApplyRoleDelete(req.role_delete().role(), b);
    case synodpb::Request::kRoleGrantPermission:
      return as.ApplyRoleGrantPermission(req.role_grant_permission().name(),
                                         req.role_grant_permission().perm(),
                                         b);
    case synodpb::Request::kRoleRevokePermission:
      return as.ApplyRoleRevokePermission(
          req.role_revoke_permission().role(),
          req.role_revoke_permission().key(),
          req.role_revoke_permission().range_end(), b);
    case synodpb::Request::kUserGet: {
      auto roles = as.UserGet(req.user_get().name());
      if (!roles.ok()) return roles.status();
      if (resp != nullptr) {
        auto* r = static_cast<etcdserverpb::AuthUserGetResponse*>(resp);
        for (auto& role : *roles) r->add_roles(std::move(role));
      }
      return absl::OkStatus();
    }
    case synodpb::Request::kUserList:
      if (resp != nullptr) {
        auto* r = static_cast<etcdserverpb::AuthUserListResponse*>(resp);
        for (auto& u : as.UserList()) r->add_users(std::move(u));
      }
      return absl::OkStatus();
    case synodpb::Request::kRoleGet: {
      auto perms = as.RoleGet(req.role_get().role());
      if (!perms.ok()) return perms.status();
      if (resp != nullptr) {
        auto* r = static_cast<etcdserverpb::AuthRoleGetResponse*>(resp);
        for (auto& p : *perms) *r->add_perm() = std::move(p);
      }
      return absl::OkStatus();
    }
    case synodpb::Request::kRoleList:
      if (resp != nullptr) {
        auto* r = static_cast<etcdserverpb::AuthRoleListResponse*>(resp);
        for (auto& role : as.RoleList()) r->add_roles(std::move(role));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("not an auth request");
  }
}

void StopOnUndecodable(const raft::Entry& e, const char* what) {
  // The log is the same on every member: a member that cannot decode an
  // entry cannot compute the state the others have, so it must not serve
  // one (etcd panics here too).
  SYNOD_LOG(FATAL) << "committed entry at index " << e.index << " (term "
                   << e.term << ", " << e.data.size()
                   << " bytes) does not decode as a " << what
                   << "; this member cannot apply its log and stops";
  std::abort();  // not reached: FATAL aborts
}

absl::Status Applier::Apply(const synodpb::Request& req,
                            google::protobuf::Message* resp, uint64_t index,
                            bool* raise_nospace) {
  // Everything decided here comes from replicated state (the alarms), so
  // every member applies the same result.
  absl::Status st = CheckAlarms(req);
  if (!st.ok()) return st;
  st = CheckAuth(req);
  if (!st.ok()) return st;
  st = ApplyOp(req, resp, index);
  // etcd's quotaApplierV3: the write is applied everywhere; a member over
  // its quota answers ErrNoSpace and raises NOSPACE for itself through Raft.
  // The answer differs between members, the state does not.
  if (st.ok() && !QuotaAvailable(req)) {
    st = Err(EtcdError::kNoSpace);
    if (!d_.alarms->Has(etcdserverpb::NOSPACE)) {  // etcd's rule
      SYNOD_LOG(WARNING) << "database space exceeded (" << d_.db_size()
                         << " bytes, quota " << d_.quota_bytes
                         << ")";
      *raise_nospace = true;
    }
  }
  return st;
}

absl::Status Applier::ApplyOp(const synodpb::Request& req,
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
      // etcd's totalPutSizeGauge: key and value bytes of every put.
      common::GetEtcdMetrics().mvcc_total_put_size_bytes->Add(
          static_cast<double>(req.put().key().size() + req.put().value().size()));
      auto txn = d_.kv->Write();
      return txn->Put(req.put(), out(&local));
    }
    case synodpb::Request::kDeleteRange: {
      etcdserverpb::DeleteRangeResponse local;
      auto txn = d_.kv->Write();
      return txn->DeleteRange(req.delete_range(), out(&local));
    }
    case synodpb::Request::kTxn: {
      etcdserverpb::TxnResponse local;
      const common::EtcdMetrics& m = common::GetEtcdMetrics();
      m.mvcc_txn->Inc();
      m.debugging_mvcc_txn->Inc();
      auto txn = d_.kv->Write();
      return txn->Txn(req.txn(), out(&local));
    }
    case synodpb::Request::kCompaction: {
      // Compaction works on published state: commit what is staged first.
      if (d_.kv->StagedRev() != d_.kv->Rev()) {
        std::vector<mvccpb::Event> events;
        absl::Status st = d_.kv->Commit(index - 1, &events);
        if (!st.ok()) SYNOD_LOG(FATAL) << "write failed: " << st;
        d_.watchable->Notify(events, d_.kv->Rev());
      }
      const absl::Time compact_start = absl::Now();
      absl::Status st = d_.kv->Compact(req.compaction().revision());
      // etcd's dbCompactionTotalMs: the whole compaction, in milliseconds.
      common::GetEtcdMetrics().mvcc_compaction_total_ms->Observe(
          absl::ToDoubleMilliseconds(absl::Now() - compact_start));
      if (st.ok() && resp != nullptr) {
        static_cast<etcdserverpb::CompactionResponse*>(resp)
            ->mutable_header()
            ->set_revision(d_.kv->Rev());
      }
      return st;
    }
    case synodpb::Request::kLeaseGrant: {
      auto ttl = d_.lessor->Grant(req.lease_grant().id(), req.lease_grant().ttl(),
                                d_.kv->batch());
      if (!ttl.ok()) return ttl.status();
      common::GetEtcdMetrics().lease_granted->Inc();
      common::GetEtcdMetrics().lease_ttl->Observe(static_cast<double>(*ttl));
      auto* r = static_cast<etcdserverpb::LeaseGrantResponse*>(resp);
      if (r != nullptr) {
        r->set_id(req.lease_grant().id());
        r->set_ttl(*ttl);
        r->mutable_header()->set_revision(d_.kv->StagedRev());
      }
      return absl::OkStatus();
    }
    case synodpb::Request::kLeaseRevoke: {
      absl::Status st = ApplyLeaseRevoke(req.lease_revoke().id());
      if (st.ok() && resp != nullptr) {
        static_cast<etcdserverpb::LeaseRevokeResponse*>(resp)
            ->mutable_header()
            ->set_revision(d_.kv->StagedRev());
      }
      return st;
    }
    case synodpb::Request::kAlarm: {
      etcdserverpb::AlarmResponse local;
      return ApplyAlarm(req.alarm(), out(&local));
    }
    case synodpb::Request::kLeaseCheckpoint:
      return d_.lessor->Checkpoint(req.lease_checkpoint().id(),
                                 req.lease_checkpoint().remaining_ttl(),
                                 d_.kv->batch());
    case synodpb::Request::kLeaseCheckpoints:
      for (const auto& cp : req.lease_checkpoints().checkpoints()) {
        absl::Status st =
            d_.lessor->Checkpoint(cp.id(), cp.remaining_ttl(), d_.kv->batch());
        if (!st.ok()) return st;
      }
      return absl::OkStatus();
    case synodpb::Request::kMemberAttributes: {
      const synodpb::Member& m = req.member_attributes();
      d_.membership->SetAttributes(
          m.id(), m.name(), {m.client_urls().begin(), m.client_urls().end()},
          d_.kv->batch());
      if (d_.on_member_published) d_.on_member_published();
      return absl::OkStatus();
    }
    default:
      if (IsAuthOp(req)) return ApplyAuthOp(req, resp, index);
      return absl::InvalidArgumentError("empty request");
  }
}

absl::Status Applier::ApplyLeaseRevoke(int64_t id) {
  auto keys = d_.lessor->Revoke(id, d_.kv->batch());
  d_.leases->Revoked(id);
  if (!keys.ok()) return keys.status();
  common::GetEtcdMetrics().lease_revoked->Inc();
  // All attached keys go in one revision.
  auto txn = d_.kv->Write();
  for (const std::string& k : *keys) txn->DeleteKey(k);
  return absl::OkStatus();
}

absl::Status Applier::ApplyAlarm(const etcdserverpb::AlarmRequest& r,
                                 etcdserverpb::AlarmResponse* resp) {
  // Only the request decides: the proposer stamped the member id, so every
  // member applies the same change.
  switch (r.action()) {
    case etcdserverpb::AlarmRequest::GET:
      for (const auto& a : d_.alarms->Get(r.memberid(), r.alarm())) {
        *resp->add_alarms() = a;
      }
      break;
    case etcdserverpb::AlarmRequest::ACTIVATE: {
      auto m = d_.alarms->Activate(r.memberid(), r.alarm(), d_.kv->batch());
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
           d_.alarms->Deactivate(r.memberid(), r.alarm(), d_.kv->batch())) {
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
