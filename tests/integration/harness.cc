#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iostream>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <utility>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#ifndef SYNOD_BINARY
#error "SYNOD_BINARY must be defined to the path of the synod server binary"
#endif
#ifndef ETCDCTL_BINARY
#define ETCDCTL_BINARY "/usr/bin/etcdctl"
#endif

extern char** environ;

namespace synod::testing {

namespace {

constexpr char kEtcdBinary[] = "/usr/bin/etcd";

void IgnoreSigpipeOnce() {
  static const bool done = [] {
    signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)done;
}

// argv/envp storage prepared before fork() so the child only calls
// async-signal-safe functions.
struct ExecSpec {
  std::vector<std::string> args, env;
  std::vector<char*> argv, envp;

  ExecSpec(const std::vector<std::string>& a,
           const std::vector<std::string>& extra_env)
      : args(a) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      env.emplace_back(*e);
    }
    for (const auto& e : extra_env) env.push_back(e);
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
  }
};

// Forks and execs. The given fds become the child's 0/1/2; all other fds we
// create are O_CLOEXEC. The child dies with the forking thread.
pid_t SpawnChild(ExecSpec& spec, int in_fd, int out_fd, int err_fd) {
  IgnoreSigpipeOnce();
  pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  signal(SIGPIPE, SIG_DFL);
  dup2(in_fd, 0);
  dup2(out_fd, 1);
  dup2(err_fd, 2);
  execve(spec.argv[0], spec.argv.data(), spec.envp.data());
  const char msg[] = "exec failed\n";
  ssize_t ignored = write(2, msg, sizeof(msg) - 1);
  (void)ignored;
  _exit(127);
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return -1;
}

void MakePipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << strerror(errno);
    fds[0] = fds[1] = -1;
  }
}

int OpenDevNull() { return open("/dev/null", O_RDWR | O_CLOEXEC); }

bool ReadSome(int fd, std::string* out) {  // false on EOF or error
  char buf[65536];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n > 0) {
    out->append(buf, n);
    return true;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  return false;
}

std::vector<std::string> EtcdctlArgv(const std::string& endpoint,
                                     const std::vector<std::string>& args,
                                     absl::Duration command_timeout) {
  std::vector<std::string> argv = {
      ETCDCTL_BINARY, absl::StrCat("--endpoints=", endpoint),
      absl::StrCat("--command-timeout=",
                   absl::ToInt64Milliseconds(command_timeout), "ms"),
      "--dial-timeout=2s"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

bool TcpConnects(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

int ConnectWithTimeouts(int port, absl::Duration timeout) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += n;
  }
  return true;
}

}  // namespace

bool UsingRealEtcd() {
  const char* v = getenv("SYNOD_TEST_SERVER");
  return v != nullptr && std::string(v) == "etcd";
}

std::string ServerBinary() {
  if (UsingRealEtcd()) return kEtcdBinary;
  const char* v = getenv("SYNOD_TEST_SERVER");
  if (v != nullptr && v[0] == '/') return v;
  return SYNOD_BINARY;
}

