// synod-proxy end to end: a real synod member and a synod-proxy process,
// driven by the stock etcdctl pointed at the proxy.
#include <climits>
#include <memory>
#include <string>
#include <vector>

#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "proto/rpc.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/proxy/proxy_process.h"

namespace synod::testing {
namespace {

std::shared_ptr<grpc::Channel> Channel(const std::string& endpoint) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(INT_MAX);
  args.SetMaxReceiveMessageSize(INT_MAX);
  return grpc::CreateCustomChannel(endpoint,
                                   grpc::InsecureChannelCredentials(), args);
}

// A Put of a `value_bytes` value, sent as is by a raw gRPC client (etcdctl's
// own 2 MiB send limit would stop the largest before they leave).
grpc::Status RawPut(const std::string& endpoint, size_t value_bytes) {
  etcdserverpb::PutRequest req;
  req.set_key("big");
  req.set_value(std::string(value_bytes, 'x'));
  etcdserverpb::PutResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return etcdserverpb::KV::NewStub(Channel(endpoint))->Put(&ctx, req, &resp);
}

// The answers of one LeaseKeepAlive stream that sends a keep-alive for
// `lease` `requests` times, then half-closes (WritesDone) and reads until
// the stream ends.
struct HalfClosedKeepAlive {
  std::vector<etcdserverpb::LeaseKeepAliveResponse> responses;
  grpc::Status status;
};
HalfClosedKeepAlive KeepAliveThenHalfClose(
    const std::string& endpoint, int64_t lease, int requests,
    std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto stub = etcdserverpb::Lease::NewStub(Channel(endpoint));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  auto stream = stub->LeaseKeepAlive(&ctx);
  for (int i = 0; i < requests; ++i) {
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(lease);
    stream->Write(req);
  }
  stream->WritesDone();
  HalfClosedKeepAlive out;
  etcdserverpb::LeaseKeepAliveResponse resp;
  while (stream->Read(&resp)) out.responses.push_back(resp);
  out.status = stream->Finish();
  return out;
}

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

// python-etcd3's lease.refresh(): one keep-alive, then the client
// half-closes. The member answers it, then ends the stream OK; so must the
// proxy, whose answer comes back from the shared upstream stream after the
// half-close has been read. (etcd 3.4's own grpc-proxy gets this wrong: it
// ends such a stream with UNKNOWN "context canceled" and no answer.)
TEST_F(ProxyItTest, KeepAliveIsAnsweredAfterTheClientHalfCloses) {
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(60);
  etcdserverpb::LeaseGrantResponse granted;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    grpc::Status s = etcdserverpb::Lease::NewStub(Channel(proxy_->Endpoint()))
                         ->LeaseGrant(&ctx, grant, &granted);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const int64_t id = granted.id();
  for (const std::string& endpoint :
       {member_->Endpoint(), proxy_->Endpoint()}) {
    const bool via_proxy = endpoint == proxy_->Endpoint();
    // One request, many times (the answer races the half-close).
    for (int round = 0; round < 20; ++round) {
      HalfClosedKeepAlive r = KeepAliveThenHalfClose(endpoint, id, 1);
      ASSERT_EQ(r.responses.size(), 1u)
          << (via_proxy ? "proxy" : "member") << " round " << round
          << " status " << r.status.error_code() << " "
          << r.status.error_message();
      EXPECT_EQ(r.responses[0].id(), id);
      EXPECT_EQ(r.responses[0].ttl(), 60);
      EXPECT_GT(r.responses[0].header().revision(), 0);
      EXPECT_TRUE(r.status.ok())
          << r.status.error_code() << " " << r.status.error_message();
    }
    // Several requests before the half-close: one answer each.
    HalfClosedKeepAlive r = KeepAliveThenHalfClose(endpoint, id, 3);
    EXPECT_EQ(r.responses.size(), 3u) << (via_proxy ? "proxy" : "member");
    for (const auto& resp : r.responses) EXPECT_EQ(resp.ttl(), 60);
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    // An unknown lease is answered too (TTL 0), then the stream ends OK.
    r = KeepAliveThenHalfClose(endpoint, id + 1, 1);
    ASSERT_EQ(r.responses.size(), 1u) << (via_proxy ? "proxy" : "member");
    EXPECT_EQ(r.responses[0].id(), id + 1);
    EXPECT_EQ(r.responses[0].ttl(), 0);
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
}

// While the member is down a keep-alive through the proxy waits for it (the
// proxy reopens its upstream stream each tick); a client that gives up ends
// its stream, and once the member is back keep-alives are answered again.
TEST_F(ProxyItTest, KeepAliveWaitsOutAMemberRestart) {
  CmdResult g = P({"lease", "grant", "60"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  const int64_t id =
      std::stoll(g.out.substr(6, g.out.find(' ', 6) - 6), nullptr, 16);
  member_->Kill9();
  HalfClosedKeepAlive r = KeepAliveThenHalfClose(
      proxy_->Endpoint(), id, 1, std::chrono::milliseconds(1000));
  EXPECT_EQ(r.responses.size(), 0u);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << r.status.error_message();
  // Some twenty upstream streams are opened and fail meanwhile.
  absl::SleepFor(absl::Seconds(2));
  ASSERT_FALSE(proxy_->Exited()) << proxy_->Log();
  ASSERT_TRUE(member_->Start());
  r = KeepAliveThenHalfClose(proxy_->Endpoint(), id, 1);
  ASSERT_EQ(r.responses.size(), 1u)
      << r.status.error_code() << " " << r.status.error_message();
  EXPECT_EQ(r.responses[0].id(), id);
  EXPECT_EQ(r.responses[0].ttl(), 60);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
}

// A request too large for the member: the proxy answers as the member
// does. With the defaults (the member's --max-request-bytes and the proxy's
// --max-send-bytes both 1.5 MiB), up to the member's gRPC limit (1.5 MiB +
// 512 KiB) that is INVALID_ARGUMENT "etcdserver: request is too large";
// above it, gRPC's own RESOURCE_EXHAUSTED "received message larger than max
// (N vs. 2097152)". (etcd 3.4's grpc-proxy answers RESOURCE_EXHAUSTED
// "trying to send message larger than max (N vs. 1572864)" from 1.5 MiB.)
TEST_F(ProxyItTest, TooLargePutGetsTheMembersAnswer) {
  // The cache off: KV goes through the generic forwarder, not KvProxy.
  ProxyProcess uncached({member_->Endpoint()}, {"--cache-max-bytes=0"});
  ASSERT_TRUE(uncached.Start()) << uncached.Log();
  // gRPC's wording differs between Go ("grpc: received message ...") and
  // C++ ("Received message ..."); the rest must match.
  auto grpc_words = [](std::string m) {
    m = absl::AsciiStrToLower(m);
    absl::string_view v = m;
    absl::ConsumePrefix(&v, "grpc: ");
    return std::string(v);
  };
  for (size_t bytes : {1400000u, 1677722u, 2000000u, 3000000u, 5242880u}) {
    const grpc::Status want = RawPut(member_->Endpoint(), bytes);
    if (bytes == 1400000u) {
      ASSERT_TRUE(want.ok()) << want.error_message();
    } else if (bytes <= 2000000u) {
      ASSERT_EQ(want.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      ASSERT_EQ(want.error_message(), "etcdserver: request is too large");
    } else {
      ASSERT_EQ(want.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << want.error_message();
    }
    for (const std::string& endpoint :
         {proxy_->Endpoint(), uncached.Endpoint()}) {
      const grpc::Status got = RawPut(endpoint, bytes);
      EXPECT_EQ(got.error_code(), want.error_code())
          << bytes << " bytes via " << endpoint << ": "
          << got.error_message() << " (member: " << want.error_message()
          << ")";
      EXPECT_EQ(grpc_words(got.error_message()),
                grpc_words(want.error_message()))
          << bytes << " bytes via " << endpoint;
    }
  }
}

// --max-send-bytes keeps etcd grpc-proxy's meaning (the largest request the
// proxy sends to the cluster); a larger one gets the member's answer.
TEST_F(ProxyItTest, MaxSendBytesBoundsTheRequestsSentToTheCluster) {
  ProxyProcess small({member_->Endpoint()}, {"--max-send-bytes=1048576"});
  ASSERT_TRUE(small.Start()) << small.Log();
  grpc::Status s = RawPut(small.Endpoint(), 1000000);
  EXPECT_TRUE(s.ok()) << s.error_message();
  s = RawPut(small.Endpoint(), 1200000);  // the member takes it
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "etcdserver: request is too large");
  EXPECT_TRUE(RawPut(member_->Endpoint(), 1200000).ok());
  // Above --max-send-bytes + 512 KiB the proxy does not take it in.
  s = RawPut(small.Endpoint(), 1700000);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
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
