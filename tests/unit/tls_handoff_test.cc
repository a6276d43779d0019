// The https client port's routing of gRPC and HTTPS/1 (common/
// tls_client_hello.h, HttpServerOptions::tls_handoff), the relay that
// passes gRPC's connections on (common/tcp_relay.h), and HttpServer's
// Listen()/Serve() split.
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/http_server.h"
#include "common/tcp_relay.h"
#include "common/tls.h"
#include "common/tls_client_hello.h"
#include "gtest/gtest.h"
#include "tests/support/raw_http_client.h"
#include "tests/support/tls_client_hello.h"
#include "tests/support/test_certs.h"

namespace synod::common {
namespace {

using synod::testing::RawConnect;
using synod::testing::RawReadUntil;
using synod::testing::RawSendAll;
using synod::testing::AlpnWire;
using synod::testing::ClientHello;


TEST(ClientHelloTest, GrpcClientsAreH2OnlyOthersAreNot) {
  EXPECT_EQ(ClassifyClientHello(ClientHello({"h2"})),
            ClientHelloRoute::kHttp2Only);
  // gRPC C core offers these two.
  EXPECT_EQ(ClassifyClientHello(ClientHello({"grpc-exp", "h2"})),
            ClientHelloRoute::kHttp2Only);
  // curl, browsers, Go's net/http.
  EXPECT_EQ(ClassifyClientHello(ClientHello({"h2", "http/1.1"})),
            ClientHelloRoute::kOther);
  EXPECT_EQ(ClassifyClientHello(ClientHello({"http/1.1"})),
            ClientHelloRoute::kOther);
  EXPECT_EQ(ClassifyClientHello(ClientHello({})), ClientHelloRoute::kOther);
  EXPECT_EQ(ClassifyClientHello(ClientHello({"h2c"})), ClientHelloRoute::kOther);
}

TEST(ClientHelloTest, EveryPrefixWaitsForMore) {
  const std::string hello = ClientHello({"h2"});
  ASSERT_GT(hello.size(), 5u);
  for (size_t n = 0; n < hello.size(); ++n) {
    EXPECT_EQ(ClassifyClientHello(hello.substr(0, n)),
              ClientHelloRoute::kNeedMore)
        << n;
  }
}

TEST(ClientHelloTest, NotTlsOrMalformedIsOther) {
  EXPECT_EQ(ClassifyClientHello("GET / HTTP/1.1\r\n"), ClientHelloRoute::kOther);
  EXPECT_EQ(ClassifyClientHello("PRI * HTTP/2.0\r\n"), ClientHelloRoute::kOther);
  EXPECT_EQ(ClassifyClientHello(std::string("\x16\x02", 2)),
            ClientHelloRoute::kOther);
  // A record of length 0, and one longer than 2^14.
  EXPECT_EQ(ClassifyClientHello(std::string("\x16\x03\x01\x00\x00", 5)),
            ClientHelloRoute::kOther);
  EXPECT_EQ(ClassifyClientHello(std::string("\x16\x03\x01\x40\x01", 5)),
            ClientHelloRoute::kOther);
  // An h2-only hello whose inner lengths are corrupted, one byte at a time:
  // never a crash or an out-of-bounds read (ASan builds check), and never
  // "wait" once the whole record is there.
  const std::string hello = ClientHello({"h2"});
  for (size_t i = 5; i < hello.size(); ++i) {
    std::string bad = hello;
    bad[i] = static_cast<char>(bad[i] ^ 0xff);
    EXPECT_NE(ClassifyClientHello(bad), ClientHelloRoute::kNeedMore) << i;
  }
  std::mt19937 rng(7);
  std::printf("seed 7\n");
  for (int round = 0; round < 2000; ++round) {
    std::string junk(rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    if (!junk.empty()) junk[0] = '\x16';
    if (junk.size() > 1) junk[1] = '\x03';
    ClassifyClientHello(junk);
  }
}

// A socket listening on 127.0.0.1 at a free port; sets *port.
int LoopbackListener(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// Accepts one connection on a loopback port and echoes what it reads until
// EOF, then closes: the relay's target.
class EchoServer {
 public:
  EchoServer() {
    listen_fd_ = LoopbackListener(&port_);
    thread_ = std::thread([this] {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      char buf[65536];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) {
        ssize_t off = 0;
        while (off < n) {
          ssize_t w = write(fd, buf + off, n - off);
          if (w <= 0) break;
          off += w;
        }
        echoed_ += n;
      }
      saw_eof_ = n == 0;
      close(fd);
    });
  }
  ~EchoServer() {
    shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    close(listen_fd_);
  }
  int port() const { return port_; }
  bool saw_eof() const { return saw_eof_; }
  size_t echoed() const { return echoed_; }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<size_t> echoed_{0};
  std::atomic<bool> saw_eof_{false};
  std::thread thread_;
};

// A connected pair of TCP sockets on loopback: {client end, accepted end}.
std::pair<int, int> TcpPair() {
  int port = 0;
  int l = LoopbackListener(&port);
  int c = RawConnect(port, 10);
  int s = accept(l, nullptr, nullptr);
  close(l);
  return {c, s};
}

TEST(TcpRelayTest, RelaysBothWaysWithBackPressureAndHalfClose) {
  signal(SIGPIPE, SIG_IGN);
  EchoServer echo;
  TcpRelay relay;
  ASSERT_TRUE(relay.Start("127.0.0.1", echo.port()).ok());
  auto [client, accepted] = TcpPair();
  relay.Relay(accepted);
  // 8 MiB, written by one thread while this one reads: more than the
  // relay's high-water mark in flight, so reading pauses and resumes.
  const size_t total = 8 << 20;
  std::string data(total, '\0');
  std::mt19937 rng(11);
  for (char& c : data) c = static_cast<char>(rng());
  std::thread writer([&, fd = client] {
    RawSendAll(fd, data);
    shutdown(fd, SHUT_WR);  // the half-close travels to the echo server
  });
  std::string got;
  // The echo server closes after our EOF reaches it; its close comes back
  // as EOF here, once every byte is echoed.
  EXPECT_TRUE(RawReadUntil(client, "", &got));
  writer.join();
  EXPECT_EQ(got.size(), total);
  EXPECT_TRUE(got == data);
  EXPECT_TRUE(echo.saw_eof());
  close(client);
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (relay.open_connections() != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));  // polling a gauge, bounded
  }
  EXPECT_EQ(relay.open_connections(), 0u);
}

TEST(TcpRelayTest, UnreachableTargetClosesTheClientAndStopCloses) {
  // A port with nothing listening: listen on one, then close it.
  int closed_port = 0;
  close(LoopbackListener(&closed_port));
  TcpRelay relay;
  EXPECT_EQ(relay.Start("not an ip", 1).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(relay.Start("127.0.0.1", closed_port).ok());
  EXPECT_EQ(relay.Start("127.0.0.1", 1).code(),
            absl::StatusCode::kFailedPrecondition);
  auto [client, accepted] = TcpPair();
  relay.Relay(accepted);
  std::string got;
  EXPECT_TRUE(RawReadUntil(client, "", &got));  // closed: EOF, not a timeout
  close(client);
  // A connection still open when the relay stops is closed by Stop().
  EchoServer echo;
  TcpRelay relay2;
  ASSERT_TRUE(relay2.Start("127.0.0.1", echo.port()).ok());
  auto [c2, a2] = TcpPair();
  relay2.Relay(a2);
  RawSendAll(c2, "ping");
  got.clear();
  RawReadUntil(c2, "ping", &got);
  EXPECT_EQ(got, "ping");
  relay2.Stop();
  got.clear();
  EXPECT_TRUE(RawReadUntil(c2, "", &got));
  close(c2);
  // After Stop, a relayed socket is closed at once.
  auto [c3, a3] = TcpPair();
  relay2.Relay(a3);
  EXPECT_TRUE(RawReadUntil(c3, "", &got));
  close(c3);
}

class TlsHandoffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    std::string tmpl = ::testing::TempDir() + "synod_tls_handoff_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto pki = synod::testing::TestPki::Create(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_.emplace(*std::move(pki));
    auto cert = pki_->Issue(synod::testing::LeafSpec::Named("server", "server-1"));
    ASSERT_TRUE(cert.ok()) << cert.status();
    info_.cert_file = cert->cert_file;
    info_.key_file = cert->key_file;
  }
  void TearDown() override {
    server_.reset();
    absl::MutexLock l(&mu_);
    for (int fd : handed_) close(fd);
    std::filesystem::remove_all(dir_);
  }

