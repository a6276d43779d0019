#include "common/tls_stream.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/x509_util.h"

namespace synod::common {
namespace {

// Go's crypto/tls names for TLS alerts (alert.go).
const char* GoAlertText(int alert) {
  switch (alert) {
    case 0:
      return "close notify";
    case 10:
      return "unexpected message";
    case 20:
      return "bad record MAC";
    case 21:
      return "decryption failed";
    case 22:
      return "record overflow";
    case 30:
      return "decompression failure";
    case 40:
      return "handshake failure";
    case 42:
      return "bad certificate";
    case 43:
      return "unsupported certificate";
    case 44:
      return "revoked certificate";
    case 45:
      return "expired certificate";
    case 46:
      return "unknown certificate";
    case 47:
      return "illegal parameter";
    case 48:
      return "unknown certificate authority";
    case 49:
      return "access denied";
    case 50:
      return "error decoding message";
    case 51:
      return "error decrypting message";
    case 70:
      return "protocol version not supported";
    case 71:
      return "insufficient security level";
    case 80:
      return "internal error";
    case 86:
      return "inappropriate fallback";
    case 90:
      return "user canceled";
    case 100:
      return "no renegotiation";
    case 109:
      return "missing extension";
    case 110:
      return "unsupported extension";
    case 112:
      return "unrecognized name";
    case 116:
      return "certificate required";
    case 120:
      return "no application protocol";
    default:
      return nullptr;
  }
}

// Go's x509 words for a failed chain verification.
// Go's %q, enough for log text: quotes, backslashes and control bytes
// escaped.
std::string GoQuote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string GoQuoteList(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const std::string& s : items) quoted.push_back(GoQuote(s));
  return absl::StrCat("[", absl::StrJoin(quoted, " "), "]");
}

// OpenSSL's reason for the oldest queued error, or `fallback`.
std::string OpenSslReason(const char* fallback) {
  unsigned long err = ERR_peek_error();
  const char* reason = err == 0 ? nullptr : ERR_reason_error_string(err);
  ERR_clear_error();
  return reason != nullptr ? reason : fallback;
}

absl::Status FileError(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Builds a server SSL_CTX from the files' contents.
absl::StatusOr<SSL_CTX*> BuildContext(const TlsInfo& info,
                                      const std::string& cert,
                                      const std::string& key,
                                      const std::string& ca) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    return absl::InternalError(
        absl::StrCat("SSL_CTX_new: ", OpenSslReason("failed")));
  }
  auto fail = [ctx](absl::Status st) {
    SSL_CTX_free(ctx);
    return st;
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // No resumption (each connection verifies its client against the CA of
  // the moment), no renegotiation (a client could make the server redo
  // handshakes at will).
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);

  absl::StatusOr<std::vector<X509Ptr>> chain = ParsePemCertificates(cert);
  if (!chain.ok())
    return fail(FileError(info.cert_file, chain.status().message()));
  bool used = SSL_CTX_use_certificate(ctx, chain->front().get()) == 1;
  for (size_t i = 1; used && i < chain->size(); ++i) {
    used = SSL_CTX_add1_chain_cert(ctx, (*chain)[i].get()) == 1;
  }
  if (!used) {
    return fail(FileError(info.cert_file, OpenSslReason("unusable")));
  }
  BIO* key_bio = BIO_new_mem_buf(key.data(), static_cast<int>(key.size()));
  EVP_PKEY* pkey = key_bio == nullptr ? nullptr
                                      : PEM_read_bio_PrivateKey(
                                            key_bio, nullptr, nullptr, nullptr);
  BIO_free(key_bio);
  if (pkey == nullptr) {
    return fail(FileError(
        info.key_file,
        absl::StrCat("no PEM private key (", OpenSslReason("none"), ")")));
  }
  used = SSL_CTX_use_PrivateKey(ctx, pkey) == 1;
  EVP_PKEY_free(pkey);
  if (!used || SSL_CTX_check_private_key(ctx) != 1) {
    return fail(FileError(
        info.key_file,
        absl::StrCat("private key does not match public key in ",
                     info.cert_file, " (", OpenSslReason("mismatch"), ")")));
  }
  if (info.RequiresClientCert()) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       nullptr);
    if (info.trusted_ca_file.empty()) {
      SSL_CTX_set_default_verify_paths(ctx);
    } else {
      absl::StatusOr<std::vector<X509Ptr>> cas = ParsePemCertificates(ca);
      if (!cas.ok()) {
        return fail(FileError(info.trusted_ca_file, cas.status().message()));
      }
      X509_STORE* store = SSL_CTX_get_cert_store(ctx);
      bool ok = true;
      for (const X509Ptr& x : *cas) {
        // The CA's names go in the CertificateRequest, as Go sends them.
        ok = ok && X509_STORE_add_cert(store, x.get()) == 1 &&
             SSL_CTX_add_client_CA(ctx, x.get()) == 1;
      }
      if (!ok) {
        return fail(FileError(info.trusted_ca_file, OpenSslReason("unusable")));
      }
    }
  }
  return ctx;
}

