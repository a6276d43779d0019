#include "common/metrics.h"

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace synod::common {
namespace {

TEST(MetricsTest, CounterExposition) {
  MetricsRegistry r;
  Counter* c = r.GetCounter("synod_requests_total", "Requests served.");
  c->Inc();
  c->Inc(2);
  EXPECT_EQ(c->Value(), 3u);
  EXPECT_EQ(r.RenderText(),
            "# HELP synod_requests_total Requests served.\n"
            "# TYPE synod_requests_total counter\n"
            "synod_requests_total 3\n");
}

TEST(MetricsTest, GaugeExpositionWithLabels) {
  MetricsRegistry r;
  Gauge* a = r.GetGauge("synod_queue_depth", "Items queued.",
                        {{"queue", "apply"}, {"member", "m1"}});
  Gauge* b = r.GetGauge("synod_queue_depth", "Items queued.",
                        {{"member", "m1"}, {"queue", "raft"}});
  a->Set(int64_t{42});
  a->Dec();
  b->Set(-0.25);
  b->Add(1);
  EXPECT_EQ(r.RenderText(),
            "# HELP synod_queue_depth Items queued.\n"
            "# TYPE synod_queue_depth gauge\n"
            "synod_queue_depth{member=\"m1\",queue=\"apply\"} 41\n"
            "synod_queue_depth{member=\"m1\",queue=\"raft\"} 0.75\n");
}

TEST(MetricsTest, HistogramExposition) {
  MetricsRegistry r;
  Histogram* h =
      r.GetHistogram("synod_fsync_seconds", "Fsync latency.", {0.25, 0.5, 1});
  h->Observe(0.125);
  h->Observe(0.5);  // bounds are inclusive
  h->Observe(0.75);
  h->Observe(3);
  h->Observe(std::nan(""));  // ignored
  // prometheus-cpp's TextSerializer writes _count and _sum before the
  // buckets; the text format allows any order within a family.
  EXPECT_EQ(r.RenderText(),
            "# HELP synod_fsync_seconds Fsync latency.\n"
            "# TYPE synod_fsync_seconds histogram\n"
            "synod_fsync_seconds_count 4\n"
            "synod_fsync_seconds_sum 4.375\n"
            "synod_fsync_seconds_bucket{le=\"0.25\"} 1\n"
            "synod_fsync_seconds_bucket{le=\"0.5\"} 2\n"
            "synod_fsync_seconds_bucket{le=\"1\"} 3\n"
            "synod_fsync_seconds_bucket{le=\"+Inf\"} 4\n");
}

TEST(MetricsTest, HistogramWithLabelsAndNoObservations) {
  MetricsRegistry r;
  r.GetHistogram("rpc_seconds", "RPC latency.", {0.001}, {{"method", "Put"}});
  EXPECT_EQ(r.RenderText(),
            "# HELP rpc_seconds RPC latency.\n"
            "# TYPE rpc_seconds histogram\n"
            "rpc_seconds_count{method=\"Put\"} 0\n"
            "rpc_seconds_sum{method=\"Put\"} 0\n"
            "rpc_seconds_bucket{method=\"Put\",le=\"0.001\"} 0\n"
            "rpc_seconds_bucket{method=\"Put\",le=\"+Inf\"} 0\n");
}

TEST(MetricsTest, CallbackGaugeIsComputedAtRenderAndRemovable) {
  MetricsRegistry r;
  double size = 4096;
  uint64_t id = r.AddGaugeCallback("synod_db_size_bytes", "DB size.",
                                   [&size] { return size; });
  EXPECT_NE(id, 0u);
  const std::string want =
      "# HELP synod_db_size_bytes DB size.\n"
      "# TYPE synod_db_size_bytes gauge\n"
      "synod_db_size_bytes ";
  EXPECT_EQ(r.RenderText(), want + "4096\n");
  size = 1.5e9;
  EXPECT_EQ(r.RenderText(), want + "1500000000\n");
  r.RemoveGaugeCallback(id);
  r.RemoveGaugeCallback(id);  // no-op
  EXPECT_EQ(r.RenderText(), "");
}

TEST(MetricsTest, CallbackReplacedForSameLabels) {
  MetricsRegistry r;
  uint64_t first = r.AddGaugeCallback("g", "h", [] { return 1.0; });
  uint64_t second = r.AddGaugeCallback("g", "h", [] { return 2.0; });
  EXPECT_NE(first, second);
  r.RemoveGaugeCallback(first);  // replaced: no-op
  EXPECT_EQ(r.RenderText(), "# HELP g h\n# TYPE g gauge\ng 2\n");
}

TEST(MetricsTest, CounterCallbackIsACounterFamily) {
  MetricsRegistry r;
  double cpu = 1.5;
  uint64_t id = r.AddCounterCallback("process_cpu_seconds_total", "CPU.",
                                     [&cpu] { return cpu; });
  EXPECT_EQ(r.RenderText(),
            "# HELP process_cpu_seconds_total CPU.\n"
            "# TYPE process_cpu_seconds_total counter\n"
            "process_cpu_seconds_total 1.5\n");
  r.RemoveGaugeCallback(id);
  EXPECT_EQ(r.RenderText(), "");
}

TEST(MetricsTest, FamiliesSortedAndEscaped) {
  MetricsRegistry r;
  r.GetGauge("b_metric", "line1\nback\\slash")->Set(1);
  r.GetCounter("a_metric", "A.", {{"path", "say \"hi\"\\\n"}})->Inc();
  EXPECT_EQ(r.RenderText(),
            "# HELP a_metric A.\n"
            "# TYPE a_metric counter\n"
            "a_metric{path=\"say \\\"hi\\\"\\\\\\n\"} 1\n"
            "# HELP b_metric line1\\nback\\\\slash\n"
            "# TYPE b_metric gauge\n"
            "b_metric 1\n");
}

TEST(MetricsTest, SameNameAndLabelsReturnSameSeries) {
  MetricsRegistry r;
  EXPECT_EQ(r.GetCounter("c", "h"), r.GetCounter("c", "h"));
  EXPECT_NE(r.GetCounter("c", "h"), r.GetCounter("c", "h", {{"x", "1"}}));
  EXPECT_EQ(r.GetGauge("g", "h", {{"a", "1"}, {"b", "2"}}),
            r.GetGauge("g", "h", {{"b", "2"}, {"a", "1"}}));
  EXPECT_EQ(r.GetHistogram("h", "h", {1, 2}), r.GetHistogram("h", "h", {1, 2}));
  EXPECT_EQ(&DefaultMetrics(), &DefaultMetrics());
}

TEST(MetricsTest, FormatValue) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(-0.0), "0");
  EXPECT_EQ(FormatMetricValue(-7), "-7");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(1e-05), "1e-05");
  EXPECT_EQ(FormatMetricValue(9007199254740992.0), "9007199254740992");
  EXPECT_EQ(FormatMetricValue(1e300), "1e+300");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()),
            "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
  double third = 1.0 / 3;
  EXPECT_EQ(std::stod(FormatMetricValue(third)), third);
}

