#include "common/http_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <map>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/tls.h"
#include "common/tls_stream.h"

namespace synod::common {
namespace {

constexpr int kListenBacklog = 128;
constexpr int kMaxLingerMs = 2000;
// After responding, at most this much unread client data is drained before
// the connection is closed outright.
constexpr size_t kMaxDrainBytes = 1 << 20;
constexpr size_t kReadChunkBytes = 4096;
// The HTTP/2 client connection preface (RFC 9113 §3.4).
constexpr absl::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

// RFC 9110 token characters.
bool IsTchar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTchar);
}

// Parses "METHOD SP target SP HTTP/x.y". Returns 0 and fills `req` and
// `minor` on success, else the status to answer with (400 or 505).
int ParseRequestLine(absl::string_view line, HttpRequest* req, int* minor) {
  size_t sp1 = line.find(' ');
  if (sp1 == absl::string_view::npos) return 400;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == absl::string_view::npos) return 400;
  absl::string_view method = line.substr(0, sp1);
  absl::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  absl::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method) || target.empty()) return 400;
  for (char c : target) {
    if (c <= 0x20 || c >= 0x7f) return 400;  // CTL, space, non-ASCII
  }
  if (version.size() != 8 || !absl::StartsWith(version, "HTTP/") ||
      !absl::ascii_isdigit(version[5]) || version[6] != '.' ||
      !absl::ascii_isdigit(version[7])) {
    return 400;
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    return 505;
  }
  *minor = version[7] - '0';

  // Absolute form (RFC 9112 §3.2.2): keep only the path and query.
  for (absl::string_view scheme : {"http://", "https://"}) {
    if (absl::StartsWithIgnoreCase(target, scheme)) {
      absl::string_view rest = target.substr(scheme.size());
      size_t start = rest.find_first_of("/?");
      std::string origin = start == absl::string_view::npos
                               ? "/"
                               : std::string(rest.substr(start));
      if (origin[0] == '?') origin.insert(0, "/");
      req->method = std::string(method);
      size_t q = origin.find('?');
      req->path = origin.substr(0, q);
      req->query = q == std::string::npos ? "" : origin.substr(q + 1);
      return 0;
    }
  }
  if (target[0] != '/') return 400;
  size_t q = target.find('?');
  req->method = std::string(method);
  req->path = std::string(target.substr(0, q));
  req->query =
      q == absl::string_view::npos ? "" : std::string(target.substr(q + 1));
  return 0;
}

// Checks the header lines (between the request line and the empty line).
// Returns 0 if they are well formed, else 400.
int CheckHeaders(absl::string_view block, int minor) {
  int hosts = 0;
  while (!block.empty()) {
    size_t nl = block.find('\n');
    absl::string_view line = block.substr(0, nl);
    block = nl == absl::string_view::npos ? "" : block.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t colon = line.find(':');
    // Also rejects obsolete line folding: a line starting with SP or HTAB.
    if (colon == absl::string_view::npos || !IsToken(line.substr(0, colon))) {
      return 400;
    }
    for (char c : line.substr(colon + 1)) {
      unsigned char u = static_cast<unsigned char>(c);
      if ((u < 0x20 && u != '\t') || u == 0x7f) return 400;
    }
    if (absl::EqualsIgnoreCase(line.substr(0, colon), "host")) ++hosts;
  }
  // RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host.
  if (hosts > 1 || (minor == 1 && hosts == 0)) return 400;
  return 0;
}

