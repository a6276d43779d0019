// synod-bench's auth flags: --user and --password read as etcdctl reads
// them, and the errors for a user without a password and the reverse.
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

TEST(OptionsAuthTest, AnonymousByDefault) {
  auto o = ParseOptions({"put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->user, "");
  EXPECT_EQ(o->password, "");
}

TEST(OptionsAuthTest, UserSplitsAtTheFirstColon) {
  auto o = ParseOptions({"--user=alice:pw:with:colons", "range"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->user, "alice");
  EXPECT_EQ(o->password, "pw:with:colons");
}

TEST(OptionsAuthTest, PasswordFlagKeepsTheWholeUserName) {
  auto o = ParseOptions({"--user", "bob:x", "--password", "secret", "put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->user, "bob:x");
  EXPECT_EQ(o->password, "secret");
}

TEST(OptionsAuthTest, Errors) {
  EXPECT_EQ(Error({"--password=pw", "put"}),
            "--password: given without --user");
  EXPECT_EQ(Error({"--user=alice", "put"}),
            "--user: no password for 'alice' (--user=name:password or "
            "--password)");
  EXPECT_EQ(Error({"--user=:pw", "put"}), "--user: empty user name");
}

TEST(OptionsAuthTest, EachParseStartsAnonymous) {
  ASSERT_TRUE(ParseOptions({"--user=a:b", "put"}).ok());
  auto o = ParseOptions({"put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->user, "");
}

}  // namespace
}  // namespace synod::bench
