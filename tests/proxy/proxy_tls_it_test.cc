// synod-proxy with TLS (issue 12): its listener (--cert-file, --key-file,
// --trusted-ca-file, --client-crl-file, --auto-tls, --listen-cipher-suites)
// and its connections to members (--cert, --key, --cacert,
// --insecure-skip-tls-verify), driven by the stock etcdctl over TLS, and the
// start-up errors etcd 3.4's grpc-proxy gives for bad TLS flags.
//
// Certificates are made at run time (tests/support/test_certs.h). A member
// with client TLS is a ServerProcess with https:// client URLs, waited for
// with etcdctl over TLS.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/proxy/proxy_process.h"
#include "tests/support/test_certs.h"

namespace synod::testing {
namespace {

std::string ProxyBinary() {
  const char* override_binary = std::getenv("SYNOD_TEST_PROXY");
  return override_binary != nullptr && override_binary[0] == '/'
             ? std::string(override_binary)
             : std::string(SYNOD_PROXY_BINARY);
}

std::vector<std::string> Concat(std::vector<std::string> a,
                                const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class ProxyTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>();
    const std::string pki_dir = dir_->path() + "/pki";
    const std::string other_dir = dir_->path() + "/other";
    ASSERT_EQ(mkdir(pki_dir.c_str(), 0700), 0);
    ASSERT_EQ(mkdir(other_dir.c_str(), 0700), 0);
    auto pki = TestPki::Create(pki_dir);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::make_unique<TestPki>(*std::move(pki));
    // The member's and the proxy's serving certificate (127.0.0.1 and
    // localhost), etcdctl's client certificate, the proxy's client
    // certificate towards members (no CN, as etcd's grpc-proxy requires).
    server_ = Issue(LeafSpec::Named("server"));
    client_ = Issue(LeafSpec::Named("client"));
    proxy_client_ = Issue(LeafSpec::Named("proxy-client"));
    // A client certificate that the proxy's CRL revokes.
    revoked_ = Issue(LeafSpec::Named("revoked"));
    auto crl = pki_->WriteCrl({revoked_});
    ASSERT_TRUE(crl.ok()) << crl.status();
    crl_file_ = *crl;
    // A client certificate from an unrelated CA.
    auto other = TestPki::Create(other_dir, "other-ca");
    ASSERT_TRUE(other.ok()) << other.status();
    auto stranger = other->Issue(LeafSpec::Named("stranger"));
    ASSERT_TRUE(stranger.ok()) << stranger.status();
    stranger_ = *stranger;
  }

  void TearDown() override {
    if (HasFailure() && proxy_) {
      std::cerr << "--- proxy log ---\n" << proxy_->Log() << "\n";
    }
    if (HasFailure() && member_) {
      std::cerr << "--- member log ---\n" << member_->LogTail() << "\n";
    }
    proxy_.reset();
    member_.reset();
    dir_.reset();
  }

  CertPaths Issue(const LeafSpec& spec) {
    auto c = pki_->Issue(spec);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : CertPaths();
  }

  // etcdctl's flags for a client certificate `c` trusted by this CA.
  std::vector<std::string> CtlTls(const CertPaths& c) const {
    return {"--cacert=" + pki_->ca_file(), "--cert=" + c.cert_file,
            "--key=" + c.key_file};
  }
  // The proxy's listener with the test CA's server certificate, asking
  // clients for certificates of the same CA (and revoking revoked_).
  std::vector<std::string> ListenerFlags() const {
    return {"--cert-file=" + server_.cert_file,
            "--key-file=" + server_.key_file,
            "--trusted-ca-file=" + pki_->ca_file(),
            "--client-crl-file=" + crl_file_};
  }

  // A plaintext member.
  void StartPlainMember() {
    member_ = std::make_unique<ServerProcess>(dir_->path());
    ASSERT_TRUE(member_->Start());
    member_endpoint_ = member_->Endpoint();
  }

