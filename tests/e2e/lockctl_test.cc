// lockctl against a real 3-node cluster (issue 7, "Tests for the lockctl commands, --json parsed
// back"): the real `lockctl` binary runs as a child process with its stdout and stderr captured,
// and what it prints with --json is parsed back into the proto's messages (protobuf's JSON
// mapping) and compared with what the cluster says through the API. Covered: status, locks
// list/get, leases list/get, acquire (holding and renewing past several TTLs until SIGINT, --wait
// behind a holder, --shared, a try-lock that fails), release (right and wrong token), the tables,
// how endpoints are given, and bad input.
//
// Every lockctl a test starts is killed and reaped by its LockctlProcess's destructor, and every
// run is bounded by a timeout. Timing rule: orderings and wide bounds only (the machine is small
// and shared); leases that are not about renewal get long TTLs.
#include "e2e/lockctl_fixture.h"

namespace lockd::e2e {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

// ------------------------------------------------------------------------------------------
// status
// ------------------------------------------------------------------------------------------

TEST_F(LockctlOnCluster, StatusJsonShowsThreeMembersAndTheLeaderTheHarnessSees) {
  const int leader = cluster().WaitForLeader();
  ASSERT_GE(leader, 0);
  auto r = Run({"status"}, true);
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.err, "");
  auto s = Parse<v1::StatusResponse>(r.out);
  EXPECT_EQ(s.leader_id(), cluster().id(leader)) << r.out;
  ASSERT_EQ(s.members_size(), 3) << r.out;
  std::vector<uint64_t> ids;
  int leaders = 0;
  for (const auto& m : s.members()) {
    ids.push_back(m.id());
    const int i = cluster().IndexOf(m.id());
    ASSERT_GE(i, 0) << "unknown member " << m.id();
    EXPECT_EQ(m.client_addr(), cluster().client_addr(i));
    EXPECT_EQ(m.peer_addr(), cluster().peer_addr(i));
    if (m.role() == v1::Member::LEADER) {
      ++leaders;
      EXPECT_EQ(m.id(), s.leader_id());
    }
  }
  EXPECT_THAT(ids, UnorderedElementsAre(1, 2, 3));
  EXPECT_EQ(leaders, 1) << r.out;
  EXPECT_NE(cluster().IndexOf(s.node_id()), -1);
  EXPECT_GT(s.term(), 0u);
  EXPECT_GE(s.commit_index(), s.applied_index());
  EXPECT_GT(s.commit_index(), 0u);
  // The same cluster the harness talks to.
  v1::StatusResponse direct;
  ASSERT_TRUE(cluster().Status(leader, &direct).ok());
  EXPECT_EQ(s.cluster_id(), direct.cluster_id());
  EXPECT_FALSE(s.cluster_id().empty());
}

