// The member's /metrics against etcd 3.4's: every etcd_*, grpc_* and
// process_* family that a real etcd 3.4.23 member exports (the list below is
// its /metrics output after a few puts, go_* and promhttp_* left out) is on
// Synod's exposition with the same type, except the few that name something
// Synod does not have (kNotApplicable, with the reason). Runs a member in
// process with its gRPC KV service and the gRPC metrics interceptor.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "backend/server/client_metrics.h"
#include "backend/server/etcd_server.h"
#include "backend/server/member_metrics.h"
#include "backend/server/services.h"
#include "common/grpc_metrics.h"
#include "common/metrics.h"
#include "gtest/gtest.h"
#include "proxy/proxy_metrics.h"
#include "proto/rpc.grpc.pb.h"

namespace synod::server {
namespace {

// `curl /metrics | grep '^# TYPE'` on etcd 3.4.23 (Debian's etcd-server),
// one member, after two puts and a get: "name type" per line.
constexpr char kEtcd34Families[] = R"(
etcd_cluster_version gauge
etcd_debugging_auth_revision gauge
etcd_debugging_disk_backend_commit_rebalance_duration_seconds histogram
etcd_debugging_disk_backend_commit_spill_duration_seconds histogram
etcd_debugging_disk_backend_commit_write_duration_seconds histogram
etcd_debugging_lease_granted_total counter
etcd_debugging_lease_renewed_total counter
etcd_debugging_lease_revoked_total counter
etcd_debugging_lease_ttl_total histogram
etcd_debugging_mvcc_compact_revision gauge
etcd_debugging_mvcc_current_revision gauge
etcd_debugging_mvcc_db_compaction_keys_total counter
etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds histogram
etcd_debugging_mvcc_db_compaction_total_duration_milliseconds histogram
etcd_debugging_mvcc_db_total_size_in_bytes gauge
etcd_debugging_mvcc_delete_total counter
etcd_debugging_mvcc_events_total counter
etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds histogram
etcd_debugging_mvcc_keys_total gauge
etcd_debugging_mvcc_pending_events_total gauge
etcd_debugging_mvcc_put_total counter
etcd_debugging_mvcc_range_total counter
etcd_debugging_mvcc_slow_watcher_total gauge
etcd_debugging_mvcc_total_put_size_in_bytes gauge
etcd_debugging_mvcc_txn_total counter
etcd_debugging_mvcc_watch_stream_total gauge
etcd_debugging_mvcc_watcher_total gauge
etcd_debugging_server_lease_expired_total counter
etcd_debugging_snap_save_marshalling_duration_seconds histogram
etcd_debugging_snap_save_total_duration_seconds histogram
etcd_debugging_store_expires_total counter
etcd_debugging_store_reads_total counter
etcd_debugging_store_watch_requests_total counter
etcd_debugging_store_watchers gauge
etcd_debugging_store_writes_total counter
etcd_disk_backend_commit_duration_seconds histogram
etcd_disk_backend_defrag_duration_seconds histogram
etcd_disk_backend_snapshot_duration_seconds histogram
etcd_disk_defrag_inflight gauge
etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_write_bytes_total gauge
etcd_grpc_proxy_cache_hits_total gauge
etcd_grpc_proxy_cache_keys_total gauge
etcd_grpc_proxy_cache_misses_total gauge
etcd_grpc_proxy_events_coalescing_total counter
etcd_grpc_proxy_watchers_coalescing_total gauge
etcd_mvcc_db_open_read_transactions gauge
etcd_mvcc_db_total_size_in_bytes gauge
etcd_mvcc_db_total_size_in_use_in_bytes gauge
etcd_mvcc_delete_total counter
etcd_mvcc_hash_duration_seconds histogram
etcd_mvcc_hash_rev_duration_seconds histogram
etcd_mvcc_put_total counter
etcd_mvcc_range_total counter
etcd_mvcc_txn_total counter
etcd_network_client_grpc_received_bytes_total counter
etcd_network_client_grpc_sent_bytes_total counter
etcd_server_client_requests_total counter
etcd_server_go_version gauge
etcd_server_has_leader gauge
etcd_server_health_failures counter
etcd_server_health_success counter
etcd_server_heartbeat_send_failures_total counter
etcd_server_id gauge
etcd_server_is_leader gauge
etcd_server_is_learner gauge
etcd_server_leader_changes_seen_total counter
etcd_server_learner_promote_successes counter
etcd_server_proposals_applied_total gauge
etcd_server_proposals_committed_total gauge
etcd_server_proposals_failed_total counter
etcd_server_proposals_pending gauge
etcd_server_quota_backend_bytes gauge
etcd_server_read_indexes_failed_total counter
etcd_server_slow_apply_total counter
etcd_server_slow_read_indexes_total counter
etcd_server_snapshot_apply_in_progress_total gauge
etcd_server_version gauge
etcd_snap_db_fsync_duration_seconds histogram
etcd_snap_db_save_total_duration_seconds histogram
etcd_snap_fsync_duration_seconds histogram
grpc_server_handled_total counter
grpc_server_msg_received_total counter
grpc_server_msg_sent_total counter
grpc_server_started_total counter
process_cpu_seconds_total counter
process_max_fds gauge
process_open_fds gauge
process_resident_memory_bytes gauge
process_start_time_seconds gauge
process_virtual_memory_bytes gauge
process_virtual_memory_max_bytes gauge
)";

// etcd 3.4 families that Synod does not export, and why.
const std::map<std::string, std::string>& NotApplicable() {
  static const auto* m = new std::map<std::string, std::string>{
      // bbolt's commit phases; Synod's backend is LevelDB (its whole commit
      // is etcd_disk_backend_commit_duration_seconds).
      {"etcd_debugging_disk_backend_commit_rebalance_duration_seconds", "bbolt"},
      {"etcd_debugging_disk_backend_commit_spill_duration_seconds", "bbolt"},
      {"etcd_debugging_disk_backend_commit_write_duration_seconds", "bbolt"},
      // etcd's v2 store (membership and the v2 API); Synod has neither.
      {"etcd_debugging_store_expires_total", "v2 store"},
      {"etcd_debugging_store_reads_total", "v2 store"},
      {"etcd_debugging_store_watch_requests_total", "v2 store"},
      {"etcd_debugging_store_watchers", "v2 store"},
      {"etcd_debugging_store_writes_total", "v2 store"},
      // The Go runtime's version.
      {"etcd_server_go_version", "Go"},
      // grpc-proxy's families, registered on a member only because etcd
      // links the proxy package; synod-proxy serves its own.
      {"etcd_grpc_proxy_cache_hits_total", "grpc-proxy"},
      {"etcd_grpc_proxy_cache_keys_total", "grpc-proxy"},
      {"etcd_grpc_proxy_cache_misses_total", "grpc-proxy"},
      {"etcd_grpc_proxy_events_coalescing_total", "grpc-proxy"},
      {"etcd_grpc_proxy_watchers_coalescing_total", "grpc-proxy"},
  };
  return *m;
}

// "# TYPE name type" lines of `text`: name -> type.
std::map<std::string, std::string> Types(const std::string& text) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, "# TYPE ")) continue;
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() == 2) out[f[0]] = f[1];
  }
  return out;
}

