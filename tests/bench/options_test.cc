// synod-bench's option parsing: defaults, dash/underscore spelling, and a
// clear InvalidArgument for every kind of bad value.
#include "bench/synod_bench/options.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace synod::bench {
namespace {

class OptionsTest : public testing::Test {
 protected:
  absl::StatusOr<Options> Parse(std::vector<std::string> args) {
    return ParseOptions(args);
  }
  // The error message for `args`, which must fail with InvalidArgument.
  std::string Error(std::vector<std::string> args) {
    absl::StatusOr<Options> o = ParseOptions(args);
    EXPECT_FALSE(o.ok());
    if (o.ok()) return "";
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(o.status().message());
  }
};

TEST_F(OptionsTest, Defaults) {
  auto o = Parse({"put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->workload, Workload::kPut);
  EXPECT_EQ(o->endpoints, std::vector<std::string>{"127.0.0.1:2379"});
  EXPECT_EQ(o->conns, 1);
  EXPECT_EQ(o->clients, 1);
  EXPECT_GE(o->threads, 1);  // 0 resolves to the core count.
  EXPECT_EQ(o->total, 10000);
  EXPECT_EQ(o->duration, absl::ZeroDuration());
  EXPECT_EQ(o->key_size, 8);
  EXPECT_EQ(o->val_size, 8);
  EXPECT_EQ(o->key_space, 1);
  EXPECT_FALSE(o->seq_keys);
  EXPECT_FALSE(o->serializable);
  EXPECT_FALSE(o->json);
}

TEST_F(OptionsTest, DashesUnderscoresAndSeparateValues) {
  auto o =
      Parse({"--endpoints=http://127.0.0.1:1,127.0.0.1:2/", "--conns", "10",
             "--clients=100", "--key-size=16", "--val_size=256", "--key-space",
             "100000", "--seq-keys", "--rate=500", "--duration=3s", "--total=0",
             "--consistency=s", "--json", "--noprogress", "range"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->workload, Workload::kRange);
  EXPECT_EQ(o->endpoints,
            (std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2"}));
  EXPECT_EQ(o->conns, 10);
  EXPECT_EQ(o->clients, 100);
  EXPECT_EQ(o->key_size, 16);
  EXPECT_EQ(o->val_size, 256);
  EXPECT_EQ(o->key_space, 100000);
  EXPECT_TRUE(o->seq_keys);
  EXPECT_EQ(o->rate, 500);
  EXPECT_EQ(o->duration, absl::Seconds(3));
  EXPECT_EQ(o->total, 0);
  EXPECT_TRUE(o->serializable);
  EXPECT_TRUE(o->json);
  EXPECT_FALSE(o->progress);
}

TEST_F(OptionsTest, EveryWorkloadName) {
  EXPECT_EQ(Parse({"txn-put"})->workload, Workload::kTxnPut);
  EXPECT_EQ(Parse({"lease-keepalive"})->workload, Workload::kLeaseKeepAlive);
  EXPECT_EQ(Parse({"--rate=10", "watch-latency"})->workload,
            Workload::kWatchLatency);
  EXPECT_EQ(Parse({"watch"})->workload, Workload::kWatch);
  for (Workload w :
       {Workload::kPut, Workload::kRange, Workload::kTxnPut, Workload::kWatch,
        Workload::kWatchLatency, Workload::kLeaseKeepAlive}) {
    EXPECT_EQ(Parse({"--rate=10", WorkloadName(w)})->workload, w);
  }
}

TEST_F(OptionsTest, EachParseStartsFromTheDefaults) {
  ASSERT_TRUE(Parse({"--conns=7", "--clients=7", "put"}).ok());
  auto o = Parse({"put"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->conns, 1);
  EXPECT_EQ(o->clients, 1);
}

TEST_F(OptionsTest, HelpWins) {
  auto o = Parse({"--conns=0", "--help"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->help);
  EXPECT_NE(Usage().find("--key-space"), std::string::npos);
  EXPECT_NE(Usage().find("nearest-rank"), std::string::npos);
}

TEST_F(OptionsTest, WorkloadErrors) {
  EXPECT_NE(Error({}).find("no workload given"), std::string::npos);
  EXPECT_EQ(Error({"puts"}),
            "unknown workload 'puts' (want put, range, txn-put, watch, "
            "watch-latency or lease-keepalive)");
  EXPECT_NE(Error({"put", "range"}).find("one workload at a time"),
            std::string::npos);
}

TEST_F(OptionsTest, UnparsableValuesNameTheFlag) {
  EXPECT_EQ(Error({"--conns=abc", "put"}),
            "--conns: invalid value 'abc' (want a number)");
  EXPECT_EQ(Error({"--total=1e3x", "put"}),
            "--total: invalid value '1e3x' (want a number)");
  EXPECT_EQ(Error({"--duration=10", "put"}),
            "--duration: invalid value '10' (want a duration such as 500ms, "
            "10s or 1m)");
  EXPECT_EQ(Error({"--json=maybe", "put"}),
            "--json: invalid value 'maybe' (want true or false)");
  EXPECT_EQ(Error({"--clients=99999999999", "put"}),
            "--clients: invalid value '99999999999' (want a number)");
  EXPECT_EQ(Error({"put", "--conns"}), "--conns: needs a value");
}

TEST_F(OptionsTest, UnknownFlag) {
  EXPECT_EQ(Error({"--connections=3", "put"}),
            "unknown flag --connections (synod-bench --help lists the flags)");
  // A flag of another module is not synod-bench's.
  EXPECT_NE(Error({"--gtest_filter=x", "put"}).find("unknown flag"),
            std::string::npos);
}

TEST_F(OptionsTest, OutOfRangeValues) {
  EXPECT_EQ(Error({"--conns=0", "put"}), "--conns: must be at least 1 (got 0)");
  EXPECT_EQ(Error({"--clients=-3", "put"}),
            "--clients: must be at least 1 (got -3)");
  EXPECT_EQ(Error({"--key-size=0", "put"}),
            "--key-size: must be at least 1 (got 0)");
  EXPECT_EQ(Error({"--val-size=-1", "put"}),
            "--val-size: must be at least 0 (got -1)");
  EXPECT_EQ(Error({"--rate=-1", "put"}), "--rate: must be at least 0 (got -1)");
  EXPECT_EQ(Error({"--total=-1", "put"}),
            "--total: must be at least 0 (got -1)");
  EXPECT_EQ(Error({"--duration=-1s", "put"}),
            "--duration: must not be negative (got -1s)");
  EXPECT_EQ(Error({"--timeout=0s", "put"}),
            "--timeout: must be positive (got 0)");
  EXPECT_EQ(Error({"--consistency=x", "range"}),
            "--consistency: must be 'l' (linearizable) or 's' (serializable) "
            "(got 'x')");
}

TEST_F(OptionsTest, InconsistentCombinations) {
  EXPECT_EQ(Error({"--total=0", "put"}),
            "--total and --duration are both 0: the run would never end; set "
            "one");
  EXPECT_EQ(Error({"--conns=10", "--clients=5", "put"}),
            "--clients: must be at least --conns (10), got 5");
  EXPECT_EQ(Error({"--key-size=2", "--key-space=1000", "put"}),
            "--key-space: 1000 keys do not fit in --key-size 2 (at most 100 "
            "distinct keys)");
  EXPECT_TRUE(Parse({"--key-size=2", "--key-space=100", "put"}).ok());
  EXPECT_EQ(Error({"watch-latency"}),
            "--rate: watch-latency needs a put rate (e.g. --rate=100)");
  EXPECT_EQ(Error({"--rate=10", "--val-size=4", "watch-latency"}),
            "--val-size: watch-latency carries an 8-byte send time in each "
            "value: must be at least 8 (got 4)");
  EXPECT_EQ(
      Error({"--watchers=5", "--watch-streams=6", "--rate=1", "watch-latency"}),
      "--watch-streams: must be at most --watchers (5), got 6");
  EXPECT_EQ(Error({"--txn-ops=3", "txn-put"}),
            "--txn-ops: needs as many keys: --key-space is 1, got 3");
}

TEST_F(OptionsTest, WatchFanOutNeedsNoRate) {
  auto o = Parse({"--watchers=1000", "--watch-streams=10", "watch"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->workload, Workload::kWatch);
  EXPECT_EQ(o->rate, 0);
  EXPECT_EQ(o->watchers, 1000);
  EXPECT_EQ(o->watch_streams, 10);
  EXPECT_EQ(o->watch_per_stream, 0);
  EXPECT_EQ(o->watch_idle, absl::ZeroDuration());
  EXPECT_TRUE(IsWatchWorkload(Workload::kWatch));
  EXPECT_TRUE(IsWatchWorkload(Workload::kWatchLatency));
  EXPECT_FALSE(IsWatchWorkload(Workload::kPut));
}

TEST_F(OptionsTest, WatchersPerStreamMultiplyOut) {
  auto o = Parse({"--watch-streams=20", "--watch-per-stream=500",
                  "--watch-idle=3s", "watch"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->watchers, 10000);
  EXPECT_EQ(o->watch_streams, 20);
  EXPECT_EQ(o->watch_per_stream, 500);
  EXPECT_EQ(o->watch_idle, absl::Seconds(3));
  // The same for watch-latency.
  o = Parse({"--rate=5", "--watch_streams=3", "--watch_per_stream=2",
             "watch-latency"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->watchers, 6);
  // And back to the default on the next parse.
  o = Parse({"watch"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->watchers, 100);
  EXPECT_EQ(o->watch_per_stream, 0);
}

TEST_F(OptionsTest, WatchOptionErrors) {
  EXPECT_EQ(Error({"--watchers=10", "--watch-per-stream=2", "watch"}),
            "--watch-per-stream: give --watchers or --watch-per-stream, not "
            "both");
  // Given explicitly, even at its default value.
  EXPECT_EQ(Error({"--watchers", "100", "--watch-per-stream=2", "watch"}),
            "--watch-per-stream: give --watchers or --watch-per-stream, not "
            "both");
  EXPECT_EQ(Error({"--watch-per-stream=-1", "watch"}),
            "--watch-per-stream: must be at least 0 (got -1)");
  EXPECT_EQ(Error({"--watch-streams=1000", "--watch-per-stream=2000",
                   "watch"}),
            "--watch-per-stream: --watch-streams x --watch-per-stream is "
            "2000000 watchers; at most 1000000");
  EXPECT_EQ(Error({"--watch-idle=-2s", "watch"}),
            "--watch-idle: must not be negative (got -2s)");
  EXPECT_EQ(Error({"--watch-idle=soon", "watch"}),
            "--watch-idle: invalid value 'soon' (want a duration such as "
            "500ms, 10s or 1m)");
  EXPECT_EQ(Error({"--watch-idle=1s", "put"}),
            "--watch-idle: only for the watch and watch-latency workloads");
  EXPECT_EQ(Error({"--val-size=7", "watch"}),
            "--val-size: watch carries an 8-byte send time in each value: "
            "must be at least 8 (got 7)");
  EXPECT_EQ(Error({"--watchers=5", "--watch-streams=6", "watch"}),
            "--watch-streams: must be at most --watchers (5), got 6");
}

TEST_F(OptionsTest, BadEndpoints) {
  EXPECT_EQ(Error({"--endpoints=", "put"}),
            "--endpoints: needs at least one host:port");
  EXPECT_EQ(Error({"--endpoints=localhost", "put"}),
            "--endpoints: 'localhost' is not host:port (e.g. 127.0.0.1:2379)");
  EXPECT_EQ(Error({"--endpoints=127.0.0.1:99999", "put"}),
            "--endpoints: '127.0.0.1:99999' is not host:port (e.g. "
            "127.0.0.1:2379)");
  EXPECT_EQ(Error({"--cert=c.pem", "put"}), "--cert: given without --key");
  EXPECT_EQ(Error({"--key=k.pem", "put"}), "--key: given without --cert");
}

// etcdctl's rule: https:// is TLS, http:// is not, and no scheme is TLS when
// a TLS flag is given.
TEST_F(OptionsTest, TlsEndpoints) {
  auto o =
      Parse({"--endpoints=https://127.0.0.1:1,http://127.0.0.1:2,"
             "127.0.0.1:3",
             "put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->endpoints, (std::vector<std::string>{
                              "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}));
  EXPECT_EQ(o->endpoint_tls, (std::vector<bool>{true, false, false}));

  o = Parse({"--endpoints=https://127.0.0.1:1,http://127.0.0.1:2,127.0.0.1:3",
             "--cacert=ca.pem", "--cert", "c.pem", "--key=k.pem", "put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->endpoint_tls, (std::vector<bool>{true, false, true}));
  EXPECT_EQ(o->cacert, "ca.pem");
  EXPECT_EQ(o->cert, "c.pem");
  EXPECT_EQ(o->key, "k.pem");
  EXPECT_FALSE(o->insecure_skip_tls_verify);

  o = Parse({"--endpoints=127.0.0.1:3", "--insecure-skip-tls-verify", "put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->endpoint_tls, (std::vector<bool>{true}));
  EXPECT_TRUE(o->insecure_skip_tls_verify);
}

// --key-prefix, --watch-keys and --watch-read (issue 15's bench: services
// each reading and watching a key of their own).
TEST_F(OptionsTest, KeyPrefixAndWatchKeysDefaults) {
  auto o = Parse({"watch"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->key_prefix, "");
  EXPECT_EQ(o->watch_keys, WatchKeys::kSame);
  EXPECT_FALSE(o->watch_read);
  EXPECT_EQ(o->key_space, 1);
  EXPECT_EQ(KeyOf(*o, 42), "00000042");
}

TEST_F(OptionsTest, KeyPrefixForEveryWorkload) {
  auto o = Parse({"--key-prefix=/cfg/", "--key-size=4", "put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->key_prefix, "/cfg/");
  EXPECT_EQ(KeyOf(*o, 7), "/cfg/0007");
  // And back to none on the next parse.
  o = Parse({"range"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(KeyOf(*o, 7), "00000007");
}

TEST_F(OptionsTest, DistinctWatchKeysAreOnePerWatcher) {
  auto o = Parse({"--watch-keys=distinct", "--watch-read",
                         "--watch-streams=100", "--watch-per-stream=100",
                         "--key-prefix=/cfg/", "--rate=100", "watch-latency"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->watch_keys, WatchKeys::kDistinct);
  EXPECT_TRUE(o->watch_read);
  EXPECT_EQ(o->watchers, 10000);
  EXPECT_EQ(o->key_space, 10000);
  // --watch-read is a boolean: --nowatch-read turns it off.
  o = Parse({"--watch-read", "--nowatch-read", "watch"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->watch_read);
  o = Parse({"--watch-keys", "same", "watch"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->watch_keys, WatchKeys::kSame);
}

TEST_F(OptionsTest, WatchKeysAndWatchReadErrors) {
  EXPECT_EQ(Error({"--watch-keys=many", "watch"}),
            "--watch-keys: must be 'same' or 'distinct' (got 'many')");
  EXPECT_EQ(Error({"--watch-keys=distinct", "put"}),
            "--watch-keys: only for the watch and watch-latency workloads");
  EXPECT_EQ(Error({"--watch-read", "range"}),
            "--watch-read: only for the watch and watch-latency workloads");
  EXPECT_EQ(Error({"--watch-keys=distinct", "--key-space=5", "watch"}),
            "--key-space: --watch-keys=distinct watches --watchers keys; do "
            "not give --key-space");
  EXPECT_EQ(Error({"--watch-keys=distinct", "--watchers=1000", "--key-size=2",
                   "watch"}),
            "--watchers: 1000 keys (--watch-keys=distinct) do not fit in "
            "--key-size 2 (at most 100 distinct keys)");
  EXPECT_EQ(Error({"--watch-read=perhaps", "watch"}),
            "--watch-read: invalid value 'perhaps' (want true or false)");
}

TEST_F(OptionsTest, UsageNamesTheWatchKeysFlags) {
  const std::string u = Usage();
  EXPECT_NE(u.find("--key-prefix"), std::string::npos);
  EXPECT_NE(u.find("--watch-keys"), std::string::npos);
  EXPECT_NE(u.find("--watch-read"), std::string::npos);
}

TEST(FormatKeyTest, ZeroPaddedDecimal) {
  EXPECT_EQ(FormatKey(42, 8), "00000042");
  EXPECT_EQ(FormatKey(0, 1), "0");
  EXPECT_EQ(FormatKey(99, 2), "99");
}

}  // namespace
}  // namespace synod::bench
