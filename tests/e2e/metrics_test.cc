// The operator's metrics and health endpoints on a real cluster (issue 16): /metrics parsed back
// by a real parser (Debian's python3-prometheus-client), each family checked to move when its
// event happens; /healthz is liveness, /readyz readiness with its reason.
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "cluster_harness.h"
#include "support/process.h"

namespace lockd::e2e {
namespace {

using namespace std::chrono_literals;

/// One scrape of node i, parsed by Debian's python3 (python3-prometheus-client; not whichever
/// python3 is first on PATH): sample ("name{label=value,...}") → value, and family → type.
struct Scrape {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  double operator[](const std::string& sample) const {
    auto it = samples.find(sample);
    return it == samples.end() ? -1 : it->second;
  }
};

Scrape ScrapeNode(Cluster& c, int i) {
  const std::string cmd = "/usr/bin/curl -sf http://" + c.http_addr(i) +
                          "/metrics | /usr/bin/python3 " + std::string(LOCKD_SOURCE_DIR) +
                          "/tests/e2e/parse_metrics.py";
  auto r = testing::RunCommand({"/bin/sh", "-c", cmd}, 20s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  Scrape s;
  std::istringstream in(r.output);
  std::string kind, name, value;
  while (in >> kind >> name >> value) {
    if (kind == "TYPE") s.types[name] = value;
    if (kind == "SAMPLE") s.samples[name] = std::stod(value);
  }
  return s;
}

/// GET path on node i: (HTTP status, body).
std::pair<int, std::string> Get(Cluster& c, int i, const std::string& path) {
  auto r = testing::RunCommand({"/usr/bin/curl", "-s", "-o", "/dev/stdout", "-w", " %{http_code}",
                                "http://" + c.http_addr(i) + path},
                               10s);
  const size_t sp = r.output.rfind(' ');
  if (sp == std::string::npos) return {0, r.output};
  return {std::atoi(r.output.c_str() + sp + 1), r.output.substr(0, sp)};
}

/// Waits until `sample` on node i satisfies `ok` (metrics follow the state within a watcher pass).
bool WaitSample(Cluster& c, int i, const std::string& sample, std::function<bool(double)> ok,
                std::chrono::milliseconds timeout = 10s) {
  return testing::WaitFor([&] { return ok(ScrapeNode(c, i)[sample]); }, timeout);
}

TEST(Metrics, EveryFamilyParsesAndMovesWithItsEvent) {
  Cluster cluster;
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  const int follower = cluster.OtherLiveNode(leader);
  Client client(cluster);
  CallOptions to_leader;
  to_leader.node = leader;
  to_leader.rotate = false;

  const Scrape before = ScrapeNode(cluster, leader);
  for (const auto& [family, type] : std::map<std::string, std::string>{
           {"lockd_acquire_duration_seconds", "histogram"},
           {"lockd_acquire_wait_seconds", "histogram"},
           {"lockd_fsync_duration_seconds", "histogram"},
           {"lockd_snapshot_duration_seconds", "histogram"},
           {"lockd_grants", "counter"},
           {"lockd_releases", "counter"},
           {"lockd_expiries", "counter"},
           {"lockd_waits", "counter"},
           {"lockd_cancels", "counter"},
           {"lockd_force_releases", "counter"},
           {"lockd_renewals", "counter"},
           {"lockd_forwarded_calls", "counter"},
           {"lockd_leader_changes", "counter"},
           {"lockd_peer_send_failures", "counter"},
           {"lockd_held_grants", "gauge"},
           {"lockd_leases", "gauge"},
           {"lockd_waiters", "gauge"},
           {"lockd_proposals_in_flight", "gauge"},
           {"lockd_raft_term", "gauge"},
           {"lockd_raft_commit_index", "gauge"},
           {"lockd_raft_applied_index", "gauge"},
           {"lockd_snapshot_bytes", "gauge"},
           {"lockd_peer_queue_bytes", "gauge"},
           {"lockd_token_counter", "gauge"},
       }) {
    auto it = before.types.find(family);
    ASSERT_NE(it, before.types.end()) << family << " is not exported";
    EXPECT_EQ(it->second, type) << family;
  }
  EXPECT_GE(before["lockd_leader_changes_total{}"], 1);
  EXPECT_GT(before["lockd_fsync_duration_seconds_count{}"], 0);
  for (int i = 0; i < cluster.size(); ++i) {
    if (i == leader) continue;
    EXPECT_EQ(before["lockd_peer_connected{peer=" + std::to_string(cluster.id(i)) + "}"], 1);
  }

  // A try-lock granted, one refused, a wait that times out: durations, waits, cancels.
  const uint64_t a = client.MustGrantLease(60'000, "a");
  const uint64_t b = client.MustGrantLease(60'000, "b");
  v1::AcquireResponse got;
  ASSERT_TRUE(client.Acquire("m/x", a, v1::EXCLUSIVE, 0, &got, to_leader).status.ok());
  ASSERT_TRUE(got.acquired());
  ASSERT_TRUE(client.Acquire("m/x", b, v1::EXCLUSIVE, 0, &got, to_leader).status.ok());
  ASSERT_FALSE(got.acquired());
  EXPECT_TRUE(WaitSample(
      cluster, leader, "lockd_held_grants{}", [](double v) { return v == 1; }, 10s));
  EXPECT_TRUE(WaitSample(
      cluster, leader, "lockd_leases{}", [](double v) { return v == 2; }, 10s));
  // While b waits, the leader shows one holder and one waiter. The wait outlasts the polling
  // bound by far: each scrape runs curl and python, slow on a loaded machine.
  std::thread waiter([&] {
    v1::AcquireResponse w;
    EXPECT_TRUE(client.Acquire("m/x", b, v1::EXCLUSIVE, 8000, &w, to_leader).status.ok());
    EXPECT_FALSE(w.acquired());
  });
  EXPECT_TRUE(WaitSample(
      cluster, leader, "lockd_waiters{}", [](double v) { return v == 1; }, 6s));
  waiter.join();
  // Renewals: one acknowledged, one for a lease that does not exist.
  v1::RenewResponse renewed;
  EXPECT_TRUE(client.Renew(a, 1, &renewed, to_leader).status.ok());
  EXPECT_EQ(client.Renew(987654321, 1, &renewed, to_leader).status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  // A forced release of a's grant.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::ForceReleaseRequest req;
    *req.mutable_header() = client.Begin();
    req.set_name("m/x");
    req.set_reason("metrics test");
    v1::ForceReleaseResponse resp;
    EXPECT_TRUE(cluster.cluster(leader).ForceRelease(&ctx, req, &resp).ok());
    client.End(req.header().id().seq());
  }
  // A release, and a lease left to expire with a grant (the shortest TTL).
  ASSERT_TRUE(client.Acquire("m/y", a, v1::EXCLUSIVE, 0, &got, to_leader).status.ok());
  EXPECT_TRUE(client.Release("m/y", a, got.token(), to_leader).status.ok());
  const uint64_t short_lived = client.MustGrantLease(2000, "expires");
  ASSERT_TRUE(client.Acquire("m/z", short_lived, v1::EXCLUSIVE, 0, &got, to_leader).status.ok());
  // A linearizable read sent to a follower is forwarded.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::GetLockRequest req;
    req.set_name("m/x");
    v1::GetLockResponse resp;
    EXPECT_TRUE(cluster.lock(follower).GetLock(&ctx, req, &resp).ok());
  }
  // A snapshot on demand.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    v1::SnapshotResponse resp;
    EXPECT_TRUE(cluster.cluster(leader).Snapshot(&ctx, v1::SnapshotRequest(), &resp).ok());
  }
  ASSERT_TRUE(WaitSample(
      cluster, leader, "lockd_expiries_total{}",
      [&](double v) { return v >= before["lockd_expiries_total{}"] + 1; }, 20s));

  // Gauges follow the state a watcher pass (20 ms) after the counters: wait for the last grant's
  // end to show before the final scrape.
  EXPECT_TRUE(WaitSample(
      cluster, leader, "lockd_held_grants{}", [](double v) { return v == 0; }, 10s));
  const Scrape after = ScrapeNode(cluster, leader);
  // The cluster is quiet but for this test: every counter moved by exactly its events (a double
  // count, e.g. of a retry or a replay, shows).
  auto moved = [&](const std::string& sample, double by) {
    EXPECT_EQ(after[sample] - std::max(0.0, before[sample]), by) << sample;
  };
  moved("lockd_acquire_duration_seconds_count{outcome=acquired}", 3);
  moved("lockd_acquire_duration_seconds_count{outcome=not_acquired}", 1);
  moved("lockd_acquire_wait_seconds_count{outcome=not_acquired}", 1);
  moved("lockd_grants_total{}", 3);
  moved("lockd_waits_total{}", 1);
  moved("lockd_cancels_total{}", 1);
  moved("lockd_force_releases_total{}", 1);
  moved("lockd_releases_total{}", 2);  // the forced one and the Release
  moved("lockd_expiries_total{}", 1);
  moved("lockd_renewals_total{result=ok}", 1);
  moved("lockd_renewals_total{result=refused}", 1);
  moved("lockd_snapshots_total{}", 1);
  moved("lockd_snapshot_duration_seconds_count{}", 1);
  EXPECT_GE(after["lockd_fsync_duration_seconds_count{}"] -
                before["lockd_fsync_duration_seconds_count{}"],
            5);
  EXPECT_GT(after["lockd_snapshot_bytes{}"], 0);
  EXPECT_GE(after["lockd_token_counter{}"], got.token());
  EXPECT_EQ(after["lockd_is_leader{}"], 1);
  EXPECT_GE(after["lockd_raft_term{}"], 1);
  EXPECT_GT(after["lockd_raft_applied_index{}"], before["lockd_raft_applied_index{}"]);
  EXPECT_GE(after["lockd_raft_cluster_commit_index{}"], after["lockd_raft_commit_index{}"]);
  EXPECT_EQ(after["lockd_held_grants{}"], 0);  // x force-released, y released, z expired
  EXPECT_EQ(after["lockd_waiters{}"], 0);
  // At least the GetLock above (the harness client's rotation may have sent it others).
  EXPECT_GE(ScrapeNode(cluster, follower)["lockd_forwarded_calls_total{}"], 1);

  // A restarted member does not count again the events it replays from its log: they were
  // counted by the process that applied them first.
  ASSERT_TRUE(cluster.Stop(follower).has_value());
  cluster.Start(follower);
  ASSERT_TRUE(
      testing::WaitFor([&] { return Get(cluster, follower, "/readyz").first == 200; }, 30s));
  EXPECT_EQ(ScrapeNode(cluster, follower)["lockd_grants_total{}"], 0);
  const uint64_t c = client.MustGrantLease(60'000, "c");
  ASSERT_TRUE(client.Acquire("m/after", c, v1::EXCLUSIVE, 0, &got, to_leader).status.ok());
  EXPECT_TRUE(WaitSample(
      cluster, follower, "lockd_grants_total{}", [](double v) { return v == 1; }, 10s));
}

// The Raft and peer families move with their events: toward a killed follower the leader queues
// bytes and drops messages (lockd_peer_queue_bytes, lockd_peer_send_failures_total); with no
// quorum a proposal stays in flight (lockd_proposals_in_flight) until a follower comes back; a
// leadership transfer raises the term and counts a leader change on every member.
TEST(Metrics, RaftAndPeerFamiliesMoveWithTheirEvents) {
  ClusterOptions o;
  // A leader without a quorum keeps leading for an election timeout at least: long enough for
  // a scrape (curl and python) to see its proposal in flight on a loaded machine.
  o.election_min_ms = 3000;
  Cluster cluster(o);
  const int leader = cluster.WaitForReady(60s);
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  const int dead = cluster.OtherLiveNode(leader);
  int other = -1;
  for (int i = 0; i < cluster.size(); ++i) {
    if (i != leader && i != dead) other = i;
  }
  Client client(cluster);
  CallOptions to_leader;
  to_leader.node = leader;
  to_leader.rotate = false;
  const std::string peer = "{peer=" + std::to_string(cluster.id(dead)) + "}";

  const Scrape before = ScrapeNode(cluster, leader);
  EXPECT_EQ(before["lockd_peer_queue_bytes" + peer], 0);
  EXPECT_EQ(before["lockd_proposals_in_flight{}"], 0);

  // A killed follower: what the leader sends it queues (up to the unreachable bound), then drops.
  cluster.Kill(dead);
  for (int n = 0; n < 40; ++n) {
    v1::GrantLeaseResponse g;
    ASSERT_TRUE(client.GrantLease(60'000, &g, "peer-traffic", to_leader).status.ok());
  }
  EXPECT_TRUE(WaitSample(
      cluster, leader, "lockd_peer_queue_bytes" + peer, [](double v) { return v > 0; }, 20s));
  EXPECT_TRUE(WaitSample(
      cluster, leader, "lockd_peer_send_failures_total" + peer,
      [&](double v) { return v > std::max(0.0, before["lockd_peer_send_failures_total" + peer]); },
      20s));
  EXPECT_EQ(ScrapeNode(cluster, leader)["lockd_peer_connected" + peer], 0);

  // No quorum (the other follower paused too): a proposal waits in flight, and commits once the
  // follower resumes.
  cluster.Pause(other);
  std::thread proposer([&] {
    CallOptions once = to_leader;
    once.deadline = 20s;
    once.attempt = 20s;
    v1::GrantLeaseResponse g;
    EXPECT_TRUE(client.GrantLease(60'000, &g, "in-flight", once).status.ok());
  });
  EXPECT_TRUE(WaitSample(
      cluster, leader, "lockd_proposals_in_flight{}", [](double v) { return v >= 1; }, 5s));
  cluster.Resume(other);
  proposer.join();
  EXPECT_TRUE(WaitSample(
      cluster, leader, "lockd_proposals_in_flight{}", [](double v) { return v == 0; }, 10s));

  // A leadership transfer to the other follower: a new term, a leader change seen by both.
  const Scrape at_other = ScrapeNode(cluster, other);
  const Scrape at_leader = ScrapeNode(cluster, leader);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    v1::TransferLeadershipRequest req;
    req.set_to(cluster.id(other));
    v1::TransferLeadershipResponse resp;
    ASSERT_TRUE(cluster.cluster(leader).TransferLeadership(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.leader_id(), cluster.id(other));
  }
  EXPECT_TRUE(WaitSample(
      cluster, other, "lockd_is_leader{}", [](double v) { return v == 1; }, 10s));
  const Scrape after = ScrapeNode(cluster, other);
  EXPECT_GT(after["lockd_raft_term{}"], at_other["lockd_raft_term{}"]);
  EXPECT_GT(after["lockd_leader_changes_total{}"], at_other["lockd_leader_changes_total{}"]);
  EXPECT_TRUE(WaitSample(
      cluster, leader, "lockd_leader_changes_total{}",
      [&](double v) { return v > at_leader["lockd_leader_changes_total{}"]; }, 10s));
  EXPECT_EQ(ScrapeNode(cluster, leader)["lockd_raft_term{}"], after["lockd_raft_term{}"]);
}

TEST(Metrics, HealthzIsLivenessAndReadyzNamesWhyANodeIsNotReady) {
  Cluster cluster;
  const int leader = cluster.WaitForReady();
  ASSERT_GE(leader, 0) << cluster.StatusSummary();
  for (int i = 0; i < cluster.size(); ++i) {
    ASSERT_TRUE(testing::WaitFor([&] { return Get(cluster, i, "/readyz").first == 200; }, 10s));
    EXPECT_EQ(Get(cluster, i, "/readyz").second, "READY\n");
    EXPECT_EQ(Get(cluster, i, "/healthz"), std::make_pair(200, std::string("OK\n")));
  }
  // Without a quorum the last node is alive but not ready, and says why.
  const int survivor = cluster.OtherLiveNode(leader);
  for (int i = 0; i < cluster.size(); ++i) {
    if (i != survivor) cluster.Stop(i);
  }
  std::pair<int, std::string> ready;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        ready = Get(cluster, survivor, "/readyz");
        return ready.first == 503;
      },
      20s))
      << ready.second;
  EXPECT_NE(ready.second.find("NOT_READY: no leader known"), std::string::npos) << ready.second;
  EXPECT_EQ(Get(cluster, survivor, "/healthz").first, 200);
  EXPECT_EQ(ScrapeNode(cluster, survivor)["lockd_up{}"], 0);
}

}  // namespace
}  // namespace lockd::e2e
