#include "common/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <deque>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/tls.h"
#include "common/x509_util.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"
#include "tests/support/raw_http_client.h"
#include "tests/support/tls_client_hello.h"
#include "tests/support/test_certs.h"

namespace synod::common {
namespace {

using synod::testing::RawConnect;
using synod::testing::ClientHello;
using synod::testing::RawReadUntil;
using synod::testing::RawSendAll;
using synod::testing::Unchunk;

// Reads until the server closes. Sets *eof to whether it did (rather than
// the receive timing out or the connection being reset).
std::string ReadAll(int fd, bool* eof) {
  std::string out;
  *eof = RawReadUntil(fd, "", &out);
  return out;
}

// Sends `raw`, optionally half-closes, and returns the whole response,
// expecting the server to close the connection after it.
std::string Exchange(int port, const std::string& raw, bool shut_wr = false) {
  int fd = RawConnect(port);
  if (fd < 0) return "connect failed";
  RawSendAll(fd, raw);
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
  for (std::string method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    std::string resp =
        Exchange(port_, method +
                            " /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 3"
                            "\r\n\r\nabc");
    EXPECT_EQ(StatusOf(resp), 405) << method << ": " << resp;
    EXPECT_NE(resp.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos);
  }
  // http-parser knows a fixed list of methods; another well-formed one is
  // "not implemented" (RFC 9110 §9.1).
  EXPECT_EQ(StatusOf(Exchange(port_,
                              "BREW /hello HTTP/1.1\r\nHost: t\r\n\r\n")),
            501);
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
      "GET /hello HTTP/1.1 extra\r\nHost: t\r\n\r\n",
      "GET /hello http/1.1\r\nHost: t\r\n\r\n",
      "GET hello HTTP/1.0\r\n\r\n",
      "GET /a\rb HTTP/1.0\r\n\r\n",
      "GET /a\xff HTTP/1.0\r\n\r\n",
      "G(T /hello HTTP/1.0\r\n\r\n",
      "GET /hello HTTP/1.1\r\nno colon here\r\n\r\n",
      "GET /hello HTTP/1.1\r\n: empty name\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost : t\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost: t" + std::string(1, '\0') + "\r\n\r\n",
  };
  for (const std::string& g : garbage) {
    std::string resp = Exchange(port_, g);
    EXPECT_EQ(StatusOf(resp), 400)
        << ::testing::PrintToString(g) << " -> " << resp;
  }
  // What RFC 9112 lets a server accept, and http-parser does: several
  // spaces between the request line's parts (§3), obsolete line folding
  // (§5.2, taken as a space) and any number of empty lines before the
  // request (§2.2).
  for (const std::string& lenient : {
           std::string("GET  /hello HTTP/1.1\r\nHost: t\r\n\r\n"),
           std::string("GET /hello HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n"),
           std::string("\r\n\r\n\r\nGET /hello HTTP/1.0\r\n\r\n"),
       }) {
    EXPECT_EQ(StatusOf(Exchange(port_, lenient)), 200)
        << ::testing::PrintToString(lenient);
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
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
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
                status == 501 || status == 505 || status == 200)
        << ::testing::PrintToString(input) << " -> " << resp;
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
    int fd = RawConnect(port_);
    ASSERT_GE(fd, 0);
    RawSendAll(fd, "GET /big HTTP/1.0\r\n\r\n");
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
  EXPECT_EQ(RawConnect(port_), -1);  // nothing listens any more
  EXPECT_EQ(server_->port(), port_);
  absl::StatusOr<int> again = server_->Start("127.0.0.1", 0);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  server_.reset();  // destructor after Stop()
}

// Stops `server` while a client on `port` has sent `partial` and waits for
// the rest of its exchange: the client sees the connection closed without a
// response (EOF, or a reset if the server had not read the bytes yet), never
// its receive timeout.
void ExpectStopCloses(HttpServer* server, int port,
                      const std::string& partial) {
  int fd = RawConnect(port);
  ASSERT_GE(fd, 0);
  RawSendAll(fd, partial);
  server->Stop();
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET))
      << n << " " << strerror(errno);
  close(fd);
}

