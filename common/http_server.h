// HttpServer: the HTTP/1.x endpoint of a member or proxy: /health, /metrics
// and /version, and on a member's client port the JSON gateway
// (backend/server/gateway.h). Requests are parsed by the nodejs http-parser
// library (Debian's libhttp-parser-dev); one request per connection
// ("Connection: close" on every response).
//
// It runs its own libuv loop on a dedicated thread started by Start() and
// joined by Stop(). Three kinds of handler, each registered per path:
//  * Handle(): synchronous, GET and HEAD. The handler runs on the server
//    thread, one at a time, so a slow one delays every other request; keep
//    them quick.
//  * HandleAsync(): one method (e.g. POST), the whole request body read
//    first. The handler runs on the server thread and must return quickly;
//    it answers through the HttpResponder it is given, from any thread, at
//    any later time: one response, or a stream of chunks.
//  * HandleStream(): as HandleAsync, but the handler is called once the
//    headers are in, and the body is passed on piece by piece as it arrives
//    (for a client that streams requests, e.g. /v3/watch).
//
// Responses: the handler's response (HEAD gets a synchronous GET handler's
// headers only); 404 for an unknown path; 405 with "Allow:" listing the
// path's methods for another known method; 501 for a method the parser does
// not know; 400 for a malformed request (including an HTTP/1.1 request
// without Host, or with two); 505 for an HTTP version other than 1.0/1.1;
// 431 when the request line and headers exceed max_request_bytes; 413 when a
// body exceeds max_body_bytes; 408 when a started request (for
// HandleStream: its headers) is not complete within io_timeout_ms; 500 when
// a handler gives an invalid status or content type. "Expect: 100-continue"
// is answered with "100 Continue" once the path and method are found good.
// Garbage input never crashes the server; the connection is answered (or
// closed) and the server keeps serving.
//
// Once an asynchronous handler has the request there is no deadline: the
// handler answers when it can (a lock may wait for minutes). The client
// leaving (EOF or an error on the connection) closes the connection, as Go's
// net/http cancels a request whose client left; the responder then refuses
// further output and its OnClose callback runs, so the handler can cancel its
// work. A streamed response whose unsent data exceeds 16 MiB (a client that
// does not read) is cut off the same way.
//
// https (StartTls): as etcd serves an https --listen-metrics-urls with the
// client certificates. TLS 1.2 or later (OpenSSL, on the same loop; see
// common/tls_stream.h), HTTP/1.x inside. A certificate, key or CA file
// replaced on disk is used for the next connection without a restart. When
// the TlsInfo RequiresClientCert(), a client must present a certificate that
// trusted_ca_file verifies and that passes CheckPeerCertificate (CRL,
// allowed CN / hostname). A connection that fails any of this (plaintext on
// the TLS port, garbage, an aborted or timed-out handshake, a missing or
// refused certificate) is closed without an HTTP response, after the TLS
// alert if any, and logged as etcd logs it, at WARNING:
//   rejected connection from "127.0.0.1:40112" (error "tls: first record
//   does not look like a TLS handshake", ServerName "")
// The handshake shares the io_timeout_ms deadline with the request.
//
// gRPC hand-off on https (HttpServerOptions::tls_handoff): see the option.
//
// HTTP/2 hand-off (HttpServerOptions::http2_handoff; http only): as etcd's
// cmux serves gRPC and HTTP/1 on one plaintext client port. Each accepted
// connection is peeked (MSG_PEEK, nothing consumed) before it is served:
// one whose first bytes are the HTTP/2 client preface ("PRI * HTTP/2.0
// \r\n\r\nSM\r\n\r\n", 24 bytes) is handed, with every byte still unread,
// to http2_handoff (for grpc::AddInsecureChannelFromFd); any other is served
// as HTTP/1.x above. Fewer bytes that are a prefix of the preface wait for
// more; a connection that does not decide within io_timeout_ms, or that
// closes first, is closed silently. A partial preface followed by the
// client's EOF is served as HTTP/1.x (and gets 400).
//
// Ownership: the server owns its loop, thread, sockets and handler copies.
// Thread safety: every method may be called from any thread, except that
// Stop() and the destructor must not be called from a handler or a
// callback the server runs (they join the thread these run on).
#ifndef SYNOD_COMMON_HTTP_SERVER_H_
#define SYNOD_COMMON_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace synod::common {

struct TlsInfo;  // common/tls.h

