#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace synod::common {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "synod metrics: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

bool IsMetricName(const std::string& s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsLabelName(const std::string& s) {
  if (s.empty() || s.compare(0, 2, "__") == 0) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// Escapes `\` and newline (and `"` when `quote`), per the text format.
std::string Escape(const std::string& s, bool quote) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// Sorted, validated, rendered labels without braces: `a="x",b="y"`.
std::string LabelKey(const std::string& metric, MetricLabels labels,
                     bool histogram) {
  std::sort(labels.begin(), labels.end());
  std::string key;
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string& name = labels[i].first;
    if (!IsLabelName(name)) {
      Die(absl::StrCat("invalid label name \"", name, "\" on ", metric));
    }
    if (i > 0 && labels[i - 1].first == name) {
      Die(absl::StrCat("label \"", name, "\" repeated on ", metric));
    }
    if (histogram && name == "le") {
      Die(absl::StrCat("label \"le\" is reserved on histogram ", metric));
    }
    if (i > 0) key += ',';
    absl::StrAppend(&key, name, "=\"", Escape(labels[i].second, true), "\"");
  }
  return key;
}

prometheus::Labels ToLabels(const MetricLabels& labels) {
  return prometheus::Labels(labels.begin(), labels.end());
}

}  // namespace

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0";  // also -0
  char buf[64];
  if (v == std::trunc(v) && std::fabs(v) <= 9007199254740992.0) {  // 2^53
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

const char* MetricsRegistry::TypeName(Type type) {
  switch (type) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void Counter::Inc(uint64_t n) { impl_->Increment(static_cast<double>(n)); }

uint64_t Counter::Value() const {
  return static_cast<uint64_t>(impl_->Value());
}

void Gauge::Set(double v) { impl_->Set(v); }

void Gauge::Add(double delta) { impl_->Increment(delta); }

double Gauge::Value() const { return impl_->Value(); }

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  impl_->Observe(value);
}

uint64_t Histogram::BucketCount(size_t i) const {
  const auto buckets = impl_->Collect().histogram.bucket;  // cumulative
  if (i >= buckets.size()) return 0;
  return buckets[i].cumulative_count -
         (i == 0 ? 0 : buckets[i - 1].cumulative_count);
}

double Histogram::Sum() const { return impl_->Collect().histogram.sample_sum; }

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    Die(absl::StrCat("bad ExponentialBuckets(", start, ", ", factor, ", ",
                     count, ")"));
  }
  std::vector<double> out;
  out.reserve(count);
  for (int i = 0; i < count; ++i) {
    out.push_back(start);
    start *= factor;
  }
  return out;
}

MetricsRegistry::Series& MetricsRegistry::FindOrCreate(
    const std::string& name, const std::string& help, Type type,
    const std::vector<double>* bounds, const MetricLabels& labels) {
  if (!IsMetricName(name))
    Die(absl::StrCat("invalid metric name \"", name, "\""));
  std::string key = LabelKey(name, labels, type == Type::kHistogram);
  auto [it, inserted] = families_.try_emplace(name);
  Family& family = it->second;
  if (inserted) {
    family.type = type;
    family.help = help;
    if (bounds != nullptr) {
      for (size_t i = 0; i < bounds->size(); ++i) {
        if (!std::isfinite((*bounds)[i]) ||
            (i > 0 && !((*bounds)[i - 1] < (*bounds)[i]))) {
          families_.erase(it);
          Die(absl::StrCat("histogram ", name,
                           ": bounds must be finite and strictly increasing"));
        }
      }
      family.bounds = *bounds;
    }
  } else {
    if (family.type != type) {
      Die(absl::StrCat(name, " registered as ", TypeName(family.type), ", not ",
                       TypeName(type)));
    }
    if (family.help != help) {
      Die(absl::StrCat(name, " registered with different help text"));
    }
    if (bounds != nullptr && family.bounds != *bounds) {
      Die(absl::StrCat(name, " registered with different buckets"));
    }
  }
  Series& series = family.series[key];
  if (series.labels.empty() && !labels.empty()) {
    series.labels = labels;
    std::sort(series.labels.begin(), series.labels.end());
  }
  return series;
}

MetricsRegistry::MetricsRegistry()
    : registry_(std::make_unique<prometheus::Registry>(
          prometheus::Registry::InsertBehavior::Throw)) {}

MetricsRegistry::~MetricsRegistry() = default;

Counter* MetricsRegistry::GetCounter(const std::string& name,
                                     const std::string& help,
                                     const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  Series& s = FindOrCreate(name, help, Type::kCounter, nullptr, labels);
  if (s.callback)
    Die(absl::StrCat(name, ": labels already used by a callback"));
  if (s.counter == nullptr) {
    Family& f = families_[name];
    if (f.counters == nullptr) {
      f.counters = &prometheus::BuildCounter().Name(name).Help(help).Register(
          *registry_);
    }
    s.counter = std::make_unique<Counter>(&f.counters->Add(ToLabels(labels)));
  }
  return s.counter.get();
}

