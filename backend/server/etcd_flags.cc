#include "backend/server/etcd_flags.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <grpc/grpc.h>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

// Member.
ABSL_FLAG(std::string, wal_dir, "",
          "Path to the dedicated wal directory. Synod keeps its log in --data-dir: only '' is "
          "accepted.");
ABSL_FLAG(uint32_t, max_snapshots, 5,
          "Maximum number of snapshot files to retain (0 is unlimited). No effect in Synod.");
ABSL_FLAG(uint32_t, max_wals, 5,
          "Maximum number of wal files to retain (0 is unlimited). No effect in Synod.");
ABSL_FLAG(std::string, backend_batch_interval, "",
          "BackendBatchInterval is the maximum time before commit the backend transaction. "
          "No effect in Synod.");
ABSL_FLAG(int32_t, backend_batch_limit, 0,
          "BackendBatchLimit is the maximum operations before commit the backend transaction. "
          "No effect in Synod.");
ABSL_FLAG(std::string, max_concurrent_streams, "math.MaxUint32",
          "Maximum concurrent streams that each client can open at a time.");
ABSL_FLAG(absl::Duration, grpc_keepalive_min_time, absl::Seconds(5),
          "Minimum duration interval that a client should wait before pinging server.");
ABSL_FLAG(absl::Duration, grpc_keepalive_interval, absl::Hours(2),
          "Frequency duration of server-to-client ping to check if a connection is alive (0 to "
          "disable).");
ABSL_FLAG(absl::Duration, grpc_keepalive_timeout, absl::Seconds(20),
          "Additional duration of wait before closing a non-responsive connection (0 to "
          "disable).");
ABSL_FLAG(bool, initial_election_tick_advance, true,
          "Whether to fast-forward initial election ticks on boot for faster election. No "
          "effect in Synod.");
// Clustering.
ABSL_FLAG(std::string, discovery, "",
          "Discovery URL used to bootstrap the cluster. Not supported: only '' is accepted.");
ABSL_FLAG(std::string, discovery_fallback, "proxy",
          "Expected behavior ('exit' or 'proxy') when discovery services fails. No effect "
          "without --discovery.");
ABSL_FLAG(std::string, discovery_proxy, "",
          "HTTP proxy to use for traffic to discovery service. Not supported: only '' is "
          "accepted.");
ABSL_FLAG(std::string, discovery_srv, "",
          "DNS srv domain used to bootstrap the cluster. Not supported: only '' is accepted.");
ABSL_FLAG(std::string, discovery_srv_name, "",
          "Suffix to the dns srv name queried when bootstrapping. Not supported: only '' is "
          "accepted.");
ABSL_FLAG(bool, enable_v2, false,
          "Accept etcd V2 client requests. Synod serves the v3 API only: only false is "
          "accepted.");
// Security.
ABSL_FLAG(std::string, cors, "*",
          "Comma-separated whitelist of origins for CORS. No effect in Synod.");
ABSL_FLAG(std::string, host_whitelist, "*",
          "Acceptable hostnames from HTTP client requests, if server is not secure. Synod "
          "does not check them: only '*' or '' is accepted.");
ABSL_FLAG(bool, experimental_peer_skip_client_san_verification, false,
          "Skip verification of SAN field in client certificate for peer connections. Only "
          "false is accepted.");
// Profiling and monitoring.
ABSL_FLAG(bool, enable_pprof, false,
          "Enable runtime profiling data via HTTP server. No effect in Synod (no "
          "/debug/pprof).");
ABSL_FLAG(std::string, metrics, "basic",
          "Set level of detail for exported metrics: 'basic' or 'extensive' (the same "
          "families in Synod).");
ABSL_FLAG(bool, enable_grpc_gateway, true, "Enable GRPC gateway.");
// Logging.
ABSL_FLAG(std::string, logger, "capnslog",
          "'capnslog' or 'zap' (Synod writes the same lines with either).");
ABSL_FLAG(std::string, log_outputs, "default",
          "Where the log goes: 'default' or 'stderr', 'stdout', or (with --logger=zap) a file "
          "path. One target.");
ABSL_FLAG(std::string, log_output, "default", "[TO BE DEPRECATED IN v3.5] use '--log-outputs'.");
ABSL_FLAG(bool, debug, false,
          "Enable debug-level logging. [WARN] Will be deprecated in v3.5. Use "
          "'--log-level=debug' instead.");
