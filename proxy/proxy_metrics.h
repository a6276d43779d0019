// The proxy's Prometheus series (served on /metrics). Components get a
// ProxyMetrics* and update it on their hot paths; all updates are atomic.
// Ownership: the registry owns the series; ProxyMetrics only points at
// them. Thread-safety: safe for concurrent use.
#ifndef SYNOD_PROXY_PROXY_METRICS_H_
#define SYNOD_PROXY_PROXY_METRICS_H_

#include "common/metrics.h"

namespace synod::proxy {

struct ProxyMetrics {
  explicit ProxyMetrics(common::MetricsRegistry* r)
      : client_watchers(r->GetGauge("synod_proxy_client_watchers",
                                    "Client watchers served by the proxy.")),
        client_watch_streams(
            r->GetGauge("synod_proxy_client_watch_streams",
                        "Client Watch streams open on the proxy.")),
        watch_ranges(r->GetGauge("synod_proxy_watch_ranges",
                                 "Distinct watched ranges.")),
        upstream_watches(r->GetGauge(
            "synod_proxy_upstream_watches",
            "Upstream watch streams to members, catch-up streams included.")),
        catchups(r->GetCounter("synod_proxy_watch_catchups_total",
                               "Catch-up upstream watches started.")),
        slow_canceled(r->GetCounter(
            "synod_proxy_slow_watchers_canceled_total",
            "Client watchers canceled because their stream was too slow.")),
        window_replays(r->GetCounter(
            "synod_proxy_watch_window_replays_total",
            "Client watchers started from the event window.")),
        cache_hits(r->GetCounter("synod_proxy_cache_hits_total",
                                 "Range requests served from the cache.")),
        cache_misses(r->GetCounter("synod_proxy_cache_misses_total",
                                   "Range requests forwarded to a member.")),
        cache_bytes(r->GetGauge("synod_proxy_cache_bytes",
                                "Bytes held by the range cache.")),
        cache_entries(r->GetGauge("synod_proxy_cache_entries",
                                  "Ranges held by the range cache.")),
        keepalive_upstream(r->GetCounter(
            "synod_proxy_lease_keepalives_upstream_total",
            "Lease keep-alive requests sent to members.")),
        keepalive_client(r->GetCounter(
            "synod_proxy_lease_keepalives_client_total",
            "Lease keep-alive requests received from clients.")),
        events_coalescing(
            r->GetCounter("etcd_grpc_proxy_events_coalescing_total",
                          "Total number of events coalescing")) {
    // etcd grpc-proxy's other families (proxy/grpcproxy/metrics.go, gauges
    // all), read from ours at scrape time. The callbacks point into `r`,
    // which owns every series.
    r->AddGaugeCallback("etcd_grpc_proxy_cache_hits_total",
                        "Total number of cache hits", [c = cache_hits] {
                          return static_cast<double>(c->Value());
                        });
    r->AddGaugeCallback("etcd_grpc_proxy_cache_misses_total",
                        "Total number of cache misses", [c = cache_misses] {
                          return static_cast<double>(c->Value());
                        });
    r->AddGaugeCallback("etcd_grpc_proxy_cache_keys_total",
                        "Total number of keys/ranges cached",
                        [g = cache_entries] { return g->Value(); });
    // etcd counts a watcher as coalescing when it shares an upstream watch
    // with others: every watcher of a range but the first.
    r->AddGaugeCallback(
        "etcd_grpc_proxy_watchers_coalescing_total",
        "Total number of current watchers coalescing",
        [w = client_watchers, ranges = watch_ranges] {
          const double n = w->Value() - ranges->Value();
          return n > 0 ? n : 0.0;
        });
  }

  common::Gauge* client_watchers;
  common::Gauge* client_watch_streams;
  common::Gauge* watch_ranges;
  common::Gauge* upstream_watches;
  common::Counter* catchups;
  common::Counter* slow_canceled;
  common::Counter* window_replays;
  common::Counter* cache_hits;
  common::Counter* cache_misses;
  common::Gauge* cache_bytes;
  common::Gauge* cache_entries;
  common::Counter* keepalive_upstream;
  common::Counter* keepalive_client;
  // etcd's: for each upstream response, the watchers it went to but one.
  common::Counter* events_coalescing;
};

}  // namespace synod::proxy

#endif  // SYNOD_PROXY_PROXY_METRICS_H_