  // An https server on /metrics whose hand-off keeps the sockets.
  void Listen() {
    HttpServerOptions options;
    options.tls_handoff = [this](int fd) {
      absl::MutexLock l(&mu_);
      handed_.push_back(fd);
    };
    server_ = std::make_unique<HttpServer>(options);
    server_->Handle("/metrics", [](const HttpRequest&) {
      return HttpResponse{200, "text/plain", "synod_up 1\n"};
    });
    absl::StatusOr<int> port = server_->ListenTls("127.0.0.1", 0, info_);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
  }

  // A TLS client offering `alpn` that GETs /metrics (on `fd`, a connected
  // socket it closes, or a new connection); the whole response.
  std::string Get(const std::vector<std::string>& alpn, int fd = -1) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx, pki_->ca_file().c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (fd < 0) fd = RawConnect(port_, 10);
    SSL* ssl = SSL_new(ctx);
    if (!alpn.empty()) {
      std::string wire = AlpnWire(alpn);
      SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()),
                          static_cast<unsigned>(wire.size()));
    }
    SSL_set_fd(ssl, fd);
    std::string response;
    if (SSL_connect(ssl) == 1) {
      const unsigned char* selected = nullptr;
      unsigned selected_len = 0;
      SSL_get0_alpn_selected(ssl, &selected, &selected_len);
      EXPECT_EQ(selected_len, 0u) << "the HTTPS/1 side selects no ALPN";
      std::string req = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
      SSL_write(ssl, req.data(), static_cast<int>(req.size()));
      char buf[4096];
      int n;
      while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) response.append(buf, n);
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return response;
  }

  size_t handed() {
    absl::MutexLock l(&mu_);
    return handed_.size();
  }

  std::string dir_;
  std::optional<synod::testing::TestPki> pki_;
  TlsInfo info_;
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
  absl::Mutex mu_;
  std::vector<int> handed_ ABSL_GUARDED_BY(mu_);
};

