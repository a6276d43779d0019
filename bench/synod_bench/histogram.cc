#include "bench/synod_bench/histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace synod::bench {
namespace {

constexpr int kSub = 1 << Histogram::kSubBucketBits;  // 128
// Values below kLinear (256) are exact buckets 0..255.
constexpr int64_t kLinear = int64_t{2} << Histogram::kSubBucketBits;

int Msb(uint64_t v) { return 63 - __builtin_clzll(v); }

}  // namespace

Histogram::Histogram() : counts_(NumBuckets(), 0) {}

int Histogram::NumBuckets() {
  // The largest value, 2^63 - 1, has msb 62.
  return BucketIndex(std::numeric_limits<int64_t>::max()) + 1;
}

int Histogram::BucketIndex(int64_t value) {
  if (value < kLinear) return static_cast<int>(std::max<int64_t>(value, 0));
  int msb = Msb(static_cast<uint64_t>(value));  // >= kSubBucketBits + 1
  int shift = msb - kSubBucketBits;             // >= 1
  int64_t sub = value >> shift;                 // in [kSub, 2 * kSub)
  return shift * kSub + static_cast<int>(sub);
}

int64_t Histogram::BucketLow(int index) {
  if (index < kLinear) return index;
  int shift = index / kSub - 1;
  int64_t sub = index % kSub + kSub;
  return sub << shift;
}

int64_t Histogram::BucketHigh(int index) {
  if (index < kLinear) return index;
  int shift = index / kSub - 1;
  int64_t sub = index % kSub + kSub;
  // (sub + 1) << shift overflows for the very last bucket; compute the width.
  return (sub << shift) + ((int64_t{1} << shift) - 1);
}

void Histogram::Record(int64_t value) {
  if (value < 0) value = 0;
  ++counts_[BucketIndex(value)];
  if (count_ == 0 || value < min_) min_ = value;
  if (value > max_) max_ = value;
  ++count_;
  sum_ += value;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  if (count_ == 0 || other.min_ < min_) min_ = other.min_;
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

void Histogram::Clear() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = max_ = 0;
  sum_ = 0;
}

double Histogram::Mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / count_);
}

int64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  if (!(p > 0)) return min_;  // Also catches NaN.
  if (p >= 100) return max_;
  // Nearest rank, 1-based: ceil(p/100 * N), at least 1. Computed in long
  // double and nudged down so that e.g. 99.9% of 1000 is rank 999, not 1000.
  long double exact = static_cast<long double>(p) / 100 * count_;
  uint64_t rank = static_cast<uint64_t>(std::ceil(exact - 1e-9L));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      return std::clamp(BucketHigh(static_cast<int>(i)), min_, max_);
    }
  }
  return max_;
}

}  // namespace synod::bench
