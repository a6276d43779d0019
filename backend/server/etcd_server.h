// EtcdServer: one Synod member. It owns the storage, the MVCC store, the
// watchable store and the lessor, and runs:
//  * the apply thread: takes committed entries in log order, applies them to
//    MVCC and lease state, commits them in one synced LevelDB batch (group
//    commit: many entries share one fsync), then completes the waiting
//    proposals and notifies watchers. The applied index is written in the
//    same batch, so a restart never applies an entry twice;
//  * the timer thread: lease expiry (revokes go through the log), periodic
//    or revision auto-compaction, and the watch progress ticks.
//
// Until the Raft issue lands, the member commits its own proposals: a
// proposal becomes the next log entry (term 1) and is committed once the
// apply loop's synced batch holds it. The apply path already takes ordered
// entries, so Raft slots in between Propose and the apply loop.
//
// Thread-safe: every public method may be called from any thread.
// Lock order: EtcdServer::mu_ -> (WatchableStore::mu_ -> sink locks) ->
// KvStore::mu_ / Lessor::mu_ (leaves).
#ifndef SYNOD_BACKEND_SERVER_ETCD_SERVER_H_
#define SYNOD_BACKEND_SERVER_ETCD_SERVER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "backend/lease/lessor.h"
#include "backend/mvcc/kv_store.h"
#include "backend/mvcc/watchable_store.h"
#include "backend/server/config.h"
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
  // Opens the data dir (creating it), rebuilds MVCC and lease state and
  // starts the apply and timer threads. `clock` is not owned (nullptr: the
  // real clock). Errors: any storage error, with the data dir's path.
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Open(
      const ServerConfig& config, common::Clock* clock = nullptr);
  ~EtcdServer();  // Stop()

  // Stops the threads; pending proposals fail with kStopped. Idempotent.
  void Stop();

  // Proposes `req`. When it has been applied and made durable, `done` runs
  // on the apply thread with the result; the response was written into
  // `resp`, whose type must match the op (PutResponse for put, ...), and
  // which must stay valid until `done` runs. Errors passed to done: the
  // op's etcd errors, kNoSpace when the NOSPACE alarm is raised, kStopped,
  // kTooManyRequests when 5,000 proposals already wait (then `done` runs
  // before Propose returns, on the caller's thread).
  using Done = std::function<void(absl::Status)>;
  void Propose(synodpb::Request req, google::protobuf::Message* resp,
               Done done);

  // Fills cluster_id, member_id and raft_term, and the revision if it is 0.
  void FillHeader(etcdserverpb::ResponseHeader* h) const;

  // A new lease ID, unique on this member (> 0).
  int64_t NewLeaseId();

  // Active alarms.
  std::vector<etcdserverpb::AlarmMember> Alarms() const;

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
  uint64_t term() const { return 1; }
  int64_t DbSizeBytes() const { return db_size_.load(); }
  common::Clock* clock() const { return clock_; }

 private:
  struct Proposal {
    synodpb::Request req;
    google::protobuf::Message* resp;
    Done done;
  };
  EtcdServer(const ServerConfig& config, common::Clock* clock);
  absl::Status Init();
  void ApplyLoop();
  void TimerLoop();
  void TimerTick();
  // Applies one entry. Runs on the apply thread.
  absl::Status Apply(const synodpb::Request& req,
                     google::protobuf::Message* resp, uint64_t index);
  absl::Status ApplyLeaseRevoke(int64_t id);
  absl::Status ApplyAlarm(const etcdserverpb::AlarmRequest& r,
                          etcdserverpb::AlarmResponse* resp);
  bool WritesKeys(const synodpb::Request& req) const;
  void PersistAlarmsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(alarm_mu_);
  void MaybeAutoCompact();

  const ServerConfig config_;
  common::Clock* const clock_;
  common::Histogram* const commit_seconds_;  // owned by DefaultMetrics()
  common::Counter* const proposals_committed_;
  uint64_t cluster_id_ = 0;
  uint64_t member_id_ = 0;

  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<mvcc::KvStore> kv_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<mvcc::WatchableStore> watchable_;
  std::atomic<int64_t> db_size_{0};
  std::atomic<int64_t> next_lease_id_{0};

  absl::Mutex mu_;
  std::deque<Proposal> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<uint64_t, std::function<void()>> tickers_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_ticker_ ABSL_GUARDED_BY(mu_) = 1;
  // Leases whose revoke is proposed and not yet applied.
  absl::flat_hash_set<int64_t> revoking_ ABSL_GUARDED_BY(mu_);

  mutable absl::Mutex alarm_mu_;
  std::vector<etcdserverpb::AlarmMember> alarms_ ABSL_GUARDED_BY(alarm_mu_);

  // Timer-thread state for auto-compaction.
  absl::Time last_compact_check_;
  std::deque<std::pair<absl::Time, int64_t>> rev_samples_;
  int64_t last_auto_compact_rev_ = 0;
  absl::Time last_progress_;
  absl::Time last_size_check_;  // apply thread only

  std::thread apply_thread_;
  std::thread timer_thread_;
  bool stopped_ = false;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_ETCD_SERVER_H_
