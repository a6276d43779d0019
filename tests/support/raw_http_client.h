// A raw HTTP/1.x client for tests of HttpServer and what it serves: a
// blocking POSIX socket to 127.0.0.1, byte-exact sends and reads, and a
// decoder for chunked bodies. Header-only; every receive is bounded by the
// socket's timeout, so a test that would hang fails instead.
// Thread-compatible: each function touches only the fd it is given.
#ifndef SYNOD_TESTS_SUPPORT_RAW_HTTP_CLIENT_H_
#define SYNOD_TESTS_SUPPORT_RAW_HTTP_CLIENT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace synod::testing {

// Connects to 127.0.0.1:`port` with send and receive timeouts of
// `timeout_s` seconds. Returns the fd, or -1 (with a test failure if no
// socket could be made).
inline int RawConnect(int port, int timeout_s = 5) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends all of `data`; stops early if the peer closes or resets (a server
// may answer and close before reading everything).
inline void RawSendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += n;
  }
}

// Appends to `got` until it contains `want` (never, if `want` is empty),
// the peer closes, or the receive times out. Returns true if the peer
// closed (EOF) rather than the read failing or timing out.
inline bool RawReadUntil(int fd, const std::string& want, std::string* got) {
  char buf[65536];
  while (want.empty() || got->find(want) == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return n == 0;
    got->append(buf, n);
  }
  return false;
}

// The payload of a chunked body; "<bad chunking>" if it is malformed or
// lacks its last chunk. With `so_far`, a body still coming in: the payload
// of its complete chunks.
inline std::string Unchunk(const std::string& body, bool so_far = false) {
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) return so_far ? out : "<bad chunking>";
    size_t n = std::stoul(body.substr(pos, eol - pos), nullptr, 16);
    if (n == 0) return body.substr(eol + 2) == "\r\n" ? out : "<bad chunking>";
    if (body.size() < eol + 2 + n + 2) return so_far ? out : "<bad chunking>";
    out += body.substr(eol + 2, n);
    pos = eol + 2 + n + 2;
  }
}

}  // namespace synod::testing

#endif  // SYNOD_TESTS_SUPPORT_RAW_HTTP_CLIENT_H_