  // A member serving clients on https:// only, requiring client
  // certificates of the test CA (--trusted-ca-file).
  void StartTlsMember() {
    ServerOptions o;
    o.client_port = PickFreePort();
    const std::string url = absl::StrCat("https://127.0.0.1:", o.client_port);
    o.extra_flags = {
        "--listen-client-urls=" + url, "--advertise-client-urls=" + url,
        "--cert-file=" + server_.cert_file, "--key-file=" + server_.key_file,
        "--trusted-ca-file=" + pki_->ca_file()};
    member_ = std::make_unique<ServerProcess>(dir_->path(), o);
    ASSERT_TRUE(member_->Spawn());
    member_endpoint_ = url;
    // Ready when a get over TLS succeeds (the harness probes in plaintext).
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    CmdResult r;
    while (absl::Now() < deadline) {
      ASSERT_FALSE(member_->ExitedByItself()) << member_->LogTail();
      r = Etcdctl(url,
                  Concat(CtlTls(client_), {"get", "synod-readiness-probe"}),
                  std::nullopt, absl::Seconds(3));
      if (r.exit_code == 0) return;
      usleep(50 * 1000);  // polling interval, bounded by the deadline
    }
    FAIL() << "TLS member not ready: " << r.err << "\n" << member_->LogTail();
  }

  // Starts the proxy in front of the member with `flags`; Start() probes it
  // with `ctl_flags`.
  ::testing::AssertionResult StartProxy(std::vector<std::string> flags,
                                        std::vector<std::string> ctl_flags) {
    proxy_ = std::make_unique<ProxyProcess>(
        std::vector<std::string>{member_endpoint_}, std::move(flags),
        std::move(ctl_flags));
    return proxy_->Start();
  }

  // etcdctl against the proxy with `tls` flags first.
  CmdResult P(const std::vector<std::string>& tls,
              const std::vector<std::string>& args) {
    return Etcdctl(proxy_->Endpoint(), Concat(tls, args), std::nullopt,
                   absl::Seconds(10));
  }

