// RunWorkload: drives one synod-bench workload against an etcd v3 endpoint
// (Synod or etcd) with gRPC's completion-queue async client API.
//
// Shape. --conns channels (each its own TCP connection), --threads
// completion queues with one polling thread each, and --clients closed-loop
// clients: client i uses channel i mod conns and queue i mod threads, and
// keeps one request in flight. With --rate, op k is not issued before
// start + k/rate (a grpc::Alarm holds the client until then); latency is
// measured from the moment the request is issued to its response.
//
// TLS. Endpoints marked in Options::endpoint_tls are dialled with one set of
// channel credentials built from --cacert/--cert/--key: gRPC's SSL
// credentials (server verified against the CA and the address dialled), or,
// with --insecure-skip-tls-verify, gRPC's TLS credentials with verification
// off. Others are plaintext.
//
// Auth. With Options::user, the tool Authenticates once (over the first
// connection) before the run and adds the token to every call's metadata
// under "token", as clientv3 does; simple tokens and JWTs alike are opaque
// here. A run longer than the member's token TTL would see its calls fail
// with "etcdserver: invalid auth token" (counted as errors, not renewed).
//
// Bounds. The run ends at --total ops or after --duration, whichever comes
// first; every unary call has the --timeout deadline, and streams that make
// no progress for --timeout are cancelled, so a stalled server cannot hang
// the tool.
#ifndef SYNOD_BENCH_SYNOD_BENCH_RUNNER_H_
#define SYNOD_BENCH_SYNOD_BENCH_RUNNER_H_

#include <functional>

#include "absl/status/statusor.h"
#include "bench/synod_bench/options.h"
#include "bench/synod_bench/report.h"

namespace synod::bench {

// `progress` (may be empty) is called about ten times a second from the
// calling thread with the fraction done in [0, 1] and the ops completed.
// Returns Unavailable when an endpoint is unreachable for 5 s (for a TLS
// endpoint, a failed handshake looks the same) or a setup step fails (lease
// grant, watch creation); InvalidArgument when a TLS file (--cacert, --cert,
// --key) cannot be read; Unauthenticated when Authenticate fails (its
// message carries the member's, e.g. "etcdserver: authentication failed,
// invalid user ID or password"); per-op failures are counted in
// Result::errors instead.
absl::StatusOr<Result> RunWorkload(
    const Options& opts,
    const std::function<void(double fraction, uint64_t done)>& progress);

}  // namespace synod::bench

#endif  // SYNOD_BENCH_SYNOD_BENCH_RUNNER_H_