ABSL_FLAG(std::string, log_package_levels, "",
          "Per-package log levels. Synod has one level (--log-level): only '' is accepted.");
// v2 proxy.
ABSL_FLAG(std::string, proxy, "off",
          "Proxy mode setting ('off', 'readonly' or 'on'). Synod has no v2 proxy: only 'off' "
          "is accepted.");
ABSL_FLAG(uint32_t, proxy_failure_wait, 5000,
          "Time (in milliseconds) an endpoint will be held in a failed state. No effect.");
ABSL_FLAG(uint32_t, proxy_refresh_interval, 30000,
          "Time (in milliseconds) of the endpoints refresh interval. No effect.");
ABSL_FLAG(uint32_t, proxy_dial_timeout, 1000,
          "Time (in milliseconds) for a dial to timeout. No effect.");
ABSL_FLAG(uint32_t, proxy_write_timeout, 5000,
          "Time (in milliseconds) for a write to timeout. No effect.");
ABSL_FLAG(uint32_t, proxy_read_timeout, 0,
          "Time (in milliseconds) for a read to timeout. No effect.");
// Experimental.
ABSL_FLAG(std::string, experimental_enable_v2v3, "",
          "Serve v2 requests through the v3 backend under a given prefix. Only '' is "
          "accepted.");
ABSL_FLAG(std::string, experimental_backend_bbolt_freelist_type, "array",
          "'array' or 'map'. No effect in Synod (no bbolt).");
ABSL_FLAG(int32_t, experimental_compaction_batch_limit, 1000,
          "Sets the maximum revisions deleted in each compaction batch. No effect in Synod.");
ABSL_FLAG(absl::Duration, experimental_warning_apply_duration, absl::Milliseconds(100),
          "Time duration after which a warning is generated if request takes more time. No "
          "effect in Synod.");
ABSL_FLAG(bool, experimental_enable_lease_checkpoint_persist, false,
          "Persist remainingTTL of leases. Synod always does, whatever the value.");
// Unsafe.
ABSL_FLAG(bool, unsafe_no_fsync, false,
          "Disables fsync, unsafe. Synod always syncs: only false is accepted.");
ABSL_FLAG(bool, force_new_cluster, false,
          "Force to create a new one-member cluster: this member goes on alone, with its data "
          "(disaster recovery, as etcd).");

namespace synod::server {
namespace {

absl::Status Unsupported(absl::string_view flag, absl::string_view value,
                         absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, " is not supported: ", why));
}

absl::Status NotOneOf(absl::string_view flag, absl::string_view value,
                      absl::string_view valid) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, ": valid values are ", valid));
}

// A flag that picks something Synod does not have: `off` is whether its
// value turns it off.
struct Refusal {
  absl::string_view flag;
  std::string value;
  bool off;
  absl::string_view why;
};