absl::Status UvError(int rc, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", uv_strerror(rc));
  switch (rc) {
    case UV_EADDRINUSE:
      return absl::UnavailableError(msg);
    case UV_EACCES:
    case UV_EPERM:
      return absl::PermissionDeniedError(msg);
    case UV_EADDRNOTAVAIL:
    case UV_EINVAL:
    case UV_EAFNOSUPPORT:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace

class HttpServer::Impl {
 public:
  explicit Impl(HttpServerOptions options) : options_(options) {}

  void Handle(std::string path, HttpHandler handler) {
    absl::MutexLock lock(&handlers_mu_);
    handlers_[std::move(path)] = std::move(handler);
  }

  // `tls` null serves http.
  absl::StatusOr<int> Start(const std::string& host, int port,
                            std::unique_ptr<TlsServerContext> tls);
  void Stop();
  int port() const { return port_.load(std::memory_order_acquire); }
  const HttpServerOptions& options() const { return options_; }

 private:
  // One client connection. Lives from accept until both handles are closed;
  // touched only on the loop thread.
  struct Conn {
    enum class State { kReading, kWriting, kDraining, kClosing };
    Impl* server = nullptr;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    State state = State::kReading;
    int open_handles = 0;
    int writes_pending = 0;  // WriteReqs not yet completed
    std::string in;          // request bytes received so far
    size_t line_end = 0;     // index after the request line's '\n', or 0
    size_t scanned = 0;      // header-end search resumes here
    int minor = 1;           // HTTP/1.<minor>
    bool head = false;       // request method is HEAD
    bool peer_eof = false;   // the client shut down its side
    size_t drained = 0;      // bytes discarded after responding
    // https only: the connection's TLS state (null for http), whether the
    // client's certificate was checked after the handshake, whether the
    // client sent anything, and its address for log lines.
    std::unique_ptr<TlsServerStream> tls;
    bool tls_checked = false;
    bool received = false;
    std::string remote;
    // HTTP/2 hand-off only: a dup of the socket, polled (not read) until
    // its first bytes say HTTP/2 or not; -1 once handed off or closed.
    uv_poll_t poll;
    bool poll_open = false;
    int peek_fd = -1;
    char read_buf[kReadChunkBytes];
  };

  // One uv_write of `data` (which it keeps alive until the write completes).
  struct WriteReq {
    uv_write_t req;
    Conn* conn;
    std::string data;
  };

  // libuv callbacks.
  static void OnConnection(uv_stream_t* listener, int status);
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  static void OnShutdown(uv_shutdown_t* req, int status);
  static void OnTimer(uv_timer_t* timer);
  static void OnStopAsync(uv_async_t* async);
  static void OnConnHandleClosed(uv_handle_t* handle);
  static void OnPeekable(uv_poll_t* poll, int status, int events);

  // HTTP/2 hand-off: polls a dup of the socket until MSG_PEEK shows whether
  // it starts with the HTTP/2 preface, then EndPeek()s.
  void StartPeek(Conn* conn);
  // Stops peeking; hands the socket to options_.http2_handoff, or starts
  // reading it as HTTP/1.x.
  void EndPeek(Conn* conn, bool http2);

  // Decrypts what OnRead got and passes the plaintext on to Process().
  void ReceiveTls(Conn* conn, size_t n);
  // The client ended its side (EOF, or TLS close_notify).
  void OnPeerEof(Conn* conn);
  // Logs etcd's "rejected connection" line and closes, after sending the
  // TLS alert or close_notify, if any.
  void RejectTls(Conn* conn, absl::string_view error);
  // Consumes conn->in: answers once the request is complete or invalid.
  void Process(Conn* conn);
  void Dispatch(Conn* conn, const HttpRequest& req);
  void RespondError(Conn* conn, int status);
  void Respond(Conn* conn, int status, const std::string& content_type,
               const std::string& body, bool allow_header);
  // Starts the final write (a response, or a TLS alert; may be empty): once
  // every write has completed, LingeringClose().
  void SendFinal(Conn* conn, std::string data);
  // Shuts down the sending side and closes after draining the client.
  void LingeringClose(Conn* conn);
  // Writes `data` to the socket; several writes may be in flight.
  void SendBytes(Conn* conn, std::string data);
  void CloseConn(Conn* conn);

  const HttpServerOptions options_;

  absl::Mutex handlers_mu_;
  std::map<std::string, HttpHandler> handlers_ ABSL_GUARDED_BY(handlers_mu_);

  // Serialises Start() and Stop().
  absl::Mutex lifecycle_mu_;
  bool running_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  bool started_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  std::thread thread_ ABSL_GUARDED_BY(lifecycle_mu_);
  std::atomic<int> port_{0};

  // Owned by the loop thread while it runs; by Start()/Stop() before it
  // starts and after it is joined.
  uv_loop_t loop_;
  uv_tcp_t listener_;
  uv_async_t stop_async_;
  std::unordered_set<Conn*> conns_;
  std::unique_ptr<TlsServerContext> tls_;  // null for http
};

absl::StatusOr<int> HttpServer::Impl::Start(
    const std::string& host, int port, std::unique_ptr<TlsServerContext> tls) {
  absl::MutexLock lock(&lifecycle_mu_);
  if (started_) {
    return absl::FailedPreconditionError("HttpServer: already started");
  }
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("HttpServer: port ", port, " out of range 0..65535"));
  }
  std::string ip = host.empty()          ? "0.0.0.0"
                   : host == "localhost" ? "127.0.0.1"
                                         : host;
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') {
    ip = ip.substr(1, ip.size() - 2);
  }
  sockaddr_storage addr;
  std::memset(&addr, 0, sizeof(addr));
  if (uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) !=
          0 &&
      uv_ip6_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) !=
          0) {
    return absl::InvalidArgumentError(
        absl::StrCat("HttpServer: bad host \"", host, "\""));
  }
  std::string where = absl::StrCat("HttpServer: listen on ", host, ":", port);

  int rc = uv_loop_init(&loop_);
  if (rc != 0) return UvError(rc, where);
  uv_tcp_init(&loop_, &listener_);
  listener_.data = this;
  rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), kListenBacklog,
                   &OnConnection);
  sockaddr_storage bound;
  int len = sizeof(bound);
  if (rc == 0) {
    rc = uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound),
                            &len);
  }
  if (rc == 0) rc = uv_async_init(&loop_, &stop_async_, &OnStopAsync);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return UvError(rc, where);
  }
  stop_async_.data = this;
  int bound_port =
      bound.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
          : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  port_.store(bound_port, std::memory_order_release);
  started_ = true;
  running_ = true;
  tls_ = std::move(tls);
  thread_ = std::thread([this] {
    // libuv writes with writev(), so a write to a reset connection raises
    // SIGPIPE; keep it blocked (pending, harmless) on this thread only rather
    // than changing the process-wide disposition.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
  return bound_port;
}

void HttpServer::Impl::Stop() {
  absl::MutexLock lock(&lifecycle_mu_);
  if (!running_) return;
  running_ = false;
  uv_async_send(&stop_async_);
  thread_.join();
  // uv_run returned, so every handle is closed and every Conn deleted.
  if (uv_loop_close(&loop_) == UV_EBUSY) {
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
}

void HttpServer::Impl::OnStopAsync(uv_async_t* async) {
  Impl* self = static_cast<Impl*>(async->data);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->listener_), nullptr);
  std::vector<Conn*> conns(self->conns_.begin(), self->conns_.end());
  for (Conn* conn : conns) self->CloseConn(conn);
  uv_close(reinterpret_cast<uv_handle_t*>(async), nullptr);
}

