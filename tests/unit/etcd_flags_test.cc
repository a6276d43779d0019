// backend/server/etcd_flags.h: etcd 3.4's flags that ServerConfig does not
// hold are accepted at etcd's defaults, refused with a message naming the
// flag where they pick something Synod lacks, and turned into gRPC channel
// arguments and log settings where they are in effect.
#include "backend/server/etcd_flags.h"

#include <unistd.h>

#include <climits>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <grpc/grpc.h>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "gtest/gtest.h"

namespace synod::server {
namespace {

// Sets flags by their etcd names, as the command line or an ETCD_* variable
// would, and restores every flag afterwards.
class EtcdFlagsTest : public ::testing::Test {
 protected:
  void Set(const std::string& name, const std::string& value) {
    std::string flag = name;
    for (char& c : flag) c = c == '-' ? '_' : c;
    absl::CommandLineFlag* f = absl::FindCommandLineFlag(flag);
    ASSERT_NE(f, nullptr) << name;
    std::string error;
    ASSERT_TRUE(f->ParseFrom(value, &error)) << name << "=" << value << ": " << error;
  }

  // The message ReadEtcdProcessFlags refuses with ("" when it accepts).
  std::string Refusal() {
    auto r = ReadEtcdProcessFlags("info");
    return r.ok() ? "" : std::string(r.status().message());
  }

  int GrpcArg(const std::string& name) {
    auto r = ReadEtcdProcessFlags("info");
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return -1;
    for (const auto& [n, v] : r->client_grpc_args) {
      if (n == name) return v;
    }
    return -1;  // not set
  }

  absl::FlagSaver saver_;
};

TEST_F(EtcdFlagsTest, EtcdDefaultsAreAccepted) {
  auto r = ReadEtcdProcessFlags("info");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->log_output, "");
  EXPECT_EQ(r->log_level, "info");
  EXPECT_TRUE(r->warnings.empty());
}

TEST_F(EtcdFlagsTest, FeaturesSynodLacksAreRefusedNamingTheFlag) {
  const struct {
    const char* flag;
    const char* value;
    const char* message;
  } cases[] = {
      {"enable-v2", "true", "--enable-v2=true is not supported: Synod serves the v3 API only"},
      {"experimental-enable-v2v3", "/v2/",
       "--experimental-enable-v2v3=/v2/ is not supported: Synod serves the v3 API only"},
      {"proxy", "on", "--proxy=on is not supported: Synod has no v2 proxy"},
      {"proxy", "readonly", "--proxy=readonly is not supported"},
      {"proxy", "sideways", "--proxy=sideways: valid values are off, readonly, on"},
      {"discovery", "https://discovery.etcd.io/x", "--discovery=https://discovery.etcd.io/x is not supported"},
      {"discovery-srv", "example.com", "--discovery-srv=example.com is not supported"},
      {"discovery-srv-name", "x", "--discovery-srv-name=x is not supported"},
      {"discovery-proxy", "http://p:1", "--discovery-proxy=http://p:1 is not supported"},
      {"wal-dir", "/var/wal", "--wal-dir=/var/wal is not supported: Synod keeps its Raft log in --data-dir"},
      {"host-whitelist", "example.com", "--host-whitelist=example.com is not supported"},
      {"log-package-levels", "etcdserver=DEBUG", "--log-package-levels=etcdserver=DEBUG is not supported"},
      {"experimental-peer-skip-client-san-verification", "true",
       "--experimental-peer-skip-client-san-verification=true is not supported"},
      {"unsafe-no-fsync", "true", "--unsafe-no-fsync=true is not supported"},
      {"metrics", "everything", "--metrics=everything: valid values are basic, extensive"},
      {"discovery-fallback", "retry", "--discovery-fallback=retry: valid values are exit, proxy"},
      {"experimental-backend-bbolt-freelist-type", "list",
       "--experimental-backend-bbolt-freelist-type=list: valid values are array, map"},
      {"logger", "glog", "--logger=glog: unknown logger option"},
      {"log-outputs", "stderr,stdout", "--log-outputs=stderr,stdout is not supported: Synod writes its log to one target"},
      {"log-outputs", "journal", "--log-outputs=journal is not supported"},
      {"log-outputs", "/tmp/x.log", "--log-outputs=/tmp/x.log: unknown log-output"},
      {"max-concurrent-streams", "-1", "--max-concurrent-streams=-1: not a number"},
      {"max-concurrent-streams", "4294967296", "--max-concurrent-streams=4294967296: not a number"},
      {"grpc-keepalive-min-time", "-1s", "--grpc-keepalive-min-time=-1s: must not be negative"},
      {"backend-batch-interval", "soon", "--backend-batch-interval=soon: not a duration"},
  };
  for (const auto& c : cases) {
    absl::FlagSaver one;
    Set(c.flag, c.value);
    EXPECT_EQ(Refusal().rfind(c.message, 0), 0u)
        << c.flag << "=" << c.value << " gave: " << Refusal();
  }
}

TEST_F(EtcdFlagsTest, OffValuesAndTuningKnobsAreAccepted) {
  const std::pair<const char*, const char*> accepted[] = {
      {"enable-v2", "false"}, {"proxy", "off"}, {"host-whitelist", ""},
      {"host-whitelist", "*"}, {"wal-dir", ""}, {"discovery-fallback", "exit"},
      {"max-wals", "0"}, {"max-snapshots", "10"}, {"backend-batch-interval", "10ms"},
      {"backend-batch-limit", "100"}, {"experimental-backend-bbolt-freelist-type", "map"},
      {"experimental-compaction-batch-limit", "500"},
      {"experimental-warning-apply-duration", "1s"},
      {"experimental-enable-lease-checkpoint-persist", "true"},
      {"initial-election-tick-advance", "false"}, {"cors", "http://example.com"},
      {"metrics", "extensive"}, {"enable-grpc-gateway", "false"},
      {"proxy-read-timeout", "100"}, {"logger", "zap"}, {"log-outputs", "stdout"},
      {"log-output", "stderr"}, {"max-concurrent-streams", "0x10"},
  };
  for (const auto& [flag, value] : accepted) {
    absl::FlagSaver one;
    Set(flag, value);
    EXPECT_EQ(Refusal(), "") << flag << "=" << value;
  }
}

TEST_F(EtcdFlagsTest, EnablePprofIsANoOpWithAWarning) {
  Set("enable-pprof", "true");
  auto r = ReadEtcdProcessFlags("info");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_EQ(r->warnings[0],
            "--enable-pprof=true has no effect: Synod serves no /debug/pprof endpoints");
}

TEST_F(EtcdFlagsTest, KeepaliveFlagsBecomeChannelArgumentsAsEtcdSetsThem) {
  // etcd's defaults: 5s min time, 2h interval, 20s timeout.
  EXPECT_EQ(GrpcArg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS), 5000);
  EXPECT_EQ(GrpcArg(GRPC_ARG_KEEPALIVE_TIME_MS), 2 * 3600 * 1000);
  EXPECT_EQ(GrpcArg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS), 20000);
  Set("grpc-keepalive-min-time", "1s");
  Set("grpc-keepalive-interval", "30s");
  Set("grpc-keepalive-timeout", "3s");
  EXPECT_EQ(GrpcArg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS), 1000);
  EXPECT_EQ(GrpcArg(GRPC_ARG_KEEPALIVE_TIME_MS), 30000);
  EXPECT_EQ(GrpcArg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS), 3000);
  // 0 leaves gRPC's defaults, as etcd leaves grpc-go's: the server
  // parameters only when both are > 0.
  Set("grpc-keepalive-min-time", "0");
  Set("grpc-keepalive-timeout", "0");
  EXPECT_EQ(GrpcArg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS), -1);
  EXPECT_EQ(GrpcArg(GRPC_ARG_KEEPALIVE_TIME_MS), -1);
  EXPECT_EQ(GrpcArg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS), -1);
}

