// synod: one member of a Synod cluster. Flags follow etcd's names
// (`synod --helpfull` lists them); dashes and underscores are
// interchangeable. The flags read into ServerConfig are defined here, the
// rest of etcd 3.4's in etcd_flags.cc; each may also come from its ETCD_*
// environment variable or a --config-file key, as with etcd.
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>

#include "absl/flags/flag.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_split.h"
#include "backend/server/client_metrics.h"
#include "backend/server/config_file.h"
#include "backend/server/etcd_flags.h"
#include "backend/server/etcd_server.h"
#include "backend/server/force_new_cluster.h"
#include "backend/server/gateway.h"
#include "backend/server/member_metrics.h"
#include "backend/server/services.h"
#include "backend/server/snapshot.h"
#include "common/clock.h"
#include "common/flags_util.h"
#include "common/etcd_metrics.h"
#include "common/grpc_metrics.h"
#include "common/tcp_relay.h"
#include "common/http_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "backend/server/peer_transport.h"

ABSL_FLAG(std::string, name, "default", "Human-readable name for this member.");
ABSL_FLAG(std::string, data_dir, "", "Path to the data directory (default: ${name}.synod).");
ABSL_FLAG(std::string, listen_client_urls, "http://localhost:2379",
          "Comma-separated URLs to listen on for client traffic.");
ABSL_FLAG(std::string, advertise_client_urls, "http://localhost:2379",
          "Comma-separated client URLs to advertise to the rest of the cluster.");
ABSL_FLAG(std::string, listen_peer_urls, "http://localhost:2380",
          "Comma-separated URLs to listen on for peer traffic (used once Raft lands).");
ABSL_FLAG(std::string, initial_advertise_peer_urls, "http://localhost:2380",
          "Comma-separated peer URLs of this member to advertise.");
ABSL_FLAG(std::string, initial_cluster, "", "Initial cluster configuration for bootstrapping.");
ABSL_FLAG(std::string, initial_cluster_state, "new", "Initial cluster state ('new' or 'existing').");
ABSL_FLAG(std::string, initial_cluster_token, "etcd-cluster", "Initial cluster token.");
ABSL_FLAG(std::string, listen_metrics_urls, "",
          "Comma-separated URLs to serve /metrics, /health and /version on.");
ABSL_FLAG(int64_t, quota_backend_bytes, int64_t{2} << 30,
          "Raise the NOSPACE alarm when the backend exceeds this many bytes (0 = default).");
ABSL_FLAG(int64_t, max_request_bytes, 1572864, "Maximum client request size in bytes.");
ABSL_FLAG(int32_t, max_txn_ops, 128, "Maximum number of operations permitted in a transaction.");
ABSL_FLAG(std::string, auto_compaction_mode, "periodic",
          "'periodic' (retention is a duration such as '1h', or hours) or 'revision'.");
ABSL_FLAG(std::string, auto_compaction_retention, "0",
          "Auto compaction retention; '0' disables auto compaction.");
ABSL_FLAG(std::string, experimental_watch_progress_notify_interval, "10m",
          "Duration of periodic watch progress notifications.");
ABSL_FLAG(int64_t, heartbeat_interval, 100, "Time (ms) of a heartbeat interval.");
ABSL_FLAG(int64_t, election_timeout, 1000, "Time (ms) for an election to timeout.");
ABSL_FLAG(int64_t, snapshot_count, 100000, "Committed entries between Raft snapshots.");
ABSL_FLAG(bool, pre_vote, false, "Enable the Raft pre-vote phase.");
ABSL_FLAG(bool, strict_reconfig_check, true,
          "Reject reconfiguration requests that would cause quorum loss.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn, error, panic or fatal.");
ABSL_FLAG(std::string, config_file, "",
          "Path to an etcd-style YAML config file; when set, it replaces the other flags.");
ABSL_FLAG(bool, experimental_initial_corrupt_check, false,
          "Enable to check data corruption before serving any client/peer traffic.");
ABSL_FLAG(std::string, experimental_corrupt_check_time, "0s",
          "Duration of time between cluster corruption check passes.");
ABSL_FLAG(bool, experimental_enable_lease_checkpoint, false,
          "Enable leader to send regular checkpoints to other members to prevent "
          "reset of remaining TTL on leader change.");
ABSL_FLAG(std::string, experimental_lease_checkpoint_interval, "5m",
          "Duration of time between lease checkpoints (with "
          "--experimental-enable-lease-checkpoint).");
// Auth, with etcd 3.4's flags.
ABSL_FLAG(std::string, auth_token, "simple",
          "Specify auth token specific options: 'simple' or "
          "'jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256,ttl=5m'.");
ABSL_FLAG(int64_t, auth_token_ttl, 300,
          "The lifetime in seconds of the auth token (simple tokens).");