TEST_F(HttpServerTest, StopClosesOpenConnections) {
  ExpectStopCloses(server_.get(), port_, "GET /hello HTTP/1.1\r\n");
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
  int first = RawConnect(*port);
  ASSERT_GE(first, 0);
  // The second connection is accepted after the first and closed at once.
  std::string second = Exchange(*port, "");
  EXPECT_EQ(second, "");
  RawSendAll(first, "GET /hello HTTP/1.0\r\n\r\n");
  bool eof = false;
  std::string resp = ReadAll(first, &eof);
  EXPECT_EQ(StatusOf(resp), 200) << resp;
  EXPECT_TRUE(eof);
  close(first);
}

// ---- Request bodies and asynchronous, streamed answers ----

// Reads from `fd` until `want` has arrived (or the 5 s timeout/EOF).
std::string ReadUntil(int fd, const std::string& want) {
  std::string got;
  RawReadUntil(fd, want, &got);
  return got;
}

class HttpAsyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions options;
    options.max_body_bytes = 1000;
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("/hello", [](const HttpRequest&) {
      return HttpResponse{200, "text/plain", "hello\n"};
    });
    // Answers from another thread with the body and a header.
    server_->HandleAsync("/post", "POST",
                         [this](const HttpRequest& r, HttpResponder resp) {
      const std::string* auth = r.Header("authorization");
      std::string text = absl::StrCat(r.method, "|", r.path, "|", r.body, "|",
                                       auth == nullptr ? "-" : *auth);
      threads_.emplace_back([resp, text]() mutable {
        EXPECT_TRUE(resp.Respond(HttpResponse{201, "application/json", text}));
        EXPECT_FALSE(resp.Respond(HttpResponse{200, "text/plain", "again"}));
      });
    });
    // A streamed answer: two chunks, then the end.
    server_->HandleAsync("/chunks", "POST",
                         [this](const HttpRequest&, HttpResponder resp) {
      EXPECT_FALSE(resp.Write("early"));  // not started
      ASSERT_TRUE(resp.StartStream(200, "application/json"));
      EXPECT_TRUE(resp.Write("a", [this] { written_.fetch_add(1); }));
      EXPECT_TRUE(resp.Write("bc", [this] { written_.fetch_add(1); }));
      EXPECT_TRUE(resp.Finish());
      EXPECT_FALSE(resp.Write("late"));
    });
    // Echoes a streamed body back, piece by piece, as it arrives.
    server_->HandleStream("/echo", "POST",
                          [](const HttpRequest&, HttpResponder resp) {
      EXPECT_TRUE(resp.StartStream(200, "text/plain"));
      HttpBodyReader reader;
      reader.on_data = [resp](absl::string_view piece) mutable {
        resp.Write(absl::StrCat("<", piece, ">"));
      };
      reader.on_end = [resp]() mutable { resp.Finish(); };
      return reader;
    });
    // Never answers; keeps the responder and tells when it closes.
    server_->HandleAsync("/hang", "POST",
                         [this](const HttpRequest&, HttpResponder resp) {
      resp.OnClose([this] { closed_.Notify(); });
      absl::MutexLock l(&mu_);
      hanging_.push_back(resp);
    });
    absl::StatusOr<int> port = server_->Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }
  void TearDown() override {
    for (std::thread& t : threads_) t.join();
    server_->Stop();
  }

  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
  std::vector<std::thread> threads_;
  std::atomic<int> written_{0};
  absl::Notification closed_;
  absl::Mutex mu_;
  std::vector<HttpResponder> hanging_ ABSL_GUARDED_BY(mu_);
};

