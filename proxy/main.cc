// synod-proxy: a stateless gRPC proxy in front of a Synod (or etcd) cluster.
// Flags follow `etcd grpc-proxy start` (names and defaults); dashes and
// underscores are interchangeable.
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <memory>
#include <thread>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/flags_util.h"
#include "common/http_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "proxy/forwarder.h"
#include "proxy/kv_proxy.h"
#include "proxy/lease_proxy.h"
#include "proxy/namespace.h"
#include "proxy/range_cache.h"
#include "proxy/register.h"
#include "proxy/proxy_metrics.h"
#include "proxy/watch_hub.h"
#include "proxy/watch_proxy.h"
#include "proxy/upstream.h"

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
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn, error.");
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
ABSL_FLAG(std::string, watch_progress_notify_interval, "10m",
          "Interval of progress notifications to progress_notify watchers.");

namespace synod::proxy {
namespace {

using common::UrlHostPort;

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
  std::vector<std::string> eps;
  for (absl::string_view e : absl::StrSplit(absl::GetFlag(FLAGS_endpoints),
                                            ',', absl::SkipWhitespace())) {
    eps.push_back(UrlHostPort(e));
  }
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

  Endpoints endpoints(eps, static_cast<int>(std::min<int64_t>(max_send, INT_MAX)),
                      static_cast<int>(std::min<int64_t>(max_recv, INT_MAX)));
  GrpcUpstream upstream(&endpoints);
  ForwardingService forwarder(&endpoints);
  common::MetricsRegistry& metrics = common::DefaultMetrics();
  ProxyMetrics pm(&metrics);
  common::Clock* clock = common::RealClock::Get();
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
  WatchProxy watch_proxy(&hub, clock, wpo, &pm);
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
  RangeCache cache(&hub, &upstream, clock, rco, &pm);
  KvProxy kv_proxy(&endpoints, &cache, &ns);
  KeepAliveFolder folder(&upstream, &pm);
  LeaseProxy lease_proxy(&endpoints, &folder, &ns, &pm);

  grpc::ServerBuilder builder;
  // No SO_REUSEPORT (gRPC's default): a second proxy on a taken port
  // refuses to start instead of taking half of its connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  const std::string listen = UrlHostPort(absl::GetFlag(FLAGS_listen_addr));
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials());
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
  // Without a cache, KV is forwarded as is, unless keys need the namespace.
  if ((rco.max_bytes > 0 && rco.max_ranges > 0) || !ns.empty()) {
    builder.RegisterService(&kv_proxy);
  }
  builder.RegisterCallbackGenericService(&forwarder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    SYNOD_LOG(ERROR) << "cannot listen on " << listen;
    return 1;
  }

  // The proxy's own resident memory, read from /proc/self/statm.
  metrics.AddGaugeCallback(
      "process_resident_memory_bytes", "Resident memory size in bytes.", [] {
        long pages = 0, resident = 0;
        FILE* f = std::fopen("/proc/self/statm", "r");
        if (f == nullptr) return 0.0;
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
        return static_cast<double>(resident) * sysconf(_SC_PAGESIZE);
      });
  std::unique_ptr<common::HttpServer> http;
  const std::string metrics_addr = absl::GetFlag(FLAGS_metrics_addr);
  if (!metrics_addr.empty()) {
    std::string host;
    int port = 0;
    if (!common::SplitHostPort(UrlHostPort(metrics_addr), &host, &port)) {
      SYNOD_LOG(ERROR) << "unsupported --metrics-addr " << metrics_addr;
      return 2;
    }
    http = std::make_unique<common::HttpServer>();
    http->Handle("/metrics", [&metrics](const common::HttpRequest&) {
      return common::HttpResponse{200, common::kPrometheusTextContentType,
                                  metrics.RenderText()};
    });
    // Healthy when a quorum read through the proxy succeeds within 1 s
    // (etcd's grpc-proxy checks the cluster the same way).
    http->Handle("/health", [&upstream, clock](const common::HttpRequest&) {
      absl::Mutex mu;
      bool done = false, ok = false;
      upstream.CurrentRevision("health", [&](absl::StatusOr<int64_t> r) {
        absl::MutexLock l(&mu);
        ok = r.ok();
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
    auto st = http->Start(host, port);
    if (!st.ok()) {
      SYNOD_LOG(ERROR) << "cannot serve metrics on " << metrics_addr << ": "
                       << st.status();
      return 1;
    }
  }

  // Timer work: reconnects, catch-up and freshness progress, progress
  // notifications, idle ranges.
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
      hub.Tick();
      watch_proxy.Tick();
      cache.Tick();
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
