// Watch coalescing end to end: many client watches through one synod-proxy
// in front of a real synod member, driven by a small C++ Watch client.
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"
#include "tests/integration/harness.h"
#include "tests/proxy/proxy_process.h"
#include "tests/proxy/watch_client.h"

namespace synod::testing {
namespace {

class ProxyWatchItTest : public ::testing::Test {
 protected:
  void StartAll(std::vector<std::string> proxy_flags = {}) {
    dir_ = std::make_unique<TestDir>();
    member_ = std::make_unique<ServerProcess>(dir_->path());
    ASSERT_TRUE(member_->Start());
    proxy_ = std::make_unique<ProxyProcess>(
        std::vector<std::string>{member_->Endpoint()}, proxy_flags);
    ASSERT_TRUE(proxy_->Start());
    // Start()'s readiness read put its range in the cache, whose watch
    // comes up once the range is loaded, maybe after Start() returned:
    // tests that count upstream watches start once it has.
    ASSERT_TRUE(WaitFor(
        [&] {
          const double entries = ProxyMetric("synod_proxy_cache_entries");
          return entries >= 0 &&
                 ProxyMetric("synod_proxy_upstream_watches") == entries;
        },
        absl::Seconds(10)));
    proxy_channel_ = grpc::CreateChannel(proxy_->Endpoint(),
                                         grpc::InsecureChannelCredentials());
    member_kv_ = etcdserverpb::KV::NewStub(grpc::CreateChannel(
        member_->Endpoint(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (HasFailure() && proxy_) {
      std::string log = proxy_->Log();
      if (log.size() > 4000) log = log.substr(log.size() - 4000);
      std::cerr << "--- proxy log ---\n" << log << "\n";
    }
    clients_.clear();
    proxy_.reset();
    member_.reset();
    dir_.reset();
  }
  // A put made directly on the member; returns its revision.
  int64_t MemberPut(const std::string& k, const std::string& v) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(5));
      etcdserverpb::PutRequest req;
      req.set_key(k);
      req.set_value(v);
      etcdserverpb::PutResponse resp;
      grpc::Status s = member_kv_->Put(&ctx, req, &resp);
      if (s.ok()) return resp.header().revision();
      absl::SleepFor(absl::Milliseconds(50));  // member restarting
    }
    ADD_FAILURE() << "put " << k << " failed";
    return -1;
  }
  double ProxyMetric(const std::string& s) {
    return ScrapeMetric(proxy_->MetricsUrl(), s);
  }
  double MemberMetric(const std::string& s) {
    return ScrapeMetric(member_->MetricsUrl(), s);
  }

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<ServerProcess> member_;
  std::unique_ptr<ProxyProcess> proxy_;
  std::shared_ptr<grpc::Channel> proxy_channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> member_kv_;
  std::vector<std::unique_ptr<WatchClient>> clients_;
};

// The ranges of the coalescing test: prefixes r0/ .. r3/.
std::string RangeKey(int r) { return absl::StrCat("r", r, "/"); }
std::string RangeEnd(int r) { return absl::StrCat("r", r, "0"); }  // '/'+1

TEST_F(ProxyWatchItTest, ThousandsOfWatchesShareOneUpstreamWatchPerRange) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  constexpr int kStreams = 100, kPerStream = 20, kRanges = 4;
  constexpr int kWatchers = kStreams * kPerStream;
  const double rss0 = ProxyMetric("process_resident_memory_bytes");
  // Watches that exist already (the range cache keeps one for the
  // readiness probe's key).
  const double base = ProxyMetric("synod_proxy_upstream_watches");
  const double member_base = MemberMetric("etcd_debugging_mvcc_watcher_total");
  for (int s = 0; s < kStreams; ++s) {
    clients_.push_back(std::make_unique<WatchClient>(proxy_channel_));
    for (int w = 1; w <= kPerStream; ++w) {
      int r = (s * kPerStream + w) % kRanges;
      clients_.back()->Watch(w, RangeKey(r), RangeEnd(r), 0);
    }
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        for (auto& c : clients_) {
          if (!c->AllCreated(kPerStream)) return false;
        }
        return true;
      },
      absl::Seconds(20)));
  EXPECT_EQ(ProxyMetric("synod_proxy_client_watchers"), kWatchers);
  EXPECT_EQ(ProxyMetric("synod_proxy_upstream_watches"), base + kRanges);
  EXPECT_EQ(MemberMetric("etcd_debugging_mvcc_watcher_total"),
            member_base + kRanges);
  const double rss1 = ProxyMetric("process_resident_memory_bytes");
  if (rss0 > 0 && rss1 > 0) {
    std::printf("proxy RSS %.1f MiB -> %.1f MiB for %d idle watchers "
                "(%.0f bytes per watcher)\n",
                rss0 / 1048576, rss1 / 1048576, kWatchers,
                (rss1 - rss0) / kWatchers);
  }

  // Writes made directly on the member, before and after it is killed and
  // restarted under the proxy.
  std::vector<std::vector<int64_t>> want(kRanges);
  auto write = [&](int n, int base) {
    for (int i = 0; i < n; ++i) {
      int r = i % kRanges;
      want[r].push_back(MemberPut(absl::StrCat(RangeKey(r), base + i), "v"));
    }
  };
  auto check = [&](const char* phase) {
    bool ok = WaitFor(
        [&] {
          for (int s = 0; s < kStreams; ++s) {
            for (int w = 1; w <= kPerStream; ++w) {
              int r = (s * kPerStream + w) % kRanges;
              if (clients_[s]->EventCount(w) < want[r].size()) return false;
            }
          }
          return true;
        },
        absl::Seconds(30));
    EXPECT_TRUE(ok) << phase;
    for (int s = 0; s < kStreams; ++s) {
      for (int w = 1; w <= kPerStream; ++w) {
        int r = (s * kPerStream + w) % kRanges;
        WatcherLog log = clients_[s]->Log(w);
        ASSERT_EQ(log.revs, want[r]) << phase << " stream " << s << " watcher "
                                     << w;
        ASSERT_FALSE(log.canceled);
      }
    }
  };
  write(40, 0);
  check("before the kill");
  member_->Kill9();
  ASSERT_TRUE(member_->Start());
  write(40, 1000);
  check("after the member was killed and restarted");
  EXPECT_TRUE(WaitFor(
      [&] {
        return ProxyMetric("synod_proxy_upstream_watches") == base + kRanges;
      },
      absl::Seconds(10)));
  EXPECT_EQ(MemberMetric("etcd_debugging_mvcc_watcher_total"),
            member_base + kRanges);
}

