// EtcdServer: one Synod member, a small coordinator (etcd's EtcdServer).
// It opens the storage, rebuilds MVCC, lease, alarm and membership state,
// decides who it is in the cluster, and wires the parts that each do one
// job, with one lock or none:
//  * RaftNode (raft_node.h): the raft thread; proposals and peer messages
//    in, one synced log write per Ready, committed entries out;
//  * the apply thread (apply.cc): committed entries in log order through
//    the Applier (applier.h: etcd's applier chain, capped -> backend ->
//    quota) into one unsynced LevelDB batch with the applied index, then
//    answers the WaitRegistry (wait.h), notifies watchers, and lets the
//    ReadGate (read_gate.h) release linearizable reads;
//  * the timer thread: request timeouts, publishing this member's
//    attributes, the LeaseLoop (lease_loop.h: expiry and checkpoints, leader
//    only), the Compactor (compactor.h, leader only) and the watch progress
//    tickers;
//  * AlarmRaiser (alarm_raiser.h) and CorruptionChecker
//    (corruption_checker.h): alarms, proposed through Raft;
//  * the Transport (transport.h) from a Network: gRPC in production, an
//    in-memory fake in tests. All time comes from the injected Clock.
//
// What the apply thread decides comes from replicated state only (the
// AlarmStore), so every member reaches the same state; the one local input,
// the backend size against --quota-backend-bytes, shapes answers and alarm
// proposals only (etcd's quota and capped appliers).
//
// Stopping is Stop(). A member removed from the cluster stops applying and
// calls ServerConfig::on_removed (synod's main shuts the process down).
//
// Thread-safe: every public method may be called from any thread.
// Lock order: apply_mu_ and tickers_mu_ are taken alone; tickers_mu_ is held
// while progress ticks run (-> WatchableStore::mu_ -> sink locks), and
// auth_listeners_mu_ while auth listeners run (-> sink locks, and
// WatchableStore::mu_ when they cancel). The
// parts' own mutexes (WaitRegistry, ReadGate, LeaseLoop, AlarmRaiser,
// snap_mu_, KvStore, Lessor) are leaves.
#ifndef SYNOD_BACKEND_SERVER_ETCD_SERVER_H_
#define SYNOD_BACKEND_SERVER_ETCD_SERVER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "backend/auth/auth_store.h"
#include "backend/auth/token.h"
#include "backend/lease/lessor.h"
#include "backend/mvcc/kv_store.h"
#include "backend/mvcc/watchable_store.h"
#include "backend/server/alarm_store.h"
#include "backend/server/config.h"
#include "backend/server/corruption_checker.h"
#include "backend/server/membership.h"
#include "backend/server/alarm_raiser.h"
#include "backend/server/applier.h"
#include "backend/server/compactor.h"
#include "backend/server/lease_loop.h"
#include "backend/server/raft_node.h"
#include "backend/server/read_gate.h"
#include "backend/server/transport.h"
#include "backend/server/wait.h"
#include "backend/storage/raft_log_store.h"
#include "backend/storage/backend.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "proto/internal.pb.h"
#include "proto/rpc.pb.h"

namespace synod::server {

// The versions Status and /version report: the etcd release we mirror
// (Debian's etcd 3.4.23), and the cluster API level.
inline constexpr char kServerVersion[] = "3.4.23";
inline constexpr char kClusterVersion[] = "3.4.0";

class EtcdServer {
 public:
  // Opens the data dir (creating it), rebuilds MVCC, lease and membership
  // state, bootstraps or joins the cluster (config.initial_cluster and
  // initial_cluster_state, as etcd), and starts the raft, apply and timer
  // threads. Serving peers needs peer_service() registered on the peer
  // listener. `clock` and `network` are not owned and must outlive the
  // server (nullptr: the real clock; GrpcNetwork()). Errors: any
  // storage error with the data dir's path; InvalidArgument for a bad
  // --initial-cluster or a name missing from it; Unavailable when joining
  // and no listed member answers.

  static absl::StatusOr<std::unique_ptr<EtcdServer>> Open(
      const ServerConfig& config, common::Clock* clock = nullptr,
      Network* network = nullptr);
  ~EtcdServer();  // Stop()

