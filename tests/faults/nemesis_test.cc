// Each nemesis does what it says, on a real 3-node cluster in network namespaces, seen through
// the client library (issue 17): partitions (leader isolated, minority, bridge, one-way), packet
// loss, proxy delay, a slow disk, a full disk, a wiped disk and its replacement, leadership
// transfer. Every fault is logged as the history checkers expect (nemesis.h).
#include "faults/nemesis/nemesis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "faults/faults_support.h"
#include "faults/nemesis/proxy.h"

namespace lockd::faults {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

/// Whether node `from`'s namespace can open a TCP connection to `addr` within a second.
bool Reaches(NetnsCluster& c, int from, const std::string& addr) {
  const auto colon = addr.rfind(':');
  auto r = c.network().RunIn(
      c.SlotOf(from), {"/usr/bin/timeout", "1", "/bin/bash", "-c",
                       "exec 3<>/dev/tcp/" + addr.substr(0, colon) + "/" + addr.substr(colon + 1)});
  return r.exit_code == 0;
}

std::string PeerAddr(NetnsCluster& c, int i) {
  return c.network().node_ip(c.SlotOf(i)) + ":" + std::to_string(kPeerPort);
}

struct Fixture {
  std::unique_ptr<testing::TempDir> dir = std::make_unique<testing::TempDir>();
  std::unique_ptr<NetnsCluster> cluster;
  std::unique_ptr<EventLog> log;
  std::unique_ptr<Nemesis> nemesis;
  int leader = -1;

  explicit Fixture(NetnsClusterOptions o = {}) {
    std::string error;
    cluster = NetnsCluster::Create(std::move(o), &error);
    EXPECT_NE(cluster, nullptr) << error;
    if (!cluster) return;
    log = std::make_unique<EventLog>(dir->path() + "/events.jsonl");
    nemesis = std::make_unique<Nemesis>(*cluster, *log);
    leader = cluster->WaitForLeader(30s);
    EXPECT_GE(leader, 0) << cluster->StatusSummary();
  }
  bool ok() const { return cluster && leader >= 0; }
  std::vector<int> Others(int i) const {
    std::vector<int> out;
    for (int j = 0; j < cluster->size(); ++j) {
      if (j != i && !cluster->retired(j)) out.push_back(j);
    }
    return out;
  }
  std::string Endpoints(const std::vector<int>& nodes) const {
    std::string s;
    for (int j : nodes) s += (s.empty() ? "" : ",") + cluster->client_addr(j);
    return s;
  }
};

TEST(Partition, AnIsolatedLeaderLosesLeadershipTheMajorityElectsAnotherAndHealingReunites) {
  LOCKD_REQUIRE_NETNS();
  NetnsClusterOptions o;
  o.election_min_ms = 1000;  // asserts who leads: no spurious election on a loaded machine
  Fixture f(o);
  ASSERT_TRUE(f.ok());
  NetnsCluster& c = *f.cluster;
  const int old = f.leader;
  const auto majority = f.Others(old);
  ASSERT_EQ(f.nemesis->Isolate(old), "");
  EXPECT_FALSE(Reaches(c, majority[0], PeerAddr(c, old)));
  EXPECT_TRUE(Reaches(c, majority[0], PeerAddr(c, majority[1])));

  // Right after the cut the majority still names the old leader until its election timeout:
  // wait until it agrees on one of its own.
  int fresh = -1;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        fresh = c.WaitForLeader(2s, majority);
        return fresh >= 0 && fresh != old;
      },
      20s));
  ASSERT_GE(fresh, 0) << c.StatusSummary();
  ASSERT_NE(fresh, old) << c.StatusSummary();
  auto majority_client = ConnectTo(f.Endpoints(majority));
  EXPECT_TRUE(CommitWithin(*majority_client, 20s).has_value()) << c.StatusSummary();
  // The isolated node cannot commit anything: it reaches no quorum.
  auto minority_client = ConnectTo(c.client_addr(old), 1s, 2);
  EXPECT_FALSE(CommitOnce(*minority_client).ok()) << "an isolated node committed";
  EXPECT_NE(c.LeaderSeenBy(old), old)
      << "the isolated node still calls itself leader: " << c.StatusSummary();

  f.nemesis->Heal();
  EXPECT_GE(c.WaitForLeader(20s), 0) << c.StatusSummary();
  EXPECT_TRUE(CommitWithin(*minority_client, 20s).has_value()) << "after healing";
  const auto events = f.log->Lines();
  ASSERT_GE(events.size(), 2u);
  EXPECT_NE(events.front().find("\"kind\":\"partition\""), std::string::npos) << events.front();
  EXPECT_NE(events.back().find("\"kind\":\"heal\""), std::string::npos) << events.back();
}

