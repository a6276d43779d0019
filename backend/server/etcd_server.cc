#include "backend/server/etcd_server.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "backend/storage/schema.h"
#include "common/errors.h"
#include "common/logging.h"
#include "common/metrics.h"

namespace synod::server {

using common::EtcdError;
using common::Err;

namespace {

// A stable 64-bit FNV-1a hash, for member and cluster IDs.
uint64_t Fnv64(absl::string_view s, uint64_t h = 1469598103934665603ULL) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

// Parses --auto-compaction-retention for periodic mode: "1h", "30m", "90s"
// or a plain number of hours. Returns zero when off or invalid.
absl::Duration PeriodicRetention(const std::string& s) {
  absl::Duration d;
  if (absl::ParseDuration(s, &d)) return d;
  double hours = 0;
  if (absl::SimpleAtod(s, &hours) && hours > 0) return absl::Hours(hours);
  return absl::ZeroDuration();
}

constexpr size_t kMaxApplyBatch = 1024;
// etcd's maxGapBetweenApplyAndCommitIndex.
constexpr size_t kMaxPendingProposals = 5000;
constexpr absl::Duration kTimerTick = absl::Milliseconds(100);
constexpr absl::Duration kRevisionCompactInterval = absl::Minutes(5);

}  // namespace

EtcdServer::EtcdServer(const ServerConfig& config, common::Clock* clock)
    : config_(config),
      clock_(clock ? clock : common::RealClock::Get()),
      // etcd's metric names.
      commit_seconds_(common::DefaultMetrics().GetHistogram(
          "etcd_disk_backend_commit_duration_seconds",
          "The latency distributions of commit called by backend.",
          common::ExponentialBuckets(0.001, 2, 14))),
      proposals_committed_(common::DefaultMetrics().GetCounter(
          "etcd_server_proposals_committed_total",
          "The total number of consensus proposals committed.")) {}

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Open(
    const ServerConfig& config, common::Clock* clock) {
  std::unique_ptr<EtcdServer> s(new EtcdServer(config, clock));
  absl::Status st = s->Init();
  if (!st.ok()) return st;
  return s;
}

absl::Status EtcdServer::Init() {
  std::error_code ec;
  const std::string member_dir = config_.data_dir + "/member";
  std::filesystem::create_directories(member_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create data dir ", member_dir, ": ", ec.message()));
  }
  auto backend = storage::Backend::Open(member_dir + "/db");
  if (!backend.ok()) return backend.status();
  backend_ = std::move(*backend);

  // Member and cluster IDs are chosen once and kept in the data dir.
  auto ids = backend_->Get(storage::kMetaIds);
  if (!ids.ok()) return ids.status();
  if (ids->has_value() && (*ids)->size() == 16) {
    cluster_id_ = storage::GetBigEndian64(**ids);
    member_id_ = storage::GetBigEndian64((*ids)->substr(8));
  } else {
    std::string peers;
    for (const auto& u : config_.initial_advertise_peer_urls) peers += u;
    member_id_ = Fnv64(absl::StrCat(config_.name, "|", peers, "|",
                                    config_.initial_cluster_token));
    cluster_id_ = Fnv64(config_.initial_cluster_token, member_id_);
    storage::Batch b;
    b.Put(storage::kMetaIds, storage::EncodeU64(cluster_id_) +
                                 storage::EncodeU64(member_id_));
    absl::Status st = backend_->Write(&b, true);
    if (!st.ok()) return st;
  }

  auto kv = mvcc::KvStore::Open(backend_.get());
  if (!kv.ok()) return kv.status();
  kv_ = std::move(*kv);

  const int64_t min_ttl = static_cast<int64_t>(std::ceil(
      absl::ToDoubleSeconds(config_.election_timeout) * 3.0 / 2.0));
  lessor_ = std::make_unique<lease::Lessor>(clock_, std::max<int64_t>(min_ttl, 1));
  absl::Status st = lessor_->Restore(backend_.get(), kv_->LeasedKeys());
  if (!st.ok()) return st;
  kv_->SetLeaseHooks(lessor_.get());
  // Renewal rule: this member is the leader from now on.
  lessor_->Promote(absl::ZeroDuration());

  auto alarms = backend_->Get(storage::kMetaAlarms);
  if (!alarms.ok()) return alarms.status();
  if (alarms->has_value()) {
    synodpb::AlarmRecord rec;
    if (!rec.ParseFromString(**alarms)) {
      return absl::DataLossError("corrupt alarm record");
    }
    absl::MutexLock l(&alarm_mu_);
    alarms_.assign(rec.alarms().begin(), rec.alarms().end());
  }

  watchable_ = std::make_unique<mvcc::WatchableStore>(kv_.get());
  db_size_ = backend_->DiskSizeBytes();
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  next_lease_id_ = static_cast<int64_t>(((member_id_ & 0x7fff) << 48) |
                                        ((static_cast<uint64_t>(now_ms) &
                                          0xffffffffffULL) << 8));
  last_compact_check_ = clock_->Now();
  last_progress_ = clock_->Now();

  SYNOD_LOG(INFO) << "member " << absl::StrCat(absl::Hex(member_id_))
                  << " of cluster " << absl::StrCat(absl::Hex(cluster_id_))
                  << " opened " << config_.data_dir << " at revision "
                  << kv_->Rev() << ", applied index " << kv_->AppliedIndex()
                  << ", " << kv_->KeyCount() << " keys, " << lessor_->Count()
                  << " leases";
  apply_thread_ = std::thread([this] { ApplyLoop(); });
  if (config_.run_timer_thread) {
    timer_thread_ = std::thread([this] { TimerLoop(); });
  }
  return absl::OkStatus();
}

EtcdServer::~EtcdServer() { Stop(); }

void EtcdServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (apply_thread_.joinable()) apply_thread_.join();
  if (timer_thread_.joinable()) timer_thread_.join();
  watchable_.reset();
}

