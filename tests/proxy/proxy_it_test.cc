// synod-proxy end to end: a real synod member and a synod-proxy process,
// driven by the stock etcdctl pointed at the proxy.
#include <memory>
#include <string>
#include <vector>

#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "proto/rpc.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/proxy/proxy_process.h"

namespace synod::testing {
namespace {

class ProxyItTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>();
    member_ = std::make_unique<ServerProcess>(dir_->path());
    ASSERT_TRUE(member_->Start());
    proxy_ = std::make_unique<ProxyProcess>(
        std::vector<std::string>{member_->Endpoint()});
    ASSERT_TRUE(proxy_->Start());
  }
  void TearDown() override {
    if (HasFailure() && proxy_) {
      std::cerr << "--- proxy log ---\n" << proxy_->Log() << "\n";
    }
    proxy_.reset();
    member_.reset();
    dir_.reset();
  }
  CmdResult P(const std::vector<std::string>& args,
              const std::optional<std::string>& in = std::nullopt) {
    return Etcdctl(proxy_->Endpoint(), args, in);
  }
  CmdResult M(const std::vector<std::string>& args) {
    return Etcdctl(member_->Endpoint(), args);
  }

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<ServerProcess> member_;
  std::unique_ptr<ProxyProcess> proxy_;
};