ABSL_FLAG(int64_t, bcrypt_cost, 10,
          "Specify bcrypt algorithm cost factor for auth password hashing "
          "(4..31).");

// TLS, with etcd 3.4's flags (etcdmain/config.go).
ABSL_FLAG(std::string, cert_file, "", "Path to the client server TLS cert file.");
ABSL_FLAG(std::string, key_file, "", "Path to the client server TLS key file.");
ABSL_FLAG(bool, client_cert_auth, false, "Enable client cert authentication.");
ABSL_FLAG(std::string, client_crl_file, "",
          "Path to the client certificate revocation list file.");
ABSL_FLAG(std::string, client_cert_allowed_hostname, "",
          "Allowed TLS hostname for client cert authentication.");
ABSL_FLAG(std::string, trusted_ca_file, "", "Path to the client server TLS trusted CA cert file.");
ABSL_FLAG(bool, auto_tls, false, "Client TLS using generated certificates.");
ABSL_FLAG(std::string, peer_cert_file, "", "Path to the peer server TLS cert file.");
ABSL_FLAG(std::string, peer_key_file, "", "Path to the peer server TLS key file.");
ABSL_FLAG(bool, peer_client_cert_auth, false, "Enable peer client cert authentication.");
ABSL_FLAG(std::string, peer_trusted_ca_file, "", "Path to the peer server TLS trusted CA file.");
ABSL_FLAG(std::string, peer_cert_allowed_cn, "",
          "Allowed CN for inter peer authentication.");
ABSL_FLAG(std::string, peer_cert_allowed_hostname, "",
          "Allowed TLS hostname for inter peer authentication.");
ABSL_FLAG(bool, peer_auto_tls, false,
          "Peer TLS using self-generated certificates if --peer-key-file and "
          "--peer-cert-file are not provided.");
ABSL_FLAG(std::string, peer_crl_file, "",
          "Path to the peer certificate revocation list file.");
ABSL_FLAG(std::string, cipher_suites, "",
          "Comma-separated list of supported TLS cipher suites between "
          "client/server and peers (empty will be auto-populated).");
ABSL_FLAG(std::string, restore_snapshot, "",
          "Initialise an empty --data-dir from this file (made by `etcdctl snapshot save`).");

namespace synod::server {
namespace {

std::vector<std::string> SplitUrls(const std::string& s) {
  std::vector<std::string> out;
  for (absl::string_view u : absl::StrSplit(s, ',', absl::SkipWhitespace())) {
    out.emplace_back(u);
  }
  return out;
}

// "http://127.0.0.1:2379" -> "127.0.0.1:2379". Empty on an unsupported URL
// (a member's URLs must say http:// or https://).
std::string HostPort(absl::string_view url) {
  return absl::StartsWith(url, "http://") || absl::StartsWith(url, "https://")
             ? common::UrlHostPort(url)
             : "";
}

// One side's TLS (client or peer) as etcd's embed.Config builds it: the
// files from flags, or with auto TLS and no files a self-signed certificate
// kept in <data-dir>/fixtures/<side> (which replaces every other setting,
// as etcd's ClientSelfCert/PeerSelfCert do).
absl::StatusOr<common::TlsInfo> SideTls(const std::string& side, common::TlsInfo info,
                                        bool auto_tls, const std::vector<std::string>& urls,
                                        const std::string& data_dir) {
  if (auto_tls && !info.Empty()) {
    SYNOD_LOG(WARNING) << "ignoring " << side << " auto TLS since certs given";
    auto_tls = false;
  }
  if (auto_tls) {
    std::vector<std::string> hosts;
    for (const std::string& u : urls) {
      std::string host;
      int port = 0;
      if (common::SplitHostPort(HostPort(u), &host, &port)) hosts.push_back(host);
    }
    std::error_code ec;
    std::filesystem::create_directories(data_dir + "/fixtures", ec);
    auto self = common::SelfCert(data_dir + "/fixtures/" + side, hosts);
    if (!self.ok()) return self.status();
    info = *self;
  }
  if (!info.Empty()) {
    if (absl::Status st = common::ValidateTlsInfo(info); !st.ok()) return st;
    SYNOD_LOG(INFO) << "starting with " << side << " TLS: " << info.ToString();
  }
  return info;
}

// Credentials for one listener URL: TLS for https://, plaintext for http://
// (etcd ignores the files on an http:// URL, with a warning).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const std::string& url, const common::TlsInfo& info, const std::string& side) {
  if (!common::IsTlsUrl(url)) {
    if (!info.Empty()) {
      SYNOD_LOG(WARNING) << "scheme is HTTP while key and cert files are present; "
                            "ignoring key and cert files (" << side << " url " << url << ")";
    }
    return grpc::InsecureServerCredentials();
  }
  if (info.Empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot listen on TLS for ", HostPort(url), ": KeyFile and CertFile are not presented"));
  }
  return common::NewServerCredentials(info, side);
}

// "3.4.0" -> "3.4", as etcd's version.Cluster labels its cluster version.
std::string MajorMinor(absl::string_view version) {
  std::vector<absl::string_view> parts = absl::StrSplit(version, '.');
  return parts.size() <= 2 ? std::string(version)
                           : absl::StrCat(parts[0], ".", parts[1]);
}

// `host` as HttpServer binds it: an IP literal (or "" or "localhost") as
// is, a name resolved to its first address, IPv4 first, as Go's
// net.Listen does. A name that does not resolve is returned unchanged (and
// HttpServer refuses it).
std::string ListenHost(const std::string& host) {
  if (host.empty() || host == "localhost" || host.front() == '[') return host;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0) {  // a literal
    freeaddrinfo(res);
    return host;
  }
  std::string out = host;
  for (int family : {AF_INET, AF_INET6}) {
    hints = addrinfo{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) continue;
    char ip[NI_MAXHOST];
    bool ok = getnameinfo(res->ai_addr, res->ai_addrlen, ip, sizeof(ip), nullptr, 0,
                          NI_NUMERICHOST) == 0;
    freeaddrinfo(res);
    if (ok) {
      out = ip;
      break;
    }
  }
  return out;
}

