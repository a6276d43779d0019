// The etcd 3.4 metric families that read a running member's state at scrape
// time (leader, indexes, sizes, watchers, ...), registered as callback gauges
// on common::DefaultMetrics(), plus common::GetEtcdMetrics()'s counted
// families and the process_* families. Used by synod's main and by tests that
// run a member in process.
//
// Ownership: the callbacks hold a raw pointer to the server; the returned
// MemberMetrics must be destroyed (which unregisters them) before the server.
// Thread safety: construction and destruction may happen on any thread; the
// callbacks run on the scraping thread and read only thread-safe accessors.
#ifndef SYNOD_BACKEND_SERVER_MEMBER_METRICS_H_
#define SYNOD_BACKEND_SERVER_MEMBER_METRICS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "backend/server/etcd_server.h"

namespace synod::server {

class MemberMetrics {
 public:
  // Registers the families for `server` (not null; must outlive this).
  explicit MemberMetrics(EtcdServer* server);
  ~MemberMetrics();
  MemberMetrics(const MemberMetrics&) = delete;

  // Sets etcd_cluster_version{cluster_version=`major_minor`} to 1 (e.g.
  // "3.4"), as etcd does once the cluster version is decided.
  void SetClusterVersion(const std::string& major_minor);
  MemberMetrics& operator=(const MemberMetrics&) = delete;

 private:
  std::vector<uint64_t> callback_ids_;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_MEMBER_METRICS_H_
