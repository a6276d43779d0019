// HttpServer: the small HTTP/1.x endpoint of a member or proxy, serving
// /health, /metrics and /version. It is not a general web server: it answers
// GET and HEAD only, one request per connection ("Connection: close"), and
// parses the request line and headers itself (no request bodies).
//
// It runs its own libuv loop on a dedicated thread started by Start() and
// joined by Stop(). Handlers run on that thread, one at a time, so a slow
// handler delays every other request; keep them quick.
//
// Responses: the handler's response for GET/HEAD on a registered path (HEAD
// gets the headers only); 404 for an unknown path; 405 (with "Allow: GET,
// HEAD") for any other method; 400 for a malformed request (including an
// HTTP/1.1 request without Host); 505 for an HTTP version other than 1.0/1.1;
// 431 when the request line and headers exceed max_request_bytes; 408 when a
// started request is not complete within io_timeout_ms; 500 when a handler
// returns an invalid status or content type. Garbage input never crashes the
// server; the connection is answered (or closed) and the server keeps serving.
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
// Stop() and the destructor must not be called from a handler (they join the
// thread the handler runs on).
#ifndef SYNOD_COMMON_HTTP_SERVER_H_
#define SYNOD_COMMON_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace synod::common {

struct TlsInfo;  // common/tls.h

struct HttpRequest {
  std::string method;  // "GET" or "HEAD" (handlers never see other methods)
  std::string path;    // raw path, starts with '/', e.g. "/metrics"
  std::string query;   // raw text after '?', without it; "" if none
};

struct HttpResponse {
  int status = 200;  // 100..999; anything else is sent as 500
  // Must not contain CR or LF; otherwise 500 is sent.
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  // Largest accepted request line plus headers, in bytes; beyond it the
  // client gets 431 and the connection is closed.
  size_t max_request_bytes = 16 * 1024;
  // Per-connection deadline, in milliseconds, to receive a complete request
  // and then to send the response. An idle connection is closed silently; a
  // partial request gets 408. After responding, unread client data is
  // drained for at most this long (bounded by 2000 ms) before closing.
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

  // Stops accepting, closes every connection (in-flight responses may be cut
  // off), and joins the server thread. Idempotent; a no-op if Start() did not
  // succeed. After it returns no handler is running or will run.
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
