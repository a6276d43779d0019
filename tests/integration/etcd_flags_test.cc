// Every flag of `etcd --help` (etcd 3.4) starts the server, at etcd's
// default value and at one other sensible value (issue 14), from the command
// line, from ETCD_* environment variables and from a config file.
//
// The flags, their defaults and the other values are a table checked in
// here (kFlags); EtcdHelpListsExactlyTheTableFlags compares it with what
// /usr/bin/etcd --help prints, so a flag the table lacks fails the suite.
// The starts are batched (all defaults in one process, all other values in
// two more) to keep the suite near 20 s. With SYNOD_TEST_SERVER=etcd the
// same starts run against real etcd, which accepts every value in the table
// (the refusals are Synod's and are skipped there).
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/integration/harness.h"

namespace synod::testing {
namespace {

enum class Kind {
  // Started at its default and at `other`.
  kServes,
  // Set by the harness (names, URLs, data dir) to values other than etcd's
  // defaults in every test; not given again here.
  kHarness,
  // Started at its default; `other` picks something Synod lacks and must be
  // refused with a message naming the flag.
  kRefused,
  // Started at its default and at `other`, which names the files that
  // --auto-tls made in an earlier start ("{client}" and "{peer}" are their
  // directories).
  kWithTlsFiles,
  // Started at its default; `other` is exercised by another suite that has
  // the files it needs (auth_test: JWT keys; tls_test: CRLs).
  kOtherElsewhere,
};

struct EtcdFlag {
  const char* name;
  const char* etcd_default;  // what etcd --help shows, unless noted
  const char* other;
  Kind kind;
};

// etcd 3.4's `etcd --help`, in its order.
const EtcdFlag kFlags[] = {
    // Member.
    {"name", "default", "", Kind::kHarness},
    {"data-dir", "${name}.etcd", "", Kind::kHarness},
    {"wal-dir", "", "{dir}/wal", Kind::kRefused},
    {"snapshot-count", "100000", "10000", Kind::kServes},
    {"heartbeat-interval", "100", "50", Kind::kServes},
    {"election-timeout", "1000", "500", Kind::kServes},
    {"initial-election-tick-advance", "true", "false", Kind::kServes},
    {"listen-peer-urls", "http://localhost:2380", "", Kind::kHarness},
    {"listen-client-urls", "http://localhost:2379", "", Kind::kHarness},
    {"max-snapshots", "5", "3", Kind::kServes},
    {"max-wals", "5", "0", Kind::kServes},
    {"quota-backend-bytes", "0", "4294967296", Kind::kServes},
    // Help shows ''; etcd itself refuses an empty duration, so "0s".
    {"backend-batch-interval", "0s", "10ms", Kind::kServes},
    {"backend-batch-limit", "0", "1000", Kind::kServes},
    {"max-txn-ops", "128", "256", Kind::kServes},
    {"max-request-bytes", "1572864", "2097152", Kind::kServes},
    // Help shows 'math.MaxUint32', which etcd's parser refuses.
    {"max-concurrent-streams", "4294967295", "100", Kind::kServes},
    {"grpc-keepalive-min-time", "5s", "1s", Kind::kServes},
    {"grpc-keepalive-interval", "2h", "1m", Kind::kServes},
    {"grpc-keepalive-timeout", "20s", "5s", Kind::kServes},
    // Clustering.
    {"initial-advertise-peer-urls", "http://localhost:2380", "", Kind::kHarness},
    {"initial-cluster", "default=http://localhost:2380", "", Kind::kHarness},
    // The other values restart the member on its data dir, where etcd and
    // Synod ignore the state and the token.
    {"initial-cluster-state", "new", "existing", Kind::kServes},
    {"initial-cluster-token", "etcd-cluster", "other-token", Kind::kServes},
    {"advertise-client-urls", "http://localhost:2379", "", Kind::kHarness},
    {"discovery", "", "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579",
     Kind::kRefused},
    {"discovery-fallback", "proxy", "exit", Kind::kServes},
    {"discovery-proxy", "", "http://127.0.0.1:3128", Kind::kRefused},
    {"discovery-srv", "", "example.com", Kind::kRefused},
    {"discovery-srv-name", "", "synod", Kind::kRefused},
    {"strict-reconfig-check", "true", "false", Kind::kServes},
    {"pre-vote", "false", "true", Kind::kServes},
    {"auto-compaction-retention", "0", "1000", Kind::kServes},
    {"auto-compaction-mode", "periodic", "revision", Kind::kServes},
    {"enable-v2", "false", "true", Kind::kRefused},
    // Security.
    {"cert-file", "", "{client}/cert.pem", Kind::kWithTlsFiles},
    {"key-file", "", "{client}/key.pem", Kind::kWithTlsFiles},
    {"client-cert-auth", "false", "true", Kind::kServes},
    {"client-crl-file", "", "", Kind::kOtherElsewhere},
    {"client-cert-allowed-hostname", "", "localhost", Kind::kServes},
    {"trusted-ca-file", "", "{client}/cert.pem", Kind::kWithTlsFiles},
    {"auto-tls", "false", "true", Kind::kServes},
    {"peer-cert-file", "", "{peer}/cert.pem", Kind::kWithTlsFiles},
    {"peer-key-file", "", "{peer}/key.pem", Kind::kWithTlsFiles},
    {"peer-client-cert-auth", "false", "true", Kind::kServes},
    {"peer-trusted-ca-file", "", "{peer}/cert.pem", Kind::kWithTlsFiles},
    {"peer-cert-allowed-cn", "", "synod", Kind::kWithTlsFiles},
    {"peer-cert-allowed-hostname", "", "localhost", Kind::kServes},
    {"peer-auto-tls", "false", "true", Kind::kServes},
    {"peer-crl-file", "", "", Kind::kOtherElsewhere},
    {"cipher-suites", "", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", Kind::kServes},
    {"cors", "*", "http://example.com:80", Kind::kServes},
    {"host-whitelist", "*", "example.com", Kind::kRefused},
    // Auth.
    {"auth-token", "simple", "", Kind::kOtherElsewhere},
    {"bcrypt-cost", "10", "4", Kind::kServes},
    {"auth-token-ttl", "300", "600", Kind::kServes},
    // Profiling and monitoring.
    {"enable-pprof", "false", "true", Kind::kServes},
    {"metrics", "basic", "extensive", Kind::kServes},
    {"listen-metrics-urls", "", "", Kind::kHarness},
    // Logging. The other log-outputs is a file (kLogFile's test).
    {"logger", "capnslog", "zap", Kind::kServes},
    {"log-outputs", "default", "stdout", Kind::kServes},
    {"log-level", "info", "debug", Kind::kServes},
    // v2 proxy.
    {"proxy", "off", "readonly", Kind::kRefused},
    {"proxy-failure-wait", "5000", "1000", Kind::kServes},
    {"proxy-refresh-interval", "30000", "10000", Kind::kServes},
    {"proxy-dial-timeout", "1000", "500", Kind::kServes},
    {"proxy-write-timeout", "5000", "1000", Kind::kServes},
    {"proxy-read-timeout", "0", "1000", Kind::kServes},
    // Experimental.
    {"experimental-initial-corrupt-check", "false", "true", Kind::kServes},
    {"experimental-corrupt-check-time", "0s", "1m", Kind::kServes},
    {"experimental-enable-v2v3", "", "/v2/", Kind::kRefused},
    {"experimental-backend-bbolt-freelist-type", "array", "map", Kind::kServes},
    {"experimental-enable-lease-checkpoint", "false", "true", Kind::kServes},
    {"experimental-compaction-batch-limit", "1000", "100", Kind::kServes},
    {"experimental-peer-skip-client-san-verification", "false", "true", Kind::kRefused},
    {"experimental-watch-progress-notify-interval", "10m", "5s", Kind::kServes},
    {"experimental-warning-apply-duration", "100ms", "1s", Kind::kServes},
    // Unsafe.
    // On the single member's own data: nothing to remove
    // (ForceNewClusterRecoversFromOneSurvivingMember removes two of three).
    {"force-new-cluster", "false", "true", Kind::kServes},
    // To be deprecated.
    {"debug", "false", "true", Kind::kServes},
    {"log-package-levels", "", "etcdserver=DEBUG", Kind::kRefused},
};

// Where the table's default differs from the text etcd --help shows.
const std::map<std::string, std::string> kHelpShows = {
    {"backend-batch-interval", ""},
    {"max-concurrent-streams", "math.MaxUint32"},
};

std::string Expand(std::string value, const std::string& dir, const std::string& data_dir) {
  return absl::StrReplaceAll(value, {{"{dir}", dir},
                                     {"{client}", data_dir + "/fixtures/client"},
                                     {"{peer}", data_dir + "/fixtures/peer"}});
}

// etcd refuses these spelled out at their default ("unexpected TLS cipher
// suite \"\""); it has them only by leaving them out. Synod takes both.
const std::set<std::string> kEtcdDefaultOnlyByOmission = {"cipher-suites"};

std::vector<std::string> Flags(bool defaults, const std::set<Kind>& kinds,
                               const std::string& dir, const std::string& data_dir) {
  std::vector<std::string> out;
  for (const EtcdFlag& f : kFlags) {
    if (!kinds.count(f.kind)) continue;
    if (defaults && UsingRealEtcd() && kEtcdDefaultOnlyByOmission.count(f.name)) continue;
    out.push_back(absl::StrCat("--", f.name, "=",
                               Expand(defaults ? f.etcd_default : f.other, dir, data_dir)));
  }
  return out;
}

// A put and a get through etcdctl: the member serves.
::testing::AssertionResult Serves(const ServerProcess& s) {
  CmdResult put = Etcdctl(s.Endpoint(), {"put", "flag-key", "v"});
  if (put.exit_code != 0) return ::testing::AssertionFailure() << "put: " << put.err;
  CmdResult get = Etcdctl(s.Endpoint(), {"get", "flag-key", "--print-value-only"});
  if (get.out != "v\n") {
    return ::testing::AssertionFailure() << "get: " << get.out << get.err;
  }
  return ::testing::AssertionSuccess();
}

TEST(EtcdFlagsTest, EtcdHelpListsExactlyTheTableFlags) {
  if (access("/usr/bin/etcd", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/etcd";
  CmdResult help = RunCommand({"/usr/bin/etcd", "--help"}, std::nullopt, absl::Seconds(10));
  const std::string text = help.out + help.err;
  std::map<std::string, std::string> listed;  // name -> default as shown
  const std::regex line(R"(^  --([a-z0-9-]+) '?([^'\n]*)'?$)");
  for (const std::string& l : SplitLines(text)) {
    std::smatch m;
    if (std::regex_match(l, m, line)) listed[m[1]] = m[2];
  }
  ASSERT_GE(listed.size(), 70u) << text;
  std::set<std::string> in_table;
  for (const EtcdFlag& f : kFlags) {
    in_table.insert(f.name);
    auto it = listed.find(f.name);
    if (it == listed.end()) {
      ADD_FAILURE() << "--" << f.name << " is in the table but not in etcd --help";
      continue;
    }
    auto shown = kHelpShows.find(f.name);
    EXPECT_EQ(it->second, shown != kHelpShows.end() ? shown->second : f.etcd_default)
        << "--" << f.name;
  }
  for (const auto& [name, def] : listed) {
    EXPECT_TRUE(in_table.count(name)) << "etcd --help lists --" << name << " (default '"
                                      << def << "'), which the table lacks";
  }
}

// Defaults, then the other values on the same data dir (so that
// --initial-cluster-state=existing finds a member there), then the TLS file
// flags pointing at what --auto-tls made.
TEST(EtcdFlagsTest, EveryFlagStartsAtEtcdsDefaultAndAtAnotherValue) {
  TestDir dir;
  ServerOptions options;
  options.extra_flags = Flags(
      true, {Kind::kServes, Kind::kRefused, Kind::kWithTlsFiles, Kind::kOtherElsewhere},
      dir.path(), "");
  ServerProcess s(dir.path(), options);
  ASSERT_TRUE(s.Start());
  ASSERT_TRUE(Serves(s)) << s.LogTail();
  s.Stop();

  s.AddFlags(Flags(false, {Kind::kServes}, dir.path(), s.data_dir()));
  ASSERT_TRUE(s.Start()) << s.LogTail();
  EXPECT_TRUE(Serves(s)) << s.LogTail();
  s.Stop();

  // The files --auto-tls and --peer-auto-tls made, named by the file flags;
  // the URLs stay http://, where etcd and Synod ignore them with a warning.
  std::vector<std::string> files = Flags(false, {Kind::kWithTlsFiles}, dir.path(), s.data_dir());
  files.push_back("--auto-tls=false");
  files.push_back("--peer-auto-tls=false");
  files.push_back("--peer-cert-allowed-hostname=");
  s.AddFlags(files);
  ASSERT_TRUE(s.Start()) << s.LogTail();
  EXPECT_TRUE(Serves(s)) << s.LogTail();
}

TEST(EtcdFlagsTest, FlagsForWhatSynodLacksAreRefusedNamingTheFlag) {
  if (UsingRealEtcd()) GTEST_SKIP() << "the refusals are Synod's";
  TestDir dir;
  for (const EtcdFlag& f : kFlags) {
    if (f.kind != Kind::kRefused) continue;
    const std::string flag = absl::StrCat("--", f.name, "=", Expand(f.other, dir.path(), ""));
    CmdResult r = RunCommand({ServerBinary(), "--data-dir=" + dir.path() + "/d", flag},
                             std::nullopt, absl::Seconds(10));
    EXPECT_EQ(r.exit_code, 2) << flag;
    EXPECT_TRUE(absl::StartsWith(r.err, absl::StrCat("synod: ", flag)))
        << flag << " gave: " << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "is not supported: ")) << r.err;
  }
}

TEST(EtcdFlagsTest, ZapLoggerWritesToTheLogOutputsFile) {
  TestDir dir;
  const std::string log = dir.path() + "/member.log";
  ServerOptions options;
  options.extra_flags = {"--logger=zap", "--log-outputs=" + log};
  ServerProcess s(dir.path(), options);
  ASSERT_TRUE(s.Start());
  EXPECT_TRUE(Serves(s));
  s.Stop();
  std::ifstream in(log);
  std::string first;
  std::getline(in, first);
  EXPECT_FALSE(first.empty()) << "nothing logged to " << log;
}

// etcd's pkg/flags.SetFlagsFromEnv: ETCD_<FLAG> sets a flag the command line
// does not give; unknown ETCD_ variables are warned about.
TEST(EtcdFlagsTest, EtcdEnvironmentVariablesSetFlags) {
  TestDir dir;
  const int client = PickFreePort(), peer = PickFreePort();
  const std::string client_url = absl::StrCat("http://127.0.0.1:", client);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer);
  std::vector<std::string> env = {
      "ETCD_NAME=env1",
      "ETCD_DATA_DIR=" + dir.path() + "/env1.data",
      "ETCD_LISTEN_CLIENT_URLS=" + client_url,
      "ETCD_ADVERTISE_CLIENT_URLS=" + client_url,
      "ETCD_LISTEN_PEER_URLS=" + peer_url,
      "ETCD_INITIAL_ADVERTISE_PEER_URLS=" + peer_url,
      "ETCD_INITIAL_CLUSTER=env1=" + peer_url,
      "ETCD_MAX_CONCURRENT_STREAMS=100",
      "ETCD_GRPC_KEEPALIVE_MIN_TIME=1s",
      "ETCD_ENABLE_V2=false",
      "ETCD_SYNOD_TEST_UNKNOWN=1",
  };
  BackgroundCmd server({ServerBinary()}, env);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  CmdResult put;
  while (absl::Now() < deadline && !server.Exited()) {
    put = Etcdctl(absl::StrCat("127.0.0.1:", client), {"put", "env-key", "v"}, std::nullopt,
                  absl::Seconds(2));
    if (put.exit_code == 0) break;
  }
  ASSERT_EQ(put.exit_code, 0) << put.err << server.Err();
  CmdResult members = Etcdctl(absl::StrCat("127.0.0.1:", client), {"member", "list"});
  EXPECT_TRUE(absl::StrContains(members.out, ", env1, " + peer_url + ", " + client_url))
      << members.out;
  EXPECT_TRUE(server.WaitForOutput("recognized and used environment variable ETCD_NAME=env1",
                                   absl::Seconds(5), /*in_stderr=*/true))
      << server.Err();
  EXPECT_TRUE(server.WaitForOutput("unrecognized environment variable ETCD_SYNOD_TEST_UNKNOWN=1",
                                   absl::Seconds(5), /*in_stderr=*/true))
      << server.Err();
  server.Terminate();
}

TEST(EtcdFlagsTest, EnvironmentVariableForAFlagOnTheCommandLineIsAnError) {
  TestDir dir;
  CmdResult r = RunCommand({ServerBinary(), "--name=cmd", "--data-dir=" + dir.path() + "/d"},
                           std::nullopt, absl::Seconds(10), {"ETCD_NAME=env"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(
      r.err,
      "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding "
      "command-line flag (either unset environment variable or disable flag)"))
      << r.err;

  r = RunCommand({ServerBinary(), "--data-dir=" + dir.path() + "/d"}, std::nullopt,
                 absl::Seconds(10), {"ETCD_HEARTBEAT_INTERVAL=abc"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "invalid value \"abc\" for ETCD_HEARTBEAT_INTERVAL"))
      << r.err;
}

// etcd's config file: the same keys, Go durations as integer nanoseconds,
// lists as YAML sequences; the command line's other flags are ignored (an
// --enable-v2=true there would be refused).
TEST(EtcdFlagsTest, ConfigFileTakesTheNewKeys) {
  TestDir dir;
  const std::string path = dir.path() + "/etcd.conf.yml";
  ServerOptions options;
  options.extra_flags = {"--config-file=" + path, "--enable-v2=true"};
  ServerProcess s(dir.path(), options);  // picks the ports the file names
  const std::string peer = absl::StrCat("http://127.0.0.1:", s.peer_port());
  {
    std::ofstream f(path);
    f << "name: " << s.name() << "\n"
      << "data-dir: " << s.data_dir() << "\n"
      << "listen-client-urls: " << s.ClientUrl() << "\n"
      << "advertise-client-urls: " << s.ClientUrl() << "\n"
      << "listen-peer-urls: " << peer << "\n"
      << "initial-advertise-peer-urls: " << peer << "\n"
      << "initial-cluster: " << s.name() << "=" << peer << "\n"
      << "listen-metrics-urls: " << s.MetricsUrl() << "\n"
      << "max-concurrent-streams: 100\n"
      << "grpc-keepalive-min-time: 1000000000\n"
      << "grpc-keepalive-interval: 60000000000\n"
      << "grpc-keepalive-timeout: 5000000000\n"
      << "experimental-watch-progress-notify-interval: 5000000000\n"
      << "experimental-warning-apply-duration: 1000000000\n"
      << "backend-batch-interval: 10000000\n"
      << "max-wals: 3\n"
      << "enable-v2: false\n"
      << "proxy: 'off'\n"
      << "discovery-fallback: exit\n"
      << "logger: zap\n"
      << "log-outputs: [stderr]\n"
      << "log-level: info\n";
  }
  ASSERT_TRUE(s.Start());
  EXPECT_TRUE(Serves(s)) << s.LogTail();
}

// etcd's disaster recovery: two of three members are lost for good; the
// survivor restarted with --force-new-cluster is a one-member cluster with
// all the data, its member ID and its cluster, and takes writes again.
TEST(EtcdFlagsTest, ForceNewClusterRecoversFromOneSurvivingMember) {
  Cluster c;
  ASSERT_TRUE(c.Start());
  ASSERT_EQ(c.Ctl(0, {"put", "before", "1"}).exit_code, 0);
  const uint64_t survivor = c.MemberId(0);
  c.Kill9(1);
  c.Kill9(2);
  c.member(0).AddFlags({"--force-new-cluster=true"});
  ASSERT_TRUE(c.Restart(0));
  CmdResult put = c.Ctl(0, {"put", "after", "2"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(c.Ctl(0, {"get", "before", "--print-value-only"}).out, "1\n");
  std::optional<Json> members = c.CtlJson(0, {"member", "list"});
  ASSERT_TRUE(members.has_value());
  ASSERT_EQ((*members)["members"].size(), 1u);
  EXPECT_EQ((*members)["members"][0]["ID"].Uint(), survivor);
  // And so after a restart without the flag.
  c.Stop(0);
  c.member(0).AddFlags({"--force-new-cluster=false"});
  ASSERT_TRUE(c.Restart(0));
  EXPECT_EQ(c.Ctl(0, {"get", "after", "--print-value-only"}).out, "2\n");
}

}  // namespace
}  // namespace synod::testing