TEST_F(TlsHandoffTest, GrpcHelloIsHandedOffUnreadOthersAreServed) {
  Listen();
  ASSERT_TRUE(server_->Serve().ok());
  // curl's offer, and no ALPN: served here as HTTPS/1.1.
  EXPECT_NE(Get({"h2", "http/1.1"}).find("synod_up 1"), std::string::npos);
  EXPECT_NE(Get({}).find("synod_up 1"), std::string::npos);
  EXPECT_EQ(handed(), 0u);
  // A gRPC client's hello, sent in two pieces: handed off with every byte
  // still to be read.
  const std::string hello = ClientHello({"h2"});
  int fd = RawConnect(port_, 10);
  RawSendAll(fd, hello.substr(0, 7));
  RawSendAll(fd, hello.substr(7));
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (handed() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));  // polling the hand-off, bounded
  }
  ASSERT_EQ(handed(), 1u);
  int got_fd;
  {
    absl::MutexLock l(&mu_);
    got_fd = handed_[0];
  }
  std::string got(hello.size(), '\0');
  size_t off = 0;
  pollfd p{got_fd, POLLIN, 0};
  while (off < got.size() && poll(&p, 1, 5000) == 1) {
    ssize_t n = recv(got_fd, got.data() + off, got.size() - off, 0);
    if (n <= 0) break;
    off += n;
  }
  EXPECT_EQ(off, hello.size());
  EXPECT_TRUE(got == hello);
  close(fd);
}

TEST_F(TlsHandoffTest, ConnectionsWaitForServe) {
  Listen();
  // Connected before Serve() (the kernel completes the TCP handshake into
  // the listen backlog): the connection waits, then is served.
  int fd = RawConnect(port_, 10);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(server_->Serve().ok());
  std::string response = Get({"http/1.1"}, fd);
  EXPECT_NE(response.find("synod_up 1"), std::string::npos);
  EXPECT_EQ(server_->Serve().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(TlsHandoffTest, StopWithoutServeAndOptionChecks) {
  Listen();
  server_->Stop();  // listening only: nothing to join, nothing left open
  EXPECT_EQ(server_->Serve().code(), absl::StatusCode::kFailedPrecondition);
  HttpServerOptions options;
  options.tls_handoff = [](int fd) { close(fd); };
  HttpServer plain(options);
  EXPECT_EQ(plain.Listen("127.0.0.1", 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace synod::common
