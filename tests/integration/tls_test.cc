// TLS on the client and peer ports (issue 12), against real member
// processes started with etcd's flags and driven by the stock etcdctl 3.4.
// Each error case the issue lists is refused, with etcd's log line, while
// the member (or the rest of the cluster) keeps serving everyone else:
// a plaintext client on a TLS port, a client without a certificate under
// --client-cert-auth, a revoked or expired client certificate, a peer whose
// CN or hostname is not allowed, a peer signed by another CA. And: a
// certificate replaced on disk is served to new connections without a
// restart; --auto-tls serves a self-signed certificate; a three-member
// cluster with peer and client TLS keeps every acknowledged write through a
// kill -9 of its leader.
//
// Certificates come from tests/support/test_certs.h, made at run time. Run
// against real etcd 3.4 with SYNOD_TEST_SERVER=etcd.
#include <sys/stat.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/json.h"
#include "tests/support/test_certs.h"

namespace synod::testing {
namespace {

constexpr absl::Duration kReadyTimeout = absl::Seconds(20);
// How long a member may take to write a line about a connection it refused
// after the client has given up.
constexpr absl::Duration kLogTimeout = absl::Seconds(10);

// How etcdctl connects: its TLS flags, or none at all.
struct ClientCreds {
  std::string cacert;  // --cacert
  std::string cert;    // --cert
  std::string key;     // --key
  bool skip_verify = false;  // --insecure-skip-tls-verify
  bool plaintext = false;    // no TLS: a plain http:// endpoint