  // Stops the threads; pending proposals fail with kStopped. Idempotent.
  void Stop();

  // Proposes `req` through Raft. Once it is committed (durable on a quorum)
  // and applied here, `done` runs on the apply thread with the result; the
  // response was written into `resp`, whose type must match the op
  // (PutResponse for put, ...), and which must stay valid until `done`
  // runs (or until done reports an error). Errors passed to done: the op's
  // etcd errors, kNoSpace when the NOSPACE alarm is raised, kStopped,
  // kTimeout when it was not applied within the request timeout (5 s + 2
  // election timeouts, etcd's), kTooManyRequests when 5,000 proposals
  // already wait (then `done` runs before Propose returns).
  using Done = std::function<void(absl::Status)>;
  void Propose(synodpb::Request req, google::protobuf::Message* resp,
               Done done);

  // A linearizable read barrier (ReadIndex, thesis §6.4): `done` runs on a
  // read thread once this member has applied everything committed when the
  // read began; the caller then reads local state. Errors: kTimeout,
  // kStopped, kNotSupportedForLearner on a learner.
  void LinearizableRead(Done done);

  // Membership changes (etcd's Cluster API), through the log. `done` runs
  // once applied here. Errors: kPeerURLExist, kMemberNotFound,
  // kMemberNotLearner, kLearnerNotReady, kMemberNotEnoughStarted,
  // kTooManyLearners, kTimeout, kStopped.
  void AddMember(const std::vector<std::string>& peer_urls, bool is_learner,
                 std::function<void(absl::StatusOr<synodpb::Member>)> done);
  void RemoveMember(uint64_t id, Done done);
  void PromoteMember(uint64_t id, Done done);
  void UpdateMember(uint64_t id, const std::vector<std::string>& peer_urls,
                    Done done);
  // Hands leadership to `transferee` (etcd's MoveLeader). Errors:
  // kNotLeader here, kBadLeaderTransferee, kTimeout.
  void MoveLeader(uint64_t transferee, Done done);

  // Leases: keep-alive and TimeToLive run on the leader (forwarded there
  // from a follower). Errors: kLeaseNotFound, kNoLeader, kTimeout.
  absl::StatusOr<int64_t> LeaseKeepAlive(int64_t id);
  grpc::Status LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                               etcdserverpb::LeaseTimeToLiveResponse* resp);

  // The Peer service to register on --listen-peer-urls (nullptr on a
  // network without listeners, such as the tests' fake).
  grpc::Service* peer_service() { return transport_->service(); }
  Membership* membership() { return &membership_; }
  uint64_t leader() const { return raft_->leader(); }
  // Whether this member is a learner (as of the last applied conf change).
  // etcd serves a learner only Status and serializable Range.
  bool is_learner() const { return is_learner_.load(); }
  uint64_t commit_index() const { return raft_->commit_index(); }
  // Whether this member's name and client URLs are in the applied
  // membership (published through the log; etcd's ReadyNotify).
  bool attributes_published() const { return attributes_published_.load(); }
  // Logs etcd's "enabled capabilities for version 3.4" once every voting
  // member has published its name: etcd logs it when its cluster version is
  // set, which needs every member's version, and etcd's e2e suite takes it
  // as a sign that the whole cluster is up. Any thread.
  void MaybeLogCapabilities();
  uint64_t applied_index() const { return applied_index_.load(); }

  // Fills cluster_id, member_id and raft_term, and the revision if it is 0.
  void FillHeader(etcdserverpb::ResponseHeader* h) const;

  // A new lease ID, unique on this member (> 0).
  int64_t NewLeaseId();

  // The cluster's raised alarms (replicated state: the same list on every
  // member at the same applied index).
  std::vector<etcdserverpb::AlarmMember> Alarms() const;
  const AlarmStore& alarm_store() const { return alarms_; }

  // Proposes raising alarm `type` for member `member_id` (etcd raises
  // NOSPACE and CORRUPT through Raft). At most one proposal per (member,
  // type) is in flight; failures are logged. `then` (may be empty) runs
  // once that proposal is applied or failed (with its status), or at once
  // with OK when the alarm is already raised.
  void RaiseAlarm(uint64_t member_id, etcdserverpb::AlarmType type,
                  Done then = nullptr);