TEST_F(HttpAsyncTest, PostBodyIsReadAndAnsweredFromAnotherThread) {
  std::string resp = Exchange(
      port_,
      "POST /post HTTP/1.1\r\nHost: t\r\nAuthorization: tok\r\n"
      "Content-Length: 5\r\n\r\nhello");
  EXPECT_EQ(StatusOf(resp), 201) << resp;
  EXPECT_NE(resp.find("\r\nContent-Type: application/json\r\n"),
            std::string::npos);
  EXPECT_EQ(BodyOf(resp), "POST|/post|hello|tok");
  // A chunked body, decoded.
  resp = Exchange(port_,
                  "POST /post HTTP/1.1\r\nHost: t\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  EXPECT_EQ(BodyOf(resp), "POST|/post|abcde|-") << resp;
  // No body at all.
  resp = Exchange(port_, "POST /post HTTP/1.0\r\n\r\n");
  EXPECT_EQ(BodyOf(resp), "POST|/post||-") << resp;
}

TEST_F(HttpAsyncTest, MethodsBodyLimitAndExpectContinue) {
  std::string resp = Exchange(port_, "GET /post HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 405) << resp;
  EXPECT_NE(resp.find("\r\nAllow: POST\r\n"), std::string::npos) << resp;
  // Over max_body_bytes, told by Content-Length or found while reading.
  EXPECT_EQ(StatusOf(Exchange(port_,
                              "POST /post HTTP/1.1\r\nHost: t\r\n"
                              "Content-Length: 1001\r\n\r\n")),
            413);
  std::string big = absl::StrCat("POST /post HTTP/1.1\r\nHost: t\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n",
                                 "3e9\r\n", std::string(1001, 'x'),
                                 "\r\n0\r\n\r\n");
  EXPECT_EQ(StatusOf(Exchange(port_, big)), 413);
  // "Expect: 100-continue": the interim answer comes before the body is
  // sent.
  int fd = RawConnect(port_);
  ASSERT_GE(fd, 0);
  RawSendAll(fd,
          "POST /post HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
          "Content-Length: 2\r\n\r\n");
  EXPECT_EQ(ReadUntil(fd, "\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
  RawSendAll(fd, "ok");
  bool eof = false;
  resp = ReadAll(fd, &eof);
  close(fd);
  EXPECT_EQ(StatusOf(resp), 201) << resp;
  EXPECT_EQ(BodyOf(resp), "POST|/post|ok|-");
}

TEST_F(HttpAsyncTest, StreamedAnswerIsChunked) {
  std::string resp =
      Exchange(port_, "POST /chunks HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 200) << resp;
  EXPECT_NE(resp.find("\r\nTransfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_EQ(resp.find("Content-Length"), std::string::npos);
  EXPECT_EQ(Unchunk(BodyOf(resp)), "abc") << resp;
  EXPECT_EQ(written_.load(), 2);  // both ran before the connection closed
  // HTTP/1.0 has no chunking: the raw bytes, ended by the close.
  resp = Exchange(port_, "POST /chunks HTTP/1.0\r\n\r\n");
  EXPECT_EQ(resp.find("Transfer-Encoding"), std::string::npos) << resp;
  EXPECT_EQ(BodyOf(resp), "abc");
}

TEST_F(HttpAsyncTest, StreamedBodyIsHandedOnAsItArrives) {
  int fd = RawConnect(port_);
  ASSERT_GE(fd, 0);
  RawSendAll(fd,
          "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
          "\r\n5\r\nfirst\r\n");
  // The first piece comes back before the client sends more.
  std::string got = ReadUntil(fd, "<first>");
  EXPECT_NE(got.find("<first>"), std::string::npos) << got;
  RawSendAll(fd, "6\r\nsecond\r\n0\r\n\r\n");
  bool eof = false;
  got += ReadAll(fd, &eof);
  close(fd);
  EXPECT_TRUE(eof);
  EXPECT_EQ(Unchunk(BodyOf(got)), "<first><second>") << got;
}

TEST_F(HttpAsyncTest, ClientLeavingClosesTheResponder) {
  int fd = RawConnect(port_);
  ASSERT_GE(fd, 0);
  RawSendAll(fd, "POST /hang HTTP/1.1\r\nHost: t\r\n\r\n");
  // Wait until the handler has it, then leave.
  for (;;) {
    absl::MutexLock l(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(
                                 +[](std::vector<HttpResponder>* v) {
                                   return !v->empty();
                                 },
                                 &hanging_),
                             absl::Seconds(10))) {
      break;
    }
    FAIL() << "handler never ran";
  }
  close(fd);
  ASSERT_TRUE(closed_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  absl::MutexLock l(&mu_);
  EXPECT_TRUE(hanging_[0].closed());
  EXPECT_FALSE(hanging_[0].Respond(HttpResponse{}));
  EXPECT_FALSE(hanging_[0].StartStream(200, "text/plain"));
  std::string resp = Exchange(port_, "GET /hello HTTP/1.0\r\n\r\n");
  EXPECT_EQ(BodyOf(resp), "hello\n");
}

TEST_F(HttpAsyncTest, StopClosesPendingResponders) {
  int fd = RawConnect(port_);
  ASSERT_GE(fd, 0);
  RawSendAll(fd, "POST /hang HTTP/1.1\r\nHost: t\r\n\r\n");
  {
    absl::MutexLock l(&mu_);
    ASSERT_TRUE(mu_.AwaitWithTimeout(
        absl::Condition(
            +[](std::vector<HttpResponder>* v) { return !v->empty(); },
            &hanging_),
        absl::Seconds(10)));
  }
  server_->Stop();
  EXPECT_TRUE(closed_.HasBeenNotified());
  bool eof = false;
  EXPECT_EQ(ReadAll(fd, &eof), "");
  close(fd);
  absl::MutexLock l(&mu_);
  EXPECT_FALSE(hanging_[0].Respond(HttpResponse{}));
  // OnClose after the close runs at once.
  bool ran = false;
  hanging_[0].OnClose([&ran] { ran = true; });
  EXPECT_TRUE(ran);
}

// ---- HTTP/2 hand-off (HTTP/1.x and gRPC on one port) ----

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// An http2_handoff that keeps the sockets it is given, for the test to
// read.
class HandedFds {
 public:
  ~HandedFds() {
    absl::MutexLock l(&mu_);
    for (int fd : fds_) close(fd);
  }
  std::function<void(int)> Handoff() {
    return [this](int fd) {
      absl::MutexLock l(&mu_);
      fds_.push_back(fd);
    };
  }
  // The next handed-off socket, or -1 after 5 s.
  int Next() {
    absl::MutexLock l(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &HandedFds::HasFdLocked),
                              absl::Seconds(5))) {
      return -1;
    }
    int fd = fds_.front();
    fds_.pop_front();
    return fd;
  }
  size_t count() {
    absl::MutexLock l(&mu_);
    return fds_.size();
  }

 private:
  bool HasFdLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !fds_.empty(); }

  absl::Mutex mu_;
  std::deque<int> fds_ ABSL_GUARDED_BY(mu_);
};

// Reads `n` bytes from the non-blocking `fd` (5 s at most).
std::string ReadExactly(int fd, size_t n) {
  std::string out;
  char buf[256];
  while (out.size() < n) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) break;
    ssize_t got = recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (got <= 0) break;
    out.append(buf, got);
  }
  return out;
}

class HttpMuxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions options;
    options.io_timeout_ms = 300;
    options.http2_handoff = handed_.Handoff();
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("/hello", [](const HttpRequest&) {
      return HttpResponse{200, "text/plain; charset=utf-8", "hello\n"};
    });
    absl::StatusOr<int> port = server_->Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }

  HandedFds handed_;  // outlives server_: its hand-off may still run
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
};

