// Routing a TLS connection by its ClientHello, before any byte is consumed:
// a client URL that is https serves gRPC and HTTP/1 (the JSON gateway,
// /metrics, /health, /version) on one port, as etcd's does. etcd's Go
// server can take both over HTTP/2 after the handshake; gRPC's C++ server
// cannot serve HTTP/1 and owns its TLS, so Synod decides from the
// ClientHello's ALPN offer (RFC 7301), read with MSG_PEEK:
//  - a client that offers "h2" and not "http/1.1" is a gRPC client (grpc-go,
//    gRPC C core, grpc-java and grpc-js offer exactly that) and goes to
//    gRPC's TLS listener, TLS end to end, so gRPC sees its certificate;
//  - anything else (curl and browsers offer "h2,http/1.1"; many clients
//    offer no ALPN) is served as HTTPS/1.x, where the server selects no ALPN
//    protocol, so such a client speaks HTTP/1.1.
//
// Thread safety: pure functions.
#ifndef SYNOD_COMMON_TLS_CLIENT_HELLO_H_
#define SYNOD_COMMON_TLS_CLIENT_HELLO_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace synod::common {

enum class ClientHelloRoute {
  // `bytes` is a prefix of a TLS handshake record that could still turn out
  // either way; wait for more (at most kMaxClientHelloPeekBytes in all).
  kNeedMore,
  // A ClientHello whose ALPN extension lists "h2" and not "http/1.1".
  kHttp2Only,
  // Anything else: another ALPN offer or none, a ClientHello split over
  // several records, or bytes that are not TLS at all (the HTTPS/1 side
  // answers those as etcd does).
  kOther,
};

// The most bytes a caller needs to peek: one whole TLS record (5 bytes of
// header and at most 2^14 of payload, RFC 8446 §5.1).
inline constexpr size_t kMaxClientHelloPeekBytes = 5 + (1 << 14);

// Classifies the first bytes a client sent on a TLS port (RFC 8446 §4.1.2
// for the ClientHello's layout, RFC 7301 §3.1 for ALPN's). Never reads past
// `bytes`; any malformed length gives kOther.
ClientHelloRoute ClassifyClientHello(absl::string_view bytes);

}  // namespace synod::common

#endif  // SYNOD_COMMON_TLS_CLIENT_HELLO_H_
