// Prometheus's standard process_* families (as client_golang's process
// collector exports them for etcd), read from /proc/self at each scrape:
// process_cpu_seconds_total, process_open_fds, process_max_fds,
// process_virtual_memory_bytes, process_virtual_memory_max_bytes,
// process_resident_memory_bytes and process_start_time_seconds.
//
// Thread safety: RegisterProcessMetrics may be called from any thread; the
// registered callbacks only read /proc and take no locks of their own.
#ifndef SYNOD_COMMON_PROCESS_METRICS_H_
#define SYNOD_COMMON_PROCESS_METRICS_H_

#include "common/metrics.h"

namespace synod::common {

// Registers the process_* families on `registry` (callbacks that live as long
// as the registry). Calling it again replaces the callbacks (same values).
// On a system without /proc the families read 0.
void RegisterProcessMetrics(MetricsRegistry* registry);

}  // namespace synod::common

#endif  // SYNOD_COMMON_PROCESS_METRICS_H_