  // put, get, watch (replayed from a put's revision, then live) and a
  // lease with a key kept alive, all through the proxy with etcdctl flags
  // `tls`. The watched key is not read through the proxy's cache first,
  // and the watch starts at a revision > 1: a watch from revision 1 that
  // needs a catch-up stream can miss events (a member answers a progress
  // request for a watcher still at revision 0 with its current revision).
  void ExpectServes(const std::vector<std::string>& tls) {
    CmdResult r = P(tls, {"put", "k", "v1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "OK\n");
    r = P(tls, {"get", "k"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "k\nv1\n");

    // A watch from the revision of a put: the event is replayed, which
    // shows the watch is established, so the next put is delivered live.
    r = P(tls, {"put", "w", "w1", "-w", "json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const size_t at = r.out.find("\"revision\":");
    ASSERT_NE(at, std::string::npos) << r.out;
    const int64_t rev = std::strtoll(r.out.c_str() + at + 11, nullptr, 10);
    auto watch = BackgroundCmd::Etcdctl(
        proxy_->Endpoint(),
        Concat(tls, {"watch", "w", absl::StrCat("--rev=", rev)}));
    ASSERT_TRUE(watch->WaitForOutput("PUT\nw\nw1\n", absl::Seconds(10)))
        << watch->Out() << watch->Err();
    ASSERT_EQ(P(tls, {"put", "w", "w2"}).exit_code, 0);
    EXPECT_TRUE(watch->WaitForOutput("PUT\nw\nw2\n", absl::Seconds(10)))
        << watch->Out() << watch->Err();
    watch->Terminate();

    r = P(tls, {"lease", "grant", "60"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // "lease 694d77aa9e38260f granted with TTL(60s)"
    ASSERT_TRUE(absl::StartsWith(r.out, "lease ")) << r.out;
    const std::string id = r.out.substr(6, r.out.find(' ', 6) - 6);
    ASSERT_EQ(P(tls, {"put", "lk", "lv", "--lease=" + id}).exit_code, 0);
    r = P(tls, {"lease", "keep-alive", "--once", id});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(absl::StrContains(r.out, "keepalived with TTL(60)")) << r.out;
    r = P(tls, {"lease", "timetolive", id, "--keys"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(absl::StrContains(r.out, "attached keys([lk])")) << r.out;
  }

  // Runs synod-proxy with `flags` (after --endpoints, --listen-addr and
  // --data-dir), expecting it to fail at start: exit code 1 (not a signal)
  // and `message` on stderr.
  void ExpectStartError(const std::vector<std::string>& flags,
                        const std::string& message) {
    std::vector<std::string> argv = {
        ProxyBinary(), "--endpoints=127.0.0.1:1",
        absl::StrCat("--listen-addr=127.0.0.1:", PickFreePort()),
        "--data-dir=" + dir_->path() + "/proxy-data"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    CmdResult r = RunCommand(argv, std::nullopt, absl::Seconds(20));
    EXPECT_FALSE(r.timed_out) << "synod-proxy started: " << r.err;
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, message))
        << "want \"" << message << "\" in:\n"
        << r.err;
  }

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<TestPki> pki_;
  CertPaths server_, client_, proxy_client_, revoked_, stranger_;
  std::string crl_file_;
  std::unique_ptr<ServerProcess> member_;
  std::string member_endpoint_;
  std::unique_ptr<ProxyProcess> proxy_;
};

// The proxy's listener over TLS in front of a plaintext member: TLS clients
// are served; a plaintext client, a client without a certificate, one from
// another CA and a revoked one are refused, and the others still served.
TEST_F(ProxyTlsTest, ListenerTlsRefusesPlaintextAndBadCertificates) {
  ASSERT_NO_FATAL_FAILURE(StartPlainMember());
  ASSERT_TRUE(StartProxy(ListenerFlags(), CtlTls(client_)));
  ASSERT_NO_FATAL_FAILURE(ExpectServes(CtlTls(client_)));

  // Each refused client fails (etcdctl gives up at its deadline) and the
  // proxy logs the rejected connection with Go's reason.
  auto refused = [&](const std::vector<std::string>& tls,
                     const std::string& reason) {
    CmdResult r = Etcdctl(proxy_->Endpoint(), Concat(tls, {"get", "k"}),
                          std::nullopt, absl::Seconds(4));
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_TRUE(proxy_->WaitForLog(reason, absl::Seconds(10))) << reason;
  };
  refused({}, "tls: first record does not look like a TLS handshake");
  refused({"--cacert=" + pki_->ca_file()},
          "tls: client didn't provide a certificate");
  refused({"--cacert=" + pki_->ca_file(), "--cert=" + stranger_.cert_file,
           "--key=" + stranger_.key_file},
          "x509: certificate signed by unknown authority");
  refused(CtlTls(revoked_),
          "certificate serial " + revoked_.serial_hex + " revoked");

  CmdResult r = P(CtlTls(client_), {"get", "k", "--print-value-only"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "v1\n");
  EXPECT_FALSE(proxy_->Exited());
}

// TLS on both sides: etcdctl -> proxy and proxy -> member, the member
// requiring the proxy's client certificate.
TEST_F(ProxyTlsTest, TlsOnBothSides) {
  ASSERT_NO_FATAL_FAILURE(StartTlsMember());
  ASSERT_TRUE(
      StartProxy(Concat(ListenerFlags(), {"--cacert=" + pki_->ca_file(),
                                          "--cert=" + proxy_client_.cert_file,
                                          "--key=" + proxy_client_.key_file}),
                 CtlTls(client_)));
  ASSERT_NO_FATAL_FAILURE(ExpectServes(CtlTls(client_)));
  // The member has the writes.
  CmdResult r =
      Etcdctl(member_endpoint_,
              Concat(CtlTls(client_), {"get", "k", "--print-value-only"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "v1\n");
}

// Without --cacert the member's certificate is checked against the
// system's roots and refused: requests through the proxy fail as
// unavailable, and the proxy says why.
TEST_F(ProxyTlsTest, WithoutCacertTheMemberIsNotTrusted) {
  ASSERT_NO_FATAL_FAILURE(StartTlsMember());
  proxy_ = std::make_unique<ProxyProcess>(
      std::vector<std::string>{member_endpoint_},
      std::vector<std::string>{"--cert=" + proxy_client_.cert_file,
                               "--key=" + proxy_client_.key_file});
  ASSERT_TRUE(proxy_->Spawn());
  // The metrics server starts after the gRPC listener: once /health
  // answers, the proxy listens (and answers 503: no member is reachable).
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  int health = 0;
  while (absl::Now() < deadline && health == 0 && !proxy_->Exited()) {
    health = HttpGet(proxy_->MetricsUrl() + "/health").status;
    if (health == 0) usleep(50 * 1000);  // polling, bounded by the deadline
  }
  ASSERT_EQ(health, 503) << proxy_->Log();
  CmdResult r = P({}, {"get", "k"});
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_TRUE(absl::StrContains(ErrorLine(r.err), "Unavailable")) << r.err;
  EXPECT_TRUE(proxy_->WaitForLog(
      "x509: certificate signed by unknown authority", absl::Seconds(10)))
      << proxy_->Log();
}

// --insecure-skip-tls-verify: the member's certificate is not checked.
TEST_F(ProxyTlsTest, InsecureSkipTlsVerifyDialsAnUntrustedMember) {
  ASSERT_NO_FATAL_FAILURE(StartTlsMember());
  ASSERT_TRUE(StartProxy(
      {"--cert=" + proxy_client_.cert_file, "--key=" + proxy_client_.key_file,
       "--insecure-skip-tls-verify"},
      {}));
  ASSERT_NO_FATAL_FAILURE(ExpectServes({}));
  EXPECT_TRUE(
      absl::StrContains(proxy_->Log(), "--insecure-skip-tls-verify was given"))
      << proxy_->Log();
}

// --auto-tls: a self-signed certificate under <data-dir>/fixtures/proxy;
// clients skip verification, plaintext ones are refused.
TEST_F(ProxyTlsTest, AutoTls) {
  ASSERT_NO_FATAL_FAILURE(StartPlainMember());
  const std::string data_dir = dir_->path() + "/proxy-data";
  const std::vector<std::string> ctl = {"--insecure-transport=false",
                                        "--insecure-skip-tls-verify"};
  ASSERT_TRUE(StartProxy({"--auto-tls", "--data-dir=" + data_dir}, ctl));
  ASSERT_NO_FATAL_FAILURE(ExpectServes(ctl));
  struct stat st;
  EXPECT_EQ(stat((data_dir + "/fixtures/proxy/cert.pem").c_str(), &st), 0);
  EXPECT_EQ(stat((data_dir + "/fixtures/proxy/key.pem").c_str(), &st), 0);
  EXPECT_NE(
      Etcdctl(proxy_->Endpoint(), {"get", "k"}, std::nullopt, absl::Seconds(4))
          .exit_code,
      0);
}

// --listen-cipher-suites: the listener offers only those for TLS 1.2.
TEST_F(ProxyTlsTest, ListenCipherSuites) {
  if (access("/usr/bin/openssl", X_OK) != 0) {
    GTEST_SKIP() << "needs /usr/bin/openssl (s_client)";
  }
  ASSERT_NO_FATAL_FAILURE(StartPlainMember());
  ASSERT_TRUE(StartProxy(
      Concat(
          ListenerFlags(),
          {"--listen-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}),
      CtlTls(client_)));
  ASSERT_NO_FATAL_FAILURE(ExpectServes(CtlTls(client_)));
  // A TLS 1.2 client that offers only another suite gets no handshake.
  auto s_client = [&](const std::string& cipher) {
    return RunCommand({"/usr/bin/openssl", "s_client", "-connect",
                       proxy_->Endpoint(), "-tls1_2", "-cipher", cipher,
                       "-alpn", "h2", "-cert", client_.cert_file, "-key",
                       client_.key_file, "-CAfile", pki_->ca_file()},
                      std::string(), absl::Seconds(10));
  };
  CmdResult ok = s_client("ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  CmdResult refused = s_client("ECDHE-ECDSA-AES256-GCM-SHA384");
  EXPECT_NE(refused.exit_code, 0) << refused.out << refused.err;
}

// --metrics-addr https://: /metrics and /health over TLS with the
// listener's certificates, which ask for a client certificate of its CA.
TEST_F(ProxyTlsTest, MetricsOverHttps) {
  if (access("/usr/bin/curl", X_OK) != 0) GTEST_SKIP() << "needs curl";
  ASSERT_NO_FATAL_FAILURE(StartPlainMember());
  const std::string host_port = absl::StrCat("127.0.0.1:", PickFreePort());
  const std::string url = "https://" + host_port + "/metrics";
  // The later --metrics-addr replaces ProxyProcess's http one.
  proxy_ = std::make_unique<ProxyProcess>(
      std::vector<std::string>{member_endpoint_},
      Concat(ListenerFlags(), {"--metrics-addr=https://" + host_port}));
  ASSERT_TRUE(proxy_->Spawn());
  auto curl = [&](const std::vector<std::string>& flags) {
    return RunCommand(
        Concat(Concat({"/usr/bin/curl", "-sS", "--max-time", "5"}, flags),
               {url}),
        std::nullopt, absl::Seconds(10));
  };
  const std::vector<std::string> tls = {"--cacert", pki_->ca_file(),
                                        "--cert",   client_.cert_file,
                                        "--key",    client_.key_file};
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  CmdResult r;
  while (absl::Now() < deadline && !proxy_->Exited()) {
    r = curl(tls);
    if (r.exit_code == 0) break;
    usleep(50 * 1000);  // polling interval, bounded by the deadline
  }
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "process_resident_memory_bytes"))
      << r.out;
  // No client certificate, or plaintext: refused.
  EXPECT_NE(curl({"--cacert", pki_->ca_file()}).exit_code, 0);
  r = RunCommand({"/usr/bin/curl", "-sS", "--max-time", "5",
                  "http://" + host_port + "/metrics"},
                 std::nullopt, absl::Seconds(10));
  EXPECT_NE(r.exit_code, 0) << r.out;
}

// Bad TLS flags stop the proxy at start with etcd's words and exit code 1.
TEST_F(ProxyTlsTest, StartErrors) {
  // Listener.
  ExpectStartError({"--cert-file=" + server_.cert_file},
                   "KeyFile and CertFile must both be present[key: , cert: " +
                       server_.cert_file + "]");
  ExpectStartError({"--trusted-ca-file=" + pki_->ca_file()},
                   "KeyFile and CertFile are not presented");
  ExpectStartError({"--cert-file=" + dir_->path() + "/missing.crt",
                    "--key-file=" + server_.key_file},
                   dir_->path() + "/missing.crt");
  ExpectStartError(
      {"--cert-file=" + server_.cert_file, "--key-file=" + client_.key_file},
      "private key does not match public key");
  ExpectStartError(
      {"--cert-file=" + server_.cert_file, "--key-file=" + server_.key_file,
       "--client-crl-file=" + dir_->path() + "/missing.crl"},
      dir_->path() + "/missing.crl");
  ExpectStartError({"--auto-tls", "--listen-cipher-suites=TLS_BOGUS"},
                   "unexpected TLS cipher suite \"TLS_BOGUS\"");
  ExpectStartError(
      {absl::StrCat("--listen-addr=https://127.0.0.1:", PickFreePort())},
      "needs TLS");
  ExpectStartError(
      {absl::StrCat("--metrics-addr=https://127.0.0.1:", PickFreePort())},
      "KeyFile and CertFile are not presented");
  // Connections to members.
  ExpectStartError({"--cert=" + proxy_client_.cert_file},
                   "KeyFile and CertFile must both be present[key: , cert: " +
                       proxy_client_.cert_file + "]");
  ExpectStartError({"--cacert=" + dir_->path() + "/missing-ca.crt"},
                   dir_->path() + "/missing-ca.crt");
  // etcd 3.4's grpc-proxy refuses a client certificate with a CN: the
  // member would take every forwarded request as that user.
  CertPaths root = Issue(LeafSpec::Named("root-client", "root"));
  ExpectStartError({"--cert=" + root.cert_file, "--key=" + root.key_file},
                   "cert has non empty Common Name (root)");
  ExpectStartError({"--endpoints=unix://x"}, "unsupported endpoint scheme");
}

}  // namespace
}  // namespace synod::testing
