// Start-up helpers shared by the two programs, synod (backend/server/main.cc)
// and synod-proxy (proxy/main.cc): etcd-style flag spelling, the host:port
// of a flag's URL, and the stop signals both wait for.
//
// ParseEtcdStyleFlags and InitProgram are inline so that only their callers (the two mains,
// which link absl::flags_parse and absl::flags_usage) need Abseil's flag
// parser; synod_common does not.
//
// Thread-safety: EtcdStyleArgs is a value owned by main(); the functions
// are pure, except BlockStopSignals (see there).
#ifndef SYNOD_COMMON_FLAGS_UTIL_H_
#define SYNOD_COMMON_FLAGS_UTIL_H_

#include <signal.h>

#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace synod::common {

// The command line with etcd's dashed flag names respelled for Abseil
// (`--listen-client-urls=x` -> `--listen_client_urls=x`); values, the
// program name and arguments not starting with "--" are kept as they are.
// Owns the strings that argv() points to.
class EtcdStyleArgs {
 public:
  EtcdStyleArgs(int argc, char** argv);
  EtcdStyleArgs(const EtcdStyleArgs&) = delete;
  EtcdStyleArgs& operator=(const EtcdStyleArgs&) = delete;

  int argc() const { return static_cast<int>(ptrs_.size()); }
  // Valid while this object lives.
  char** argv() { return ptrs_.data(); }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> ptrs_;
};

// Sets the program's `usage` message and parses the command line into the
// program's ABSL_FLAGs, accepting etcd's dashed spelling of every flag
// (EtcdStyleArgs). As absl::ParseCommandLine, exits the process on an
// unknown flag or a bad value, and for --help.
inline void ParseEtcdStyleFlags(int argc, char** argv, absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  EtcdStyleArgs args(argc, argv);
  absl::ParseCommandLine(args.argc(), args.argv());
}

// What both programs do first, before any thread starts: turn off Abseil's
// mutex deadlock detection, then ParseEtcdStyleFlags. Detection costs CPU
// on every lock (~6% of synod's under load, bench/RESULTS.md; 2.7% of the
// proxy's fan-out profile); the lock orders are written down and the tests
// run with it on (the debug default).
inline void InitProgram(int argc, char** argv, absl::string_view usage) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  ParseEtcdStyleFlags(argc, argv, usage);
}

// "http://127.0.0.1:2379/" -> "127.0.0.1:2379": drops a leading "http://"
// or "https://" and a trailing "/" (either may be absent).
std::string UrlHostPort(absl::string_view url);

// Splits "host:port" at its last ':' into *host and a decimal *port.
// Returns false (outputs unspecified) when there is no ':' or the port is
// not a number.
bool SplitHostPort(absl::string_view host_port, std::string* host, int* port);

// Blocks SIGINT and SIGTERM in the calling thread, and so in every thread it
// starts afterwards, so that the caller can take them with sigwait on the
// returned set; ignores SIGPIPE (a peer that closes its socket must not end
// the process). Call from main() before starting any thread.
sigset_t BlockStopSignals();

}  // namespace synod::common

#endif  // SYNOD_COMMON_FLAGS_UTIL_H_
