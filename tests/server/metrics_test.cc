#include "server/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace lockd::server {
namespace {

TEST(Metrics, RendersPrometheusTextSortedByName) {
  MetricsRegistry r;
  r.AddCounter("lockd_grants_total", "Locks granted.").Add(3);
  r.AddGauge("lockd_is_leader", "1 on the leader.").Set(1);
  EXPECT_EQ(r.Render(),
            "# HELP lockd_grants_total Locks granted.\n# TYPE lockd_grants_total counter\n"
            "lockd_grants_total 3\n"
            "# HELP lockd_is_leader 1 on the leader.\n# TYPE lockd_is_leader gauge\n"
            "lockd_is_leader 1\n");
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  MetricsRegistry r;
  auto& h = r.AddHistogram("lockd_x_seconds", "x.", {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.1);  // le is inclusive
  h.Observe(0.5);
  h.Observe(7);
  const std::string out = r.Render();
  EXPECT_NE(out.find("lockd_x_seconds_bucket{le=\"0.1\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("lockd_x_seconds_bucket{le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("lockd_x_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(out.find("lockd_x_seconds_count 4\n"), std::string::npos);
  EXPECT_NE(out.find("lockd_x_seconds_sum 7.65\n"), std::string::npos);
}

TEST(Metrics, CountersAreSafeAcrossThreads) {
  MetricsRegistry r;
  auto& c = r.AddCounter("lockd_c_total", "c.");
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) c.Add();
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), 40000u);
}

}  // namespace
}  // namespace lockd::server
