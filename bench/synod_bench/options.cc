#include "bench/synod_bench/options.h"

#include <algorithm>
#include <optional>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

ABSL_FLAG(std::string, endpoints, "127.0.0.1:2379",
          "Comma-separated gRPC endpoints (host:port, http://host:port or "
          "https://host:port); connection i uses endpoint i mod n. https:// "
          "is TLS; host:port is TLS when a TLS flag is given.");
ABSL_FLAG(std::string, cacert, "",
          "Verify the server's certificate with this CA bundle (PEM); empty "
          "= the system roots.");
ABSL_FLAG(std::string, cert, "",
          "Client certificate (PEM) to present, with --key.");
ABSL_FLAG(std::string, key, "", "Private key (PEM) of --cert.");
ABSL_FLAG(bool, insecure_skip_tls_verify, false,
          "TLS without verifying the server's certificate or name.");
ABSL_FLAG(std::string, user, "",
          "Authenticate as this user: name:password, or name with "
          "--password (etcdctl's flags); the token goes in every call's "
          "\"token\" metadata. Empty = anonymous.");
ABSL_FLAG(std::string, password, "",
          "The --user's password; then --user is the whole user name.");
ABSL_FLAG(int32_t, conns, 1, "Number of gRPC connections.");
ABSL_FLAG(int32_t, clients, 1,
          "Number of concurrent clients (requests or streams in flight), "
          "spread over the connections.");
ABSL_FLAG(int32_t, threads, 0,
          "Completion-queue threads in synod-bench (0 = number of cores).");
ABSL_FLAG(int64_t, total, 10000,
          "Total operations (puts for watch, watch-latency); 0 = bounded by "
          "--duration only.");
ABSL_FLAG(absl::Duration, duration, absl::ZeroDuration(),
          "Stop after this long (e.g. 10s); 0 = bounded by --total only. With "
          "both, the first bound reached ends the run.");
ABSL_FLAG(int32_t, key_size, 8, "Key size in bytes.");
ABSL_FLAG(int32_t, val_size, 8, "Value size in bytes.");
ABSL_FLAG(std::string, key_prefix, "",
          "Prepended to every key read, written or watched (e.g. /cfg/); the "
          "number after it is still --key-size digits.");
ABSL_FLAG(int64_t, key_space, 1,
          "Number of distinct keys (with --watch-keys=distinct: --watchers).");
ABSL_FLAG(bool, seq_keys, false,
          "Use keys 0, 1, 2, ... (mod --key-space) instead of random ones.");
ABSL_FLAG(int64_t, rate, 0,
          "Target operations per second over all clients (0 = as fast as "
          "possible). Required for watch-latency (puts per second).");
ABSL_FLAG(std::string, consistency, "l",
          "range: 'l' (linearizable) or 's' (serializable).");
ABSL_FLAG(int32_t, txn_ops, 1, "txn-put: puts per transaction.");
ABSL_FLAG(int32_t, watchers, 100,
          "watch, watch-latency: watchers on the key, in all.");
ABSL_FLAG(int32_t, watch_streams, 10,
          "watch, watch-latency: watch streams the watchers are spread over.");
ABSL_FLAG(int32_t, watch_per_stream, 0,
          "watch, watch-latency: watchers per stream (then --watchers is "
          "--watch-streams times this; do not give both); 0 = use "
          "--watchers.");
ABSL_FLAG(absl::Duration, watch_idle, absl::ZeroDuration(),
          "watch, watch-latency: once every watcher is created (announced on "
          "stderr), hold them idle this long before the first put.");
ABSL_FLAG(std::string, watch_keys, "same",
          "watch, watch-latency: 'same' (every watcher watches key 0) or "
          "'distinct' (watcher i watches key i, 0 <= i < --watchers; each put "
          "goes to one of those keys, in turn with --seq-keys, else at "
          "random, and is one event for one watcher).");
ABSL_FLAG(bool, watch_read, false,
          "watch, watch-latency: each watcher first reads its key (a Range, "
          "--consistency) and watches from the revision after that read, as "
          "a service reads its configuration and then watches it.");
