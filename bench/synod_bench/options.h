// Options: synod-bench's command line, parsed and checked.
//
//   synod-bench [flags] <workload>
//
// Flags are absl flags (defined in options.cc); dashes and underscores in a
// flag name are interchangeable (--key-size == --key_size), as in `synod`.
// ParseOptions() never exits: every bad value comes back as an
// InvalidArgument status whose message names the flag and what is allowed,
// and main() prints it and exits with code 2.
//
// Not thread-safe: ParseOptions() resets synod-bench's flags to their
// defaults and then sets them from the arguments.
#ifndef SYNOD_BENCH_SYNOD_BENCH_OPTIONS_H_
#define SYNOD_BENCH_SYNOD_BENCH_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace synod::bench {

enum class Workload {
  kPut,
  kRange,
  kTxnPut,
  kWatch,
  kWatchLatency,
  kLeaseKeepAlive
};

// True for the workloads that open watchers (watch, watch-latency).
inline bool IsWatchWorkload(Workload w) {
  return w == Workload::kWatch || w == Workload::kWatchLatency;
}

// "put", "range", "txn-put", "watch", "watch-latency", "lease-keepalive".
const char* WorkloadName(Workload w);

// Which keys the watchers of the watch workloads watch (--watch-keys).
enum class WatchKeys {
  kSame,      // "same": every watcher watches key 0 (fan-out).
  kDistinct,  // "distinct": watcher i watches key i, 0 <= i < --watchers.
};

struct Options {
  bool help = false;  // --help was given: print Usage() and exit 0.
  Workload workload = Workload::kPut;
  std::vector<std::string> endpoints;  // host:port, scheme stripped.
  // endpoint_tls[i]: endpoints[i] is dialled with TLS. As etcdctl decides:
  // https:// always; http:// never; no scheme when a TLS flag (--cacert,
  // --cert, --key, --insecure-skip-tls-verify) is given.
  std::vector<bool> endpoint_tls;
  // Client TLS, etcdctl's flags. Paths are PEM files; empty = not given.
  std::string cacert;  // Verifies the server; empty = the system roots.
  std::string cert;    // Client certificate (with key), if the server asks.
  std::string key;
  bool insecure_skip_tls_verify = false;  // Do not verify the server at all.
  // Auth, etcdctl's flags: --user=name[:password] and --password. With a
  // user, the tool Authenticates once before the run and sends the token in
  // every call's "token" metadata, as clientv3 does. Empty user: anonymous.
  std::string user;
  std::string password;
  int conns = 1;      // gRPC connections (one channel each).
  int clients = 1;    // Concurrent requests (or streams) in flight.
  int threads = 1;    // Completion-queue threads.
  int64_t total = 0;  // 0: bounded by duration only.
  absl::Duration duration = absl::ZeroDuration();  // 0: by total only.
  int key_size = 8;
  int val_size = 8;
  // Prepended to every key read, written or watched (e.g. "/cfg/"); the
  // decimal part is still --key-size digits.
  std::string key_prefix;
  // With WatchKeys::kDistinct, key_space is set to `watchers`.
  int64_t key_space = 1;
  bool seq_keys = false;
  int64_t rate = 0;           // Ops per second over all clients; 0 = unlimited.
  bool serializable = false;  // range --consistency=s.
  int txn_ops = 1;
  int watchers = 100;  // In all; with --watch-per-stream, the product.
  int watch_streams = 10;
  int watch_per_stream = 0;  // 0: --watchers spread over the streams.
  // watch, watch-latency: hold the created watchers idle this long before
  // the first put (to measure what idle watchers cost a server or proxy).
  absl::Duration watch_idle = absl::ZeroDuration();
  // watch, watch-latency: kDistinct gives every watcher a key of its own, and
  // each put (to key op mod watchers with --seq-keys, else a random one of
  // them) is then one event for one watcher.
  WatchKeys watch_keys = WatchKeys::kSame;
  // watch, watch-latency: each watcher first reads its key (a Range, with
  // `serializable`) and watches from the revision after that read's header,
  // as a service reads its configuration and then watches it.
  bool watch_read = false;
  int64_t lease_ttl = 60;
  absl::Duration timeout = absl::Seconds(10);  // Per request.
  uint64_t seed = 1;
  bool json = false;
  bool progress = true;  // Only ever drawn when stderr is a terminal.
};

// Parses `args` (argv without the program name). Returns InvalidArgument with
// a message such as "--conns: must be at least 1 (got 0)" on a bad value, an
// unknown flag, a missing or unknown workload, or inconsistent options
// (--cert without --key or the reverse; --password without --user, or a
// --user without a password). TLS files are read when the tool
// connects, not here.
absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args);

// The --help text: usage line, workloads, and every flag with its default.
std::string Usage();

// Key number `n` as synod-bench writes it: decimal, zero-padded to key_size.
std::string FormatKey(int64_t n, int key_size);

// Key number `n` of a run: o.key_prefix, then FormatKey(n, o.key_size).
std::string KeyOf(const Options& o, int64_t n);

}  // namespace synod::bench

#endif  // SYNOD_BENCH_SYNOD_BENCH_OPTIONS_H_
