#include "common/flags_util.h"

#include <pthread.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"

namespace synod::common {

EtcdStyleArgs::EtcdStyleArgs(int argc, char** argv) {
  storage_.reserve(argc);
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i > 0 && absl::StartsWith(a, "--") && a.size() > 2) {
      const size_t eq = a.find('=');
      for (size_t j = 2; j < std::min(eq, a.size()); ++j) {
        if (a[j] == '-') a[j] = '_';
      }
    }
    storage_.push_back(std::move(a));
  }
  for (std::string& s : storage_) ptrs_.push_back(s.data());
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