TEST_F(EtcdFlagsTest, MaxConcurrentStreamsIsALimitUnlessZeroOrUnlimited) {
  EXPECT_EQ(GrpcArg(GRPC_ARG_MAX_CONCURRENT_STREAMS), -1);  // math.MaxUint32
  Set("max-concurrent-streams", "4294967295");
  EXPECT_EQ(GrpcArg(GRPC_ARG_MAX_CONCURRENT_STREAMS), -1);
  Set("max-concurrent-streams", "0");  // grpc-go: 0 is unlimited
  EXPECT_EQ(GrpcArg(GRPC_ARG_MAX_CONCURRENT_STREAMS), -1);
  Set("max-concurrent-streams", "100");
  EXPECT_EQ(GrpcArg(GRPC_ARG_MAX_CONCURRENT_STREAMS), 100);
}

TEST_F(EtcdFlagsTest, GatewayFlagsAreReadForTheGateway) {
  auto r = ReadEtcdProcessFlags("info");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->enable_grpc_gateway);
  EXPECT_EQ(r->cors, (std::vector<std::string>{"*"}));
  Set("enable-grpc-gateway", "false");
  Set("cors", "http://a.example:80, http://b.example:80");
  r = ReadEtcdProcessFlags("info");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->enable_grpc_gateway);
  EXPECT_EQ(r->cors,
            (std::vector<std::string>{"http://a.example:80", "http://b.example:80"}));
}

TEST_F(EtcdFlagsTest, DebugMeansLogLevelDebug) {
  Set("debug", "true");
  auto r = ReadEtcdProcessFlags("warn");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->log_level, "debug");
  Set("debug", "false");
  EXPECT_EQ(ReadEtcdProcessFlags("warn")->log_level, "warn");
}

TEST_F(EtcdFlagsTest, LogOutputsPicksTheTarget) {
  Set("log-outputs", "stderr");
  EXPECT_EQ(ReadEtcdProcessFlags("info")->log_output, "");
  Set("log-outputs", "stdout");
  EXPECT_EQ(ReadEtcdProcessFlags("info")->log_output, "stdout");
  Set("logger", "zap");
  Set("log-outputs", "/var/log/synod.log");
  EXPECT_EQ(ReadEtcdProcessFlags("info")->log_output, "/var/log/synod.log");
  // The deprecated --log-output counts when --log-outputs is left alone.
  Set("log-outputs", "default");
  Set("log-output", "stdout");
  EXPECT_EQ(ReadEtcdProcessFlags("info")->log_output, "stdout");
}

TEST_F(EtcdFlagsTest, RedirectLogSendsStderrToTheFile) {
  char path[] = "/tmp/etcd_flags_test_XXXXXX";
  int tmp = mkstemp(path);
  ASSERT_GE(tmp, 0);
  close(tmp);
  const int saved = dup(STDERR_FILENO);
  EtcdProcessFlags flags;
  flags.log_output = path;
  ASSERT_TRUE(RedirectLog(flags).ok());
  std::fputs("a log line\n", stderr);
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::ifstream in(path);
  std::stringstream got;
  got << in.rdbuf();
  EXPECT_EQ(got.str(), "a log line\n");
  unlink(path);

  flags.log_output = "/nonexistent-dir/x.log";
  absl::Status st = RedirectLog(flags);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(st.message()).rfind("--log-outputs=/nonexistent-dir/x.log: cannot open", 0),
            0u)
      << st;
}

}  // namespace
}  // namespace synod::server