TEST_F(ProxyItTest, PutGetDeleteThroughTheProxy) {
  CmdResult r = P({"put", "k1", "v1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n");
  r = P({"get", "k1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "k1\nv1\n");
  // The member sees the write.
  EXPECT_EQ(M({"get", "k1"}).out, "k1\nv1\n");
  r = P({"del", "k1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  EXPECT_EQ(P({"get", "k1"}).out, "");
}

TEST_F(ProxyItTest, TxnThroughTheProxy) {
  ASSERT_EQ(P({"put", "t", "1"}).exit_code, 0);
  CmdResult r = P({"txn"}, "value(\"t\") = \"1\"\n\nput t 2\n\nput t 3\n\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SUCCESS\n\nOK\n");
  EXPECT_EQ(P({"get", "t", "--print-value-only"}).out, "2\n");
}

TEST_F(ProxyItTest, LeaseGrantKeepAliveTimeToLiveRevoke) {
  CmdResult r = P({"lease", "grant", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // "lease 694d77aa9e38260f granted with TTL(60s)"
  ASSERT_TRUE(absl::StartsWith(r.out, "lease ")) << r.out;
  std::string id = r.out.substr(6, r.out.find(' ', 6) - 6);
  r = P({"put", "lk", "v", "--lease", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = P({"lease", "keep-alive", "--once", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "keepalived with TTL(60)")) << r.out;
  r = P({"lease", "timetolive", id, "--keys"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "attached keys([lk])")) << r.out;
  r = P({"lease", "revoke", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(P({"get", "lk"}).out, "");
}

TEST_F(ProxyItTest, ConcurrentKeepAlivesForOneLeaseAreFolded) {
  CmdResult r = P({"lease", "grant", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t id =
      std::stoll(r.out.substr(6, r.out.find(' ', 6) - 6), nullptr, 16);
  auto channel = grpc::CreateChannel(proxy_->Endpoint(),
                                     grpc::InsecureChannelCredentials());
  constexpr int kClients = 50, kRounds = 5;
  std::vector<int> answered(kClients, 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = etcdserverpb::Lease::NewStub(channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(20));
      auto stream = stub->LeaseKeepAlive(&ctx);
      for (int i = 0; i < kRounds; ++i) {
        etcdserverpb::LeaseKeepAliveRequest req;
        req.set_id(id);
        etcdserverpb::LeaseKeepAliveResponse resp;
        if (!stream->Write(req) || !stream->Read(&resp)) break;
        if (resp.id() == id && resp.ttl() == 30) ++answered[c];
      }
      stream->WritesDone();
      stream->Finish();
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(answered[c], kRounds) << c;
  const double client = ScrapeMetric(
      proxy_->MetricsUrl(), "synod_proxy_lease_keepalives_client_total");
  const double upstream = ScrapeMetric(
      proxy_->MetricsUrl(), "synod_proxy_lease_keepalives_upstream_total");
  std::printf("%.0f client keep-alives -> %.0f upstream\n", client, upstream);
  EXPECT_EQ(client, kClients * kRounds);
  EXPECT_LE(upstream, client);
  r = P({"lease", "timetolive", r.out.substr(6, r.out.find(' ', 6) - 6)});
  EXPECT_TRUE(absl::StrContains(r.out, "remaining")) << r.out;
}

TEST_F(ProxyItTest, LockThroughTheProxy) {
  CmdResult r = P({"lock", "mylock", "echo", "held"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "held\n");
}

TEST_F(ProxyItTest, MaintenanceAndClusterCallsAreForwarded) {
  CmdResult r = P({"member", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, M({"member", "list"}).out);
  r = P({"endpoint", "status"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, proxy_->Endpoint())) << r.out;
}

TEST_F(ProxyItTest, HealthAndMetricsEndpoints) {
  HttpResponse h = HttpGet(proxy_->MetricsUrl() + "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "{\"health\":\"true\"}");
  HttpResponse m = HttpGet(proxy_->MetricsUrl() + "/metrics");
  EXPECT_EQ(m.status, 200);
  // Once the member is gone the proxy reports itself unhealthy.
  member_->Kill9();
  h = HttpGet(proxy_->MetricsUrl() + "/health", absl::Seconds(20));
  EXPECT_EQ(h.status, 503);
}

TEST_F(ProxyItTest, RegistersItselfUnderTheResolverPrefix) {
  ProxyProcess p2({member_->Endpoint()},
                  {"--resolver-prefix=/proxies", "--resolver-ttl=5"});
  ASSERT_TRUE(p2.Start()) << p2.Log();
  const std::string key = "/proxies/" + p2.Endpoint();
  bool registered = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  CmdResult r;
  while (!registered && absl::Now() < deadline) {
    r = M({"get", "/proxies", "--prefix"});
    registered = absl::StrContains(r.out, key);
  }
  ASSERT_TRUE(registered) << r.out;
  EXPECT_TRUE(absl::StrContains(
      r.out, "{\"Op\":0,\"Addr\":\"" + p2.Endpoint() + "\""))
      << r.out;
  // The key is held by a lease that the proxy revokes when it stops.
  r = M({"get", key, "-w", "json"});
  EXPECT_TRUE(absl::StrContains(r.out, "\"lease\":")) << r.out;
  p2.Stop();
  EXPECT_EQ(M({"get", "/proxies", "--prefix"}).out, "");
}

TEST_F(ProxyItTest, NamespaceIsolatesKeysOfKvWatchAndLease) {
  ProxyProcess ns({member_->Endpoint()}, {"--namespace=/t1/"});
  ASSERT_TRUE(ns.Start()) << ns.Log();
  auto N = [&](const std::vector<std::string>& args) {
    return Etcdctl(ns.Endpoint(), args);
  };
  ASSERT_EQ(M({"put", "outside", "x"}).exit_code, 0);
  ASSERT_EQ(N({"put", "a", "1"}).exit_code, 0);
  EXPECT_EQ(M({"get", "/t1/a", "--print-value-only"}).out, "1\n");
  EXPECT_EQ(N({"get", "a"}).out, "a\n1\n");
  // The whole keyspace, seen through the namespace.
  EXPECT_EQ(N({"get", "", "--prefix", "--keys-only"}).out, "a\n\n");
  CmdResult r = Etcdctl(ns.Endpoint(), {"txn"},
              std::string("value(\"a\") = \"1\"\n\nput b 2\n\n\n"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SUCCESS\n\nOK\n");
  EXPECT_EQ(M({"get", "/t1/b", "--print-value-only"}).out, "2\n");
  r = N({"del", "b", "--prev-kv"});
  EXPECT_EQ(r.out, "1\nb\n2\n");
  // Watches see namespaced keys without the prefix, whoever writes.
  auto watch = BackgroundCmd::Etcdctl(ns.Endpoint(), {"watch", "w", "--prefix"});
  bool seen = false;
  for (int i = 0; i < 50 && !seen; ++i) {
    ASSERT_EQ(M({"put", "/t1/w1", std::to_string(i)}).exit_code, 0);
    seen = watch->WaitForOutput("PUT\nw1\n", absl::Milliseconds(100));
  }
  EXPECT_TRUE(seen) << watch->Out();
  // Lease keys too.
  r = N({"lease", "grant", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = r.out.substr(6, r.out.find(' ', 6) - 6);
  ASSERT_EQ(N({"put", "l", "v", "--lease", id}).exit_code, 0);
  r = N({"lease", "timetolive", id, "--keys"});
  EXPECT_TRUE(absl::StrContains(r.out, "attached keys([l])")) << r.out;
}

TEST_F(ProxyItTest, FailsOverToTheNextEndpoint) {
  // The first endpoint is dead; every call goes to the live member.
  ProxyProcess p2({absl::StrCat("127.0.0.1:", PickFreePort()),
                   member_->Endpoint()});
  ASSERT_TRUE(p2.Start()) << p2.Log();
  for (int i = 0; i < 3; ++i) {
    CmdResult r = Etcdctl(p2.Endpoint(), {"put", "f", std::to_string(i)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(M({"get", "f", "--print-value-only"}).out, "2\n");
}

}  // namespace
}  // namespace synod::testing
