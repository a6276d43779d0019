// Server-side TLS for a socket driven by an event loop (HttpServer's libuv
// loop). OpenSSL does the protocol through memory BIOs; these classes only
// move bytes between the socket and OpenSSL, choose the certificates, and
// word failures as etcd logs them.
//
// TlsServerContext holds one listener's certificates, from a TlsInfo:
// - TLS 1.2 is the minimum version; no session resumption (every
//   connection does a full handshake, so every client certificate is
//   verified against the CA in use at the time).
// - Certificate, key and CA file are re-read before every new connection
//   (as etcd re-reads them at each handshake) and, when their contents
//   changed, loaded for that connection and the ones after it. If the new
//   contents do not load (e.g. the certificate was replaced but its key not
//   yet), the previous ones stay in use, a warning is logged once, and the
//   load is retried when the files change again.
// - A listener whose info RequiresClientCert() requires a client
//   certificate and verifies it against trusted_ca_file (the system roots
//   when that is empty, as Go does). etcd's further checks (CRL, allowed CN
//   and hostname: CheckPeerCertificate) are the caller's, once
//   handshake_done().
//
// TlsServerStream is one accepted connection: ciphertext from the socket
// goes in through Receive(), plaintext to send through Send(), and what
// must go out on the socket comes from TakeOutput().
//
// Ownership: a TlsServerStream holds a reference on the SSL_CTX it was made
// from, so it may outlive its TlsServerContext.
// Thread safety: neither class is thread-safe; use each from one thread at a
// time (HttpServer uses both on its loop thread only).
#ifndef SYNOD_COMMON_TLS_STREAM_H_
#define SYNOD_COMMON_TLS_STREAM_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tls.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace synod::common {

class TlsServerStream {
 public:
  enum class Progress {
    kOk,          // consumed; more may follow
    kPeerClosed,  // the client sent close_notify; nothing more will come
    kFailed,      // fatal TLS error; error() says what (output may hold an
                  // alert to send before closing)
  };

  // Takes ownership of `ssl` (a server-side SSL with no BIOs yet).
  explicit TlsServerStream(SSL* ssl);
  TlsServerStream(const TlsServerStream&) = delete;
  TlsServerStream& operator=(const TlsServerStream&) = delete;
  ~TlsServerStream();

  // Feeds `ciphertext` read from the socket, advances the handshake and
  // appends whatever application data it completes to `*plain`. After
  // kFailed, every later call returns kFailed.
  Progress Receive(absl::string_view ciphertext, std::string* plain);

  // True once the handshake has completed (the client, and its certificate
  // if one is required, is verified).
  bool handshake_done() const { return handshake_done_; }

  // Encrypts `plain` into the output. REQUIRES: handshake_done(). Returns
  // false (error() says why) if OpenSSL fails.
  bool Send(absl::string_view plain);

  // Queues close_notify (a no-op unless handshake_done()); nothing may be
  // sent after it.
  void Close();

  // The ciphertext to write to the socket (handshake messages, records,
  // alerts) produced so far; empties it.
  std::string TakeOutput();

  // After kFailed or a false Send(): the error in the words of Go's
  // crypto/tls, as etcd logs it, e.g. "tls: first record does not look
  // like a TLS handshake", "tls: client didn't provide a certificate",
  // "tls: failed to verify client's certificate: x509: certificate signed
  // by unknown authority", "remote error: tls: bad certificate".
  const std::string& error() const { return error_; }

  // The client's certificate chain as sent, in PEM, leaf first; "" when it
  // sent none.
  std::string PeerChainPem() const;

  // etcd 3.4's log line for a refused connection (embed's
  // logTLSHandshakeFailure, capnslog form): rejected connection from
  // "<remote_addr>" (error "<error>", ServerName "<SNI>"[, IPAddresses
  // [..], DNSNames [..] of the client certificate, when there is one]).
  std::string RejectionLine(absl::string_view remote_addr,
                            absl::string_view error) const;

 private:
  // Go's check of the first record's header (head_); false (and failed)
  // when it is not TLS.
  bool CheckFirstRecord();
  void Fail(unsigned long err);
  // Moves decrypted data into `*plain`; false when the stream failed or the
  // peer closed (*closed set).
  bool ReadPlain(std::string* plain, bool* closed);

  SSL* ssl_;
  bool handshake_done_ = false;
  bool failed_ = false;
  // The first record's header (the first 5 bytes received).
  std::string head_;
  std::string error_;
};

class TlsServerContext {
 public:
  // Loads `info`'s certificate (with its chain), key and CA file.
  // Errors: InvalidArgument naming the file and OpenSSL's reason when one
  // cannot be read or parsed, or the key does not match the certificate;
  // InvalidArgument if cert_file or key_file is empty.
  static absl::StatusOr<std::unique_ptr<TlsServerContext>> Create(
      const TlsInfo& info);
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;
  ~TlsServerContext();

  const TlsInfo& info() const { return info_; }

  // A stream for one new connection, with the certificates on disk now
  // (re-read first; see the file comment). nullptr only if OpenSSL cannot
  // allocate one.
  std::unique_ptr<TlsServerStream> NewStream();

 private:
  // cert, key and CA file contents, concatenated with their sizes: equal
  // strings mean unchanged files.
  struct Contents;
  explicit TlsServerContext(TlsInfo info) : info_(std::move(info)) {}
  absl::Status Reload();

  const TlsInfo info_;
  SSL_CTX* ctx_ = nullptr;
  std::string loaded_;  // the contents ctx_ was built from
  std::string failed_;  // the last contents that did not load
};

}  // namespace synod::common

#endif  // SYNOD_COMMON_TLS_STREAM_H_
