#include "backend/server/etcd_server.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backend/storage/schema.h"
#include "common/errors.h"
#include "common/etcd_metrics.h"
#include "common/logging.h"
#include "common/metrics.h"

namespace synod::server {

using common::EtcdError;
using common::Err;

namespace {

// etcd's maxGapBetweenApplyAndCommitIndex, used here as the bound on
// proposals waiting for their result.
constexpr size_t kMaxPendingProposals = 5000;
constexpr absl::Duration kTimerTick = absl::Milliseconds(100);
constexpr int kReadThreads = 2;

std::string Hex(uint64_t v) { return absl::StrCat(absl::Hex(v)); }

}  // namespace

EtcdServer::EtcdServer(const ServerConfig& config, common::Clock* clock,
                       Network* network)
    : config_(config),
      clock_(clock ? clock : common::RealClock::Get()),
      network_(network ? network : GrpcNetwork()),
      // etcd's metric names.
      commit_seconds_(common::GetEtcdMetrics().backend_commit_seconds),
      // etcd's etcd_server_proposals_committed_total is a gauge of the
      // commit index (member_metrics.cc); this counts entries applied.
      proposals_committed_(common::DefaultMetrics().GetCounter(
          "synod_server_entries_applied_total",
          "The total number of Raft log entries applied by this member.")),
      waiters_(kMaxPendingProposals) {}

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Open(
    const ServerConfig& config, common::Clock* clock, Network* network) {
  std::unique_ptr<EtcdServer> s(new EtcdServer(config, clock, network));
  absl::Status st = s->Init();
  if (!st.ok()) {
    s->Stop();
    return st;
  }
  return s;
}

absl::Duration EtcdServer::RequestTimeout() const {
  // etcd: 5 s + 2 x election timeout.
  return absl::Seconds(5) + 2 * config_.election_timeout;
}

// Decides who this member is. A data dir that was used before keeps its
// IDs. Otherwise, for a new cluster every member computes every ID from
// --initial-cluster the same way; a member joining an existing cluster asks
// the listed members for the membership and finds itself by peer URL.
absl::Status EtcdServer::InitIdentity(bool* bootstrap) {
  *bootstrap = false;
  auto ids = backend_->Get(storage::kMetaIds);
  if (!ids.ok()) return ids.status();
  if (ids->has_value() && (*ids)->size() == 16) {
    cluster_id_ = storage::GetBigEndian64(**ids);
    member_id_ = storage::GetBigEndian64((*ids)->substr(8));
    absl::Status st = membership_.Load(backend_.get());
    // Killed after recording the IDs but before the first Ready was
    // persisted: bootstrap again (same IDs, same members), as etcd does when
    // it finds no WAL.
    *bootstrap = st.ok() && config_.initial_cluster_state == "new" &&
                 raft_log_->LastIndex() == 0 &&
                 raft_log_->GetInitialState().conf_state.empty();
    return st;
  }
  std::vector<std::string> my_peers = config_.initial_advertise_peer_urls;
  if (my_peers.empty()) my_peers = {"http://localhost:2380"};
  std::string initial = config_.initial_cluster;
  if (initial.empty()) {
    initial = absl::StrCat(config_.name, "=", my_peers.front());
  }
  auto members = ParseInitialCluster(initial);
  if (!members.ok()) return members.status();

  synodpb::MemberRecord rec;
  if (config_.initial_cluster_state == "existing") {
    absl::Status last = absl::UnavailableError("no other member listed");
    bool found = false;
    for (const InitialMember& m : *members) {
      if (m.name == config_.name) continue;
      for (const std::string& url : m.peer_urls) {
        auto info = network_->FetchClusterInfo(url, absl::Seconds(2));
        if (!info.ok()) {
          last = info.status();
          continue;
        }
        rec = info->record();
        cluster_id_ = info->cluster_id();
        found = true;
        break;
      }
      if (found) break;
    }
    if (!found) {
      return absl::UnavailableError(absl::StrCat(
          "cannot join the existing cluster: no member in --initial-cluster "
          "answered (",
          last.message(), ")"));
    }
    for (const auto& m : rec.members()) {
      for (const auto& u : m.peer_urls()) {
        if (std::find(my_peers.begin(), my_peers.end(), u) != my_peers.end()) {
          member_id_ = m.id();
        }
      }
    }
    if (member_id_ == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "this member's peer URLs (", absl::StrJoin(my_peers, ","),
          ") are not in the cluster: add it first with `etcdctl member add`"));
    }
  } else if (config_.initial_cluster_state == "new") {
    std::vector<uint64_t> all;
    for (const InitialMember& m : *members) {
      synodpb::Member* pm = rec.add_members();
      pm->set_id(ComputeMemberId(m.name, m.peer_urls,
                                 config_.initial_cluster_token));
      pm->set_name(m.name);
      for (const auto& u : m.peer_urls) pm->add_peer_urls(u);
      all.push_back(pm->id());
      if (m.name == config_.name) member_id_ = pm->id();
    }
    if (member_id_ == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "couldn't find local name \"", config_.name,
          "\" in the initial cluster configuration"));
    }
    cluster_id_ = ComputeClusterId(all, config_.initial_cluster_token);
    *bootstrap = true;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--initial-cluster-state must be \"new\" or \"existing\", "
                     "not \"",
                     config_.initial_cluster_state, "\""));
  }
  membership_.Reset(rec);
  storage::Batch b;
  b.Put(storage::kMetaIds,
        storage::EncodeU64(cluster_id_) + storage::EncodeU64(member_id_));
  b.Put(kMetaMembers, rec.SerializeAsString());
  return backend_->Write(&b, true);
}

