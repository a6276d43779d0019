// synod-proxy: a stateless gRPC proxy in front of a Synod (or etcd) cluster.
// Flags follow `etcd grpc-proxy start` (names and defaults); dashes and
// underscores are interchangeable.
//
// TLS, as etcd 3.4's grpc-proxy:
// - Its listener serves TLS when --cert-file, --key-file or
//   --trusted-ca-file is given (all three are etcd's TLSInfo; a CA requires
//   client certificates signed by it), else with a self-signed certificate
//   under <--data-dir>/fixtures/proxy when --auto-tls is given; a CRL
//   (--client-crl-file) applies to TLS listeners only.
// - It dials members with --cert/--key/--cacert/--insecure-skip-tls-verify
//   by clientv3's rule (see proxy/upstream.h), and refuses a --cert whose
//   subject has a Common Name.
// - --metrics-addr https://... serves with the listener's certificates.
// - --listen-cipher-suites restrict TLS 1.2; gRPC reads one cipher list
//   per process, so they apply to the proxy's connections to members too
//   (etcd's apply to its listener only).
// Auth (etcd's users, roles and permissions; synod-proxy's own flags):
// - Clients' tokens (gRPC metadata "token") are forwarded on every call the
//   proxy forwards, and every read served from the shared cache and every
//   client watcher attached to a shared upstream watch is first checked
//   against the caller's permission for its exact range (PermissionCache).
// - The proxy's own identity: --user ("name" with --password, or
//   "name:password", as etcdctl's) for the shared upstream watches, the
//   cache's loads, the lease keep-alive stream and its Status polls. That
//   user needs READ on every range clients read or watch through the proxy
//   (e.g. a role granted READ from key "" on, i.e.
//   `etcdctl role grant-permission proxy read '' --from-key`, or root).
//   Without --user, with auth on, shared watches are refused (clients'
//   watchers are canceled with the member's reason) and reads are forwarded.
// - A revoked permission takes effect at the proxy within
//   --auth-poll-interval plus the member's apply lag and a probe round trip
//   (1 s with the defaults); see proxy/auth_monitor.h.
// Where synod-proxy differs: --listen-addr may also carry a scheme,
// "http://" for a plaintext listener and "https://" for a TLS one (etcd's
// takes host:port only); a scheme that contradicts the TLS flags is
// refused. A bad flag or file is an error on stderr and exit code 1 (etcd's
// log.Fatal / os.Exit(1)); 2 for the proxy's other flag errors, as before.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/flags_util.h"
#include "common/grpc_metrics.h"
#include "common/http_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/process_metrics.h"
#include "common/tls.h"
#include "common/errors.h"
#include "proxy/auth_monitor.h"
#include "proxy/forwarder.h"
#include "proxy/kv_proxy.h"
#include "proxy/lease_proxy.h"
#include "proxy/namespace.h"
#include "proxy/permission_cache.h"
#include "proxy/prefix_cache.h"
#include "proxy/proxy_identity.h"
#include "proxy/proxy_metrics.h"
#include "proxy/range_cache.h"
#include "proxy/register.h"
#include "proxy/upstream.h"
#include "proxy/watch_hub.h"
#include "proxy/watch_proxy.h"

ABSL_FLAG(std::string, endpoints, "127.0.0.1:2379",
          "Comma-separated etcd cluster endpoints.");
ABSL_FLAG(std::string, listen_addr, "127.0.0.1:23790", "Listen address.");
ABSL_FLAG(std::string, advertise_client_url, "127.0.0.1:23790",
          "Advertise address to register (must be reachable by clients).");
ABSL_FLAG(std::string, metrics_addr, "",
          "Listen for /metrics and /health requests on this URL "
          "(http://host:port).");
// As etcd grpc-proxy's: the limits of the proxy's client to the cluster
// (clientv3's MaxCallSendMsgSize / MaxCallRecvMsgSize), 1.5 MiB (the
// member's default --max-request-bytes) and math.MaxInt32.
ABSL_FLAG(int64_t, max_send_bytes, 1572864,
          "Message send limit to the cluster, in bytes (default 1.5 MiB). "
          "A larger request is answered 'etcdserver: request is too "
          "large'.");
