// Metrics: counters, gauges and histograms the node exports on HTTP /metrics in the Prometheus
// text format (names prefixed lockd_, units in the name: _seconds, _bytes, _total).
//
// Updating a metric is a relaxed atomic operation, safe from any thread and cheap on hot paths.
// The registry owns every metric; callers keep the returned reference for the registry's life.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lockd::server {

class Counter {
 public:
  void Add(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void Set(double v) { v_.store(v, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

/// Cumulative buckets with fixed upper bounds (seconds, bytes, ...), as Prometheus expects.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  /// Counts per bucket (cumulative), the sum and the total count.
  std::vector<uint64_t> cumulative() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  ///< per bucket, not cumulative; +1 for +Inf
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

/// Latency buckets from 100 µs to 10 s.
std::vector<double> LatencyBuckets();

class MetricsRegistry {
 public:
  Counter& AddCounter(const std::string& name, const std::string& help);
  Gauge& AddGauge(const std::string& name, const std::string& help);
  Histogram& AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bounds);
  /// The Prometheus text exposition (version 0.0.4) of every metric, sorted by name.
  std::string Render() const;

 private:
  struct Family {
    std::string help;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  /// A new, empty family (mu_ held); registering a name twice is a programming error.
  Family& NewFamily(const std::string& name, const std::string& help);

  mutable std::mutex mu_;  ///< guards the map (not the metrics, which are atomic)
  std::map<std::string, Family> families_;
};

}  // namespace lockd::server