absl::Status EtcdServer::Init() {
  std::error_code ec;
  const std::string member_dir = config_.data_dir + "/member";
  std::filesystem::create_directories(member_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create data dir ", member_dir, ": ", ec.message()));
  }
  storage::BackendOptions backend_options;
  backend_options.env = config_.env;
  auto backend = storage::Backend::Open(member_dir + "/db", backend_options);
  if (!backend.ok()) return backend.status();
  backend_ = std::move(*backend);
  auto log = storage::RaftLogStore::Open(backend_.get());
  if (!log.ok()) return log.status();
  raft_log_ = std::move(*log);

  bool bootstrap = false;
  absl::Status st = InitIdentity(&bootstrap);
  if (!st.ok()) return st;

  auto kv = mvcc::KvStore::Open(backend_.get());
  if (!kv.ok()) return kv.status();
  kv_ = std::move(*kv);
  applied_index_ = kv_->AppliedIndex();

  const int64_t min_ttl = static_cast<int64_t>(std::ceil(
      absl::ToDoubleSeconds(config_.election_timeout) * 3.0 / 2.0));
  lessor_ = std::make_unique<lease::Lessor>(clock_, std::max<int64_t>(min_ttl, 1));
  if (config_.lease_checkpoint) {
    lessor_->SetCheckpointInterval(config_.lease_checkpoint_interval);
  }
  st = lessor_->Restore(backend_.get(), kv_->LeasedKeys());
  if (!st.ok()) return st;
  kv_->SetLeaseHooks(lessor_.get());

  st = alarms_.Load(backend_.get());
  if (!st.ok()) return st;

  auto tokens = auth::NewTokenProvider(config_.auth_token,
                                       config_.auth_token_ttl, clock_);
  if (!tokens.ok()) return tokens.status();
  tokens_ = std::move(*tokens);
  auth::AuthStore::Options ao;
  ao.bcrypt_cost = config_.bcrypt_cost;
  ao.tokens = tokens_.get();
  auto as = auth::AuthStore::Open(backend_.get(), ao);
  if (!as.ok()) return as.status();
  auth_ = std::move(*as);

  watchable_ = std::make_unique<mvcc::WatchableStore>(kv_.get(), clock_);
  auto propose = [this](synodpb::Request req, Done done) {
    Propose(std::move(req), nullptr, std::move(done));
  };
  leases_ = std::make_unique<LeaseLoop>(lessor_.get(), config_.lease_checkpoint,
                                        propose);
  alarm_raiser_ = std::make_unique<AlarmRaiser>(&alarms_, propose);
  Applier::Deps ad;
  ad.on_member_published = [this] { MaybeLogCapabilities(); };
  ad.kv = kv_.get();
  ad.watchable = watchable_.get();
  ad.lessor = lessor_.get();
  ad.alarms = &alarms_;
  ad.membership = &membership_;
  ad.leases = leases_.get();
  ad.auth = auth_.get();
  ad.quota_bytes = config_.quota_backend_bytes;
  ad.db_size = [this] { return db_size_.load(); };
  applier_ = std::make_unique<Applier>(std::move(ad));
  compactor_ = std::make_unique<Compactor>(
      config_.auto_compaction_mode, config_.auto_compaction_retention, clock_,
      [this](int64_t rev) {
        synodpb::Request req;
        req.mutable_compaction()->set_revision(rev);
        SYNOD_LOG(INFO) << "auto-compaction (" << config_.auto_compaction_mode
                        << ") at revision " << rev;
        Propose(std::move(req), nullptr, [rev](absl::Status st) {
          if (!st.ok()) {
            SYNOD_LOG(WARNING) << "auto-compaction at " << rev << ": " << st;
          }
        });
      },
      [this] {
        return Compactor::Revisions{kv_->Rev(), kv_->CompactRev()};
      });
  db_size_ = backend_->DiskSizeBytes();
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  next_lease_id_ = static_cast<int64_t>(((member_id_ & 0x7fff) << 48) |
                                        ((static_cast<uint64_t>(now_ms) &
                                          0xffffffffffULL) << 8));
  // Request IDs only need to be unique among this member's waiters, across
  // restarts too (an entry replayed after a restart must not match a new
  // waiter): start from the clock.
  next_request_id_ = static_cast<uint64_t>(now_ms) << 20;
  last_progress_ = clock_->Now();

  RefreshLearner();
  if (config_.initial_corrupt_check) {
    st = CorruptionChecker::InitialCheck(member_id_, CorruptionDeps(true));
    if (!st.ok()) return st;
  }
  st = StartRaft(bootstrap);
  if (!st.ok()) return st;
  if (config_.corrupt_check_time > absl::ZeroDuration()) {
    corruption_checker_ = std::make_unique<CorruptionChecker>(
        member_id_, CorruptionDeps(false), config_.corrupt_check_time);
    corruption_checker_->Start();
  }

  SYNOD_LOG(INFO) << "member " << Hex(member_id_) << " (" << config_.name
                  << ") of cluster " << Hex(cluster_id_) << " opened "
                  << config_.data_dir << " at revision " << kv_->Rev()
                  << ", applied index " << kv_->AppliedIndex() << ", "
                  << kv_->KeyCount() << " keys, " << lessor_->Count()
                  << " leases, " << membership_.Members().size() << " members";
  reads_ = std::make_unique<ReadGate>(kReadThreads, applied_index_.load());
  apply_thread_ = std::thread([this] { ApplyLoop(); });
  if (config_.run_timer_thread) {
    timer_thread_ = std::thread([this] { TimerLoop(); });
  }
  return absl::OkStatus();
}

