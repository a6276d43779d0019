#include "bench/synod_bench/report.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace synod::bench {
namespace {

double Ms(int64_t ns) { return ns / 1e6; }

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string LatencyJson(const Histogram& h) {
  return absl::StrFormat(
      "{\"count\":%d,\"min\":%.4f,\"mean\":%.4f,\"p50\":%.4f,\"p90\":%.4f,"
      "\"p99\":%.4f,\"p99_9\":%.4f,\"max\":%.4f}",
      h.Count(), Ms(h.Min()), h.Mean() / 1e6, Ms(h.Percentile(50)),
      Ms(h.Percentile(90)), Ms(h.Percentile(99)), Ms(h.Percentile(99.9)),
      Ms(h.Max()));
}

std::string LatencyLine(absl::string_view label, const Histogram& h) {
  return absl::StrFormat(
      "%s (ms): min %.3f  mean %.3f  p50 %.3f  p90 %.3f  p99 %.3f  "
      "p99.9 %.3f  max %.3f\n",
      label, Ms(h.Min()), h.Mean() / 1e6, Ms(h.Percentile(50)),
      Ms(h.Percentile(90)), Ms(h.Percentile(99)), Ms(h.Percentile(99.9)),
      Ms(h.Max()));
}

// The endpoints as given: https:// before each one dialled with TLS.
std::string Endpoints(const Options& o) {
  std::vector<std::string> out;
  for (size_t i = 0; i < o.endpoints.size(); ++i) {
    const bool tls = i < o.endpoint_tls.size() && o.endpoint_tls[i];
    out.push_back(absl::StrCat(tls ? "https://" : "", o.endpoints[i]));
  }
  return absl::StrJoin(out, ",");
}

}  // namespace

std::string FormatText(const Result& r) {
  const Options& o = r.options;
  std::string out = absl::StrFormat(
      "workload %s  endpoints %s  conns %d  clients %d  threads %d\n",
      WorkloadName(o.workload), Endpoints(o), o.conns, o.clients, o.threads);
  const char* unit = IsWatchWorkload(o.workload) ? "events" : "ops";
  absl::StrAppendFormat(&out, "%d %s ok, %d errors in %.3f s: %.1f %s/s\n",
                        r.ok, unit, r.errors, r.elapsed_s, r.Throughput(),
                        unit);
  out += LatencyLine(IsWatchWorkload(o.workload) ? "event latency" : "latency",
                     r.latency);
  if (r.ok > 0) {
    absl::StrAppendFormat(&out, "synod-bench CPU %.3f s (%.1f us per %s)\n",
                          r.cpu_s, r.cpu_s * 1e6 / r.ok,
                          IsWatchWorkload(o.workload) ? "event" : "op");
  }
  if (IsWatchWorkload(o.workload)) {
    absl::StrAppendFormat(
        &out, "%d watchers on %d streams, %s%s\n", o.watchers, o.watch_streams,
        o.watch_keys == WatchKeys::kDistinct ? "a key each" : "all on key 0",
        o.watch_read ? ", each read its key first" : "");
    absl::StrAppendFormat(&out, "%d puts ok; ", r.puts_ok);
    out += LatencyLine("put latency", r.put_latency);
  }
  for (const auto& [what, n] : r.error_counts) {
    absl::StrAppendFormat(&out, "error x%d: %s\n", n, what);
  }
  return out;
}

std::string FormatJson(const Result& r) {
  const Options& o = r.options;
  std::string out = absl::StrFormat(
      "{\"workload\":\"%s\",\"endpoints\":%s,\"conns\":%d,\"clients\":%d,"
      "\"threads\":%d,\"key_prefix\":%s,\"key_size\":%d,\"val_size\":%d,"
      "\"key_space\":%d,"
      "\"serializable\":%s,\"rate\":%d,\"ok\":%d,\"errors\":%d,"
      "\"elapsed_s\":%.6f,\"throughput\":%.2f,\"cpu_s\":%.3f,"
      "\"latency_ms\":%s",
      WorkloadName(o.workload), JsonString(Endpoints(o)), o.conns, o.clients,
      o.threads, JsonString(o.key_prefix), o.key_size, o.val_size, o.key_space,
      o.serializable ? "true" : "false", o.rate, r.ok, r.errors, r.elapsed_s,
      r.Throughput(), r.cpu_s, LatencyJson(r.latency));
  if (IsWatchWorkload(o.workload)) {
    absl::StrAppendFormat(&out,
                          ",\"watchers\":%d,\"watch_streams\":%d,"
                          "\"watch_keys\":\"%s\",\"watch_read\":%s,"
                          "\"puts_ok\":%d,\"put_latency_ms\":%s",
                          o.watchers, o.watch_streams,
                          o.watch_keys == WatchKeys::kDistinct ? "distinct"
                                                               : "same",
                          o.watch_read ? "true" : "false", r.puts_ok,
                          LatencyJson(r.put_latency));
  }
  out += ",\"error_counts\":{";
  bool first = true;
  for (const auto& [what, n] : r.error_counts) {
    if (!first) out += ",";
    first = false;
    absl::StrAppend(&out, JsonString(what), ":", n);
  }
  return out + "}}";
}

}  // namespace synod::bench