  // etcd's quota check (v3rpc/quota.go): true when `req` adds no data or
  // fits under --quota-backend-bytes with this member's current size.
  // Otherwise raises NOSPACE for this member (through Raft) unless it is
  // already raised, hands *done to run with kNoSpace once that alarm is
  // applied, and returns false.
  bool CheckQuota(const synodpb::Request& req, Done* done);

  // This member's HashKV at `revision` (0 = the current revision): hash,
  // compact_revision (-1 before the first compaction), and header.revision
  // = the current revision (etcd's Maintenance.HashKV). Errors: kCompacted (revision <= the compacted
  // one), kFutureRev.
  absl::StatusOr<etcdserverpb::HashKVResponse> LocalHashKV(int64_t revision);

  // One periodic corruption check pass now (see CorruptionChecker); the
  // members found corrupt. For tests; nothing when this member is not the
  // leader.
  std::vector<uint64_t> TEST_CheckCorruption();

  // Test hook: proposes `data` as a raw log entry (which need not decode).
  void TEST_ProposeRaw(std::string data);

  // Registers a callback run by the timer thread every progress interval
  // (the watch service's progress notify). Returns an id for removal; once
  // RemoveProgressTicker returns, the callback is not running and never
  // runs again.
  uint64_t AddProgressTicker(std::function<void()> tick);
  void RemoveProgressTicker(uint64_t id);

  // Runs one pass of the timer thread's work (lease expiry, auto-compaction,
  // progress ticks) on the calling thread. For tests with
  // config.run_timer_thread = false.
  void TEST_Tick() { TimerTick(); }

  // Registers a callback run on the apply thread after an applied batch
  // changed the auth state (its revision moved): the watch service then
  // cancels watchers whose permission was revoked. Returns an id for
  // removal; once RemoveAuthListener returns, the callback is not running
  // and never runs again. Callbacks must not block.
  uint64_t AddAuthListener(std::function<void()> on_change);
  void RemoveAuthListener(uint64_t id);

  // Waits until this member has applied log index `index`, at most
  // `timeout`; true when it has (etcd waits so before looking up a simple
  // token issued at that index on another member). Blocks the caller.
  bool AwaitApplied(uint64_t index, absl::Duration timeout);
  // A simple token's random part, picked before proposing Authenticate
  // ("" with JWT tokens).
  std::string NewTokenPrefix() { return tokens_->NewTokenPrefix(); }
  // Users, roles, permissions and tokens (backend/auth/auth_store.h).
  auth::AuthStore* auth_store() { return auth_.get(); }
  mvcc::KvStore* kv() { return kv_.get(); }
  mvcc::WatchableStore* watchable() { return watchable_.get(); }
  lease::Lessor* lessor() { return lessor_.get(); }
  storage::Backend* backend() { return backend_.get(); }
  const ServerConfig& config() const { return config_; }
  uint64_t cluster_id() const { return cluster_id_; }
  uint64_t member_id() const { return member_id_; }
  uint64_t term() const { return raft_ != nullptr ? raft_->term() : 0; }
  int64_t DbSizeBytes() const { return db_size_.load(); }
  common::Clock* clock() const { return clock_; }

 private:
  struct ApplyItem {
    raft::Snapshot snapshot;
    std::vector<raft::Entry> entries;
  };
  EtcdServer(const ServerConfig& config, common::Clock* clock,
             Network* network);
  absl::Status Init();
  absl::Status InitIdentity(bool* bootstrap);
  absl::Status StartRaft(bool bootstrap);
  PeerHandlers MakePeerHandlers();
  absl::Duration RequestTimeout() const;
  // Registers a waiter and proposes `req` (stamped with id and proposer).
  void ProposeWithWaiter(synodpb::Request req, google::protobuf::Message* resp,
                         Done done, bool conf, raft::ConfChange cc);
  void OnLeaderChanged(uint64_t lead, uint64_t term);
  void OnConfChanged(const raft::ConfChange& cc, const raft::ConfState& cs,
                     uint64_t index);

