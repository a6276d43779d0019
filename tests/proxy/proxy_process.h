// Test helpers for synod-proxy integration tests: a synod-proxy process on
// free 127.0.0.1 ports in front of given member endpoints, and a Prometheus
// text scraper. SYNOD_TEST_PROXY=/abs/path/synod-proxy runs another build
// of the proxy (e.g. an AddressSanitizer one).
// Thread-safety: one thread at a time per ProxyProcess.
#ifndef SYNOD_TESTS_PROXY_PROXY_PROCESS_H_
#define SYNOD_TESTS_PROXY_PROXY_PROCESS_H_

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace synod::testing {

class ProxyProcess {
 public:
  // `endpoints`: member "host:port"s (or URLs); `extra_flags`:
  // "--flag=value"s; `ctl_flags`: what etcdctl needs to reach the proxy's
  // listener in Start()'s probe (e.g. "--cacert=..." when it serves TLS).
  ProxyProcess(std::vector<std::string> endpoints,
               std::vector<std::string> extra_flags = {},
               std::vector<std::string> ctl_flags = {});
  ~ProxyProcess();

  // Starts synod-proxy and waits (10 s) until /health is 200 and etcdctl
  // (with the ctl flags) can read through it.
  ::testing::AssertionResult Start();
  // Starts synod-proxy without waiting; fails only if it cannot be spawned.
  ::testing::AssertionResult Spawn();
  void Stop();

  // True once the started process has exited (e.g. crashed).
  bool Exited() const;

  std::string Endpoint() const;  // "127.0.0.1:P"
  std::string MetricsUrl() const;  // "http://127.0.0.1:M"
  std::string Log() const;
  // Waits until the log (stderr) contains `needle`; false on timeout or
  // when the proxy was never spawned.
  bool WaitForLog(const std::string& needle, absl::Duration timeout);

 private:
  std::vector<std::string> endpoints_, extra_flags_, ctl_flags_;
  int port_, metrics_port_;
  std::string command_line_;  // of the last Spawn()
  std::unique_ptr<BackgroundCmd> cmd_;
};

// The value of the series `name` (with optional `{labels}` text exactly as
// rendered, e.g. `name{a="1"}`) in the Prometheus text at `metrics_url`;
// -1 when absent or unreachable.
double ScrapeMetric(const std::string& metrics_url, const std::string& series);

}  // namespace synod::testing

#endif  // SYNOD_TESTS_PROXY_PROXY_PROCESS_H_
