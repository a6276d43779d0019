// The generic forwarder under load: synod-proxy with --cache-max-bytes=0
// forwards KV (and Maintenance) calls as raw bytes. 8 threads send 2,000
// calls each through it (bounded in count and in time): serializable Range
// calls, Maintenance Status calls, calls whose deadline expires mid-flight
// and calls the client cancels mid-flight; the member is killed during the
// load and restarted. The proxy must still be running at the end, every
// call must have ended with OK or a clean gRPC status, the counts must add
// up, and the proxy must still serve and then exit promptly on SIGTERM (a
// forwarded call it leaked would keep it from exiting).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"
#include "tests/integration/harness.h"
#include "tests/proxy/proxy_process.h"

namespace synod::testing {
namespace {

constexpr int kThreads = 8;
constexpr int kCallsPerThread = 2000;
// The whole load stops issuing calls after this long (the ctest timeout is
// 60 s, including the member's and the proxy's start).
constexpr absl::Duration kLoadCap = absl::Seconds(40);
// An ordinary call's deadline; every call ends by then.
constexpr auto kCallDeadline = std::chrono::seconds(5);
// The member is killed once this many calls have ended...
constexpr int64_t kKillAfter = kThreads * kCallsPerThread / 4;
// ...and restarted once this many more have ended (or 5 s have passed).
// The workers then wait until the proxy serves again, so that the rest of
// the load runs against the restarted member (fail-fast calls would use it
// up while the member starts and the proxy reconnects).
constexpr int64_t kOutageCalls = 300;

uint64_t Seed() {
  const char* env = std::getenv("SYNOD_TEST_SEED");
  uint64_t seed = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &seed)) return seed;
  return static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
}

std::shared_ptr<grpc::Channel> Channel(const std::string& endpoint) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(INT_MAX);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(),
                                   args);
}

class ProxyForwardLoadItTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>();
    member_ = std::make_unique<ServerProcess>(dir_->path());
    ASSERT_TRUE(member_->Start());
    proxy_ = std::make_unique<ProxyProcess>(
        std::vector<std::string>{member_->Endpoint()},
        std::vector<std::string>{"--cache-max-bytes=0"});
    ASSERT_TRUE(proxy_->Start());
  }
  void TearDown() override {
    if (HasFailure() && proxy_) {
      std::string log = proxy_->Log();
      if (log.size() > 4000) log = log.substr(log.size() - 4000);
      std::cerr << "--- proxy log ---\n" << log << "\n";
    }
    proxy_.reset();
    member_.reset();
    dir_.reset();
  }

  // One call's end, counted by status code.
  void Ended(grpc::StatusCode code, const std::string& what) {
    absl::MutexLock l(&mu_);
    ++ended_;
    ++by_code_[code];
    if (code == grpc::StatusCode::OK && restarted_) ++ok_after_restart_;
    if (code != grpc::StatusCode::OK &&
        code != grpc::StatusCode::DEADLINE_EXCEEDED &&
        code != grpc::StatusCode::CANCELLED &&
        code != grpc::StatusCode::UNAVAILABLE && unexpected_.size() < 10) {
      unexpected_.push_back(what);
    }
  }

  // A serializable Range of "k" through the proxy, retried (every 50 ms)
  // until it succeeds or `timeout` passes; the last status.
  grpc::Status RangeThroughProxy(absl::Duration timeout) {
    auto kv = etcdserverpb::KV::NewStub(Channel(proxy_->Endpoint()));
    const absl::Time deadline = absl::Now() + timeout;
    grpc::Status last;
    while (absl::Now() < deadline) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
      etcdserverpb::RangeRequest req;
      req.set_key("k");
      req.set_serializable(true);
      etcdserverpb::RangeResponse resp;
      last = kv->Range(&ctx, req, &resp);
      if (last.ok()) break;
      absl::SleepFor(absl::Milliseconds(50));  // polling interval
    }
    return last;
  }

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<ServerProcess> member_;
  std::unique_ptr<ProxyProcess> proxy_;

  absl::Mutex mu_;
  int64_t ended_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t ok_after_restart_ ABSL_GUARDED_BY(mu_) = 0;
  bool restarted_ ABSL_GUARDED_BY(mu_) = false;
  bool parked_ ABSL_GUARDED_BY(mu_) = false;  // workers wait while true
  std::map<grpc::StatusCode, int64_t> by_code_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> unexpected_ ABSL_GUARDED_BY(mu_);
};