TEST_F(ProxyWatchItTest, TenThousandIdleWatchersOnTenStreams) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  constexpr int kStreams = 10, kPerStream = 1000, kRanges = 4;
  const double base = ProxyMetric("synod_proxy_upstream_watches");
  const double rss0 = ProxyMetric("process_resident_memory_bytes");
  for (int s = 0; s < kStreams; ++s) {
    clients_.push_back(std::make_unique<WatchClient>(proxy_channel_));
    for (int w = 1; w <= kPerStream; ++w) {
      const int r = w % kRanges;
      clients_.back()->Watch(w, RangeKey(r), RangeEnd(r), 0);
    }
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        for (auto& c : clients_) {
          if (!c->AllCreated(kPerStream)) return false;
        }
        return true;
      },
      absl::Seconds(30)));
  EXPECT_EQ(ProxyMetric("synod_proxy_client_watchers"), kStreams * kPerStream);
  EXPECT_EQ(ProxyMetric("synod_proxy_upstream_watches"), base + kRanges);
  const double rss1 = ProxyMetric("process_resident_memory_bytes");
  std::printf("proxy RSS %.1f MiB -> %.1f MiB for %d idle watchers on %d "
              "streams (%.0f bytes per watcher)\n",
              rss0 / 1048576, rss1 / 1048576, kStreams * kPerStream, kStreams,
              (rss1 - rss0) / (kStreams * kPerStream));
  // One event reaches all of them.
  const int64_t rev = MemberPut(absl::StrCat(RangeKey(1), "x"), "v");
  EXPECT_TRUE(WaitFor(
      [&] {
        for (auto& c : clients_) {
          for (int w = 1; w <= kPerStream; w += kRanges) {
            if (c->EventCount(w) != 1) return false;
          }
        }
        return true;
      },
      absl::Seconds(20)));
  EXPECT_EQ(clients_[0]->Log(1).revs, std::vector<int64_t>{rev});
}

TEST_F(ProxyWatchItTest, ProgressRequestReportsDeliveredRevision) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  clients_.push_back(std::make_unique<WatchClient>(proxy_channel_));
  WatchClient* c = clients_.back().get();
  c->Watch(1, "p", "", 0);
  ASSERT_TRUE(WaitFor([&] { return c->AllCreated(1); }, absl::Seconds(10)));
  int64_t last = 0;
  for (int i = 0; i < 3; ++i) last = MemberPut("p", absl::StrCat(i));
  MemberPut("other", "x");
  const int64_t other = MemberPut("other", "y");
  // Kubernetes' pattern: ask until the reported revision reaches the
  // revision it read.
  bool reached = WaitFor(
      [&] {
        c->RequestProgress();
        absl::SleepFor(absl::Milliseconds(20));
        auto p = c->ProgressRevs();
        return !p.empty() && p.back() >= other;
      },
      absl::Seconds(10));
  EXPECT_TRUE(reached);
  EXPECT_EQ(c->Log(1).revs.size(), 3u);
  EXPECT_EQ(c->Log(1).revs.back(), last);
}

