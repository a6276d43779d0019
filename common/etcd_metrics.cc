#include "common/etcd_metrics.h"

namespace synod::common {
namespace {

// etcd 3.4's bucket layouts (prometheus.ExponentialBuckets).
std::vector<double> Ms(double start, int count) {
  return ExponentialBuckets(start, 2, count);
}

EtcdMetrics* Register() {
  MetricsRegistry& r = DefaultMetrics();
  auto counter = [&r](const char* name, const char* help) {
    return r.GetCounter(name, help);
  };
  auto gauge = [&r](const char* name, const char* help) {
    return r.GetGauge(name, help);
  };
  auto histogram = [&r](const char* name, const char* help,
                        std::vector<double> buckets) {
    return r.GetHistogram(name, help, std::move(buckets));
  };
  const std::vector<double> disk = ExponentialBuckets(0.001, 2, 14);
  auto* m = new EtcdMetrics();
  m->wal_fsync_seconds =
      histogram("etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.", disk);
  m->wal_write_bytes = gauge("etcd_disk_wal_write_bytes_total",
                             "Total number of bytes written in WAL.");
  m->backend_commit_seconds =
      histogram("etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.", disk);
  m->backend_defrag_seconds =
      histogram("etcd_disk_backend_defrag_duration_seconds",
                "The latency distribution of backend defragmentation.",
                ExponentialBuckets(0.1, 2, 13));
  m->backend_snapshot_seconds =
      histogram("etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                ExponentialBuckets(0.01, 2, 17));
  m->defrag_inflight = gauge(
      "etcd_disk_defrag_inflight",
      "Whether or not defrag is active on the member. 1 means active, 0 means "
      "not.");

  m->leader_changes = counter("etcd_server_leader_changes_seen_total",
                              "The number of leader changes seen.");
  m->proposals_failed = counter("etcd_server_proposals_failed_total",
                                "The total number of failed proposals seen.");
  m->proposals_pending =
      gauge("etcd_server_proposals_pending",
            "The current number of pending proposals to commit.");
  m->read_indexes_failed =
      counter("etcd_server_read_indexes_failed_total",
              "The total number of failed read indexes seen.");
  m->slow_read_indexes = counter(
      "etcd_server_slow_read_indexes_total",
      "The total number of pending read indexes not in sync with leader's or "
      "timed out read index requests.");
  m->heartbeat_send_failures = counter(
      "etcd_server_heartbeat_send_failures_total",
      "The total number of leader heartbeat send failures (likely overloaded "
      "from slow disk).");
  m->slow_apply = counter(
      "etcd_server_slow_apply_total",
      "The total number of slow apply requests (likely overloaded from slow "
      "disk).");
  m->health_success = counter("etcd_server_health_success",
                              "The total number of successful health checks");
  m->health_failures = counter("etcd_server_health_failures",
                               "The total number of failed health checks");
  m->learner_promote_successes = counter(
      "etcd_server_learner_promote_successes",
      "The total number of successful learner promotions while this member is "
      "leader.");
  m->snapshot_apply_in_progress =
      gauge("etcd_server_snapshot_apply_in_progress_total",
            "1 if the server is applying the incoming snapshot. 0 if none.");

  m->snap_fsync_seconds =
      histogram("etcd_snap_fsync_duration_seconds",
                "The latency distributions of fsync called by snap.", disk);
  m->snap_db_fsync_seconds =
      histogram("etcd_snap_db_fsync_duration_seconds",
                "The latency distributions of fsyncing .snap.db file", disk);
  m->snap_db_save_seconds =
      histogram("etcd_snap_db_save_total_duration_seconds",
                "The total latency distributions of v3 snapshot save",
                ExponentialBuckets(0.1, 2, 10));
  m->snap_save_total_seconds =
      histogram("etcd_debugging_snap_save_total_duration_seconds",
                "The total latency distributions of save called by snapshot.",
                disk);
  m->snap_save_marshalling_seconds = histogram(
      "etcd_debugging_snap_save_marshalling_duration_seconds",
      "The marshalling cost distributions of save called by snapshot.", disk);

  m->mvcc_range = counter("etcd_mvcc_range_total",
                          "Total number of ranges seen by this member.");
  m->mvcc_txn = counter("etcd_mvcc_txn_total",
                        "Total number of txns seen by this member.");
  m->debugging_mvcc_range =
      counter("etcd_debugging_mvcc_range_total",
              "Total number of ranges seen by this member.");
  m->debugging_mvcc_txn = counter("etcd_debugging_mvcc_txn_total",
                                  "Total number of txns seen by this member.");
  // backend/mvcc registers these on first use; registering them here (same
  // help) makes them show from the start, as etcd's.
  counter("etcd_mvcc_put_total", "Total number of puts seen by this member.");
  counter("etcd_debugging_mvcc_put_total",
          "Total number of puts seen by this member.");
  counter("etcd_mvcc_delete_total",
          "Total number of deletes seen by this member.");
  counter("etcd_debugging_mvcc_delete_total",
          "Total number of deletes seen by this member.");
  m->mvcc_events = counter("etcd_debugging_mvcc_events_total",
                           "Total number of events sent by this member.");
  m->watch_streams = gauge("etcd_debugging_mvcc_watch_stream_total",
                           "Total number of watch streams.");
  m->mvcc_pending_events =
      gauge("etcd_debugging_mvcc_pending_events_total",
            "Total number of pending events to be sent.");
  m->mvcc_total_put_size_bytes =
      gauge("etcd_debugging_mvcc_total_put_size_in_bytes",
            "The total size of put kv pairs seen by this member.");
  m->mvcc_hash_seconds =
      histogram("etcd_mvcc_hash_duration_seconds",
                "The latency distribution of storage hash operation.",
                ExponentialBuckets(0.01, 2, 15));
  m->mvcc_hash_rev_seconds = histogram(
      "etcd_mvcc_hash_rev_duration_seconds",
      "The latency distribution of storage hash by revision operation.",
      ExponentialBuckets(0.01, 2, 15));
  m->mvcc_compaction_keys = counter("etcd_debugging_mvcc_db_compaction_keys_total",
                                    "Total number of db keys compacted.");
  m->mvcc_compaction_pause_ms =
      histogram("etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                "Bucketed histogram of db compaction pause duration.",
                Ms(1, 13));
  m->mvcc_compaction_total_ms =
      histogram("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "Bucketed histogram of db compaction total duration.",
                Ms(100, 14));
  m->mvcc_index_compaction_pause_ms = histogram(
      "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
      "Bucketed histogram of index compaction pause duration.", Ms(0.5, 14));
  m->mvcc_open_read_transactions =
      gauge("etcd_mvcc_db_open_read_transactions",
            "The number of currently open read transactions");

  m->lease_granted = counter("etcd_debugging_lease_granted_total",
                             "The total number of granted leases.");
  m->lease_revoked = counter("etcd_debugging_lease_revoked_total",
                             "The total number of revoked leases.");
  m->lease_renewed = counter("etcd_debugging_lease_renewed_total",
                             "The number of renewed leases seen by the leader.");
  m->lease_expired = counter("etcd_debugging_server_lease_expired_total",
                             "The total number of expired leases.");
  m->lease_ttl = histogram("etcd_debugging_lease_ttl_total",
                           "Bucketed histogram of lease TTLs.",
                           ExponentialBuckets(1, 2, 24));

  m->client_grpc_sent_bytes =
      counter("etcd_network_client_grpc_sent_bytes_total",
              "The total number of bytes sent to grpc clients.");
  m->client_grpc_received_bytes =
      counter("etcd_network_client_grpc_received_bytes_total",
              "The total number of bytes received from grpc clients.");
  return m;
}

}  // namespace

const EtcdMetrics& GetEtcdMetrics() {
  static const EtcdMetrics* metrics = Register();
  return *metrics;
}

}  // namespace synod::common