TEST_F(ProxyForwardLoadItTest, ManyThreadsThroughTheGenericForwarder) {
  const uint64_t seed = Seed();
  std::cerr << "seed " << seed << " (SYNOD_TEST_SEED replays it)\n";
  {
    auto kv = etcdserverpb::KV::NewStub(Channel(member_->Endpoint()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
    etcdserverpb::PutRequest req;
    req.set_key("k");
    req.set_value("v");
    etcdserverpb::PutResponse resp;
    ASSERT_TRUE(kv->Put(&ctx, req, &resp).ok());
  }

  const absl::Time stop_at = absl::Now() + kLoadCap;
  std::atomic<int64_t> issued{0};
  std::atomic<int64_t> bad_ok{0};  // OK with a wrong response
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      auto channel = Channel(proxy_->Endpoint());
      auto kv = etcdserverpb::KV::NewStub(channel);
      auto maint = etcdserverpb::Maintenance::NewStub(channel);
      for (int i = 0; i < kCallsPerThread && absl::Now() < stop_at; ++i) {
        {
          absl::MutexLock l(&mu_);
          auto unparked = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
            return !parked_;
          };
          mu_.AwaitWithDeadline(absl::Condition(&unparked), stop_at);
        }
        issued.fetch_add(1);
        grpc::ClientContext ctx;
        const int kind = static_cast<int>(rng() % 10);
        if (kind == 0) {
          // A deadline that expires while the call is in the proxy.
          const auto d = std::chrono::microseconds(50 + rng() % 3000);
          ctx.set_deadline(std::chrono::system_clock::now() + d);
        } else {
          ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
        }
        if (kind == 1) {
          // Cancelled by the client mid-flight.
          etcdserverpb::StatusRequest req;
          etcdserverpb::StatusResponse resp;
          std::promise<grpc::Status> done;
          maint->async()->Status(&ctx, &req, &resp, [&done](grpc::Status s) {
            done.set_value(s);
          });
          const auto spin = std::chrono::steady_clock::now() +
                            std::chrono::microseconds(rng() % 2000);
          while (std::chrono::steady_clock::now() < spin) {
          }
          ctx.TryCancel();
          // Ends by the call's deadline at the latest.
          const grpc::Status s = done.get_future().get();
          Ended(s.error_code(),
                absl::StrCat("cancelled Status: ", s.error_code(), " ",
                             s.error_message()));
          continue;
        }
        if (kind == 2) {
          etcdserverpb::StatusRequest req;
          etcdserverpb::StatusResponse resp;
          const grpc::Status s = maint->Status(&ctx, req, &resp);
          if (s.ok() && resp.header().member_id() == 0) bad_ok.fetch_add(1);
          Ended(s.error_code(), absl::StrCat("Status: ", s.error_code(), " ",
                                             s.error_message()));
          continue;
        }
        etcdserverpb::RangeRequest req;
        req.set_key("k");
        req.set_serializable(true);
        etcdserverpb::RangeResponse resp;
        const grpc::Status s = kv->Range(&ctx, req, &resp);
        if (s.ok() && (resp.kvs_size() != 1 || resp.kvs(0).value() != "v")) {
          bad_ok.fetch_add(1);
        }
        Ended(s.error_code(),
              absl::StrCat("Range: ", s.error_code(), " ", s.error_message()));
      }
    });
  }

  // The member dies mid-load and comes back.
  auto ended_at_least = [this](int64_t n) {
    return [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return ended_ >= n; };
  };
  int64_t ended_at_kill = -1, ended_at_restart = -1;
  bool kill_reached;
  {
    absl::MutexLock l(&mu_);
    auto cond = ended_at_least(kKillAfter);
    kill_reached = mu_.AwaitWithDeadline(absl::Condition(&cond), stop_at);
    ended_at_kill = ended_;
  }
  if (kill_reached) {
    member_->Kill9();
    {
      absl::MutexLock l(&mu_);
      auto cond = ended_at_least(ended_at_kill + kOutageCalls);
      mu_.AwaitWithDeadline(absl::Condition(&cond),
                            std::min(stop_at, absl::Now() + absl::Seconds(5)));
      ended_at_restart = ended_;
      parked_ = true;
    }
    EXPECT_TRUE(member_->Start());
    const grpc::Status back = RangeThroughProxy(absl::Seconds(10));
    EXPECT_TRUE(back.ok()) << "after the restart: " << back.error_message();
    absl::MutexLock l(&mu_);
    restarted_ = true;
    parked_ = false;
  }
  for (auto& w : workers) w.join();

  EXPECT_FALSE(proxy_->Exited()) << "synod-proxy died under load";
  EXPECT_TRUE(kill_reached) << "the load ended before the member was killed";
  EXPECT_EQ(bad_ok.load(), 0) << "OK calls with a wrong response";
  {
    absl::MutexLock l(&mu_);
    int64_t sum = 0;
    std::string summary;
    for (const auto& [code, n] : by_code_) {
      sum += n;
      absl::StrAppend(&summary, " code", code, "=", n);
    }
    std::cerr << "issued " << issued.load() << ", ended " << ended_ << ":"
              << summary << "; killed at " << ended_at_kill << ", restarted at "
              << ended_at_restart << ", OK after restart " << ok_after_restart_
              << "\n";
    EXPECT_EQ(ended_, issued.load()) << "every issued call ended";
    EXPECT_EQ(sum, ended_);
    EXPECT_GT(by_code_[grpc::StatusCode::OK], 0);
    EXPECT_TRUE(unexpected_.empty())
        << "calls ended with an unclean status, e.g. " << unexpected_.front();
    EXPECT_GT(ok_after_restart_, 0) << "no call succeeded after the restart";
  }
  // The proxy still serves once the load is over (its channel was
  // destroyed, so no client connection is left open for the stop below).
  const grpc::Status last = RangeThroughProxy(absl::Seconds(10));
  EXPECT_TRUE(last.ok()) << "after the load: " << last.error_message();
  EXPECT_FALSE(proxy_->Exited()) << "synod-proxy died after the load";
  // Every forwarded call has ended inside the proxy: it shuts down at once
  // (a call it leaked would keep it from exiting until ProxyProcess::Stop's
  // SIGKILL at 5 s; an open client connection, past its 2 s grace).
  const absl::Time stop_start = absl::Now();
  proxy_->Stop();
  const absl::Duration stop_took = absl::Now() - stop_start;
  std::cerr << "proxy stopped in " << stop_took << "\n";
  EXPECT_LT(stop_took, absl::Milliseconds(4500))
      << "synod-proxy did not exit on SIGTERM";
}

}  // namespace
}  // namespace synod::testing