// The value of the series `series` (name with labels, as rendered); -1 if
// absent.
double Value(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    double v = 0;
    if (absl::ConsumePrefix(&line, series + " ") && absl::SimpleAtod(line, &v)) {
      return v;
    }
  }
  return -1;
}

class EtcdMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/synod_etcd_metrics_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ServerConfig cfg;
    cfg.name = "m";
    cfg.data_dir = dir_ + "/data";
    auto s = EtcdServer::Open(cfg);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    metrics_ = std::make_unique<MemberMetrics>(server_.get());
    metrics_->SetClusterVersion("3.4");
    kv_ = std::make_unique<KvService>(server_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(kv_.get());
    std::vector<std::unique_ptr<
        grpc::experimental::ServerInterceptorFactoryInterface>>
        factories;
    factories.push_back(
        common::NewGrpcServerMetricsFactory(&common::DefaultMetrics()));
    factories.push_back(NewClientMetricsFactory());
    builder.experimental().SetInterceptorCreators(std::move(factories));
    grpc_ = builder.BuildAndStart();
    ASSERT_NE(grpc_, nullptr);
    stub_ = etcdserverpb::KV::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    stub_.reset();
    if (grpc_ != nullptr) grpc_->Shutdown();
    grpc_.reset();
    kv_.reset();
    metrics_.reset();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  grpc::Status Put(const std::string& k, const std::string& v) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    ctx.AddMetadata("client-api-version", "3.4");  // as clientv3 sends it
    etcdserverpb::PutRequest req;
    req.set_key(k);
    req.set_value(v);
    etcdserverpb::PutResponse resp;
    return stub_->Put(&ctx, req, &resp);
  }

  grpc::Status Get(const std::string& k) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    etcdserverpb::RangeRequest req;
    req.set_key(k);
    etcdserverpb::RangeResponse resp;
    return stub_->Range(&ctx, req, &resp);
  }

  std::string dir_;
  std::unique_ptr<EtcdServer> server_;
  std::unique_ptr<MemberMetrics> metrics_;
  std::unique_ptr<KvService> kv_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<etcdserverpb::KV::Stub> stub_;
};