ABSL_FLAG(int64_t, lease_ttl, 60, "lease-keepalive: TTL of each lease (s).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "Per-request deadline.");
ABSL_FLAG(uint64_t, seed, 1, "Seed for random keys and values.");
ABSL_FLAG(bool, json, false, "Print the result as one JSON object.");
ABSL_FLAG(bool, progress, true,
          "Draw a progress bar on stderr when it is a terminal.");

namespace synod::bench {
namespace {

// Every flag synod-bench owns, in --help order. Only these are accepted.
// clang-format off
constexpr const char* kFlags[] = {
    "endpoints",   "cacert",     "cert",          "key",
    "insecure_skip_tls_verify", "user", "password",
    "conns",       "clients",    "threads",       "total",
    "duration",    "key_size",   "val_size",      "key_prefix",
    "key_space",   "seq_keys",   "rate",          "consistency",
    "txn_ops",     "watchers",   "watch_streams", "watch_per_stream",
    "watch_idle",  "watch_keys", "watch_read",    "lease_ttl",   "timeout",    "seed",          "json",
    "progress"};
// clang-format on

bool IsBoolFlag(absl::string_view name) {
  return name == "seq_keys" || name == "json" || name == "progress" ||
         name == "insecure_skip_tls_verify" || name == "watch_read";
}

bool Known(absl::string_view name) {
  return std::find(std::begin(kFlags), std::end(kFlags), name) !=
         std::end(kFlags);
}

// The user's spelling of a flag, with dashes: --key-size.
std::string Dashed(absl::string_view name) {
  std::string s = absl::StrCat("--", name);
  std::replace(s.begin(), s.end(), '_', '-');
  return s;
}

absl::Status Bad(absl::string_view flag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(Dashed(flag), ": ", what));
}

template <typename T>
absl::Status AtLeast(absl::string_view flag, T value, T min) {
  if (value >= min) return absl::OkStatus();
  return Bad(flag,
             absl::StrCat("must be at least ", min, " (got ", value, ")"));
}

template <typename T>
absl::Status AtMost(absl::string_view flag, T value, T max) {
  if (value <= max) return absl::OkStatus();
  return Bad(flag, absl::StrCat("must be at most ", max, " (got ", value, ")"));
}

absl::Status SetFlag(const std::string& name, const std::string& value) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr) return Bad(name, "internal error: flag not registered");
  std::string error;
  if (!flag->ParseFrom(value, &error)) {
    std::string want = "a number";
    if (IsBoolFlag(name)) want = "true or false";
    if (name == "duration" || name == "timeout" || name == "watch_idle") {
      want = "a duration such as 500ms, 10s or 1m";
    }
    return Bad(name,
               absl::StrCat("invalid value '", value, "' (want ", want, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Workload> ParseWorkload(absl::string_view s) {
  if (s == "put") return Workload::kPut;
  if (s == "range") return Workload::kRange;
  if (s == "txn-put") return Workload::kTxnPut;
  if (s == "watch") return Workload::kWatch;
  if (s == "watch-latency") return Workload::kWatchLatency;
  if (s == "lease-keepalive") return Workload::kLeaseKeepAlive;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown workload '", s,
      "' (want put, range, txn-put, watch, watch-latency or "
      "lease-keepalive)"));
}

// Fills o->endpoints and o->endpoint_tls from --endpoints; `tls_flags`: a
// TLS flag was given, so endpoints without a scheme use TLS (etcdctl's rule).
absl::Status ParseEndpoints(absl::string_view s, bool tls_flags, Options* o) {
  std::vector<std::string>& out = o->endpoints;
  for (absl::string_view e : absl::StrSplit(s, ',', absl::SkipWhitespace())) {
    e = absl::StripAsciiWhitespace(e);
    bool tls = tls_flags;
    if (absl::ConsumePrefix(&e, "https://")) {
      tls = true;
    } else if (absl::ConsumePrefix(&e, "http://")) {
      tls = false;
    }
    absl::ConsumeSuffix(&e, "/");
    size_t colon = e.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || colon == 0 ||
        !absl::SimpleAtoi(e.substr(colon + 1), &port) || port <= 0 ||
        port > 65535) {
      return Bad(
          "endpoints",
          absl::StrCat("'", e, "' is not host:port (e.g. 127.0.0.1:2379)"));
    }
    out.emplace_back(e);
    o->endpoint_tls.push_back(tls);
  }
  if (out.empty()) return Bad("endpoints", "needs at least one host:port");
  return absl::OkStatus();
}

// Which of the flags whose meaning depends on others were on the command
// line.
struct Given {
  bool watchers = false;
  bool key_space = false;
};

// Reads the flags into Options and checks every value.
absl::StatusOr<Options> FromFlags(Workload workload, Given given) {
  Options o;
  o.workload = workload;
  o.cacert = absl::GetFlag(FLAGS_cacert);
  o.cert = absl::GetFlag(FLAGS_cert);
  o.key = absl::GetFlag(FLAGS_key);
  o.insecure_skip_tls_verify = absl::GetFlag(FLAGS_insecure_skip_tls_verify);
  if (o.cert.empty() != o.key.empty()) {
    return o.cert.empty() ? Bad("key", "given without --cert")
                          : Bad("cert", "given without --key");
  }
  // etcdctl's rule: with --password, --user is the name as given; without,
  // it is split at the first ':'.
  o.user = absl::GetFlag(FLAGS_user);
  o.password = absl::GetFlag(FLAGS_password);
  if (!o.password.empty()) {
    if (o.user.empty()) return Bad("password", "given without --user");
  } else if (!o.user.empty()) {
    std::vector<std::string> parts =
        absl::StrSplit(o.user, absl::MaxSplits(':', 1));
    if (parts.size() < 2) {
      return Bad("user", absl::StrCat("no password for '", o.user,
                                      "' (--user=name:password or "
                                      "--password)"));
    }
    o.user = parts[0];
    o.password = parts[1];
  }
  if (absl::GetFlag(FLAGS_user).size() > 0 && o.user.empty()) {
    return Bad("user", "empty user name");
  }
  const bool tls_flags =
      !o.cacert.empty() || !o.cert.empty() || o.insecure_skip_tls_verify;
  if (absl::Status s =
          ParseEndpoints(absl::GetFlag(FLAGS_endpoints), tls_flags, &o);
      !s.ok()) {
    return s;
  }
  o.conns = absl::GetFlag(FLAGS_conns);
  o.clients = absl::GetFlag(FLAGS_clients);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.total = absl::GetFlag(FLAGS_total);
  o.duration = absl::GetFlag(FLAGS_duration);
  o.key_size = absl::GetFlag(FLAGS_key_size);
  o.val_size = absl::GetFlag(FLAGS_val_size);
  o.key_prefix = absl::GetFlag(FLAGS_key_prefix);
  o.key_space = absl::GetFlag(FLAGS_key_space);
  o.seq_keys = absl::GetFlag(FLAGS_seq_keys);
  o.rate = absl::GetFlag(FLAGS_rate);
  o.txn_ops = absl::GetFlag(FLAGS_txn_ops);
  o.watchers = absl::GetFlag(FLAGS_watchers);
  o.watch_streams = absl::GetFlag(FLAGS_watch_streams);
  o.watch_per_stream = absl::GetFlag(FLAGS_watch_per_stream);
  o.watch_idle = absl::GetFlag(FLAGS_watch_idle);
  o.watch_read = absl::GetFlag(FLAGS_watch_read);
  o.lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  o.timeout = absl::GetFlag(FLAGS_timeout);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.json = absl::GetFlag(FLAGS_json);
  o.progress = absl::GetFlag(FLAGS_progress);

  const std::string watch_keys = absl::GetFlag(FLAGS_watch_keys);
  if (watch_keys == "same") {
    o.watch_keys = WatchKeys::kSame;
  } else if (watch_keys == "distinct") {
    o.watch_keys = WatchKeys::kDistinct;
  } else {
    return Bad("watch_keys",
               absl::StrCat("must be 'same' or 'distinct' (got '", watch_keys,
                            "')"));
  }

  const std::string consistency = absl::GetFlag(FLAGS_consistency);
  if (consistency == "l") {
    o.serializable = false;
  } else if (consistency == "s") {
    o.serializable = true;
  } else {
    return Bad("consistency", absl::StrCat("must be 'l' (linearizable) or 's' "
                                           "(serializable) (got '",
                                           consistency, "')"));
  }

  constexpr int kMaxConcurrency = 100000;
  absl::Status st;
  auto check = [&st](absl::Status s) {
    if (st.ok()) st = std::move(s);
  };
  check(AtLeast("conns", o.conns, 1));
  check(AtMost("conns", o.conns, 10000));
  check(AtLeast("clients", o.clients, 1));
  check(AtMost("clients", o.clients, kMaxConcurrency));
  check(AtLeast("threads", o.threads, 0));
  check(AtMost("threads", o.threads, 256));
  check(AtLeast<int64_t>("total", o.total, 0));
  check(AtLeast("key_size", o.key_size, 1));
  check(AtMost("key_size", o.key_size, 1 << 20));
  check(AtLeast("val_size", o.val_size, 0));
  check(AtMost("val_size", o.val_size, 16 << 20));
  check(AtLeast<int64_t>("key_space", o.key_space, 1));
  check(AtLeast<int64_t>("rate", o.rate, 0));
  check(AtLeast("txn_ops", o.txn_ops, 1));
  check(AtMost("txn_ops", o.txn_ops, 10000));
  check(AtLeast("watchers", o.watchers, 1));
  check(AtMost("watchers", o.watchers, 1000000));
  check(AtLeast("watch_streams", o.watch_streams, 1));
  check(AtLeast("watch_per_stream", o.watch_per_stream, 0));
  check(AtLeast<int64_t>("lease_ttl", o.lease_ttl, 1));
  if (!st.ok()) return st;

  if (o.duration < absl::ZeroDuration()) {
    return Bad("duration", absl::StrCat("must not be negative (got ",
                                        absl::FormatDuration(o.duration), ")"));
  }
  if (o.timeout <= absl::ZeroDuration()) {
    return Bad("timeout", absl::StrCat("must be positive (got ",
                                       absl::FormatDuration(o.timeout), ")"));
  }
  if (o.total == 0 && o.duration == absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--total and --duration are both 0: the run would never end; set one");
  }
  if (o.clients < o.conns) {
    return Bad("clients", absl::StrCat("must be at least --conns (", o.conns,
                                       "), got ", o.clients));
  }
  if (o.watch_idle < absl::ZeroDuration()) {
    return Bad("watch_idle",
               absl::StrCat("must not be negative (got ",
                            absl::FormatDuration(o.watch_idle), ")"));
  }
  if (o.watch_per_stream > 0) {
    if (given.watchers) {
      return Bad("watch_per_stream",
                 "give --watchers or --watch-per-stream, not both");
    }
    const int64_t n = int64_t{o.watch_streams} * o.watch_per_stream;
    if (n > 1000000) {
      return Bad("watch_per_stream",
                 absl::StrCat("--watch-streams x --watch-per-stream is ", n,
                              " watchers; at most 1000000"));
    }
    o.watchers = static_cast<int>(n);
  }
  if (!IsWatchWorkload(workload)) {
    constexpr const char* kOnlyWatch =
        "only for the watch and watch-latency workloads";
    if (o.watch_idle > absl::ZeroDuration()) return Bad("watch_idle", kOnlyWatch);
    if (o.watch_keys != WatchKeys::kSame) return Bad("watch_keys", kOnlyWatch);
    if (o.watch_read) return Bad("watch_read", kOnlyWatch);
  }
  if (o.watch_keys == WatchKeys::kDistinct) {
    if (given.key_space) {
      return Bad("key_space",
                 "--watch-keys=distinct watches --watchers keys; do not give "
                 "--key-space");
    }
    o.key_space = o.watchers;
  }
  if (o.watch_streams > o.watchers) {
    return Bad("watch_streams",
               absl::StrCat("must be at most --watchers (", o.watchers,
                            "), got ", o.watch_streams));
  }
  // Keys are decimal, zero-padded to key_size: key_size digits hold
  // 10^key_size distinct keys.
  if (o.key_size < 19) {
    int64_t max_keys = 1;
    for (int i = 0; i < o.key_size; ++i) max_keys *= 10;
    if (o.key_space > max_keys) {
      const bool distinct = o.watch_keys == WatchKeys::kDistinct;
      return Bad(
          distinct ? "watchers" : "key_space",
          absl::StrCat(o.key_space, " keys",
                       distinct ? " (--watch-keys=distinct)" : "",
                       " do not fit in --key-size ", o.key_size, " (at most ",
                       max_keys, " distinct keys)"));
    }
  }
  if (workload == Workload::kTxnPut && o.txn_ops > o.key_space) {
    return Bad("txn_ops", absl::StrCat("needs as many keys: --key-space is ",
                                       o.key_space, ", got ", o.txn_ops));
  }
  if (workload == Workload::kWatchLatency && o.rate == 0) {
    return Bad("rate", "watch-latency needs a put rate (e.g. --rate=100)");
  }
  if (IsWatchWorkload(workload) && o.val_size < 8) {
    return Bad("val_size",
               absl::StrCat(WorkloadName(workload),
                            " carries an 8-byte send time in each value: must "
                            "be at least 8 (got ",
                            o.val_size, ")"));
  }
  if (o.threads == 0) {
    o.threads = std::max(1u, std::thread::hardware_concurrency());
  }
  return o;
}

}  // namespace