absl::Status EtcdServer::StartRaft(bool bootstrap) {
  // A data dir from before Raft (applied entries, no log) starts its log at
  // the applied index, as if a snapshot had been taken there.
  if (raft_log_->LastIndex() == 0 && kv_->AppliedIndex() > 0) {
    raft::Snapshot snap;
    snap.metadata.index = kv_->AppliedIndex();
    snap.metadata.term = 1;
    snap.metadata.conf_state.voters = {member_id_};
    raft::HardState hs{1, 0, kv_->AppliedIndex()};
    absl::Status st = raft_log_->Save(hs, {}, snap);
    if (!st.ok()) return st;
    bootstrap = false;
    if (membership_.Members().empty()) {
      synodpb::MemberRecord rec;
      synodpb::Member* m = rec.add_members();
      m->set_id(member_id_);
      m->set_name(config_.name);
      for (const auto& u : config_.initial_advertise_peer_urls) {
        m->add_peer_urls(u);
      }
      membership_.Reset(rec);
    }
  }
  std::vector<std::string> my_peer_urls = config_.initial_advertise_peer_urls;
  transport_ = network_->NewTransport(member_id_, cluster_id_, my_peer_urls,
                                      MakePeerHandlers());
  for (const synodpb::Member& m : membership_.Members()) {
    if (m.id() == member_id_) continue;
    transport_->AddPeer(m.id(), {m.peer_urls().begin(), m.peer_urls().end()});
  }

  RaftNode::Options o;
  o.id = member_id_;
  if (bootstrap && raft_log_->LastIndex() == 0) {
    for (const synodpb::Member& m : membership_.Members()) {
      o.bootstrap_voters.push_back(m.id());
    }
  }
  o.tick_interval = config_.heartbeat_interval;
  o.election_tick = std::max<int>(
      2, static_cast<int>(config_.election_timeout / config_.heartbeat_interval));
  o.pre_vote = config_.pre_vote;
  o.applied = std::min<uint64_t>(kv_->AppliedIndex(),
                                 raft_log_->GetInitialState().hard_state.commit);
  o.seed = member_id_ ^ static_cast<uint64_t>(absl::ToUnixNanos(clock_->Now()));
  o.log = raft_log_.get();
  o.transport = transport_.get();
  o.clock = clock_;
  RaftNode::Callbacks rcb;
  rcb.apply = [this](raft::Snapshot snap, std::vector<raft::Entry> entries) {
    absl::MutexLock l(&apply_mu_);
    apply_queue_.push_back(ApplyItem{std::move(snap), std::move(entries)});
  };
  rcb.leader_changed = [this](uint64_t lead, uint64_t term) {
    OnLeaderChanged(lead, term);
  };
  rcb.conf_changed = [this](const raft::ConfChange& cc,
                            const raft::ConfState& cs, uint64_t index) {
    OnConfChanged(cc, cs, index);
  };
  raft_ = std::make_unique<RaftNode>(std::move(o), std::move(rcb));
  return raft_->Start();
}