TEST(Partition, AMinorityCannotCommitABridgeAndAOneWayDropKeepAMajorityThatCan) {
  LOCKD_REQUIRE_NETNS();
  Fixture f;
  ASSERT_TRUE(f.ok());
  NetnsCluster& c = *f.cluster;
  const int follower = f.Others(f.leader)[0];
  auto all = ConnectTo(c.endpoints());

  // Minority / majority.
  ASSERT_EQ(f.nemesis->Split({{follower}, f.Others(follower)}), "");
  auto lonely = ConnectTo(c.client_addr(follower), 1s, 2);
  EXPECT_FALSE(CommitOnce(*lonely).ok()) << "the minority committed";
  auto majority = ConnectTo(f.Endpoints(f.Others(follower)));
  EXPECT_TRUE(CommitWithin(*majority, 20s).has_value()) << c.StatusSummary();
  f.nemesis->Heal();

  // Bridge: the follower sees both sides, the sides do not see each other.
  const auto sides = f.Others(follower);
  ASSERT_EQ(f.nemesis->Bridge({sides[0]}, follower, {sides[1]}), "");
  EXPECT_FALSE(Reaches(c, sides[0], PeerAddr(c, sides[1])));
  EXPECT_TRUE(Reaches(c, sides[0], PeerAddr(c, follower)));
  EXPECT_TRUE(Reaches(c, sides[1], PeerAddr(c, follower)));
  EXPECT_TRUE(CommitWithin(*all, 30s).has_value()) << "no commit across a bridge\n"
                                                   << c.StatusSummary();
  f.nemesis->Heal();

  // One-way: nothing from the leader reaches the follower (its replies would still flow).
  const int leader = c.WaitForLeader(20s);
  ASSERT_GE(leader, 0);
  const int target = f.Others(leader)[0];
  ASSERT_EQ(f.nemesis->DropOneWay(leader, target), "");
  EXPECT_FALSE(Reaches(c, leader, PeerAddr(c, target)));
  EXPECT_TRUE(CommitWithin(*all, 30s).has_value()) << c.StatusSummary();
  f.nemesis->Heal();
  EXPECT_TRUE(Reaches(c, leader, PeerAddr(c, target)));
  EXPECT_TRUE(CommitWithin(*lonely, 20s).has_value()) << "after healing";
}

TEST(Loss, ThirtyPercentLossOnEveryNodeStillCommits) {
  LOCKD_REQUIRE_NETNS();
  Fixture f;
  ASSERT_TRUE(f.ok());
  NetnsCluster& c = *f.cluster;
  for (int i = 0; i < c.size(); ++i) ASSERT_EQ(f.nemesis->Loss(i, 30), "");
  auto client = ConnectTo(c.endpoints());
  int committed = 0;
  const auto start = SteadyClock::now();
  while (committed < 3 && SteadyClock::now() - start < 60s) {
    if (CommitOnce(*client).ok()) ++committed;
  }
  EXPECT_EQ(committed, 3) << "under 30% loss in " << c.StatusSummary();
  // The rule really drops: count what a node's table dropped.
  auto rules = c.network().RunIn(0, {"/usr/sbin/nft", "list", "table", "inet", "lkf"});
  EXPECT_NE(rules.output.find("numgen random mod 100 < 30"), std::string::npos) << rules.output;
}

/// An echo server on 127.0.0.1 for the proxy's own test; returns the port.
int EchoServer(std::atomic<bool>& stop, std::thread& thread) {
  const int lfd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(lfd, 8);
  socklen_t len = sizeof a;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  thread = std::thread([lfd, &stop] {
    timeval tv{0, 100'000};
    setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!stop) {
      const int fd = accept(lfd, nullptr, nullptr);
      if (fd < 0) continue;
      timeval none{0, 0};  // accept's timeout is inherited: reads here wait as long as needed
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
      char buf[4096];
      for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) send(fd, buf, n, MSG_NOSIGNAL);
      close(fd);
    }
    close(lfd);
  });
  return ntohs(a.sin_port);
}

