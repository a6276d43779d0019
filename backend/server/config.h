// ServerConfig: a member's settings, named after etcd's flags (etcd's
// embed.Config). Filled by main.cc from the command line; tests fill it
// directly. Plain data, not thread-safe.
#ifndef SYNOD_BACKEND_SERVER_CONFIG_H_
#define SYNOD_BACKEND_SERVER_CONFIG_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace leveldb {
class Env;
}  // namespace leveldb

namespace synod::server {

struct ServerConfig {
  std::string name = "default";                 // --name
  std::string data_dir;                         // --data-dir ("<name>.synod")
  std::vector<std::string> listen_client_urls;  // --listen-client-urls
  std::vector<std::string> advertise_client_urls;
  std::vector<std::string> listen_peer_urls;
  std::vector<std::string> initial_advertise_peer_urls;
  std::vector<std::string> listen_metrics_urls;
  std::string initial_cluster;
  std::string initial_cluster_state = "new";
  std::string initial_cluster_token = "etcd-cluster";
  int64_t quota_backend_bytes = int64_t{2} << 30;  // etcd's default, 2 GiB
  int64_t max_request_bytes = 1572864;             // 1.5 MiB
  int max_txn_ops = 128;
  // "periodic" (retention is a duration such as "1h", "30m", or a number of
  // hours) or "revision" (retention is a number of revisions). "0" = off.
  std::string auto_compaction_mode = "periodic";
  std::string auto_compaction_retention = "0";
  absl::Duration progress_notify_interval = absl::Minutes(10);
  absl::Duration heartbeat_interval = absl::Milliseconds(100);
  absl::Duration election_timeout = absl::Milliseconds(1000);
  int64_t snapshot_count = 100000;
  bool pre_vote = false;
  // --strict-reconfig-check: refuse a member add or remove that would leave
  // fewer started voters than a quorum (etcd's default, true).
  bool strict_reconfig_check = true;
  // Run the timer thread (lease expiry, auto-compaction, progress ticks).
  // Tests that drive the timer by hand turn it off and call
  // EtcdServer::TEST_Tick().
  bool run_timer_thread = true;
  // A snapshot file (from `etcdctl snapshot save`) to initialise an empty
  // data dir from.
  std::string restore_snapshot;
  // --experimental-initial-corrupt-check: before serving, compare this
  // member's HashKV with every reachable peer's at the same revision and
  // refuse to start on a mismatch.
  bool initial_corrupt_check = false;
  // --experimental-corrupt-check-time: how often the leader compares HashKV
  // with every follower (zero = never). A mismatch raises CORRUPT.
  absl::Duration corrupt_check_time = absl::ZeroDuration();
  // --experimental-enable-lease-checkpoint: the leader records leases'
  // remaining TTLs in the log every lease_checkpoint_interval, so that a new
  // leader does not restart them from their full TTL.
  bool lease_checkpoint = false;
  // --experimental-lease-checkpoint-interval (etcd 3.5's flag; 3.4 fixes it
  // at 5 minutes).
  absl::Duration lease_checkpoint_interval = absl::Minutes(5);
  // --auth-token: "simple" or "jwt,pub-key=PATH,priv-key=PATH,
  // sign-method=RS256,ttl=5m" (backend/auth/token.h).
  std::string auth_token = "simple";
  // --auth-token-ttl: how long a simple token lives after its last use.
  absl::Duration auth_token_ttl = absl::Seconds(300);
  // --bcrypt-cost: cost of the password hashes, 4..31.
  int bcrypt_cost = 10;
  // --client-cert-auth: with no token, a verified client certificate's CN
  // is the caller's user name (etcd's AuthInfoFromTLS).
  bool client_cert_auth = false;
  // Called once, from the apply thread, when this member has applied its
  // own removal from the cluster (etcd stops such a member). It must not
  // block on the server: synod's main starts its shutdown from it. Empty:
  // the member only stops applying.
  std::function<void()> on_removed;
  // The LevelDB Env the member's database goes through (a test seam: a
  // memory env, or tests/support's FaultInjectionEnv to simulate power
  // loss). nullptr: the real file system. Not owned; outlives the server.
  leveldb::Env* env = nullptr;
};

}  // namespace synod::server

#endif  // SYNOD_BACKEND_SERVER_CONFIG_H_