  static ClientCreds Plaintext() {
    ClientCreds c;
    c.plaintext = true;
    return c;
  }
  static ClientCreds Verified(const std::string& ca) {
    ClientCreds c;
    c.cacert = ca;
    return c;
  }
  static ClientCreds WithCert(const std::string& ca, const CertPaths& client) {
    ClientCreds c = Verified(ca);
    c.cert = client.cert_file;
    c.key = client.key_file;
    return c;
  }
};

// etcdctl against `server`'s client port with `creds`.
CmdResult Ctl(const ServerProcess& server, const ClientCreds& creds,
              const std::vector<std::string>& args,
              absl::Duration timeout = absl::Seconds(8)) {
  std::vector<std::string> full;
  if (!creds.plaintext) {
    full.push_back("--insecure-transport=false");
    if (!creds.cacert.empty()) full.push_back("--cacert=" + creds.cacert);
    if (!creds.cert.empty()) full.push_back("--cert=" + creds.cert);
    if (!creds.key.empty()) full.push_back("--key=" + creds.key);
    if (creds.skip_verify) full.push_back("--insecure-skip-tls-verify");
  }
  full.insert(full.end(), args.begin(), args.end());
  std::string endpoint =
      creds.plaintext ? server.Endpoint() : "https://" + server.Endpoint();
  return Etcdctl(endpoint, full, std::nullopt, timeout);
}

// Waits until `server` answers a linearizable get over `creds`. On timeout
// or an early exit, the result carries the tail of the member's log.
::testing::AssertionResult WaitServing(ServerProcess& server,
                                       const ClientCreds& creds,
                                       absl::Duration timeout = kReadyTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last_err;
  while (absl::Now() < deadline) {
    if (server.ExitedByItself()) {
      return ::testing::AssertionFailure()
             << server.name() << " exited (code " << server.exit_code()
             << ")\n--- log tail ---\n" << server.LogTail();
    }
    CmdResult r = Ctl(server, creds, {"get", "synod-tls-probe"},
                      absl::Seconds(4));
    if (r.exit_code == 0) return ::testing::AssertionSuccess();
    last_err = r.err;
  }
  return ::testing::AssertionFailure()
         << server.name() << " not serving within " << timeout
         << "; last etcdctl error: " << ErrorLine(last_err)
         << "\n--- log tail ---\n" << server.LogTail();
}

// Waits until `server`'s log contains `needle`.
::testing::AssertionResult LogContains(const ServerProcess& server,
                                       const std::string& needle,
                                       absl::Duration timeout = kLogTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  do {
    if (absl::StrContains(server.LogTail(1 << 24), needle)) {
      return ::testing::AssertionSuccess();
    }
    absl::SleepFor(absl::Milliseconds(50));  // polling, bounded by deadline
  } while (absl::Now() < deadline);
  return ::testing::AssertionFailure()
         << server.name() << "'s log has no \"" << needle << "\" after "
         << timeout << "\n--- log tail ---\n" << server.LogTail();
}

std::string HttpsUrl(int port) { return absl::StrCat("https://127.0.0.1:", port); }

// Flags that make the client port https://.
std::vector<std::string> HttpsClientFlags(int port, const CertPaths& cert) {
  return {"--listen-client-urls=" + HttpsUrl(port),
          "--advertise-client-urls=" + HttpsUrl(port),
          "--cert-file=" + cert.cert_file, "--key-file=" + cert.key_file};
}

CertPaths MustIssue(TestPki& pki, const LeafSpec& spec) {
  auto paths = pki.Issue(spec);
  EXPECT_TRUE(paths.ok()) << paths.status();
  return paths.ok() ? *paths : CertPaths{};
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>();
    auto pki = TestPki::Create(dir_->path());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::make_unique<TestPki>(*std::move(pki));
    auto other = TestPki::Create(dir_->path(), "other-ca");
    ASSERT_TRUE(other.ok()) << other.status();
    other_ca_ = std::make_unique<TestPki>(*std::move(other));
    server_cert_ = MustIssue(*pki_, LeafSpec::Named("server", "server"));
    client_cert_ = MustIssue(*pki_, LeafSpec::Named("client", "root"));
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const auto& m : members_) {
        std::cerr << "--- " << m->name() << " log tail ---\n"
                  << m->LogTail(3000) << "\n";
      }
    }
    members_.clear();
    dir_.reset();
  }

  // A one-member cluster named `name` whose client port is https:// with
  // `cert` (the server certificate unless given), plus `flags`. Started, not
  // waited for.
  ServerProcess& SpawnMember(const std::vector<std::string>& flags,
                             const CertPaths* cert = nullptr) {
    ServerOptions options;
    options.client_port = PickFreePort();
    options.extra_flags =
        HttpsClientFlags(options.client_port, cert ? *cert : server_cert_);
    options.extra_flags.insert(options.extra_flags.end(), flags.begin(),
                               flags.end());
    return Spawn(std::move(options));
  }

  ServerProcess& Spawn(ServerOptions options) {
    std::string dir = absl::StrCat(dir_->path(), "/", options.name);
    EXPECT_EQ(mkdir(dir.c_str(), 0755), 0) << dir;
    members_.push_back(std::make_unique<ServerProcess>(dir, std::move(options)));
    EXPECT_TRUE(members_.back()->Spawn());
    return *members_.back();
  }

  // Three members m1..m3 with https:// peer ports; member i uses
  // peer_flags[i] (certificate flags) and, when client_tls, an https://
  // client port with the server certificate and --client-cert-auth.
  std::vector<ServerProcess*> SpawnCluster(
      const std::vector<std::vector<std::string>>& peer_flags,
      bool client_tls) {
    std::vector<ServerOptions> options(peer_flags.size());
    std::vector<std::string> initial;
    for (size_t i = 0; i < options.size(); ++i) {
      options[i].name = absl::StrCat("m", i + 1);
      options[i].client_port = PickFreePort();
      options[i].peer_port = PickFreePort();
      initial.push_back(absl::StrCat(options[i].name, "=",
                                     HttpsUrl(options[i].peer_port)));
    }
    std::vector<ServerProcess*> out;
    for (size_t i = 0; i < options.size(); ++i) {
      ServerOptions& o = options[i];
      o.initial_cluster = absl::StrJoin(initial, ",");
      o.initial_cluster_token = "synod-tls-test";
      o.extra_flags = {"--listen-peer-urls=" + HttpsUrl(o.peer_port),
                       "--initial-advertise-peer-urls=" + HttpsUrl(o.peer_port),
                       "--heartbeat-interval=50", "--election-timeout=500"};
      o.extra_flags.insert(o.extra_flags.end(), peer_flags[i].begin(),
                           peer_flags[i].end());
      if (client_tls) {
        for (const std::string& f :
             HttpsClientFlags(o.client_port, server_cert_)) {
          o.extra_flags.push_back(f);
        }
        o.extra_flags.push_back("--trusted-ca-file=" + pki_->ca_file());
        o.extra_flags.push_back("--client-cert-auth");
      }
      out.push_back(&Spawn(std::move(o)));
    }
    return out;
  }

  // Peer certificate flags for one member: its certificate, the CA it trusts,
  // client-cert-auth, plus `extra`.
  std::vector<std::string> PeerCertFlags(const CertPaths& cert,
                                         const std::string& ca,
                                         std::vector<std::string> extra = {}) {
    std::vector<std::string> flags = {
        "--peer-cert-file=" + cert.cert_file, "--peer-key-file=" + cert.key_file,
        "--peer-trusted-ca-file=" + ca, "--peer-client-cert-auth"};
    flags.insert(flags.end(), extra.begin(), extra.end());
    return flags;
  }

  ClientCreds Authenticated() const {
    return ClientCreds::WithCert(pki_->ca_file(), client_cert_);
  }

  // A one-member cluster that requires client certificates of the CA, plus
  // `flags`; waited for.
  ServerProcess& StartClientCertAuthMember(std::vector<std::string> flags = {}) {
    flags.push_back("--trusted-ca-file=" + pki_->ca_file());
    flags.push_back("--client-cert-auth");
    ServerProcess& member = SpawnMember(flags);
    EXPECT_TRUE(WaitServing(member, Authenticated()));
    return member;
  }

  // Checks that a put with `refused` fails and the member logs `log_line`
  // about it, and that a put with `served` still succeeds.
  void ExpectRefused(const ServerProcess& member, const ClientCreds& refused,
                     const std::string& log_line, const ClientCreds& served) {
    CmdResult bad = Ctl(member, refused, {"put", "k", "refused"}, absl::Seconds(5));
    EXPECT_NE(bad.exit_code, 0) << bad.out;
    EXPECT_TRUE(LogContains(member, log_line));
    CmdResult put = Ctl(member, served, {"put", "k", "served"});
    ASSERT_EQ(put.exit_code, 0) << put.err;
    CmdResult get = Ctl(member, served, {"get", "k", "--print-value-only"});
    ASSERT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "served\n");
  }

  // Checks that m1 and m2 of `members` form a quorum that takes writes and
  // that m3, refused by both, serves no linearizable read.
  void ExpectQuorumWithoutThird(const std::vector<ServerProcess*>& members) {
    ASSERT_TRUE(members[0]->WaitReady(kReadyTimeout));
    ASSERT_TRUE(members[1]->WaitReady(kReadyTimeout));
    CmdResult put = Ctl(*members[0], ClientCreds::Plaintext(), {"put", "k", "v"});
    ASSERT_EQ(put.exit_code, 0) << put.err;
    CmdResult get = Ctl(*members[1], ClientCreds::Plaintext(),
                        {"get", "k", "--print-value-only"});
    ASSERT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "v\n");
    CmdResult third = Ctl(*members[2], ClientCreds::Plaintext(), {"get", "k"},
                          absl::Seconds(4));
    EXPECT_NE(third.exit_code, 0) << third.out;
  }

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<TestPki> other_ca_;
  CertPaths server_cert_;
  CertPaths client_cert_;
  std::vector<std::unique_ptr<ServerProcess>> members_;
};