TestDir::TestDir() {
  const char* tmp = getenv("TMPDIR");
  std::string base = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  std::string name = "synod_it";
  if (const auto* info =
          ::testing::UnitTest::GetInstance()->current_test_info()) {
    name = absl::StrCat(name, "_", info->test_suite_name(), "_", info->name());
    for (char& c : name) {
      if (!isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
    }
  }
  std::string tmpl = absl::StrCat(base, "/", name, "_XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << ": " << strerror(errno);
  }
  path_ = tmpl;
}

TestDir::~TestDir() {
  if (::testing::Test::HasFailure()) {
    std::cerr << "[harness] keeping test dir " << path_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CmdResult RunCommand(const std::vector<std::string>& argv,
                     const std::optional<std::string>& stdin_data,
                     absl::Duration timeout,
                     const std::vector<std::string>& extra_env) {
  CmdResult result;
  ExecSpec spec(argv, extra_env);
  int in[2] = {-1, -1}, out[2], err[2];
  MakePipe(out);
  MakePipe(err);
  int devnull = -1;
  if (stdin_data.has_value()) {
    MakePipe(in);
  } else {
    devnull = OpenDevNull();
  }
  pid_t pid = SpawnChild(spec, stdin_data ? in[0] : devnull, out[1], err[1]);
  close(out[1]);
  close(err[1]);
  if (stdin_data) close(in[0]);
  if (devnull >= 0) close(devnull);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << strerror(errno);
    close(out[0]);
    close(err[0]);
    if (stdin_data) close(in[1]);
    return result;
  }
  int in_fd = stdin_data ? in[1] : -1;
  if (in_fd >= 0) fcntl(in_fd, F_SETFL, O_NONBLOCK);
  size_t in_off = 0;
  if (in_fd >= 0 && stdin_data->empty()) {
    close(in_fd);
    in_fd = -1;
  }
  int out_fd = out[0], err_fd = err[0];
  const absl::Time deadline = absl::Now() + timeout;
  absl::Time exit_grace_deadline = absl::InfiniteFuture();
  bool reaped = false;
  int status = 0;
  while (true) {
    if (!reaped && waitpid(pid, &status, WNOHANG) == pid) {
      reaped = true;
      // Grandchildren may hold the pipes open: drain briefly, then stop.
      exit_grace_deadline = absl::Now() + absl::Milliseconds(500);
      if (in_fd >= 0) {
        close(in_fd);
        in_fd = -1;
      }
    }
    if (reaped && ((out_fd < 0 && err_fd < 0) ||
                   absl::Now() > exit_grace_deadline)) {
      break;
    }
    if (!reaped && absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      reaped = true;
      result.timed_out = true;
      exit_grace_deadline = absl::Now() + absl::Milliseconds(200);
      continue;
    }
    pollfd fds[3];
    int n = 0;
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    if (n == 0) {
      // Nothing to read; wait for the child to exit.
      poll(nullptr, 0, 10);
      continue;
    }
    poll(fds, n, 20);
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == out_fd) {
        if (!ReadSome(out_fd, &result.out)) {
          close(out_fd);
          out_fd = -1;
        }
      } else if (fds[i].fd == err_fd) {
        if (!ReadSome(err_fd, &result.err)) {
          close(err_fd);
          err_fd = -1;
        }
      } else if (fds[i].fd == in_fd) {
        ssize_t w = write(in_fd, stdin_data->data() + in_off,
                          stdin_data->size() - in_off);
        if (w > 0) in_off += w;
        if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
            in_off == stdin_data->size()) {
          close(in_fd);
          in_fd = -1;
        }
      }
    }
  }
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  if (in_fd >= 0) close(in_fd);
  result.exit_code = result.timed_out ? -1 : DecodeStatus(status);
  return result;
}

CmdResult Etcdctl(const std::string& endpoint,
                  const std::vector<std::string>& args,
                  const std::optional<std::string>& stdin_data,
                  absl::Duration timeout) {
  absl::Duration command_timeout =
      std::max(absl::Seconds(1), timeout - absl::Seconds(2));
  return RunCommand(EtcdctlArgv(endpoint, args, command_timeout), stdin_data,
                    timeout, {"ETCDCTL_API=3"});
}

std::string ErrorLine(const std::string& err) {
  std::string found;
  for (const auto& line : SplitLines(err)) {
    if (absl::StartsWith(line, "Error: ")) found = line;
  }
  return found;
}

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> lines = absl::StrSplit(s, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// ---------------------------------------------------------------------------
// BackgroundCmd

BackgroundCmd::BackgroundCmd(const std::vector<std::string>& argv,
                             const std::vector<std::string>& extra_env) {
  ExecSpec spec(argv, extra_env);
  int in[2], out[2], err[2];
  MakePipe(in);
  MakePipe(out);
  MakePipe(err);
  pid_ = SpawnChild(spec, in[0], out[1], err[1]);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (pid_ < 0) {
    ADD_FAILURE() << "fork: " << strerror(errno);
    close(in[1]);
    close(out[0]);
    close(err[0]);
    exited_ = true;
    return;
  }
  stdin_fd_ = in[1];
  reader_ = std::thread([this, o = out[0], e = err[0]] { ReaderLoop(o, e); });
}

BackgroundCmd::~BackgroundCmd() { Terminate(); }

std::unique_ptr<BackgroundCmd> BackgroundCmd::Etcdctl(
    const std::string& endpoint, const std::vector<std::string>& args) {
  return std::make_unique<BackgroundCmd>(
      EtcdctlArgv(endpoint, args, absl::Seconds(5)),
      std::vector<std::string>{"ETCDCTL_API=3"});
}

void BackgroundCmd::ReaderLoop(int out_fd, int err_fd) {
  bool reaped = false;
  int status = 0;
  absl::Time grace = absl::InfiniteFuture();
  while (true) {
    if (!reaped && waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped = true;
      grace = absl::Now() + absl::Milliseconds(500);
    }
    if (reaped && ((out_fd < 0 && err_fd < 0) || absl::Now() > grace)) break;
    pollfd fds[2];
    int n = 0;
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    if (n == 0) {
      poll(nullptr, 0, 10);
      continue;
    }
    poll(fds, n, 20);
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      std::string chunk;
      bool open = ReadSome(fds[i].fd, &chunk);
      {
        std::lock_guard<std::mutex> lock(mu_);
        (fds[i].fd == out_fd ? out_ : err_) += chunk;
      }
      cv_.notify_all();
      if (!open) {
        close(fds[i].fd);
        (fds[i].fd == out_fd ? out_fd : err_fd) = -1;
      }
    }
  }
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  {
    std::lock_guard<std::mutex> lock(mu_);
    exited_ = true;
    exit_code_ = DecodeStatus(status);
  }
  cv_.notify_all();
}