TEST_F(HttpMuxTest, PrefaceIsHandedOffUnread) {
  int fd = RawConnect(port_);
  ASSERT_GE(fd, 0);
  RawSendAll(fd, std::string(kPreface) + "frames");
  int handed = handed_.Next();
  ASSERT_GE(handed, 0);
  // Nothing was consumed: the new owner reads the preface itself.
  EXPECT_EQ(ReadExactly(handed, 30), std::string(kPreface) + "frames");
  // And its replies reach the client.
  RawSendAll(handed, "settings");
  char buf[8];
  EXPECT_EQ(recv(fd, buf, sizeof(buf), MSG_WAITALL), 8);
  EXPECT_EQ(std::string(buf, 8), "settings");
  close(handed);
  close(fd);
}

TEST_F(HttpMuxTest, PrefaceInPiecesWaitsForTheRest) {
  int fd = RawConnect(port_);
  ASSERT_GE(fd, 0);
  const std::string preface(kPreface);
  for (size_t i = 0; i < preface.size(); i += 5) {
    RawSendAll(fd, preface.substr(i, 5));
  }
  int handed = handed_.Next();
  ASSERT_GE(handed, 0);
  EXPECT_EQ(ReadExactly(handed, preface.size()), preface);
  close(handed);
  close(fd);
}