Gauge* MetricsRegistry::GetGauge(const std::string& name,
                                 const std::string& help,
                                 const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  Series& s = FindOrCreate(name, help, Type::kGauge, nullptr, labels);
  if (s.callback)
    Die(absl::StrCat(name, ": labels already used by a callback"));
  if (s.gauge == nullptr) {
    Family& f = families_[name];
    if (f.gauges == nullptr) {
      f.gauges = &prometheus::BuildGauge().Name(name).Help(help).Register(
          *registry_);
    }
    s.gauge = std::make_unique<Gauge>(&f.gauges->Add(ToLabels(labels)));
  }
  return s.gauge.get();
}

Histogram* MetricsRegistry::GetHistogram(const std::string& name,
                                         const std::string& help,
                                         std::vector<double> bucket_bounds,
                                         const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  Series& s =
      FindOrCreate(name, help, Type::kHistogram, &bucket_bounds, labels);
  if (s.histogram == nullptr) {
    Family& f = families_[name];
    if (f.histograms == nullptr) {
      f.histograms = &prometheus::BuildHistogram().Name(name).Help(help).Register(
          *registry_);
    }
    prometheus::Histogram& impl = f.histograms->Add(
        ToLabels(labels), prometheus::Histogram::BucketBoundaries(bucket_bounds));
    s.histogram = std::make_unique<Histogram>(&impl, std::move(bucket_bounds));
  }
  return s.histogram.get();
}

uint64_t MetricsRegistry::AddGaugeCallback(const std::string& name,
                                           const std::string& help,
                                           std::function<double()> fn,
                                           const MetricLabels& labels) {
  return AddCallback(name, help, Type::kGauge, std::move(fn), labels);
}

uint64_t MetricsRegistry::AddCounterCallback(const std::string& name,
                                             const std::string& help,
                                             std::function<double()> fn,
                                             const MetricLabels& labels) {
  return AddCallback(name, help, Type::kCounter, std::move(fn), labels);
}

uint64_t MetricsRegistry::AddCallback(const std::string& name,
                                      const std::string& help, Type type,
                                      std::function<double()> fn,
                                      const MetricLabels& labels) {
  if (!fn) Die(absl::StrCat(name, ": empty callback"));
  absl::MutexLock lock(&mu_);
  Series& s = FindOrCreate(name, help, type, nullptr, labels);
  if (s.gauge != nullptr || s.counter != nullptr) {
    Die(absl::StrCat(name, ": labels already used by a plain series"));
  }
  if (s.callback_id != 0) callbacks_.erase(s.callback_id);
  uint64_t id = next_callback_id_++;
  s.callback = std::move(fn);
  s.callback_id = id;
  callbacks_[id] = {name, LabelKey(name, labels, false)};
  return id;
}

void MetricsRegistry::RemoveGaugeCallback(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = callbacks_.find(id);
  if (it == callbacks_.end()) return;
  auto fam = families_.find(it->second.first);
  if (fam != families_.end()) {
    fam->second.series.erase(it->second.second);
    // A family left without series disappears from the output, and its name
    // may be registered again (even with another type).
    if (fam->second.series.empty()) families_.erase(fam);
  }
  callbacks_.erase(it);
}

std::string MetricsRegistry::RenderText() const {
  std::vector<prometheus::MetricFamily> out;
  {
    absl::MutexLock lock(&mu_);
    out.reserve(families_.size());
    for (const auto& [name, family] : families_) {
      prometheus::MetricFamily mf;
      mf.name = name;
      // prometheus-cpp writes the help text as given; the text format wants
      // backslashes and newlines escaped.
      mf.help = Escape(family.help, false);
      switch (family.type) {
        case Type::kCounter:
          mf.type = prometheus::MetricType::Counter;
          break;
        case Type::kGauge:
          mf.type = prometheus::MetricType::Gauge;
          break;
        case Type::kHistogram:
          mf.type = prometheus::MetricType::Histogram;
          break;
      }
      std::vector<prometheus::MetricFamily> plain;
      if (family.counters != nullptr) plain = family.counters->Collect();
      if (family.gauges != nullptr) plain = family.gauges->Collect();
      if (family.histograms != nullptr) plain = family.histograms->Collect();
      for (auto& f : plain) {
        for (auto& m : f.metric) mf.metric.push_back(std::move(m));
      }
      for (const auto& [key, s] : family.series) {
        if (!s.callback) continue;
        prometheus::ClientMetric m;
        for (const auto& [label, value] : s.labels) {
          m.label.push_back({label, value});
        }
        (family.type == Type::kCounter ? m.counter.value : m.gauge.value) =
            s.callback();
        mf.metric.push_back(std::move(m));
      }
      // Series sorted by labels (prometheus-cpp keeps them in a hash map).
      std::sort(mf.metric.begin(), mf.metric.end(),
                [](const prometheus::ClientMetric& a,
                   const prometheus::ClientMetric& b) {
                  return a.label < b.label;
                });
      out.push_back(std::move(mf));
    }
  }
  return prometheus::TextSerializer().Serialize(out);
}

MetricsRegistry& DefaultMetrics() {
  static MetricsRegistry* registry = new MetricsRegistry();
  return *registry;
}

}  // namespace synod::common
