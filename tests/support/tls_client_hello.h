// The first flight of an OpenSSL TLS client, for tests of servers that
// read a ClientHello (HttpServer's TLS port, common/tls_client_hello.h).
// Header-only; needs OpenSSL (libssl) linked. Thread-compatible.
#ifndef SYNOD_TESTS_SUPPORT_TLS_CLIENT_HELLO_H_
#define SYNOD_TESTS_SUPPORT_TLS_CLIENT_HELLO_H_

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <string>
#include <vector>

namespace synod::testing {

// ALPN protocol names in wire form: each with a one-byte length.
inline std::string AlpnWire(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) {
    out.push_back(static_cast<char>(n.size()));
    out += n;
  }
  return out;
}

// The bytes an OpenSSL TLS client sends first (one ClientHello record),
// offering the ALPN protocols `alpn` (no ALPN extension when empty).
inline std::string ClientHello(const std::vector<std::string>& alpn = {}) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  if (!alpn.empty()) {
    std::string wire = AlpnWire(alpn);
    SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()),
                        static_cast<unsigned>(wire.size()));
  }
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, BIO_new(BIO_s_mem()), wbio);
  SSL_connect(ssl);  // fails: it waits for the ServerHello
  char* data = nullptr;
  long n = BIO_get_mem_data(wbio, &data);
  std::string hello(data, static_cast<size_t>(n));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return hello;
}

}  // namespace synod::testing

#endif  // SYNOD_TESTS_SUPPORT_TLS_CLIENT_HELLO_H_