TEST_F(HttpMuxTest, Http1IsServedOnTheSamePort) {
  std::string resp =
      Exchange(port_, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(StatusOf(resp), 200) << resp;
  EXPECT_EQ(BodyOf(resp), "hello\n");
  // Starts like the preface ('P'), then is not it.
  EXPECT_EQ(StatusOf(Exchange(port_, "PUT /hello HTTP/1.0\r\n\r\n")), 405);
  EXPECT_EQ(StatusOf(Exchange(port_, "garbage\r\n\r\n")), 400);
  EXPECT_EQ(handed_.count(), 0u);
}

TEST_F(HttpMuxTest, PartialPrefaceThenEofIsServedAsHttp1) {
  EXPECT_EQ(StatusOf(Exchange(port_, "PRI * HTTP/2", /*shut_wr=*/true)), 400);
  EXPECT_EQ(handed_.count(), 0u);
}

TEST_F(HttpMuxTest, SilentOrStalledConnectionsAreClosedAfterIoTimeout) {
  // Nothing at all, then a stalled partial preface: both closed silently.
  EXPECT_EQ(Exchange(port_, ""), "");
  int fd = RawConnect(port_);
  ASSERT_GE(fd, 0);
  RawSendAll(fd, "PRI * HTTP/2.0\r\n");
  char buf[16];
  // Closed with its bytes unread, so the kernel resets rather than ends it.
  ssize_t n = recv(fd, buf, sizeof(buf), 0);
  EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << errno;
  close(fd);
  EXPECT_EQ(handed_.count(), 0u);
  // The server still serves.
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /hello HTTP/1.0\r\n\r\n")), 200);
}

TEST_F(HttpMuxTest, StartTlsRefusesTheHandoff) {
  HttpServerOptions options;
  options.http2_handoff = [](int fd) { close(fd); };
  HttpServer server(options);
  TlsInfo info;
  info.cert_file = "/nonexistent.crt";
  info.key_file = "/nonexistent.key";
  EXPECT_EQ(server.StartTls("127.0.0.1", 0, info).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A KV service whose Range answers with revision 42.
class FakeKv final : public etcdserverpb::KV::CallbackService {
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx,
                                  const etcdserverpb::RangeRequest* req,
                                  etcdserverpb::RangeResponse* resp) override {
    resp->mutable_header()->set_revision(42);
    resp->set_count(static_cast<int64_t>(req->key().size()));
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

// gRPC and HTTP/1.x clients on one port, as etcd's client URL serves them:
// a real gRPC server that listens on no port of its own gets the HTTP/2
// connections from the HttpServer.
TEST(HttpMuxGrpcTest, GrpcAndHttpShareOnePort) {
  FakeKv kv;
  grpc::ServerBuilder builder;
  builder.RegisterService(&kv);
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  ASSERT_NE(grpc_server, nullptr);
  HttpServerOptions options;
  grpc::Server* raw = grpc_server.get();
  options.http2_handoff = [raw](int fd) {
    grpc::AddInsecureChannelFromFd(raw, fd);
  };
  HttpServer http(options);
  http.Handle("/health", [](const HttpRequest&) {
    return HttpResponse{200, "application/json", "{\"health\":\"true\"}"};
  });
  absl::StatusOr<int> port = http.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();

  for (int round = 0; round < 3; ++round) {
    // A new channel each round: a new connection through the hand-off.
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", *port),
                                       grpc::InsecureChannelCredentials());
    auto stub = etcdserverpb::KV::NewStub(channel);
    for (int i = 0; i < 3; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
      etcdserverpb::RangeRequest req;
      req.set_key("abc");
      etcdserverpb::RangeResponse resp;
      grpc::Status st = stub->Range(&ctx, req, &resp);
      ASSERT_TRUE(st.ok()) << st.error_message();
      EXPECT_EQ(resp.header().revision(), 42);
      EXPECT_EQ(resp.count(), 3);
    }
    std::string resp =
        Exchange(*port, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_EQ(StatusOf(resp), 200) << resp;
    EXPECT_EQ(BodyOf(resp), "{\"health\":\"true\"}");
  }
  // Hand-offs stop with the HttpServer, then gRPC closes what it was given.
  http.Stop();
  grpc_server->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(1));
}

// ---- https ----

// What an in-process OpenSSL client saw.
struct TlsResult {
  bool handshake = false;  // SSL_connect succeeded
  std::string response;    // plaintext read until the server closed
  std::string server_cn;   // the server certificate's CN
};

// A TLS client on 127.0.0.1:`port` that verifies the server against
// `ca_file` (and its IP SAN 127.0.0.1), presents `cert_file`/`key_file` when
// set, sends `request` and reads until the server closes.
TlsResult TlsExchange(
    int port, const std::string& ca_file, const std::string& cert_file = "",
    const std::string& key_file = "",
    const std::string& request = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n") {
  // OpenSSL writes to its socket with write(2): a server that already closed
  // would raise SIGPIPE. Keep it pending on this thread instead.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);

  TlsResult result;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  EXPECT_EQ(SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr), 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), "127.0.0.1");
  if (!cert_file.empty()) {
    EXPECT_EQ(SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()), 1);
    EXPECT_EQ(
        SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM),
        1);
  }
  int fd = RawConnect(port);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (fd >= 0 && SSL_connect(ssl) == 1) {
    result.handshake = true;
    result.server_cn = SubjectCommonName(SSL_get0_peer_certificate(ssl));
    if (SSL_write(ssl, request.data(), static_cast<int>(request.size())) > 0) {
      char buf[16384];
      int n;
      while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
        result.response.append(buf, n);
      }
    }
  }
  ERR_clear_error();
  SSL_free(ssl);
  if (fd >= 0) close(fd);
  SSL_CTX_free(ctx);
  return result;
}


