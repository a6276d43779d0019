// MetricsRegistry: Prometheus metrics for /metrics. Code registers a counter,
// gauge or histogram once (by name and optional labels), keeps the returned
// pointer, and updates it on the hot path; RenderText() produces the text
// exposition format 0.0.4 that Prometheus scrapes.
//
// Ownership: the registry owns every Counter, Gauge and Histogram it returns.
// The pointers stay valid until the registry is destroyed, and nothing is ever
// unregistered except callback gauges. DefaultMetrics() is never destroyed.
//
// Thread safety: everything is safe for concurrent use. Counter::Inc,
// Gauge::Set/Add and Histogram::Observe are lock-free atomics (no mutex on the
// hot path). Registration, callback removal and RenderText() take the
// registry mutex.
//
// Misuse is a programming error and aborts the process with a message on
// stderr: an invalid metric or label name, the same name registered with a
// different type, help text or histogram buckets, a repeated label name, or
// the label "le" on a histogram.
#ifndef SYNOD_COMMON_METRICS_H_
#define SYNOD_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace synod::common {

// Label pairs {name, value} of one series, e.g. {{"method", "GET"}}. Order
// does not matter: {a,b} and {b,a} name the same series. Names must match
// [a-zA-Z_][a-zA-Z0-9_]* and not start with "__"; values are any UTF-8 text.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing count (requests, bytes, errors).
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `n` (default 1). Wraps around after 2^64 - 1.
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down. Integers (int64) convert to double exactly
// while |v| <= 2^53, which covers any byte or item count Synod exposes.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  // Adds `delta` (may be negative) atomically.
  void Add(double delta);
  void Inc() { Add(1); }
  void Dec() { Add(-1); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with upper bounds `bounds` (inclusive,
// "le") plus an implicit +Inf bucket; also tracks their sum and count.
class Histogram {
 public:
  // REQUIRES: `bounds` finite and strictly increasing (may be empty).
  explicit Histogram(std::vector<double> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Records one observation, usually a duration in seconds. NaN is ignored.
  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count of bucket i, 0 <= i <= bounds().size() (the last is
  // the +Inf bucket).
  uint64_t BucketCount(size_t i) const {
    return counts_[i].load(std::memory_order_relaxed);
  }
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

// Returns `count` bounds start, start*factor, start*factor^2, ...
// REQUIRES: start > 0, factor > 1, count >= 1.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Each Get* returns the series for (name, labels), creating it on first
  // use; later calls with the same name and labels return the same pointer.
  // `name` must match [a-zA-Z_:][a-zA-Z0-9_:]*; `help` is one line of text
  // (backslashes and newlines are escaped on output) and must be the same on
  // every call for a name. Never returns null.
  Counter* GetCounter(const std::string& name, const std::string& help,
                      const MetricLabels& labels = {}) ABSL_LOCKS_EXCLUDED(mu_);
  Gauge* GetGauge(const std::string& name, const std::string& help,
                  const MetricLabels& labels = {}) ABSL_LOCKS_EXCLUDED(mu_);
  // `bucket_bounds`: upper bounds in the observed unit (seconds for
  // latencies), finite and strictly increasing; +Inf is added implicitly.
  // Every series of one name must use the same bounds.
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bucket_bounds,
                          const MetricLabels& labels = {})
      ABSL_LOCKS_EXCLUDED(mu_);

  // Registers a gauge whose value is computed by `fn` at every RenderText(),
  // e.g. the database size. `fn` runs on the rendering thread while the
  // registry mutex is held, so it must be quick and must not call into this
  // registry. A callback already registered for the same name and labels is
  // replaced. A family may mix callback and plain gauges, but not on the same
  // labels. Returns an id for RemoveGaugeCallback(); ids are never 0.
  uint64_t AddGaugeCallback(const std::string& name, const std::string& help,
                            std::function<double()> fn,
                            const MetricLabels& labels = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  // Unregisters the callback `id`; once this returns `fn` is never called
  // again, so its captures may be destroyed. Unknown or replaced ids are a
  // no-op.
  void RemoveGaugeCallback(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);

  // The whole registry in Prometheus text format 0.0.4 (served with
  // kPrometheusTextContentType): families sorted by name,
  // series sorted by labels, each family preceded by # HELP and # TYPE.
  std::string RenderText() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> callback;  // set for a callback gauge
    uint64_t callback_id = 0;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> bounds;  // histograms only
    // Key: rendered labels without braces, sorted by label name, e.g.
    // `a="1",b="2"`; "" for no labels.
    std::map<std::string, Series> series;
  };

  static const char* TypeName(Type type);

  // Returns the series for (name, labels), creating family and series as
  // needed; aborts on a type, help or bucket mismatch.
  Series& FindOrCreate(const std::string& name, const std::string& help,
                       Type type, const std::vector<double>* bounds,
                       const MetricLabels& labels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
  // Callback id -> (family name, series key).
  std::map<uint64_t, std::pair<std::string, std::string>> callbacks_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_callback_id_ ABSL_GUARDED_BY(mu_) = 1;
};

// The Content-Type of RenderText() output.
inline constexpr char kPrometheusTextContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

// The process-wide registry served on /metrics. Never destroyed.
MetricsRegistry& DefaultMetrics();

// Formats `v` as Prometheus does: "+Inf", "-Inf", "NaN", integers without a
// fraction, and otherwise the shortest text that reads back as `v`.
std::string FormatMetricValue(double v);

}  // namespace synod::common

#endif  // SYNOD_COMMON_METRICS_H_
