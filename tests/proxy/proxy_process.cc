#include "tests/proxy/proxy_process.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace synod::testing {

ProxyProcess::ProxyProcess(std::vector<std::string> endpoints,
                           std::vector<std::string> extra_flags,
                           std::vector<std::string> ctl_flags)
    : endpoints_(std::move(endpoints)),
      extra_flags_(std::move(extra_flags)),
      ctl_flags_(std::move(ctl_flags)),
      port_(PickFreePort()),
      metrics_port_(PickFreePort()) {}

ProxyProcess::~ProxyProcess() { Stop(); }

std::string ProxyProcess::Endpoint() const {
  return absl::StrCat("127.0.0.1:", port_);
}
std::string ProxyProcess::MetricsUrl() const {
  return absl::StrCat("http://127.0.0.1:", metrics_port_);
}
bool ProxyProcess::Exited() const { return cmd_ != nullptr && cmd_->Exited(); }
std::string ProxyProcess::Log() const { return cmd_ ? cmd_->Err() : ""; }
bool ProxyProcess::WaitForLog(const std::string& needle,
                              absl::Duration timeout) {
  return cmd_ != nullptr &&
         cmd_->WaitForOutput(needle, timeout, /*in_stderr=*/true);
}

::testing::AssertionResult ProxyProcess::Spawn() {
  // SYNOD_TEST_PROXY=/abs/path runs another build (e.g. a sanitizer one).
  const char* override_binary = std::getenv("SYNOD_TEST_PROXY");
  std::vector<std::string> argv = {
      override_binary != nullptr && override_binary[0] == '/'
          ? std::string(override_binary)
          : std::string(SYNOD_PROXY_BINARY),
      absl::StrCat("--endpoints=", absl::StrJoin(endpoints_, ",")),
      absl::StrCat("--listen-addr=", Endpoint()),
      absl::StrCat("--advertise-client-url=", Endpoint()),
      absl::StrCat("--metrics-addr=", MetricsUrl())};
  argv.insert(argv.end(), extra_flags_.begin(), extra_flags_.end());
  command_line_ = absl::StrJoin(argv, " ");
  cmd_ = std::make_unique<BackgroundCmd>(argv);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult ProxyProcess::Start() {
  if (::testing::AssertionResult r = Spawn(); !r) return r;
  std::vector<std::string> probe = ctl_flags_;
  probe.push_back("get");
  probe.push_back("proxy-readiness-probe");
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (cmd_->Exited()) {
      return ::testing::AssertionFailure()
             << "synod-proxy exited: " << command_line_ << "\n"
             << cmd_->Err();
    }
    if (HttpGet(MetricsUrl() + "/health", absl::Seconds(2)).status == 200 &&
        Etcdctl(Endpoint(), probe, std::nullopt, absl::Seconds(3)).exit_code ==
            0) {
      return ::testing::AssertionSuccess();
    }
    usleep(50 * 1000);  // polling interval, bounded by the deadline
  }
  return ::testing::AssertionFailure()
         << "synod-proxy not ready: " << cmd_->Err();
}

void ProxyProcess::Stop() {
  if (cmd_) cmd_->Terminate();
}

double ScrapeMetric(const std::string& metrics_url,
                    const std::string& series) {
  HttpResponse r = HttpGet(metrics_url + "/metrics", absl::Seconds(5));
  if (r.status != 200) return -1;
  for (absl::string_view line : absl::StrSplit(r.body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    size_t sp = line.rfind(' ');
    if (sp == absl::string_view::npos) continue;
    if (line.substr(0, sp) != series) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(sp + 1), &v)) return v;
  }
  return -1;
}

}  // namespace synod::testing