const char* WorkloadName(Workload w) {
  switch (w) {
    case Workload::kPut:
      return "put";
    case Workload::kRange:
      return "range";
    case Workload::kTxnPut:
      return "txn-put";
    case Workload::kWatch:
      return "watch";
    case Workload::kWatchLatency:
      return "watch-latency";
    case Workload::kLeaseKeepAlive:
      return "lease-keepalive";
  }
  return "?";
}

absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args) {
  // Start from the defaults, so that a second call does not inherit the
  // values of the first.
  for (const char* name : kFlags) {
    absl::CommandLineFlag* f = absl::FindCommandLineFlag(name);
    std::string ignored;
    if (f != nullptr) f->ParseFrom(f->DefaultValue(), &ignored);
  }
  std::vector<std::string> positional;
  bool flags_done = false;
  Given given;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (flags_done || a.size() < 2 || a[0] != '-' || a == "-") {
      positional.push_back(a);
      continue;
    }
    if (a == "--") {
      flags_done = true;
      continue;
    }
    if (a == "-h" || a == "--help" || a == "-help" || a == "--helpfull") {
      Options o;
      o.help = true;
      return o;
    }
    // -flag and --flag; name=value or name value; dashes become underscores.
    absl::string_view body = a;
    body.remove_prefix(absl::StartsWith(body, "--") ? 2 : 1);
    size_t eq = body.find('=');
    std::string name(body.substr(0, eq));
    std::replace(name.begin(), name.end(), '-', '_');
    std::optional<std::string> value;
    if (eq != absl::string_view::npos) value = std::string(body.substr(eq + 1));
    if (!Known(name)) {
      // --noflag for booleans, as absl accepts.
      if (absl::StartsWith(name, "no") && IsBoolFlag(name.substr(2)) &&
          !value.has_value()) {
        if (absl::Status s = SetFlag(name.substr(2), "false"); !s.ok())
          return s;
        continue;
      }
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", a.substr(0, a.find('=')),
                       " (synod-bench --help lists the flags)"));
    }
    if (name == "watchers") given.watchers = true;
    if (name == "key_space") given.key_space = true;
    if (!value.has_value()) {
      if (IsBoolFlag(name)) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return Bad(name, "needs a value");
      }
    }
    if (absl::Status s = SetFlag(name, *value); !s.ok()) return s;
  }
  if (positional.empty()) {
    return absl::InvalidArgumentError(
        "no workload given: synod-bench [flags] <put|range|txn-put|watch|"
        "watch-latency|lease-keepalive>");
  }
  if (positional.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("one workload at a time; got '",
                     absl::StrJoin(positional, "' '"), "'"));
  }
  auto w = ParseWorkload(positional[0]);
  if (!w.ok()) return w.status();
  return FromFlags(*w, given);
}

