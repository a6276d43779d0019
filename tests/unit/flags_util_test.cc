// common/flags_util.h: etcd-style flag spelling and URL host:port parsing,
// shared by synod's and synod-proxy's main().
#include "common/flags_util.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace synod::common {
namespace {

std::vector<std::string> Normalize(std::vector<std::string> in) {
  std::vector<char*> argv;
  for (std::string& s : in) argv.push_back(s.data());
  EtcdStyleArgs args(static_cast<int>(argv.size()), argv.data());
  return std::vector<std::string>(args.argv(), args.argv() + args.argc());
}

TEST(FlagsUtilTest, DashedFlagNamesBecomeUnderscoredValuesDoNot) {
  EXPECT_EQ(Normalize({"synod-proxy", "--listen-addr=a-b:1", "--cache-max-bytes",
                       "1-2", "-v", "pos-arg"}),
            (std::vector<std::string>{"synod-proxy", "--listen_addr=a-b:1",
                                      "--cache_max_bytes", "1-2", "-v",
                                      "pos-arg"}));
}

TEST(FlagsUtilTest, OneLeadingDashIsRespelledTooAndABareDoubleDashEndsFlags) {
  EXPECT_EQ(Normalize({"synod", "-listen-client-urls", "http://a-b:1", "-v",
                       "--", "--not-a-flag"}),
            (std::vector<std::string>{"synod", "-listen_client_urls", "http://a-b:1",
                                      "-v", "--", "--not-a-flag"}));
}

TEST(FlagsUtilTest, FlagNamesAreListedWithoutDashesOrValues) {
  std::vector<std::string> in = {"synod", "--name=m1", "-data-dir", "d",
                                 "--nopre-vote", "--", "--max-wals=3"};
  std::vector<char*> argv;
  for (std::string& s : in) argv.push_back(s.data());
  EtcdStyleArgs args(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(args.flag_names(),
            (std::vector<std::string>{"name", "data_dir", "nopre_vote"}));
}

TEST(FlagsUtilTest, ProgramNameIsKept) {
  EXPECT_EQ(Normalize({"--odd-name"}),
            (std::vector<std::string>{"--odd-name"}));
}

TEST(FlagsUtilTest, UrlHostPortDropsSchemeAndSlash) {
  EXPECT_EQ(UrlHostPort("http://127.0.0.1:2379/"), "127.0.0.1:2379");
  EXPECT_EQ(UrlHostPort("http://127.0.0.1:2379"), "127.0.0.1:2379");
  EXPECT_EQ(UrlHostPort("127.0.0.1:2379"), "127.0.0.1:2379");
}

TEST(FlagsUtilTest, SplitHostPortNeedsANumericPort) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(SplitHostPort("localhost:2381", &host, &port));
  EXPECT_EQ(host, "localhost");
  EXPECT_EQ(port, 2381);
  EXPECT_FALSE(SplitHostPort("localhost", &host, &port));
  EXPECT_FALSE(SplitHostPort("localhost:x", &host, &port));
}

TEST(FlagsUtilTest, FlagToEnvIsEtcds) {
  EXPECT_EQ(FlagToEnv("ETCD", "listen-client-urls"), "ETCD_LISTEN_CLIENT_URLS");
  EXPECT_EQ(FlagToEnv("ETCD", "listen_client_urls"), "ETCD_LISTEN_CLIENT_URLS");
  EXPECT_EQ(FlagToEnv("ETCD", "name"), "ETCD_NAME");
}

const std::vector<std::string> kFlags = {"name", "initial_cluster", "log_level"};

TEST(FlagsUtilTest, EnvSetsFlagsTheCommandLineDoesNotGive) {
  auto plan = PlanFlagsFromEnv(
      "ETCD", kFlags, {"log_level"},
      {"HOME=/root", "ETCD_NAME=m1", "ETCD_INITIAL_CLUSTER=m1=http://a:1,m2=http://b:2"});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->set.size(), 2u);
  EXPECT_EQ(plan->set[0].flag, "name");
  EXPECT_EQ(plan->set[0].key, "ETCD_NAME");
  EXPECT_EQ(plan->set[0].value, "m1");
  EXPECT_EQ(plan->set[1].flag, "initial_cluster");
  EXPECT_EQ(plan->set[1].value, "m1=http://a:1,m2=http://b:2");
  EXPECT_TRUE(plan->unrecognized.empty());
}

TEST(FlagsUtilTest, EmptyAndUnknownEtcdVariablesAreUnrecognizedOthersIgnored) {
  auto plan = PlanFlagsFromEnv("ETCD", kFlags, {},
                               {"ETCD_NAME=", "ETCD_FOO=1", "ETCDCTL_API=3", "PATH=/bin"});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->set.empty());
  EXPECT_EQ(plan->unrecognized, (std::vector<std::string>{"ETCD_NAME=", "ETCD_FOO=1"}));
}

TEST(FlagsUtilTest, AVariableForAFlagOnTheCommandLineIsEtcdsConflictError) {
  for (const char* env : {"ETCD_NAME=m2", "ETCD_NAME="}) {
    auto plan = PlanFlagsFromEnv("ETCD", kFlags, {"name"}, {env});
    ASSERT_FALSE(plan.ok()) << env;
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(plan.status().message(),
              "conflicting environment variable \"ETCD_NAME\" is shadowed by "
              "corresponding command-line flag (either unset environment variable "
              "or disable flag)");
  }
}

}  // namespace
}  // namespace synod::common