// SHA-256 over the length-prefixed parts: equal digests mean equal files,
// without keeping the private key's bytes around.
std::string Digest(const std::vector<std::string>& parts) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
  for (const std::string& p : parts) {
    std::string len = absl::StrCat(p.size(), ":");
    EVP_DigestUpdate(md, len.data(), len.size());
    EVP_DigestUpdate(md, p.data(), p.size());
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(md, out, &n);
  EVP_MD_CTX_free(md);
  return std::string(reinterpret_cast<char*>(out), n);
}

}  // namespace

// ---- TlsServerStream ----

TlsServerStream::TlsServerStream(SSL* ssl) : ssl_(ssl) {
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  // An empty read BIO means "wait for more", never end of stream: the
  // socket's end is the caller's to report.
  BIO_set_mem_eof_return(rbio, -1);
  SSL_set_bio(ssl_, rbio, wbio);
  SSL_set_accept_state(ssl_);
}

TlsServerStream::~TlsServerStream() { SSL_free(ssl_); }

TlsServerStream::Progress TlsServerStream::Receive(absl::string_view ciphertext,
                                                   std::string* plain) {
  if (failed_) return Progress::kFailed;
  if (head_.size() < 5) {
    absl::string_view first = ciphertext.substr(0, 5 - head_.size());
    head_.append(first.data(), first.size());
    if (head_.size() == 5 && !CheckFirstRecord()) return Progress::kFailed;
  }
  BIO* rbio = SSL_get_rbio(ssl_);
  while (!ciphertext.empty()) {
    int chunk = static_cast<int>(std::min<size_t>(ciphertext.size(), 1 << 20));
    int n = BIO_write(rbio, ciphertext.data(), chunk);
    if (n <= 0) {
      Fail(0);
      return Progress::kFailed;
    }
    ciphertext.remove_prefix(n);
  }
  ERR_clear_error();
  if (!handshake_done_) {
    int rc = SSL_do_handshake(ssl_);
    if (rc != 1) {
      int e = SSL_get_error(ssl_, rc);
      if (e == SSL_ERROR_WANT_READ) return Progress::kOk;
      if (e == SSL_ERROR_ZERO_RETURN) {
        // close_notify before the handshake completed: Go reads it as EOF.
        failed_ = true;
        error_ = "EOF";
        return Progress::kFailed;
      }
      Fail(e == SSL_ERROR_SSL ? ERR_peek_error() : 0);
      return Progress::kFailed;
    }
    handshake_done_ = true;
  }
  char buf[16 * 1024];
  for (;;) {
    int n = SSL_read(ssl_, buf, sizeof(buf));
    if (n > 0) {
      plain->append(buf, n);
      continue;
    }
    int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ) return Progress::kOk;
    if (e == SSL_ERROR_ZERO_RETURN) return Progress::kPeerClosed;
    Fail(e == SSL_ERROR_SSL ? ERR_peek_error() : 0);
    return Progress::kFailed;
  }
}

bool TlsServerStream::CheckFirstRecord() {
  unsigned char type = head_[0];
  unsigned char major = head_[1];
  // Go's readRecordOrCCS on the first record header (before a version is
  // agreed): SSLv2, or neither a handshake (22) nor an alert (21) record, or
  // a version of 16.0 or more.
  if (type == 0x80) {
    error_ = "tls: unsupported SSLv2 handshake received";
  } else if ((type != 21 && type != 22) || major >= 0x10) {
    error_ = "tls: first record does not look like a TLS handshake";
  } else {
    return true;
  }
  failed_ = true;
  return false;
}

void TlsServerStream::Fail(unsigned long err) {
  failed_ = true;
  int reason = ERR_GET_REASON(err);
  if (err != 0 && ERR_GET_LIB(err) == ERR_LIB_SSL) {
    if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
      int alert = reason - SSL_AD_REASON_OFFSET;
      const char* text = GoAlertText(alert);
      error_ = text != nullptr
                   ? absl::StrCat("remote error: tls: ", text)
                   : absl::StrCat("remote error: tls: alert(", alert, ")");
    } else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
      error_ = "tls: client didn't provide a certificate";
    } else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      error_ = absl::StrCat("tls: failed to verify client's certificate: ",
                            GoVerifyError(SSL_get_verify_result(ssl_), SSL_get0_peer_certificate(ssl_)));
    } else if (reason == SSL_R_NO_SHARED_CIPHER) {
      error_ = "tls: no cipher suite supported by both client and server";
    } else if (reason == SSL_R_UNSUPPORTED_PROTOCOL) {
      error_ = "tls: client offered only unsupported versions";
    }
  }
  if (error_.empty()) {
    const char* text = err == 0 ? nullptr : ERR_reason_error_string(err);
    error_ = absl::StrCat("tls: ", text != nullptr ? text : "internal error");
  }
  ERR_clear_error();
}

bool TlsServerStream::Send(absl::string_view plain) {
  if (failed_) return false;
  ERR_clear_error();
  while (!plain.empty()) {
    int chunk = static_cast<int>(std::min<size_t>(plain.size(), 1 << 20));
    int n = SSL_write(ssl_, plain.data(), chunk);
    if (n <= 0) {
      Fail(ERR_peek_error());
      return false;
    }
    plain.remove_prefix(n);
  }
  return true;
}