bool BackgroundCmd::WaitForLines(size_t n, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
    return static_cast<size_t>(std::count(out_.begin(), out_.end(), '\n')) >= n;
  });
}

bool BackgroundCmd::WaitForOutput(const std::string& needle,
                                  absl::Duration timeout, bool in_stderr) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
    return absl::StrContains(in_stderr ? err_ : out_, needle);
  });
}

bool BackgroundCmd::WaitForExit(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                      [&] { return exited_; });
}

std::vector<std::string> BackgroundCmd::Lines() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> lines = SplitLines(out_);
  // Drop an incomplete last line.
  if (!out_.empty() && out_.back() != '\n' && !lines.empty()) lines.pop_back();
  return lines;
}

std::string BackgroundCmd::Out() const {
  std::lock_guard<std::mutex> lock(mu_);
  return out_;
}

std::string BackgroundCmd::Err() const {
  std::lock_guard<std::mutex> lock(mu_);
  return err_;
}

bool BackgroundCmd::Exited() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exited_;
}

int BackgroundCmd::ExitCode() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exit_code_;
}

void BackgroundCmd::WriteStdin(const std::string& data) {
  if (stdin_fd_ < 0 || !WriteAll(stdin_fd_, data)) {
    ADD_FAILURE() << "could not write to the command's stdin";
  }
}

void BackgroundCmd::CloseStdin() {
  if (stdin_fd_ >= 0) close(stdin_fd_);
  stdin_fd_ = -1;
}

int BackgroundCmd::Terminate() {
  if (pid_ > 0) {
    bool exited;
    {
      std::lock_guard<std::mutex> lock(mu_);
      exited = exited_;
    }
    // The reader thread reaps the child, so the pid stays valid until then.
    if (!exited) kill(pid_, SIGTERM);
    if (!WaitForExit(absl::Seconds(5))) {
      kill(pid_, SIGKILL);
      WaitForExit(absl::Seconds(5));
    }
    if (reader_.joinable()) reader_.join();
    pid_ = -1;
  }
  CloseStdin();
  return ExitCode();
}

// ---------------------------------------------------------------------------
// ServerProcess

ServerProcess::ServerProcess(const std::string& dir, ServerOptions options)
    : dir_(dir),
      data_dir_(dir + "/data"),
      log_path_(dir + "/server.log"),
      name_(options.name),
      options_(std::move(options)),
      client_port_(options_.client_port > 0 ? options_.client_port
                                            : PickFreePort()),
      peer_port_(options_.peer_port > 0 ? options_.peer_port
                                        : PickFreePort()),
      metrics_port_(options_.metrics_port > 0 ? options_.metrics_port
                                              : PickFreePort()) {}

ServerProcess::~ServerProcess() {
  if (Running()) Kill9();
}

std::string ServerProcess::Endpoint() const {
  return absl::StrCat("127.0.0.1:", client_port_);
}
std::string ServerProcess::ClientUrl() const {
  return absl::StrCat("http://127.0.0.1:", client_port_);
}
std::string ServerProcess::MetricsUrl() const {
  return absl::StrCat("http://127.0.0.1:", metrics_port_);
}

