// Issue 15's acceptance, end to end: thousands of services, each reading and
// watching a key of its own under one prefix that synod-proxy caches
// (--cache-prefixes=/cfg/), cost the cluster one upstream watch per proxy,
// not one per service, and every service still sees each write to its key
// exactly once, in order.
//
// A service is one client: a linearizable Range of its key through the
// proxy, then a Watch stream of its own from the revision after that read.
// Services share 10 gRPC connections per proxy. Writes are made directly on
// the member, never through a proxy.
//
// The proxies are started here (Spawn) rather than with ProxyProcess::Start,
// whose readiness read of a key outside the prefix would put that key in
// the range cache and so add an upstream watch of its own: readiness here is
// /health and a read inside the cached prefix.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "proto/rpc.grpc.pb.h"
#include "tests/integration/cluster.h"
#include "tests/integration/harness.h"
#include "tests/proxy/proxy_process.h"
#include "tests/proxy/watch_client.h"

namespace synod::testing {
namespace {

constexpr char kPrefix[] = "/cfg/";
constexpr char kPrefixFlag[] = "--cache-prefixes=/cfg/";
constexpr int kConnsPerProxy = 10;
constexpr auto kCallDeadline = std::chrono::seconds(10);
// The member gauge etcd 3.4 and synod export for the watchers they hold.
constexpr char kWatcherGauge[] = "etcd_debugging_mvcc_watcher_total";

// The sum of every series of the family `name` (any labels) at
// `metrics_url`/metrics; -1 when the family is absent or the scrape fails.
double SumMetric(const std::string& metrics_url, const std::string& name) {
  HttpResponse r = HttpGet(metrics_url + "/metrics", absl::Seconds(5));
  if (r.status != 200) return -1;
  double sum = 0;
  bool found = false;
  for (absl::string_view line : absl::StrSplit(r.body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t end = line.find_first_of("{ ");
    if (end == absl::string_view::npos || line.substr(0, end) != name) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) {
      sum += v;
      found = true;
    }
  }
  return found ? sum : -1;
}

// A channel on a TCP connection of its own (`n` tells them apart).
std::shared_ptr<grpc::Channel> OwnConnection(const std::string& endpoint,
                                             int n) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("synod_test.conn", n);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(),
                                   args);
}

// Runs fn(i) for i in [0, n) on `threads` threads; returns once all are
// done.
template <typename Fn>
void ParallelFor(int n, int threads, Fn fn) {
  std::atomic<int> next{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
    });
  }
  for (std::thread& t : ts) t.join();
}

// Records the highest value of a metric while it runs: a scrape every
// 100 ms on a thread of its own (a measurement, not a synchronisation).
class MaxSampler {
 public:
  explicit MaxSampler(std::function<double()> sample)
      : sample_(std::move(sample)), thread_([this] { Run(); }) {}
  ~MaxSampler() { Stop(); }
  void Stop() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  double max() {
    absl::MutexLock l(&mu_);
    return max_;
  }
  int samples() {
    absl::MutexLock l(&mu_);
    return samples_;
  }

 private:
  void Run() {
    while (true) {
      const double v = sample_();
      absl::MutexLock l(&mu_);
      max_ = std::max(max_, v);
      ++samples_;
      mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(100));
      if (stop_) return;
    }
  }

  std::function<double()> sample_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  double max_ ABSL_GUARDED_BY(mu_) = -1;
  int samples_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// One service: its key, the revision and value its read returned, and its
// own Watch stream.
struct Service {
  std::string key;
  int conn = 0;
  int64_t read_rev = 0;
  std::string read_value;
  bool read_ok = false;
  std::unique_ptr<WatchClient> watch;
};

// A synod-proxy with --cache-prefixes=/cfg/ and its client connections.
struct CachingProxy {
  std::unique_ptr<ProxyProcess> process;
  std::vector<std::shared_ptr<grpc::Channel>> conns;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> kv;

  double Metric(const std::string& name) const {
    return SumMetric(process->MetricsUrl(), name);
  }
};

class ProxyPrefixCacheItTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) {
      for (const auto& p : proxies_) {
        std::string log = p->process->Log();
        if (log.size() > 4000) log = log.substr(log.size() - 4000);
        std::cerr << "--- proxy log ---\n" << log << "\n";
      }
    }
    // Clients first, then the proxies, then what they proxy.
    services_.clear();
    proxies_.clear();
    member_.reset();
    cluster_.reset();
    dir_.reset();
  }

  std::vector<std::string> Keys() const {
    std::vector<std::string> keys;
    for (const auto& s : services_) keys.push_back(s->key);
    return keys;
  }

  // Spawns a caching proxy in front of `endpoints` and waits (15 s) until
  // its /health is 200 and a read of `probe_key` (inside the prefix)
  // through it succeeds. A proxy that exits because its port was taken in
  // the meantime (by a process outside the harness's port reservations)
  // is started again on other ports, twice at most.
  CachingProxy* StartProxy(const std::vector<std::string>& endpoints,
                           const std::string& probe_key) {
    for (int attempt = 1;; ++attempt) {
      CachingProxy* p = SpawnProxy(endpoints, probe_key);
      if (!p->process->Exited() || attempt == 3 ||
          !absl::StrContains(p->process->Log(), "Address already in use")) {
        EXPECT_FALSE(p->process->Exited())
            << "synod-proxy exited:\n" << p->process->Log();
        return p;
      }
      std::printf("synod-proxy's port was taken; starting it again\n");
      proxies_.pop_back();
    }
  }
  // One try of StartProxy; the proxy, ready or exited, is proxies_.back().
  CachingProxy* SpawnProxy(const std::vector<std::string>& endpoints,
                           const std::string& probe_key) {
    auto p = std::make_unique<CachingProxy>();
    p->process = std::make_unique<ProxyProcess>(
        endpoints, std::vector<std::string>{kPrefixFlag});
    EXPECT_TRUE(p->process->Spawn());
    for (int c = 0; c < kConnsPerProxy; ++c) {
      p->conns.push_back(OwnConnection(p->process->Endpoint(), c));
      p->kv.push_back(etcdserverpb::KV::NewStub(p->conns.back()));
    }
    bool ready = WaitFor(
        [&] {
          if (p->process->Exited()) return true;
          if (HttpGet(p->process->MetricsUrl() + "/health", absl::Seconds(2))
                  .status != 200) {
            return false;
          }
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(2));
          etcdserverpb::RangeRequest req;
          req.set_key(probe_key);
          etcdserverpb::RangeResponse resp;
          return p->kv[0]->Range(&ctx, req, &resp).ok();
        },
        absl::Seconds(15));
    EXPECT_TRUE(ready) << "synod-proxy did not come up:\n"
                       << p->process->Log();
    proxies_.push_back(std::move(p));
    return proxies_.back().get();
  }

  // Adds services `first` .. `first + n - 1` on `proxy` (keys /cfg/<tag>k<i>):
  // each reads its key (linearizable) on connection i mod 10, then opens
  // its own Watch stream from the revision after the read. Waits (30 s)
  // until every watch is created. `between_reads_and_watches`, if given, is
  // called once every read is done and before any watch is opened.
  void AddServices(
      CachingProxy* proxy, const std::string& tag, int first, int n,
      const std::function<void()>& between_reads_and_watches = nullptr) {
    const size_t base = services_.size();
    for (int i = first; i < first + n; ++i) {
      auto s = std::make_unique<Service>();
      s->key = absl::StrCat(kPrefix, tag, "k", i);
      s->conn = i % kConnsPerProxy;
      services_.push_back(std::move(s));
    }
    const absl::Time t0 = absl::Now();
    ParallelFor(n, kConnsPerProxy, [&](int j) {
      Service& s = *services_[base + j];
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
      etcdserverpb::RangeRequest req;
      req.set_key(s.key);
      etcdserverpb::RangeResponse resp;
      grpc::Status st = proxy->kv[s.conn]->Range(&ctx, req, &resp);
      s.read_ok = st.ok();
      if (!st.ok()) return;
      s.read_rev = resp.header().revision();
      if (resp.kvs_size() == 1) s.read_value = resp.kvs(0).value();
    });
    const absl::Duration read_time = absl::Now() - t0;
    for (size_t j = base; j < services_.size(); ++j) {
      ASSERT_TRUE(services_[j]->read_ok) << "read of " << services_[j]->key;
    }
    if (between_reads_and_watches) between_reads_and_watches();
    for (size_t j = base; j < services_.size(); ++j) {
      Service& s = *services_[j];
      s.watch = std::make_unique<WatchClient>(proxy->conns[s.conn]);
      s.watch->Watch(1, s.key, "", s.read_rev + 1);
    }
    const bool created = WaitFor(
        [&] {
          for (size_t j = base; j < services_.size(); ++j) {
            if (!services_[j]->watch->AllCreated(1)) return false;
          }
          return true;
        },
        absl::Seconds(30));
    ASSERT_TRUE(created) << "not every watch was created within 30 s";
    std::printf("%d services read their keys in %s and watched them %s "
                "later\n",
                n, absl::FormatDuration(read_time).c_str(),
                absl::FormatDuration(absl::Now() - t0 - read_time).c_str());
  }

  // Puts `value_of(i)` to keys[i] directly on the members (key i on
  // member_kv[i mod size], 10 calls in flight); returns each put's
  // revision, -1 for a put that failed.
  static std::vector<int64_t> WriteKeys(
      const std::vector<etcdserverpb::KV::Stub*>& member_kv,
      const std::vector<std::string>& keys,
      const std::function<std::string(int)>& value_of) {
    std::vector<int64_t> revs(keys.size(), -1);
    ParallelFor(static_cast<int>(keys.size()), 10, [&](int i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
      etcdserverpb::PutRequest req;
      req.set_key(keys[i]);
      req.set_value(value_of(i));
      etcdserverpb::PutResponse resp;
      if (member_kv[i % member_kv.size()]->Put(&ctx, req, &resp).ok()) {
        revs[i] = resp.header().revision();
      }
    });
    return revs;
  }

  // Waits (30 s) until every service has `want[i].size()` events, then
  // checks that they are exactly want[i], of its key, and that no watch
  // was canceled.
  void ExpectEvents(const std::vector<std::vector<int64_t>>& want) {
    const absl::Time t0 = absl::Now();
    const bool all = WaitFor(
        [&] {
          for (size_t i = 0; i < services_.size(); ++i) {
            if (services_[i]->watch->EventCount(1) < want[i].size()) {
              return false;
            }
          }
          return true;
        },
        absl::Seconds(30));
    EXPECT_TRUE(all) << "not every event arrived within 30 s";
    std::printf("every service had its %zu event(s) %s after the last "
                "write\n",
                want.empty() ? size_t{0} : want[0].size(),
                absl::FormatDuration(absl::Now() - t0).c_str());
    int bad = 0;
    for (size_t i = 0; i < services_.size() && bad < 5; ++i) {
      WatcherLog log = services_[i]->watch->Log(1);
      const std::vector<std::string> keys(want[i].size(), services_[i]->key);
      if (log.revs != want[i] || log.keys != keys || log.canceled) {
        ++bad;
        ADD_FAILURE() << services_[i]->key << ": events at revisions "
                      << ::testing::PrintToString(log.revs) << " of keys "
                      << ::testing::PrintToString(log.keys) << ", want "
                      << ::testing::PrintToString(want[i])
                      << (log.canceled ? "; canceled: " + log.cancel_reason
                                       : "");
      }
    }
  }

  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<ServerProcess> member_;
  std::unique_ptr<Cluster> cluster_;
  std::vector<std::unique_ptr<CachingProxy>> proxies_;
  std::vector<std::unique_ptr<Service>> services_;
};

