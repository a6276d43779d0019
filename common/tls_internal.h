// What tls.cc and tls_x509.cc tell each other, and nothing else includes:
// X.509 work that the gRPC side needs but that is no part of tls.h's API.
//
// Thread-safe: every function may be called from any thread.
#ifndef SYNOD_COMMON_TLS_INTERNAL_H_
#define SYNOD_COMMON_TLS_INTERNAL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace synod::common::tls_internal {

// Records that TLS credentials exist in this process, so gRPC may already
// have read its cipher list: SetProcessCipherSuites fails from then on.
// Called by NewServerCredentials and NewChannelCredentials.
void NoteCredentialsCreated();

// Whose certificate a chain is, which decides the extended key usage it
// needs and how Go words a failure.
enum class ChainOwner {
  kClient,  // verified by a listener: clientAuth, "tls: failed to verify
            // client certificate: x509: ..."
  kServer,  // verified by a dialer: serverAuth, "x509: ..."
};

// Verifies `chain_pem` (leaf first; the rest are untrusted intermediates)
// against the CA certificates in `ca_file` at the current time, as Go's
// crypto/tls does, so that a failure has Go's words: "x509: certificate has
// expired or is not yet valid: current time <RFC 3339> is after <RFC 3339>",
// "x509: certificate signed by unknown authority", "x509: certificate
// specifies an incompatible key usage". For a listener that verifies in its
// own verifier rather than in OpenSSL's handshake (whose error says only
// "certificate verify failed"). No CRL: CheckPeerCertificate does that.
// Errors: PermissionDenied with those words; InvalidArgument for a chain or
// CA file that does not parse; NotFound/Internal for an unreadable CA file.
absl::Status VerifyChain(const std::string& ca_file,
                         absl::string_view chain_pem, ChainOwner owner);

// `chain_pem` with `leaf_pem` in front unless it is already its first
// certificate. On a listener, OpenSSL's peer chain leaves out the leaf, and
// a gRPC (OpenSSL) client sends its CA after the leaf, so gRPC's
// peer_cert_full_chain starts with the CA: CheckPeerCertificate needs the
// leaf first. Either input may be empty; unparseable input is kept as is.
std::string LeafFirstChain(absl::string_view leaf_pem,
                           absl::string_view chain_pem);

}  // namespace synod::common::tls_internal

#endif  // SYNOD_COMMON_TLS_INTERNAL_H_
