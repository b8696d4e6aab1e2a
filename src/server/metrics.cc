#include "server/metrics.h"

#include <prometheus/text_serializer.h>

#include "base/check.h"

namespace lockd::server {

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

std::vector<double> WaitBuckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};
}

MetricsRegistry::MetricsRegistry() : registry_(std::make_shared<prometheus::Registry>()) {}

template <typename T>
prometheus::Family<T>& MetricsRegistry::FamilyOf(
    std::map<std::string, prometheus::Family<T>*>& families, const std::string& name,
    const std::string& help, prometheus::detail::Builder<T> builder) {
  if (auto it = families.find(name); it != families.end()) return *it->second;
  const size_t taken = counters_.count(name) + gauges_.count(name) + histograms_.count(name);
  LOCKD_CHECK_MSG(taken == 0, "metric name registered with two types");
  auto& family = builder.Name(name).Help(help).Register(*registry_);
  families.emplace(name, &family);
  return family;
}

Counter& MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                     const Labels& labels) {
  std::lock_guard lock(mu_);
  return FamilyOf(counters_, name, help, prometheus::BuildCounter()).Add(labels);
}

Gauge& MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                 const Labels& labels) {
  std::lock_guard lock(mu_);
  return FamilyOf(gauges_, name, help, prometheus::BuildGauge()).Add(labels);
}

Histogram& MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> bounds, const Labels& labels) {
  std::lock_guard lock(mu_);
  return FamilyOf(histograms_, name, help, prometheus::BuildHistogram())
      .Add(labels, Histogram::BucketBoundaries(bounds));
}

void MetricsRegistry::Remove(const std::string& name, Counter* metric) {
  std::lock_guard lock(mu_);
  if (auto it = counters_.find(name); it != counters_.end()) it->second->Remove(metric);
}

void MetricsRegistry::Remove(const std::string& name, Gauge* metric) {
  std::lock_guard lock(mu_);
  if (auto it = gauges_.find(name); it != gauges_.end()) it->second->Remove(metric);
}

std::string MetricsRegistry::Render() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace lockd::server