TEST_F(LockctlOnCluster, StatusTableNamesEveryMemberAndTheLeader) {
  const int leader = cluster().WaitForLeader();
  ASSERT_GE(leader, 0);
  auto r = Run({"status"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("leader " + std::to_string(cluster().id(leader))));
  EXPECT_THAT(r.out, HasSubstr("ROLE"));
  for (int i = 0; i < cluster().size(); ++i) {
    EXPECT_THAT(r.out, HasSubstr(cluster().client_addr(i))) << r;
  }
  EXPECT_THAT(r.out, HasSubstr("leader"));
  EXPECT_THAT(r.out, HasSubstr("follower"));
}

TEST_F(LockctlOnCluster, EndpointsComeFromTheEnvironmentAndADeadOneIsSkipped) {
  const std::string dead = "127.0.0.1:" + std::to_string(testing::FreePorts(1)[0]);
  // No --endpoints: $LOCKD_ENDPOINTS, whose first entry answers nothing.
  auto r = RunLockctl({"--json", "--timeout-ms", "3000", "status"}, 60s, dead + "," + Endpoints());
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(Parse<v1::StatusResponse>(r.out).members_size(), 3);

  // Only the dead one: UNAVAILABLE, exit 4.
  auto down = RunLockctl({"--timeout-ms", "2000", "status"}, 60s, dead);
  EXPECT_EQ(down.code, 4) << down;
  EXPECT_THAT(down.err, HasSubstr("UNAVAILABLE"));

  // A malformed endpoint: bad arguments, exit 2, naming it.
  auto bad = RunLockctl({"--endpoints", "no-port-here", "status"});
  EXPECT_EQ(bad.code, 2) << bad;
  EXPECT_THAT(bad.err, HasSubstr("endpoint"));
}

// ------------------------------------------------------------------------------------------
// locks get / locks list
// ------------------------------------------------------------------------------------------

TEST_F(LockctlOnCluster, LocksGetJsonShowsTheHolderAndTheWaitersInOrder) {
  const auto held = Hold("cli/get/x", "e2e-holder");
  const uint64_t w1 = client().MustGrantLease(kLongTtl, "e2e-waiter-1");
  const uint64_t w2 = client().MustGrantLease(kLongTtl, "e2e-waiter-2");
  leases_.insert(leases_.end(), {w1, w2});
  CallOptions o;
  o.deadline = 90s;
  auto first = StartAcquire(client(), "cli/get/x", w1, kEx, 60'000, o);
  ASSERT_TRUE(WaitForWaiters(client(), "cli/get/x", 1));
  auto second = StartAcquire(client(), "cli/get/x", w2, kSh, 60'000, o);
  ASSERT_TRUE(WaitForWaiters(client(), "cli/get/x", 2));

  auto r = Run({"locks", "get", "cli/get/x"}, true);
  ASSERT_EQ(r.code, 0) << r;
  auto lock = Parse<v1::LockInfo>(r.out);
  EXPECT_EQ(lock.name(), "cli/get/x");
  ASSERT_EQ(lock.holders_size(), 1) << r.out;
  const auto& h = lock.holders(0);
  EXPECT_EQ(h.lease_id(), held.lease_id());
  EXPECT_EQ(h.lease_label(), "e2e-holder");
  EXPECT_EQ(h.token(), held.token());
  EXPECT_EQ(h.fence(), held.fence());
  EXPECT_EQ(h.mode(), kEx);
  EXPECT_GT(h.lease_remaining_ms(), 0u) << "a linearizable read answers the leader's time left";
  EXPECT_LE(h.lease_remaining_ms(), kLongTtl);
  ASSERT_EQ(lock.waiters_size(), 2) << r.out;
  EXPECT_EQ(lock.waiters(0).lease_id(), w1);
  EXPECT_EQ(lock.waiters(0).lease_label(), "e2e-waiter-1");
  EXPECT_EQ(lock.waiters(0).mode(), kEx);
  EXPECT_EQ(lock.waiters(0).wait_ms(), 60'000u);
  EXPECT_EQ(lock.waiters(1).lease_id(), w2);
  EXPECT_EQ(lock.waiters(1).mode(), kSh);

  // The table: the holder's lease, label and token, then the waiters in order.
  auto t = Run({"locks", "get", "cli/get/x"});
  ASSERT_EQ(t.code, 0) << t;
  EXPECT_THAT(t.out, HasSubstr("lock cli/get/x"));
  EXPECT_THAT(t.out, HasSubstr("HOLDER LEASE"));
  EXPECT_THAT(t.out, HasSubstr(std::to_string(held.token())));
  EXPECT_THAT(t.out, HasSubstr("e2e-holder"));
  EXPECT_THAT(t.out, HasSubstr("exclusive"));
  const auto p1 = t.out.find("e2e-waiter-1"), p2 = t.out.find("e2e-waiter-2");
  ASSERT_NE(p1, std::string::npos) << t.out;
  ASSERT_NE(p2, std::string::npos) << t.out;
  EXPECT_LT(t.out.find("e2e-holder"), p1);
  EXPECT_LT(p1, p2);

  // Let the waits end: revoking the holder hands the lock to waiter 1.
  ASSERT_TRUE(client().Revoke(held.lease_id()).status.ok());
  auto g1 = first.Get(30s);
  EXPECT_TRUE(g1.resp.acquired()) << Describe(g1.info.status);
  ASSERT_TRUE(client().Revoke(w1).status.ok());
  auto g2 = second.Get(30s);
  EXPECT_TRUE(g2.resp.acquired()) << Describe(g2.info.status);
}

TEST_F(LockctlOnCluster, LocksGetOfAFreeLockSaysFree) {
  auto r = Run({"locks", "get", "cli/get/nobody"}, true);
  ASSERT_EQ(r.code, 0) << r;
  auto lock = Parse<v1::LockInfo>(r.out);
  EXPECT_EQ(lock.name(), "cli/get/nobody");
  EXPECT_EQ(lock.holders_size(), 0);
  EXPECT_EQ(lock.waiters_size(), 0);
  auto t = Run({"locks", "get", "cli/get/nobody"});
  ASSERT_EQ(t.code, 0) << t;
  EXPECT_THAT(t.out, HasSubstr("free"));
}

TEST_F(LockctlOnCluster, LocksListShowsExactlyTheNamesUnderThePrefix) {
  Hold("cli/list/a", "e2e-list");
  Hold("cli/list/b", "e2e-list", kSh);
  Hold("cli/list/c/d", "e2e-list");
  Hold("cli/listx", "e2e-list");  // shares the characters, not the prefix "cli/list/"
  Hold("cli/lis", "e2e-list");    // shorter than the prefix
  Hold("other/cli/list/a", "e2e-list");

  auto r = Run({"locks", "list", "cli/list/"}, true);
  ASSERT_EQ(r.code, 0) << r;
  auto page = Parse<v1::ListLocksResponse>(r.out);
  std::vector<std::string> names;
  for (const auto& l : page.locks()) names.push_back(l.name());
  EXPECT_THAT(names, ElementsAre("cli/list/a", "cli/list/b", "cli/list/c/d")) << r.out;
  EXPECT_EQ(page.next_page_token(), "");
  ASSERT_EQ(page.locks_size(), 3);
  EXPECT_EQ(page.locks(1).holders_size(), 1);
  EXPECT_EQ(page.locks(1).holders(0).mode(), kSh);

  // No prefix: every lock, this test's included.
  auto all = Run({"locks", "list"}, true);
  ASSERT_EQ(all.code, 0) << all;
  std::vector<std::string> every;
  const auto all_page = Parse<v1::ListLocksResponse>(all.out);
  for (const auto& l : all_page.locks()) every.push_back(l.name());
  for (const char* n : {"cli/list/a", "cli/listx", "cli/lis", "other/cli/list/a"}) {
    EXPECT_NE(std::find(every.begin(), every.end(), n), every.end()) << n;
  }

  // The table: the names under the prefix and no other.
  auto t = Run({"locks", "list", "cli/list/"});
  ASSERT_EQ(t.code, 0) << t;
  EXPECT_THAT(t.out, HasSubstr("NAME"));
  EXPECT_THAT(t.out, HasSubstr("cli/list/a"));
  EXPECT_THAT(t.out, HasSubstr("cli/list/c/d"));
  EXPECT_THAT(t.out, HasSubstr("shared"));
  EXPECT_THAT(t.out, Not(HasSubstr("cli/listx")));
  EXPECT_THAT(t.out, Not(HasSubstr("other/")));

  // A prefix nothing has: an empty list.
  auto none = Run({"locks", "list", "cli/list/nothing-here/"}, true);
  ASSERT_EQ(none.code, 0) << none;
  EXPECT_EQ(Parse<v1::ListLocksResponse>(none.out).locks_size(), 0) << none.out;
}

// ------------------------------------------------------------------------------------------
// leases get / leases list
// ------------------------------------------------------------------------------------------

TEST_F(LockctlOnCluster, LeasesGetShowsTheTtlAndWhatTheLeaseHoldsAndAwaits) {
  const uint64_t lease = client().MustGrantLease(30'000, "e2e-lease-get");
  leases_.push_back(lease);
  for (const char* n : {"cli/lease/one", "cli/lease/two"}) {
    v1::AcquireResponse a;
    ASSERT_TRUE(client().Acquire(n, lease, kEx, 0, &a).status.ok());
    ASSERT_TRUE(a.acquired());
  }
  Hold("cli/lease/busy", "e2e-lease-other");
  CallOptions o;
  o.deadline = 90s;
  auto wait = StartAcquire(client(), "cli/lease/busy", lease, kEx, 60'000, o);
  ASSERT_TRUE(WaitForWaiters(client(), "cli/lease/busy", 1));

  auto r = Run({"leases", "get", std::to_string(lease)}, true);
  ASSERT_EQ(r.code, 0) << r;
  auto l = Parse<v1::LeaseInfo>(r.out);
  EXPECT_EQ(l.lease_id(), lease);
  EXPECT_EQ(l.label(), "e2e-lease-get");
  EXPECT_EQ(l.ttl_ms(), 30'000u);
  EXPECT_GT(l.remaining_ms(), 0u);
  EXPECT_LE(l.remaining_ms(), 30'000u);
  EXPECT_THAT(std::vector<std::string>(l.held().begin(), l.held().end()),
              UnorderedElementsAre("cli/lease/one", "cli/lease/two"));
  EXPECT_THAT(std::vector<std::string>(l.waiting().begin(), l.waiting().end()),
              ElementsAre("cli/lease/busy"));

  auto t = Run({"leases", "get", std::to_string(lease)});
  ASSERT_EQ(t.code, 0) << t;
  EXPECT_THAT(t.out, HasSubstr("lease " + std::to_string(lease)));
  EXPECT_THAT(t.out, HasSubstr("e2e-lease-get"));
  EXPECT_THAT(t.out, HasSubstr("ttl 30.0s"));
  EXPECT_THAT(t.out, HasSubstr("holds   cli/lease/one"));
  EXPECT_THAT(t.out, HasSubstr("waits   cli/lease/busy"));

  // leases list has it, with the same label and TTL.
  auto list = Run({"leases", "list"}, true);
  ASSERT_EQ(list.code, 0) << list;
  auto page = Parse<v1::ListLeasesResponse>(list.out);
  bool found = false;
  for (const auto& x : page.leases()) {
    if (x.lease_id() != lease) continue;
    found = true;
    EXPECT_EQ(x.label(), "e2e-lease-get");
    EXPECT_EQ(x.ttl_ms(), 30'000u);
    EXPECT_EQ(x.held_size(), 2);
    EXPECT_EQ(x.waiting_size(), 1);
  }
  EXPECT_TRUE(found) << "lease " << lease << " not listed:\n" << list.out;
  auto lt = Run({"leases", "list"});
  ASSERT_EQ(lt.code, 0) << lt;
  EXPECT_THAT(lt.out, HasSubstr("LEASE"));
  EXPECT_THAT(lt.out, HasSubstr("e2e-lease-get"));
  EXPECT_THAT(lt.out, HasSubstr(std::to_string(lease)));

  // Revoked: its wait ends, and lockctl says the lease is unknown.
  ASSERT_TRUE(client().Revoke(lease).status.ok());
  auto w = wait.Get(30s);
  EXPECT_FALSE(w.resp.acquired());
  auto gone = Run({"leases", "get", std::to_string(lease)}, true);
  EXPECT_EQ(gone.code, 1) << gone;
  EXPECT_THAT(gone.err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(gone.out, "");
}

// ------------------------------------------------------------------------------------------
// acquire
// ------------------------------------------------------------------------------------------

TEST_F(LockctlOnCluster, AcquireHoldsAndRenewsPastSeveralTtlsThenReleasesOnSigint) {
  constexpr uint64_t kTtl = 3000;
  auto p = Start(
      {"acquire", "cli/hold/x", "--ttl", std::to_string(kTtl), "--label", "e2e-cli-hold"}, true);
  const std::string line = p->WaitFirstLine(30s);
  ASSERT_FALSE(line.empty()) << "no grant printed; stderr:\n" << p->err();
  auto g = Parse<google::protobuf::Struct>(line);
  EXPECT_EQ(Field(g, "acquired"), "true") << line;
  EXPECT_EQ(Field(g, "name"), "cli/hold/x");
  const uint64_t lease = U64(Field(g, "lease_id")), token = U64(Field(g, "token"));
  ASSERT_GT(lease, 0u) << line;
  ASSERT_GT(token, 0u) << line;
  EXPECT_EQ(U64(Field(g, "fence")), token);

  // The cluster agrees: that lease holds it with that token and the label.
  auto lock = client().MustGetLock("cli/hold/x");
  ASSERT_EQ(lock.holders_size(), 1) << ToString(lock);
  EXPECT_EQ(lock.holders(0).lease_id(), lease);
  EXPECT_EQ(lock.holders(0).token(), token);
  EXPECT_EQ(lock.holders(0).lease_label(), "e2e-cli-hold");
  v1::GetLeaseResponse le;
  ASSERT_TRUE(client().GetLease(lease, &le).status.ok());
  EXPECT_EQ(le.lease().ttl_ms(), kTtl);

  // Still held by the same grant past more than three TTLs: lockctl renews.
  const auto until = Clock::now() + Ms(3 * kTtl + 1500);
  int checks = 0;
  while (Clock::now() < until) {
    std::this_thread::sleep_for(500ms);
    ASSERT_TRUE(p->running()) << "lockctl exited early; stderr:\n" << p->err();
    auto l = client().MustGetLock("cli/hold/x");
    ASSERT_EQ(l.holders_size(), 1) << ToString(l);
    ASSERT_EQ(l.holders(0).token(), token);
    ++checks;
  }
  EXPECT_GE(checks, 4);
  v1::GetLeaseResponse still;
  ASSERT_TRUE(client().GetLease(lease, &still).status.ok()) << "the lease expired";

  // A try-lock by someone else fails meanwhile.
  const uint64_t other = client().MustGrantLease(kLongTtl, "e2e-other");
  leases_.push_back(other);
  v1::AcquireResponse a;
  ASSERT_TRUE(client().Acquire("cli/hold/x", other, kEx, 0, &a).status.ok());
  EXPECT_FALSE(a.acquired());

  // Ctrl-C: exit 0; the lock is free and the lease revoked.
  p->Signal(SIGINT);
  auto code = p->Wait(30s);
  ASSERT_TRUE(code.has_value()) << "lockctl did not exit within 30 s of SIGINT";
  EXPECT_EQ(*code, 0) << p->err();
  EXPECT_EQ(client().MustGetLock("cli/hold/x").holders_size(), 0);
  v1::GetLeaseResponse after;
  EXPECT_EQ(client().GetLease(lease, &after).status.error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(client().Acquire("cli/hold/x", other, kEx, 0, &a).status.ok());
  EXPECT_TRUE(a.acquired());
}

TEST_F(LockctlOnCluster, AcquireExitsSixWhenItsLeaseIsLost) {
  auto p = Start({"acquire", "cli/hold/lost", "--ttl", "3000"}, true);
  const std::string line = p->WaitFirstLine(30s);
  ASSERT_FALSE(line.empty()) << p->err();
  const uint64_t lease = U64(Field(Parse<google::protobuf::Struct>(line), "lease_id"));
  ASSERT_GT(lease, 0u) << line;
  // Someone else ends the lease (as ForceRelease or an expiry would): lockctl's next renewal is
  // NOT_FOUND, and it stops holding with exit 6.
  ASSERT_TRUE(client().Revoke(lease).status.ok());
  auto code = p->Wait(30s);
  ASSERT_TRUE(code.has_value()) << "lockctl kept holding a lock whose lease is gone";
  EXPECT_EQ(*code, 6) << p->err();
  EXPECT_THAT(p->err(), HasSubstr("lost cli/hold/lost"));
  EXPECT_EQ(client().MustGetLock("cli/hold/lost").holders_size(), 0);
}

TEST_F(LockctlOnCluster, AcquireTableSaysWhatItHoldsAndThatItReleased) {
  auto p = Start({"acquire", "cli/hold/table", "--ttl", "10000"});
  const std::string line = p->WaitFirstLine(30s);
  ASSERT_THAT(line, HasSubstr("acquired cli/hold/table (exclusive)")) << p->err();
  auto lock = client().MustGetLock("cli/hold/table");
  ASSERT_EQ(lock.holders_size(), 1);
  EXPECT_THAT(line, HasSubstr("lease " + std::to_string(lock.holders(0).lease_id())));
  EXPECT_THAT(line, HasSubstr("token " + std::to_string(lock.holders(0).token())));
  // The default label names lockctl and its pid.
  EXPECT_THAT(lock.holders(0).lease_label(), HasSubstr("lockctl@"));
  p->Signal(SIGINT);
  auto code = p->Wait(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << p->err();
  EXPECT_THAT(p->out(), HasSubstr("released cli/hold/table"));
  EXPECT_EQ(client().MustGetLock("cli/hold/table").holders_size(), 0);
}

TEST_F(LockctlOnCluster, AcquireWaitQueuesBehindTheHolderAndIsGrantedWhenItReleases) {
  const auto held = Hold("cli/wait/x", "e2e-first");
  auto p = Start(
      {"acquire", "cli/wait/x", "--wait", "60000", "--ttl", "10000", "--label", "e2e-cli-waiter"},
      true);
  ASSERT_TRUE(WaitLock("cli/wait/x", [](const v1::LockInfo& l) {
    return l.waiters_size() == 1 && l.waiters(0).lease_label() == "e2e-cli-waiter";
  })) << ToString(client().MustGetLock("cli/wait/x"));
  EXPECT_TRUE(p->running());
  EXPECT_EQ(p->out(), "") << "granted while the lock was held";

  ASSERT_TRUE(client().Release("cli/wait/x", held.lease_id(), held.token()).status.ok());
  const std::string line = p->WaitFirstLine(30s);
  ASSERT_FALSE(line.empty()) << p->err();
  auto g = Parse<google::protobuf::Struct>(line);
  EXPECT_EQ(Field(g, "acquired"), "true");
  const uint64_t token = U64(Field(g, "token"));
  EXPECT_GT(token, held.token()) << "a later grant has a larger token";
  auto lock = client().MustGetLock("cli/wait/x");
  ASSERT_EQ(lock.holders_size(), 1) << ToString(lock);
  EXPECT_EQ(lock.holders(0).lease_label(), "e2e-cli-waiter");
  EXPECT_EQ(lock.holders(0).token(), token);
  EXPECT_EQ(lock.waiters_size(), 0);

  p->Signal(SIGINT);
  auto code = p->Wait(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << p->err();
  EXPECT_EQ(client().MustGetLock("cli/wait/x").holders_size(), 0);
}

TEST_F(LockctlOnCluster, CtrlCWhileWaitingGivesUpTheWaitAndLeavesTheHolderAlone) {
  const auto held = Hold("cli/wait/int", "e2e-int-holder");
  auto p = Start(
      {"acquire", "cli/wait/int", "--wait", "600000", "--ttl", "10000", "--label", "e2e-cli-int"},
      true);
  ASSERT_TRUE(WaitLock("cli/wait/int", [](const v1::LockInfo& l) {
    return l.waiters_size() == 1 && l.waiters(0).lease_label() == "e2e-cli-int";
  })) << ToString(client().MustGetLock("cli/wait/int"));

  // Ctrl-C ends it long before its 10-minute wait would.
  p->Signal(SIGINT);
  auto code = p->Wait(30s);
  ASSERT_TRUE(code.has_value()) << "lockctl kept waiting after SIGINT";
  EXPECT_EQ(*code, 128 + SIGINT) << p->err();
  EXPECT_THAT(p->err(), HasSubstr("interrupted"));
  EXPECT_EQ(p->out(), "");
  auto lock = client().MustGetLock("cli/wait/int");
  ASSERT_EQ(lock.holders_size(), 1) << ToString(lock);
  EXPECT_EQ(lock.holders(0).token(), held.token());
  EXPECT_EQ(lock.waiters_size(), 0) << ToString(lock);
  EXPECT_THAT(LeaseLabels(), Not(::testing::Contains("e2e-cli-int")));
}

TEST_F(LockctlOnCluster, AcquireJsonQuotesANameWithQuotesAndBackslashes) {
  const std::string name = "cli/quote/\"a\\b\"";
  auto p = Start({"acquire", name, "--ttl", "10000"}, true);
  const std::string line = p->WaitFirstLine(30s);
  ASSERT_FALSE(line.empty()) << p->err();
  auto g = Parse<google::protobuf::Struct>(line);
  EXPECT_EQ(Field(g, "name"), name) << line;
  auto lock = client().MustGetLock(name);
  ASSERT_EQ(lock.holders_size(), 1) << ToString(lock);
  EXPECT_EQ(U64(Field(g, "token")), lock.holders(0).token());
  p->Signal(SIGINT);
  auto code = p->Wait(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << p->err();
  EXPECT_EQ(client().MustGetLock(name).holders_size(), 0);
}

TEST_F(LockctlOnCluster, ATryLockOnAHeldLockExitsOneAndLeavesNoLease) {
  Hold("cli/try/x", "e2e-try-holder");
  auto r = Run({"acquire", "cli/try/x", "--ttl", "10000", "--label", "e2e-cli-try"}, true);
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_EQ(Field(Parse<google::protobuf::Struct>(r.out), "acquired"), "false") << r.out;
  auto t = Run({"acquire", "cli/try/x", "--ttl", "10000", "--label", "e2e-cli-try"});
  EXPECT_EQ(t.code, 1) << t;
  EXPECT_THAT(t.out, HasSubstr("not acquired"));
  // lockctl revoked the lease it granted for the try.
  EXPECT_THAT(LeaseLabels(), Not(::testing::Contains("e2e-cli-try")));
  auto lock = client().MustGetLock("cli/try/x");
  ASSERT_EQ(lock.holders_size(), 1);
  EXPECT_EQ(lock.holders(0).lease_label(), "e2e-try-holder");
}

TEST_F(LockctlOnCluster, AcquireSharedGivesSharedHoldsWithOneFence) {
  auto a =
      Start({"acquire", "cli/shared/x", "--shared", "--ttl", "10000", "--label", "e2e-sh-a"}, true);
  const std::string la = a->WaitFirstLine(30s);
  ASSERT_FALSE(la.empty()) << a->err();
  auto b =
      Start({"acquire", "cli/shared/x", "--shared", "--ttl", "10000", "--label", "e2e-sh-b"}, true);
  const std::string lb = b->WaitFirstLine(30s);
  ASSERT_FALSE(lb.empty()) << b->err();
  auto ga = Parse<google::protobuf::Struct>(la), gb = Parse<google::protobuf::Struct>(lb);
  EXPECT_EQ(Field(ga, "acquired"), "true");
  EXPECT_EQ(Field(gb, "acquired"), "true");
  EXPECT_LT(U64(Field(ga, "token")), U64(Field(gb, "token")));
  EXPECT_EQ(U64(Field(gb, "fence")), U64(Field(ga, "token"))) << "one run of shared holders";

  auto lock = client().MustGetLock("cli/shared/x");
  ASSERT_EQ(lock.holders_size(), 2) << ToString(lock);
  std::vector<std::string> labels;
  for (const auto& h : lock.holders()) {
    EXPECT_EQ(h.mode(), kSh);
    labels.push_back(h.lease_label());
  }
  EXPECT_THAT(labels, UnorderedElementsAre("e2e-sh-a", "e2e-sh-b"));
  auto t = Run({"locks", "get", "cli/shared/x"});
  EXPECT_THAT(t.out, HasSubstr("shared"));

  // An exclusive try-lock fails while they hold.
  const uint64_t ex = client().MustGrantLease(kLongTtl, "e2e-ex");
  leases_.push_back(ex);
  v1::AcquireResponse r;
  ASSERT_TRUE(client().Acquire("cli/shared/x", ex, kEx, 0, &r).status.ok());
  EXPECT_FALSE(r.acquired());

  a->Signal(SIGINT);
  auto ca = a->Wait(30s);
  ASSERT_TRUE(ca.has_value());
  EXPECT_EQ(*ca, 0) << a->err();
  lock = client().MustGetLock("cli/shared/x");
  ASSERT_EQ(lock.holders_size(), 1) << ToString(lock);
  EXPECT_EQ(lock.holders(0).lease_label(), "e2e-sh-b");
  b->Signal(SIGINT);
  auto cb = b->Wait(30s);
  ASSERT_TRUE(cb.has_value());
  EXPECT_EQ(*cb, 0) << b->err();
  EXPECT_EQ(client().MustGetLock("cli/shared/x").holders_size(), 0);
}

// ------------------------------------------------------------------------------------------
// release
// ------------------------------------------------------------------------------------------

TEST_F(LockctlOnCluster, ReleaseWithAWrongTokenChangesNothingAndWithTheRightOneFreesTheLock) {
  const auto held = Hold("cli/rel/x", "e2e-rel");
  const std::string lease = std::to_string(held.lease_id());
  auto wrong = Run(
      {"release", "cli/rel/x", "--lease", lease, "--token", std::to_string(held.token() + 1000)},
      true);
  EXPECT_EQ(wrong.code, 3) << wrong;
  EXPECT_EQ(wrong.out, "");
  EXPECT_THAT(wrong.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(wrong.err, HasSubstr("does not hold"));
  EXPECT_THAT(wrong.err, HasSubstr("cli/rel/x"));
  auto lock = client().MustGetLock("cli/rel/x");
  ASSERT_EQ(lock.holders_size(), 1) << ToString(lock);
  EXPECT_EQ(lock.holders(0).token(), held.token());

  // An unknown lease: NOT_FOUND.
  auto unknown = Run(
      {"release", "cli/rel/x", "--lease", "987654321", "--token", std::to_string(held.token())});
  EXPECT_EQ(unknown.code, 1) << unknown;
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(client().MustGetLock("cli/rel/x").holders_size(), 1);

  auto right = Run(
      {"release", "cli/rel/x", "--lease", lease, "--token", std::to_string(held.token())}, true);
  ASSERT_EQ(right.code, 0) << right;
  EXPECT_EQ(Field(Parse<google::protobuf::Struct>(right.out), "released"), "true") << right.out;
  EXPECT_EQ(client().MustGetLock("cli/rel/x").holders_size(), 0);

  // A second release of the same grant: the lease no longer holds it.
  auto again =
      Run({"release", "cli/rel/x", "--lease", lease, "--token", std::to_string(held.token())});
  EXPECT_EQ(again.code, 3) << again;
  EXPECT_THAT(again.err, HasSubstr("FAILED_PRECONDITION"));
}

TEST_F(LockctlOnCluster, ReleaseTableNamesWhatItReleased) {
  const auto held = Hold("cli/rel/table", "e2e-rel-table");
  auto r = Run({"release", "cli/rel/table", "--lease", std::to_string(held.lease_id()), "--token",
                std::to_string(held.token())});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_THAT(r.out, HasSubstr("released cli/rel/table"));
  EXPECT_THAT(r.out, HasSubstr("token " + std::to_string(held.token())));
  EXPECT_EQ(client().MustGetLock("cli/rel/table").holders_size(), 0);
}

// ------------------------------------------------------------------------------------------
// bad input
// ------------------------------------------------------------------------------------------

TEST_F(LockctlOnCluster, AnEmptyNameIsRefusedWithTheServersReason) {
  auto get = Run({"locks", "get", ""}, true);
  EXPECT_EQ(get.code, 3) << get;
  EXPECT_THAT(get.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(get.err, HasSubstr("name"));
  EXPECT_EQ(get.out, "");

  auto acq = Run({"acquire", "", "--ttl", "10000", "--label", "e2e-cli-empty"});
  EXPECT_NE(acq.code, 0) << acq;
  EXPECT_THAT(acq.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(LeaseLabels(), Not(::testing::Contains("e2e-cli-empty")))
      << "the lease granted for a refused acquire was left behind";

  auto rel = Run({"release", "", "--lease", "1", "--token", "1"});
  EXPECT_EQ(rel.code, 3) << rel;
  EXPECT_THAT(rel.err, HasSubstr("INVALID_ARGUMENT"));
}

TEST_F(LockctlOnCluster, AnUnknownLeaseIsNotFound) {
  auto r = Run({"leases", "get", "987654321"}, true);
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(r.err, HasSubstr("987654321"));
  EXPECT_EQ(r.out, "");
}

TEST_F(LockctlOnCluster, ATtlBelowTheServersMinimumIsRefused) {
  auto r = Run({"acquire", "cli/bad/ttl", "--ttl", "5"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_THAT(r.err, HasSubstr("lease"));
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_EQ(client().MustGetLock("cli/bad/ttl").holders_size(), 0);
}

TEST_F(LockctlOnCluster, BadArgumentsExitTwoWithAMessage) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"leases", "get", "not-a-number"},
           {"release", "cli/bad/x", "--lease", "1"},  // no --token
           {"locks"},                                 // no subcommand
           {"no-such-command"},
           {"acquire", "cli/bad/x", "--ttl", "-5"},
           {"acquire", "cli/bad/x", "--wait", "-1"},
           {"--timeout-ms", "0", "status"},
       }) {
    auto r = Run(args);
    std::string what;
    for (const auto& a : args) what += a + " ";
    EXPECT_EQ(r.code, 2) << what << "\n" << r;
    EXPECT_FALSE(r.err.empty()) << what;
  }
  auto help = Run({"--help"});
  EXPECT_EQ(help.code, 0) << help;
  EXPECT_THAT(help.out, HasSubstr("--endpoints"));
}

}  // namespace
}  // namespace lockd::e2e