void EtcdServer::Propose(synodpb::Request req, google::protobuf::Message* resp,
                         Done done) {
  absl::Status refused;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) {
      refused = Err(EtcdError::kStopped);
    } else if (queue_.size() >= kMaxPendingProposals) {
      // etcd refuses when applying lags too far behind committing.
      refused = Err(EtcdError::kTooManyRequests);
    } else {
      queue_.push_back(Proposal{std::move(req), resp, std::move(done)});
      return;
    }
  }
  done(refused);
}

void EtcdServer::FillHeader(etcdserverpb::ResponseHeader* h) const {
  h->set_cluster_id(cluster_id_);
  h->set_member_id(member_id_);
  h->set_raft_term(term());
  if (h->revision() == 0) h->set_revision(kv_->Rev());
}

int64_t EtcdServer::NewLeaseId() {
  int64_t id = ++next_lease_id_;
  if (id <= 0) id = next_lease_id_ = 1;
  return id;
}

std::vector<etcdserverpb::AlarmMember> EtcdServer::Alarms() const {
  absl::MutexLock l(&alarm_mu_);
  return alarms_;
}

uint64_t EtcdServer::AddProgressTicker(std::function<void()> tick) {
  absl::MutexLock l(&mu_);
  uint64_t id = next_ticker_++;
  tickers_[id] = std::move(tick);
  return id;
}

void EtcdServer::RemoveProgressTicker(uint64_t id) {
  absl::MutexLock l(&mu_);
  tickers_.erase(id);
}

