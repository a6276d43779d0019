#include "common/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace synod::common {
namespace {

// A blocking POSIX client with a 5 s receive timeout: a test that would hang
// fails instead.
int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may reject early and close
    off += n;
  }
}

// Reads until the server closes. Sets *eof to whether it did (rather than
// the receive timing out or the connection being reset).
std::string ReadAll(int fd, bool* eof) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      out.append(buf, n);
      continue;
    }
    *eof = n == 0;
    return out;
  }
}

// Sends `raw`, optionally half-closes, and returns the whole response,
// expecting the server to close the connection after it.
std::string Exchange(int port, const std::string& raw, bool shut_wr = false) {
  int fd = Connect(port);
  if (fd < 0) return "connect failed";
  SendAll(fd, raw);
  if (shut_wr) shutdown(fd, SHUT_WR);
  bool eof = false;
  std::string resp = ReadAll(fd, &eof);
  EXPECT_TRUE(eof) << "server did not close after: " << resp;
  close(fd);
  return resp;
}

int StatusOf(const std::string& resp) {
  if (resp.compare(0, 9, "HTTP/1.1 ") != 0 || resp.size() < 12) return -1;
  return std::stoi(resp.substr(9, 3));
}

std::string HeadersOf(const std::string& resp) {
  return resp.substr(0, resp.find("\r\n\r\n") + 2);
}

std::string BodyOf(const std::string& resp) {
  size_t p = resp.find("\r\n\r\n");
  return p == std::string::npos ? "" : resp.substr(p + 4);
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(HttpServerOptions()); }

  void StartServer(HttpServerOptions options) {
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("/hello", [](const HttpRequest&) {
      return HttpResponse{200, "text/plain; charset=utf-8", "hello\n"};
    });
    server_->Handle("/echo", [](const HttpRequest& r) {
      return HttpResponse{200, "text/plain",
                          r.method + "|" + r.path + "|" + r.query};
    });
    server_->Handle("/big", [](const HttpRequest&) {
      return HttpResponse{200, "text/plain", std::string(4 << 20, 'x')};
    });
    server_->Handle("/status42", [](const HttpRequest&) {
      return HttpResponse{42, "text/plain", "x"};
    });
    server_->Handle("/badtype", [](const HttpRequest&) {
      return HttpResponse{200, "text/plain\r\nX-Evil: 1", "x"};
    });
    server_->Handle("/nocontent", [](const HttpRequest&) {
      return HttpResponse{204, "text/plain", "ignored"};
    });
    absl::StatusOr<int> port = server_->Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    ASSERT_GT(*port, 0);
    EXPECT_EQ(server_->port(), *port);
    port_ = *port;
  }

  // The server still answers a good request.
  void ExpectServing() {
    std::string resp =
        Exchange(port_, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(StatusOf(resp), 200) << resp;
    EXPECT_EQ(BodyOf(resp), "hello\n");
  }

  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
};