// ---- Client port -----------------------------------------------------------

TEST_F(TlsTest, PlaintextClientIsRefusedWhileTlsClientsAreServed) {
  ServerProcess& member = SpawnMember({});
  const ClientCreds tls = ClientCreds::Verified(pki_->ca_file());
  ASSERT_TRUE(WaitServing(member, tls));
  ExpectRefused(member, ClientCreds::Plaintext(),
                "first record does not look like a TLS handshake", tls);
}

TEST_F(TlsTest, ClientWithoutCertificateIsRefusedUnderClientCertAuth) {
  ServerProcess& member = StartClientCertAuthMember();
  ExpectRefused(member, ClientCreds::Verified(pki_->ca_file()),
                "client didn't provide a certificate", Authenticated());
}

TEST_F(TlsTest, RevokedClientCertificateIsRefused) {
  CertPaths revoked = MustIssue(*pki_, LeafSpec::Named("revoked", "root"));
  auto crl = pki_->WriteCrl({revoked});
  ASSERT_TRUE(crl.ok()) << crl.status();
  ServerProcess& member =
      StartClientCertAuthMember({"--client-crl-file=" + *crl});
  ExpectRefused(member, ClientCreds::WithCert(pki_->ca_file(), revoked),
                absl::StrCat("transport: certificate serial ",
                             revoked.serial_hex, " revoked"),
                Authenticated());
}