ABSL_FLAG(int64_t, max_recv_bytes, INT_MAX,
          "Message receive limit from the cluster, in bytes (default "
          "math.MaxInt32).");
ABSL_FLAG(std::string, namespace, "",
          "String to prefix to all keys for namespacing requests.");
ABSL_FLAG(std::string, resolver_prefix, "",
          "Prefix to use for registering the proxy (shared with other "
          "proxies).");
ABSL_FLAG(int64_t, resolver_ttl, 0,
          "TTL, in seconds, when registering proxy endpoints.");
ABSL_FLAG(std::string, data_dir, "default.proxy",
          "Data directory for persistent data.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn, error.");
// Client TLS for connecting to members (etcd grpc-proxy's help texts).
ABSL_FLAG(std::string, cert, "",
          "Identify secure connections with etcd servers using this TLS "
          "certificate file.");
ABSL_FLAG(std::string, key, "",
          "Identify secure connections with etcd servers using this TLS key "
          "file.");
ABSL_FLAG(std::string, cacert, "",
          "Verify certificates of TLS-enabled secure etcd servers using this "
          "CA bundle.");
ABSL_FLAG(bool, insecure_skip_tls_verify, false,
          "Skip authentication of etcd server TLS certificates (CAUTION: "
          "this option should be enabled only for testing purposes).");
// TLS for clients connecting to the proxy.
ABSL_FLAG(std::string, cert_file, "",
          "Identify secure connections to the proxy using this TLS "
          "certificate file.");
ABSL_FLAG(std::string, key_file, "",
          "Identify secure connections to the proxy using this TLS key "
          "file.");
ABSL_FLAG(std::string, trusted_ca_file, "",
          "Verify certificates of TLS-enabled secure proxy using this CA "
          "bundle.");
ABSL_FLAG(std::string, listen_cipher_suites, "",
          "Comma-separated list of supported TLS cipher suites between "
          "client/proxy (empty will be auto-populated by Go).");
ABSL_FLAG(bool, auto_tls, false, "Proxy TLS using generated certificates.");
ABSL_FLAG(std::string, client_crl_file, "",
          "Proxy client certificate revocation list file.");
// Auth (not in etcd 3.4's grpc-proxy).
ABSL_FLAG(std::string, user, "",
          "The proxy's own user for the shared watches, the cache and its "
          "status polls: username[:password], as etcdctl's --user. It needs "
          "READ on every range clients read or watch through the proxy (e.g. "
          "`etcdctl role grant-permission <role> read '' --from-key`, or "
          "root). "
          "Clients' own tokens are forwarded and checked either way.");
ABSL_FLAG(std::string, password, "",
          "Password of --user (then --user is the whole user name).");
ABSL_FLAG(std::string, auth_poll_interval, "500ms",
          "How often the proxy asks a member for the cluster's auth state "
          "(Maintenance.Status); a revoked permission takes effect at the "
          "proxy within this plus the member's apply lag and one round "
          "trip.");
ABSL_FLAG(std::string, auth_decision_max_age, "30s",
          "The longest a client's permission decision is reused while the "
          "auth state is unchanged (so an expired token is noticed). Against "
          "members that do not tell their auth state (etcd), decisions live "
          "1s and watchers are re-checked every second.");
// Proxy-specific flags (not in etcd grpc-proxy).
ABSL_FLAG(int64_t, watch_window_events, 4096,
          "Recent events kept per watched range for resuming clients.");
ABSL_FLAG(int64_t, watch_window_bytes, 8 << 20,
          "Bytes of recent events kept per watched range.");
ABSL_FLAG(int64_t, watch_client_queue_bytes, 1 << 20,
          "Event bytes queued per client watch stream before its watchers "
          "are canceled as too slow.");
