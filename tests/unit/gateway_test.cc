// The JSON gateway (backend/server/gateway.h) in process: a real member's
// gRPC services behind an HttpServer that, as main.cc wires it, hands
// HTTP/2 to gRPC and serves the gateway on HTTP/1 of the same port. Checks
// grpc-gateway's JSON mapping (names as in the .proto, bytes base64, 64-bit
// integers as strings), its error bodies and statuses, the streamed watch
// and keepalive, and the Authorization header as the auth token.
#include "backend/server/gateway.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <regex>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "backend/server/etcd_server.h"
#include "backend/server/services.h"
#include "common/http_server.h"
#include "gtest/gtest.h"
#include "tests/support/raw_http_client.h"

namespace synod::server {
namespace {

using synod::testing::RawConnect;
using synod::testing::RawReadUntil;
using synod::testing::RawSendAll;
using synod::testing::Unchunk;

// A client socket whose reads time out after 10 s.
int Connect(int port) { return RawConnect(port, 10); }

void ReadUntil(int fd, const std::string& want, std::string* got) {
  RawReadUntil(fd, want, got);
}

struct Reply {
  int status = -1;
  std::string headers;
  std::string body;  // de-chunked
};

Reply Parse(const std::string& raw) {
  Reply r;
  if (raw.compare(0, 9, "HTTP/1.1 ") == 0 && raw.size() >= 12) {
    r.status = std::stoi(raw.substr(9, 3));
  }
  size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return r;
  r.headers = raw.substr(0, end + 2);
  r.body = raw.substr(end + 4);
  if (r.headers.find("\r\nTransfer-Encoding: chunked\r\n") !=
      std::string::npos) {
    r.body = Unchunk(r.body);
  }
  return r;
}

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/synod_gateway_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cfg_.data_dir = dir_ + "/data";
    cfg_.run_timer_thread = false;
    cfg_.bcrypt_cost = 4;  // the cheapest bcrypt, for speed
    auto s = EtcdServer::Open(cfg_, &clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    kv_ = std::make_unique<KvService>(server_.get());
    watch_ = std::make_unique<WatchService>(server_.get());
    lease_ = std::make_unique<LeaseService>(server_.get());
    maint_ = std::make_unique<MaintenanceService>(server_.get());
    cluster_ = std::make_unique<ClusterService>(server_.get());
    auth_ = std::make_unique<AuthService>(server_.get());
    grpc::ServerBuilder b;
    b.RegisterService(kv_.get());
    b.RegisterService(watch_.get());
    b.RegisterService(lease_.get());
    b.RegisterService(maint_.get());
    b.RegisterService(cluster_.get());
    b.RegisterService(auth_.get());
    RegisterLockElection(&b, server_.get());
    grpc_ = b.BuildAndStart();
    ASSERT_NE(grpc_, nullptr);
    // As main.cc wires a plaintext client URL.
    gateway_ = JsonGateway::ForServer(grpc_.get());
    common::HttpServerOptions options;
    grpc::Server* g = grpc_.get();
    options.http2_handoff = [g](int fd) { grpc::AddInsecureChannelFromFd(g, fd); };
    http_ = std::make_unique<common::HttpServer>(options);
    gateway_->Install(http_.get());
    auto port = http_->Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }
  void TearDown() override {
    http_->Stop();  // cancels the gateway's calls still open
    for (int fd : open_fds_) close(fd);
    gateway_.reset();
    grpc_->Shutdown();
    server_->Stop();
    std::filesystem::remove_all(dir_);
  }

  // POSTs `body` to `path` on `port` and returns the connection (-1 if
  // none), its answer unread.
  static int SendPost(int port, const std::string& path, const std::string& body,
                      const std::string& token = "") {
    int fd = Connect(port);
    if (fd < 0) return -1;
    std::string auth =
        token.empty() ? "" : absl::StrCat("Authorization: ", token, "\r\n");
    RawSendAll(fd, absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: t\r\n", auth,
                             "Content-Length: ", body.size(), "\r\n\r\n",
                             body));
    return fd;
  }
  // The whole answer on `fd` (from SendPost), which it closes.
  static Reply ReadReply(int fd) {
    if (fd < 0) return Reply();
    std::string raw;
    ReadUntil(fd, "", &raw);
    close(fd);
    return Parse(raw);
  }
  // POSTs `body` to `path`; the whole answer.
  Reply Post(const std::string& path, const std::string& body,
             const std::string& token = "") {
    return ReadReply(SendPost(port_, path, body, token));
  }

