// EtcdMetrics: the metric families an etcd 3.4 member exports, with etcd's
// names, types, help text, labels and buckets, registered on
// DefaultMetrics(). Code that has the data updates the handles (the Raft log
// times its synced writes into wal_fsync_seconds, the Raft node counts leader
// changes, ...); families Synod has no data for stay at 0 so that etcd's
// dashboards and alerts find every series they query. Values that are read
// rather than counted (leader, sizes, indexes) are callback gauges that
// backend/server/member_metrics.cc registers against a running member.
//
// Ownership: the handles point into DefaultMetrics() and live forever.
// Thread safety: GetEtcdMetrics() may be called from any thread; the handles
// are safe for concurrent use.
#ifndef SYNOD_COMMON_ETCD_METRICS_H_
#define SYNOD_COMMON_ETCD_METRICS_H_

#include "common/metrics.h"

namespace synod::common {

struct EtcdMetrics {
  // etcd_disk_*
  Histogram* wal_fsync_seconds;         // a synced Raft log write, seconds
  Gauge* wal_write_bytes;               // bytes written to the Raft log
  Histogram* backend_commit_seconds;    // an apply batch's commit, seconds
  Histogram* backend_defrag_seconds;    // a Defragment call, seconds
  Histogram* backend_snapshot_seconds;  // a backend snapshot sent, seconds
  Gauge* defrag_inflight;               // 1 while a defrag runs
  // etcd_server_*
  Counter* leader_changes;        // leader seen to change (to a member)
  Counter* proposals_failed;      // proposals that failed or timed out
  Gauge* proposals_pending;       // proposals waiting to be applied
  Counter* read_indexes_failed;   // ReadIndex rounds that failed
  Counter* slow_read_indexes;     // ReadIndex rounds that timed out
  Counter* heartbeat_send_failures;
  Counter* slow_apply;
  Counter* health_success;
  Counter* health_failures;
  Counter* learner_promote_successes;
  Gauge* snapshot_apply_in_progress;
  // etcd_snap_*, etcd_debugging_snap_*
  Histogram* snap_fsync_seconds;
  Histogram* snap_db_fsync_seconds;
  Histogram* snap_db_save_seconds;
  Histogram* snap_save_total_seconds;
  Histogram* snap_save_marshalling_seconds;
  // etcd_mvcc_* (put/delete are counted by backend/mvcc)
  Counter* mvcc_range;
  Counter* mvcc_txn;
  Counter* debugging_mvcc_range;
  Counter* debugging_mvcc_txn;
  Counter* mvcc_events;
  Gauge* watch_streams;  // open gRPC watch streams
  Gauge* mvcc_pending_events;
  Gauge* mvcc_total_put_size_bytes;
  Histogram* mvcc_hash_seconds;
  Histogram* mvcc_hash_rev_seconds;
  Counter* mvcc_compaction_keys;
  Histogram* mvcc_compaction_pause_ms;
  Histogram* mvcc_compaction_total_ms;
  Histogram* mvcc_index_compaction_pause_ms;
  Gauge* mvcc_open_read_transactions;
  // etcd_debugging_lease_*, etcd_debugging_server_lease_expired_total
  Counter* lease_granted;
  Counter* lease_revoked;
  Counter* lease_renewed;
  Counter* lease_expired;
  Histogram* lease_ttl;
  // etcd_network_client_grpc_*
  Counter* client_grpc_sent_bytes;
  Counter* client_grpc_received_bytes;
};

// Registers every family on first call and returns the handles. Never null
// members; the same object on every call.
const EtcdMetrics& GetEtcdMetrics();

}  // namespace synod::common

#endif  // SYNOD_COMMON_ETCD_METRICS_H_