std::string Usage() {
  std::string out =
      "synod-bench: load generator for the etcd v3 API (Synod or etcd).\n\n"
      "usage: synod-bench [flags] <workload>\n\n"
      "workloads:\n"
      "  put              Put one key per op.\n"
      "  range            Range (get) one key per op; --consistency l|s.\n"
      "  txn-put          Txn with --txn-ops puts per op.\n"
      "  watch            Fan-out: --watchers watch one key over "
      "--watch-streams\n"
      "                   streams (or --watch-per-stream each); --total puts "
      "as fast\n"
      "                   as --clients allow (or at --rate); one op is one "
      "event\n"
      "                   received; latency = put sent -> event received.\n"
      "  watch-latency    --watchers watch one key over --watch-streams "
      "streams;\n"
      "                   puts at --rate; latency = put sent -> event "
      "received.\n"
      "                   Both watch workloads take --watch-keys=distinct "
      "(a key\n"
      "                   per watcher) and --watch-read (read, then watch "
      "from\n"
      "                   the revision after the read).\n"
      "  lease-keepalive  One lease and keep-alive stream per client; one "
      "op is\n"
      "                   a keep-alive request and its response.\n\n"
      "flags (dashes and underscores are interchangeable):\n";
  for (const char* name : kFlags) {
    absl::CommandLineFlag* f = absl::FindCommandLineFlag(name);
    if (f == nullptr) continue;
    absl::StrAppend(&out, "  ", Dashed(name), " (default ", f->DefaultValue(),
                    ")\n      ", f->Help(), "\n");
  }
  absl::StrAppend(
      &out,
      "\nLatency percentiles are nearest-rank (p50 of 1,2,3,4 is 2) over a\n"
      "log-bucketed histogram: each figure is at most 0.8% above the sample\n"
      "it stands for; min and max are exact.\n");
  return out;
}

std::string FormatKey(int64_t n, int key_size) {
  return absl::StrFormat("%0*d", key_size, n);
}

std::string KeyOf(const Options& o, int64_t n) {
  return absl::StrCat(o.key_prefix, FormatKey(n, o.key_size));
}

}  // namespace synod::bench