PeerHandlers EtcdServer::MakePeerHandlers() {
  PeerHandlers tcb;
  tcb.on_message = [this](raft::Message m) { raft_->Step(std::move(m)); };
  tcb.on_unreachable = [this](uint64_t id) { raft_->ReportUnreachable(id); };
  tcb.on_snapshot_status = [this](uint64_t id, bool ok) {
    raft_->ReportSnapshot(id, ok);
  };
  tcb.snapshot_source = [this](const std::function<bool(std::string)>& emit) {
    return SnapshotSource(emit);
  };
  tcb.on_snapshot = [this](const raft::Message& m,
                           const std::vector<std::string>& chunks) {
    return ReceiveSnapshot(m, chunks);
  };
  tcb.on_lease_renew = [this](const etcdserverpb::LeaseKeepAliveRequest& req,
                              etcdserverpb::LeaseKeepAliveResponse* resp) {
    if (!raft_->is_leader()) {
      return common::ToGrpcStatus(Err(EtcdError::kNotLeader));
    }
    auto ttl = leases_->KeepAlive(req.id());
    if (!ttl.ok()) return common::ToGrpcStatus(ttl.status());
    resp->set_id(req.id());
    resp->set_ttl(*ttl);
    FillHeader(resp->mutable_header());
    return grpc::Status::OK;
  };
  tcb.on_lease_ttl = [this](const etcdserverpb::LeaseTimeToLiveRequest& req,
                            etcdserverpb::LeaseTimeToLiveResponse* resp) {
    if (!raft_->is_leader()) {
      return common::ToGrpcStatus(Err(EtcdError::kNotLeader));
    }
    return LeaseTimeToLive(req, resp);
  };
  tcb.on_hash_kv = [this](const etcdserverpb::HashKVRequest& req,
                          etcdserverpb::HashKVResponse* resp) {
    auto h = LocalHashKV(req.revision());
    if (!h.ok()) return common::ToGrpcStatus(h.status());
    *resp = *std::move(h);
    return grpc::Status::OK;
  };
  tcb.on_members = [this](synodpb::ClusterInfo* info) {
    info->set_cluster_id(cluster_id_);
    *info->mutable_record() = membership_.Record();
  };
  tcb.on_member_promote = [this](const etcdserverpb::MemberPromoteRequest& req,
                                 etcdserverpb::MemberPromoteResponse* resp) {
    absl::Mutex m;
    bool finished = false;
    absl::Status result;
    PromoteMember(req.id(), [&](absl::Status st) {
      absl::MutexLock l(&m);
      result = st;
      finished = true;
    });
    absl::MutexLock l(&m);
    m.Await(absl::Condition(&finished));
    return common::ToGrpcStatus(result);
  };
  return tcb;
}