TEST_F(ProxyWatchItTest, EtcdctlWatchWithPrevKvMatchesTheMember) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  int64_t first = MemberPut("w", "1");
  MemberPut("w", "2");
  ASSERT_EQ(Etcdctl(member_->Endpoint(), {"del", "w"}).exit_code, 0);
  MemberPut("w", "3");
  auto via_proxy = BackgroundCmd::Etcdctl(
      proxy_->Endpoint(), {"watch", "w", "--prev-kv", "--rev",
                           std::to_string(first)});
  auto via_member = BackgroundCmd::Etcdctl(
      member_->Endpoint(), {"watch", "w", "--prev-kv", "--rev",
                            std::to_string(first)});
  ASSERT_TRUE(via_member->WaitForLines(16, absl::Seconds(10)))
      << via_member->Out();
  ASSERT_TRUE(via_proxy->WaitForLines(16, absl::Seconds(10)))
      << via_proxy->Out();
  EXPECT_EQ(via_proxy->Lines(), via_member->Lines());
}

TEST_F(ProxyWatchItTest, WatchFromACompactedRevisionIsCanceledAsOnTheMember) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // The proxy has no window for the range (a window it holds would replay
  // the compacted revisions: see the design notes).
  int64_t first = MemberPut("cw", "1");
  MemberPut("cw", "2");
  int64_t last = MemberPut("cw", "3");
  ASSERT_EQ(Etcdctl(member_->Endpoint(), {"compact", std::to_string(last)})
                .exit_code,
            0);
  const std::vector<std::string> args = {"watch", "cw", "--rev",
                                         std::to_string(first + 1)};
  CmdResult want = RunCommand(
      {ETCDCTL_BINARY, "--endpoints=" + member_->Endpoint(), args[0], args[1],
       args[2], args[3]},
      std::nullopt, absl::Seconds(10), {"ETCDCTL_API=3"});
  CmdResult got = RunCommand(
      {ETCDCTL_BINARY, "--endpoints=" + proxy_->Endpoint(), args[0], args[1],
       args[2], args[3]},
      std::nullopt, absl::Seconds(10), {"ETCDCTL_API=3"});
  EXPECT_EQ(got.exit_code, want.exit_code);
  EXPECT_EQ(got.out, want.out);
  EXPECT_EQ(ErrorLine(got.err), ErrorLine(want.err));
  EXPECT_TRUE(absl::StrContains(
      got.out + got.err, "required revision has been compacted"))
      << got.out << got.err;
}

TEST_F(ProxyWatchItTest, SlowClientIsCanceledAndOthersKeepUp) {
  ASSERT_NO_FATAL_FAILURE(StartAll({"--watch-client-queue-bytes=2097152"}));
  // A client that never reads its stream.
  auto stub = etcdserverpb::Watch::NewStub(proxy_channel_);
  grpc::ClientContext slow_ctx;
  auto slow = stub->Watch(&slow_ctx);
  etcdserverpb::WatchRequest req;
  req.mutable_create_request()->set_key("big/");
  req.mutable_create_request()->set_range_end("big0");
  ASSERT_TRUE(slow->Write(req));
  clients_.push_back(std::make_unique<WatchClient>(proxy_channel_));
  WatchClient* fast = clients_.back().get();
  fast->Watch(1, "big/", "big0", 0);
  ASSERT_TRUE(WaitFor([&] { return fast->AllCreated(1); }, absl::Seconds(10)));
  ASSERT_TRUE(WaitFor(
      [&] { return ProxyMetric("synod_proxy_client_watchers") == 2; },
      absl::Seconds(10)));
  // Far more than the proxy queues for a client plus what the transport
  // buffers: 400 x 100 KiB.
  const std::string value(100 << 10, 'x');
  std::vector<int64_t> want;
  bool canceled = false;
  for (int i = 0; i < 400 && !canceled; ++i) {
    want.push_back(MemberPut(absl::StrCat("big/", i % 10), value));
    // In lockstep with the fast client, so that it never has more than one
    // event queued however loaded the machine is: only the slow one can
    // outgrow its queue.
    ASSERT_TRUE(WaitFor([&] { return fast->EventCount(1) == want.size(); },
                        absl::Seconds(20)));
    if (i % 20 == 19) {
      canceled = ProxyMetric("synod_proxy_slow_watchers_canceled_total") >= 1;
    }
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        return ProxyMetric("synod_proxy_slow_watchers_canceled_total") >= 1;
      },
      absl::Seconds(10)));
  EXPECT_TRUE(WaitFor([&] { return fast->EventCount(1) == want.size(); },
                      absl::Seconds(20)));
  EXPECT_EQ(fast->Log(1).revs, want);
  EXPECT_FALSE(fast->Log(1).canceled);
  // The slow client, once it reads, finds its watcher canceled with a
  // reason after the events it had room for.
  etcdserverpb::WatchResponse resp;
  bool saw_cancel = false;
  while (!saw_cancel && slow->Read(&resp)) {
    if (resp.canceled()) {
      saw_cancel = true;
      EXPECT_FALSE(resp.cancel_reason().empty());
    }
  }
  EXPECT_TRUE(saw_cancel);
  slow_ctx.TryCancel();
}