TEST_F(EtcdMetricsTest, EveryEtcd34FamilyIsExportedWithItsType) {
  ASSERT_TRUE(Put("a", "1").ok());
  ASSERT_TRUE(Put("b", "2").ok());
  ASSERT_TRUE(Get("a").ok());
  const std::string text = common::DefaultMetrics().RenderText();
  const std::map<std::string, std::string> ours = Types(text);
  int checked = 0;
  for (absl::string_view line :
       absl::StrSplit(kEtcd34Families, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    ASSERT_EQ(f.size(), 2u) << line;
    auto it = ours.find(f[0]);
    if (NotApplicable().count(f[0]) > 0) {
      EXPECT_EQ(it, ours.end()) << f[0] << " is listed as not applicable";
      continue;
    }
    ++checked;
    if (it == ours.end()) {
      ADD_FAILURE() << "missing etcd 3.4 family " << f[0];
    } else {
      EXPECT_EQ(it->second, f[1]) << f[0];
    }
  }
  EXPECT_GE(checked, 75);
}

TEST_F(EtcdMetricsTest, HistogramsUseEtcdsBuckets) {
  const std::string text = common::DefaultMetrics().RenderText();
  // etcd's ExponentialBuckets(0.001, 2, 14) for disk latencies.
  for (const char* name : {"etcd_disk_wal_fsync_duration_seconds",
                           "etcd_disk_backend_commit_duration_seconds",
                           "etcd_snap_fsync_duration_seconds"}) {
    for (const char* le : {"0.001", "0.002", "0.128", "8.192", "+Inf"}) {
      EXPECT_GE(Value(text, absl::StrCat(name, "_bucket{le=\"", le, "\"}")), 0)
          << name << " le=" << le << "\n"
          << text;
    }
    EXPECT_EQ(Value(text, absl::StrCat(name, "_bucket{le=\"16.384\"}")), -1)
        << name;
  }
}

TEST_F(EtcdMetricsTest, MemberStateIsWired) {
  ASSERT_TRUE(Put("k", "v").ok());
  ASSERT_TRUE(Get("k").ok());
  const std::string text = common::DefaultMetrics().RenderText();
  EXPECT_EQ(Value(text, "etcd_server_has_leader"), 1) << text;
  EXPECT_EQ(Value(text, "etcd_server_is_leader"), 1);
  EXPECT_EQ(Value(text, "etcd_server_is_learner"), 0);
  EXPECT_GE(Value(text, "etcd_server_leader_changes_seen_total"), 1);
  EXPECT_GE(Value(text, "etcd_server_proposals_committed_total"), 2);
  EXPECT_GE(Value(text, "etcd_server_proposals_applied_total"), 2);
  EXPECT_EQ(Value(text, "etcd_server_proposals_pending"), 0);
  EXPECT_GT(Value(text, "etcd_disk_wal_fsync_duration_seconds_count"), 0);
  EXPECT_GT(Value(text, "etcd_disk_wal_write_bytes_total"), 0);
  EXPECT_GT(Value(text, "etcd_mvcc_db_total_size_in_bytes"), 0);
  EXPECT_GE(Value(text, "etcd_mvcc_range_total"), 1);
  EXPECT_GE(Value(text, "etcd_mvcc_put_total"), 1);
  EXPECT_GE(Value(text, "etcd_debugging_mvcc_total_put_size_in_bytes"), 2);
  EXPECT_EQ(Value(text, "etcd_server_quota_backend_bytes"),
            static_cast<double>(int64_t{2} << 30));
  EXPECT_EQ(Value(text, absl::StrCat("etcd_server_id{server_id=\"",
                                     absl::Hex(server_->member_id()), "\"}")),
            1);
  EXPECT_GE(Value(text, "etcd_server_client_requests_total{client_api_version="
                         "\"3.4\",type=\"unary\"}"),
            1)
      << text;
  EXPECT_GT(Value(text, "etcd_network_client_grpc_received_bytes_total"), 0);
  EXPECT_GT(Value(text, "etcd_network_client_grpc_sent_bytes_total"), 0);
  EXPECT_GT(Value(text, "process_resident_memory_bytes"), 0);
  EXPECT_GT(Value(text, "process_open_fds"), 0);
  EXPECT_GT(Value(text, "process_start_time_seconds"), 1e9);
  EXPECT_GE(Value(text, "process_cpu_seconds_total"), 0);
}

// synod-proxy's registry carries etcd grpc-proxy's families (the
// etcd_grpc_proxy_* of the list) with etcd's types, beside its own.
TEST(EtcdProxyMetricsTest, GrpcProxyFamiliesAreOnTheProxysRegistry) {
  common::MetricsRegistry r;
  proxy::ProxyMetrics pm(&r);
  pm.cache_hits->Inc(3);
  pm.cache_misses->Inc();
  pm.cache_entries->Set(2);
  pm.client_watchers->Set(5);
  pm.watch_ranges->Set(2);
  const std::string text = r.RenderText();
  const std::map<std::string, std::string> ours = Types(text);
  int checked = 0;
  for (absl::string_view line :
       absl::StrSplit(kEtcd34Families, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (!absl::StartsWith(f[0], "etcd_grpc_proxy_")) continue;
    ++checked;
    auto it = ours.find(f[0]);
    ASSERT_NE(it, ours.end()) << "missing " << f[0] << "\n" << text;
    EXPECT_EQ(it->second, f[1]) << f[0];
  }
  EXPECT_EQ(checked, 5);
  EXPECT_EQ(Value(text, "etcd_grpc_proxy_cache_hits_total"), 3);
  EXPECT_EQ(Value(text, "etcd_grpc_proxy_cache_misses_total"), 1);
  EXPECT_EQ(Value(text, "etcd_grpc_proxy_cache_keys_total"), 2);
  EXPECT_EQ(Value(text, "etcd_grpc_proxy_watchers_coalescing_total"), 3);
  EXPECT_EQ(Value(text, "etcd_grpc_proxy_events_coalescing_total"), 0);
}

}  // namespace
}  // namespace synod::server