void TlsServerStream::Close() {
  if (!handshake_done_ || failed_) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // queues close_notify; returns 0 (not yet answered)
  ERR_clear_error();
}

std::string TlsServerStream::TakeOutput() {
  BIO* wbio = SSL_get_wbio(ssl_);
  std::string out(BIO_ctrl_pending(wbio), '\0');
  size_t off = 0;
  while (off < out.size()) {
    int n =
        BIO_read(wbio, out.data() + off,
                 static_cast<int>(std::min<size_t>(out.size() - off, 1 << 30)));
    if (n <= 0) break;
    off += n;
  }
  out.resize(off);
  return out;
}

std::string TlsServerStream::PeerChainPem() const {
  X509* leaf = SSL_get0_peer_certificate(ssl_);
  if (leaf == nullptr) return "";
  std::string pem;
  auto append = [&pem](X509* x) {
    absl::StatusOr<std::string> one = CertificateToPem(x);
    if (one.ok()) pem += *one;
  };
  append(leaf);
  // On a server the chain as sent does not include the leaf.
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl_);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    X509* x = sk_X509_value(chain, i);
    if (X509_cmp(x, leaf) != 0) append(x);
  }
  return pem;
}

std::string TlsServerStream::RejectionLine(absl::string_view remote_addr,
                                           absl::string_view error) const {
  const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  std::string line = absl::StrCat(
      "rejected connection from ", GoQuote(remote_addr), " (error ",
      GoQuote(error), ", ServerName ", GoQuote(sni != nullptr ? sni : ""));
  X509* leaf = SSL_get0_peer_certificate(ssl_);
  if (leaf != nullptr) {
    std::vector<std::string> ips, dns;
    auto* names = static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr));
    for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
      if (name->type == GEN_DNS) {
        const ASN1_IA5STRING* s = name->d.dNSName;
        dns.emplace_back(
            reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
            ASN1_STRING_length(s));
      } else if (name->type == GEN_IPADD) {
        const ASN1_OCTET_STRING* s = name->d.iPAddress;
        char text[INET6_ADDRSTRLEN] = "";
        int len = ASN1_STRING_length(s);
        if ((len == 4 || len == 16) &&
            inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s),
                      text, sizeof(text)) != nullptr) {
          ips.emplace_back(text);
        }
      }
    }
    GENERAL_NAMES_free(names);
    absl::StrAppend(&line, ", IPAddresses ", GoQuoteList(ips), ", DNSNames ",
                    GoQuoteList(dns));
  }
  return line + ")";
}

// ---- TlsServerContext ----

absl::StatusOr<std::unique_ptr<TlsServerContext>> TlsServerContext::Create(
    const TlsInfo& info) {
  if (info.cert_file.empty() || info.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KeyFile and CertFile must both be present[key: ", info.key_file,
        ", cert: ", info.cert_file, "]"));
  }
  std::unique_ptr<TlsServerContext> ctx(new TlsServerContext(info));
  absl::Status st = ctx->Reload();
  if (!st.ok()) return st;
  return ctx;
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

absl::Status TlsServerContext::Reload() {
  absl::StatusOr<std::string> cert = ReadWholeFile(info_.cert_file);
  absl::StatusOr<std::string> key = ReadWholeFile(info_.key_file);
  absl::StatusOr<std::string> ca = std::string();
  if (info_.RequiresClientCert() && !info_.trusted_ca_file.empty()) {
    ca = ReadWholeFile(info_.trusted_ca_file);
  }
  // A file that cannot be read counts as its error text, so that an
  // unreadable file is reported once, not at every connection.
  auto part = [](const absl::StatusOr<std::string>& s) {
    return s.ok() ? *s : absl::StrCat("!", s.status().message());
  };
  std::string digest = Digest({part(cert), part(key), part(ca)});
  if (digest == loaded_) return absl::OkStatus();
  if (digest == failed_) return absl::OkStatus();  // already reported
  absl::StatusOr<SSL_CTX*> built =
      !cert.ok()  ? absl::InvalidArgumentError(cert.status().message())
      : !key.ok() ? absl::InvalidArgumentError(key.status().message())
      : !ca.ok()  ? absl::InvalidArgumentError(ca.status().message())
                  : BuildContext(info_, *cert, *key, *ca);
  if (!built.ok()) {
    failed_ = digest;
    return built.status();
  }
  SSL_CTX_free(ctx_);  // streams made from it keep their own reference
  ctx_ = *built;
  loaded_ = digest;
  failed_.clear();
  return absl::OkStatus();
}

std::unique_ptr<TlsServerStream> TlsServerContext::NewStream() {
  absl::Status st = Reload();
  if (!st.ok()) {
    SYNOD_LOG(WARNING) << "TLS: " << st.message()
                       << "; new connections keep the certificate loaded "
                          "before";
  }
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  return std::make_unique<TlsServerStream>(ssl);
}

}  // namespace synod::common
