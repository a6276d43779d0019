// etcd 3.4's server flags that ServerConfig does not hold (etcdmain's
// config.go lists them all; main.cc defines the ones it reads into
// ServerConfig). Each one is accepted with etcd's default, so that a unit
// file written for etcd starts synod. They fall in three kinds:
//  * in effect for the process: --max-concurrent-streams and
//    --grpc-keepalive-* (channel arguments of the client gRPC server),
//    --logger, --log-outputs (and the deprecated --log-output), --debug,
//    --force-new-cluster (main.cc calls ForceNewCluster);
//  * accepted at any valid value with no effect, because they tune a part of
//    etcd that Synod does not have or the flag changes nothing here:
//    --max-snapshots, --max-wals, --backend-batch-*, --initial-election-
//    tick-advance, --cors and --enable-grpc-gateway (read into
//    EtcdProcessFlags for the JSON gateway), --enable-pprof, --metrics,
//    --experimental-backend-bbolt-freelist-type,
//    --experimental-compaction-batch-limit,
//    --experimental-warning-apply-duration,
//    --experimental-enable-lease-checkpoint-persist (Synod always persists),
//    --discovery-fallback and the --proxy-* timeouts (only read with
//    --discovery and --proxy);
//  * refused at any value but the one that turns them off, with a message
//    that names the flag and says why: --wal-dir, --discovery*, --enable-v2,
//    --experimental-enable-v2v3, --proxy, --host-whitelist,
//    --log-package-levels, --experimental-peer-skip-client-san-verification,
//    --unsafe-no-fsync.
//
// Thread-safety: call from main() after the flags are parsed and before any
// thread starts.
#ifndef SYNOD_BACKEND_SERVER_ETCD_FLAGS_H_
#define SYNOD_BACKEND_SERVER_ETCD_FLAGS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace synod::server {

// What the flags above decide for this process.
struct EtcdProcessFlags {
  // Channel arguments for the client gRPC server (grpc::ServerBuilder::
  // AddChannelArgument), as etcd sets its grpc-go server options: the
  // keepalive enforcement minimum when --grpc-keepalive-min-time > 0, the
  // keepalive time and timeout when both are > 0, the stream limit when
  // --max-concurrent-streams is in 1..INT_MAX (0 and larger values leave
  // gRPC's default, unlimited, as grpc-go treats 0 and MaxUint32).
  std::vector<std::pair<std::string, int>> client_grpc_args;
  // --max-concurrent-streams when it limits (1..INT_MAX), else 0 (no
  // limit): the JSON gateway holds its calls to it, as etcd's gateway feels
  // the limit through its one gRPC connection.
  uint32_t max_concurrent_streams = 0;
  // Where the log goes: "" for stderr (etcd's "default" and "stderr"),
  // "stdout", or a file path (with --logger=zap only, as etcd).
  std::string log_output;
  // The log level: `log_level` as given, or "debug" with --debug.
  std::string log_level;
  // --force-new-cluster (backend/server/force_new_cluster.h).
  bool force_new_cluster = false;
  // --enable-grpc-gateway and --cors, for the JSON gateway on the client
  // URLs. `cors` holds the allowed origins as given; "*" (etcd's default)
  // or empty allows all.
  bool enable_grpc_gateway = true;
  std::vector<std::string> cors;
  // Lines to log at WARNING once logging is set up (a flag accepted with no
  // effect at a value that asks for something, e.g. --enable-pprof=true).
  std::vector<std::string> warnings;
};

// Reads and checks the flags above; `log_level` is --log-level's value.
// Errors: InvalidArgument whose message names the flag and its value, e.g.
//   --enable-v2=true is not supported: Synod serves the v3 API only
//   --grpc-keepalive-min-time=-1s: must not be negative
absl::StatusOr<EtcdProcessFlags> ReadEtcdProcessFlags(const std::string& log_level);

// Sends this process's stderr (where common/logging.h writes, and gRPC's
// log) to `flags.log_output`: stdout, or the file (created, appended to).
// Errors: the file cannot be opened (InvalidArgument naming --log-outputs).
absl::Status RedirectLog(const EtcdProcessFlags& flags);

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_ETCD_FLAGS_H_
