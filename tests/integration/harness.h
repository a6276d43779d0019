// Integration-test harness: starts a real server process (synod, or real etcd
// 3.4 when SYNOD_TEST_SERVER=etcd) on free 127.0.0.1 ports in a per-test temp
// dir, and drives it with the stock etcdctl 3.4 binary.
//
// The suites built on it are a conformance suite: every assertion about
// etcdctl output was taken from real etcd 3.4, which synod must match.
//
// Thread-safety: ServerProcess and the free functions may be used from one
// thread at a time each; BackgroundCmd's accessors are safe to call while its
// reader thread runs.
#ifndef SYNOD_TESTS_INTEGRATION_HARNESS_H_
#define SYNOD_TESTS_INTEGRATION_HARNESS_H_

#include <sys/types.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/free_port.h"
#include "tests/integration/json.h"

namespace synod::testing {

// True when SYNOD_TEST_SERVER=etcd: the tests run against /usr/bin/etcd.
bool UsingRealEtcd();
// The server binary: /usr/bin/etcd when UsingRealEtcd(), the value of
// SYNOD_TEST_SERVER when it is an absolute path, else SYNOD_BINARY.
std::string ServerBinary();

// PickFreePort() (tests/support/free_port.h): a port free on 127.0.0.1,
// reserved for this process against every other test process.

// A fresh directory under $TMPDIR (or /tmp). Removed by the destructor unless
// the current test has failed, in which case its path is printed.
class TestDir {
 public:
  TestDir();
  ~TestDir();
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct CmdResult {
  int exit_code = -1;  // -1 when killed by a signal (e.g. on timeout)
  bool timed_out = false;
  std::string out, err;
};

// Runs any program to completion. The child is SIGKILLed on timeout.
CmdResult RunCommand(const std::vector<std::string>& argv,
                     const std::optional<std::string>& stdin_data,
                     absl::Duration timeout,
                     const std::vector<std::string>& extra_env = {});

// Runs `etcdctl --endpoints=<endpoint> --command-timeout=<t> <args...>` with
// ETCDCTL_API=3. `timeout` bounds the whole process.
CmdResult Etcdctl(const std::string& endpoint,
                  const std::vector<std::string>& args,
                  const std::optional<std::string>& stdin_data = std::nullopt,
                  absl::Duration timeout = absl::Seconds(15));

// The last line of `err` that starts with "Error: " (etcdctl's error line), or
// "" when there is none. etcdctl also logs a JSON warn line we ignore.
std::string ErrorLine(const std::string& err);

// Splits on '\n'; a trailing newline does not add an empty last element.
std::vector<std::string> SplitLines(const std::string& s);

// A long-running command (etcdctl watch/lock/elect). stdout and stderr are
// read on a background thread; stdin stays open for interactive commands.
class BackgroundCmd {
 public:
  explicit BackgroundCmd(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extra_env = {});
  // Terminates the command if still running.
  ~BackgroundCmd();
  BackgroundCmd(const BackgroundCmd&) = delete;
  BackgroundCmd& operator=(const BackgroundCmd&) = delete;

  // An etcdctl command against `endpoint` (ETCDCTL_API=3 and --endpoints set).
  static std::unique_ptr<BackgroundCmd> Etcdctl(
      const std::string& endpoint, const std::vector<std::string>& args);

  // Waits until stdout holds at least `n` complete lines.
  bool WaitForLines(size_t n, absl::Duration timeout);
  // Waits until stdout (or stderr, when `in_stderr`) contains `needle`.
  bool WaitForOutput(const std::string& needle, absl::Duration timeout,
                     bool in_stderr = false);
  // Waits until the process exits by itself; returns false on timeout.
  bool WaitForExit(absl::Duration timeout);

  std::vector<std::string> Lines() const;  // complete stdout lines so far
  std::string Out() const;
  std::string Err() const;
  bool Exited() const;
  int ExitCode() const;  // REQUIRES: Exited(); -1 when killed by a signal

  void WriteStdin(const std::string& data);
  void CloseStdin();

  // SIGTERM, wait up to 5 s, then SIGKILL. Returns the exit code (-1 when
  // killed by a signal). Idempotent.
  int Terminate();

