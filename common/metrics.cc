#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

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

// `name{key}` or `name` when there are no labels; `extra` is appended inside
// the braces (used for le="...").
std::string SeriesName(const std::string& name, const std::string& key,
                       const std::string& extra = "") {
  if (key.empty() && extra.empty()) return name;
  std::string sep = (!key.empty() && !extra.empty()) ? "," : "";
  return absl::StrCat(name, "{", key, sep, extra, "}");
}

void AtomicAdd(std::atomic<double>* a, double delta) {
  double cur = a->load(std::memory_order_relaxed);
  while (
      !a->compare_exchange_weak(cur, cur + delta, std::memory_order_relaxed)) {
  }
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

void Gauge::Add(double delta) { AtomicAdd(&value_, delta); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  // First bound >= value: buckets are inclusive upper bounds ("le").
  size_t i =
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(&sum_, value);
}

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
  return family.series[key];
}

Counter* MetricsRegistry::GetCounter(const std::string& name,
                                     const std::string& help,
                                     const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  Series& s = FindOrCreate(name, help, Type::kCounter, nullptr, labels);
  if (s.counter == nullptr) s.counter = std::make_unique<Counter>();
  return s.counter.get();
}

Gauge* MetricsRegistry::GetGauge(const std::string& name,
                                 const std::string& help,
                                 const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  Series& s = FindOrCreate(name, help, Type::kGauge, nullptr, labels);
  if (s.callback)
    Die(absl::StrCat(name, ": labels already used by a callback"));
  if (s.gauge == nullptr) s.gauge = std::make_unique<Gauge>();
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
    s.histogram = std::make_unique<Histogram>(std::move(bucket_bounds));
  }
  return s.histogram.get();
}

uint64_t MetricsRegistry::AddGaugeCallback(const std::string& name,
                                           const std::string& help,
                                           std::function<double()> fn,
                                           const MetricLabels& labels) {
  if (!fn) Die(absl::StrCat(name, ": empty gauge callback"));
  absl::MutexLock lock(&mu_);
  Series& s = FindOrCreate(name, help, Type::kGauge, nullptr, labels);
  if (s.gauge != nullptr) {
    Die(absl::StrCat(name, ": labels already used by a plain gauge"));
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
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    absl::StrAppend(&out, "# HELP ", name, " ", Escape(family.help, false),
                    "\n# TYPE ", name, " ", TypeName(family.type), "\n");
    for (const auto& [key, s] : family.series) {
      if (s.counter != nullptr) {
        absl::StrAppend(&out, SeriesName(name, key), " ", s.counter->Value(),
                        "\n");
      } else if (s.gauge != nullptr) {
        absl::StrAppend(&out, SeriesName(name, key), " ",
                        FormatMetricValue(s.gauge->Value()), "\n");
      } else if (s.callback) {
        absl::StrAppend(&out, SeriesName(name, key), " ",
                        FormatMetricValue(s.callback()), "\n");
      } else if (s.histogram != nullptr) {
        const Histogram& h = *s.histogram;
        // Read the buckets once; the count is their total so that _count and
        // the +Inf bucket always agree, even during concurrent Observe().
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= h.bounds().size(); ++i) {
          cumulative += h.BucketCount(i);
          std::string le =
              i < h.bounds().size() ? FormatMetricValue(h.bounds()[i]) : "+Inf";
          absl::StrAppend(&out,
                          SeriesName(name + "_bucket", key,
                                     absl::StrCat("le=\"", le, "\"")),
                          " ", cumulative, "\n");
        }
        absl::StrAppend(&out, SeriesName(name + "_sum", key), " ",
                        FormatMetricValue(h.Sum()), "\n",
                        SeriesName(name + "_count", key), " ", cumulative,
                        "\n");
      }
    }
  }
  return out;
}

MetricsRegistry& DefaultMetrics() {
  static MetricsRegistry* registry = new MetricsRegistry();
  return *registry;
}

}  // namespace synod::common
