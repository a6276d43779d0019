// Result and its two renderings (text and JSON) for synod-bench.
// Plain data; not thread-safe.
#ifndef SYNOD_BENCH_SYNOD_BENCH_REPORT_H_
#define SYNOD_BENCH_SYNOD_BENCH_REPORT_H_

#include <cstdint>
#include <map>
#include <string>

#include "bench/synod_bench/histogram.h"
#include "bench/synod_bench/options.h"

namespace synod::bench {

struct Result {
  Options options;
  double elapsed_s = 0;  // First op issued -> last op completed.
  // synod-bench's own CPU time (user + system, all threads) over elapsed_s,
  // in seconds: the share of a machine the load generator took.
  double cpu_s = 0;
  uint64_t ok = 0;  // Successful ops (events, for watch workloads).
  uint64_t errors = 0;
  std::map<std::string, uint64_t> error_counts;  // "CODE: message" -> count.
  Histogram latency;  // Nanoseconds, successful ops only.
  // watch and watch-latency only: the puts that caused the events.
  uint64_t puts_ok = 0;
  Histogram put_latency;

  double Throughput() const { return elapsed_s > 0 ? ok / elapsed_s : 0; }
};

std::string FormatText(const Result& r);
// One line of JSON. Latencies are in milliseconds:
// {"workload":"put","conns":1,...,"ok":N,"errors":N,"elapsed_s":S,
//  "throughput":T,"cpu_s":C,"latency_ms":{"min":..,"mean":..,"p50":..,"p90":..,
//  "p99":..,"p99_9":..,"max":..},"error_counts":{"CODE: msg":N}}
std::string FormatJson(const Result& r);

}  // namespace synod::bench

#endif  // SYNOD_BENCH_SYNOD_BENCH_REPORT_H_