TEST_F(HttpServerTest, GetReturnsHandlerResponse) {
  std::string resp =
      Exchange(port_, "GET /hello HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 200) << resp;
  std::string headers = HeadersOf(resp);
  EXPECT_NE(headers.find("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
            std::string::npos)
      << headers;
  EXPECT_NE(headers.find("\r\nContent-Length: 6\r\n"), std::string::npos);
  EXPECT_NE(headers.find("\r\nConnection: close\r\n"), std::string::npos);
  EXPECT_NE(headers.find("\r\nDate: "), std::string::npos);
  EXPECT_EQ(BodyOf(resp), "hello\n");
}

TEST_F(HttpServerTest, HeadSendsHeadersWithoutBody) {
  std::string resp = Exchange(port_, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 200) << resp;
  EXPECT_NE(resp.find("\r\nContent-Length: 6\r\n"), std::string::npos);
  EXPECT_EQ(BodyOf(resp), "");
}

TEST_F(HttpServerTest, HandlerSeesMethodPathAndQuery) {
  EXPECT_EQ(BodyOf(Exchange(port_, "GET /echo?a=1&b HTTP/1.0\r\n\r\n")),
            "GET|/echo|a=1&b");
  // Absolute form, bare LF line endings, and empty lines before the request.
  EXPECT_EQ(BodyOf(Exchange(port_,
                            "\r\nGET http://h:1/echo?q HTTP/1.1\nHost: h\n\n")),
            "GET|/echo|q");
}

TEST_F(HttpServerTest, HostRequiredForHttp11Only) {
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /hello HTTP/1.0\r\n\r\n")), 200);
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /hello HTTP/1.1\r\n\r\n")), 400);
  EXPECT_EQ(StatusOf(Exchange(
                port_, "GET /hello HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n")),
            400);
}

TEST_F(HttpServerTest, UnknownPathIs404) {
  std::string resp = Exchange(port_, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 404) << resp;
  EXPECT_EQ(BodyOf(resp), "404 Not Found\n");
  // Paths match exactly.
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /hello/ HTTP/1.0\r\n\r\n")), 404);
}

TEST_F(HttpServerTest, OtherMethodsAre405WithAllow) {
  for (std::string method : {"POST", "PUT", "DELETE", "OPTIONS", "BREW"}) {
    std::string resp =
        Exchange(port_, method +
                            " /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 3"
                            "\r\n\r\nabc");
    EXPECT_EQ(StatusOf(resp), 405) << method << ": " << resp;
    EXPECT_NE(resp.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos);
  }
}

TEST_F(HttpServerTest, UnsupportedVersionIs505) {
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /hello HTTP/2.0\r\n\r\n")), 505);
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /hello HTTP/1.2\r\n\r\n")), 505);
}

TEST_F(HttpServerTest, GarbageGets400AndServerKeepsServing) {
  const std::vector<std::string> garbage = {
      "garbage\r\n\r\n",
      std::string("\x00\x01\x02\xff\xfe\r\n\r\n", 9),
      "GET /hello\r\n\r\n",
      "GET  /hello HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET /hello HTTP/1.1 extra\r\nHost: t\r\n\r\n",
      "GET /hello http/1.1\r\nHost: t\r\n\r\n",
      "GET hello HTTP/1.0\r\n\r\n",
      "GET /a\rb HTTP/1.0\r\n\r\n",
      "GET /a\xff HTTP/1.0\r\n\r\n",
      "G(T /hello HTTP/1.0\r\n\r\n",
      "GET /hello HTTP/1.1\r\nno colon here\r\n\r\n",
      "GET /hello HTTP/1.1\r\n: empty name\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost : t\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost: t" + std::string(1, '\0') + "\r\n\r\n",
      "\r\n\r\n\r\nGET /hello HTTP/1.0\r\n\r\n",
  };
  for (const std::string& g : garbage) {
    std::string resp = Exchange(port_, g);
    EXPECT_EQ(StatusOf(resp), 400)
        << testing::PrintToString(g) << " -> " << resp;
  }
  // Incomplete requests are answered when the client half-closes.
  EXPECT_EQ(StatusOf(Exchange(port_, "garbage", /*shut_wr=*/true)), 400);
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /hello HTTP/1.0\r\nHost: t",
                              /*shut_wr=*/true)),
            400);
  // A client that sends nothing and half-closes is closed silently.
  EXPECT_EQ(Exchange(port_, "", /*shut_wr=*/true), "");
  ExpectServing();
}

TEST_F(HttpServerTest, RandomBytesNeverBreakTheServer) {
  const uint32_t seed = std::random_device()();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const std::string prefixes[] = {"", "GET ", "GET /hello HTTP/1.1\r\n"};
  for (int i = 0; i < 200; ++i) {
    std::string input = prefixes[i % 3];
    int len = std::uniform_int_distribution<int>(1, 600)(rng);
    for (int j = 0; j < len; ++j) input += static_cast<char>(rng());
    if (i % 2 == 0) input += "\r\n\r\n";
    std::string resp = Exchange(port_, input, /*shut_wr=*/true);
    if (input.find_first_not_of("\r\n") == std::string::npos) continue;
    int status = StatusOf(resp);
    EXPECT_TRUE(status == 400 || status == 404 || status == 405 ||
                status == 505 || status == 200)
        << testing::PrintToString(input) << " -> " << resp;
  }
  ExpectServing();
}

TEST_F(HttpServerTest, OversizedRequestIsRejected) {
  // Huge header.
  std::string big_header = "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " +
                           std::string(20 * 1024, 'a') + "\r\n\r\n";
  std::string resp = Exchange(port_, big_header);
  EXPECT_EQ(StatusOf(resp), 431) << resp.substr(0, 200);
  // Huge request line, never terminated.
  resp = Exchange(port_, "GET /" + std::string(64 * 1024, 'a'));
  EXPECT_EQ(StatusOf(resp), 431) << resp.substr(0, 200);
  // Endless headers.
  std::string many = "GET /hello HTTP/1.1\r\n";
  while (many.size() < 40 * 1024) many += "X-A: b\r\n";
  EXPECT_EQ(StatusOf(Exchange(port_, many)), 431);
  // Just under the limit is fine.
  std::string ok = "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " +
                   std::string(15 * 1024, 'a') + "\r\n\r\n";
  EXPECT_EQ(StatusOf(Exchange(port_, ok)), 200);
  ExpectServing();
}

