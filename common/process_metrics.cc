#include "common/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace synod::common {
namespace {

// The fields of /proc/self/stat after the command name (field 3 onwards, so
// index i is field i + 3); empty if unreadable.
std::vector<std::string> ProcStat() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return {};
  // The command name is in parentheses and may contain spaces.
  size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 > line.size()) return {};
  return absl::StrSplit(line.substr(close + 2), ' ', absl::SkipEmpty());
}

double StatField(int field) {  // 1-based field number as in proc(5)
  std::vector<std::string> f = ProcStat();
  double v = 0;
  if (field - 3 < 0 || static_cast<size_t>(field - 3) >= f.size()) return 0;
  return absl::SimpleAtod(f[field - 3], &v) ? v : 0;
}

double Ticks() {
  long t = sysconf(_SC_CLK_TCK);
  return t > 0 ? static_cast<double>(t) : 100.0;
}

double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  double v = 0;
  while (in >> key) {
    if (key == "btime") {
      in >> v;
      return v;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return 0;
}

double OpenFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  double n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the descriptor opendir holds
}

double Limit(int resource) {
  rlimit rl;
  if (getrlimit(resource, &rl) != 0) return 0;
  // client_golang reports "unlimited" as 2^64 - 1 too.
  return static_cast<double>(rl.rlim_cur);
}

}  // namespace

void RegisterProcessMetrics(MetricsRegistry* registry) {
  registry->AddCounterCallback(
      "process_cpu_seconds_total",
      "Total user and system CPU time spent in seconds.",
      [] { return (StatField(14) + StatField(15)) / Ticks(); });
  registry->AddGaugeCallback("process_open_fds",
                             "Number of open file descriptors.", OpenFds);
  registry->AddGaugeCallback("process_max_fds",
                             "Maximum number of open file descriptors.",
                             [] { return Limit(RLIMIT_NOFILE); });
  registry->AddGaugeCallback("process_virtual_memory_bytes",
                             "Virtual memory size in bytes.",
                             [] { return StatField(23); });
  registry->AddGaugeCallback(
      "process_virtual_memory_max_bytes",
      "Maximum amount of virtual memory available in bytes.",
      [] { return Limit(RLIMIT_AS); });
  registry->AddGaugeCallback("process_resident_memory_bytes",
                             "Resident memory size in bytes.", [] {
                               return StatField(24) *
                                      static_cast<double>(getpagesize());
                             });
  // Computed once: the start time does not change.
  const double start = BootTimeSeconds() + StatField(22) / Ticks();
  registry->AddGaugeCallback(
      "process_start_time_seconds",
      "Start time of the process since unix epoch in seconds.",
      [start] { return start; });
}

}  // namespace synod::common
