#include "common/http_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <http_parser.h>
#include <uv.h>

#include <cerrno>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <deque>
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
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/tls.h"
#include "common/tls_client_hello.h"
#include "common/uv_loop_thread.h"
#include "common/tls_stream.h"

namespace synod::common {
namespace {

constexpr int kListenBacklog = 128;
constexpr int kMaxLingerMs = 2000;
// After responding, at most this much unread client data is drained before
// the connection is closed outright.
constexpr size_t kMaxDrainBytes = 1 << 20;
constexpr size_t kReadChunkBytes = 4096;
// A streamed answer with more than this queued for a client is cut off.
constexpr size_t kMaxQueuedStreamBytes = 16 << 20;
// Request bytes kept to tell a method the parser does not know (501) from
// garbage (400).
constexpr size_t kStartBytes = 64;
// The HTTP/2 client connection preface (RFC 9113 §3.4).
constexpr absl::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

}  // namespace

const char* HttpReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
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
    case 409:
      return "Conflict";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Payload Too Large";
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
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

namespace {

// RFC 9110 token characters.
bool IsTchar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTchar);
}

bool IsBadContentType(absl::string_view type) {
  return std::any_of(type.begin(), type.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

// The header lines `r` adds after Content-Type; false if one is invalid.
bool ExtraHeaders(const HttpResponse& r, std::string* out) {
  for (const auto& [name, value] : r.headers) {
    if (!IsToken(name) || IsBadContentType(value)) return false;
    absl::StrAppend(out, name, ": ", value, "\r\n");
  }
  return true;
}

// Whether `r` can be sent as it is (else 500 is).
bool IsValidResponse(const HttpResponse& r, std::string* extra) {
  return r.status >= 200 && r.status <= 999 &&
         !IsBadContentType(r.content_type) && ExtraHeaders(r, extra);
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

// What an asynchronous request's responder queues for the server thread.
struct ResponderOp {
  enum class Kind { kRespond, kStartStream, kChunk, kFinish };
  Kind kind;
  // kRespond: the response; kStartStream: status and content type;
  // kChunk: the data, in body.
  HttpResponse response;
  std::function<void()> written;  // kChunk
};

// Shared by a server and its responders: lets a responder post to the loop
// for as long as the loop runs.
struct ServerLink {
  absl::Mutex mu;
  // Null once the loop is stopping; then nothing is posted any more.
  uv_async_t* async ABSL_GUARDED_BY(mu) = nullptr;
  std::vector<std::shared_ptr<HttpResponder::State>> pending
      ABSL_GUARDED_BY(mu);
};

struct HttpResponder::State
    : public std::enable_shared_from_this<HttpResponder::State> {
  std::shared_ptr<ServerLink> link;
  absl::Mutex mu;
  bool closed ABSL_GUARDED_BY(mu) = false;
  bool started ABSL_GUARDED_BY(mu) = false;   // Respond or StartStream taken
  bool streaming ABSL_GUARDED_BY(mu) = false;  // StartStream taken
  bool finished ABSL_GUARDED_BY(mu) = false;   // Respond or Finish taken
  std::deque<ResponderOp> ops ABSL_GUARDED_BY(mu);
  std::function<void()> on_close ABSL_GUARDED_BY(mu);
  // Server thread only: the connection, null once closed.
  void* conn = nullptr;

  // Queues `op` (which the caller has checked is allowed) and wakes the
  // loop.
  void Post(ResponderOp op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

namespace {

// Why a connection's request handling stands where it does.
enum class RouteKind { kNone, kSync, kAsync, kStream };

}  // namespace

class HttpServer::Impl {
 public:
  explicit Impl(HttpServerOptions options) : options_(options) {
    http_parser_settings_init(&settings_);
    settings_.on_url = &OnUrl;
    settings_.on_header_field = &OnHeaderField;
    settings_.on_header_value = &OnHeaderValue;
    settings_.on_headers_complete = &OnHeadersComplete;
    settings_.on_body = &OnBody;
    settings_.on_message_complete = &OnMessageComplete;
  }

  void Handle(std::string path, HttpHandler handler) {
    absl::MutexLock lock(&handlers_mu_);
    PathHandlers& h = handlers_[std::move(path)];
    h.sync = std::move(handler);
  }
  void HandleAsync(std::string path, std::string method,
                   HttpAsyncHandler handler) {
    absl::MutexLock lock(&handlers_mu_);
    PathHandlers& h = handlers_[std::move(path)];
    h.stream.erase(method);
    h.async[std::move(method)] = std::move(handler);
  }
  void HandleStream(std::string path, std::string method,
                    HttpStreamHandler handler) {
    absl::MutexLock lock(&handlers_mu_);
    PathHandlers& h = handlers_[std::move(path)];
    h.async.erase(method);
    h.stream[std::move(method)] = std::move(handler);
  }

  // `tls` null serves http. Binds and listens; serves once Serve() runs
  // (connections wait in the listen backlog until then).
  absl::StatusOr<int> Listen(const std::string& host, int port,
                             std::unique_ptr<TlsServerContext> tls);
  absl::Status Serve();
  void Stop();
  int port() const { return port_.load(std::memory_order_acquire); }
  const HttpServerOptions& options() const { return options_; }

 private:
  struct PathHandlers {
    HttpHandler sync;  // GET and HEAD
    std::map<std::string, HttpAsyncHandler> async;
    std::map<std::string, HttpStreamHandler> stream;
  };

  // One client connection. Lives from accept until every handle is closed;
  // touched only on the loop thread.
  struct Conn {
    // kReading: the request is being read, no handler has it yet;
    // kActive: an asynchronous handler has it (a streamed body may still be
    // coming in, a streamed answer going out); kWriting: the final bytes
    // are being sent; kDraining: sent, reading what the client still sends.
    enum class State { kReading, kActive, kWriting, kDraining, kClosing };
    Impl* server = nullptr;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    State state = State::kReading;
    int open_handles = 0;
    int writes_pending = 0;  // WriteReqs not yet completed
    bool peer_eof = false;   // the client shut down its side
    size_t drained = 0;      // bytes discarded after the request
    bool received = false;   // any byte (https: ciphertext) came in
    size_t fed = 0;          // request bytes (plaintext) received
    std::string start;       // the first kStartBytes of them

    // The request, as http-parser reports it.
    http_parser parser;
    size_t header_bytes = 0;  // bytes fed before the headers ended
    bool headers_done = false;
    bool message_done = false;
    bool last_was_value = false;  // header callbacks: field or value last
    int hosts = 0;
    std::string url;
    HttpRequest req;
    std::string body;  // decoded body not yet handed on
    bool head = false;  // HEAD to a synchronous handler
    bool http10 = false;

    // Once the headers are in: which handler, and (kAsync/kStream) the
    // responder state and the streamed body's reader.
    RouteKind route = RouteKind::kNone;
    bool handed = false;  // the complete request went to its handler
    HttpHandler sync_handler;
    HttpAsyncHandler async_handler;
    HttpStreamHandler stream_handler;
    std::shared_ptr<HttpResponder::State> responder;
    HttpBodyReader reader;
    bool chunked_out = false;  // the streamed answer uses chunked framing

    // https only: the connection's TLS state (null for http), whether the
    // client's certificate was checked after the handshake, and its
    // address for log lines.
    std::unique_ptr<TlsServerStream> tls;
    bool tls_checked = false;
    std::string remote;
    // Hand-offs only: a dup of the socket, polled (not read) until its
    // first bytes say where it goes (HTTP/2 or not; for https, a gRPC
    // ClientHello or not); -1 once handed off or closed.
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
    std::function<void()> written;  // run once the write completed
  };

  // libuv callbacks.
  static void OnConnection(uv_stream_t* listener, int status);
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  static void OnShutdown(uv_shutdown_t* req, int status);
  static void OnTimer(uv_timer_t* timer);
  static void OnStopAsync(uv_async_t* async);
  static void OnPostAsync(uv_async_t* async);
  static void OnConnHandleClosed(uv_handle_t* handle);
  static void OnPeekable(uv_poll_t* poll, int status, int events);

  // http-parser callbacks (parser->data is the Conn).
  static int OnUrl(http_parser* p, const char* at, size_t n);
  static int OnHeaderField(http_parser* p, const char* at, size_t n);
  static int OnHeaderValue(http_parser* p, const char* at, size_t n);
  static int OnHeadersComplete(http_parser* p);
  static int OnBody(http_parser* p, const char* at, size_t n);
  static int OnMessageComplete(http_parser* p);

  // Hand-offs: polls a dup of the socket until MSG_PEEK shows where it
  // goes (http: whether it starts with the HTTP/2 preface; https: whether
  // its ClientHello is a gRPC client's), then EndPeek()s.
  void StartPeek(Conn* conn);
  // The hand-off of this server's kind (http or https), or null.
  const std::function<void(int)>& Handoff() const {
    return tls_ == nullptr ? options_.http2_handoff : options_.tls_handoff;
  }
  // Stops peeking; hands the socket to options_.http2_handoff, or starts
  // reading it as HTTP/1.x.
  void EndPeek(Conn* conn, bool http2);

  // Decrypts what OnRead got and passes the plaintext on to Feed().
  void ReceiveTls(Conn* conn, size_t n);
  // The client ended its side (EOF, or TLS close_notify).
  void OnPeerEof(Conn* conn);
  // Logs etcd's "rejected connection" line and closes, after sending the
  // TLS alert or close_notify, if any.
  void RejectTls(Conn* conn, absl::string_view error);
  // Passes request bytes to the parser and acts on what it found.
  void Feed(Conn* conn, const char* data, size_t n);
  // Answers a parse error with its status (or closes, once a handler has
  // the request).
  void ParseFailed(Conn* conn);
  // The headers are in: checks them and picks the handler. False if it
  // answered instead.
  bool PickRoute(Conn* conn);
  // Hands the body read so far, and the end of the request, on.
  void Deliver(Conn* conn);
  // An asynchronous handler is to have the request: a responder, no
  // deadline.
  void Activate(Conn* conn);
  // Gives the complete request to an asynchronous handler.
  void StartExchange(Conn* conn);
  // Runs the operations `state`'s responder queued.
  void RunOps(const std::shared_ptr<HttpResponder::State>& state);
  void RespondError(Conn* conn, int status);
  // `extra`: more header lines, each ending in CRLF.
  void Respond(Conn* conn, int status, const std::string& content_type,
               const std::string& body, const std::string& extra);
  // The status line and the headers every response carries.
  std::string StatusLine(int status) const;
  // Encrypts (https) and writes plaintext `data`; `written` as WriteReq's.
  void Emit(Conn* conn, std::string data,
            std::function<void()> written = nullptr);
  // Starts the final write (a response, or a TLS alert; may be empty): once
  // every write has completed, LingeringClose().
  void SendFinal(Conn* conn, std::string data);
  // Shuts down the sending side and closes after draining the client.
  void LingeringClose(Conn* conn);
  // Writes `data` to the socket; several writes may be in flight.
  void SendBytes(Conn* conn, std::string data,
                 std::function<void()> written = nullptr);
  void CloseConn(Conn* conn);

  const HttpServerOptions options_;
  http_parser_settings settings_;

  absl::Mutex handlers_mu_;
  std::map<std::string, PathHandlers> handlers_ ABSL_GUARDED_BY(handlers_mu_);

  // Serialises Start() and Stop().
  absl::Mutex lifecycle_mu_;
  bool running_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  bool started_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  bool serving_ ABSL_GUARDED_BY(lifecycle_mu_) = false;  // thread started
  std::thread thread_ ABSL_GUARDED_BY(lifecycle_mu_);
  std::atomic<int> port_{0};

  std::shared_ptr<ServerLink> link_ = std::make_shared<ServerLink>();

  // Owned by the loop thread while it runs; by Start()/Stop() before it
  // starts and after it is joined.
  uv_loop_t loop_;
  uv_tcp_t listener_;
  uv_async_t stop_async_;
  uv_async_t post_async_;
  std::unordered_set<Conn*> conns_;
  std::unique_ptr<TlsServerContext> tls_;  // null for http
  std::string peek_buf_;  // OnPeekable's, on the loop thread
};

absl::StatusOr<int> HttpServer::Impl::Listen(
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
  if (rc == 0) {
    rc = uv_async_init(&loop_, &post_async_, &OnPostAsync);
    if (rc != 0) uv_close(reinterpret_cast<uv_handle_t*>(&stop_async_), nullptr);
  }
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return UvError(rc, where);
  }
  stop_async_.data = this;
  post_async_.data = this;
  {
    absl::MutexLock l(&link_->mu);
    link_->async = &post_async_;
  }
  int bound_port =
      bound.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
          : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  port_.store(bound_port, std::memory_order_release);
  started_ = true;
  running_ = true;
  tls_ = std::move(tls);
  return bound_port;
}

absl::Status HttpServer::Impl::Serve() {
  absl::MutexLock lock(&lifecycle_mu_);
  if (!running_) {
    return absl::FailedPreconditionError("HttpServer: not listening");
  }
  if (serving_) return absl::FailedPreconditionError("HttpServer: already serving");
  serving_ = true;
  thread_ = StartUvLoopThread(&loop_);
  return absl::OkStatus();
}

void HttpServer::Impl::Stop() {
  absl::MutexLock lock(&lifecycle_mu_);
  if (!running_) return;
  running_ = false;
  if (serving_) {
    uv_async_send(&stop_async_);
    thread_.join();
  } else {
    // Listening only: no connection was accepted; close on this thread.
    OnStopAsync(&stop_async_);
    uv_run(&loop_, UV_RUN_DEFAULT);
  }
  // uv_run returned, so every handle is closed and every Conn deleted.
  if (uv_loop_close(&loop_) == UV_EBUSY) {
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
}

void HttpServer::Impl::OnStopAsync(uv_async_t* async) {
  Impl* self = static_cast<Impl*>(async->data);
  {
    // From here on responders post nothing; what they queued is run (or
    // dropped, for closed connections) below.
    absl::MutexLock l(&self->link_->mu);
    self->link_->async = nullptr;
  }
  OnPostAsync(&self->post_async_);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->listener_), nullptr);
  std::vector<Conn*> conns(self->conns_.begin(), self->conns_.end());
  for (Conn* conn : conns) self->CloseConn(conn);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->post_async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(async), nullptr);
}

void HttpServer::Impl::OnPostAsync(uv_async_t* async) {
  Impl* self = static_cast<Impl*>(async->data);
  std::vector<std::shared_ptr<HttpResponder::State>> pending;
  {
    absl::MutexLock l(&self->link_->mu);
    pending.swap(self->link_->pending);
  }
  for (const auto& state : pending) self->RunOps(state);
}

void HttpServer::Impl::OnConnection(uv_stream_t* listener, int status) {
  Impl* self = static_cast<Impl*>(listener->data);
  if (status < 0) return;
  Conn* conn = new Conn();
  conn->server = self;
  http_parser_init(&conn->parser, HTTP_REQUEST);
  conn->parser.data = conn;
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
  if (self->Handoff()) {
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
  const bool tls = self->tls_ != nullptr;
  std::string& buf = self->peek_buf_;
  buf.resize(tls ? kMaxClientHelloPeekBytes : kHttp2Preface.size());
  ssize_t n = recv(conn->peek_fd, buf.data(), buf.size(), MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return;
  }
  if (n <= 0) {  // an error, or EOF before any byte
    self->CloseConn(conn);
    return;
  }
  absl::string_view got(buf.data(), static_cast<size_t>(n));
  // http: the HTTP/2 preface, or a prefix of it, waits for more;
  // https: a ClientHello not complete yet does.
  ClientHelloRoute route = ClientHelloRoute::kOther;
  bool more = false;
  bool handoff = false;
  if (tls) {
    route = ClassifyClientHello(got);
    more = route == ClientHelloRoute::kNeedMore;
    handoff = route == ClientHelloRoute::kHttp2Only;
  } else {
    const bool prefix = absl::StartsWith(kHttp2Preface, got);
    more = prefix && got.size() < kHttp2Preface.size();
    handoff = prefix && !more;
  }
  if (more && (events & UV_DISCONNECT) == 0) {
    // Wait for more without spinning: epoll reports the socket readable
    // again only once another byte (or EOF) is there.
    int lowat = static_cast<int>(got.size()) + 1;
    if (setsockopt(conn->peek_fd, SOL_SOCKET, SO_RCVLOWAT, &lowat,
                   sizeof(lowat)) != 0) {
      self->CloseConn(conn);
    }
    return;
  }
  self->EndPeek(conn, handoff);
}

void HttpServer::Impl::EndPeek(Conn* conn, bool handoff) {
  int one = 1;
  setsockopt(conn->peek_fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
  // Closing the poll handle takes the dup out of libuv's epoll set at once;
  // its close callback closes the dup unless it was handed off.
  conn->poll_open = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&conn->poll), &OnConnHandleClosed);
  if (!handoff) {
    if (uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->tcp), &OnAlloc,
                      &OnRead) != 0) {
      CloseConn(conn);
    }
    return;
  }
  const int fd = conn->peek_fd;
  conn->peek_fd = -1;
  CloseConn(conn);  // closes the tcp handle's own fd; the dup keeps the socket
  Handoff()(fd);
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
  if (conn->state == Conn::State::kWriting ||
      conn->state == Conn::State::kDraining) {
    conn->drained += nread;
    if (conn->drained > kMaxDrainBytes) self->CloseConn(conn);
    return;
  }
  if (conn->tls != nullptr) {
    self->ReceiveTls(conn, nread);
    return;
  }
  self->Feed(conn, conn->read_buf, nread);
}