void EtcdServer::ApplyLoop() {
  std::vector<Proposal> batch;
  std::vector<absl::Status> results;
  std::vector<mvccpb::Event> events;
  uint64_t index = kv_->AppliedIndex();
  while (true) {
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](EtcdServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stopping_ || !s->queue_.empty();
          },
          this));
      if (queue_.empty()) break;  // stopping
      while (!queue_.empty() && batch.size() < kMaxApplyBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    results.clear();
    for (Proposal& p : batch) {
      results.push_back(Apply(p.req, p.resp, ++index));
    }
    const int64_t batch_bytes = static_cast<int64_t>(kv_->batch()->ApproximateSize());
    const absl::Time commit_start = clock_->Now();
    absl::Status st = kv_->Commit(index, &events);
    commit_seconds_->Observe(absl::ToDoubleSeconds(clock_->Now() - commit_start));
    proposals_committed_->Inc(batch.size());
    if (!st.ok()) {
      // The state on disk is unknown: never guess, stop.
      SYNOD_LOG(FATAL) << "write of applied batch failed: " << st;
    }
    // The size scan lists the data dir, so it runs at most every 100 ms or
    // when the quota is near; in between, written bytes are added (LevelDB's
    // log grows by about the batch size).
    db_size_ += batch_bytes;
    const absl::Time now = clock_->Now();
    if (now - last_size_check_ >= absl::Milliseconds(100) ||
        db_size_.load() > config_.quota_backend_bytes / 10 * 9) {
      last_size_check_ = now;
      db_size_ = backend_->DiskSizeBytes();
    }
    if (!events.empty()) {
      watchable_->Notify(events, kv_->Rev());
      events.clear();
    }
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(results[i]);
    batch.clear();
  }
  std::deque<Proposal> rest;
  {
    absl::MutexLock l(&mu_);
    rest.swap(queue_);
  }
  for (Proposal& p : rest) p.done(Err(EtcdError::kStopped));
}

bool EtcdServer::WritesKeys(const synodpb::Request& req) const {
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

absl::Status EtcdServer::Apply(const synodpb::Request& req,
                               google::protobuf::Message* resp,
                               uint64_t index) {
  // Quota (etcd's quotaApplier): writes that add data are refused while the
  // NOSPACE alarm is raised; exceeding the quota raises it.
  if (config_.quota_backend_bytes > 0 && WritesKeys(req)) {
    absl::MutexLock l(&alarm_mu_);
    bool raised = false;
    for (const auto& a : alarms_) {
      if (a.alarm() == etcdserverpb::NOSPACE) raised = true;
    }
    if (!raised && db_size_.load() + static_cast<int64_t>(req.ByteSizeLong()) >
                       config_.quota_backend_bytes) {
      etcdserverpb::AlarmMember m;
      m.set_memberid(member_id_);
      m.set_alarm(etcdserverpb::NOSPACE);
      alarms_.push_back(m);
      PersistAlarmsLocked();
      SYNOD_LOG(WARNING) << "database space exceeded (" << db_size_.load()
                         << " bytes, quota " << config_.quota_backend_bytes
                         << "): NOSPACE alarm raised";
      raised = true;
    }
    if (raised) return Err(EtcdError::kNoSpace);
  }

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
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("empty request");
  }
}

absl::Status EtcdServer::ApplyLeaseRevoke(int64_t id) {
  auto keys = lessor_->Revoke(id, kv_->batch());
  {
    absl::MutexLock l(&mu_);
    revoking_.erase(id);
  }
  if (!keys.ok()) return keys.status();
  // All attached keys go in one revision.
  auto txn = kv_->Write();
  for (const std::string& k : *keys) txn->DeleteKey(k);
  return absl::OkStatus();
}

void EtcdServer::PersistAlarmsLocked() {
  synodpb::AlarmRecord rec;
  for (const auto& a : alarms_) *rec.add_alarms() = a;
  kv_->batch()->Put(storage::kMetaAlarms, rec.SerializeAsString());
}

