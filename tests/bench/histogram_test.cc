// synod-bench's histogram: bucket arithmetic and nearest-rank percentiles,
// checked against a sorted vector of the same samples.
#include "bench/synod_bench/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace synod::bench {
namespace {

// Nearest rank on a sorted vector: v[ceil(p/100 * N)] (1-based); p = 0 is
// the minimum.
int64_t NearestRank(const std::vector<int64_t>& sorted, double p) {
  if (p <= 0) return sorted.front();
  size_t rank = static_cast<size_t>(std::ceil(p / 100 * sorted.size() - 1e-9));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

TEST(HistogramTest, EmptyReportsZeros) {
  Histogram h;
  EXPECT_EQ(h.Count(), 0u);
  EXPECT_EQ(h.Min(), 0);
  EXPECT_EQ(h.Max(), 0);
  EXPECT_EQ(h.Mean(), 0);
  EXPECT_EQ(h.Percentile(50), 0);
}

TEST(HistogramTest, NearestRankOnSmallExactValues) {
  Histogram h;
  for (int v : {1, 2, 3, 4}) h.Record(v);
  EXPECT_EQ(h.Percentile(50), 2);  // Not an interpolated 2.5.
  EXPECT_EQ(h.Percentile(25), 1);
  EXPECT_EQ(h.Percentile(25.01), 2);
  EXPECT_EQ(h.Percentile(75), 3);
  EXPECT_EQ(h.Percentile(99), 4);
  EXPECT_EQ(h.Percentile(0), 1);
  EXPECT_EQ(h.Percentile(100), 4);
  EXPECT_DOUBLE_EQ(h.Mean(), 2.5);
}

TEST(HistogramTest, SingleSampleIsEveryPercentile) {
  Histogram h;
  h.Record(123456789);
  for (double p : {0.0, 1.0, 50.0, 99.9, 100.0}) {
    EXPECT_EQ(h.Percentile(p), 123456789) << p;  // Clamped to exact min/max.
  }
}

TEST(HistogramTest, P999OfOneThousandIsRank999) {
  Histogram h;
  for (int v = 1; v <= 1000; ++v) h.Record(v * 1000);
  // ceil(0.999 * 1000) = 999: floating point must not round it up to 1000.
  int64_t p = h.Percentile(99.9);
  EXPECT_GE(p, 999000);
  EXPECT_LT(p, 1000000);
  EXPECT_EQ(h.Percentile(100), 1000000);
  EXPECT_EQ(h.Percentile(0.1), h.Percentile(0.05));  // Both rank 1.
}

TEST(HistogramTest, BucketsAreContiguousAndTight) {
  EXPECT_EQ(Histogram::BucketLow(0), 0);
  for (int i = 1; i < Histogram::NumBuckets(); ++i) {
    ASSERT_EQ(Histogram::BucketLow(i), Histogram::BucketHigh(i - 1) + 1) << i;
    ASSERT_EQ(Histogram::BucketIndex(Histogram::BucketLow(i)), i);
    ASSERT_EQ(Histogram::BucketIndex(Histogram::BucketHigh(i)), i);
    // Width at most 1/128 of the bucket's smallest value.
    int64_t width = Histogram::BucketHigh(i) - Histogram::BucketLow(i) + 1;
    ASSERT_LE(width * 128, std::max<int64_t>(Histogram::BucketLow(i), 128))
        << i;
  }
  EXPECT_EQ(Histogram::BucketHigh(Histogram::NumBuckets() - 1),
            std::numeric_limits<int64_t>::max());
  for (int64_t v = 0; v < 256; ++v) EXPECT_EQ(Histogram::BucketIndex(v), v);
}

TEST(HistogramTest, NegativeValuesRecordAsZero) {
  Histogram h;
  h.Record(-5);
  EXPECT_EQ(h.Min(), 0);
  EXPECT_EQ(h.Percentile(50), 0);
}

TEST(HistogramTest, MatchesSortedVectorWithinBucketError) {
  const uint32_t seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  // Latency-like: log-normal around 1 ms, in nanoseconds, with a long tail.
  std::lognormal_distribution<double> dist(std::log(1e6), 1.0);
  for (int n : {1, 2, 3, 10, 999, 1000, 1001, 54321}) {
    Histogram h;
    std::vector<int64_t> v;
    for (int i = 0; i < n; ++i) {
      int64_t x = static_cast<int64_t>(dist(rng));
      v.push_back(x);
      h.Record(x);
    }
    std::sort(v.begin(), v.end());
    ASSERT_EQ(h.Count(), static_cast<uint64_t>(n));
    EXPECT_EQ(h.Min(), v.front());
    EXPECT_EQ(h.Max(), v.back());
    for (double p : {0.0, 1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
      int64_t exact = NearestRank(v, p);
      int64_t got = h.Percentile(p);
      // Never below the sample; at most one bucket width (< 1/128) above.
      EXPECT_GE(got, exact) << "n " << n << " p " << p;
      EXPECT_LE(got, exact + exact / 128 + 1) << "n " << n << " p " << p;
    }
  }
}

TEST(HistogramTest, MergeEqualsRecordingEverything) {
  std::mt19937_64 rng(7);
  Histogram a, b, all;
  for (int i = 0; i < 5000; ++i) {
    int64_t x = rng() % 10000000;
    (i % 3 ? a : b).Record(x);
    all.Record(x);
  }
  a.Merge(b);
  EXPECT_EQ(a.Count(), all.Count());
  EXPECT_EQ(a.Min(), all.Min());
  EXPECT_EQ(a.Max(), all.Max());
  EXPECT_DOUBLE_EQ(a.Mean(), all.Mean());
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    EXPECT_EQ(a.Percentile(p), all.Percentile(p)) << p;
  }
  Histogram empty;
  empty.Merge(all);
  EXPECT_EQ(empty.Min(), all.Min());
  a.Clear();
  EXPECT_EQ(a.Count(), 0u);
}

}  // namespace
}  // namespace synod::bench