std::vector<std::string> ServerProcess::BuildArgv() const {
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  std::vector<std::string> argv = {
      ServerBinary(),
      "--name=" + name_,
      "--data-dir=" + data_dir_,
      "--listen-client-urls=" + ClientUrl(),
      "--advertise-client-urls=" + ClientUrl(),
      "--listen-peer-urls=" + peer_url,
      "--listen-metrics-urls=" + MetricsUrl(),
      "--initial-advertise-peer-urls=" + peer_url,
      options_.initial_cluster.empty()
          ? absl::StrCat("--initial-cluster=", name_, "=", peer_url)
          : "--initial-cluster=" + options_.initial_cluster,
      "--log-level=info",
  };
  if (!options_.initial_cluster_state.empty()) {
    argv.push_back("--initial-cluster-state=" + options_.initial_cluster_state);
  }
  if (!options_.initial_cluster_token.empty()) {
    argv.push_back("--initial-cluster-token=" + options_.initial_cluster_token);
  }
  // etcd 3.4 honours --log-level only with the zap logger.
  if (UsingRealEtcd()) argv.push_back("--logger=zap");
  for (const auto& f : options_.extra_flags) argv.push_back(f);
  return argv;
}

std::string ServerProcess::LogTail(size_t max_bytes) const {
  std::ifstream f(log_path_, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  if (s.size() > max_bytes) s = s.substr(s.size() - max_bytes);
  return s;
}

::testing::AssertionResult ServerProcess::Start() {
  ::testing::AssertionResult spawned = Spawn();
  if (!spawned) return spawned;
  return WaitReady(absl::Seconds(10));
}

::testing::AssertionResult ServerProcess::Spawn() {
  if (Running()) return ::testing::AssertionFailure() << "already running";
  std::vector<std::string> argv = BuildArgv();
  if (access(argv[0].c_str(), X_OK) != 0) {
    return ::testing::AssertionFailure()
           << "server binary " << argv[0] << " is not executable (set "
           << "SYNOD_TEST_SERVER=etcd to run against real etcd)";
  }
  int log_fd = open(log_path_.c_str(),
                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int devnull = OpenDevNull();
  std::string cmdline = absl::StrJoin(argv, " ");
  WriteAll(log_fd, absl::StrCat("=== harness: starting ", cmdline, "\n"));
  ExecSpec spec(argv, {});
  pid_ = SpawnChild(spec, devnull, log_fd, log_fd);
  close(log_fd);
  close(devnull);
  paused_ = false;
  exited_by_itself_ = false;
  exit_code_ = -1;
  if (pid_ < 0) return ::testing::AssertionFailure() << "fork failed";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult ServerProcess::WaitReady(absl::Duration timeout,
                                                    bool serializable) {
  const std::string cmdline = absl::StrJoin(BuildArgv(), " ");
  if (!Running()) {
    return ::testing::AssertionFailure() << "not running: " << cmdline;
  }
  // Ready = the client port accepts and a get succeeds.
  std::vector<std::string> probe = {"get", "synod-readiness-probe"};
  if (serializable) probe.push_back("--consistency=s");
  const absl::Time deadline = absl::Now() + timeout;
  std::string last_err;
  while (absl::Now() < deadline) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return ::testing::AssertionFailure()
             << "server exited during startup (status " << status
             << "): " << cmdline << "\n--- log tail ---\n" << LogTail();
    }
    if (TcpConnects(client_port_)) {
      CmdResult r = Etcdctl(Endpoint(), probe, std::nullopt, absl::Seconds(3));
      if (r.exit_code == 0) return ::testing::AssertionSuccess();
      last_err = r.err;
    }
    usleep(50 * 1000);  // polling interval, bounded by the deadline
  }
  std::string tail = LogTail();
  Kill9();
  return ::testing::AssertionFailure()
         << "server not ready within " << timeout << ": " << cmdline
         << "\nlast etcdctl error: " << ErrorLine(last_err)
         << "\n--- log tail ---\n" << tail;
}

bool ServerProcess::ExitedByItself() {
  if (exited_by_itself_) return true;
  if (pid_ <= 0) return false;
  int status;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    paused_ = false;
    exited_by_itself_ = true;
    exit_code_ = DecodeStatus(status);
  }
  return exited_by_itself_;
}