void HttpServer::Impl::OnConnection(uv_stream_t* listener, int status) {
  Impl* self = static_cast<Impl*>(listener->data);
  if (status < 0) return;
  Conn* conn = new Conn();
  conn->server = self;
  uv_tcp_init(&self->loop_, &conn->tcp);
  uv_timer_init(&self->loop_, &conn->timer);
  conn->tcp.data = conn;
  conn->timer.data = conn;
  conn->open_handles = 2;
  self->conns_.insert(conn);
  // Accept even when over the limit, so the pending socket is consumed.
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&conn->tcp)) != 0 ||
      self->conns_.size() >
          static_cast<size_t>(self->options_.max_connections)) {
    self->CloseConn(conn);
    return;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  if (self->tls_ != nullptr) {
    sockaddr_storage peer;
    int len = sizeof(peer);
    char ip[INET6_ADDRSTRLEN] = "";
    if (uv_tcp_getpeername(&conn->tcp, reinterpret_cast<sockaddr*>(&peer),
                           &len) == 0) {
      if (peer.ss_family == AF_INET6) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(&peer);
        uv_ip6_name(a6, ip, sizeof(ip));
        conn->remote = absl::StrCat("[", ip, "]:", ntohs(a6->sin6_port));
      } else {
        auto* a4 = reinterpret_cast<sockaddr_in*>(&peer);
        uv_ip4_name(a4, ip, sizeof(ip));
        conn->remote = absl::StrCat(ip, ":", ntohs(a4->sin_port));
      }
    }
    conn->tls = self->tls_->NewStream();
    if (conn->tls == nullptr) {
      self->CloseConn(conn);
      return;
    }
  }
  uv_timer_start(&conn->timer, &OnTimer, self->options_.io_timeout_ms, 0);
  if (self->options_.http2_handoff && self->tls_ == nullptr) {
    self->StartPeek(conn);
    return;
  }
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->tcp), &OnAlloc,
                    &OnRead) != 0) {
    self->CloseConn(conn);
  }
}