ABSL_FLAG(std::string, watch_idle_linger, "30s",
          "How long a watched range with no watcher keeps its upstream "
          "watch and window.");
ABSL_FLAG(int64_t, cache_max_bytes, 64 << 20,
          "Bytes the range cache may hold (LRU); 0 disables the cache.");
ABSL_FLAG(int64_t, cache_max_ranges, 1024,
          "Ranges the range cache may hold (each keeps a watch).");
ABSL_FLAG(std::string, cache_serializable_bound, "1s",
          "Serializable reads are served from the cache only if its watch "
          "progress is at most this old.");
ABSL_FLAG(std::string, cache_linearizable_wait, "500ms",
          "How long a linearizable read waits for the cache to reach the "
          "cluster's revision before it is forwarded.");
ABSL_FLAG(std::string, cache_prefixes, "",
          "Comma-separated key prefixes (e.g. /cfg/,/services/) the proxy "
          "holds whole, with a window of their history, kept current by one "
          "upstream watch each: every Range and Watch inside them is served "
          "by the proxy. With --namespace, prefixes are inside it.");
ABSL_FLAG(int64_t, cache_prefix_max_bytes, int64_t{256} << 20,
          "Bytes one cached prefix may hold (keys, values, history); a "
          "prefix over it is served per range until it fits again.");
ABSL_FLAG(int64_t, cache_prefixes_max_bytes, int64_t{1} << 30,
          "Bytes all cached prefixes together may hold.");
ABSL_FLAG(int64_t, cache_prefix_window_events, 100000,
          "Events of history kept per cached prefix (reads at past "
          "revisions and watches resuming in the window are served).");
ABSL_FLAG(std::string, cache_prefix_compaction_check_interval, "5s",
          "How often each cached prefix asks the cluster whether it was "
          "compacted past the prefix's window start (a compaction made "
          "through this proxy is seen at once).");
ABSL_FLAG(std::string, watch_progress_notify_interval, "10m",
          "Interval of progress notifications to progress_notify watchers.");

namespace synod::proxy {
namespace {

using common::UrlHostPort;

// A listen or metrics address: "[scheme://]host:port[/]".
struct ListenUrl {
  std::string scheme;     // "" when absent
  std::string host_port;  // "host:port"
};

ListenUrl ParseListenUrl(absl::string_view url) {
  ListenUrl u;
  absl::ConsumeSuffix(&url, "/");
  const size_t sep = url.find("://");
  if (sep != absl::string_view::npos) {
    u.scheme = std::string(url.substr(0, sep));
    url.remove_prefix(sep + 3);
  }
  u.host_port = std::string(url);
  return u;
}

// Prints "synod-proxy: <message>" on stderr; returns the exit code for a
// start-up error that etcd's grpc-proxy fails with (1).
int Fail(absl::string_view message) {
  std::fprintf(stderr, "synod-proxy: %.*s\n", static_cast<int>(message.size()),
               message.data());
  return 1;
}

// The listener's TLS from the flags, as etcd's grpc-proxy builds it:
// newTLS(--trusted-ca-file, --cert-file, --key-file) when any is given,
// else SelfCert in <--data-dir>/fixtures/proxy for --auto-tls, else none
// (plaintext). `listen` is the listener's "host:port".
// Errors carry etcd's words ("cannot listen on TLS for <addr>: KeyFile and
// CertFile are not presented", "KeyFile and CertFile must both be
// present[...]").
absl::StatusOr<std::optional<common::TlsInfo>> ListenerTls(
    const std::string& listen) {
  common::TlsInfo info;
  info.cert_file = absl::GetFlag(FLAGS_cert_file);
  info.key_file = absl::GetFlag(FLAGS_key_file);
  info.trusted_ca_file = absl::GetFlag(FLAGS_trusted_ca_file);
  const bool flags_given = !info.Empty() || !info.trusted_ca_file.empty();
  if (!flags_given && absl::GetFlag(FLAGS_auto_tls)) {
    absl::StatusOr<common::TlsInfo> self = common::SelfCert(
        absl::StrCat(absl::GetFlag(FLAGS_data_dir), "/fixtures/proxy"),
        {listen});
    if (!self.ok()) return self.status();
    info = *std::move(self);
  } else if (!flags_given) {
    if (!absl::GetFlag(FLAGS_client_crl_file).empty()) {
      SYNOD_LOG(WARNING) << "--client-crl-file is ignored: the proxy's "
                            "listener has no TLS";
    }
    return std::optional<common::TlsInfo>();
  }
  info.crl_file = absl::GetFlag(FLAGS_client_crl_file);
  if (info.Empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot listen on TLS for ", listen,
                     ": KeyFile and CertFile are not presented"));
  }
  if (absl::Status st = common::ValidateTlsInfo(info); !st.ok()) return st;
  return std::optional<common::TlsInfo>(std::move(info));
}

