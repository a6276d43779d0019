// MetricsRegistry: Prometheus metrics for /metrics, kept in a
// prometheus-cpp registry. Code registers a counter, gauge or histogram once
// (by name and optional labels), keeps the returned pointer, and updates it on
// the hot path; RenderText() produces the text exposition format 0.0.4 that
// Prometheus scrapes (prometheus-cpp's TextSerializer).
//
// Ownership: the registry owns every Counter, Gauge and Histogram it returns.
// The pointers stay valid until the registry is destroyed, and nothing is ever
// unregistered except callback series. DefaultMetrics() is never destroyed.
//
// Thread safety: everything is safe for concurrent use. Counter::Inc and
// Gauge::Set/Add are prometheus-cpp atomics; Histogram::Observe takes the
// histogram's own short mutex (prometheus-cpp's). Registration, callback
// removal and RenderText() take the registry mutex.
//
// Misuse is a programming error and aborts the process with a message on
// stderr: an invalid metric or label name, the same name registered with a
// different type, help text or histogram buckets, a repeated label name, or
// the label "le" on a histogram.
#ifndef SYNOD_COMMON_METRICS_H_
#define SYNOD_COMMON_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace synod::common {

// Label pairs {name, value} of one series, e.g. {{"method", "GET"}}. Order
// does not matter: {a,b} and {b,a} name the same series. Names must match
// [a-zA-Z_][a-zA-Z0-9_]* and not start with "__"; values are any UTF-8 text.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing count (requests, bytes, errors). A handle on a
// prometheus::Counter that the registry owns.
class Counter {
 public:
  // Made by MetricsRegistry; `impl` (not null) outlives the handle.
  explicit Counter(prometheus::Counter* impl) : impl_(impl) {}
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `n` (default 1). Exact while the total stays <= 2^53.
  void Inc(uint64_t n = 1);
  uint64_t Value() const;

 private:
  prometheus::Counter* const impl_;  // owned by the registry
};

// A value that goes up and down. Integers (int64) convert to double exactly
// while |v| <= 2^53, which covers any byte or item count Synod exposes. A
// handle on a prometheus::Gauge that the registry owns.
class Gauge {
 public:
  // Made by MetricsRegistry; `impl` (not null) outlives the handle.
  explicit Gauge(prometheus::Gauge* impl) : impl_(impl) {}
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v);
  // Adds `delta` (may be negative) atomically.
  void Add(double delta);
  void Inc() { Add(1); }
  void Dec() { Add(-1); }
  double Value() const;

 private:
  prometheus::Gauge* const impl_;  // owned by the registry
};

// Counts observations into buckets with upper bounds `bounds` (inclusive,
// "le") plus an implicit +Inf bucket; also tracks their sum and count. A
// handle on a prometheus::Histogram that the registry owns.
class Histogram {
 public:
  // Made by MetricsRegistry; `impl` (not null) outlives the handle and was
  // built with `bounds` (finite, strictly increasing, may be empty).
  Histogram(prometheus::Histogram* impl, std::vector<double> bounds)
      : impl_(impl), bounds_(std::move(bounds)) {}
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Records one observation, usually a duration in seconds. NaN is ignored.
  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count of bucket i, 0 <= i <= bounds().size() (the last is
  // the +Inf bucket); 0 past the end. BucketCount and Sum read a snapshot
  // under the histogram's mutex: for tests and diagnostics, not hot paths.
  uint64_t BucketCount(size_t i) const;
  double Sum() const;

 private:
  prometheus::Histogram* const impl_;  // owned by the registry
  const std::vector<double> bounds_;
};

// Returns `count` bounds start, start*factor, start*factor^2, ...
// REQUIRES: start > 0, factor > 1, count >= 1.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
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
  // As AddGaugeCallback, for a counter family whose total is kept elsewhere
  // (e.g. the process's CPU time); `fn` must never decrease. Shares ids and
  // RemoveGaugeCallback() with gauge callbacks.
  uint64_t AddCounterCallback(const std::string& name, const std::string& help,
                              std::function<double()> fn,
                              const MetricLabels& labels = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  // Unregisters the callback `id` (gauge or counter); once this returns `fn` is never called
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
    MetricLabels labels;  // sorted by name
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> callback;  // set for a callback series
    uint64_t callback_id = 0;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> bounds;  // histograms only
    // The prometheus-cpp family of the family's type holding the plain
    // series (owned by registry_); null until the first one is added.
    prometheus::Family<prometheus::Counter>* counters = nullptr;
    prometheus::Family<prometheus::Gauge>* gauges = nullptr;
    prometheus::Family<prometheus::Histogram>* histograms = nullptr;
    // Key: rendered labels without braces, sorted by label name, e.g.
    // `a="1",b="2"`; "" for no labels.
    std::map<std::string, Series> series;
  };

  static const char* TypeName(Type type);

  // AddGaugeCallback and AddCounterCallback for `type`.
  uint64_t AddCallback(const std::string& name, const std::string& help,
                       Type type, std::function<double()> fn,
                       const MetricLabels& labels) ABSL_LOCKS_EXCLUDED(mu_);

  // Returns the series for (name, labels), creating family and series as
  // needed; aborts on a type, help or bucket mismatch.
  Series& FindOrCreate(const std::string& name, const std::string& help,
                       Type type, const std::vector<double>* bounds,
                       const MetricLabels& labels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  // Owns every plain series; callback gauges live only in families_.
  const std::unique_ptr<prometheus::Registry> registry_;
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
