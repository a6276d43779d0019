// What tls.cc and tls_x509.cc tell each other, and nothing else includes.
//
// Thread-safe.
#ifndef SYNOD_COMMON_TLS_INTERNAL_H_
#define SYNOD_COMMON_TLS_INTERNAL_H_

namespace synod::common::tls_internal {

// Records that TLS credentials exist in this process, so gRPC may already
// have read its cipher list: SetProcessCipherSuites fails from then on.
// Called by NewServerCredentials and NewChannelCredentials.
void NoteCredentialsCreated();

}  // namespace synod::common::tls_internal

#endif  // SYNOD_COMMON_TLS_INTERNAL_H_