// The proxy's two listeners as the flags configure them.
struct Listeners {
  std::string listen;  // the gRPC listener's "host:port"
  std::shared_ptr<grpc::ServerCredentials> creds;
  std::optional<common::TlsInfo> tls;  // the gRPC listener's, if any
  // --metrics-addr, when given.
  std::string metrics_host;
  int metrics_port = 0;
  bool metrics_https = false;
};

// --listen-addr, the listener's TLS flags (--listen-cipher-suites
// process-wide) and --metrics-addr. Call before any other credentials are
// made. Errors are the messages to exit with.
absl::StatusOr<Listeners> ConfigureListeners() {
  // Cipher suites first: gRPC reads its list when the first credentials
  // are made (these and the upstream's, which are made later).
  std::vector<std::string> suites = absl::StrSplit(
      absl::GetFlag(FLAGS_listen_cipher_suites), ',', absl::SkipWhitespace());
  for (std::string& suite : suites) {
    suite = std::string(absl::StripAsciiWhitespace(suite));
  }
  if (!suites.empty()) {
    absl::StatusOr<std::string> list = common::OpenSslCipherList(suites);
    if (!list.ok()) return list.status();
    if (absl::Status st = common::SetProcessCipherSuites(*list); !st.ok()) {
      return st;
    }
  }
  Listeners l;
  const std::string listen_addr = absl::GetFlag(FLAGS_listen_addr);
  const ListenUrl listen_url = ParseListenUrl(listen_addr);
  if (listen_url.scheme != "" && listen_url.scheme != "http" &&
      listen_url.scheme != "https") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported --listen-addr ", listen_addr,
                     " (want host:port, http:// or https://)"));
  }
  l.listen = listen_url.host_port;
  absl::StatusOr<std::optional<common::TlsInfo>> tls = ListenerTls(l.listen);
  if (!tls.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "failed to create TLS listener: ", tls.status().message()));
  }
  l.tls = *std::move(tls);
  if (listen_url.scheme == "https" && !l.tls.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen-addr ", listen_addr,
                     " needs TLS: --cert-file and --key-file, or --auto-tls"));
  }
  if (listen_url.scheme == "http" && l.tls.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen-addr ", listen_addr,
                     " is plaintext, but TLS flags are given (use https:// or "
                     "host:port)"));
  }
  l.creds = grpc::InsecureServerCredentials();
  if (l.tls.has_value()) {
    SYNOD_LOG(INFO) << "gRPC proxy server TLS: " << l.tls->ToString();
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> c =
        common::NewServerCredentials(*l.tls, "proxy");
    if (!c.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "failed to create TLS listener: ", c.status().message()));
    }
    l.creds = *std::move(c);
  }

  // --metrics-addr: "http://" (or no scheme) is plaintext even when the
  // listener has TLS; "https://" serves with the listener's certificates,
  // which it needs (etcd's transport.NewListener).
  const std::string metrics_addr = absl::GetFlag(FLAGS_metrics_addr);
  if (metrics_addr.empty()) return l;
  const ListenUrl metrics_url = ParseListenUrl(metrics_addr);
  if ((metrics_url.scheme != "" && metrics_url.scheme != "http" &&
       metrics_url.scheme != "https") ||
      !common::SplitHostPort(metrics_url.host_port, &l.metrics_host,
                             &l.metrics_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported --metrics-addr ", metrics_addr));
  }
  l.metrics_https = metrics_url.scheme == "https";
  if (l.metrics_https && !l.tls.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot listen on TLS for ", metrics_url.host_port,
                     ": KeyFile and CertFile are not presented"));
  }
  return l;
}