  // POSTs `create` to /v3/watch and reads the answer into `raw` up to the
  // created line. The connection stays open; -1 (fd closed) if the watch
  // was not created.
  int OpenWatch(const std::string& create, std::string* raw) {
    int fd = Connect(port_);
    if (fd < 0) return -1;
    RawSendAll(fd, absl::StrCat("POST /v3/watch HTTP/1.1\r\nHost: t\r\n"
                                "Content-Length: ",
                                create.size(), "\r\n\r\n", create));
    ReadUntil(fd, R"("created":true}})", raw);
    if (raw->find(R"("created":true}})") == std::string::npos) {
      close(fd);
      return -1;
    }
    return fd;
  }

  std::string dir_;
  ServerConfig cfg_;
  common::FakeClock clock_;
  std::unique_ptr<EtcdServer> server_;
  std::unique_ptr<KvService> kv_;
  std::unique_ptr<WatchService> watch_;
  std::unique_ptr<LeaseService> lease_;
  std::unique_ptr<MaintenanceService> maint_;
  std::unique_ptr<ClusterService> cluster_;
  std::unique_ptr<AuthService> auth_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<JsonGateway> gateway_;
  std::unique_ptr<common::HttpServer> http_;
  int port_ = 0;
  std::vector<int> open_fds_;  // closed after the server stops
};

// etcd's header: 64-bit integers as strings.
constexpr char kHeader[] =
    R"(\{"header":\{"cluster_id":"[0-9]+","member_id":"[0-9]+","revision":"REV","raft_term":"[0-9]+"\})";

std::string HeaderThenText(int rev) {
  std::string h = kHeader;
  h.replace(h.find("REV"), 3, std::to_string(rev));
  return h;
}

std::regex HeaderThen(int rev, const std::string& rest) {
  return std::regex(HeaderThenText(rev) + rest);
}

TEST_F(GatewayTest, PutRangeDeleteAsEtcdWritesThem) {
  // etcd's README example: key "foo", value "bar", base64.
  Reply r = Post("/v3/kv/put", R"({"key": "Zm9v", "value": "YmFy"})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.headers.find("\r\nContent-Type: application/json\r\n"),
            std::string::npos);
  EXPECT_TRUE(std::regex_match(r.body, HeaderThen(2, "\\}"))) << r.body;

  r = Post("/v3/kv/range", R"({"key": "Zm9v"})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(std::regex_match(
      r.body,
      HeaderThen(2, R"(,"kvs":\[\{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"\}\],"count":"1"\})")))
      << r.body;
  // /v3beta/ is etcd's older prefix for the same.
  EXPECT_EQ(Post("/v3beta/kv/range", R"({"key": "Zm9v"})").status, 200);

  // A txn: enums by name, a oneof by its field name.
  r = Post("/v3/kv/txn",
           R"({"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],)"
           R"("success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(std::regex_match(
      r.body, HeaderThen(3, R"(,"succeeded":true,"responses":\[\{"response_put":\{"header":\{"revision":"3"\}\}\}\]\})")))
      << r.body;

  r = Post("/v3/kv/deleterange", R"({"key": "Zm9v"})");
  EXPECT_TRUE(std::regex_match(r.body, HeaderThen(4, R"(,"deleted":"1"\})")))
      << r.body;
}

TEST_F(GatewayTest, ErrorsAsGrpcGatewayWritesThem) {
  // An empty body is an empty request, which etcd refuses.
  Reply r = Post("/v3/kv/range", "");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body,
            R"({"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3})");
  // Unknown fields are ignored, as etcd's gateway does.
  EXPECT_EQ(Post("/v3/kv/range", R"({"kex": "Zm9v"})").body, r.body);
  // Not JSON.
  r = Post("/v3/kv/range", "key=foo");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.body,
            R"({"error":"invalid character 'k' looking for beginning of value","message":"invalid character 'k' looking for beginning of value","code":3})");
  r = Post("/v3/kv/range", R"({"key": "Zm9v")");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.body,
            R"({"error":"unexpected EOF","message":"unexpected EOF","code":3})");
  // NotFound (a lease that does not exist) is 404.
  r = Post("/v3/lease/revoke", R"({"ID": "42"})");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.body,
            R"({"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5})");
  // A gateway path takes POST only; an unknown one is 404.
  int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  RawSendAll(fd, "GET /v3/kv/range HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string raw;
  ReadUntil(fd, "", &raw);
  close(fd);
  EXPECT_EQ(Parse(raw).status, 405) << raw;
  EXPECT_EQ(Post("/v3/kv/nope", "{}").status, 404);
}