int Dial(const std::string& host_port) {
  const auto colon = host_port.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &a.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

TEST(Proxy, DelaysARoundTripByWhatItIsSetToAndKeepsAStreamsBytesInOrder) {
  // No namespaces needed: the proxy on loopback in front of an echo server.
  std::atomic<bool> stop{false};
  std::thread echo;
  const int port = EchoServer(stop, echo);
  PeerProxy proxy("127.0.0.1", {"127.0.0.1:" + std::to_string(port)});
  ASSERT_EQ(proxy.Start(), "");
  const int fd = Dial(proxy.listen_addr(0));
  auto round_trip = [&] {
    const auto t0 = SteadyClock::now();
    char b = 'x';
    EXPECT_EQ(send(fd, &b, 1, MSG_NOSIGNAL), 1);
    EXPECT_EQ(recv(fd, &b, 1, MSG_WAITALL), 1);
    return std::chrono::duration_cast<Ms>(SteadyClock::now() - t0);
  };
  const Ms fast = round_trip();
  proxy.SetDelay(100ms, 0ms);
  const Ms slow = round_trip();
  // Both directions are held: at least 2 x 100 ms; wide upper bound for a loaded machine.
  EXPECT_GE(slow, 200ms) << "fast " << fast.count() << " ms";
  EXPECT_LT(slow, 1500ms);
  // With jitter chunks are held for different times, yet one stream's bytes stay in order.
  proxy.SetDelay(1ms, 30ms);
  std::string sent, got;
  for (int k = 0; k < 200; ++k) {
    const std::string chunk = std::to_string(k) + ",";
    sent += chunk;
    ASSERT_EQ(send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(chunk.size()));
    std::this_thread::sleep_for(1ms);
  }
  got.resize(sent.size());
  ASSERT_EQ(recv(fd, got.data(), got.size(), MSG_WAITALL), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, sent);
  close(fd);
  // Finished links are reaped while the proxy runs (pump threads joined, fds closed): a soak
  // with thousands of reconnects must not run out of fds or threads.
  proxy.SetDelay(0ms, 0ms);
  for (int k = 0; k < 20; ++k) {
    const int c = Dial(proxy.listen_addr(0));
    char b = 'y';
    ASSERT_EQ(send(c, &b, 1, MSG_NOSIGNAL), 1);
    ASSERT_EQ(recv(c, &b, 1, MSG_WAITALL), 1);
    close(c);
  }
  EXPECT_TRUE(testing::WaitFor([&] { return proxy.live_links() == 0; }, 10s))
      << proxy.live_links() << " of " << proxy.connections() << " links still held";
  EXPECT_EQ(proxy.connections(), 21u);
  proxy.Stop();
  stop = true;
  echo.join();
}

TEST(Proxy, DelayOnThePeerLinksSlowsEveryCommitByARoundTrip) {
  LOCKD_REQUIRE_NETNS();
  NetnsClusterOptions o;
  o.peer_proxy = true;
  o.election_min_ms = 1500;  // the delayed heartbeats must not cause elections
  Fixture f(o);
  ASSERT_TRUE(f.ok());
  NetnsCluster& c = *f.cluster;
  auto client = ConnectTo(c.endpoints());
  auto timed = [&] {
    const auto t0 = SteadyClock::now();
    EXPECT_TRUE(CommitOnce(*client).ok());
    return std::chrono::duration_cast<Ms>(SteadyClock::now() - t0);
  };
  ASSERT_TRUE(CommitWithin(*client, 20s).has_value());
  const Ms fast = timed();
  ASSERT_EQ(f.nemesis->Delay(150ms, 0ms), "");
  const Ms slow = timed();
  // A commit needs leader -> follower -> leader (2 x 150 ms), twice per CommitOnce.
  EXPECT_GE(slow, 600ms) << "fast " << fast.count() << " ms";
  EXPECT_GT(c.proxy()->bytes_forwarded(), 0u);
  f.nemesis->Heal();
  EXPECT_LT(timed(), slow);
}

TEST(SlowDisk, TheKnobSlowsTheLeadersCommitsAndOffRestoresThem) {
  LOCKD_REQUIRE_NETNS();
  NetnsClusterOptions o;
  o.election_min_ms = 3000;  // a slow disk, not a failover
  Fixture f(o);
  ASSERT_TRUE(f.ok());
  NetnsCluster& c = *f.cluster;
  auto client = ConnectTo(c.endpoints(), 10s);
  ASSERT_TRUE(CommitWithin(*client, 20s).has_value());
  auto timed = [&] {
    const auto t0 = SteadyClock::now();
    EXPECT_TRUE(CommitOnce(*client).ok());
    return std::chrono::duration_cast<Ms>(SteadyClock::now() - t0);
  };
  const Ms fast = timed();
  // Every node slow: a commit needs a quorum's syncs, so one slow follower would not show.
  for (int i = 0; i < c.size(); ++i) f.nemesis->SlowDisk(i, 400ms);
  const Ms slow = timed();
  EXPECT_GE(slow, 800ms) << "two entries, each synced at >= 400 ms; fast " << fast.count();
  f.nemesis->Heal();
  const Ms again = timed();
  EXPECT_LT(again, slow);
}

TEST(DiskFull, TheNodeFailsStopLosesNothingAcknowledgedAndTheRestServe) {
  LOCKD_REQUIRE_NETNS();
  NetnsClusterOptions o;
  o.tmpfs_mb = {{2, 48}};
  Fixture f(o);
  ASSERT_TRUE(f.ok());
  NetnsCluster& c = *f.cluster;
  auto client = ConnectTo(c.endpoints());
  auto lease = client->GrantLease(30s, "before-full");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  auto held = client->Acquire("disk/full", *lease);
  ASSERT_TRUE(held.ok() && held->held());

  // Only the harness's own tmpfs may be filled: node 1's data dir is on the host's disk.
  EXPECT_NE(f.nemesis->FillDisk(0), "");
  EXPECT_FALSE(std::filesystem::exists(c.data_dir(0) + "/zz-nemesis-filler"));
  ASSERT_EQ(f.nemesis->FillDisk(2), "");
  // Writes reach node 3's full disk: it must stop, not acknowledge.
  std::optional<int> code;
  for (int k = 0; k < 200 && !code; ++k) {
    (void)CommitOnce(*client);  // failures expected while node 3 dies
    code = c.ExitCode(2, 10ms);
  }
  ASSERT_TRUE(code.has_value()) << "node 3 kept running on a full disk\n" << c.LogTail(2);
  EXPECT_EQ(*code, 70) << c.LogTail(2);
  std::ifstream log(c.log_path(2));
  const std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(text.find("storage failed, exiting"), std::string::npos) << c.LogTail(2);

  // The rest serve, and what was acknowledged before is still there.
  EXPECT_TRUE(CommitWithin(*client, 20s).has_value()) << c.StatusSummary();
  auto info = client->GetLock("disk/full");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  ASSERT_EQ(info->holders.size(), 1u);
  EXPECT_EQ(info->holders[0].token, held->token());

  // Freed and restarted, the node recovers and serves again.
  f.nemesis->Heal();
  auto alone = ConnectTo(c.client_addr(2), 3s, 4);
  EXPECT_TRUE(CommitWithin(*alone, 30s).has_value()) << c.LogTail(2);
}

TEST(WipedDisk, TheNodeIsRefusedThenReplacedThroughMembershipAndTheReplacementServes) {
  LOCKD_REQUIRE_NETNS();
  Fixture f;
  ASSERT_TRUE(f.ok());
  NetnsCluster& c = *f.cluster;
  const int victim = f.Others(f.leader)[0];
  f.nemesis->Wipe(victim);
  // Its peers refuse the node that forgot what it acknowledged.
  auto refused = [&] {
    for (int j : f.Others(victim)) {
      std::ifstream log(c.log_path(j));
      const std::string text((std::istreambuf_iterator<char>(log)), {});
      if (text.find("presents data dir incarnation") != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(testing::WaitFor(refused, 20s)) << c.LogTails(10);

  std::string error;
  const int fresh = f.nemesis->Replace(victim, 4, &error);
  ASSERT_GE(fresh, 0) << error << "\n" << c.LogTails(10);
  // The replacement is a voter and serves on its own endpoint.
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        v1::StatusResponse st;
        if (!c.Status(fresh, &st, 1s).ok()) return false;
        for (const auto& m : st.members()) {
          if (m.id() == 4 && m.role() != v1::Member::LEARNER) return true;
        }
        return false;
      },
      30s))
      << c.StatusSummary();
  auto alone = ConnectTo(c.client_addr(fresh));
  EXPECT_TRUE(CommitWithin(*alone, 20s).has_value()) << c.StatusSummary();
}

TEST(Membership, ALeadershipTransferMovesTheLeaderWhereAsked) {
  LOCKD_REQUIRE_NETNS();
  NetnsClusterOptions o;
  o.election_min_ms = 1000;  // asserts who leads: no spurious election on a loaded machine
  Fixture f(o);
  ASSERT_TRUE(f.ok());
  NetnsCluster& c = *f.cluster;
  const int to = f.Others(f.leader)[1];
  ASSERT_EQ(f.nemesis->TransferLeadership(to), "");
  EXPECT_TRUE(testing::WaitFor([&] { return c.WaitForLeader(2s) == to; }, 20s))
      << c.StatusSummary();
  auto client = ConnectTo(c.endpoints());
  EXPECT_TRUE(CommitWithin(*client, 20s).has_value());
}

}  // namespace
}  // namespace lockd::faults