void HttpServer::Impl::StartPeek(Conn* conn) {
  // The peek is polled on a dup, never on the tcp handle's own fd: libuv's
  // epoll set must never hold the socket a hand-off gives away (a stale
  // registration would keep reporting it), and the tcp handle has not
  // started reading, so its fd was never registered.
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&conn->tcp), &fd) != 0 ||
      (conn->peek_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
    CloseConn(conn);
    return;
  }
  if (uv_poll_init_socket(&loop_, &conn->poll, conn->peek_fd) != 0) {
    close(conn->peek_fd);
    conn->peek_fd = -1;
    CloseConn(conn);
    return;
  }
  conn->poll.data = conn;
  conn->poll_open = true;
  ++conn->open_handles;
  if (uv_poll_start(&conn->poll, UV_READABLE | UV_DISCONNECT, &OnPeekable) !=
      0) {
    CloseConn(conn);
  }
}

void HttpServer::Impl::OnPeekable(uv_poll_t* poll, int status, int events) {
  Conn* conn = static_cast<Conn*>(poll->data);
  Impl* self = conn->server;
  if (conn->state == Conn::State::kClosing) return;
  if (status < 0) {
    self->CloseConn(conn);
    return;
  }
  char buf[kHttp2Preface.size()];
  ssize_t n = recv(conn->peek_fd, buf, sizeof(buf), MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return;
  }
  if (n <= 0) {  // an error, or EOF before any byte
    self->CloseConn(conn);
    return;
  }
  absl::string_view got(buf, static_cast<size_t>(n));
  const bool prefix = absl::StartsWith(kHttp2Preface, got);
  if (prefix && got.size() < kHttp2Preface.size() &&
      (events & UV_DISCONNECT) == 0) {
    // Wait for more without spinning: epoll reports the socket readable
    // again only once another byte (or EOF) is there.
    int lowat = static_cast<int>(got.size()) + 1;
    if (setsockopt(conn->peek_fd, SOL_SOCKET, SO_RCVLOWAT, &lowat,
                   sizeof(lowat)) != 0) {
      self->CloseConn(conn);
    }
    return;
  }
  self->EndPeek(conn, prefix && got.size() == kHttp2Preface.size());
}

void HttpServer::Impl::EndPeek(Conn* conn, bool http2) {
  int one = 1;
  setsockopt(conn->peek_fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
  // Closing the poll handle takes the dup out of libuv's epoll set at once;
  // its close callback closes the dup unless it was handed off.
  conn->poll_open = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&conn->poll), &OnConnHandleClosed);
  if (!http2) {
    if (uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->tcp), &OnAlloc,
                      &OnRead) != 0) {
      CloseConn(conn);
    }
    return;
  }
  const int fd = conn->peek_fd;
  conn->peek_fd = -1;
  CloseConn(conn);  // closes the tcp handle's own fd; the dup keeps the socket
  options_.http2_handoff(fd);
}

void HttpServer::Impl::OnAlloc(uv_handle_t* handle, size_t /*suggested*/,
                               uv_buf_t* buf) {
  Conn* conn = static_cast<Conn*>(handle->data);
  *buf = uv_buf_init(conn->read_buf, sizeof(conn->read_buf));
}

void HttpServer::Impl::OnRead(uv_stream_t* stream, ssize_t nread,
                              const uv_buf_t* /*buf*/) {
  Conn* conn = static_cast<Conn*>(stream->data);
  Impl* self = conn->server;
  if (nread == 0 || conn->state == Conn::State::kClosing) return;
  if (nread < 0) {
    if (nread != UV_EOF) {
      if (conn->tls != nullptr && !conn->tls->handshake_done() &&
          conn->state == Conn::State::kReading) {
        SYNOD_LOG(WARNING) << conn->tls->RejectionLine(
            conn->remote, absl::StrCat("read: ", uv_strerror(nread)));
      }
      self->CloseConn(conn);
      return;
    }
    self->OnPeerEof(conn);
    return;
  }
  conn->received = true;
  if (conn->state != Conn::State::kReading) {
    conn->drained += nread;
    if (conn->drained > kMaxDrainBytes) self->CloseConn(conn);
    return;
  }
  if (conn->tls != nullptr) {
    self->ReceiveTls(conn, nread);
    return;
  }
  conn->in.append(conn->read_buf, nread);
  self->Process(conn);
}