// How to dial members: the message limits (bytes) and etcd grpc-proxy's
// client TLS flags.
UpstreamOptions UpstreamFromFlags(int max_send_bytes, int max_recv_bytes) {
  UpstreamOptions o;
  o.max_send_bytes = max_send_bytes;
  o.max_recv_bytes = max_recv_bytes;
  o.tls.cert_file = absl::GetFlag(FLAGS_cert);
  o.tls.key_file = absl::GetFlag(FLAGS_key);
  o.tls.trusted_ca_file = absl::GetFlag(FLAGS_cacert);
  o.tls.insecure_skip_verify = absl::GetFlag(FLAGS_insecure_skip_tls_verify);
  if (o.tls.insecure_skip_verify) {
    SYNOD_LOG(WARNING)
        << "--insecure-skip-tls-verify was given, this grpc proxy process "
           "skips authentication of etcd server TLS certificates. This "
           "option should be enabled only for testing purposes.";
  }
  return o;
}

int Run(int argc, char** argv) {
  common::InitProgram(
      argc, argv,
      "synod-proxy: a caching, watch-coalescing etcd v3 gRPC proxy.\n"
      "  synod-proxy --endpoints=127.0.0.1:2379 "
      "--listen-addr=127.0.0.1:23790");
  if (!common::SetLogLevel(absl::GetFlag(FLAGS_log_level))) {
    std::fprintf(stderr, "synod-proxy: invalid --log-level\n");
    return 2;
  }
  common::InstallGrpcLogBridge();
  std::vector<std::string> eps = absl::StrSplit(absl::GetFlag(FLAGS_endpoints),
                                                ',', absl::SkipWhitespace());
  if (eps.empty()) {
    std::fprintf(stderr, "synod-proxy: --endpoints is empty\n");
    return 2;
  }
  if (!absl::GetFlag(FLAGS_resolver_prefix).empty() &&
      absl::GetFlag(FLAGS_resolver_ttl) < 1) {
    std::fprintf(stderr, "synod-proxy: invalid resolver-ttl %lld\n",
                 static_cast<long long>(absl::GetFlag(FLAGS_resolver_ttl)));
    return 2;
  }
  const int64_t max_send = absl::GetFlag(FLAGS_max_send_bytes);
  const int64_t max_recv = absl::GetFlag(FLAGS_max_recv_bytes);
  if (max_send <= 0 || max_recv <= 0) {
    std::fprintf(stderr,
                 "synod-proxy: --max-send-bytes and --max-recv-bytes must "
                 "be > 0\n");
    return 2;
  }

  // SIGINT/SIGTERM are taken by sigwait below; block them before any thread.
  const sigset_t sigs = common::BlockStopSignals();

  absl::StatusOr<Listeners> listeners = ConfigureListeners();
  if (!listeners.ok()) return Fail(listeners.status().message());
  const std::string& listen = listeners->listen;

  const UpstreamOptions upstream_options =
      UpstreamFromFlags(static_cast<int>(std::min<int64_t>(max_send, INT_MAX)),
                        static_cast<int>(std::min<int64_t>(max_recv, INT_MAX)));
  absl::StatusOr<std::unique_ptr<Endpoints>> endpoints_or =
      Endpoints::Create(eps, upstream_options);
  if (!endpoints_or.ok()) return Fail(endpoints_or.status().message());
  if (upstream_options.TlsConfigured()) {
    SYNOD_LOG(INFO) << "gRPC proxy client TLS: "
                    << upstream_options.tls.ToString();
  }
  Endpoints& endpoints = **endpoints_or;
  common::Clock* clock = common::RealClock::Get();

  // The proxy's own identity.
  std::string user, password;
  if (absl::Status st = ParseUserFlags(absl::GetFlag(FLAGS_user),
                                       absl::GetFlag(FLAGS_password), &user,
                                       &password);
      !st.ok()) {
    return Fail(st.message());
  }
  PermissionCacheOptions pco;
  AuthMonitorOptions amo;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_auth_poll_interval),
                           &amo.poll_interval) ||
      amo.poll_interval <= absl::ZeroDuration() ||
      !absl::ParseDuration(absl::GetFlag(FLAGS_auth_decision_max_age),
                           &pco.max_age) ||
      pco.max_age <= absl::ZeroDuration()) {
    std::fprintf(stderr, "synod-proxy: invalid auth duration flag\n");
    return 2;
  }
  ProxyIdentity identity(user, password, GrpcAuthenticator(&endpoints), clock);
  if (identity.configured()) {
    // The first token, before serving; a cluster without auth (or not
    // reachable yet) is fine: the proxy authenticates when a member asks.
    absl::Mutex mu;
    bool done = false, ok = false;
    identity.Start([&](bool got) {
      absl::MutexLock l(&mu);
      ok = got;
      done = true;
    });
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(&done));
    if (ok) {
      SYNOD_LOG(INFO) << "synod-proxy's upstream user: " << user;
    }
  }
  GrpcUpstream upstream(&endpoints, &identity);
  ForwardingService forwarder(&endpoints);
  common::MetricsRegistry& metrics = common::DefaultMetrics();
  ProxyMetrics pm(&metrics);
  absl::Duration linger, notify;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_watch_idle_linger), &linger) ||
      !absl::ParseDuration(absl::GetFlag(FLAGS_watch_progress_notify_interval),
                           &notify) ||
      notify <= absl::ZeroDuration()) {
    std::fprintf(stderr, "synod-proxy: invalid duration flag\n");
    return 2;
  }
  WatchRangeOptions wro;
  wro.window_events = static_cast<size_t>(
      std::max<int64_t>(1, absl::GetFlag(FLAGS_watch_window_events)));
  wro.window_bytes = static_cast<size_t>(
      std::max<int64_t>(1, absl::GetFlag(FLAGS_watch_window_bytes)));
  WatchHub hub(&upstream, clock, wro, linger, &pm);
  const Namespace ns(absl::GetFlag(FLAGS_namespace));
  WatchProxyOptions wpo;
  wpo.ns = &ns;
  wpo.client_queue_bytes = static_cast<size_t>(
      std::max<int64_t>(1, absl::GetFlag(FLAGS_watch_client_queue_bytes)));
  wpo.progress_notify_interval = notify;
  wpo.fragment_bytes = static_cast<size_t>(max_send);
  PermissionCache perms(&upstream, clock, pco);
  RangeCacheOptions rco;
  rco.max_bytes = static_cast<size_t>(
      std::max<int64_t>(0, absl::GetFlag(FLAGS_cache_max_bytes)));
  rco.max_ranges = static_cast<size_t>(
      std::max<int64_t>(0, absl::GetFlag(FLAGS_cache_max_ranges)));
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_cache_serializable_bound),
                           &rco.serializable_bound) ||
      !absl::ParseDuration(absl::GetFlag(FLAGS_cache_linearizable_wait),
                           &rco.linearizable_wait)) {
    std::fprintf(stderr, "synod-proxy: invalid cache duration flag\n");
    return 2;
  }
  RangeCache cache(&hub, &upstream, &perms, clock, rco, &pm);
  // --cache-prefixes: whole prefixes held by the proxy (issue 15).
  absl::StatusOr<std::vector<std::string>> prefix_list =
      ParseCachePrefixes(absl::GetFlag(FLAGS_cache_prefixes));
  if (!prefix_list.ok()) return Fail(prefix_list.status().message());
  for (std::string& p : *prefix_list) p = ns.Key(p);  // upstream keys
  PrefixCacheOptions pfo;
  pfo.max_prefix_bytes = static_cast<size_t>(
      std::max<int64_t>(1, absl::GetFlag(FLAGS_cache_prefix_max_bytes)));
  pfo.max_total_bytes = static_cast<size_t>(
      std::max<int64_t>(1, absl::GetFlag(FLAGS_cache_prefixes_max_bytes)));
  pfo.window_events = static_cast<size_t>(
      std::max<int64_t>(1, absl::GetFlag(FLAGS_cache_prefix_window_events)));
  pfo.serializable_bound = rco.serializable_bound;
  pfo.linearizable_wait = rco.linearizable_wait;
  if (!absl::ParseDuration(absl::GetFlag(FLAGS_cache_prefix_compaction_check_interval),
                           &pfo.compaction_check_interval) ||
      pfo.compaction_check_interval <= absl::ZeroDuration()) {
    return Fail("invalid --cache-prefix-compaction-check-interval (want a duration > 0, e.g. 5s)");
  }
  std::unique_ptr<PrefixCache> prefixes;
  if (!prefix_list->empty()) {
    prefixes = std::make_unique<PrefixCache>(*prefix_list, &hub, &upstream,
                                             &perms, clock, pfo, &pm,
                                             &metrics);
  }
  wpo.prefixes = prefixes.get();
  WatchProxy watch_proxy(&hub, &perms, clock, wpo, &pm);
  AuthMonitor auth_monitor(&upstream, &perms, clock, amo,
                           [&watch_proxy] { watch_proxy.Recheck(); });
  KvProxy kv_proxy(&endpoints, &cache, &ns, prefixes.get());
  KeepAliveFolder folder(&upstream, &pm);
  LeaseProxy lease_proxy(&endpoints, &folder, &ns, &pm);

  grpc::ServerBuilder builder;
  // No SO_REUSEPORT (gRPC's default): a second proxy on a taken port
  // refuses to start instead of taking half of its connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(listen, listeners->creds);
  // Client requests: a request over --max-send-bytes cannot go to the
  // cluster and is answered "etcdserver: request is too large" (see
  // Endpoints). Like a member, which receives --max-request-bytes plus
  // 512 KiB of gRPC overhead and answers "request is too large" in between,
  // the proxy receives --max-send-bytes plus 512 KiB, so that with the
  // defaults a too-large request gets the member's answer at every size:
  // "request is too large" up to 2 MiB, gRPC's RESOURCE_EXHAUSTED
  // "Received message larger than max (N vs. 2097152)" above. (etcd's
  // grpc-proxy receives up to grpc-go's default 4 MiB and answers
  // RESOURCE_EXHAUSTED "trying to send message larger than max" above
  // 1.5 MiB; synod-proxy gives the member's answers instead.)
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<int64_t>(max_send + (512 << 10), INT_MAX)));
  builder.SetMaxSendMessageSize(INT_MAX);
  builder.RegisterService(&watch_proxy);
  builder.RegisterService(&lease_proxy);
  // grpc_server_* (go-grpc-prometheus), as a member and etcd's grpc-proxy
  // export them.
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(common::NewGrpcServerMetricsFactory(&metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // Without a cache, KV is forwarded as is, unless keys need the namespace.
  if ((rco.max_bytes > 0 && rco.max_ranges > 0) || !ns.empty() ||
      prefixes != nullptr) {
    builder.RegisterService(&kv_proxy);
  }
  builder.RegisterCallbackGenericService(&forwarder);
  if (prefixes != nullptr) {
    // The first loads, before serving (so that the first clients already
    // share the prefixes' watches), for at most 10 s: a cluster that is not
    // reachable yet is retried by the ticker.
    prefixes->Start();
    const absl::Time until = absl::Now() + absl::Seconds(10);
    while (!prefixes->Settled() && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    SYNOD_LOG(ERROR) << "cannot listen on " << listen;
    return 1;
  }

  // process_* as etcd's grpc-proxy exports them (from /proc).
  common::RegisterProcessMetrics(&metrics);
  std::unique_ptr<common::HttpServer> http;
  const std::string metrics_addr = absl::GetFlag(FLAGS_metrics_addr);
  if (!metrics_addr.empty()) {
    http = std::make_unique<common::HttpServer>();
    http->Handle("/metrics", [&metrics](const common::HttpRequest&) {
      return common::HttpResponse{200, common::kPrometheusTextContentType,
                                  metrics.RenderText()};
    });
    // Healthy when a quorum read through the proxy succeeds within 1 s, or
    // is refused for an auth reason: the cluster answered (etcd's
    // grpc-proxy checks the cluster the same way, and takes permission
    // denied as healthy; synod-proxy also takes the refusals a proxy
    // without --user, or with a stale token, gets).
    http->Handle("/health", [&upstream, clock](const common::HttpRequest&) {
      absl::Mutex mu;
      bool done = false, ok = false;
      upstream.CurrentRevision("health", [&](absl::StatusOr<int64_t> r) {
        absl::MutexLock l(&mu);
        ok = r.ok() ||
             PermissionCache::IsDecision(common::ToGrpcStatus(r.status())) ||
             common::IsErr(r.status(), common::EtcdError::kAuthOldRevision);
        done = true;
      });
      absl::MutexLock l(&mu);
      clock->AwaitWithTimeout(&mu, absl::Condition(&done), absl::Seconds(2));
      // Wait for the callback even past the timeout: it references locals.
      mu.Await(absl::Condition(&done));
      return common::HttpResponse{ok ? 200 : 503, "application/json",
                                  ok ? "{\"health\":\"true\"}"
                                     : "{\"health\":\"false\"}\n"};
    });
    auto st =
        listeners->metrics_https
            ? http->StartTls(listeners->metrics_host, listeners->metrics_port,
                             *listeners->tls)
            : http->Start(listeners->metrics_host, listeners->metrics_port);
    if (!st.ok()) {
      SYNOD_LOG(ERROR) << "cannot serve metrics on " << metrics_addr << ": "
                       << st.status();
      return 1;
    }
  }

  // Timer work: the auth state poll, re-authentication backoff, reconnects,
  // catch-up and freshness progress, progress notifications and permission
  // re-checks, idle ranges.
  absl::Mutex stop_mu;
  bool stopping = false;
  std::thread ticker([&] {
    while (true) {
      {
        absl::MutexLock l(&stop_mu);
        if (clock->AwaitWithTimeout(&stop_mu, absl::Condition(&stopping),
                                    absl::Milliseconds(100))) {
          return;
        }
      }
      identity.Tick();
      auth_monitor.Tick();
      hub.Tick();
      watch_proxy.Tick();
      cache.Tick();
      if (prefixes != nullptr) prefixes->Tick();
      folder.Tick();
    }
  });

  std::unique_ptr<Registrar> registrar;
  if (!absl::GetFlag(FLAGS_resolver_prefix).empty()) {
    registrar = std::make_unique<Registrar>(
        &endpoints, absl::GetFlag(FLAGS_resolver_prefix),
        UrlHostPort(absl::GetFlag(FLAGS_advertise_client_url)),
        absl::GetFlag(FLAGS_resolver_ttl));
    registrar->Start();
  }

  SYNOD_LOG(INFO) << "synod-proxy serving on " << listen << " for "
                  << absl::GetFlag(FLAGS_endpoints);
  int sig = 0;
  sigwait(&sigs, &sig);
  SYNOD_LOG(INFO) << "received signal " << sig << ", shutting down";
  if (registrar) registrar->Stop();
  if (http) http->Stop();
  {
    absl::MutexLock l(&stop_mu);
    stopping = true;
  }
  ticker.join();
  server->Shutdown(common::GrpcDeadlineAfter(absl::Seconds(2)));
  return 0;
}

}  // namespace
}  // namespace synod::proxy

int main(int argc, char** argv) { return synod::proxy::Run(argc, argv); }
