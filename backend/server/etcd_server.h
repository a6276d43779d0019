// EtcdServer: one Synod member. It owns the storage, the MVCC store, the
// watchable store, the lessor, the membership, the Raft log and the raft
// node, and runs:
//  * the raft thread (RaftNode): proposals and peer messages in, one synced
//    log write per Ready, committed entries out to the apply thread;
//  * the apply thread: applies committed entries in log order to MVCC,
//    lease and membership state, writes them in one LevelDB batch with the
//    applied index (the Raft log is already durable on a quorum, so this
//    write need not be synced: a crash replays the log from the applied
//    index), then completes the waiting proposals, notifies watchers and
//    releases linearizable reads whose ReadIndex it has reached;
//  * the timer thread: lease expiry (leader only; revokes go through the
//    log), lease checkpoints (leader only, when enabled), auto-compaction
//    (leader only), request timeouts, the watch progress ticks, and
//    publishing this member's attributes;
//  * two read threads that serve linearizable reads once released;
//  * with --experimental-corrupt-check-time, the corruption checker's
//    thread (CorruptionChecker: leader-only HashKV comparisons).
//
// What the apply thread decides comes from replicated state only (the
// AlarmStore), so every member reaches the same state; the one local input,
// the backend size against --quota-backend-bytes, shapes answers and alarm
// proposals only (etcd's quota and capped appliers).
//
// Thread-safe: every public method may be called from any thread.
// Lock order: EtcdServer::mu_ -> (WatchableStore::mu_ -> sink locks) ->
// KvStore::mu_ / Lessor::mu_ (leaves). waiters_mu_, read_mu_, lease_mu_ and
// raising_mu_ are leaves.
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
#include "backend/lease/lessor.h"
#include "backend/mvcc/kv_store.h"
#include "backend/mvcc/watchable_store.h"
#include "backend/server/alarm_store.h"
#include "backend/server/config.h"
#include "backend/server/corruption_checker.h"
#include "backend/server/membership.h"
#include "backend/server/peer_transport.h"
#include "backend/server/raft_node.h"
#include "backend/storage/raft_log_store.h"
#include "backend/storage/backend.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "proto/internal.pb.h"
#include "proto/rpc.pb.h"

namespace synod::server {

// The version Status and /version report: the etcd API level we serve.
inline constexpr char kServerVersion[] = "3.4.0";
inline constexpr char kClusterVersion[] = "3.4.0";

class EtcdServer {
 public:
  // Opens the data dir (creating it), rebuilds MVCC, lease and membership
  // state, bootstraps or joins the cluster (config.initial_cluster and
  // initial_cluster_state, as etcd), and starts the raft, apply and timer
  // threads. Serving peers needs peer_service() registered on the peer
  // listener. `clock` is not owned (nullptr: the real clock). Errors: any
  // storage error with the data dir's path; InvalidArgument for a bad
  // --initial-cluster or a name missing from it; Unavailable when joining
  // and no listed member answers.

  static absl::StatusOr<std::unique_ptr<EtcdServer>> Open(
      const ServerConfig& config, common::Clock* clock = nullptr);
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

  // The Peer service to register on --listen-peer-urls.
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
  // (the watch service's progress notify). Returns an id for removal.
  uint64_t AddProgressTicker(std::function<void()> tick);
  void RemoveProgressTicker(uint64_t id);

  // Runs one pass of the timer thread's work (lease expiry, auto-compaction,
  // progress ticks) on the calling thread. For tests with
  // config.run_timer_thread = false.
  void TEST_Tick() { TimerTick(); }

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
  struct Waiter {
    google::protobuf::Message* resp = nullptr;
    Done done;
    absl::Time deadline;
  };
  struct ApplyItem {
    raft::Snapshot snapshot;
    std::vector<raft::Entry> entries;
  };
  EtcdServer(const ServerConfig& config, common::Clock* clock);
  absl::Status Init();
  absl::Status InitIdentity(bool* bootstrap);
  absl::Status StartRaft(bool bootstrap);
  absl::Duration RequestTimeout() const;
  void FailWaiter(uint64_t id, const absl::Status& st);
  std::optional<Waiter> TakeWaiter(uint64_t id);
  // Registers a waiter and proposes `req` (stamped with id and proposer).
  void ProposeWithWaiter(synodpb::Request req, google::protobuf::Message* resp,
                         Done done, bool conf, raft::ConfChange cc);
  void OnLeaderChanged(uint64_t lead, uint64_t term);
  void OnConfChanged(const raft::ConfChange& cc, const raft::ConfState& cs,
                     uint64_t index);
  void RunOnReadThread(std::function<void()> fn);
  void ReadLoop();