// The HTTP endpoints etcd serves on both its metrics and its client URLs.
void HandleEtcdHttp(common::HttpServer* h, EtcdServer* s) {
  h->Handle("/metrics", [](const common::HttpRequest&) {
    return common::HttpResponse{200, common::kPrometheusTextContentType,
                                common::DefaultMetrics().RenderText()};
  });
  // As etcd 3.4's /health: unhealthy with an alarm raised, without a
  // leader, or when a linearizable read (etcd's QGET through the log) fails;
  // counted in etcd_server_health_success / _failures.
  h->HandleAsync("/health", "GET", [s](const common::HttpRequest&,
                                       common::HttpResponder responder) {
    auto answer = [responder](bool ok) mutable {
      const auto& m = common::GetEtcdMetrics();
      (ok ? m.health_success : m.health_failures)->Inc();
      responder.Respond(common::HttpResponse{
          ok ? 200 : 503, "application/json",
          // etcd: http.Error adds the newline.
          ok ? "{\"health\":\"true\"}" : "{\"health\":\"false\"}\n"});
    };
    if (!s->Alarms().empty()) {
      SYNOD_LOG(WARNING) << "/health error due to an alarm";
      answer(false);
    } else if (s->leader() == 0) {
      SYNOD_LOG(WARNING) << "/health error; no leader (status code 503)";
      answer(false);
    } else {
      s->LinearizableRead([answer](absl::Status st) mutable {
        if (!st.ok()) SYNOD_LOG(WARNING) << "/health error; QGET failed " << st.message();
        answer(st.ok());
      });
    }
  });
  h->Handle("/version", [](const common::HttpRequest&) {
    return common::HttpResponse{
        200, "application/json",
        absl::StrCat("{\"etcdserver\":\"", kServerVersion, "\",\"etcdcluster\":\"",
                     kClusterVersion, "\"}")};
  });
}

