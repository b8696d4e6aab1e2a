#include "server/metrics.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "base/check.h"

namespace lockd::server {
namespace {

/// The shortest decimal that reads back as exactly `v` ("0.1", not "0.10000000000000001").
std::string Number(double v) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void AddDouble(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  LOCKD_CHECK(std::is_sorted(bounds_.begin(), bounds_.end()));
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AddDouble(sum_, v);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::cumulative() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

MetricsRegistry::Family& MetricsRegistry::NewFamily(const std::string& name,
                                                    const std::string& help) {
  Family& f = families_[name];
  LOCKD_CHECK_MSG(!f.counter && !f.gauge && !f.histogram, "metric registered twice");
  f.help = help;
  return f;
}

Counter& MetricsRegistry::AddCounter(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  return *(NewFamily(name, help).counter = std::make_unique<Counter>());
}

Gauge& MetricsRegistry::AddGauge(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  return *(NewFamily(name, help).gauge = std::make_unique<Gauge>());
}

Histogram& MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  return *(NewFamily(name, help).histogram = std::make_unique<Histogram>(std::move(bounds)));
}

std::string MetricsRegistry::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + f.help + "\n";
    if (f.counter) {
      out +=
          "# TYPE " + name + " counter\n" + name + " " + std::to_string(f.counter->value()) + "\n";
    } else if (f.gauge) {
      out += "# TYPE " + name + " gauge\n" + name + " " + Number(f.gauge->value()) + "\n";
    } else if (f.histogram) {
      out += "# TYPE " + name + " histogram\n";
      const auto cum = f.histogram->cumulative();
      const auto& b = f.histogram->bounds();
      for (size_t i = 0; i < b.size(); ++i) {
        out += name + "_bucket{le=\"" + Number(b[i]) + "\"} " + std::to_string(cum[i]) + "\n";
      }
      out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum.back()) + "\n";
      out += name + "_sum " + Number(f.histogram->sum()) + "\n";
      out += name + "_count " + std::to_string(f.histogram->count()) + "\n";
    }
  }
  return out;
}

}  // namespace lockd::server
