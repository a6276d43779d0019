// SYNOD_BENCHMARK_MAIN(): BENCHMARK_MAIN() for Synod's micro-benchmarks,
// with the process set up as `synod` sets itself up: Abseil's mutex
// deadlock detection off. Debian builds libabsl without NDEBUG, so the
// detection (a lock graph updated on every Lock) is on by default and would
// be counted in every benchmark that takes a mutex; backend/server/main.cc
// turns it off. Use it once per benchmark binary, in place of
// BENCHMARK_MAIN(). Not thread-safe (it is main).
#ifndef SYNOD_BENCH_BENCH_MAIN_H_
#define SYNOD_BENCH_BENCH_MAIN_H_

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"

#define SYNOD_BENCHMARK_MAIN()                                              \
  int main(int argc, char** argv) {                                         \
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);    \
    ::benchmark::Initialize(&argc, argv);                                   \
    if (::benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;     \
    ::benchmark::RunSpecifiedBenchmarks();                                  \
    ::benchmark::Shutdown();                                                \
    return 0;                                                               \
  }                                                                         \
  static_assert(true, "")

#endif  // SYNOD_BENCH_BENCH_MAIN_H_