void HttpServer::Impl::OnPeerEof(Conn* conn) {
  conn->peer_eof = true;
  switch (conn->state) {
    case Conn::State::kReading:
      if (conn->tls != nullptr && !conn->tls->handshake_done()) {
        // Go's handshake reads EOF; etcd logs it like any other failure.
        RejectTls(conn, "EOF");
      } else if (conn->in.empty()) {
        // The client sent nothing at all.
        CloseConn(conn);
      } else {
        // The client gave up mid-request.
        RespondError(conn, 400);
      }
      break;
    case Conn::State::kWriting:
      break;  // OnWrite closes once the response is out.
    default:
      CloseConn(conn);
  }
}

void HttpServer::Impl::ReceiveTls(Conn* conn, size_t n) {
  TlsServerStream* tls = conn->tls.get();
  std::string plain;
  TlsServerStream::Progress progress =
      tls->Receive(absl::string_view(conn->read_buf, n), &plain);
  if (progress == TlsServerStream::Progress::kFailed) {
    RejectTls(conn, tls->error());
    return;
  }
  if (!conn->tls_checked && tls->handshake_done()) {
    conn->tls_checked = true;
    // etcd's listener checks CRL, allowed CN and hostname once the chain is
    // verified (listener_tls.go), before the connection serves anything.
    if (tls_->info().RequiresClientCert()) {
      absl::Status st = CheckPeerCertificate(tls_->info(), tls->PeerChainPem());
      if (!st.ok()) {
        RejectTls(conn, st.message());
        return;
      }
    }
  }
  SendBytes(conn, tls->TakeOutput());
  if (conn->state == Conn::State::kClosing) return;
  if (!plain.empty()) {
    conn->in += plain;
    Process(conn);
  }
  if (progress == TlsServerStream::Progress::kPeerClosed &&
      conn->state != Conn::State::kClosing) {
    OnPeerEof(conn);
  }
}

void HttpServer::Impl::RejectTls(Conn* conn, absl::string_view error) {
  SYNOD_LOG(WARNING) << conn->tls->RejectionLine(conn->remote, error);
  conn->tls->Close();  // close_notify once the handshake completed
  SendFinal(conn, conn->tls->TakeOutput());
}

