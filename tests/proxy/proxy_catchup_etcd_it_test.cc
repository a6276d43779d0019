// synod-proxy's watch catch-up in front of real etcd 3.4 (/usr/bin/etcd,
// whatever SYNOD_TEST_SERVER says): etcd answers a WatchProgressRequest at
// once with the store's revision, even while the catch-up's watcher still
// replays history, so the proxy must not take that answer for "caught up".
// The reported case: after writes under /services/ and with a live watch on
// the prefix open through the proxy, `etcdctl watch --prefix /services/
// --rev 2` through the proxy got nothing. Skipped when /usr/bin/etcd is
// missing.
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"
#include "tests/integration/harness.h"
#include "tests/proxy/proxy_process.h"
#include "tests/proxy/watch_client.h"

namespace synod::testing {
namespace {

constexpr char kEtcd[] = "/usr/bin/etcd";

class ProxyCatchUpEtcdItTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kEtcd, X_OK) != 0) GTEST_SKIP() << kEtcd << " not found";
    // This suite is about etcd 3.4's progress answers: always against it.
    setenv("SYNOD_TEST_SERVER", "etcd", 1);
    ASSERT_TRUE(UsingRealEtcd());
    dir_ = std::make_unique<TestDir>();
    member_ = std::make_unique<ServerProcess>(dir_->path());
    ASSERT_TRUE(member_->Start());
    proxy_ = std::make_unique<ProxyProcess>(
        std::vector<std::string>{member_->Endpoint()});
    ASSERT_TRUE(proxy_->Start());
    // Start()'s readiness read put its range in the cache, whose watch
    // comes up once the range is loaded: count upstream watches from then.
    ASSERT_TRUE(WaitFor(
        [&] {
          const double entries = ProxyMetric("synod_proxy_cache_entries");
          return entries >= 0 && ProxyMetric("synod_proxy_upstream_watches") ==
                                     entries;
        },
        absl::Seconds(10)));
    base_watches_ = ProxyMetric("synod_proxy_upstream_watches");
    proxy_channel_ = grpc::CreateChannel(proxy_->Endpoint(),
                                         grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    if (HasFailure() && proxy_) std::cerr << proxy_->Log() << "\n";
    proxy_.reset();
    member_.reset();
    dir_.reset();
  }
  // A put made directly on etcd.
  void MemberPut(const std::string& k, const std::string& v) {
    CmdResult r = Etcdctl(member_->Endpoint(), {"put", k, v});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  double ProxyMetric(const std::string& s) {
    return ScrapeMetric(proxy_->MetricsUrl(), s);
  }
  // The keys of an `etcdctl watch` output (PUT / key / value per event).
  static std::vector<std::string> WatchedKeys(
      const std::vector<std::string>& lines) {
    std::vector<std::string> keys;
    for (size_t i = 0; i + 2 < lines.size(); i += 3) {
      EXPECT_EQ(lines[i], "PUT");
      keys.push_back(lines[i + 1]);
    }
    return keys;
  }

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<ServerProcess> member_;
  std::unique_ptr<ProxyProcess> proxy_;
  std::shared_ptr<grpc::Channel> proxy_channel_;
  double base_watches_ = 0;
};

