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

}  // namespace
}  // namespace synod::common
