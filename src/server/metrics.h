// Metrics: counters, gauges and histograms the node exports on HTTP /metrics in the Prometheus
// text format (names prefixed lockd_, units in the name: _seconds, _bytes, _total), on Debian's
// prometheus-cpp (core: the registry, the metric families and the text serializer).
//
// Callers register each metric (each label set of a family) once, at start, and keep the returned
// reference: an update is then cheap and safe from any thread, with no name or label lookup per
// event (a counter or gauge update is an atomic operation; prometheus-cpp's Histogram::Observe
// takes a short mutex of its own). The registry owns every metric.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lockd::server {

using Counter = prometheus::Counter;
using Gauge = prometheus::Gauge;
using Histogram = prometheus::Histogram;
using Labels = std::map<std::string, std::string>;

/// Latency buckets from 100 µs to 10 s.
std::vector<double> LatencyBuckets();
/// Wait buckets from 1 ms to 1 h (an Acquire may wait up to --max-wait-ms).
std::vector<double> WaitBuckets();

/// Raises `c` to `total`, a running count kept elsewhere (a counter never goes down).
inline void CatchUp(Counter& c, uint64_t total) {
  const double t = static_cast<double>(total);
  if (t > c.Value()) c.Increment(t - c.Value());
}

/// What the client-facing services count (null members: not counted).
struct ServiceMetrics {
  /// An Acquire's outcome as the leader answered it.
  enum Outcome : size_t { kAcquired = 0, kNotAcquired, kError, kOutcomes };
  static constexpr const char* kOutcomeNames[kOutcomes] = {"acquired", "not_acquired", "error"};
  /// Try-locks (wait_ms 0): from submission on the leader to the answer.
  Histogram* acquire_duration[kOutcomes] = {};
  /// Acquires that asked to wait: from submission on the leader to the final answer.
  Histogram* acquire_wait[kOutcomes] = {};
  Counter* renewals_ok = nullptr;           ///< renewals the leader acknowledged
  Counter* renewals_refused = nullptr;      ///< NOT_FOUND: the lease is unknown or expired
  Counter* renewals_unavailable = nullptr;  ///< not the leader (yet), stopping
  Counter* forwarded = nullptr;             ///< calls this node forwarded to the leader
  Counter* force_releases = nullptr;        ///< ForceRelease calls that released a grant
};

/// What the replica counts as it applies entries (null members: not counted). Every node
/// counts what it applies, so these agree across members (each from its own start).
struct ApplyMetrics {
  Counter* grants = nullptr;    ///< grants (from a try or a wait)
  Counter* releases = nullptr;  ///< grants ended by Release, RevokeLease or ForceRelease
  Counter* expiries = nullptr;  ///< grants ended because their lease expired
  Counter* waits = nullptr;     ///< Acquires that started waiting
  Counter* cancels = nullptr;   ///< waits that ended ungranted (Cancel, timeout, lease gone)
};

class MetricsRegistry {
 public:
  MetricsRegistry();

  /// The metric `name` with `labels`; a family is created by its first metric and shares its
  /// help text. Registering one name with two types is a programming error (aborts).
  Counter& AddCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& AddGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bounds, const Labels& labels = {});

  /// Removes one metric (a label set) from its family: it is no longer exported. The reference
  /// must not be used afterwards.
  void Remove(const std::string& name, Counter* metric);
  void Remove(const std::string& name, Gauge* metric);

  /// The Prometheus text exposition (version 0.0.4) of every metric.
  std::string Render() const;

 private:
  template <typename T>
  prometheus::Family<T>& FamilyOf(std::map<std::string, prometheus::Family<T>*>& families,
                                  const std::string& name, const std::string& help,
                                  prometheus::detail::Builder<T> builder);

  std::shared_ptr<prometheus::Registry> registry_;
  std::mutex mu_;  ///< guards the maps (the metrics themselves are atomic)
  std::map<std::string, prometheus::Family<Counter>*> counters_;
  std::map<std::string, prometheus::Family<Gauge>*> gauges_;
  std::map<std::string, prometheus::Family<Histogram>*> histograms_;
};

}  // namespace lockd::server