TEST_F(ProxyCatchUpEtcdItTest, EtcdctlRevWatchBehindALiveWatchGetsTheHistory) {
  constexpr int kWrites = 20;  // revisions 2 .. 21
  std::vector<std::string> want;
  for (int i = 0; i < kWrites; ++i) {
    const std::string k = absl::StrCat("/services/s", i);
    ASSERT_NO_FATAL_FAILURE(MemberPut(k, absl::StrCat("v", i)));
    want.push_back(k);
  }
  // The live watch: its range's upstream watch starts at 22.
  auto live = BackgroundCmd::Etcdctl(proxy_->Endpoint(),
                                     {"watch", "--prefix", "/services/"});
  ASSERT_TRUE(WaitFor(
      [&] {
        return ProxyMetric("synod_proxy_upstream_watches") ==
               base_watches_ + 1;
      },
      absl::Seconds(10)));
  // One more write seen by the live watch: its upstream watch is created.
  ASSERT_NO_FATAL_FAILURE(MemberPut("/services/live", "x"));
  ASSERT_TRUE(live->WaitForLines(3, absl::Seconds(10))) << live->Err();

  auto old = BackgroundCmd::Etcdctl(
      proxy_->Endpoint(), {"watch", "--prefix", "/services/", "--rev", "2"});
  want.push_back("/services/live");
  ASSERT_TRUE(old->WaitForLines(3 * want.size(), absl::Seconds(10)))
      << "got:\n" << old->Out() << old->Err();
  // Then live, exactly once each.
  ASSERT_NO_FATAL_FAILURE(MemberPut("/services/after", "y"));
  want.push_back("/services/after");
  ASSERT_TRUE(old->WaitForLines(3 * want.size(), absl::Seconds(10)))
      << "got:\n" << old->Out();
  ASSERT_TRUE(live->WaitForLines(6, absl::Seconds(10))) << live->Out();
  // The catch-up has merged: only the live upstream watch is left.
  EXPECT_TRUE(WaitFor(
      [&] {
        return ProxyMetric("synod_proxy_upstream_watches") ==
               base_watches_ + 1;
      },
      absl::Seconds(10)));
  EXPECT_EQ(WatchedKeys(old->Lines()), want);
  EXPECT_EQ(WatchedKeys(live->Lines()),
            (std::vector<std::string>{"/services/live", "/services/after"}));
}

// A catch-up whose history ends well before the live watch's start (the
// writes since went to other keys) gets no event from etcd telling it it is
// done: it serves its watcher alone, stays open, and progress answers to
// the client never claim more than what it delivered; the range's next
// event merges it, delivered once.
TEST_F(ProxyCatchUpEtcdItTest, QuietCatchUpStaysOpenUntilTheNextEvent) {
  for (int i = 0; i < 5; ++i) {  // revisions 2 .. 6
    ASSERT_NO_FATAL_FAILURE(MemberPut(absl::StrCat("/services/s", i), "v"));
  }
  for (int i = 0; i < 10; ++i) {  // revisions 7 .. 16
    ASSERT_NO_FATAL_FAILURE(MemberPut(absl::StrCat("/other/o", i), "v"));
  }
  WatchClient live(proxy_channel_);
  live.Watch(1, "/services/", "/services0", 0);
  ASSERT_TRUE(WaitFor([&] { return live.AllCreated(1); }, absl::Seconds(10)));
  EXPECT_EQ(live.Log(1).created_header_rev, 16);

  WatchClient old(proxy_channel_);
  old.Watch(1, "/services/", "/services0", 2);
  ASSERT_TRUE(
      WaitFor([&] { return old.EventCount(1) >= 5; }, absl::Seconds(10)));
  EXPECT_EQ(old.Log(1).revs, (std::vector<int64_t>{2, 3, 4, 5, 6}));
  // etcd's answers to the catch-up say 16 at once; it stays open.
  EXPECT_EQ(ProxyMetric("synod_proxy_upstream_watches"), base_watches_ + 2);
  old.RequestProgress();
  ASSERT_TRUE(
      WaitFor([&] { return !old.ProgressRevs().empty(); }, absl::Seconds(10)));
  EXPECT_EQ(old.ProgressRevs().back(), 6);  // not etcd's 16

  ASSERT_NO_FATAL_FAILURE(MemberPut("/services/next", "v"));  // revision 17
  ASSERT_TRUE(
      WaitFor([&] { return old.EventCount(1) >= 6; }, absl::Seconds(10)));
  ASSERT_TRUE(
      WaitFor([&] { return live.EventCount(1) >= 1; }, absl::Seconds(10)));
  EXPECT_TRUE(WaitFor(
      [&] {
        return ProxyMetric("synod_proxy_upstream_watches") ==
               base_watches_ + 1;
      },
      absl::Seconds(10)));
  ASSERT_NO_FATAL_FAILURE(MemberPut("/services/last", "v"));  // 18
  ASSERT_TRUE(
      WaitFor([&] { return old.EventCount(1) >= 7; }, absl::Seconds(10)));
  ASSERT_TRUE(
      WaitFor([&] { return live.EventCount(1) >= 2; }, absl::Seconds(10)));
  EXPECT_EQ(old.Log(1).revs, (std::vector<int64_t>{2, 3, 4, 5, 6, 17, 18}));
  EXPECT_EQ(live.Log(1).revs, (std::vector<int64_t>{17, 18}));
}

}  // namespace
}  // namespace synod::testing
