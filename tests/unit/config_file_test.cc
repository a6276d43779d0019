// backend/server/config_file.h: etcd's config-file keys set the flags of the
// same names (here etcd_flags.cc's), Go durations may be etcd's integer
// nanoseconds, lists are comma-separated values, and a config file
// replaces the command line.
#include "backend/server/config_file.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/reflection.h"
#include "backend/server/etcd_flags.h"
#include "gtest/gtest.h"

namespace synod::server {
namespace {

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/config_file_test_XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
  }
  void TearDown() override { unlink(path_.c_str()); }

  void WriteFile(const std::string& text) {
    std::ofstream f(path_);
    f << text;
  }
  std::string Value(const std::string& flag) {
    return absl::FindCommandLineFlag(flag)->CurrentValue();
  }

  std::string path_;
  absl::FlagSaver saver_;
};

TEST_F(ConfigFileTest, EtcdKeysSetTheFlagsWithNanosecondDurationsAndLists) {
  ASSERT_TRUE(ReadEtcdProcessFlags("info").ok());  // links etcd_flags.cc's flags
  WriteFile(
      "grpc-keepalive-min-time: 1000000000\n"
      "grpc-keepalive-interval: 90s\n"
      "experimental-warning-apply-duration: 0\n"
      "backend-batch-interval: 10000000\n"
      "max-wals: 3\n"
      "log-outputs: [stdout]\n"
      "proxy: 'off'\n"
      "enable-v2: false\n"
      "no-such-key: 1\n");
  std::vector<std::string> skipped;
  absl::Status st = ApplyConfigFile(path_, &skipped);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(Value("grpc_keepalive_min_time"), "1s");
  EXPECT_EQ(Value("grpc_keepalive_interval"), "1m30s");
  EXPECT_EQ(Value("experimental_warning_apply_duration"), "0");
  EXPECT_EQ(Value("backend_batch_interval"), "10000000ns");
  EXPECT_EQ(Value("max_wals"), "3");
  EXPECT_EQ(Value("log_outputs"), "stdout");
  EXPECT_EQ(skipped, (std::vector<std::string>{"no-such-key"}));
  auto flags = ReadEtcdProcessFlags("info");
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->log_output, "stdout");
}

TEST_F(ConfigFileTest, ABadValueNamesTheKey) {
  ASSERT_TRUE(ReadEtcdProcessFlags("info").ok());
  WriteFile("max-wals: -1\n");
  absl::Status st = ApplyConfigFile(path_, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find(": max-wals: -1: "), std::string::npos) << st;
}

TEST_F(ConfigFileTest, CommandLineFlagsAreResetToTheirDefaults) {
  ASSERT_TRUE(ReadEtcdProcessFlags("info").ok());
  std::string error;
  ASSERT_TRUE(absl::FindCommandLineFlag("max_wals")->ParseFrom("9", &error));
  ASSERT_TRUE(absl::FindCommandLineFlag("debug")->ParseFrom("true", &error));
  std::vector<std::string> reset;
  ResetCommandLineFlags({"max_wals", "nodebug", "config_file", "not_a_flag"}, &reset);
  EXPECT_EQ(Value("max_wals"), "5");
  EXPECT_EQ(Value("debug"), "false");
  EXPECT_EQ(reset, (std::vector<std::string>{"max_wals", "debug"}));
}

}  // namespace
}  // namespace synod::server