TEST_F(ProxyWatchItTest, ResumeStormKeepsUpstreamWatchesBounded) {
  if (UsingRealEtcd()) {
    // The catch-up watch merges once a progress answer says it has reached
    // the window. etcd 3.4 answers a WatchProgressRequest with its current
    // revision on the control stream, ahead of events still queued for a
    // watcher that is catching up (synod answers with the slowest
    // watcher's revision; DESIGN.md "Ordering assumption"), so behind etcd
    // 3.4 resumed watchers miss events and this test fails.
    GTEST_SKIP() << "needs progress answers ordered after queued events";
  }
  // A small window, so that some resumes fall before it and need catch-up.
  ASSERT_NO_FATAL_FAILURE(StartAll({"--watch-window-events=100"}));
  const double base = ProxyMetric("synod_proxy_upstream_watches");
  clients_.push_back(std::make_unique<WatchClient>(proxy_channel_));
  clients_[0]->Watch(1, "s/", "s0", 0);
  ASSERT_TRUE(WaitFor([&] { return clients_[0]->AllCreated(1); },
                      absl::Seconds(10)));
  std::vector<int64_t> revs;
  for (int i = 0; i < 300; ++i) revs.push_back(MemberPut(absl::StrCat("s/", i), "v"));
  ASSERT_TRUE(WaitFor([&] { return clients_[0]->EventCount(1) == 300; },
                      absl::Seconds(10)));
  const unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  constexpr int kStreams = 50, kPerStream = 20;
  std::vector<std::vector<int64_t>> starts(kStreams);
  for (int s = 0; s < kStreams; ++s) {
    clients_.push_back(std::make_unique<WatchClient>(proxy_channel_));
    for (int w = 1; w <= kPerStream; ++w) {
      // Assorted recent revisions over the last 300 writes.
      int64_t start = revs[rng() % revs.size()];
      starts[s].push_back(start);
      clients_.back()->Watch(w, "s/", "s0", start);
    }
  }
  double max_upstream = 0;
  bool all = WaitFor(
      [&] {
        max_upstream = std::max(
            max_upstream, ProxyMetric("synod_proxy_upstream_watches"));
        for (int s = 0; s < kStreams; ++s) {
          for (int w = 1; w <= kPerStream; ++w) {
            int64_t start = starts[s][w - 1];
            size_t want = revs.end() - std::lower_bound(revs.begin(),
                                                        revs.end(), start);
            if (clients_[s + 1]->EventCount(w) < want) return false;
          }
        }
        return true;
      },
      absl::Seconds(30));
  ASSERT_TRUE(all);
  for (int s = 0; s < kStreams; ++s) {
    for (int w = 1; w <= kPerStream; ++w) {
      int64_t start = starts[s][w - 1];
      std::vector<int64_t> want(
          std::lower_bound(revs.begin(), revs.end(), start), revs.end());
      ASSERT_EQ(clients_[s + 1]->Log(w).revs, want) << "start " << start;
    }
  }
  std::printf("1000 resumes: at most %.0f upstream watches, %.0f catch-ups\n",
              max_upstream - base, ProxyMetric("synod_proxy_watch_catchups_total"));
  // One shared watch plus at most one catch-up stream for the range.
  EXPECT_LE(max_upstream - base, 2);
  EXPECT_TRUE(WaitFor(
      [&] { return ProxyMetric("synod_proxy_upstream_watches") == base + 1; },
      absl::Seconds(10)));
}

}  // namespace
}  // namespace synod::testing
