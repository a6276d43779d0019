// synod-bench: a load generator for the etcd v3 API. It runs against any
// etcd-compatible endpoint, Synod or etcd, with the same code.
//   synod-bench --endpoints=127.0.0.1:2379 --conns=10 --clients=100 put
// Exit codes: 0 done; 1 the run failed (unreachable endpoint, failed setup,
// or every op failed); 2 bad options.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/synod_bench/options.h"
#include "bench/synod_bench/report.h"
#include "bench/synod_bench/runner.h"

namespace synod::bench {
namespace {

void DrawProgress(double fraction, uint64_t done) {
  constexpr int kWidth = 40;
  int filled = static_cast<int>(fraction * kWidth);
  std::string bar(filled, '=');
  if (filled < kWidth) bar += '>';
  bar.resize(kWidth, ' ');
  std::fprintf(stderr, "\r[%s] %3d%%  %llu ops", bar.c_str(),
               static_cast<int>(fraction * 100),
               static_cast<unsigned long long>(done));
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<Options> opts = ParseOptions(args);
  if (!opts.ok()) {
    std::fprintf(stderr, "synod-bench: %s\n",
                 std::string(opts.status().message()).c_str());
    return 2;
  }
  if (opts->help) {
    std::fputs(Usage().c_str(), stdout);
    return 0;
  }
  const bool tty = opts->progress && isatty(STDERR_FILENO);
  absl::StatusOr<Result> r = RunWorkload(*opts, tty ? DrawProgress : nullptr);
  if (tty) std::fprintf(stderr, "\r%*s\r", 70, "");
  if (!r.ok()) {
    std::fprintf(stderr, "synod-bench: %s\n",
                 std::string(r.status().message()).c_str());
    return 1;
  }
  std::string out = opts->json ? FormatJson(*r) + "\n" : FormatText(*r);
  std::fputs(out.c_str(), stdout);
  if (r->ok == 0 && r->errors > 0) return 1;
  return 0;
}

}  // namespace
}  // namespace synod::bench

int main(int argc, char** argv) { return synod::bench::Main(argc, argv); }