  // apply.cc: the apply thread.
  void ApplyLoop();
  void ApplyEntries(std::vector<raft::Entry>& entries);
  void ApplyConfChangeEntry(const raft::Entry& e, std::vector<Done>* dones);
  absl::Status RestoreSnapshot(const raft::Snapshot& snap);
  absl::Status SnapshotSource(const std::function<bool(std::string)>& emit);
  absl::Status ReceiveSnapshot(const raft::Message& m,
                               const std::vector<std::string>& chunks);
  void MaybeCompactLog();

  // The corruption checker's view of this member and its peers; with
  // `before_start`, peers are reached by URL (the transport is not up).
  CorruptionChecker::Deps CorruptionDeps(bool before_start);

  void TimerLoop();
  void TimerTick();
  void MaybePublishAttributes();
  void RefreshLearner();

  const ServerConfig config_;
  common::Clock* const clock_;
  Network* const network_;
  common::Histogram* const commit_seconds_;  // owned by DefaultMetrics()
  common::Counter* const proposals_committed_;
  uint64_t cluster_id_ = 0;
  uint64_t member_id_ = 0;

  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<storage::RaftLogStore> raft_log_;
  std::unique_ptr<mvcc::KvStore> kv_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<auth::TokenProvider> tokens_;
  std::unique_ptr<auth::AuthStore> auth_;
  std::unique_ptr<mvcc::WatchableStore> watchable_;
  Membership membership_;
  AlarmStore alarms_;
  WaitRegistry waiters_;
  std::unique_ptr<LeaseLoop> leases_;
  std::unique_ptr<AlarmRaiser> alarm_raiser_;
  std::unique_ptr<Applier> applier_;
  std::unique_ptr<Compactor> compactor_;
  std::unique_ptr<ReadGate> reads_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<RaftNode> raft_;
  std::unique_ptr<CorruptionChecker> corruption_checker_;
  std::atomic<int64_t> db_size_{0};
  std::atomic<int64_t> next_lease_id_{0};
  std::atomic<uint64_t> next_request_id_{0};
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<bool> attributes_published_{false};
  // "enabled capabilities for version" was logged (MaybeLogCapabilities).
  std::atomic<bool> capabilities_logged_{false};
  std::atomic<bool> is_learner_{false};
  std::atomic<bool> attributes_in_flight_{false};

  // The apply thread's queue (filled by the raft thread) and the stop flag.
  absl::Mutex apply_mu_;
  std::deque<ApplyItem> apply_queue_ ABSL_GUARDED_BY(apply_mu_);
  bool stopping_ ABSL_GUARDED_BY(apply_mu_) = false;
  bool removed_ ABSL_GUARDED_BY(apply_mu_) = false;

  // Progress tickers; held while they run, so removal waits for a running
  // tick.
  absl::Mutex tickers_mu_;
  absl::flat_hash_map<uint64_t, std::function<void()>> tickers_
      ABSL_GUARDED_BY(tickers_mu_);
  uint64_t next_ticker_ ABSL_GUARDED_BY(tickers_mu_) = 1;

  // Auth listeners; held while they run, so removal waits for a running
  // one.
  absl::Mutex auth_listeners_mu_;
  absl::flat_hash_map<uint64_t, std::function<void()>> auth_listeners_
      ABSL_GUARDED_BY(auth_listeners_mu_);
  uint64_t next_auth_listener_ ABSL_GUARDED_BY(auth_listeners_mu_) = 1;
  void NotifyAuthListeners();

  // Install snapshot: state received for the MsgSnap at this index.
  absl::Mutex snap_mu_;
  uint64_t received_snap_index_ ABSL_GUARDED_BY(snap_mu_) = 0;
  std::vector<std::string> received_snap_ ABSL_GUARDED_BY(snap_mu_);

  absl::Time last_progress_;       // timer thread only
  absl::Time last_size_check_;     // apply thread only
  uint64_t last_log_compact_ = 0;  // apply thread only

  std::thread apply_thread_;
  std::thread timer_thread_;
  bool stopped_ = false;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_ETCD_SERVER_H_