struct HttpRequest {
  std::string method;  // e.g. "GET", "POST"; only the handler's own method
  std::string path;    // raw path, starts with '/', e.g. "/metrics"
  std::string query;   // raw text after '?', without it; "" if none
  // Header fields in arrival order, names lower-cased, values without
  // surrounding whitespace; a repeated field appears once per line.
  std::vector<std::pair<std::string, std::string>> headers;
  // The decoded body (Content-Length or chunked). Always empty for a
  // synchronous handler's HEAD and for HandleStream handlers.
  std::string body;

  // The first value of the header named `lower_name` (lower case), or null.
  const std::string* Header(absl::string_view lower_name) const;
};

struct HttpResponse {
  int status = 200;  // 100..999; anything else is sent as 500
  // Must not contain CR or LF; otherwise 500 is sent.
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // More header fields, after Content-Type. A name must be an HTTP token
  // and a value must not contain control characters; otherwise 500 is sent.
  std::vector<std::pair<std::string, std::string>> headers = {};
};

// The answer side of one asynchronous request (HandleAsync, HandleStream).
// Copyable; every copy refers to the same request. Every method is
// thread-safe and may be called from any thread, including after the
// server has stopped (it then does nothing and returns false). Output is
// sent in call order.
class HttpResponder {
 public:
  // Sends `response` as the whole answer and ends the exchange. False if
  // the connection is gone or an answer was already started. An invalid
  // status or content type is sent as 500.
  bool Respond(HttpResponse response);
  // Starts a streamed answer: the status line and `headers` now, with
  // "Transfer-Encoding: chunked" (HTTP/1.1; an HTTP/1.0 client gets the raw
  // bytes, ended by the close). False if the connection is gone or an
  // answer was already started. `status` 200..999 (else 500 is sent and the
  // stream is over); `content_type` as HttpResponse's.
  bool StartStream(int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>> headers =
                       {});
  // Sends `data` (not empty) as one chunk of the stream. If it returns
  // true, `written` (may be null) runs exactly once, on the server thread,
  // once the chunk is on the socket or the connection has closed: a
  // producer that waits for it never has more than one chunk queued.
  // False (and `written` never runs) if the connection is gone, the stream
  // was not started, or it was finished.
  bool Write(std::string data, std::function<void()> written = nullptr);
  // Ends a started stream (the last chunk) and closes the connection.
  bool Finish();
  // `on_close` runs once, on the server thread, when the connection closes
  // for any reason (answer complete, client gone, server stopped); at once,
  // on the calling thread, if it already has. Set it at most once. It must
  // not block.
  void OnClose(std::function<void()> on_close);
  // True once the connection has closed.
  bool closed() const;

  struct State;  // internal
  explicit HttpResponder(std::shared_ptr<State> state);

 private:
  std::shared_ptr<State> state_;
};

// The standard reason phrase of HTTP status `status` (the same as Go's
// http.StatusText for the statuses Synod sends), or "" for one it does not
// know.
const char* HttpReasonPhrase(int status);

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;
// Runs on the server thread; must return quickly and answer through the
// responder (now or later, from any thread).
using HttpAsyncHandler =
    std::function<void(const HttpRequest&, HttpResponder)>;
// A streamed request body, handed over on the server thread: on_data for
// each piece as it arrives (decoded, never empty), then on_end once it is
// complete. Neither runs once the connection has closed. Either may be
// null.
struct HttpBodyReader {
  std::function<void(absl::string_view data)> on_data;
  std::function<void()> on_end;
};
using HttpStreamHandler =
    std::function<HttpBodyReader(const HttpRequest&, HttpResponder)>;