  // apply.cc: the apply thread.
  void ApplyLoop();
  void ApplyEntries(std::vector<raft::Entry>& entries);
  void ApplyConfChangeEntry(const raft::Entry& e, std::vector<Done>* dones);
  absl::Status RestoreSnapshot(const raft::Snapshot& snap);
  absl::Status SnapshotSource(const std::function<bool(std::string)>& emit);
  absl::Status ReceiveSnapshot(const raft::Message& m,
                               const std::vector<std::string>& chunks);
  void MaybeCompactLog();
  // Applies one request. Runs on the apply thread.
  // Sets *raise_nospace when this member crossed its quota and no NOSPACE
  // is raised: the caller raises it and answers after it is applied.
  absl::Status Apply(const synodpb::Request& req,
                     google::protobuf::Message* resp, uint64_t index,
                     bool* raise_nospace);
  // The backend stage: MVCC, lease, alarm and membership state.
  absl::Status ApplyOp(const synodpb::Request& req,
                       google::protobuf::Message* resp, uint64_t index);
  // Stops the process: committed entry `e` does not decode as `what`.
  [[noreturn]] void StopOnUndecodable(const raft::Entry& e, const char* what);
  absl::Status ApplyLeaseRevoke(int64_t id);
  absl::Status ApplyAlarm(const etcdserverpb::AlarmRequest& r,
                          etcdserverpb::AlarmResponse* resp);
  // What etcd's applier chain decides before and after the backend applies
  // `req`: capped (alarms) first, then the quota answer.
  absl::Status CheckAlarmsForApply(const synodpb::Request& req) const;
  bool QuotaAvailable(const synodpb::Request& req) const;
  static bool WritesKeys(const synodpb::Request& req);

  // The corruption checker's view of this member and its peers; with
  // `before_start`, peers are reached by URL (the transport is not up).
  CorruptionChecker::Deps CorruptionDeps(bool before_start);

  void TimerLoop();
  void TimerTick();
  void MaybeAutoCompact();
  void MaybePublishAttributes();
  // Leader: renews lease `id` and clears its checkpoint if it has one.
  absl::StatusOr<int64_t> LeaderKeepAlive(int64_t id);
  // Leader, --experimental-enable-lease-checkpoint: proposes due checkpoints.
  void ProposeLeaseCheckpoints();
  void ExpireWaiters();

  const ServerConfig config_;
  common::Clock* const clock_;
  common::Histogram* const commit_seconds_;  // owned by DefaultMetrics()
  common::Counter* const proposals_committed_;
  uint64_t cluster_id_ = 0;
  uint64_t member_id_ = 0;

  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<storage::RaftLogStore> raft_log_;
  std::unique_ptr<mvcc::KvStore> kv_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<mvcc::WatchableStore> watchable_;
  Membership membership_;
  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<RaftNode> raft_;
  std::unique_ptr<CorruptionChecker> corruption_checker_;
  std::atomic<int64_t> db_size_{0};
  std::atomic<int64_t> next_lease_id_{0};
  std::atomic<uint64_t> next_request_id_{0};
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<bool> attributes_published_{false};
  std::atomic<bool> is_learner_{false};
  void RefreshLearner();
  std::atomic<bool> attributes_in_flight_{false};

  absl::Mutex mu_;
  std::deque<ApplyItem> apply_queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<uint64_t, std::function<void()>> tickers_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_ticker_ ABSL_GUARDED_BY(mu_) = 1;


  // Lease proposals in flight (a leaf lock): leases whose revoke, or whose
  // checkpoint clear, is proposed and not yet applied.
  absl::Mutex lease_mu_;
  absl::flat_hash_set<int64_t> revoking_ ABSL_GUARDED_BY(lease_mu_);
  absl::flat_hash_set<int64_t> clearing_checkpoints_ ABSL_GUARDED_BY(lease_mu_);

  absl::Mutex waiters_mu_;
  absl::flat_hash_map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(waiters_mu_);

  // Linearizable reads waiting for the applied index, and the read threads.
  absl::Mutex read_mu_;
  std::multimap<uint64_t, Done> reads_by_index_ ABSL_GUARDED_BY(read_mu_);
  std::deque<std::function<void()>> read_queue_ ABSL_GUARDED_BY(read_mu_);
  bool read_stopping_ ABSL_GUARDED_BY(read_mu_) = false;
  std::vector<std::thread> read_threads_;

  // Install snapshot: state received for the MsgSnap at this index.
  absl::Mutex snap_mu_;
  uint64_t received_snap_index_ ABSL_GUARDED_BY(snap_mu_) = 0;
  std::vector<std::string> received_snap_ ABSL_GUARDED_BY(snap_mu_);

  AlarmStore alarms_;
  // Alarms this member has proposed and not yet seen applied or failed,
  // (member id, type), with what waits for each.
  absl::Mutex raising_mu_;
  absl::flat_hash_map<std::pair<uint64_t, int>, std::vector<Done>> raising_
      ABSL_GUARDED_BY(raising_mu_);

  // Timer-thread state for auto-compaction.
  absl::Time last_compact_check_;
  std::deque<std::pair<absl::Time, int64_t>> rev_samples_;
  int64_t last_auto_compact_rev_ = 0;
  absl::Time last_progress_;
  absl::Time last_size_check_;  // apply thread only
  uint64_t last_log_compact_ = 0;  // apply thread only

  std::thread apply_thread_;
  std::thread timer_thread_;
  bool stopped_ = false;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_ETCD_SERVER_H_
