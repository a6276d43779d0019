// TcpRelay: forwards whole TCP connections, byte for byte and in both
// directions, to one target address. A member's https client port uses it
// to pass gRPC clients' connections, still encrypted and unread, to gRPC's
// own TLS listener on a loopback port (see common/tls_client_hello.h), so
// gRPC does the handshake and sees the client's certificate; the same
// port serves HTTPS/1.x itself.
//
// Each relayed connection: the relay connects to the target; bytes read on
// either side are written to the other; one side's EOF is passed on as a
// half-close (shutdown of the other side's write direction), and the pair
// closes once both directions have ended; an error on either side (or a
// failed connect) closes both at once. A side whose peer does not read has
// at most kRelayHighWaterBytes queued before the relay stops reading from
// the sender (back-pressure); reading resumes once the queue drains below
// half of that.
//
// Ownership: the relay owns its libuv loop, thread and every socket given
// to Relay(). Thread safety: every method may be called from any thread;
// Stop() and the destructor must not be called concurrently with Start().
#ifndef SYNOD_COMMON_TCP_RELAY_H_
#define SYNOD_COMMON_TCP_RELAY_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"

namespace synod::common {

// Bytes queued towards one side before reading from the other pauses.
inline constexpr size_t kRelayHighWaterBytes = 1 << 20;

class TcpRelay {
 public:
  TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;
  // Calls Stop().
  ~TcpRelay();

  // Starts the relay thread, relaying to `host` (an IPv4 or IPv6 literal)
  // and `port` (1..65535). Errors: InvalidArgument for a bad address;
  // FailedPrecondition if already started; Internal for a libuv failure.
  absl::Status Start(const std::string& host, int port);

  // Relays `fd`, a connected TCP socket whose ownership it takes (closed
  // when the relayed connection ends, or at once if the relay is not
  // running). Returns at once; the work happens on the relay thread.
  void Relay(int fd);

  // Closes every relayed connection and joins the thread. Idempotent.
  void Stop();

  // Relayed connections now open (for tests and metrics).
  size_t open_connections() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace synod::common

#endif  // SYNOD_COMMON_TCP_RELAY_H_
