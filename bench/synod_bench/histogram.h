// Histogram: a log-linear latency histogram in the style of HdrHistogram,
// for synod-bench. Values are non-negative integers (synod-bench records
// nanoseconds).
//
// Buckets. Values below 2^(kSubBucketBits+1) = 256 each have a bucket of
// their own (exact). Above that, every power-of-two range [2^m, 2^(m+1)) is
// split into 128 equal sub-buckets, so a bucket is never wider than 1/128 of
// the smallest value in it: any reported percentile is at most 0.79% above
// the sample it stands for, and never below it.
//
// Percentiles (nearest rank). Of N recorded values sorted ascending as
// v[1..N], Percentile(p) for 0 < p <= 100 is v[ceil(p/100 * N)], the smallest
// recorded value with at least p% of the values <= it. Percentile(0) is the
// minimum. It is reported as the upper edge of the bucket that holds that
// sample, clamped to the exact [min, max]; so Percentile(100) is exactly the
// maximum, and p50 of {1, 2, 3, 4} is 2 (not an interpolated 2.5).
//
// Not thread-safe: synod-bench keeps one per worker thread and Merge()s them.
#ifndef SYNOD_BENCH_SYNOD_BENCH_HISTOGRAM_H_
#define SYNOD_BENCH_SYNOD_BENCH_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace synod::bench {

class Histogram {
 public:
  static constexpr int kSubBucketBits = 7;  // 128 sub-buckets per octave.

  Histogram();

  // Records one value. Negative values are recorded as 0.
  void Record(int64_t value);
  // Adds every value recorded in `other` to this histogram.
  void Merge(const Histogram& other);
  void Clear();

  uint64_t Count() const { return count_; }
  // REQUIRES: Count() > 0 for Min, Max, Mean and Percentile to be meaningful;
  // on an empty histogram they return 0.
  int64_t Min() const { return count_ == 0 ? 0 : min_; }
  int64_t Max() const { return max_; }
  double Mean() const;
  // REQUIRES: 0 <= p <= 100 (clamped otherwise).
  int64_t Percentile(double p) const;

  // Bucket arithmetic, exposed for tests.
  static int BucketIndex(int64_t value);
  static int64_t BucketLow(int index);   // Smallest value in the bucket.
  static int64_t BucketHigh(int index);  // Largest value in the bucket.
  static int NumBuckets();

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace synod::bench

#endif  // SYNOD_BENCH_SYNOD_BENCH_HISTOGRAM_H_
