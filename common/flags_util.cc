#include "common/flags_util.h"

#include <pthread.h>

#include <algorithm>
#include <cctype>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace synod::common {

EtcdStyleArgs::EtcdStyleArgs(int argc, char** argv) {
  storage_.reserve(argc);
  bool flags_ended = false;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") flags_ended = true;
    if (i > 0 && !flags_ended && absl::StartsWith(a, "-") && a.size() > 1 &&
        a != "--") {
      const size_t start = absl::StartsWith(a, "--") ? 2 : 1;
      const size_t end = std::min(a.find('='), a.size());
      for (size_t j = start; j < end; ++j) {
        if (a[j] == '-') a[j] = '_';
      }
      names_.push_back(a.substr(start, end - start));
    }
    storage_.push_back(std::move(a));
  }
  for (std::string& s : storage_) ptrs_.push_back(s.data());
}

std::string FlagToEnv(absl::string_view prefix, absl::string_view flag_name) {
  std::string key = absl::StrCat(prefix, "_", flag_name);
  for (size_t i = prefix.size() + 1; i < key.size(); ++i) {
    key[i] = key[i] == '-' ? '_' : static_cast<char>(std::toupper(key[i]));
  }
  return key;
}

absl::StatusOr<EnvFlagPlan> PlanFlagsFromEnv(
    absl::string_view prefix, const std::vector<std::string>& flag_names,
    const absl::flat_hash_set<std::string>& on_command_line,
    const std::vector<std::string>& env_entries) {
  absl::flat_hash_map<std::string, std::string> env;  // first entry wins, as getenv
  for (const std::string& e : env_entries) {
    const size_t eq = e.find('=');
    env.emplace(e.substr(0, eq), eq == std::string::npos ? "" : e.substr(eq + 1));
  }
  absl::flat_hash_map<std::string, const std::string*> flag_of_key;
  for (const std::string& f : flag_names) flag_of_key[FlagToEnv(prefix, f)] = &f;
  absl::flat_hash_set<std::string> shadowed;
  for (const std::string& f : on_command_line) shadowed.insert(FlagToEnv(prefix, f));

  EnvFlagPlan plan;
  absl::flat_hash_set<std::string> used;
  for (const std::string& f : flag_names) {
    const std::string key = FlagToEnv(prefix, f);
    auto it = env.find(key);
    if (shadowed.contains(key) || it == env.end() || it->second.empty()) continue;
    used.insert(key);
    plan.set.push_back({f, key, it->second});
  }
  // etcd's verifyEnv, in the environment's order.
  const std::string wanted = absl::StrCat(prefix, "_");
  for (const std::string& e : env_entries) {
    const std::string key = e.substr(0, e.find('='));
    if (used.contains(key)) continue;
    if (shadowed.contains(key) && flag_of_key.contains(key)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "conflicting environment variable \"", key,
          "\" is shadowed by corresponding command-line flag (either unset "
          "environment variable or disable flag)"));
    }
    if (absl::StartsWith(e, wanted)) {
      plan.unrecognized.push_back(e);
    }
  }
  return plan;
}

std::vector<std::string> ProcessEnviron() {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) out.emplace_back(*e);
  return out;
}

std::string UrlHostPort(absl::string_view url) {
  if (!absl::ConsumePrefix(&url, "http://")) absl::ConsumePrefix(&url, "https://");
  absl::ConsumeSuffix(&url, "/");
  return std::string(url);
}

bool SplitHostPort(absl::string_view host_port, std::string* host, int* port) {
  const size_t colon = host_port.rfind(':');
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(host_port.substr(colon + 1), port)) {
    return false;
  }
  *host = std::string(host_port.substr(0, colon));
  return true;
}

sigset_t BlockStopSignals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return sigs;
}

}  // namespace synod::common