TEST_F(HttpServerTest, InvalidHandlerResponsesBecome500) {
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /status42 HTTP/1.0\r\n\r\n")), 500);
  std::string resp = Exchange(port_, "GET /badtype HTTP/1.0\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 500);
  EXPECT_EQ(resp.find("X-Evil"), std::string::npos);
  resp = Exchange(port_, "GET /nocontent HTTP/1.0\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 204) << resp;
  EXPECT_EQ(resp.find("Content-Length"), std::string::npos);
  EXPECT_EQ(BodyOf(resp), "");
}

TEST_F(HttpServerTest, LargeResponseIsComplete) {
  std::string resp = Exchange(port_, "GET /big HTTP/1.0\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 200);
  EXPECT_EQ(BodyOf(resp).size(), size_t{4} << 20);
}

TEST_F(HttpServerTest, ClientLeavingMidResponseDoesNotKillServer) {
  // The client closes without reading a 4 MiB response, so its kernel resets
  // the connection while the server is writing. A later write to the reset
  // socket raises SIGPIPE (fatal to this test process) unless the server
  // guards against it.
  for (int i = 0; i < 60; ++i) {
    int fd = Connect(port_);
    ASSERT_GE(fd, 0);
    SendAll(fd, "GET /big HTTP/1.0\r\n\r\n");
    if (i % 3 == 1) shutdown(fd, SHUT_WR);
    if (i % 3 == 2) {
      char first;
      ASSERT_EQ(recv(fd, &first, 1, 0), 1);  // the response has started
      linger lg{1, 0};                       // close with RST
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(fd);
  }
  ExpectServing();
  std::string resp = Exchange(port_, "GET /big HTTP/1.0\r\n\r\n");
  EXPECT_EQ(BodyOf(resp).size(), size_t{4} << 20);
}

TEST_F(HttpServerTest, ConcurrentClients) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, &ok] {
      for (int i = 0; i < 50; ++i) {
        std::string resp = Exchange(
            port_, "GET /echo?" + std::to_string(i) + " HTTP/1.0\r\n\r\n");
        if (StatusOf(resp) == 200 &&
            BodyOf(resp) == "GET|/echo|" + std::to_string(i)) {
          ++ok;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST_F(HttpServerTest, StopIsIdempotentAndFinal) {
  server_->Stop();
  server_->Stop();
  EXPECT_EQ(Connect(port_), -1);  // nothing listens any more
  EXPECT_EQ(server_->port(), port_);
  absl::StatusOr<int> again = server_->Start("127.0.0.1", 0);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  server_.reset();  // destructor after Stop()
}

TEST_F(HttpServerTest, StopClosesOpenConnections) {
  int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  SendAll(fd, "GET /hello HTTP/1.1\r\n");  // incomplete
  server_->Stop();
  // Closed without a response: EOF, or a reset if the server had not read
  // the bytes yet; never the receive timeout.
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET))
      << n << " " << strerror(errno);
  close(fd);
}

TEST(HttpServerStartTest, StartErrors) {
  HttpServer never_started;
  never_started.Stop();  // no-op
  EXPECT_EQ(never_started.port(), 0);

  HttpServer a;
  EXPECT_EQ(a.Start("not-an-address", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Start("127.0.0.1", 70000).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Start("127.0.0.1", -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  // 192.0.2.1 (TEST-NET-1) is not a local address.
  EXPECT_EQ(a.Start("192.0.2.1", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A failed Start() leaves the server startable.
  absl::StatusOr<int> port = a.Start("localhost", 0);
  ASSERT_TRUE(port.ok()) << port.status();

  HttpServer b;
  absl::StatusOr<int> busy = b.Start("127.0.0.1", *port);
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kUnavailable)
      << busy.status();
}

TEST(HttpServerOptionsTest, IdleAndSlowClientsTimeOut) {
  HttpServerOptions options;
  options.io_timeout_ms = 100;
  HttpServer server(options);
  server.Handle("/hello", [](const HttpRequest&) { return HttpResponse(); });
  absl::StatusOr<int> port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  // Sends nothing: closed silently.
  EXPECT_EQ(Exchange(*port, ""), "");
  // Sends half a request: 408.
  EXPECT_EQ(StatusOf(Exchange(*port, "GET /hello HTTP/1.1\r\nHo")), 408);
}

TEST(HttpServerOptionsTest, ConnectionsBeyondLimitAreClosed) {
  HttpServerOptions options;
  options.max_connections = 1;
  HttpServer server(options);
  server.Handle("/hello", [](const HttpRequest&) {
    return HttpResponse{200, "text/plain", "hi"};
  });
  absl::StatusOr<int> port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  int first = Connect(*port);
  ASSERT_GE(first, 0);
  // The second connection is accepted after the first and closed at once.
  std::string second = Exchange(*port, "");
  EXPECT_EQ(second, "");
  SendAll(first, "GET /hello HTTP/1.0\r\n\r\n");
  bool eof = false;
  std::string resp = ReadAll(first, &eof);
  EXPECT_EQ(StatusOf(resp), 200) << resp;
  EXPECT_TRUE(eof);
  close(first);
}

}  // namespace
}  // namespace synod::common