struct HttpServerOptions {
  // Largest accepted request line plus headers, in bytes; beyond it the
  // client gets 431 and the connection is closed.
  size_t max_request_bytes = 16 * 1024;
  // Largest request body, in bytes, read for a HandleAsync handler (a
  // HandleStream one reads any amount, piece by piece); beyond it the
  // client gets 413.
  size_t max_body_bytes = 8 << 20;
  // Per-connection deadline, in milliseconds, to receive a complete request
  // (for HandleStream: its headers) and then to send a final response. An
  // idle connection is closed silently; a partial request gets 408. After
  // responding, unread client data is drained for at most this long
  // (bounded by 2000 ms) before closing.
  int io_timeout_ms = 10000;
  // Connections beyond this many open ones are accepted and closed at once.
  // Connections handed off to http2_handoff no longer count.
  int max_connections = 256;
  // When set, Start() serves HTTP/1.x and HTTP/2 on one port (see the
  // HTTP/2 hand-off above): a connection that starts with the HTTP/2
  // preface is passed to this function, on the server thread, as a
  // connected, non-blocking TCP socket whose ownership it takes (it must
  // close it or pass it on, e.g. to grpc::AddInsecureChannelFromFd). Keep
  // it quick; it runs like a handler. StartTls() refuses it.
  std::function<void(int fd)> http2_handoff;
  // When set, ListenTls()/StartTls() serve gRPC and HTTPS/1.x on one port:
  // a connection whose TLS ClientHello offers ALPN "h2" and not "http/1.1"
  // (a gRPC client; see common/tls_client_hello.h) is passed to this
  // function, with every byte still unread (the handshake not begun), as
  // http2_handoff's sockets are; any other is served as HTTPS/1.x here.
  // The peek waits for at most one whole TLS record (16 KiB), within
  // io_timeout_ms. Listen()/Start() refuse it.
  std::function<void(int fd)> tls_handoff;
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options = HttpServerOptions());
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Calls Stop().
  ~HttpServer();

  // Serves `path` (exact match on the raw path, without the query, e.g.
  // "/metrics") with `handler`, replacing any earlier handler for it.
  // Usually called before Start(); calling it later is also safe.
  void Handle(std::string path, HttpHandler handler);
  // Serves `method` (an HTTP method token, e.g. "POST") on `path` with an
  // asynchronous handler (see above). Replaces an earlier handler for the
  // same path and method; a path may have several methods. A synchronous
  // Handle() on the same path keeps GET and HEAD.
  void HandleAsync(std::string path, std::string method,
                   HttpAsyncHandler handler);
  // As HandleAsync, with the body streamed to the handler.
  void HandleStream(std::string path, std::string method,
                    HttpStreamHandler handler);

  // Binds `host` (an IPv4 or IPv6 literal, "localhost" for 127.0.0.1, or ""
  // for 0.0.0.0) and `port` (0..65535; 0 picks a free port), then starts
  // serving on the server thread. Returns the bound port.
  // Errors: InvalidArgument for a bad host or port or an address that is not
  // local (EADDRNOTAVAIL); Unavailable if the address is in use;
  // PermissionDenied for a privileged port; FailedPrecondition if Start() was
  // already called (a server starts at most once); Internal for any other
  // libuv failure. On error nothing is left running.
  absl::StatusOr<int> Start(const std::string& host, int port);

  // As Start(), but serves https with the certificates of `info` (read at
  // once, and re-read for later connections; `info` itself is copied).
  // info.cert_file and info.key_file must be set; trusted_ca_file is read
  // only when info.RequiresClientCert(). Errors: as Start(), and
  // InvalidArgument "HttpServer: TLS: <file>: <reason>" when a file cannot be
  // read or parsed or the key does not match the certificate;
  // FailedPrecondition when options.http2_handoff is set (HTTP/2 over TLS
  // belongs to gRPC's own TLS listener).
  absl::StatusOr<int> StartTls(const std::string& host, int port,
                               const TlsInfo& info);

  // Start() and StartTls() in two steps, for a server that must own its
  // port before it may answer (a member binds its client ports before it
  // has joined, as etcd does, and serves once it has): Listen()/ListenTls()
  // bind and listen (same arguments and errors as Start()/StartTls(),
  // which refuse the other kind's hand-off option); connections wait in
  // the kernel's listen backlog until Serve() starts the server thread.
  // Serve() errors: FailedPrecondition when not listening or already
  // serving. Stop() also ends a server that listens but never served.
  absl::StatusOr<int> Listen(const std::string& host, int port);
  absl::StatusOr<int> ListenTls(const std::string& host, int port,
                                const TlsInfo& info);
  absl::Status Serve();

  // Stops accepting, closes every connection (in-flight responses may be cut
  // off; every responder's OnClose runs), and joins the server thread.
  // Idempotent; a no-op if Start() did not succeed. After it returns no
  // handler or callback is running or will run, and responders refuse
  // everything.
  // REQUIRES: not called from a handler.
  void Stop();

  // The bound port after a successful Start(), else 0. Still valid after
  // Stop().
  int port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace synod::common

#endif  // SYNOD_COMMON_HTTP_SERVER_H_