// Overwrites `to` in place with `from`'s bytes (not a rename: the server
// must notice a changed file whose inode and size may stay the same).
void CopyInPlace(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << data;
  ASSERT_TRUE(out.good()) << to;
}

class HttpsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "synod_https_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    absl::StatusOr<testing::TestPki> pki = testing::TestPki::Create(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_.emplace(*std::move(pki));
    server_cert_ = Issue(testing::LeafSpec::Named("server", "server-1"));
    client_cert_ = Issue(testing::LeafSpec::Named("client", "client"));
    info_.cert_file = server_cert_.cert_file;
    info_.key_file = server_cert_.key_file;
  }

  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  testing::CertPaths Issue(const testing::LeafSpec& spec) {
    absl::StatusOr<testing::CertPaths> paths = pki_->Issue(spec);
    EXPECT_TRUE(paths.ok()) << paths.status();
    return paths.ok() ? *paths : testing::CertPaths();
  }

  // Serves /metrics over https with info_.
  void StartHttps(HttpServerOptions options = HttpServerOptions()) {
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("/metrics", [](const HttpRequest&) {
      return HttpResponse{200, "text/plain; version=0.0.4", "synod_up 1\n"};
    });
    absl::StatusOr<int> port = server_->StartTls("127.0.0.1", 0, info_);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }

  // A well-behaved client (with the client certificate) still gets
  // /metrics.
  void ExpectServing() {
    TlsResult r = TlsExchange(port_, pki_->ca_file(), client_cert_.cert_file,
                              client_cert_.key_file);
    EXPECT_TRUE(r.handshake);
    EXPECT_EQ(StatusOf(r.response), 200) << r.response;
    EXPECT_EQ(BodyOf(r.response), "synod_up 1\n");
  }

  // Runs `client` and returns what the server logged meanwhile. The server
  // logs a refusal before it closes the connection, and every client here
  // waits for that close.
  template <typename F>
  std::string ServerLog(F client) {
    ::testing::internal::CaptureStderr();
    client();
    return ::testing::internal::GetCapturedStderr();
  }

  std::string dir_;
  std::optional<testing::TestPki> pki_;
  testing::CertPaths server_cert_;
  testing::CertPaths client_cert_;
  TlsInfo info_;
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
};