void HttpServer::Impl::OnPeerEof(Conn* conn) {
  conn->peer_eof = true;
  switch (conn->state) {
    case Conn::State::kReading:
      if (conn->tls != nullptr && !conn->tls->handshake_done()) {
        // Go's handshake reads EOF; etcd logs it like any other failure.
        RejectTls(conn, "EOF");
      } else if (conn->fed == 0) {
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
      // kActive: the client left while its request was being served, which
      // cancels it (as Go's net/http cancels the request's context).
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
  if (!plain.empty()) Feed(conn, plain.data(), plain.size());
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

// ---- http-parser callbacks: they only record; Feed() acts. ----

int HttpServer::Impl::OnUrl(http_parser* p, const char* at, size_t n) {
  Conn* conn = static_cast<Conn*>(p->data);
  conn->url.append(at, n);
  return 0;
}

int HttpServer::Impl::OnHeaderField(http_parser* p, const char* at, size_t n) {
  Conn* conn = static_cast<Conn*>(p->data);
  if (conn->last_was_value || conn->req.headers.empty()) {
    conn->req.headers.emplace_back();
  }
  conn->last_was_value = false;
  conn->req.headers.back().first.append(at, n);
  return 0;
}

int HttpServer::Impl::OnHeaderValue(http_parser* p, const char* at, size_t n) {
  Conn* conn = static_cast<Conn*>(p->data);
  if (conn->req.headers.empty()) return 1;  // cannot happen
  conn->last_was_value = true;
  conn->req.headers.back().second.append(at, n);
  return 0;
}

int HttpServer::Impl::OnHeadersComplete(http_parser* p) {
  Conn* conn = static_cast<Conn*>(p->data);
  conn->headers_done = true;
  return 0;
}

int HttpServer::Impl::OnBody(http_parser* p, const char* at, size_t n) {
  Conn* conn = static_cast<Conn*>(p->data);
  conn->body.append(at, n);
  return 0;
}

int HttpServer::Impl::OnMessageComplete(http_parser* p) {
  Conn* conn = static_cast<Conn*>(p->data);
  conn->message_done = true;
  // One request per connection: whatever follows is not parsed.
  http_parser_pause(p, 1);
  return 0;
}

void HttpServer::Impl::Feed(Conn* conn, const char* data, size_t n) {
  const size_t limit = options_.max_request_bytes;
  if (conn->start.size() < kStartBytes) {
    conn->start.append(data, std::min(n, kStartBytes - conn->start.size()));
  }
  conn->fed += n;
  while (n > 0 && (conn->state == Conn::State::kReading ||
                   conn->state == Conn::State::kActive)) {
    if (conn->message_done) {
      // After the request (one per connection): discarded, up to a bound.
      conn->drained += n;
      if (conn->drained > kMaxDrainBytes) CloseConn(conn);
      return;
    }
    size_t take = n;
    if (!conn->headers_done) {
      // Never more than the header limit before the headers end, so a
      // request whose headers run past it is caught exactly.
      take = std::min(n, limit - std::min(limit, conn->header_bytes));
      if (take == 0) {
        RespondError(conn, 431);
        return;
      }
      conn->header_bytes += take;
    }
    const bool had_headers = conn->headers_done;
    size_t parsed = http_parser_execute(&conn->parser, &settings_, data, take);
    http_errno err = HTTP_PARSER_ERRNO(&conn->parser);
    if (err != HPE_OK && !(err == HPE_PAUSED && conn->message_done)) {
      ParseFailed(conn);
      return;
    }
    (void)parsed;  // the rest of a paused chunk follows the request: dropped
    if (conn->headers_done && !had_headers && !PickRoute(conn)) return;
    if (!conn->headers_done && conn->header_bytes >= limit) {
      RespondError(conn, 431);
      return;
    }
    Deliver(conn);
    data += take;
    n -= take;
  }
}

void HttpServer::Impl::ParseFailed(Conn* conn) {
  if (conn->state == Conn::State::kActive) {
    // A streamed body went bad after its handler had it.
    CloseConn(conn);
    return;
  }
  switch (HTTP_PARSER_ERRNO(&conn->parser)) {
    case HPE_HEADER_OVERFLOW:
      RespondError(conn, 431);
      return;
    case HPE_INVALID_METHOD: {
      // A well-formed method the parser does not know (RFC 9110 §9.1: 501);
      // anything else is garbage.
      absl::string_view line = conn->start;
      size_t begin = line.find_first_not_of("\r\n");
      line.remove_prefix(begin == absl::string_view::npos ? line.size()
                                                           : begin);
      // Only a whole request line counts (a partial HTTP/2 preface, "PRI *
      // HTTP/2", is garbage to HTTP/1).
      size_t sp = line.find(' ');
      const bool whole_line = line.find('\n') != absl::string_view::npos ||
                              conn->start.size() == kStartBytes;
      RespondError(conn, sp != absl::string_view::npos && whole_line &&
                                 IsToken(line.substr(0, sp))
                             ? 501
                             : 400);
      return;
    }
    default:
      RespondError(conn, 400);
  }
}

bool HttpServer::Impl::PickRoute(Conn* conn) {
  http_parser* p = &conn->parser;
  // http-parser takes a request line without a version as HTTP/0.9.
  if (p->http_major == 0) {
    RespondError(conn, 400);
    return false;
  }
  if (p->http_major != 1 || p->http_minor > 1) {
    RespondError(conn, 505);
    return false;
  }
  conn->http10 = p->http_minor == 0;
  HttpRequest& req = conn->req;
  req.method = http_method_str(static_cast<http_method>(p->method));
  for (auto& [name, value] : req.headers) {
    absl::AsciiStrToLower(&name);
    value = std::string(absl::StripAsciiWhitespace(value));
    if (name == "host") ++conn->hosts;
  }
  // RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host.
  if (conn->hosts > 1 || (!conn->http10 && conn->hosts == 0)) {
    RespondError(conn, 400);
    return false;
  }
  for (char c : conn->url) {
    if (c <= 0x20 || c >= 0x7f) {  // CTL, space, non-ASCII
      RespondError(conn, 400);
      return false;
    }
  }
  http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(conn->url.data(), conn->url.size(), 0, &u) != 0) {
    RespondError(conn, 400);
    return false;
  }
  auto field = [&](int f) {
    return (u.field_set & (1 << f)) == 0
               ? std::string()
               : conn->url.substr(u.field_data[f].off, u.field_data[f].len);
  };
  req.path = field(UF_PATH);
  if (req.path.empty()) req.path = "/";  // absolute form without a path
  req.query = field(UF_QUERY);

  std::string allow;
  {
    absl::MutexLock lock(&handlers_mu_);
    auto it = handlers_.find(req.path);
    if (it != handlers_.end()) {  // else 404 below
      const PathHandlers& h = it->second;
      if (h.sync && (req.method == "GET" || req.method == "HEAD")) {
        conn->route = RouteKind::kSync;
        conn->sync_handler = h.sync;
        conn->head = req.method == "HEAD";
      } else if (auto a = h.async.find(req.method); a != h.async.end()) {
        conn->route = RouteKind::kAsync;
        conn->async_handler = a->second;
      } else if (auto st = h.stream.find(req.method); st != h.stream.end()) {
        conn->route = RouteKind::kStream;
        conn->stream_handler = st->second;
      } else {
        std::vector<std::string> methods;
        if (h.sync) {
          methods.push_back("GET");
          methods.push_back("HEAD");
        }
        for (const auto& [m, _] : h.async) methods.push_back(m);
        for (const auto& [m, _] : h.stream) methods.push_back(m);
        allow = absl::StrJoin(methods, ", ");
      }
    }
  }
  if (conn->route == RouteKind::kNone) {
    if (allow.empty()) {
      RespondError(conn, 404);
    } else {
      Respond(conn, 405, "text/plain; charset=utf-8", "405 Method Not Allowed\n",
              absl::StrCat("Allow: ", allow, "\r\n"));
    }
    return false;
  }
  const bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
  if (conn->route == RouteKind::kAsync && has_length &&
      p->content_length > options_.max_body_bytes) {
    RespondError(conn, 413);
    return false;
  }
  const std::string* expect = req.Header("expect");
  if (expect != nullptr && absl::EqualsIgnoreCase(*expect, "100-continue") &&
      !conn->http10 && conn->route != RouteKind::kSync) {
    Emit(conn, "HTTP/1.1 100 Continue\r\n\r\n");
  }
  if (conn->route == RouteKind::kStream) {
    // The handler has the request from here on; no deadline for the body.
    Activate(conn);
    HttpStreamHandler handler = std::move(conn->stream_handler);
    conn->reader = handler(req, HttpResponder(conn->responder));
  }
  return conn->state != Conn::State::kClosing;
}

void HttpServer::Impl::Deliver(Conn* conn) {
  switch (conn->route) {
    case RouteKind::kNone:
      return;
    case RouteKind::kStream:
      if (!conn->body.empty() && conn->reader.on_data) {
        std::string piece = std::move(conn->body);
        conn->body.clear();
        conn->reader.on_data(piece);
        if (conn->state == Conn::State::kClosing) return;
      }
      conn->body.clear();
      if (conn->message_done && !conn->handed) {
        conn->handed = true;
        if (conn->reader.on_end) conn->reader.on_end();
      }
      return;
    case RouteKind::kAsync:
      if (conn->body.size() > options_.max_body_bytes) {
        RespondError(conn, 413);
        return;
      }
      if (conn->message_done && !conn->handed) {
        conn->handed = true;
        StartExchange(conn);
      }
      return;
    case RouteKind::kSync:
      if (conn->body.size() > options_.max_body_bytes) {
        RespondError(conn, 413);
        return;
      }
      if (conn->message_done && !conn->handed) {
        conn->handed = true;
        conn->req.body = conn->head ? std::string() : std::move(conn->body);
        conn->body.clear();
        HttpResponse resp = conn->sync_handler(conn->req);
        std::string extra;
        if (!IsValidResponse(resp, &extra)) {
          RespondError(conn, 500);
          return;
        }
        Respond(conn, resp.status, resp.content_type, resp.body, extra);
      }
      return;
  }
}

void HttpServer::Impl::Activate(Conn* conn) {
  conn->state = Conn::State::kActive;
  uv_timer_stop(&conn->timer);
  conn->responder = std::make_shared<HttpResponder::State>();
  conn->responder->link = link_;
  conn->responder->conn = conn;
}

void HttpServer::Impl::StartExchange(Conn* conn) {
  Activate(conn);
  conn->req.body = std::move(conn->body);
  conn->body.clear();
  HttpAsyncHandler handler = std::move(conn->async_handler);
  handler(conn->req, HttpResponder(conn->responder));
}

void HttpServer::Impl::RunOps(
    const std::shared_ptr<HttpResponder::State>& state) {
  std::deque<ResponderOp> ops;
  {
    absl::MutexLock l(&state->mu);
    ops.swap(state->ops);
  }
  for (ResponderOp& op : ops) {
    Conn* conn = static_cast<Conn*>(state->conn);
    if (conn == nullptr || conn->state != Conn::State::kActive) {
      // Closed meanwhile (CloseConn ran the queued callbacks it saw; these
      // came after).
      if (op.written) op.written();
      continue;
    }
    switch (op.kind) {
      case ResponderOp::Kind::kRespond: {
        const HttpResponse& r = op.response;
        std::string extra;
        if (!IsValidResponse(r, &extra)) {
          RespondError(conn, 500);
        } else {
          Respond(conn, r.status, r.content_type, r.body, extra);
        }
        break;
      }
      case ResponderOp::Kind::kStartStream: {
        const HttpResponse& r = op.response;
        std::string extra;
        if (!IsValidResponse(r, &extra)) {
          RespondError(conn, 500);
          break;
        }
        conn->chunked_out = !conn->http10;
        std::string out = StatusLine(r.status);
        absl::StrAppend(&out, "Content-Type: ", r.content_type, "\r\n", extra);
        if (conn->chunked_out) out += "Transfer-Encoding: chunked\r\n";
        out += "\r\n";
        Emit(conn, std::move(out));
        break;
      }
      case ResponderOp::Kind::kChunk: {
        if (conn->tcp.write_queue_size > kMaxQueuedStreamBytes) {
          // The client does not read: cut the stream off.
          if (op.written) op.written();
          CloseConn(conn);
          break;
        }
        std::string& data = op.response.body;
        std::string out =
            conn->chunked_out
                ? absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n")
                : std::move(data);
        Emit(conn, std::move(out), std::move(op.written));
        break;
      }
      case ResponderOp::Kind::kFinish: {
        std::string out = conn->chunked_out ? "0\r\n\r\n" : "";
        if (conn->tls != nullptr) {
          if (!conn->tls->Send(out)) {
            CloseConn(conn);
            break;
          }
          conn->tls->Close();
          out = conn->tls->TakeOutput();
        }
        SendFinal(conn, std::move(out));
        break;
      }
    }
  }
}

void HttpServer::Impl::RespondError(Conn* conn, int status) {
  Respond(conn, status, "text/plain; charset=utf-8",
          absl::StrCat(status, " ", HttpReasonPhrase(status), "\n"), "");
}

std::string HttpServer::Impl::StatusLine(int status) const {
  return absl::StrCat("HTTP/1.1 ", status, " ", HttpReasonPhrase(status),
                      "\r\nDate: ",
                      absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::Now(),
                                       absl::UTCTimeZone()),
                      "\r\nConnection: close\r\n");
}

void HttpServer::Impl::Respond(Conn* conn, int status,
                               const std::string& content_type,
                               const std::string& body,
                               const std::string& extra) {
  // 204 and 304 carry neither body nor Content-Length (RFC 9110 §8.6).
  bool no_body = status == 204 || status == 304;
  std::string out = StatusLine(status);
  if (!no_body) {
    absl::StrAppend(&out, "Content-Type: ", content_type,
                    "\r\nContent-Length: ", body.size(), "\r\n");
  }
  out += extra;
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

void HttpServer::Impl::Emit(Conn* conn, std::string data,
                            std::function<void()> written) {
  if (conn->tls != nullptr) {
    if (!conn->tls->Send(data)) {
      if (written) written();
      CloseConn(conn);
      return;
    }
    data = conn->tls->TakeOutput();
  }
  SendBytes(conn, std::move(data), std::move(written));
}

void HttpServer::Impl::SendFinal(Conn* conn, std::string data) {
  if (conn->state == Conn::State::kClosing) return;
  conn->state = Conn::State::kWriting;
  uv_timer_start(&conn->timer, &OnTimer, options_.io_timeout_ms, 0);
  SendBytes(conn, std::move(data));
  if (conn->state == Conn::State::kWriting && conn->writes_pending == 0) {
    LingeringClose(conn);  // nothing (left) to write
  }
}

void HttpServer::Impl::SendBytes(Conn* conn, std::string data,
                                 std::function<void()> written) {
  if (data.empty() || conn->state == Conn::State::kClosing) {
    if (written) written();
    return;
  }
  auto* w = new WriteReq{};
  w->conn = conn;
  w->data = std::move(data);
  w->written = std::move(written);
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), w->data.size());
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&conn->tcp), &buf, 1,
               &OnWrite) != 0) {
    std::function<void()> done = std::move(w->written);
    delete w;
    if (done) done();
    CloseConn(conn);
    return;
  }
  ++conn->writes_pending;
}