TEST_F(GatewayTest, MaintenanceStatusAndHash) {
  Reply r = Post("/v3/maintenance/status", "");
  EXPECT_EQ(r.status, 200) << r.body;
  // StatusResponse's fields are camelCase in etcd's .proto itself.
  EXPECT_NE(r.body.find(R"("version":")"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("dbSize":")"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("raftIndex":")"), std::string::npos) << r.body;
  // Hash (etcd's gateway serves Hash, not HashKV, on this path).
  r = Post("/v3/maintenance/hash", "{}");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(std::regex_search(r.body, HeaderThen(1, ""))) << r.body;
  r = Post("/v3/cluster/member/list", "{}");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("members":[{"ID":")"), std::string::npos) << r.body;
}

TEST_F(GatewayTest, WatchStreamsResultLines) {
  std::string raw;
  int fd = OpenWatch(R"({"create_request": {"key": "Zm9v"}})", &raw);
  ASSERT_GE(fd, 0) << raw;
  EXPECT_EQ(Parse(raw).status, 200);
  EXPECT_NE(raw.find("\r\nTransfer-Encoding: chunked\r\n"), std::string::npos);
  // The body has ended; the watch stays open (as etcd's) and sees a put.
  ASSERT_EQ(Post("/v3/kv/put", R"({"key": "Zm9v", "value": "YmFy"})").status,
            200);
  ReadUntil(fd, R"("value":"YmFy"}}]}})", &raw);
  std::string body =
      Unchunk(raw.substr(raw.find("\r\n\r\n") + 4), /*so_far=*/true);
  EXPECT_TRUE(std::regex_search(
      body,
      std::regex(R"(\n\{"result":)" +
                 HeaderThenText(2) +
                 R"(,"events":\[\{"kv":\{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"\}\}\]\}\})")))
      << body;
  close(fd);  // leaving cancels the watch; TearDown would hang otherwise
}

TEST_F(GatewayTest, WatchBodyIsReadAsAStream) {
  int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  // Chunked: each create goes out as it arrives.
  RawSendAll(fd,
          "POST /v3/watch HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
          "\r\n\r\n");
  auto chunk = [](const std::string& s) {
    return absl::StrCat(absl::Hex(s.size()), "\r\n", s, "\r\n");
  };
  RawSendAll(fd, chunk(R"({"create_request": {"key": "YQ==", "watch_id": 7}})"));
  std::string raw;
  ReadUntil(fd, R"("watch_id":"7","created":true)", &raw);
  ASSERT_NE(raw.find(R"("watch_id":"7","created":true)"), std::string::npos)
      << raw;
  // An object split across chunks.
  RawSendAll(fd, chunk(R"({"create_request": )"));
  RawSendAll(fd, chunk(R"({"key": "Yg==", "watch_id": 8}})"));
  ReadUntil(fd, R"("watch_id":"8","created":true)", &raw);
  EXPECT_NE(raw.find(R"("watch_id":"8","created":true)"), std::string::npos)
      << raw;
  RawSendAll(fd, "0\r\n\r\n");
  ASSERT_EQ(Post("/v3/kv/put", R"({"key": "Yg==", "value": "eA=="})").status,
            200);
  ReadUntil(fd, R"("value":"eA==")", &raw);
  EXPECT_NE(raw.find(R"("watch_id":"8","events")"), std::string::npos) << raw;
  close(fd);
}