void HttpServer::Impl::Process(Conn* conn) {
  const size_t limit = options_.max_request_bytes;
  if (conn->line_end == 0) {
    // RFC 9112 §2.2: ignore empty lines before the request line.
    size_t skip = conn->in.find_first_not_of("\r\n");
    if (skip == std::string::npos) skip = conn->in.size();
    if (skip > 0 && skip <= 4) {
      conn->in.erase(0, skip);
    } else if (skip > 4) {
      RespondError(conn, 400);
      return;
    }
    size_t nl = conn->in.find('\n');
    if (nl == std::string::npos) {
      if (conn->in.size() > limit) RespondError(conn, 431);
      return;
    }
    absl::string_view line(conn->in.data(), nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    HttpRequest req;
    int status = ParseRequestLine(line, &req, &conn->minor);
    if (status != 0) {
      RespondError(conn, status);
      return;
    }
    conn->head = req.method == "HEAD";
    conn->line_end = nl + 1;
    conn->scanned = nl;
  }
  // The headers end at the first empty line ("\n\n" or "\n\r\n").
  size_t end = std::string::npos;
  size_t block_end = 0;
  for (size_t i = conn->scanned; i < conn->in.size(); ++i) {
    if (conn->in[i] != '\n') continue;
    if (i + 1 < conn->in.size() && conn->in[i + 1] == '\n') {
      block_end = i + 1;
      end = i + 2;
      break;
    }
    if (i + 2 < conn->in.size() && conn->in[i + 1] == '\r' &&
        conn->in[i + 2] == '\n') {
      block_end = i + 1;
      end = i + 3;
      break;
    }
  }
  if (end == std::string::npos) {
    if (conn->in.size() > limit) {
      RespondError(conn, 431);
    } else {
      // Resume where an incomplete "\n\r\n" may start.
      conn->scanned = conn->in.size() >= 2 ? conn->in.size() - 2 : 0;
      conn->scanned = std::max(conn->scanned, conn->line_end - 1);
    }
    return;
  }
  if (end > limit) {
    RespondError(conn, 431);
    return;
  }
  absl::string_view headers(conn->in.data() + conn->line_end,
                            block_end - conn->line_end);
  if (!headers.empty() && headers.back() == '\n') headers.remove_suffix(1);
  if (CheckHeaders(headers, conn->minor) != 0) {
    RespondError(conn, 400);
    return;
  }
  HttpRequest req;
  int minor = 1;
  absl::string_view line(conn->in.data(), conn->line_end - 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  ParseRequestLine(line, &req, &minor);  // already validated
  Dispatch(conn, req);
}

void HttpServer::Impl::Dispatch(Conn* conn, const HttpRequest& req) {
  if (req.method != "GET" && req.method != "HEAD") {
    Respond(conn, 405, "text/plain; charset=utf-8", "405 Method Not Allowed\n",
            /*allow_header=*/true);
    return;
  }
  HttpHandler handler;
  {
    absl::MutexLock lock(&handlers_mu_);
    auto it = handlers_.find(req.path);
    if (it != handlers_.end()) handler = it->second;
  }
  if (!handler) {
    RespondError(conn, 404);
    return;
  }
  HttpResponse resp = handler(req);
  bool bad_type = std::any_of(
      resp.content_type.begin(), resp.content_type.end(),
      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
  if (resp.status < 200 || resp.status > 999 || bad_type) {
    RespondError(conn, 500);
    return;
  }
  Respond(conn, resp.status, resp.content_type, resp.body, false);
}

void HttpServer::Impl::RespondError(Conn* conn, int status) {
  Respond(conn, status, "text/plain; charset=utf-8",
          absl::StrCat(status, " ", ReasonPhrase(status), "\n"), false);
}

void HttpServer::Impl::Respond(Conn* conn, int status,
                               const std::string& content_type,
                               const std::string& body, bool allow_header) {
  // 204 and 304 carry neither body nor Content-Length (RFC 9110 §8.6).
  bool no_body = status == 204 || status == 304;
  std::string out =
      absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status), "\r\nDate: ",
                   absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::Now(),
                                    absl::UTCTimeZone()),
                   "\r\nConnection: close\r\n");
  if (!no_body) {
    absl::StrAppend(&out, "Content-Type: ", content_type,
                    "\r\nContent-Length: ", body.size(), "\r\n");
  }
  if (allow_header) out += "Allow: GET, HEAD\r\n";
  out += "\r\n";
  if (!no_body && !conn->head) out += body;
  if (conn->tls != nullptr) {
    // Go's http server closes a TLS connection with close_notify.
    if (!conn->tls->Send(out)) {
      CloseConn(conn);
      return;
    }
    conn->tls->Close();
    out = conn->tls->TakeOutput();
  }
  SendFinal(conn, std::move(out));
}

void HttpServer::Impl::SendFinal(Conn* conn, std::string data) {
  conn->state = Conn::State::kWriting;
  conn->in.clear();
  conn->in.shrink_to_fit();
  uv_timer_start(&conn->timer, &OnTimer, options_.io_timeout_ms, 0);
  SendBytes(conn, std::move(data));
  if (conn->state == Conn::State::kWriting && conn->writes_pending == 0) {
    LingeringClose(conn);  // nothing (left) to write
  }
}

void HttpServer::Impl::SendBytes(Conn* conn, std::string data) {
  if (data.empty() || conn->state == Conn::State::kClosing) return;
  auto* w = new WriteReq{};
  w->conn = conn;
  w->data = std::move(data);
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), w->data.size());
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&conn->tcp), &buf, 1,
               &OnWrite) != 0) {
    delete w;
    CloseConn(conn);
    return;
  }
  ++conn->writes_pending;
}