absl::Status CheckRefused() {
  constexpr absl::string_view kNoDiscovery =
      "Synod bootstraps from --initial-cluster only (no discovery service or DNS SRV)";
  constexpr absl::string_view kV3Only = "Synod serves the v3 API only";
  const std::string proxy = absl::GetFlag(FLAGS_proxy);
  if (proxy != "off" && proxy != "readonly" && proxy != "on") {
    return NotOneOf("proxy", proxy, "off, readonly, on");
  }
  const std::string hosts = absl::GetFlag(FLAGS_host_whitelist);
  const Refusal refusals[] = {
      {"wal-dir", absl::GetFlag(FLAGS_wal_dir), absl::GetFlag(FLAGS_wal_dir).empty(),
       "Synod keeps its Raft log in --data-dir"},
      {"discovery", absl::GetFlag(FLAGS_discovery), absl::GetFlag(FLAGS_discovery).empty(),
       kNoDiscovery},
      {"discovery-proxy", absl::GetFlag(FLAGS_discovery_proxy),
       absl::GetFlag(FLAGS_discovery_proxy).empty(), kNoDiscovery},
      {"discovery-srv", absl::GetFlag(FLAGS_discovery_srv),
       absl::GetFlag(FLAGS_discovery_srv).empty(), kNoDiscovery},
      {"discovery-srv-name", absl::GetFlag(FLAGS_discovery_srv_name),
       absl::GetFlag(FLAGS_discovery_srv_name).empty(), kNoDiscovery},
      {"enable-v2", "true", !absl::GetFlag(FLAGS_enable_v2), kV3Only},
      {"experimental-enable-v2v3", absl::GetFlag(FLAGS_experimental_enable_v2v3),
       absl::GetFlag(FLAGS_experimental_enable_v2v3).empty(), kV3Only},
      {"proxy", proxy, proxy == "off",
       "Synod has no v2 proxy (synod-proxy is its v3 gRPC proxy)"},
      {"host-whitelist", hosts, hosts == "*" || hosts.empty(),
       "Synod does not check the Host header of HTTP requests"},
      {"log-package-levels", absl::GetFlag(FLAGS_log_package_levels),
       absl::GetFlag(FLAGS_log_package_levels).empty(),
       "Synod has one log level for all of it (--log-level)"},
      {"experimental-peer-skip-client-san-verification", "true",
       !absl::GetFlag(FLAGS_experimental_peer_skip_client_san_verification),
       "Synod has no switch to skip checks of peer certificates"},
      {"unsafe-no-fsync", "true", !absl::GetFlag(FLAGS_unsafe_no_fsync),
       "Synod always syncs its log and database"},
  };
  for (const Refusal& r : refusals) {
    if (!r.off) return Unsupported(r.flag, r.value, r.why);
  }
  return absl::OkStatus();
}

// The accepted-with-no-effect flags whose values etcd would refuse.
absl::Status CheckNoOps(EtcdProcessFlags* out) {
  const std::string batch = absl::GetFlag(FLAGS_backend_batch_interval);
  absl::Duration unused;
  if (!batch.empty() && !absl::ParseDuration(batch, &unused)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend-batch-interval=", batch, ": not a duration"));
  }
  const std::string fallback = absl::GetFlag(FLAGS_discovery_fallback);
  if (fallback != "exit" && fallback != "proxy") {
    return NotOneOf("discovery-fallback", fallback, "exit, proxy");
  }
  const std::string metrics = absl::GetFlag(FLAGS_metrics);
  if (metrics != "basic" && metrics != "extensive") {
    return NotOneOf("metrics", metrics, "basic, extensive");
  }
  const std::string freelist = absl::GetFlag(FLAGS_experimental_backend_bbolt_freelist_type);
  if (freelist != "array" && freelist != "map") {
    return NotOneOf("experimental-backend-bbolt-freelist-type", freelist, "array, map");
  }
  if (absl::GetFlag(FLAGS_enable_pprof)) {
    out->warnings.push_back(
        "--enable-pprof=true has no effect: Synod serves no /debug/pprof endpoints");
  }
  return absl::OkStatus();
}

// etcd's flags.Uint32Value (strconv.ParseUint(s, 0, 32)), and the
// "math.MaxUint32" its help shows as the default.
bool ParseUint32(const std::string& s, uint32_t* v) {
  if (s == "math.MaxUint32") {
    *v = UINT32_MAX;
    return true;
  }
  if (s.empty() || s[0] == '-' || s[0] == '+') return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(s.c_str(), &end, 0);
  if (errno != 0 || *end != '\0' || n > UINT32_MAX) return false;
  *v = static_cast<uint32_t>(n);
  return true;
}

int ClampMs(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT_MAX));
}