TEST_F(HttpsServerTest, GetMetricsOverHttps) {
  StartHttps();
  TlsResult r = TlsExchange(port_, pki_->ca_file());
  ASSERT_TRUE(r.handshake);
  EXPECT_EQ(r.server_cn, "server-1");
  EXPECT_EQ(StatusOf(r.response), 200) << r.response;
  EXPECT_NE(r.response.find("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
            std::string::npos);
  EXPECT_EQ(BodyOf(r.response), "synod_up 1\n");
  // HTTP errors come back inside TLS as over http.
  r = TlsExchange(port_, pki_->ca_file(), "", "",
                  "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(StatusOf(r.response), 404) << r.response;
  r = TlsExchange(port_, pki_->ca_file(), "", "", "garbage\r\n\r\n");
  EXPECT_EQ(StatusOf(r.response), 400) << r.response;
}

TEST_F(HttpsServerTest, TlsBelow12IsRefused) {
  StartHttps();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(ctx, 0);  // let the client offer TLS 1.1
  SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
  int fd = RawConnect(port_);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  std::string log = ServerLog([&] { EXPECT_NE(SSL_connect(ssl), 1); });
  ERR_clear_error();
  SSL_free(ssl);
  close(fd);
  SSL_CTX_free(ctx);
  EXPECT_NE(log.find("rejected connection from \"127.0.0.1:"),
            std::string::npos)
      << log;
  ExpectServing();
}

TEST_F(HttpsServerTest, PlaintextOnTlsPortIsRefused) {
  StartHttps();
  std::string resp;
  std::string log = ServerLog([&] {
    resp = Exchange(port_, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
  });
  EXPECT_EQ(resp.find("HTTP/"), std::string::npos) << resp;
  EXPECT_NE(log.find("rejected connection from \"127.0.0.1:"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("(error \"tls: first record does not look like a TLS "
                     "handshake\", ServerName \"\")"),
            std::string::npos)
      << log;
  ExpectServing();
}

TEST_F(HttpsServerTest, GarbageAndAbortedHandshakesAreClosed) {
  StartHttps();
  const std::string hello = ClientHello();
  ASSERT_GT(hello.size(), 10u);
  std::vector<std::string> inputs = {
      hello.substr(0, hello.size() / 2),  // cut short, then EOF
      hello,                              // then EOF instead of Finished
      hello + std::string(64, '\x17'),    // then a bogus record
      std::string("\x16\x03\x01\xff\xff", 5) + std::string(300, 'a'),
      std::string("\x80\x2e\x01\x03\x01", 5),  // SSLv2 hello
      std::string(1, '\0'),
  };
  const uint32_t seed = std::random_device()();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  for (int i = 0; i < 60; ++i) {
    // Half of them pass the first record's header check.
    std::string input = i % 2 == 0 ? std::string("\x16\x03\x01", 3) : "";
    int len = std::uniform_int_distribution<int>(1, 600)(rng);
    for (int j = 0; j < len; ++j) input += static_cast<char>(rng());
    inputs.push_back(input);
  }
  std::string log = ServerLog([&] {
    for (const std::string& input : inputs) {
      std::string resp = Exchange(port_, input, /*shut_wr=*/true);
      EXPECT_EQ(resp.find("HTTP/"), std::string::npos)
          << ::testing::PrintToString(input);
    }
  });
  EXPECT_NE(log.find("(error \"EOF\""), std::string::npos) << log;
  EXPECT_NE(log.find("tls: unsupported SSLv2 handshake received"),
            std::string::npos)
      << log;
  ExpectServing();
}

TEST_F(HttpsServerTest, StalledHandshakeTimesOutAndStopCloses) {
  HttpServerOptions options;
  options.io_timeout_ms = 200;
  StartHttps(options);
  const std::string hello = ClientHello();
  // Half a ClientHello and then silence: closed once io_timeout_ms passes
  // (the client's own receive timeout is 5 s).
  int fd = RawConnect(port_);
  ASSERT_GE(fd, 0);
  RawSendAll(fd, hello.substr(0, hello.size() / 2));
  bool eof = false;
  std::string log = ServerLog([&] { ReadAll(fd, &eof); });
  EXPECT_TRUE(eof);
  close(fd);
  EXPECT_NE(log.find("(error \"i/o timeout\""), std::string::npos) << log;
  ExpectServing();
  // Stop() with a handshake in progress.
  ExpectStopCloses(server_.get(), port_, hello.substr(0, 20));
}

class HttpsClientCertTest : public HttpsServerTest {
 protected:
  void SetUp() override {
    HttpsServerTest::SetUp();
    info_.trusted_ca_file = pki_->ca_file();
    info_.client_cert_auth = true;
  }

  // The client is refused: no HTTP response, and the server logs
  // `error` for it.
  void ExpectRefused(const testing::CertPaths& cert, const std::string& error) {
    TlsResult r;
    std::string log = ServerLog([&] {
      r = TlsExchange(port_, pki_->ca_file(), cert.cert_file, cert.key_file);
    });
    EXPECT_EQ(r.response, "");
    EXPECT_NE(log.find("rejected connection from \"127.0.0.1:"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find(absl::StrCat("(error \"", error, "\"")),
              std::string::npos)
        << log;
  }
};

TEST_F(HttpsClientCertTest, ClientCertificateRequiredAndVerified) {
  StartHttps();
  ExpectServing();
  ExpectRefused(testing::CertPaths(),
                "tls: client didn't provide a certificate");
  absl::StatusOr<testing::TestPki> other =
      testing::TestPki::Create(dir_, "other-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<testing::CertPaths> stranger =
      other->Issue(testing::LeafSpec::Named("stranger", "client"));
  ASSERT_TRUE(stranger.ok()) << stranger.status();
  ExpectRefused(*stranger,
                "tls: failed to verify client's certificate: x509: "
                "certificate signed by unknown authority");
  ExpectRefused(Issue(testing::LeafSpec::Expired("old", "client")),
                "tls: failed to verify client's certificate: x509: "
                "certificate has expired or is not yet valid");
  ExpectServing();
}

TEST_F(HttpsClientCertTest, CheckPeerCertificateRunsAfterHandshake) {
  testing::CertPaths revoked =
      Issue(testing::LeafSpec::Named("revoked", "client"));
  absl::StatusOr<std::string> crl = pki_->WriteCrl({revoked});
  ASSERT_TRUE(crl.ok()) << crl.status();
  info_.crl_file = *crl;
  info_.allowed_cn = "client";
  StartHttps();
  ExpectServing();
  ExpectRefused(revoked, absl::StrCat("transport: certificate serial ",
                                      revoked.serial_hex, " revoked"));
  ExpectRefused(Issue(testing::LeafSpec::Named("nobody", "nobody")),
                "client certificate authentication failed");
  ExpectServing();
}

TEST_F(HttpsServerTest, RotatedCertificateServesNewConnections) {
  StartHttps();
  EXPECT_EQ(TlsExchange(port_, pki_->ca_file()).server_cn, "server-1");
  testing::CertPaths next = Issue(testing::LeafSpec::Named("next", "server-2"));
  // Only the certificate replaced: it does not match the key, so the
  // server keeps the old pair (and says so once).
  CopyInPlace(next.cert_file, info_.cert_file);
  TlsResult r;
  std::string log = ServerLog([&] { r = TlsExchange(port_, pki_->ca_file()); });
  EXPECT_EQ(r.server_cn, "server-1");
  EXPECT_EQ(StatusOf(r.response), 200);
  EXPECT_NE(log.find("keep the certificate loaded before"), std::string::npos)
      << log;
  // With its key too, the next connection gets the new certificate.
  CopyInPlace(next.key_file, info_.key_file);
  r = TlsExchange(port_, pki_->ca_file());
  EXPECT_EQ(r.server_cn, "server-2");
  EXPECT_EQ(StatusOf(r.response), 200);
  // Files replaced by rename, as most rotation tools do.
  testing::CertPaths third =
      Issue(testing::LeafSpec::Named("server", "server-3"));
  ASSERT_EQ(third.cert_file, info_.cert_file);
  EXPECT_EQ(TlsExchange(port_, pki_->ca_file()).server_cn, "server-3");
}

TEST_F(HttpsServerTest, StartTlsErrors) {
  HttpServer server;
  TlsInfo info = info_;
  info.key_file = "";
  EXPECT_EQ(server.StartTls("127.0.0.1", 0, info).status().code(),
            absl::StatusCode::kInvalidArgument);
  info.key_file = dir_ + "/missing.key";
  absl::Status st = server.StartTls("127.0.0.1", 0, info).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("missing.key"), std::string::npos) << st;
  info.key_file = client_cert_.key_file;  // another certificate's key
  st = server.StartTls("127.0.0.1", 0, info).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("does not match"), std::string::npos) << st;
  info = info_;
  info.trusted_ca_file = server_cert_.key_file;  // not a certificate
  st = server.StartTls("127.0.0.1", 0, info).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  // Failed starts leave it startable.
  ASSERT_TRUE(server.StartTls("127.0.0.1", 0, info_).ok());
  EXPECT_EQ(server.StartTls("127.0.0.1", 0, info_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace synod::common