EtcdServer::~EtcdServer() { Stop(); }

void EtcdServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (corruption_checker_ != nullptr) corruption_checker_->Stop();
  if (raft_ != nullptr) raft_->Stop();
  if (transport_ != nullptr) transport_->Stop();
  {
    absl::MutexLock l(&apply_mu_);
    stopping_ = true;
  }
  if (apply_thread_.joinable()) apply_thread_.join();
  if (timer_thread_.joinable()) timer_thread_.join();
  if (reads_ != nullptr) reads_->Stop();
  // Whatever still waits gets kStopped.
  waiters_.FailAll(Err(EtcdError::kStopped));
  watchable_.reset();
}

void EtcdServer::ProposeWithWaiter(synodpb::Request req,
                                   google::protobuf::Message* resp, Done done,
                                   bool conf, raft::ConfChange cc) {
  const uint64_t id = ++next_request_id_;
  req.set_id(id);
  req.set_proposer(member_id_);
  const absl::Time deadline = clock_->Now() + RequestTimeout();
  // etcd's proposalsPending and proposalsFailed: a proposal is pending until
  // its waiter is answered, and failed if it timed out, was dropped or was
  // refused for load (not when the request itself is refused when applied).
  const common::EtcdMetrics& metrics = common::GetEtcdMetrics();
  metrics.proposals_pending->Inc();
  done = [&metrics, d = std::move(done)](absl::Status st) {
    metrics.proposals_pending->Dec();
    if (absl::IsUnavailable(st) || absl::IsResourceExhausted(st) ||
        absl::IsDeadlineExceeded(st)) {
      metrics.proposals_failed->Inc();
    }
    d(std::move(st));
  };
  WaitRegistry::Waiter w{resp, std::move(done), deadline};
  if (!waiters_.Register(id, std::move(w))) {
    w.done(Err(EtcdError::kTooManyRequests));
    return;
  }
  auto dropped = [this, id](absl::Status st) { waiters_.Fail(id, st); };
  if (conf) {
    cc.context = req.SerializeAsString();
    raft_->ProposeConfChange(std::move(cc), deadline, dropped);
  } else {
    raft_->Propose(req.SerializeAsString(), deadline, dropped);
  }
}

void EtcdServer::Propose(synodpb::Request req, google::protobuf::Message* resp,
                         Done done) {
  bool stopping;
  {
    absl::MutexLock l(&apply_mu_);
    stopping = stopping_ || removed_;
  }
  if (stopping) {
    done(Err(EtcdError::kStopped));
    return;
  }
  if (!CheckQuota(req, &done)) return;
  ProposeWithWaiter(std::move(req), resp, std::move(done), false, {});
}

void EtcdServer::RefreshLearner() {
  auto m = membership_.Get(member_id_);
  is_learner_ = m.has_value() && m->is_learner();
}

void EtcdServer::LinearizableRead(Done done) {
  if (is_learner()) {
    done(Err(EtcdError::kNotSupportedForLearner));
    return;
  }
  raft_->ReadIndex(
      clock_->Now() + RequestTimeout(),
      [this, done = std::move(done)](absl::StatusOr<uint64_t> index) mutable {
        if (!index.ok()) {
          absl::Status st = index.status();
          reads_->Run([d = std::move(done), st] { d(st); });
          return;
        }
        reads_->WaitApplied(*index, std::move(done));
      });
}