void ServerProcess::AddFlags(const std::vector<std::string>& flags) {
  options_.extra_flags.insert(options_.extra_flags.end(), flags.begin(),
                              flags.end());
}

void ServerProcess::Reap(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (pid_ > 0) {
    int status;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      pid_ = -1;
      return;
    }
    if (absl::Now() > deadline) return;
    usleep(10 * 1000);
  }
}

void ServerProcess::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  paused_ = false;
}

void ServerProcess::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);  // in case it is paused
  kill(pid_, SIGTERM);
  paused_ = false;
  Reap(absl::Seconds(10));
  if (pid_ > 0) {
    ADD_FAILURE() << "server did not exit within 10s of SIGTERM";
    Kill9();
  }
}

::testing::AssertionResult ServerProcess::Restart() {
  Stop();
  return Start();
}

void ServerProcess::Pause() {
  if (pid_ > 0 && kill(pid_, SIGSTOP) == 0) paused_ = true;
}

void ServerProcess::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
  paused_ = false;
}

// ---------------------------------------------------------------------------
// HTTP and raw TCP

HttpResponse HttpGet(const std::string& url, absl::Duration timeout) {
  HttpResponse resp;
  constexpr absl::string_view kScheme = "http://";
  if (!absl::StartsWith(url, kScheme)) return resp;
  std::string rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = hostport.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(hostport.substr(colon + 1), &port)) {
    return resp;
  }
  int fd = ConnectWithTimeouts(port, timeout);
  if (fd < 0) return resp;
  std::string req =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", hostport, "\r\n\r\n");
  std::string raw;
  if (WriteAll(fd, req)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      char buf[65536];
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      raw.append(buf, n);
    }
  }
  close(fd);
  size_t hdr_end = raw.find("\r\n\r\n");
  if (hdr_end == std::string::npos) return resp;
  resp.headers = raw.substr(0, hdr_end);
  resp.body = raw.substr(hdr_end + 4);
  std::vector<std::string> status_line =
      absl::StrSplit(resp.headers.substr(0, resp.headers.find("\r\n")), ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &resp.status)) {
    resp.status = 0;
  }
  return resp;
}

bool SendRawTcp(int port, const std::string& bytes) {
  int fd = ConnectWithTimeouts(port, absl::Seconds(5));
  if (fd < 0) return false;
  bool ok = WriteAll(fd, bytes);
  close(fd);
  return ok;
}

// ---------------------------------------------------------------------------
// ServerTest

void ServerTest::SetUp() {
  dir_ = std::make_unique<TestDir>();
  ServerOptions options;
  options.extra_flags = ExtraFlags();
  server_ = std::make_unique<ServerProcess>(dir_->path(), std::move(options));
  ASSERT_TRUE(server_->Start());
}

void ServerTest::TearDown() {
  if (server_ != nullptr && HasFailure()) {
    std::cerr << "--- server log tail ---\n" << server_->LogTail(3000) << "\n";
  }
  server_.reset();
  dir_.reset();
}

CmdResult ServerTest::Ctl(const std::vector<std::string>& args,
                          const std::optional<std::string>& stdin_data) {
  return Etcdctl(server_->Endpoint(), args, stdin_data);
}

Json ServerTest::CtlJson(const std::vector<std::string>& args,
                         const std::optional<std::string>& stdin_data) {
  std::vector<std::string> full = args;
  full.push_back("-w");
  full.push_back("json");
  CmdResult r = Ctl(full, stdin_data);
  EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(full, " ") << "\n" << r.err;
  std::optional<Json> j = Json::Parse(r.out);
  EXPECT_TRUE(j.has_value()) << "bad JSON from " << absl::StrJoin(full, " ")
                             << ": " << r.out;
  return j.value_or(Json());
}

int64_t ServerTest::CurrentRevision() {
  return CtlJson({"get", "synod-it-no-such-key"})["header"]["revision"].Int();
}

int64_t ServerTest::MustPut(const std::string& key, const std::string& value) {
  return CtlJson({"put", key, value})["header"]["revision"].Int();
}

std::unique_ptr<BackgroundCmd> ServerTest::Background(
    const std::vector<std::string>& args) {
  return BackgroundCmd::Etcdctl(server_->Endpoint(), args);
}

}  // namespace synod::testing
