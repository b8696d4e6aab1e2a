#include "server/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace lockd::server {
namespace {

bool Has(const std::string& out, const std::string& line) {
  return out.find(line) != std::string::npos;
}

TEST(Metrics, RendersPrometheusTextWithHelpAndType) {
  MetricsRegistry r;
  r.AddCounter("lockd_grants_total", "Locks granted.").Increment(3);
  r.AddGauge("lockd_is_leader", "1 on the leader.").Set(1);
  const std::string out = r.Render();
  EXPECT_TRUE(Has(out, "# HELP lockd_grants_total Locks granted.\n")) << out;
  EXPECT_TRUE(Has(out, "# TYPE lockd_grants_total counter\nlockd_grants_total 3\n")) << out;
  EXPECT_TRUE(Has(out, "# TYPE lockd_is_leader gauge\nlockd_is_leader 1\n")) << out;
}

TEST(Metrics, LabelledMetricsShareTheirFamily) {
  MetricsRegistry r;
  auto& ok = r.AddCounter("lockd_renewals_total", "Renewals.", {{"result", "ok"}});
  auto& refused = r.AddCounter("lockd_renewals_total", "Renewals.", {{"result", "refused"}});
  ok.Increment(2);
  refused.Increment();
  const std::string out = r.Render();
  EXPECT_TRUE(Has(out, "lockd_renewals_total{result=\"ok\"} 2\n")) << out;
  EXPECT_TRUE(Has(out, "lockd_renewals_total{result=\"refused\"} 1\n")) << out;
  // One family: its HELP and TYPE lines appear once.
  EXPECT_EQ(out.find("# TYPE lockd_renewals_total"), out.rfind("# TYPE lockd_renewals_total"));
  // The same labels give the same metric back.
  EXPECT_EQ(&ok, &r.AddCounter("lockd_renewals_total", "Renewals.", {{"result", "ok"}}));
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  MetricsRegistry r;
  auto& h = r.AddHistogram("lockd_x_seconds", "x.", {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.1);  // le is inclusive
  h.Observe(0.5);
  h.Observe(7);
  const std::string out = r.Render();
  EXPECT_TRUE(Has(out, "lockd_x_seconds_bucket{le=\"0.1\"} 2\n")) << out;
  EXPECT_TRUE(Has(out, "lockd_x_seconds_bucket{le=\"1\"} 3\n")) << out;
  EXPECT_TRUE(Has(out, "lockd_x_seconds_bucket{le=\"+Inf\"} 4\n")) << out;
  EXPECT_TRUE(Has(out, "lockd_x_seconds_count 4\n")) << out;
  EXPECT_TRUE(Has(out, "lockd_x_seconds_sum 7.65")) << out;
}

TEST(Metrics, CountersAreSafeAcrossThreads) {
  MetricsRegistry r;
  auto& c = r.AddCounter("lockd_c_total", "c.");
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) c.Increment();
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.Value(), 40000.0);
}

TEST(MetricsDeathTest, OneNameWithTwoTypesIsAProgrammingError) {
  MetricsRegistry r;
  r.AddCounter("lockd_y_total", "y.");
  EXPECT_DEATH(r.AddGauge("lockd_y_total", "y."), "two types");
}

}  // namespace
}  // namespace lockd::server