int Run(int argc, char** argv) {
  absl::FlagsUsageConfig usage_config;
  usage_config.version_string = [] {
    return absl::StrCat("synod (etcd API) Version: ", kServerVersion, "\n");
  };
  absl::SetFlagsUsageConfig(usage_config);
  const std::vector<std::string> command_line_flags = common::InitProgram(
      argc, argv,
      "synod: a member of a Synod cluster (etcd v3 API).\n"
      "  synod --name m1 --data-dir m1.synod "
      "--listen-client-urls http://127.0.0.1:2379\n"
      "Every flag can also come from its ETCD_* environment variable "
      "(--listen-client-urls: ETCD_LISTEN_CLIENT_URLS), as with etcd.");
  common::InstallGrpcLogBridge();
  // As etcd: a config file (--config-file or ETCD_CONFIG_FILE) replaces the
  // environment; without one, ETCD_* variables set the flags the command
  // line does not give.
  std::vector<std::string> skipped, env_used, env_unrecognized, ignored_flags;
  std::string config_file = absl::GetFlag(FLAGS_config_file);
  if (config_file.empty()) {
    const char* from_env = std::getenv("ETCD_CONFIG_FILE");
    if (from_env != nullptr) config_file = from_env;
  }
  if (!config_file.empty()) {
    ResetCommandLineFlags(command_line_flags, &ignored_flags);
    absl::Status st = ApplyConfigFile(config_file, &skipped);
    if (!st.ok()) {
      std::fprintf(stderr, "synod: %s\n", std::string(st.message()).c_str());
      return 2;
    }
  } else {
    absl::Status st =
        common::SetFlagsFromEnv("ETCD", command_line_flags, &env_used, &env_unrecognized);
    if (!st.ok()) {
      std::fprintf(stderr, "synod: %s\n", std::string(st.message()).c_str());
      return 2;
    }
  }

  auto process_flags = ReadEtcdProcessFlags(absl::GetFlag(FLAGS_log_level));
  if (!process_flags.ok()) {
    std::fprintf(stderr, "synod: %s\n", std::string(process_flags.status().message()).c_str());
    return 2;
  }
  if (!common::SetLogLevel(process_flags->log_level)) {
    std::fprintf(stderr, "synod: invalid --log-level %s\n",
                 absl::GetFlag(FLAGS_log_level).c_str());
    return 2;
  }
  if (absl::Status st = RedirectLog(*process_flags); !st.ok()) {
    std::fprintf(stderr, "synod: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  if (!config_file.empty()) {
    SYNOD_LOG(INFO) << "loaded server configuration from " << config_file
                    << "; other command line flags and environment variables are ignored";
    for (const std::string& f : ignored_flags) {
      SYNOD_LOG(WARNING) << "ignoring command line flag --" << f << " (config file in use)";
    }
  }
  for (const std::string& e : env_used) {
    SYNOD_LOG(INFO) << "recognized and used environment variable " << e;
  }
  for (const std::string& e : env_unrecognized) {
    SYNOD_LOG(WARNING) << "unrecognized environment variable " << e;
  }
  for (const std::string& w : process_flags->warnings) SYNOD_LOG(WARNING) << w;
  for (const std::string& k : skipped) {
    SYNOD_LOG(WARNING) << "config file: key '" << k << "' is not supported; skipped";
  }
  ServerConfig cfg;
  cfg.name = absl::GetFlag(FLAGS_name);
  cfg.data_dir = absl::GetFlag(FLAGS_data_dir);
  if (cfg.data_dir.empty()) cfg.data_dir = cfg.name + ".synod";
  cfg.listen_client_urls = SplitUrls(absl::GetFlag(FLAGS_listen_client_urls));
  cfg.advertise_client_urls = SplitUrls(absl::GetFlag(FLAGS_advertise_client_urls));
  cfg.listen_peer_urls = SplitUrls(absl::GetFlag(FLAGS_listen_peer_urls));
  cfg.initial_advertise_peer_urls =
      SplitUrls(absl::GetFlag(FLAGS_initial_advertise_peer_urls));
  cfg.listen_metrics_urls = SplitUrls(absl::GetFlag(FLAGS_listen_metrics_urls));
  cfg.initial_cluster = absl::GetFlag(FLAGS_initial_cluster);
  cfg.initial_cluster_state = absl::GetFlag(FLAGS_initial_cluster_state);
  cfg.initial_cluster_token = absl::GetFlag(FLAGS_initial_cluster_token);
  cfg.quota_backend_bytes = absl::GetFlag(FLAGS_quota_backend_bytes);
  if (cfg.quota_backend_bytes <= 0) cfg.quota_backend_bytes = int64_t{2} << 30;
  cfg.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  cfg.max_txn_ops = absl::GetFlag(FLAGS_max_txn_ops);
  cfg.auto_compaction_mode = absl::GetFlag(FLAGS_auto_compaction_mode);
  cfg.auto_compaction_retention = absl::GetFlag(FLAGS_auto_compaction_retention);
  cfg.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_interval));
  cfg.election_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_election_timeout));
  cfg.snapshot_count = absl::GetFlag(FLAGS_snapshot_count);
  cfg.pre_vote = absl::GetFlag(FLAGS_pre_vote);
  cfg.strict_reconfig_check = absl::GetFlag(FLAGS_strict_reconfig_check);
  cfg.restore_snapshot = absl::GetFlag(FLAGS_restore_snapshot);
  cfg.auth_token = absl::GetFlag(FLAGS_auth_token);
  cfg.auth_token_ttl = absl::Seconds(absl::GetFlag(FLAGS_auth_token_ttl));
  cfg.bcrypt_cost = static_cast<int>(absl::GetFlag(FLAGS_bcrypt_cost));
  cfg.client_cert_auth = absl::GetFlag(FLAGS_client_cert_auth);
  if (absl::GetFlag(FLAGS_auth_token_ttl) <= 0) {
    std::fprintf(stderr, "synod: invalid --auth-token-ttl %lld (must be > 0)\n",
                 static_cast<long long>(absl::GetFlag(FLAGS_auth_token_ttl)));
    return 2;
  }
  if (cfg.bcrypt_cost < 4 || cfg.bcrypt_cost > 31) {
    std::fprintf(stderr, "synod: invalid --bcrypt-cost %d (must be 4..31)\n",
                 cfg.bcrypt_cost);
    return 2;
  }
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_experimental_watch_progress_notify_interval),
                           &cfg.progress_notify_interval) ||
      cfg.progress_notify_interval <= absl::ZeroDuration()) {
    std::fprintf(stderr, "synod: invalid --experimental-watch-progress-notify-interval\n");
    return 2;
  }
  cfg.initial_corrupt_check = absl::GetFlag(FLAGS_experimental_initial_corrupt_check);
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_experimental_corrupt_check_time),
                           &cfg.corrupt_check_time) ||
      cfg.corrupt_check_time < absl::ZeroDuration()) {
    std::fprintf(stderr, "synod: invalid --experimental-corrupt-check-time %s\n",
                 absl::GetFlag(FLAGS_experimental_corrupt_check_time).c_str());
    return 2;
  }
  cfg.lease_checkpoint = absl::GetFlag(FLAGS_experimental_enable_lease_checkpoint);
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_experimental_lease_checkpoint_interval),
                           &cfg.lease_checkpoint_interval) ||
      cfg.lease_checkpoint_interval <= absl::ZeroDuration()) {
    std::fprintf(stderr, "synod: invalid --experimental-lease-checkpoint-interval %s\n",
                 absl::GetFlag(FLAGS_experimental_lease_checkpoint_interval).c_str());
    return 2;
  }
  if (cfg.auto_compaction_mode != "periodic" && cfg.auto_compaction_mode != "revision") {
    std::fprintf(stderr, "synod: unknown --auto-compaction-mode %s (periodic|revision)\n",
                 cfg.auto_compaction_mode.c_str());
    return 2;
  }
  if (cfg.max_request_bytes <= 0 || cfg.max_txn_ops <= 0) {
    std::fprintf(stderr, "synod: --max-request-bytes and --max-txn-ops must be > 0\n");
    return 2;
  }
  if (cfg.listen_client_urls.empty()) {
    std::fprintf(stderr, "synod: --listen-client-urls is empty\n");
    return 2;
  }

  if (!absl::GetFlag(FLAGS_cipher_suites).empty()) {
    auto list = common::OpenSslCipherList(
        absl::StrSplit(absl::GetFlag(FLAGS_cipher_suites), ',', absl::SkipWhitespace()));
    absl::Status st = list.ok() ? common::SetProcessCipherSuites(*list) : list.status();
    if (!st.ok()) {
      std::fprintf(stderr, "synod: --cipher-suites: %s\n", std::string(st.message()).c_str());
      return 2;
    }
  }
  common::TlsInfo client_files;
  client_files.cert_file = absl::GetFlag(FLAGS_cert_file);
  client_files.key_file = absl::GetFlag(FLAGS_key_file);
  client_files.trusted_ca_file = absl::GetFlag(FLAGS_trusted_ca_file);
  client_files.client_cert_auth = absl::GetFlag(FLAGS_client_cert_auth);
  client_files.crl_file = absl::GetFlag(FLAGS_client_crl_file);
  client_files.allowed_hostname = absl::GetFlag(FLAGS_client_cert_allowed_hostname);
  auto client_tls = SideTls("client", client_files, absl::GetFlag(FLAGS_auto_tls),
                            cfg.listen_client_urls, cfg.data_dir);
  common::TlsInfo peer_files;
  peer_files.cert_file = absl::GetFlag(FLAGS_peer_cert_file);
  peer_files.key_file = absl::GetFlag(FLAGS_peer_key_file);
  peer_files.trusted_ca_file = absl::GetFlag(FLAGS_peer_trusted_ca_file);
  peer_files.client_cert_auth = absl::GetFlag(FLAGS_peer_client_cert_auth);
  peer_files.crl_file = absl::GetFlag(FLAGS_peer_crl_file);
  peer_files.allowed_cn = absl::GetFlag(FLAGS_peer_cert_allowed_cn);
  peer_files.allowed_hostname = absl::GetFlag(FLAGS_peer_cert_allowed_hostname);
  auto peer_tls = client_tls.ok() ? SideTls("peer", peer_files, absl::GetFlag(FLAGS_peer_auto_tls),
                                            cfg.listen_peer_urls, cfg.data_dir)
                                  : client_tls;
  if (!peer_tls.ok()) {
    std::fprintf(stderr, "synod: %s\n", std::string(peer_tls.status().message()).c_str());
    return 2;
  }
  // An https:// URL without certificates is refused before anything opens.
  for (const auto& [urls, tls] :
       {std::pair(&cfg.listen_client_urls, &*client_tls), std::pair(&cfg.listen_peer_urls, &*peer_tls),
        std::pair(&cfg.listen_metrics_urls, &*client_tls)}) {
    for (const std::string& u : *urls) {
      if (common::IsTlsUrl(u) && tls->Empty()) {
        std::fprintf(stderr, "synod: cannot listen on TLS for %s: KeyFile and CertFile are not presented\n",
                     HostPort(u).c_str());
        return 2;
      }
    }
  }
  if (!peer_tls->Empty()) {
    auto dial = common::NewChannelCredentials(*peer_tls);
    if (!dial.ok()) {
      std::fprintf(stderr, "synod: %s\n", std::string(dial.status().message()).c_str());
      return 2;
    }
    SetPeerDialCredentials(*dial);
  }

  if (!cfg.restore_snapshot.empty()) {
    if (std::filesystem::exists(cfg.data_dir + "/member")) {
      std::fprintf(stderr, "synod: --restore-snapshot needs an empty data dir; %s exists\n",
                   cfg.data_dir.c_str());
      return 1;
    }
    std::filesystem::create_directories(cfg.data_dir + "/member");
    auto b = storage::Backend::Open(cfg.data_dir + "/member/db");
    if (!b.ok()) {
      std::fprintf(stderr, "synod: %s\n", b.status().ToString().c_str());
      return 1;
    }
    absl::Status st = RestoreSnapshot(cfg.restore_snapshot, b->get());
    if (!st.ok()) {
      std::fprintf(stderr, "synod: %s\n", st.ToString().c_str());
      std::filesystem::remove_all(cfg.data_dir + "/member");
      return 1;
    }
    SYNOD_LOG(INFO) << "restored " << cfg.data_dir << " from " << cfg.restore_snapshot;
  }
  if (process_flags->force_new_cluster) {
    auto forced = ForceNewCluster(cfg.data_dir);
    if (!forced.ok()) {
      std::fprintf(stderr, "synod: --force-new-cluster: %s\n", forced.status().ToString().c_str());
      return 1;
    }
    if (!forced->removed.empty()) {
      std::string ids;
      for (uint64_t id : forced->removed) absl::StrAppend(&ids, ids.empty() ? "" : ", ", absl::Hex(id));
      SYNOD_LOG(WARNING) << "forcing restart of member " << absl::StrCat(absl::Hex(forced->member_id))
                         << " as a one-member cluster at commit index " << forced->commit_index
                         << ", removing members " << ids;
    }
  }

  // SIGINT/SIGTERM are taken by sigwait below; block them before any thread.
  const sigset_t sigs = common::BlockStopSignals();
  // Why this process stops: a stop signal, or this member's removal from the
  // cluster (etcd stops a removed member). Set once; main waits for it.
  // Never freed: the signal thread may outlive main's frame.
  struct StopRequest {
    absl::Mutex mu;
    std::string reason ABSL_GUARDED_BY(mu);
    void Set(std::string why) {
      absl::MutexLock l(&mu);
      if (reason.empty()) reason = std::move(why);
    }
    bool IsSet() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return !reason.empty();
    }
  };
  auto* stop = new StopRequest();
  std::thread([sigs, stop] {
    int sig = 0;
    sigwait(&sigs, &sig);
    stop->Set(absl::StrCat("received signal ", sig));
  }).detach();  // blocked in sigwait until the process ends
  cfg.on_removed = [stop] {
    stop->Set("this member was removed from the cluster");
  };

  auto server = EtcdServer::Open(cfg);
  if (!server.ok()) {
    SYNOD_LOG(ERROR) << "cannot start: " << server.status();
    return 1;
  }
  EtcdServer* s = server->get();

  // Peers: Raft messages, snapshots and forwarded lease calls.
  grpc::ServerBuilder peer_builder;
  peer_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  for (const std::string& u : cfg.listen_peer_urls) {
    // host:port, or unix:<file> for a unix:// URL (etcd's TestEtcdUnixPeers).
    std::string hp = PeerGrpcAddress(u);
    if (hp.empty()) {
      SYNOD_LOG(ERROR) << "unsupported peer URL " << u
                       << " (want http(s)://host:port or unix(s)://name)";
      return 2;
    }
    auto creds = ListenerCredentials(u, *peer_tls, "peer");
    if (!creds.ok()) {
      SYNOD_LOG(ERROR) << creds.status().message();
      return 2;
    }
    peer_builder.AddListeningPort(hp, *creds);
  }
  peer_builder.SetMaxReceiveMessageSize(INT_MAX);
  peer_builder.SetMaxSendMessageSize(INT_MAX);
  peer_builder.RegisterService(s->peer_service());
  std::unique_ptr<grpc::Server> peer_server = peer_builder.BuildAndStart();
  if (!peer_server) {
    SYNOD_LOG(ERROR) << "cannot listen for peers on "
                     << absl::GetFlag(FLAGS_listen_peer_urls);
    return 1;
  }

  common::MetricsRegistry& metrics = common::DefaultMetrics();
  // etcd 3.4's etcd_*, process_* families (grpc_server_* come with the
  // services), etcd_server_version among them.
  server::MemberMetrics member_metrics(s);

  std::vector<std::unique_ptr<common::HttpServer>> http;
  for (const std::string& u : cfg.listen_metrics_urls) {
    std::string host;
    int port = 0;
    if (!common::SplitHostPort(HostPort(u), &host, &port)) {
      SYNOD_LOG(ERROR) << "unsupported metrics URL " << u;
      return 2;
    }
    auto h = std::make_unique<common::HttpServer>();
    HandleEtcdHttp(h.get(), s);
    // etcd serves an https metrics URL with the client certificates.
    if (common::IsTlsUrl(u) && client_tls->Empty()) {
      SYNOD_LOG(ERROR) << "cannot listen on TLS for " << HostPort(u)
                       << ": KeyFile and CertFile are not presented";
      return 2;
    }
    auto st = common::IsTlsUrl(u) ? h->StartTls(ListenHost(host), port, *client_tls)
                                  : h->Start(ListenHost(host), port);
    if (!st.ok()) {
      SYNOD_LOG(ERROR) << "cannot serve metrics on " << u << ": " << st.status();
      return 1;
    }
    http.push_back(std::move(h));
  }

  // The client ports, bound now and served once this member has published
  // (below), as etcd binds its listeners at start and serves them after
  // ReadyNotify: a client that connects in between waits in the listen
  // backlog instead of being refused. Each is an HttpServer that hands
  // gRPC's connections over and serves /metrics, /health, /version and the
  // JSON gateway on the rest, as etcd's cmux does: on an http:// URL those
  // that start with the HTTP/2 preface go to the gRPC server as they are;
  // on an https:// URL those whose ClientHello is a gRPC client's
  // (common/tls_client_hello.h) are relayed, still encrypted, to the gRPC
  // server's TLS listener on a loopback port, which does the handshake and
  // so sees the client's certificate. The hand-offs read grpc_server and
  // relay, which are set before the servers serve. Declared in this order
  // so that the HttpServers stop first, then the gateway, the relay and
  // the gRPC server.
  std::unique_ptr<grpc::Server> grpc_server;
  common::TcpRelay relay;
  std::unique_ptr<JsonGateway> gateway;
  std::vector<std::unique_ptr<common::HttpServer>> client_http;
  // The credentials of gRPC's loopback TLS listener, made once (from the
  // first https:// URL's check); null when every client URL is http://.
  std::shared_ptr<grpc::ServerCredentials> grpc_tls_creds;
  for (const std::string& u : cfg.listen_client_urls) {
    std::string host;
    int port = 0;
    if (HostPort(u).empty() || !common::SplitHostPort(HostPort(u), &host, &port)) {
      SYNOD_LOG(ERROR) << "unsupported client URL " << u << " (want http(s)://host:port)";
      return 2;
    }
    auto creds = ListenerCredentials(u, *client_tls, "client");
    if (!creds.ok()) {
      SYNOD_LOG(ERROR) << creds.status().message();
      return 2;
    }
    common::HttpServerOptions options;
    // Counts only connections still being peeked or served as HTTP/1;
    // gRPC's leave the count once handed over.
    options.max_connections = 4096;
    absl::StatusOr<int> bound;
    if (common::IsTlsUrl(u)) {
      if (grpc_tls_creds == nullptr) grpc_tls_creds = *creds;
      options.tls_handoff = [&relay](int fd) { relay.Relay(fd); };
      auto h = std::make_unique<common::HttpServer>(options);
      bound = h->ListenTls(ListenHost(host), port, *client_tls);
      client_http.push_back(std::move(h));
    } else {
      std::unique_ptr<grpc::Server>* g = &grpc_server;
      options.http2_handoff = [g](int fd) { grpc::AddInsecureChannelFromFd(g->get(), fd); };
      auto h = std::make_unique<common::HttpServer>(options);
      bound = h->Listen(ListenHost(host), port);
      client_http.push_back(std::move(h));
    }
    if (!bound.ok()) {
      SYNOD_LOG(ERROR) << "cannot listen on " << u << ": " << bound.status().message();
      return 1;
    }
  }

  // As etcd (its client listeners wait for ReadyNotify): clients are served
  // once this member has published its name and client URLs through the
  // log, so no client sees it in `member list` without them. A restart with
  // unchanged attributes is ready at once.
  while (!s->attributes_published()) {
    absl::MutexLock l(&stop->mu);
    // Publishing is polled; a stop request ends the wait at once.
    if (common::RealClock::Get()->AwaitWithTimeout(
            &stop->mu, absl::Condition(stop, &StopRequest::IsSet),
            absl::Milliseconds(50))) {
      SYNOD_LOG(INFO) << stop->reason << " before serving clients, shutting down";
      for (auto& h : client_http) h->Stop();
      for (auto& h : http) h->Stop();
      peer_server->Shutdown(common::GrpcDeadlineAfter(absl::Seconds(1)));
      s->Stop();
      return 0;
    }
  }

  // etcd sets its cluster version gauge once the cluster version is
  // decided, which needs this member published.
  member_metrics.SetClusterVersion(MajorMinor(kClusterVersion));

  KvService kv(s);
  WatchService watch(s);
  LeaseService lease(s);
  MaintenanceService maintenance(s);
  ClusterService cluster(s);
  AuthService auth(s);
  grpc::ServerBuilder builder;
  // gRPC listens with SO_REUSEPORT by default, so a second process on the
  // same port would start and take half the connections; refuse that.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // The loopback TLS listener the https client ports relay gRPC clients to.
  int grpc_tls_port = 0;
  if (grpc_tls_creds != nullptr) {
    builder.AddListeningPort("127.0.0.1:0", grpc_tls_creds, &grpc_tls_port);
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(common::NewGrpcServerMetricsFactory(&metrics));
  interceptors.push_back(NewClientMetricsFactory());  // etcd_server_client_*, etc.
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // etcd allows 512 KiB of gRPC overhead over --max-request-bytes.
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<int64_t>(cfg.max_request_bytes + (512 << 10), INT_MAX)));
  builder.SetMaxSendMessageSize(INT_MAX);
  // --max-concurrent-streams and --grpc-keepalive-*; the fd hand-offs get
  // the server's channel arguments too.
  for (const auto& [name, value] : process_flags->client_grpc_args) {
    builder.AddChannelArgument(name, value);
  }
  builder.RegisterService(&kv);
  builder.RegisterService(&watch);
  builder.RegisterService(&lease);
  builder.RegisterService(&maintenance);
  builder.RegisterService(&cluster);
  builder.RegisterService(&auth);
  RegisterLockElection(&builder, s);
  grpc_server = builder.BuildAndStart();
  if (!grpc_server || (grpc_tls_creds != nullptr && grpc_tls_port == 0)) {
    SYNOD_LOG(ERROR) << "cannot start the gRPC server for "
                     << absl::GetFlag(FLAGS_listen_client_urls);
    return 1;
  }
  if (grpc_tls_creds != nullptr) {
    if (absl::Status st = relay.Start("127.0.0.1", grpc_tls_port); !st.ok()) {
      SYNOD_LOG(ERROR) << "cannot relay to the gRPC TLS listener: " << st.message();
      return 1;
    }
  }
  // etcd's JSON gateway (--enable-grpc-gateway, --cors) on every client
  // URL, through an in-process channel to grpc_server.
  if (process_flags->enable_grpc_gateway) {
    gateway = JsonGateway::ForServer(grpc_server.get(), process_flags->cors,
                                     process_flags->max_concurrent_streams);
  }
  for (size_t i = 0; i < client_http.size(); ++i) {
    common::HttpServer* h = client_http[i].get();
    HandleEtcdHttp(h, s);
    if (gateway != nullptr) gateway->Install(h);
    if (absl::Status st = h->Serve(); !st.ok()) {
      SYNOD_LOG(ERROR) << "cannot serve " << cfg.listen_client_urls[i] << ": " << st.message();
      return 1;
    }
  }

  SYNOD_LOG(INFO) << "serving client requests on "
                  << absl::GetFlag(FLAGS_listen_client_urls)
                  << (cfg.listen_metrics_urls.empty()
                          ? ""
                          : absl::StrCat(", metrics on ",
                                         absl::GetFlag(FLAGS_listen_metrics_urls)));
  {
    absl::MutexLock l(&stop->mu);
    stop->mu.Await(absl::Condition(stop, &StopRequest::IsSet));
    SYNOD_LOG(INFO) << stop->reason << ", shutting down";
  }
  for (auto& h : http) h->Stop();
  for (auto& h : client_http) h->Stop();
  relay.Stop();
  grpc_server->Shutdown(common::GrpcDeadlineAfter(absl::Seconds(2)));
  peer_server->Shutdown(common::GrpcDeadlineAfter(absl::Seconds(1)));
  s->Stop();
  return 0;
}

}  // namespace
}  // namespace synod::server

int main(int argc, char** argv) { return synod::server::Run(argc, argv); }
