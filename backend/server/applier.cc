#include "backend/server/applier.h"

#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/errors.h"
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
      absl::Status st = d_.kv->Compact(req.compaction().revision());
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
      return absl::InvalidArgumentError("empty request");
  }
}

absl::Status Applier::ApplyLeaseRevoke(int64_t id) {
  auto keys = d_.lessor->Revoke(id, d_.kv->batch());
  d_.leases->Revoked(id);
  if (!keys.ok()) return keys.status();
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