void HttpServer::Impl::OnWrite(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  Conn* conn = w->conn;
  delete w;
  --conn->writes_pending;
  Impl* self = conn->server;
  // A close cancels pending writes; their callbacks run before the close
  // callback that deletes the Conn.
  if (conn->state == Conn::State::kClosing) return;
  if (status < 0) {
    self->CloseConn(conn);
    return;
  }
  // Handshake messages written while reading need nothing more; the final
  // write's completion is the last one.
  if (conn->state == Conn::State::kWriting && conn->writes_pending == 0) {
    self->LingeringClose(conn);
  }
}

void HttpServer::Impl::LingeringClose(Conn* conn) {
  if (conn->peer_eof) {
    CloseConn(conn);
    return;
  }
  // Send FIN, then read and discard whatever the client is still sending,
  // so that closing with unread data does not reset the connection before
  // the client has read the response.
  conn->state = Conn::State::kDraining;
  conn->shutdown_req.data = conn;
  if (uv_shutdown(&conn->shutdown_req,
                  reinterpret_cast<uv_stream_t*>(&conn->tcp),
                  &OnShutdown) != 0) {
    CloseConn(conn);
    return;
  }
  uv_timer_start(&conn->timer, &OnTimer,
                 std::min(options_.io_timeout_ms, kMaxLingerMs), 0);
}

void HttpServer::Impl::OnShutdown(uv_shutdown_t* req, int status) {
  Conn* conn = static_cast<Conn*>(req->data);
  if (status < 0 && conn->state != Conn::State::kClosing) {
    conn->server->CloseConn(conn);
  }
}

void HttpServer::Impl::OnTimer(uv_timer_t* timer) {
  Conn* conn = static_cast<Conn*>(timer->data);
  Impl* self = conn->server;
  if (conn->state == Conn::State::kReading && !conn->in.empty()) {
    self->RespondError(conn, 408);
  } else if (conn->state == Conn::State::kReading && conn->tls != nullptr &&
             !conn->tls->handshake_done() && conn->received) {
    // A handshake started and not finished within io_timeout_ms (etcd waits
    // forever; Go would call this a read's "i/o timeout").
    self->RejectTls(conn, "i/o timeout");
  } else {
    self->CloseConn(conn);
  }
}

void HttpServer::Impl::CloseConn(Conn* conn) {
  if (conn->state == Conn::State::kClosing) return;
  conn->state = Conn::State::kClosing;
  conns_.erase(conn);
  uv_close(reinterpret_cast<uv_handle_t*>(&conn->tcp), &OnConnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&conn->timer), &OnConnHandleClosed);
  if (conn->poll_open) {
    conn->poll_open = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&conn->poll), &OnConnHandleClosed);
  }
}

void HttpServer::Impl::OnConnHandleClosed(uv_handle_t* handle) {
  Conn* conn = static_cast<Conn*>(handle->data);
  if (handle == reinterpret_cast<uv_handle_t*>(&conn->poll) &&
      conn->peek_fd >= 0) {
    close(conn->peek_fd);  // not handed off
    conn->peek_fd = -1;
  }
  if (--conn->open_handles == 0) delete conn;
}

HttpServer::HttpServer(HttpServerOptions options)
    : impl_(std::make_unique<Impl>(options)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string path, HttpHandler handler) {
  impl_->Handle(std::move(path), std::move(handler));
}

absl::StatusOr<int> HttpServer::Start(const std::string& host, int port) {
  return impl_->Start(host, port, nullptr);
}

absl::StatusOr<int> HttpServer::StartTls(const std::string& host, int port,
                                         const TlsInfo& info) {
  if (impl_->options().http2_handoff) {
    return absl::FailedPreconditionError(
        "HttpServer: TLS: the HTTP/2 hand-off is for plaintext only");
  }
  absl::StatusOr<std::unique_ptr<TlsServerContext>> tls =
      TlsServerContext::Create(info);
  if (!tls.ok()) {
    return absl::Status(
        tls.status().code(),
        absl::StrCat("HttpServer: TLS: ", tls.status().message()));
  }
  return impl_->Start(host, port, std::move(*tls));
}

void HttpServer::Stop() { impl_->Stop(); }

int HttpServer::port() const { return impl_->port(); }

}  // namespace synod::common