// 2,000 services over 10 connections through one proxy: the member holds at
// most 2 watchers while they run, and two writes to every key, made on the
// member, reach each service exactly once and in order.
TEST_F(ProxyPrefixCacheItTest, TwoThousandServicesCostTheMemberOneWatch) {
  constexpr int kServices = 2000;
  dir_ = std::make_unique<TestDir>();
  member_ = std::make_unique<ServerProcess>(dir_->path());
  ServerProcess& member = *member_;
  ASSERT_TRUE(member.Start());
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs;
  std::vector<etcdserverpb::KV::Stub*> member_kv;
  for (int c = 0; c < 2; ++c) {
    stubs.push_back(
        etcdserverpb::KV::NewStub(OwnConnection(member.Endpoint(), c)));
    member_kv.push_back(stubs.back().get());
  }
  auto member_watchers = [&] {
    return SumMetric(member.MetricsUrl(), kWatcherGauge);
  };
  ASSERT_EQ(member_watchers(), 0);

  // Every service's configuration exists before the proxy starts, so the
  // proxy loads all 2,000 keys.
  std::vector<std::string> keys;
  for (int i = 0; i < kServices; ++i) {
    keys.push_back(absl::StrCat(kPrefix, "k", i));
  }
  std::vector<int64_t> rev0 = WriteKeys(
      member_kv, keys, [](int i) { return absl::StrCat("v0-", i); });
  ASSERT_EQ(std::count(rev0.begin(), rev0.end(), -1), 0);

  CachingProxy* proxy = StartProxy({member.Endpoint()}, keys[0]);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(WaitFor(
      [&] {
        return proxy->Metric("synod_proxy_cached_prefixes") == 1 &&
               proxy->Metric("synod_proxy_prefix_cache_keys") == kServices;
      },
      absl::Seconds(15)))
      << "cached prefixes "
      << proxy->Metric("synod_proxy_cached_prefixes") << ", keys "
      << proxy->Metric("synod_proxy_prefix_cache_keys");
  const double reads0 = proxy->Metric("synod_proxy_prefix_cache_reads_total");
  const double watches0 =
      proxy->Metric("synod_proxy_prefix_cache_watches_total");
  auto member_ranges = [&] {
    return SumMetric(member.MetricsUrl(), "etcd_debugging_mvcc_range_total");
  };
  const double member_ranges0 = member_ranges();
  double member_ranges_read = -1;
  const double rss0 = proxy->Metric("process_resident_memory_bytes");

  MaxSampler sampler(member_watchers);
  ASSERT_NO_FATAL_FAILURE(AddServices(proxy, "", 0, kServices, [&] {
    member_ranges_read = member_ranges();
  }));
  for (int i = 0; i < kServices; ++i) {
    ASSERT_EQ(services_[i]->read_value, absl::StrCat("v0-", i))
        << services_[i]->key;
    ASSERT_GE(services_[i]->read_rev, rev0[i]) << services_[i]->key;
  }
  const double watchers_idle = member_watchers();
  EXPECT_GE(watchers_idle, 1);
  EXPECT_LE(watchers_idle, 2);
  const double rss1 = proxy->Metric("process_resident_memory_bytes");

  // Two writes to every key, the second round after the first, directly
  // on the member.
  ASSERT_EQ(Keys(), keys);
  std::vector<int64_t> rev1 = WriteKeys(
      member_kv, keys, [](int i) { return absl::StrCat("v1-", i); });
  std::vector<int64_t> rev2 = WriteKeys(
      member_kv, keys, [](int i) { return absl::StrCat("v2-", i); });
  ASSERT_EQ(std::count(rev1.begin(), rev1.end(), -1), 0);
  ASSERT_EQ(std::count(rev2.begin(), rev2.end(), -1), 0);
  std::vector<std::vector<int64_t>> want;
  for (int i = 0; i < kServices; ++i) want.push_back({rev1[i], rev2[i]});
  ExpectEvents(want);
  sampler.Stop();
  // Watches and their events cost the member no read (a linearizable read
  // costs it one, the proxy's probe of the cluster's revision). etcd 3.4
  // counts a range for every prev_kv it looks up to send an update event
  // on a prev_kv watch (its watch server's sendLoop), as the prefix's is.
  const double member_ranges_watch = member_ranges() - member_ranges_read;
  if (!UsingRealEtcd()) {
    EXPECT_EQ(member_ranges_watch, 0)
        << "the watches or their events read at the member";
  }

  EXPECT_GE(sampler.samples(), 1);
  EXPECT_LE(sampler.max(), 2) << "the member held more than 2 watchers";
  const double reads = proxy->Metric("synod_proxy_prefix_cache_reads_total");
  const double watches =
      proxy->Metric("synod_proxy_prefix_cache_watches_total");
  EXPECT_GE(reads - reads0, kServices);
  EXPECT_GE(watches - watches0, kServices);
  EXPECT_EQ(proxy->Metric("synod_proxy_prefix_cache_fallback"), 0);
  std::printf(
      "member watchers: %.0f idle, at most %.0f over %d samples; prefix "
      "cache served %.0f reads and %.0f watches; member ranges during the "
      "reads: %.0f, during the watches and events: %.0f; proxy RSS %.1f -> "
      "%.1f MiB for %d services (%.0f bytes each)\n",
      watchers_idle, sampler.max(), sampler.samples(), reads - reads0,
      watches - watches0, member_ranges_read - member_ranges0,
      member_ranges_watch,
      rss0 / 1048576, rss1 / 1048576, kServices,
      (rss1 - rss0) / kServices);
}

