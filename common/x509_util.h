// Small OpenSSL 3 helpers for X.509 certificates and keys, shared by auto
// TLS (SelfCert in tls_x509.cc), the peer-certificate checks and the tests'
// certificate authority (tests/support/test_certs.h): owning pointers,
// key generation, issuing a certificate, PEM in and out, and etcd's way of
// printing a serial number.
//
// Ownership: every X509/EVP_PKEY/X509_CRL comes back in an owning
// unique_ptr; raw pointers passed in are borrowed for the call only.
// Thread safety: every function may be called from any thread (OpenSSL 3
// needs no locking setup); an object is not shared between threads by these
// helpers.
#ifndef SYNOD_COMMON_X509_UTIL_H_
#define SYNOD_COMMON_X509_UTIL_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace synod::common {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct EvpPkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using X509CrlPtr = std::unique_ptr<X509_CRL, X509CrlFree>;

// OpenSSL's error queue for this thread as one line ("error:...; ..."), and
// the queue cleared; "unknown OpenSSL error" when it was empty.
std::string DrainOpenSslErrors();

enum class KeyType {
  kEcdsaP256,  // what auto TLS and the tests use by default: fast to make
  kRsa2048,    // for ECDHE-RSA cipher suites
};

// A new private key. Errors: Internal (OpenSSL failure).
absl::StatusOr<EvpPkeyPtr> GenerateKey(KeyType type);

// What a certificate says. Times are absolute; not_after may be in the past
// (an expired certificate for tests).
struct CertificateSpec {
  std::string common_name;   // subject CN; empty: none
  std::string organization;  // subject O; empty: none
  // Subject alternative names; an empty list of both means no SAN extension.
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // IPv4 or IPv6 literals
  absl::Time not_before;
  absl::Time not_after;
  // A CA certificate (CA:TRUE, keyCertSign + cRLSign) rather than a leaf
  // (CA:FALSE, digitalSignature + keyEncipherment, serverAuth + clientAuth).
  bool is_ca = false;
};

// A certificate for `key` with a random 128-bit serial number, signed with
// SHA-256 by `issuer_key` on behalf of `issuer`, or self-signed by `key`
// when `issuer` is null. Errors: InvalidArgument for an IP address that does
// not parse, Internal for an OpenSSL failure.
absl::StatusOr<X509Ptr> IssueCertificate(const CertificateSpec& spec,
                                         EVP_PKEY* key, X509* issuer,
                                         EVP_PKEY* issuer_key);

// Every certificate in `pem`, in order. Errors: InvalidArgument when `pem`
// holds no certificate or a block that does not parse.
absl::StatusOr<std::vector<X509Ptr>> ParsePemCertificates(absl::string_view pem);

// A CRL in PEM ("-----BEGIN X509 CRL") or DER, as Go's x509.ParseCRL takes
// it. Errors: InvalidArgument when it does not parse.
absl::StatusOr<X509CrlPtr> ParseCrl(absl::string_view pem_or_der);

// PEM text of a certificate, and of a private key in its traditional form
// ("EC PRIVATE KEY" / "RSA PRIVATE KEY", as etcd writes it). Errors:
// Internal.
absl::StatusOr<std::string> CertificateToPem(X509* cert);
absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key);

// A serial number as etcd prints it ("%x" of its big-endian magnitude bytes:
// lower-case, two digits a byte, "" for zero).
std::string SerialHex(const ASN1_INTEGER* serial);

// The subject's common name as Go reads it (the last CN attribute), "" when
// it has none.
std::string SubjectCommonName(X509* cert);

// Writes `contents` to `path` with mode `mode` by way of a temporary file in
// the same directory and a rename, so a reader sees the old file or the
// whole new one. Errors: Internal naming the path and errno's text.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents, int mode);

// The whole contents of `path`. Errors: NotFound or Internal naming the path.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// Go 1.19's x509 error text for OpenSSL's verify error `err` (an
// X509_V_ERR_* code) on `cert` (may be null: an expired certificate's
// text then leaves out the times), e.g. "x509: certificate signed by unknown
// authority", "x509: certificate has expired or is not yet valid: current
// time <RFC 3339> is after <RFC 3339>".
std::string GoVerifyError(long err, X509* cert);

}  // namespace synod::common

#endif  // SYNOD_COMMON_X509_UTIL_H_
