// synod-bench's flags for distinct-key watchers (issue 15's bench):
// --key-prefix, --watch-keys and --watch-read, and their errors.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/synod_bench/options.h"
#include "gtest/gtest.h"

namespace synod::bench {
namespace {

std::string Error(const std::vector<std::string>& args) {
  absl::StatusOr<Options> o = ParseOptions(args);
  EXPECT_FALSE(o.ok());
  if (o.ok()) return "";
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(o.status().message());
}

TEST(OptionsWatchKeysTest, Defaults) {
  auto o = ParseOptions({"watch"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->key_prefix, "");
  EXPECT_EQ(o->watch_keys, WatchKeys::kSame);
  EXPECT_FALSE(o->watch_read);
  EXPECT_EQ(o->key_space, 1);
  EXPECT_EQ(KeyOf(*o, 42), "00000042");
}

TEST(OptionsWatchKeysTest, KeyPrefixForEveryWorkload) {
  auto o = ParseOptions({"--key-prefix=/cfg/", "--key-size=4", "put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->key_prefix, "/cfg/");
  EXPECT_EQ(KeyOf(*o, 7), "/cfg/0007");
  // And back to none on the next parse.
  o = ParseOptions({"range"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(KeyOf(*o, 7), "00000007");
}

TEST(OptionsWatchKeysTest, DistinctKeysAreOnePerWatcher) {
  auto o = ParseOptions({"--watch-keys=distinct", "--watch-read",
                         "--watch-streams=100", "--watch-per-stream=100",
                         "--key-prefix=/cfg/", "--rate=100", "watch-latency"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->watch_keys, WatchKeys::kDistinct);
  EXPECT_TRUE(o->watch_read);
  EXPECT_EQ(o->watchers, 10000);
  EXPECT_EQ(o->key_space, 10000);
  // --watch-read is a boolean: --nowatch-read turns it off.
  o = ParseOptions({"--watch-read", "--nowatch-read", "watch"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->watch_read);
  o = ParseOptions({"--watch-keys", "same", "watch"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->watch_keys, WatchKeys::kSame);
}

TEST(OptionsWatchKeysTest, Errors) {
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

TEST(OptionsWatchKeysTest, UsageNamesTheFlags) {
  const std::string u = Usage();
  EXPECT_NE(u.find("--key-prefix"), std::string::npos);
  EXPECT_NE(u.find("--watch-keys"), std::string::npos);
  EXPECT_NE(u.find("--watch-read"), std::string::npos);
}

}  // namespace
}  // namespace synod::bench