TEST_F(TlsTest, ExpiredClientCertificateIsRefused) {
  CertPaths expired = MustIssue(*pki_, LeafSpec::Expired("expired", "root"));
  ServerProcess& member = StartClientCertAuthMember();
  ExpectRefused(member, ClientCreds::WithCert(pki_->ca_file(), expired),
                "certificate has expired or is not yet valid", Authenticated());
}

TEST_F(TlsTest, ClientSignedByAnotherCaIsRefused) {
  CertPaths stranger =
      MustIssue(*other_ca_, LeafSpec::Named("stranger", "root"));
  ServerProcess& member = StartClientCertAuthMember();
  ExpectRefused(member, ClientCreds::WithCert(pki_->ca_file(), stranger),
                "certificate signed by unknown authority", Authenticated());
}

TEST_F(TlsTest, ReplacedCertificateIsServedToNewConnections) {
  // The member serves rotating.crt; the CA that signed it is the only one a
  // client can verify it with, so which CA works tells which file is served.
  CertPaths rotating = MustIssue(*pki_, LeafSpec::Named("rotating", "server"));
  ServerProcess& member = SpawnMember({}, &rotating);
  ASSERT_TRUE(WaitServing(member, ClientCreds::Verified(pki_->ca_file())));
  ASSERT_EQ(Ctl(member, ClientCreds::Verified(pki_->ca_file()), {"put", "k", "1"})
                .exit_code,
            0);

  // Same paths, new key and certificate from another CA (each file replaced
  // whole by a rename).
  TestPki& new_ca = *other_ca_;
  ASSERT_EQ(new_ca.dir(), pki_->dir());
  MustIssue(new_ca, LeafSpec::Named("rotating", "server"));
  const ClientCreds after = ClientCreds::Verified(new_ca.ca_file());
  ASSERT_TRUE(WaitServing(member, after, absl::Seconds(15)));
  CmdResult get = Ctl(member, after, {"get", "k", "--print-value-only"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "1\n");
  CmdResult old_ca = Ctl(member, ClientCreds::Verified(pki_->ca_file()),
                         {"get", "k"}, absl::Seconds(5));
  EXPECT_NE(old_ca.exit_code, 0) << old_ca.out;
}

TEST_F(TlsTest, AutoTlsServesASelfSignedCertificate) {
  ServerOptions options;
  options.client_port = PickFreePort();
  options.extra_flags = {
      "--listen-client-urls=" + HttpsUrl(options.client_port),
      "--advertise-client-urls=" + HttpsUrl(options.client_port),
      "--auto-tls"};
  ServerProcess& member = Spawn(std::move(options));
  ClientCreds skip;
  skip.skip_verify = true;
  ASSERT_TRUE(WaitServing(member, skip));
  CmdResult put = Ctl(member, skip, {"put", "k", "v"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  // Not signed by anyone a verifying client trusts.
  CmdResult verified = Ctl(member, ClientCreds::Verified(pki_->ca_file()),
                           {"get", "k"}, absl::Seconds(5));
  EXPECT_NE(verified.exit_code, 0) << verified.out;
}

// ---- Peer port -------------------------------------------------------------

TEST_F(TlsTest, PeerWhoseCommonNameIsNotAllowedIsRefused) {
  // As etcd's TestEtcdPeerCNAuth: m3's certificate has another CN and m3
  // allows only that CN, so neither side accepts the other.
  CertPaths good1 = MustIssue(*pki_, LeafSpec::Named("peer1", "etcd-peer"));
  CertPaths good2 = MustIssue(*pki_, LeafSpec::Named("peer2", "etcd-peer"));
  CertPaths bad = MustIssue(*pki_, LeafSpec::Named("peer3", "intruder"));
  const std::string ca = pki_->ca_file();
  std::vector<ServerProcess*> members = SpawnCluster(
      {PeerCertFlags(good1, ca, {"--peer-cert-allowed-cn=etcd-peer"}),
       PeerCertFlags(good2, ca, {"--peer-cert-allowed-cn=etcd-peer"}),
       PeerCertFlags(bad, ca, {"--peer-cert-allowed-cn=intruder"})},
      /*client_tls=*/false);
  ExpectQuorumWithoutThird(members);
  EXPECT_TRUE(LogContains(*members[0], "client certificate authentication failed"));
  EXPECT_TRUE(LogContains(*members[2], "bad certificate"));
}

TEST_F(TlsTest, PeerWhoseHostnameIsNotAllowedIsRefused) {
  // As etcd's TestEtcdPeerNameAuth, with host names the certificates carry.
  LeafSpec good = LeafSpec::Named("peer1", "etcd-peer");
  good.dns_names = {"localhost", "peers.example"};
  CertPaths good1 = MustIssue(*pki_, good);
  good.name = "peer2";
  CertPaths good2 = MustIssue(*pki_, good);
  LeafSpec bad_spec = LeafSpec::Named("peer3", "etcd-peer");
  bad_spec.dns_names = {"localhost", "intruder.example"};
  CertPaths bad = MustIssue(*pki_, bad_spec);
  const std::string ca = pki_->ca_file();
  std::vector<ServerProcess*> members = SpawnCluster(
      {PeerCertFlags(good1, ca, {"--peer-cert-allowed-hostname=peers.example"}),
       PeerCertFlags(good2, ca, {"--peer-cert-allowed-hostname=peers.example"}),
       PeerCertFlags(bad, ca,
                     {"--peer-cert-allowed-hostname=intruder.example"})},
      /*client_tls=*/false);
  ExpectQuorumWithoutThird(members);
  EXPECT_TRUE(LogContains(*members[0], "client certificate authentication failed"));
  EXPECT_TRUE(LogContains(*members[2], "bad certificate"));
}

TEST_F(TlsTest, PeerSignedByAnotherCaIsRefused) {
  CertPaths good1 = MustIssue(*pki_, LeafSpec::Named("peer1", "etcd-peer"));
  CertPaths good2 = MustIssue(*pki_, LeafSpec::Named("peer2", "etcd-peer"));
  CertPaths stranger = MustIssue(*other_ca_, LeafSpec::Named("peer3", "etcd-peer"));
  const std::string ca = pki_->ca_file();
  std::vector<ServerProcess*> members =
      SpawnCluster({PeerCertFlags(good1, ca), PeerCertFlags(good2, ca),
                    PeerCertFlags(stranger, ca)},
                   /*client_tls=*/false);
  ExpectQuorumWithoutThird(members);
  EXPECT_TRUE(LogContains(*members[0], "certificate signed by unknown authority"));
}

// ---- A TLS cluster through a leader's crash --------------------------------

// A member's id and the leader it knows (0: none, or no answer).
struct RaftView {
  uint64_t id = 0;
  uint64_t leader = 0;
};

RaftView ViewOf(const ServerProcess& m, const ClientCreds& creds) {
  CmdResult r = Ctl(m, creds, {"endpoint", "status", "-w", "json"},
                    absl::Seconds(4));
  std::optional<Json> j = Json::Parse(r.out);
  if (r.exit_code != 0 || !j.has_value() || j->size() != 1) return {};
  const Json& status = (*j)[0]["Status"];
  return {status["header"]["member_id"].Uint(), status["leader"].Uint()};
}

// The member every one of `members` names as leader, or null while they do
// not agree.
ServerProcess* AgreedLeader(const std::vector<ServerProcess*>& members,
                            const ClientCreds& creds) {
  std::vector<RaftView> views;
  for (ServerProcess* m : members) views.push_back(ViewOf(*m, creds));
  for (size_t i = 0; i < members.size(); ++i) {
    bool agreed = views[i].id != 0;
    for (const RaftView& v : views) agreed = agreed && v.leader == views[i].id;
    if (agreed) return members[i];
  }
  return nullptr;
}

TEST_F(TlsTest, PeerAndClientTlsClusterKeepsEveryAcknowledgedWriteAfterLeaderKill9) {
  const std::string ca = pki_->ca_file();
  std::vector<std::vector<std::string>> peer_flags;
  for (int i = 1; i <= 3; ++i) {
    CertPaths peer =
        MustIssue(*pki_, LeafSpec::Named(absl::StrCat("peer", i), "etcd-peer"));
    peer_flags.push_back(PeerCertFlags(peer, ca));
  }
  std::vector<ServerProcess*> members =
      SpawnCluster(peer_flags, /*client_tls=*/true);
  const ClientCreds creds = Authenticated();
  for (ServerProcess* m : members) ASSERT_TRUE(WaitServing(*m, creds));

  ServerProcess* leader = nullptr;
  const absl::Time leader_deadline = absl::Now() + absl::Seconds(15);
  while (leader == nullptr && absl::Now() < leader_deadline) {
    leader = AgreedLeader(members, creds);
  }
  ASSERT_NE(leader, nullptr) << "no agreed leader within 15s";

  // A writer puts distinct keys round-robin through every member (the
  // leader too, until it dies); a put that exits 0 was acknowledged.
  std::mutex mu;
  std::vector<std::string> acked;
  std::atomic<bool> killed{false};
  std::atomic<int> acked_after_kill{0};
  std::thread writer([&] {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    for (int i = 0; acked_after_kill.load() < 10 && absl::Now() < deadline;
         ++i) {
      ServerProcess* target = members[i % members.size()];
      if (killed.load() && target == leader) continue;
      std::string key = absl::StrCat("acked/", absl::Dec(i, absl::kZeroPad6));
      bool after_kill = killed.load();
      CmdResult r = Ctl(*target, creds, {"put", key, "v"}, absl::Seconds(6));
      if (r.exit_code != 0) continue;
      std::lock_guard<std::mutex> lock(mu);
      acked.push_back(key);
      if (after_kill) acked_after_kill.fetch_add(1);
    }
  });
  // Kill the leader once some writes went through.
  const absl::Time warm_deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < warm_deadline) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (acked.size() >= 10) break;
    }
    absl::SleepFor(absl::Milliseconds(20));  // polling, bounded
  }
  leader->Kill9();
  killed.store(true);
  writer.join();
  ASSERT_GE(acked_after_kill.load(), 10) << "the survivors took too few writes";

  // Every acknowledged key is on the survivors, read linearizably.
  for (ServerProcess* m : members) {
    if (m == leader) continue;
    CmdResult r = Ctl(*m, creds, {"get", "acked/", "--prefix", "--keys-only"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::set<std::string> have;
    for (const std::string& line : SplitLines(r.out)) {
      if (!line.empty()) have.insert(line);
    }
    std::lock_guard<std::mutex> lock(mu);
    for (const std::string& key : acked) {
      EXPECT_TRUE(have.count(key)) << key << " lost on " << m->name();
    }
  }
  // The killed member comes back over TLS and has them too.
  ASSERT_TRUE(leader->Spawn());
  ASSERT_TRUE(WaitServing(*leader, creds));
  CmdResult r =
      Ctl(*leader, creds, {"get", "acked/", "--prefix", "--keys-only"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::lock_guard<std::mutex> lock(mu);
  for (const std::string& key : acked) {
    EXPECT_TRUE(absl::StrContains(r.out, key + "\n"))
        << key << " missing on the restarted " << leader->name();
  }
}

}  // namespace
}  // namespace synod::testing
