// Start-up helpers shared by the two programs, synod (backend/server/main.cc)
// and synod-proxy (proxy/main.cc): etcd-style flag spelling, flags from
// ETCD_* environment variables (etcd's pkg/flags.SetFlagsFromEnv), the
// host:port of a flag's URL, and the stop signals both wait for.
//
// ParseEtcdStyleFlags, InitProgram and SetFlagsFromEnv are inline so that
// only their callers (the two mains, which link absl::flags_parse and
// absl::flags_usage) need Abseil's flag parser and registry; synod_common
// does not.
//
// Thread-safety: EtcdStyleArgs is a value owned by main(); the functions
// are pure, except BlockStopSignals (see there).
#ifndef SYNOD_COMMON_FLAGS_UTIL_H_
#define SYNOD_COMMON_FLAGS_UTIL_H_

#include <signal.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace synod::common {

// The command line with etcd's dashed flag names respelled for Abseil
// (`--listen-client-urls=x` -> `--listen_client_urls=x`, and so with one
// leading dash, as Go's flag package allows); values, the program name,
// arguments not starting with "-" and everything after a bare "--" are kept
// as they are. Owns the strings that argv() points to.
class EtcdStyleArgs {
 public:
  EtcdStyleArgs(int argc, char** argv);
  EtcdStyleArgs(const EtcdStyleArgs&) = delete;
  EtcdStyleArgs& operator=(const EtcdStyleArgs&) = delete;

  int argc() const { return static_cast<int>(ptrs_.size()); }
  // Valid while this object lives.
  char** argv() { return ptrs_.data(); }
  // The flag names the command line gives, respelled ("listen_client_urls"),
  // without their dashes and values. A value given as its own argument that
  // starts with "-" is listed too (it names no flag, or is one).
  const std::vector<std::string>& flag_names() const { return names_; }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> ptrs_;
  std::vector<std::string> names_;
};

// Sets the program's `usage` message and parses the command line into the
// program's ABSL_FLAGs, accepting etcd's dashed spelling of every flag
// (EtcdStyleArgs). As absl::ParseCommandLine, exits the process on an
// unknown flag or a bad value, and for --help. Returns the flag names the
// command line gave (EtcdStyleArgs::flag_names).
inline std::vector<std::string> ParseEtcdStyleFlags(int argc, char** argv,
                                                    absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  EtcdStyleArgs args(argc, argv);
  absl::ParseCommandLine(args.argc(), args.argv());
  return args.flag_names();
}

// What both programs do first, before any thread starts: turn off Abseil's
// mutex deadlock detection, then ParseEtcdStyleFlags (whose result it
// returns). Detection costs CPU on every lock (~6% of synod's under load,
// bench/RESULTS.md; 2.7% of the proxy's fan-out profile); the lock orders
// are written down and the tests run with it on (the debug default).
inline std::vector<std::string> InitProgram(int argc, char** argv,
                                            absl::string_view usage) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return ParseEtcdStyleFlags(argc, argv, usage);
}

// etcd's pkg/flags.FlagToEnv: ("ETCD", "listen-client-urls") ->
// "ETCD_LISTEN_CLIENT_URLS" (dashes and underscores alike become '_').
std::string FlagToEnv(absl::string_view prefix, absl::string_view flag_name);

// What etcd's SetFlagsFromEnv does with an environment, decided without
// touching any flag (SetFlagsFromEnv below applies it).
struct EnvFlagPlan {
  struct Setting {
    std::string flag;   // as given in `flag_names`
    std::string key;    // "ETCD_NAME"
    std::string value;  // never empty
  };
  std::vector<Setting> set;
  // "ETCD_FOO=1": variables with the prefix that set nothing (they name no
  // flag, or are empty); etcd warns "unrecognized environment variable
  // ETCD_FOO=1".
  std::vector<std::string> unrecognized;
};

// For every flag in `flag_names` not in `on_command_line`, the variable
// FlagToEnv(prefix, flag) when `env_entries` ("KEY=value") holds it with
// a non-empty value. Error (FailedPrecondition, etcd's words): a variable for
// a flag that the command line also gives, even with an empty value:
//   conflicting environment variable "ETCD_NAME" is shadowed by
//   corresponding command-line flag (either unset environment variable or
//   disable flag)
absl::StatusOr<EnvFlagPlan> PlanFlagsFromEnv(
    absl::string_view prefix, const std::vector<std::string>& flag_names,
    const absl::flat_hash_set<std::string>& on_command_line,
    const std::vector<std::string>& env_entries);

// The process environment as "KEY=value" entries.
std::vector<std::string> ProcessEnviron();

// etcd's SetFlagsFromEnv over this program's own ABSL_FLAGs (Abseil's
// --flagfile, --fromenv, ... are left out): sets each flag that
// `command_line_flags` (ParseEtcdStyleFlags' result) does not give from its
// ETCD_-style variable. Appends to `used` ("ETCD_NAME=m1") and `unrecognized`
// ("ETCD_FOO=1") what etcd logs as "recognized and used environment
// variable" and "unrecognized environment variable". Errors:
// FailedPrecondition as PlanFlagsFromEnv; InvalidArgument, etcd's words, for
// a value the flag rejects: invalid value "abc" for ETCD_HEARTBEAT_INTERVAL:
// <the flag's message>. Call once, from main, before any thread starts.
inline absl::Status SetFlagsFromEnv(absl::string_view prefix,
                                    const std::vector<std::string>& command_line_flags,
                                    std::vector<std::string>* used,
                                    std::vector<std::string>* unrecognized) {
  std::vector<std::string> names;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->IsRetired() || absl::StrContains(flag->Filename(), "absl/flags")) continue;
    names.emplace_back(name);
  }
  absl::flat_hash_set<std::string> given;
  for (const std::string& n : command_line_flags) {
    given.insert(n);
    // Abseil's "--nofoo" sets the bool flag foo.
    if (absl::StartsWith(n, "no") && absl::FindCommandLineFlag(n) == nullptr) {
      given.insert(n.substr(2));
    }
  }
  absl::StatusOr<EnvFlagPlan> plan = PlanFlagsFromEnv(prefix, names, given, ProcessEnviron());
  if (!plan.ok()) return plan.status();
  for (const EnvFlagPlan::Setting& s : plan->set) {
    std::string error;
    if (!absl::FindCommandLineFlag(s.flag)->ParseFrom(s.value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value \"", s.value, "\" for ", s.key, ": ", error));
    }
    used->push_back(absl::StrCat(s.key, "=", s.value));
  }
  unrecognized->insert(unrecognized->end(), plan->unrecognized.begin(),
                       plan->unrecognized.end());
  return absl::OkStatus();
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