// Two proxies in front of one 3-member cluster, services on both: the
// cluster holds as many watchers with 1,000 services as with 500, at most 2
// per proxy. Then the member holding a proxy's watch is killed: the watch
// resumes on another member, and a second write to every key reaches each
// service once, in order, with still at most 2 watchers per proxy.
TEST_F(ProxyPrefixCacheItTest, ClusterWatchersDependOnProxiesNotServices) {
  constexpr int kProxies = 2, kPerProxyPhase = 250;
  cluster_ = std::make_unique<Cluster>();
  Cluster& cluster = *cluster_;
  ASSERT_TRUE(cluster.Start()) << cluster.LogTails();
  std::vector<std::string> endpoints;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs;
  for (int m = 0; m < cluster.size(); ++m) {
    endpoints.push_back(cluster.Endpoint(m));
    stubs.push_back(
        etcdserverpb::KV::NewStub(OwnConnection(cluster.Endpoint(m), m)));
  }
  // Watchers held by member m (-1 when it does not answer), and by the
  // members that answer.
  auto watchers_on = [&](int m) {
    return SumMetric(cluster.member(m).MetricsUrl(), kWatcherGauge);
  };
  auto cluster_watchers = [&] {
    double sum = 0;
    for (int m = 0; m < cluster.size(); ++m) sum += std::max(0.0, watchers_on(m));
    return sum;
  };
  ASSERT_EQ(cluster_watchers(), 0);
  for (int p = 0; p < kProxies; ++p) {
    StartProxy(endpoints, "/cfg/probe");
    ASSERT_FALSE(HasFailure());
  }
  MaxSampler sampler(cluster_watchers);

  // Phase 1: 250 services on each proxy; phase 2: 250 more on each.
  std::vector<double> counts;
  for (int phase = 0; phase < 2; ++phase) {
    for (int p = 0; p < kProxies; ++p) {
      ASSERT_NO_FATAL_FAILURE(AddServices(proxies_[p].get(),
                                          absl::StrCat("p", p, "/"),
                                          phase * kPerProxyPhase,
                                          kPerProxyPhase));
    }
    const double c = cluster_watchers();
    std::printf("%zu services on %d proxies: the cluster holds %.0f "
                "watchers\n",
                services_.size(), kProxies, c);
    EXPECT_GE(c, kProxies);  // At least the prefix's watch of each proxy.
    EXPECT_LE(c, 2 * kProxies);
    counts.push_back(c);
  }
  EXPECT_EQ(counts[0], counts[1])
      << "the cluster's watcher count changed with the number of services";

  // A write to every key, each on one of the members: every service sees
  // its own, once.
  std::vector<etcdserverpb::KV::Stub*> member_kv;
  for (auto& s : stubs) member_kv.push_back(s.get());
  std::vector<int64_t> revs1 = WriteKeys(
      member_kv, Keys(), [](int i) { return absl::StrCat("v1-", i); });
  ASSERT_EQ(std::count(revs1.begin(), revs1.end(), -1), 0);
  std::vector<std::vector<int64_t>> want;
  for (int64_t r : revs1) want.push_back({r});
  ExpectEvents(want);

  // Failover: kill a member that holds a proxy's watch; once the cluster
  // has a leader, a second write to every key on the members left.
  int victim = -1;
  for (int m = 0; m < cluster.size() && victim < 0; ++m) {
    if (watchers_on(m) > 0) victim = m;
  }
  ASSERT_GE(victim, 0) << "no member holds a watch";
  cluster.Kill9(victim);
  ASSERT_GE(cluster.WaitForLeader(absl::Seconds(10)), 0) << cluster.LogTails();
  member_kv.clear();
  for (int m = 0; m < cluster.size(); ++m) {
    if (m != victim) member_kv.push_back(stubs[m].get());
  }
  std::vector<int64_t> revs2 = WriteKeys(
      member_kv, Keys(), [](int i) { return absl::StrCat("v2-", i); });
  ASSERT_EQ(std::count(revs2.begin(), revs2.end(), -1), 0);
  for (size_t i = 0; i < want.size(); ++i) want[i].push_back(revs2[i]);
  ExpectEvents(want);
  const double after = cluster_watchers();
  std::printf("after member %d was killed: %.0f watchers on the members "
              "left\n",
              victim, after);
  EXPECT_GE(after, kProxies);
  EXPECT_LE(after, 2 * kProxies);
  sampler.Stop();
  EXPECT_LE(sampler.max(), 2 * kProxies)
      << "the cluster held more than 2 watchers per proxy";
  for (int p = 0; p < kProxies; ++p) {
    EXPECT_GE(proxies_[p]->Metric("synod_proxy_prefix_cache_watches_total"),
              2 * kPerProxyPhase)
        << "proxy " << p;
  }
  std::printf("cluster watchers at most %.0f over %d samples\n",
              sampler.max(), sampler.samples());
}

}  // namespace
}  // namespace synod::testing
