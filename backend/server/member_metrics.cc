#include "backend/server/member_metrics.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/etcd_metrics.h"
#include "common/metrics.h"
#include "common/process_metrics.h"

namespace synod::server {

MemberMetrics::MemberMetrics(EtcdServer* s) {
  common::MetricsRegistry& r = common::DefaultMetrics();
  common::GetEtcdMetrics();  // every counted family, at 0 until used
  common::RegisterProcessMetrics(&r);
  auto add = [this, &r](const char* name, const char* help,
                        std::function<double()> fn) {
    callback_ids_.push_back(r.AddGaugeCallback(name, help, std::move(fn)));
  };
  auto num = [](auto v) { return static_cast<double>(v); };
  add("etcd_server_has_leader",
      "Whether or not a leader exists. 1 is existence, 0 is not.",
      [s] { return s->leader() != 0 ? 1.0 : 0.0; });
  add("etcd_server_is_leader",
      "Whether or not this member is a leader. 1 if is, 0 otherwise.",
      [s] { return s->leader() == s->member_id() ? 1.0 : 0.0; });
  add("etcd_server_is_learner",
      "Whether or not this member is a learner. 1 if is, 0 otherwise.",
      [s] { return s->is_learner() ? 1.0 : 0.0; });
  add("etcd_server_proposals_committed_total",
      "The total number of consensus proposals committed.",
      [s, num] {
        // The Raft node records the commit index after the entries it
        // applies early (raft_node.cc), so it may trail the applied one.
        return num(std::max(s->commit_index(), s->applied_index()));
      });
  add("etcd_server_proposals_applied_total",
      "The total number of consensus proposals applied.",
      [s, num] { return num(s->applied_index()); });
  add("etcd_server_quota_backend_bytes",
      "Current backend storage quota size in bytes.",
      [s, num] { return num(s->config().quota_backend_bytes); });
  // Synod's backend keeps no free pages, so the whole file is in use.
  add("etcd_mvcc_db_total_size_in_bytes",
      "Total size of the underlying database physically allocated in bytes.",
      [s, num] { return num(s->DbSizeBytes()); });
  add("etcd_debugging_mvcc_db_total_size_in_bytes",
      "Total size of the underlying database physically allocated in bytes.",
      [s, num] { return num(s->DbSizeBytes()); });
  add("etcd_mvcc_db_total_size_in_use_in_bytes",
      "Total size of the underlying database logically in use in bytes.",
      [s, num] { return num(s->DbSizeBytes()); });
  add("etcd_debugging_auth_revision", "The current revision of auth store.",
      [s, num] { return num(s->auth_store()->Revision()); });
  // etcd's keysGauge counts live keys (a delete takes one off). Counted at
  // each scrape: O(keys) under the index's read lock.
  add("etcd_debugging_mvcc_keys_total", "Total number of keys.", [s] {
    etcdserverpb::RangeRequest all;
    all.set_key(std::string(1, '\0'));
    all.set_range_end(std::string(1, '\0'));
    all.set_count_only(true);
    etcdserverpb::RangeResponse resp;
    return s->kv()->Range(all, &resp).ok() ? static_cast<double>(resp.count())
                                           : 0.0;
  });
  add("etcd_debugging_mvcc_watcher_total", "Total number of watchers.",
      [s, num] { return num(s->watchable()->WatcherCount()); });
  add("etcd_debugging_mvcc_slow_watcher_total",
      "Total number of unsynced slow watchers.",
      [s, num] { return num(s->watchable()->UnsyncedCount()); });
  add("etcd_debugging_mvcc_current_revision",
      "The current revision of store.", [s, num] { return num(s->kv()->Rev()); });
  add("etcd_debugging_mvcc_compact_revision",
      "The revision of the last compaction in store.",
      [s, num] { return num(s->kv()->CompactRev()); });
  add("etcd_debugging_lease_total", "Leases.",
      [s, num] { return num(s->lessor()->Count()); });
  r.GetGauge("etcd_server_version",
             "Which version is running. 1 for 'server_version' label with "
             "current version.",
             {{"server_version", kServerVersion}})
      ->Set(1);
  r.GetGauge("etcd_server_id",
             "Server or member ID in hexadecimal format. 1 for 'server_id' "
             "label with current ID.",
             {{"server_id", absl::StrCat(absl::Hex(s->member_id()))}})
      ->Set(1);
}

void MemberMetrics::SetClusterVersion(const std::string& major_minor) {
  common::DefaultMetrics()
      .GetGauge("etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with "
                "current cluster version",
                {{"cluster_version", major_minor}})
      ->Set(1);
}

MemberMetrics::~MemberMetrics() {
  for (uint64_t id : callback_ids_) {
    common::DefaultMetrics().RemoveGaugeCallback(id);
  }
}

}  // namespace synod::server