TEST(MetricsTest, ExponentialBuckets) {
  EXPECT_EQ(ExponentialBuckets(0.001, 2, 4),
            (std::vector<double>{0.001, 0.002, 0.004, 0.008}));
}

TEST(MetricsTest, ConcurrentUpdatesSumCorrectly) {
  MetricsRegistry r;
  constexpr int kThreads = 8;
  constexpr int kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&r] {
      // Registration races too: every thread must get the same series.
      Counter* c = r.GetCounter("ops_total", "Ops.");
      Gauge* g = r.GetGauge("inflight", "In flight.");
      Histogram* h = r.GetHistogram("lat_seconds", "Latency.", {0.5});
      for (int i = 0; i < kIters; ++i) {
        c->Inc();
        g->Add(2);
        g->Dec();
        h->Observe(i % 2 == 0 ? 0.25 : 1);
        if (i % 5000 == 0) r.RenderText();  // concurrent scrapes
      }
    });
  }
  for (auto& t : threads) t.join();
  const uint64_t n = uint64_t{kThreads} * kIters;
  EXPECT_EQ(r.GetCounter("ops_total", "Ops.")->Value(), n);
  EXPECT_EQ(r.GetGauge("inflight", "In flight.")->Value(),
            static_cast<double>(n));
  Histogram* h = r.GetHistogram("lat_seconds", "Latency.", {0.5});
  EXPECT_EQ(h->BucketCount(0), n / 2);
  EXPECT_EQ(h->BucketCount(1), n / 2);
  EXPECT_EQ(h->Sum(), 0.625 * static_cast<double>(n));
  std::string text = r.RenderText();
  EXPECT_NE(text.find("ops_total " + std::to_string(n) + "\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("lat_seconds_count " + std::to_string(n) + "\n"),
            std::string::npos)
      << text;
}

using MetricsDeathTest = ::testing::Test;

TEST_F(MetricsDeathTest, MisuseAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  MetricsRegistry r;
  r.GetCounter("taken", "h");
  EXPECT_DEATH(r.GetGauge("taken", "h"), "registered as counter, not gauge");
  EXPECT_DEATH(r.GetCounter("taken", "other help"), "different help");
  EXPECT_DEATH(r.GetCounter("bad-name", "h"), "invalid metric name");
  EXPECT_DEATH(r.GetCounter("c", "h", {{"a", "1"}, {"a", "2"}}), "repeated");
  EXPECT_DEATH(r.GetHistogram("h", "h", {2, 1}), "strictly increasing");
  EXPECT_DEATH(r.GetHistogram("h", "h", {1}, {{"le", "x"}}), "reserved");
  r.GetHistogram("h2", "h", {1});
  EXPECT_DEATH(r.GetHistogram("h2", "h", {2}), "different buckets");
}

}  // namespace
}  // namespace synod::common