TEST_F(GatewayTest, LeaseGrantKeepAliveTimeToLive) {
  Reply r = Post("/v3/lease/grant", R"({"TTL": 30, "ID": 1234})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(std::regex_match(r.body, HeaderThen(1, R"(,"ID":"1234","TTL":"30"\})")))
      << r.body;
  // One keepalive: one result line, then the stream ends.
  r = Post("/v3/lease/keepalive", R"({"ID": "1234"})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.headers.find("\r\nTransfer-Encoding: chunked\r\n"),
            std::string::npos);
  EXPECT_TRUE(std::regex_match(
      r.body, std::regex(R"(\{"result":)" + HeaderThenText(1) +
                         R"(,"ID":"1234","TTL":"30"\}\}\n)")))
      << r.body;
  r = Post("/v3/kv/lease/timetolive", R"({"ID": "1234", "keys": true})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("ID":"1234","TTL":")"), std::string::npos) << r.body;
  r = Post("/v3/lease/leases", "");
  EXPECT_NE(r.body.find(R"("leases":[{"ID":"1234"}])"), std::string::npos)
      << r.body;
  r = Post("/v3/kv/lease/revoke", R"({"ID": "1234"})");
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(GatewayTest, AuthorizationHeaderIsTheToken) {
  ASSERT_EQ(Post("/v3/auth/user/add", R"({"name": "root", "password": "pw"})")
                .status,
            200);
  ASSERT_EQ(Post("/v3/auth/role/add", R"({"name": "root"})").status, 200);
  ASSERT_EQ(
      Post("/v3/auth/user/grant", R"({"user": "root", "role": "root"})").status,
      200);
  ASSERT_EQ(Post("/v3/auth/enable", "{}").status, 200);
  Reply r = Post("/v3/auth/authenticate", R"({"name": "root", "password": "pw"})");
  ASSERT_EQ(r.status, 200) << r.body;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.body, m, std::regex(R"re("token":"([^"]+)")re")))
      << r.body;
  const std::string token = m[1];
  // Without a token: etcd's "user name is empty" (InvalidArgument).
  r = Post("/v3/kv/put", R"({"key": "Zm9v", "value": "YmFy"})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("etcdserver: user name is empty"), std::string::npos)
      << r.body;
  // A bad token: Unauthenticated, 401.
  r = Post("/v3/kv/put", R"({"key": "Zm9v", "value": "YmFy"})", "nope.1");
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_NE(r.body.find(R"("code":16)"), std::string::npos) << r.body;
  // Root's token works, streams included.
  r = Post("/v3/kv/put", R"({"key": "Zm9v", "value": "YmFy"})", token);
  EXPECT_EQ(r.status, 200) << r.body;
  r = Post("/v3/auth/user/list", "{}", token);
  EXPECT_NE(r.body.find(R"("users":["root"])"), std::string::npos) << r.body;
  r = Post("/v3/auth/disable", "{}", token);
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(GatewayTest, ConcurrentClientsAndStreamsLeftOpen) {
  // Watches whose clients stay connected: stopping the HttpServer (in
  // TearDown) cancels them, and the gateway's destructor waits for them.
  std::vector<int> open;
  for (int i = 0; i < 4; ++i) {
    std::string raw;
    int fd = OpenWatch(R"({"create_request": {"key": "dw=="}})", &raw);
    ASSERT_GE(fd, 0) << raw;
    open.push_back(fd);
  }
  // Puts and ranges from several threads at once, and watches that are
  // dropped at once, while the open watches see every put.
  constexpr int kThreads = 8;
  constexpr int kPerThread = 10;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, &ok] {
      for (int i = 0; i < kPerThread; ++i) {
        if (Post("/v3/kv/put", R"({"key": "dw==", "value": "eA=="})").status ==
                200 &&
            Post("/v3/kv/range", R"({"key": "dw=="})").status == 200) {
          ok.fetch_add(1);
        }
        int fd = Connect(port_);
        RawSendAll(fd, "POST /v3/watch HTTP/1.1\r\nHost: t\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n");
        close(fd);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  const std::string last =
      absl::StrCat(R"("mod_revision":")", 1 + kThreads * kPerThread, R"(")");
  for (int fd : open) {
    std::string raw;
    ReadUntil(fd, last, &raw);
    EXPECT_NE(raw.find(last), std::string::npos) << raw.substr(0, 300);
  }
  // The four watches stay open into TearDown.
  for (int fd : open) open_fds_.push_back(fd);
}

TEST_F(GatewayTest, CorsHeadersFollowTheAllowedOrigins) {
  // The default (--cors "*"): every answer allows every origin.
  Reply r = Post("/v3/kv/range", R"({"key": "Zm9v"})");
  EXPECT_NE(r.headers.find("\r\nAccess-Control-Allow-Origin: *\r\n"),
            std::string::npos)
      << r.headers;
  EXPECT_NE(r.headers.find("\r\nGrpc-Metadata-Content-Type: application/grpc"
                           "\r\n"),
            std::string::npos)
      << r.headers;
  // --cors http://a.example: that origin is echoed, another gets none.
  auto gateway = JsonGateway::ForServer(grpc_.get(), {"http://a.example"});
  common::HttpServer http;
  gateway->Install(&http);
  auto port = http.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  auto ask = [&](const std::string& method, const std::string& origin) {
    int fd = Connect(*port);
    RawSendAll(fd, absl::StrCat(method, " /v3/kv/range HTTP/1.1\r\nHost: t\r\n"
                                "Origin: ",
                                origin, "\r\nContent-Length: 2\r\n\r\n{}"));
    std::string raw;
    ReadUntil(fd, "", &raw);
    close(fd);
    return Parse(raw);
  };
  r = ask("POST", "http://a.example");
  EXPECT_EQ(r.status, 400) << r.body;  // no key: etcd's error, with CORS
  EXPECT_NE(r.headers.find(
                "\r\nAccess-Control-Allow-Origin: http://a.example\r\n"),
            std::string::npos)
      << r.headers;
  r = ask("POST", "http://b.example");
  EXPECT_EQ(r.headers.find("Access-Control"), std::string::npos) << r.headers;
  // A preflight: 200 with the headers and nothing else.
  r = ask("OPTIONS", "http://a.example");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("\r\nAccess-Control-Allow-Methods: POST, GET, "
                           "OPTIONS, PUT, DELETE\r\n"),
            std::string::npos)
      << r.headers;
  EXPECT_EQ(r.body, "");
  http.Stop();
}

// --max-concurrent-streams as etcd's gateway feels it: with the limit's
// worth of watches open, further calls wait in arrival order until one
// ends; a waiting call whose client leaves is dropped.
TEST_F(GatewayTest, MaxConcurrentStreamsQueuesCallsBeyondTheLimit) {
  auto gateway = JsonGateway::ForServer(grpc_.get(), {}, /*max_concurrent_streams=*/2);
  common::HttpServer http;
  gateway->Install(&http);
  auto port = http.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  auto send = [&](const std::string& path, const std::string& body) {
    return SendPost(*port, path, body);
  };
  auto waiting_becomes = [&](size_t n) {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (gateway->WaitingCalls() != n && absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(5));  // polling interval
    }
    return gateway->WaitingCalls() == n;
  };
  // Two watches hold both slots.
  std::vector<int> watches;
  for (int i = 0; i < 2; ++i) {
    int fd = send("/v3/watch", R"({"create_request": {"key": "Zm9v"}})");
    std::string raw;
    ReadUntil(fd, R"("created":true}})", &raw);
    ASSERT_NE(raw.find(R"("created":true}})"), std::string::npos) << raw;
    watches.push_back(fd);
  }
  EXPECT_EQ(gateway->WaitingCalls(), 0u);
  // A put waits; so does a range behind it, and one whose client leaves.
  int put = send("/v3/kv/put", R"({"key": "Zm9v", "value": "YmFy"})");
  ASSERT_TRUE(waiting_becomes(1));
  int range = send("/v3/kv/range", R"({"key": "Zm9v"})");
  ASSERT_TRUE(waiting_becomes(2));
  int gone = send("/v3/kv/range", R"({"key": "Zm9v"})");
  ASSERT_TRUE(waiting_becomes(3));
  close(gone);
  ASSERT_TRUE(waiting_becomes(2));
  // The put has not run: the member is still at revision 1.
  Reply now = Post("/v3/kv/range", R"({"key": "Zm9v"})");
  EXPECT_NE(now.body.find(R"("revision":"1")"), std::string::npos) << now.body;
  // A watch ends: the put takes its slot, then (FIFO, one slot) the range,
  // which therefore sees the put.
  close(watches[0]);
  Reply p = ReadReply(put);
  EXPECT_EQ(p.status, 200) << p.body;
  EXPECT_NE(p.body.find(R"("revision":"2")"), std::string::npos) << p.body;
  Reply r = ReadReply(range);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("kvs":[{"key":"Zm9v")"), std::string::npos) << r.body;
  EXPECT_EQ(gateway->WaitingCalls(), 0u);
  // The open watch saw the put; it stays open into the server's stop.
  std::string raw;
  ReadUntil(watches[1], R"("value":"YmFy")", &raw);
  EXPECT_NE(raw.find(R"("value":"YmFy")"), std::string::npos) << raw;
  http.Stop();
  close(watches[1]);
}

TEST_F(GatewayTest, ElectionLeaderWithoutCandidates) {
  // etcd answers exactly this: the error has no gRPC code (Unknown, 500).
  Reply r = Post("/v3/election/leader", R"({"name": "ZQ=="})");
  EXPECT_EQ(r.status, 500) << r.body;
  EXPECT_EQ(r.body,
            R"({"error":"election: no leader","message":"election: no leader","code":2})");
}

}  // namespace
}  // namespace synod::server