void EtcdServer::OnLeaderChanged(uint64_t lead, uint64_t term) {
  if (lead == member_id_) {
    // etcd's rule: a new leader restarts every lease from its checkpointed
    // remaining TTL (its full TTL without one), extended by an election
    // timeout, so no lease expires because of the election.
    lessor_->Promote(config_.election_timeout);
  } else {
    lessor_->Demote();  // only the leader schedules checkpoints
  }
}

void EtcdServer::OnConfChanged(const raft::ConfChange& cc,
                               const raft::ConfState& cs, uint64_t index) {
  synodpb::Request req;
  if (!cc.context.empty()) req.ParseFromString(cc.context);
  switch (cc.type) {
    case raft::ConfChangeType::kAddNode:
    case raft::ConfChangeType::kAddLearnerNode:
    case raft::ConfChangeType::kUpdateNode:
      if (cc.node_id != member_id_ && req.has_member_attributes()) {
        const auto& urls = req.member_attributes().peer_urls();
        transport_->AddPeer(cc.node_id, {urls.begin(), urls.end()});
      } else if (cc.node_id != member_id_ && !transport_->HasPeer(cc.node_id)) {
        auto m = membership_.Get(cc.node_id);
        if (m.has_value()) {
          transport_->AddPeer(cc.node_id,
                              {m->peer_urls().begin(), m->peer_urls().end()});
        }
      }
      break;
    case raft::ConfChangeType::kRemoveNode:
      if (cc.node_id != member_id_) transport_->RemovePeer(cc.node_id);
      break;
  }
}

bool EtcdServer::AwaitApplied(uint64_t index, absl::Duration timeout) {
  if (applied_index_.load() >= index) return true;
  struct Waiter {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
  };
  auto w = std::make_shared<Waiter>();
  reads_->WaitApplied(index, [w](absl::Status) {
    absl::MutexLock l(&w->mu);
    w->done = true;
  });
  absl::MutexLock l(&w->mu);
  return clock_->AwaitWithTimeout(&w->mu, absl::Condition(&w->done), timeout);
}

uint64_t EtcdServer::AddAuthListener(std::function<void()> on_change) {
  absl::MutexLock l(&auth_listeners_mu_);
  const uint64_t id = next_auth_listener_++;
  auth_listeners_[id] = std::move(on_change);
  return id;
}

void EtcdServer::RemoveAuthListener(uint64_t id) {
  absl::MutexLock l(&auth_listeners_mu_);
  auth_listeners_.erase(id);
}

void EtcdServer::NotifyAuthListeners() {
  absl::MutexLock l(&auth_listeners_mu_);
  for (auto& [id, fn] : auth_listeners_) fn();
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
  return alarms_.Get();
}

void EtcdServer::RaiseAlarm(uint64_t member_id, etcdserverpb::AlarmType type,
                            Done then) {
  alarm_raiser_->Raise(member_id, type, std::move(then));
}

bool EtcdServer::CheckQuota(const synodpb::Request& req, Done* done) {
  if (applier_->QuotaAvailable(req)) return true;
  // As etcd: every member that refuses a write over its own quota raises
  // NOSPACE for itself (proposed once, and not at all when this member's
  // alarm is already raised), and the refusal goes out once the alarm is
  // applied.
  RaiseAlarm(member_id_, etcdserverpb::NOSPACE,
             [d = std::move(*done)](absl::Status) {
               d(Err(EtcdError::kNoSpace));
             });
  return false;
}

