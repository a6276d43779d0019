#include "tests/support/free_port.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace synod::testing {

namespace {

// The kernel's ephemeral range (bind to port 0, and the source port of every
// outgoing connection), from /proc; Linux's default when unreadable.
std::pair<int, int> EphemeralPortRange() {
  int lo = 32768, hi = 60999;
  std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
  int a = 0, b = 0;
  if (f >> a >> b && a > 0 && b >= a) {
    lo = a;
    hi = b;
  }
  return {lo, hi};
}

// True when nothing is bound to 127.0.0.1:port right now (a plain bind, no
// SO_REUSEADDR/SO_REUSEPORT, fails on any listener or connected socket).
bool BindsNow(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// Reserves `port` for this process among every process that uses this
// harness: an exclusive flock on <tmp>/synod_it_ports/<port>, held until
// the process exits (the fd is close-on-exec, so children do not keep it).
bool ReservePort(const std::string& dir, int port) {
  const std::string path = absl::StrCat(dir, "/", port);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return false;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return false;
  }
  return true;  // fd intentionally leaked: the lock lives as long as we do
}

}  // namespace

int PickFreePort() {
  static std::mutex mu;
  static std::set<int>* used = new std::set<int>();
  static std::mt19937* rng = new std::mt19937(static_cast<uint32_t>(
      getpid() ^ absl::ToUnixNanos(absl::Now())));
  std::lock_guard<std::mutex> lock(mu);
  // ctest -j runs several test processes at once. A port picked by binding
  // port 0 comes from the ephemeral range, where another process can be
  // handed the same one, or take it as an outgoing connection's source port,
  // before our server binds it; and gRPC servers listen with SO_REUSEPORT,
  // so two servers on one port both start and split its connections. So
  // ports come from below the ephemeral range, and a lock file reserves
  // each one across processes.
  const char* tmp = getenv("TMPDIR");
  const std::string dir = absl::StrCat(
      (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp", "/synod_it_ports");
  mkdir(dir.c_str(), 0777);
  const auto [eph_lo, eph_hi] = EphemeralPortRange();
  constexpr int kLowest = 10000;  // above well-known and common dev ports
  int lo = kLowest, hi = eph_lo - 1;
  if (hi - lo < 1000) {  // the ephemeral range starts low: use above it
    lo = std::max(kLowest, eph_hi + 1);
    hi = 65535;
  }
  std::uniform_int_distribution<int> dist(lo, hi);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = dist(*rng);
    if (used->count(port) != 0 || !BindsNow(port)) continue;
    if (!ReservePort(dir, port)) continue;
    used->insert(port);
    return port;
  }
  ADD_FAILURE() << "could not find a free port in " << lo << ".." << hi;
  return 0;
}

}  // namespace synod::testing