absl::Status EtcdServer::ApplyAlarm(const etcdserverpb::AlarmRequest& r,
                                    etcdserverpb::AlarmResponse* resp) {
  absl::MutexLock l(&alarm_mu_);
  auto matches = [&](const etcdserverpb::AlarmMember& a) {
    return (r.memberid() == 0 || a.memberid() == r.memberid()) &&
           (r.alarm() == etcdserverpb::NONE || a.alarm() == r.alarm());
  };
  switch (r.action()) {
    case etcdserverpb::AlarmRequest::GET:
      for (const auto& a : alarms_) {
        if (matches(a)) *resp->add_alarms() = a;
      }
      break;
    case etcdserverpb::AlarmRequest::ACTIVATE: {
      if (r.alarm() == etcdserverpb::NONE) break;
      etcdserverpb::AlarmMember m;
      m.set_memberid(r.memberid() ? r.memberid() : member_id_);
      m.set_alarm(r.alarm());
      bool present = false;
      for (const auto& a : alarms_) {
        if (a.memberid() == m.memberid() && a.alarm() == m.alarm()) present = true;
      }
      if (!present) alarms_.push_back(m);
      *resp->add_alarms() = m;
      PersistAlarmsLocked();
      break;
    }
    case etcdserverpb::AlarmRequest::DEACTIVATE: {
      std::vector<etcdserverpb::AlarmMember> keep;
      for (const auto& a : alarms_) {
        if (matches(a)) {
          *resp->add_alarms() = a;
        } else {
          keep.push_back(a);
        }
      }
      alarms_.swap(keep);
      PersistAlarmsLocked();
      break;
    }
    default:
      break;
  }
  return absl::OkStatus();
}

void EtcdServer::MaybeAutoCompact() {
  const std::string& mode = config_.auto_compaction_mode;
  const absl::Time now = clock_->Now();
  int64_t target = 0;
  if (mode == "revision") {
    int64_t keep = 0;
    if (!absl::SimpleAtoi(config_.auto_compaction_retention, &keep) || keep <= 0) {
      return;
    }
    if (now - last_compact_check_ < kRevisionCompactInterval) return;
    last_compact_check_ = now;
    target = kv_->Rev() - keep;
  } else {
    const absl::Duration retention =
        PeriodicRetention(config_.auto_compaction_retention);
    if (retention <= absl::ZeroDuration()) return;
    // Sample the revision every retention/10; compact to the newest sample
    // that is at least `retention` old.
    const absl::Duration every = std::max(retention / 10, absl::Seconds(1));
    if (rev_samples_.empty() || now - rev_samples_.back().first >= every) {
      rev_samples_.emplace_back(now, kv_->Rev());
    }
    while (rev_samples_.size() > 1 && now - rev_samples_[1].first >= retention) {
      rev_samples_.pop_front();
    }
    if (now - rev_samples_.front().first < retention) return;
    target = rev_samples_.front().second;
  }
  if (target <= last_auto_compact_rev_ || target <= kv_->CompactRev()) return;
  last_auto_compact_rev_ = target;
  synodpb::Request req;
  req.mutable_compaction()->set_revision(target);
  SYNOD_LOG(INFO) << "auto-compaction (" << mode << ") at revision " << target;
  Propose(std::move(req), nullptr, [target](absl::Status st) {
    if (!st.ok()) {
      SYNOD_LOG(WARNING) << "auto-compaction at " << target << ": " << st;
    }
  });
}

void EtcdServer::TimerLoop() {
  while (true) {
    {
      absl::MutexLock l(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), kTimerTick)) return;
    }
    TimerTick();
  }
}

void EtcdServer::TimerTick() {
  // Lease expiry: the leader proposes a revoke for each expired lease.
  for (int64_t id : lessor_->Expired(1000)) {
    {
      absl::MutexLock l(&mu_);
      if (!revoking_.insert(id).second) continue;
    }
    synodpb::Request req;
    req.mutable_lease_revoke()->set_id(id);
    Propose(std::move(req), nullptr, [this, id](absl::Status st) {
      if (!st.ok()) {
        absl::MutexLock l(&mu_);
        revoking_.erase(id);
      }
    });
  }
  MaybeAutoCompact();
  const absl::Time now = clock_->Now();
  if (now - last_progress_ >= config_.progress_notify_interval) {
    last_progress_ = now;
    absl::MutexLock l(&mu_);
    for (auto& [id, tick] : tickers_) tick();
  }
}

}  // namespace synod::server