void HttpServer::Impl::OnWrite(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  Conn* conn = w->conn;
  std::function<void()> written = std::move(w->written);
  delete w;
  --conn->writes_pending;
  Impl* self = conn->server;
  if (written) written();
  // A close cancels pending writes; their callbacks run before the close
  // callback that deletes the Conn.
  if (conn->state == Conn::State::kClosing) return;
  if (status < 0) {
    self->CloseConn(conn);
    return;
  }
  // Handshake messages and stream chunks need nothing more; the final
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
  if (conn->state == Conn::State::kReading && conn->fed > 0) {
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
  if (conn->responder != nullptr) {
    // The responder refuses everything from now on; what it queued is
    // dropped (its callbacks run), then its OnClose.
    std::shared_ptr<HttpResponder::State> st = conn->responder;
    std::deque<ResponderOp> ops;
    std::function<void()> on_close;
    {
      absl::MutexLock l(&st->mu);
      st->closed = true;
      ops.swap(st->ops);
      on_close = std::move(st->on_close);
      st->on_close = nullptr;
    }
    st->conn = nullptr;
    for (ResponderOp& op : ops) {
      if (op.written) op.written();
    }
    if (on_close) on_close();
  }
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

void HttpResponder::State::Post(ResponderOp op) {
  const bool first = ops.empty();
  ops.push_back(std::move(op));
  if (!first) return;  // already posted, not yet run
  absl::MutexLock l(&link->mu);
  if (link->async == nullptr) return;  // stopping: CloseConn drops it
  link->pending.push_back(shared_from_this());
  uv_async_send(link->async);
}

HttpResponder::HttpResponder(std::shared_ptr<State> state)
    : state_(std::move(state)) {}

bool HttpResponder::Respond(HttpResponse response) {
  absl::MutexLock l(&state_->mu);
  if (state_->closed || state_->started) return false;
  state_->started = state_->finished = true;
  ResponderOp op{ResponderOp::Kind::kRespond, std::move(response), nullptr};
  state_->Post(std::move(op));
  return true;
}

bool HttpResponder::StartStream(
    int status, std::string content_type,
    std::vector<std::pair<std::string, std::string>> headers) {
  absl::MutexLock l(&state_->mu);
  if (state_->closed || state_->started) return false;
  state_->started = state_->streaming = true;
  ResponderOp op{ResponderOp::Kind::kStartStream,
                 HttpResponse{status, std::move(content_type), "",
                              std::move(headers)},
                 nullptr};
  state_->Post(std::move(op));
  return true;
}

bool HttpResponder::Write(std::string data, std::function<void()> written) {
  absl::MutexLock l(&state_->mu);
  if (state_->closed || !state_->streaming || state_->finished ||
      data.empty()) {
    return false;
  }
  ResponderOp op{ResponderOp::Kind::kChunk,
                 HttpResponse{200, "", std::move(data)}, std::move(written)};
  state_->Post(std::move(op));
  return true;
}

bool HttpResponder::Finish() {
  absl::MutexLock l(&state_->mu);
  if (state_->closed || !state_->streaming || state_->finished) return false;
  state_->finished = true;
  state_->Post(ResponderOp{ResponderOp::Kind::kFinish, HttpResponse(), nullptr});
  return true;
}

void HttpResponder::OnClose(std::function<void()> on_close) {
  {
    absl::MutexLock l(&state_->mu);
    if (!state_->closed) {
      state_->on_close = std::move(on_close);
      return;
    }
  }
  if (on_close) on_close();
}

bool HttpResponder::closed() const {
  absl::MutexLock l(&state_->mu);
  return state_->closed;
}

const std::string* HttpRequest::Header(absl::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

HttpServer::HttpServer(HttpServerOptions options)
    : impl_(std::make_unique<Impl>(options)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string path, HttpHandler handler) {
  impl_->Handle(std::move(path), std::move(handler));
}

absl::StatusOr<int> HttpServer::Start(const std::string& host, int port) {
  absl::StatusOr<int> port_or = Listen(host, port);
  if (port_or.ok()) {
    absl::Status st = Serve();
    if (!st.ok()) return st;
  }
  return port_or;
}

absl::StatusOr<int> HttpServer::StartTls(const std::string& host, int port,
                                         const TlsInfo& info) {
  absl::StatusOr<int> port_or = ListenTls(host, port, info);
  if (port_or.ok()) {
    absl::Status st = Serve();
    if (!st.ok()) return st;
  }
  return port_or;
}

absl::StatusOr<int> HttpServer::Listen(const std::string& host, int port) {
  if (impl_->options().tls_handoff) {
    return absl::FailedPreconditionError(
        "HttpServer: the TLS hand-off is for https only");
  }
  return impl_->Listen(host, port, nullptr);
}

absl::Status HttpServer::Serve() { return impl_->Serve(); }

absl::StatusOr<int> HttpServer::ListenTls(const std::string& host, int port,
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
  return impl_->Listen(host, port, std::move(*tls));
}

void HttpServer::HandleAsync(std::string path, std::string method,
                             HttpAsyncHandler handler) {
  impl_->HandleAsync(std::move(path), std::move(method), std::move(handler));
}

void HttpServer::HandleStream(std::string path, std::string method,
                              HttpStreamHandler handler) {
  impl_->HandleStream(std::move(path), std::move(method), std::move(handler));
}

void HttpServer::Stop() { impl_->Stop(); }

int HttpServer::port() const { return impl_->port(); }

}  // namespace synod::common