absl::Status ReadGrpcArgs(EtcdProcessFlags* out) {
  uint32_t streams = 0;
  const std::string s = absl::GetFlag(FLAGS_max_concurrent_streams);
  if (!ParseUint32(s, &streams)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-concurrent-streams=", s, ": not a number in 0..4294967295"));
  }
  if (streams > 0 && streams <= INT_MAX) {
    out->client_grpc_args.emplace_back(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                                       static_cast<int>(streams));
    out->max_concurrent_streams = streams;
  }
  const absl::Duration min_time = absl::GetFlag(FLAGS_grpc_keepalive_min_time);
  const absl::Duration interval = absl::GetFlag(FLAGS_grpc_keepalive_interval);
  const absl::Duration timeout = absl::GetFlag(FLAGS_grpc_keepalive_timeout);
  for (const auto& [flag, d] : {std::pair("grpc-keepalive-min-time", min_time),
                                std::pair("grpc-keepalive-interval", interval),
                                std::pair("grpc-keepalive-timeout", timeout)}) {
    if (d < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, "=", absl::FormatDuration(d), ": must not be negative"));
    }
  }
  // etcd (embed/etcd.go): grpc.KeepaliveEnforcementPolicy{MinTime,
  // PermitWithoutStream: false} and grpc.KeepaliveParams{Time, Timeout}.
  if (min_time > absl::ZeroDuration()) {
    out->client_grpc_args.emplace_back(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                                       ClampMs(min_time));
  }
  if (interval > absl::ZeroDuration() && timeout > absl::ZeroDuration()) {
    out->client_grpc_args.emplace_back(GRPC_ARG_KEEPALIVE_TIME_MS, ClampMs(interval));
    out->client_grpc_args.emplace_back(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ClampMs(timeout));
  }
  return absl::OkStatus();
}

// etcd's setupLogging: --log-outputs (or the deprecated --log-output when
// only it is set) under --logger's rules, one target in Synod.
absl::Status ReadLogging(const std::string& log_level, EtcdProcessFlags* out) {
  const std::string logger = absl::GetFlag(FLAGS_logger);
  if (logger != "capnslog" && logger != "zap") {
    return absl::InvalidArgumentError(
        absl::StrCat("--logger=", logger, ": unknown logger option (capnslog or zap)"));
  }
  std::string outputs = absl::GetFlag(FLAGS_log_outputs);
  if (outputs == "default" && absl::GetFlag(FLAGS_log_output) != "default") {
    outputs = absl::GetFlag(FLAGS_log_output);
  }
  std::vector<std::string> targets;
  for (absl::string_view t : absl::StrSplit(outputs, ',', absl::SkipWhitespace())) {
    if (std::find(targets.begin(), targets.end(), t) == targets.end()) targets.emplace_back(t);
  }
  if (targets.empty()) targets.push_back("default");
  if (targets.size() > 1) {
    return Unsupported("log-outputs", outputs, "Synod writes its log to one target");
  }
  const std::string& target = targets[0];
  if (target == "journal") {
    return Unsupported("log-outputs", target,
                       "Synod does not write to journald (under systemd, stderr goes to the "
                       "journal)");
  }
  const bool std_target = target == "default" || target == "stderr" || target == "stdout";
  if (!std_target && logger == "capnslog") {
    // etcd's words for capnslog.
    return absl::InvalidArgumentError(absl::StrCat(
        "--log-outputs=", target,
        ": unknown log-output (only supports \"default\", \"stderr\", \"stdout\"; "
        "a file needs --logger=zap)"));
  }
  out->log_output = target == "default" || target == "stderr" ? "" : target;
  out->log_level = absl::GetFlag(FLAGS_debug) ? "debug" : log_level;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EtcdProcessFlags> ReadEtcdProcessFlags(const std::string& log_level) {
  EtcdProcessFlags out;
  out.force_new_cluster = absl::GetFlag(FLAGS_force_new_cluster);
  out.enable_grpc_gateway = absl::GetFlag(FLAGS_enable_grpc_gateway);
  for (absl::string_view origin :
       absl::StrSplit(absl::GetFlag(FLAGS_cors), ',', absl::SkipWhitespace())) {
    out.cors.emplace_back(absl::StripAsciiWhitespace(origin));
  }
  for (absl::Status st : {CheckRefused(), CheckNoOps(&out), ReadGrpcArgs(&out),
                          ReadLogging(log_level, &out)}) {
    if (!st.ok()) return st;
  }
  return out;
}

absl::Status RedirectLog(const EtcdProcessFlags& flags) {
  if (flags.log_output.empty()) return absl::OkStatus();
  int fd = STDOUT_FILENO;
  if (flags.log_output != "stdout") {
    fd = ::open(flags.log_output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--log-outputs=", flags.log_output, ": cannot open: ", std::strerror(errno)));
    }
  }
  if (::dup2(fd, STDERR_FILENO) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-outputs=", flags.log_output, ": ", std::strerror(errno)));
  }
  if (fd != STDOUT_FILENO) ::close(fd);
  return absl::OkStatus();
}

}  // namespace synod::server