absl::StatusOr<etcdserverpb::HashKVResponse> EtcdServer::LocalHashKV(
    int64_t revision) {
  const int64_t cur = kv_->Rev();
  const int64_t rev = revision > 0 ? revision : cur;
  auto h = kv_->HashKV(rev);
  if (!h.ok()) return h.status();
  etcdserverpb::HashKVResponse resp;
  resp.set_hash(*h);
  // etcd's mvcc starts at compacted revision -1, and HashKV says so until
  // the first compaction.
  resp.set_compact_revision(kv_->CompactRev() > 0 ? kv_->CompactRev() : -1);
  // etcd's header.revision is the store's current revision, whatever
  // revision was hashed.
  resp.mutable_header()->set_revision(std::max(cur, kv_->Rev()));
  FillHeader(resp.mutable_header());
  return resp;
}

CorruptionChecker::Deps EtcdServer::CorruptionDeps(bool before_start) {
  CorruptionChecker::Deps d;
  d.local_hash = [this](int64_t rev)
      -> absl::StatusOr<etcdserverpb::HashKVResponse> {
    // Hash at an explicit revision, and report that revision: the peers are
    // asked for the same one.
    const int64_t at = rev > 0 ? rev : kv_->Rev();
    auto h = LocalHashKV(at);
    if (h.ok()) h->mutable_header()->set_revision(at);
    return h;
  };
  d.peer_hashes = [this, before_start](int64_t rev) {
    std::vector<PeerHash> out;
    const absl::Duration timeout = absl::Seconds(2);
    for (const synodpb::Member& m : membership_.Members()) {
      if (m.id() == member_id_) continue;
      PeerHash p;
      p.member_id = m.id();
      if (before_start) {
        p.resp = absl::UnavailableError("member has no peer URL");
        for (const std::string& url : m.peer_urls()) {
          p.resp = network_->FetchHashKV(url, rev, timeout);
          if (p.resp.ok()) break;
        }
      } else {
        etcdserverpb::HashKVRequest req;
        req.set_revision(rev);
        etcdserverpb::HashKVResponse resp;
        grpc::Status st = transport_->HashKV(m.id(), req, &resp, timeout);
        if (st.ok()) {
          p.resp = std::move(resp);
        } else {
          p.resp = common::FromGrpcStatus(st);
        }
      }
      out.push_back(std::move(p));
    }
    return out;
  };
  d.is_leader = [this] { return raft_ != nullptr && raft_->is_leader(); };
  d.raise_corrupt = [this](uint64_t id) {
    RaiseAlarm(id, etcdserverpb::CORRUPT);
  };
  d.clock = clock_;
  return d;
}

std::vector<uint64_t> EtcdServer::TEST_CheckCorruption() {
  CorruptionChecker c(member_id_, CorruptionDeps(false), absl::Seconds(1));
  return c.CheckOnce();
}

void EtcdServer::TEST_ProposeRaw(std::string data) {
  raft_->Propose(std::move(data), clock_->Now() + RequestTimeout(),
                 [](absl::Status) {});
}

uint64_t EtcdServer::AddProgressTicker(std::function<void()> tick) {
  absl::MutexLock l(&tickers_mu_);
  uint64_t id = next_ticker_++;
  tickers_[id] = std::move(tick);
  return id;
}

void EtcdServer::RemoveProgressTicker(uint64_t id) {
  absl::MutexLock l(&tickers_mu_);
  tickers_.erase(id);
}

void EtcdServer::TimerLoop() {
  while (true) {
    {
      absl::MutexLock l(&apply_mu_);
      if (clock_->AwaitWithTimeout(&apply_mu_, absl::Condition(&stopping_),
                                   kTimerTick)) {
        return;
      }
    }
    TimerTick();
  }
}

void EtcdServer::TimerTick() {
  const absl::Time now = clock_->Now();
  waiters_.ExpireBefore(now);
  MaybePublishAttributes();
  // Only the leader expires leases and compacts (etcd's lessor and
  // compactor run on the leader); the revokes and compactions it proposes
  // apply everywhere.
  const bool leader = raft_->is_leader();
  leases_->Tick(leader);
  compactor_->Tick(leader);
  if (now - last_progress_ >= config_.progress_notify_interval) {
    last_progress_ = now;
    absl::MutexLock l(&tickers_mu_);
    for (auto& [id, tick] : tickers_) tick();
  }
}

}  // namespace synod::server