 private:
  void ReaderLoop(int out_fd, int err_fd);

  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_;  // guarded by mu_
  std::string err_;  // guarded by mu_
  bool exited_ = false;  // guarded by mu_
  int exit_code_ = -1;   // guarded by mu_
};

struct ServerOptions {
  // Extra flags in "--flag=value" form, e.g. "--quota-backend-bytes=200000".
  std::vector<std::string> extra_flags;
  // --name. Cluster members need distinct names.
  std::string name = "s1";
  // Ports on 127.0.0.1; 0 picks a free one. A cluster picks them up front
  // because every member's --initial-cluster names every peer URL.
  int client_port = 0;
  int peer_port = 0;
  int metrics_port = 0;
  // --initial-cluster; empty means this server alone ("<name>=<peer url>").
  std::string initial_cluster;
  // --initial-cluster-state ("new" or "existing") and
  // --initial-cluster-token; empty leaves the flag out (server default).
  std::string initial_cluster_state;
  std::string initial_cluster_token;
};

// One server process. Ports are chosen once and kept across restarts, and so
// is the data dir. With default options it is a single-member cluster named
// "s1"; ServerOptions turn it into a member of a larger one.
class ServerProcess {
 public:
  // `dir` must exist; the data dir and log file are created inside it.
  ServerProcess(const std::string& dir, ServerOptions options = {});
  ~ServerProcess();  // Kill9 if running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the process and waits (10 s) until it serves requests. On failure
  // returns an error text that includes the tail of the server log.
  // Equivalent to Spawn() followed by WaitReady(absl::Seconds(10)).
  ::testing::AssertionResult Start();
  // Starts the process without waiting; fails only if it cannot be spawned.
  // A new cluster's first member cannot serve until a quorum has started, so
  // clusters spawn every member and then wait.
  ::testing::AssertionResult Spawn();
  // Waits until the process serves requests: a linearizable get succeeds
  // (or, when `serializable`, a `--consistency=s` get does, which a learner
  // can answer). On timeout or an early exit the process is killed and the
  // result carries the tail of the server log.
  ::testing::AssertionResult WaitReady(absl::Duration timeout,
                                       bool serializable = false);
  // True once the process has exited by itself (reaps it). False while it
  // runs, and when it was never started or was stopped by the harness.
  bool ExitedByItself();
  // The exit code once ExitedByItself() returned true; -1 when a signal
  // ended the process.
  int exit_code() const { return exit_code_; }
  // Appends flags ("--flag=value") to every later start, e.g. to restart one
  // cluster member with a flag the others lack.
  void AddFlags(const std::vector<std::string>& flags);
  void Kill9();
  // SIGTERM, wait 10 s, then SIGKILL.
  void Stop();
  // Stop() then Start(), keeping the data dir and ports.
  ::testing::AssertionResult Restart();
  void Pause();   // SIGSTOP
  void Resume();  // SIGCONT
  bool Running() const { return pid_ > 0; }
  bool Paused() const { return paused_; }
  pid_t pid() const { return pid_; }

  std::string Endpoint() const;    // "127.0.0.1:P"
  std::string ClientUrl() const;   // "http://127.0.0.1:P"
  std::string MetricsUrl() const;  // "http://127.0.0.1:M"
  int client_port() const { return client_port_; }
  int metrics_port() const { return metrics_port_; }
  int peer_port() const { return peer_port_; }
  const std::string& name() const { return name_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string LogTail(size_t max_bytes = 4000) const;

 private:
  std::vector<std::string> BuildArgv() const;
  void Reap(absl::Duration timeout);

  std::string dir_, data_dir_, log_path_, name_;
  ServerOptions options_;
  int client_port_, peer_port_, metrics_port_;
  pid_t pid_ = -1;
  bool paused_ = false;
  bool exited_by_itself_ = false;
  int exit_code_ = -1;
};

struct HttpResponse {
  int status = 0;  // 0 when the request failed
  std::string headers, body;
};
// HTTP/1.0 GET over a plain socket. `url` is "http://host:port/path".
HttpResponse HttpGet(const std::string& url,
                     absl::Duration timeout = absl::Seconds(5));

// Writes raw bytes to host:port over TCP and closes. Returns false on error.
bool SendRawTcp(int port, const std::string& bytes);

// Base fixture: a fresh dir and one server started in SetUp with the flags
// from ExtraFlags().
class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  virtual std::vector<std::string> ExtraFlags() { return {}; }

  // etcdctl against the fixture's server.
  CmdResult Ctl(const std::vector<std::string>& args,
                const std::optional<std::string>& stdin_data = std::nullopt);
  // etcdctl ... -w json, parsed. Fails the test on a non-zero exit or bad JSON.
  Json CtlJson(const std::vector<std::string>& args,
               const std::optional<std::string>& stdin_data = std::nullopt);
  // The current store revision (from a serializable-free `get` header).
  int64_t CurrentRevision();
  // put that must succeed; returns the header revision.
  int64_t MustPut(const std::string& key, const std::string& value);
  std::unique_ptr<BackgroundCmd> Background(
      const std::vector<std::string>& args);

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<ServerProcess> server_;
};

}  // namespace synod::testing

#endif  // SYNOD_TESTS_INTEGRATION_HARNESS_H_
