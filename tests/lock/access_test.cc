// What the state machine enforces of access control (docs/security.md, "Access control"): a lease
// belongs to the identity that granted it, and an identity's quotas of leases and of names held
// or waited for, decided at apply from the Caller each command carries.
#include <gtest/gtest.h>

#include "harness.h"
#include "lock/command.h"

namespace lockd::lock {
namespace {

using testing::Harness;

constexpr Mode X = Mode::kExclusive;

/// A harness whose commands carry a Caller.
struct Callers : Harness {
  /// A command of `principal`, from its own client process unless `client` is given.
  RequestHeader As(const std::string& principal, ClientId client = {}) {
    if (client.zero()) client = {std::hash<std::string>{}(principal) | 1, 1};
    RequestHeader h = Header(client);
    h.caller.principal = principal;
    h.caller.max_leases = quota.max_leases;
    h.caller.max_locks = quota.max_locks;
    h.caller.admin = admin;
    return h;
  }
  LeaseId LeaseOf(const std::string& principal) {
    auto r = Do(GrantLease{As(principal), 10'000, "t"});
    EXPECT_TRUE(r.outcome.ok()) << r.outcome.message;
    return r.outcome.lease;
  }
  Outcome AcquireAs(const std::string& principal, const std::string& name, LeaseId lease,
                    uint64_t wait_ms = 0) {
    return Do(lock::Acquire{As(principal), name, lease, X, wait_ms, 0, ""}).outcome;
  }
  Caller quota;  ///< max_leases and max_locks the next commands carry
  bool admin = false;
};

TEST(Caller, RoundTripsInTheCommandAndAnOlderFormatCarriesNone) {
  RequestHeader h{{{3, 4}, 5}, 2, 1};
  h.caller = Caller{"billing", 7, 9, true};
  const Command c = Acquire{h, "billing/x", LeaseId(3), X, 100, 0, ""};
  auto back = Decode(Encode(c, 11));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(std::get<Acquire>(back->command).header.caller, h.caller);
  for (size_t cut = 0; cut < Encode(c, 11).size(); ++cut) {
    EXPECT_FALSE(Decode(Encode(c, 11).substr(0, cut)).ok()) << cut;
  }
  // Format 3 has no caller; decoded, the caller is the empty one (access control off).
  RequestHeader anon{{{3, 4}, 5}, 2, 1};
  auto v3 = Decode(Encode(Acquire{anon, "x", LeaseId(3), X, 0, 0, ""}, 11, 3));
  ASSERT_TRUE(v3.ok()) << v3.status().ToString();
  EXPECT_EQ(v3->version, 3);
  EXPECT_EQ(std::get<Acquire>(v3->command).header.caller, Caller{});
}

TEST(Caller, TheDigestCoversThePrincipalOnlyWhenThereIsOne) {
  RequestHeader anon{{{1, 1}, 5}, 1, 0};
  RequestHeader a = anon, b = anon, a2 = anon;
  a.caller.principal = "a";
  b.caller.principal = "b";
  a2.caller = Caller{"a", 100, 100, true};  // quotas and admin are the proposer's, not the call's
  EXPECT_NE(Digest(GrantLease{a, 5000, ""}), Digest(GrantLease{b, 5000, ""}));
  EXPECT_NE(Digest(GrantLease{a, 5000, ""}), Digest(GrantLease{anon, 5000, ""}));
  EXPECT_EQ(Digest(GrantLease{a, 5000, ""}), Digest(GrantLease{a2, 5000, ""}));
  // Without a principal the digest is format 3's: outcomes recorded before an upgrade match.
  EXPECT_EQ(Digest(GrantLease{anon, 5000, ""}),
            Digest(std::get<GrantLease>(
                Decode(Encode(GrantLease{anon, 5000, ""}, 0, 3)).value().command)));
}

TEST(Ownership, AnotherIdentityCannotUseALeaseEvenKnowingItsId) {
  Callers h;
  const LeaseId a = h.LeaseOf("alice");
  const LeaseId b = h.LeaseOf("bob");
  const Outcome held = h.AcquireAs("alice", "x", a);
  ASSERT_TRUE(held.acquired);

  const Outcome acquire = h.AcquireAs("bob", "y", a);
  EXPECT_EQ(acquire.code, StatusCode::kPermissionDenied);
  EXPECT_NE(acquire.message.find("lease " + std::to_string(a.value())), std::string::npos);
  EXPECT_NE(acquire.message.find("'bob'"), std::string::npos) << acquire.message;
  EXPECT_EQ(h.Do(Release{h.As("bob"), "x", a, held.token}).outcome.code,
            StatusCode::kPermissionDenied);
  EXPECT_EQ(h.Do(RevokeLease{h.As("bob"), a}).outcome.code, StatusCode::kPermissionDenied);
  RequestHeader alice_acquire;
  {
    // A wait of alice's that bob tries to cancel by naming its request id.
    ASSERT_TRUE(h.AcquireAs("bob", "z", b).acquired);
    alice_acquire = h.As("alice");
    EXPECT_TRUE(h.Do(Acquire{alice_acquire, "z", a, X, 60'000, 0, ""}).outcome.waiting);
  }
  const auto with_wait = h.sm.Snapshot();
  EXPECT_EQ(h.Do(Cancel{h.As("bob"), "z", LeaseId(), alice_acquire.id}).outcome.code,
            StatusCode::kPermissionDenied);
  EXPECT_EQ(
      h.Do(Cancel{h.As("bob"), "x", a, h.sm.GetLock("x")->holders[0].acquired_by}).outcome.code,
      StatusCode::kPermissionDenied);
  // Nothing changed but the applied index and the refusals' exactly-once records.
  auto now = LockStateMachine::Restore(h.sm.Snapshot(), {});
  auto then = LockStateMachine::Restore(with_wait, {});
  ASSERT_TRUE(now.ok() && then.ok());
  EXPECT_EQ(now->GetLock("x"), then->GetLock("x"));
  EXPECT_EQ(now->GetLock("z"), then->GetLock("z"));
  EXPECT_EQ(now->GetLease(a), then->GetLease(a));

  // Its owner can do all of it.
  EXPECT_TRUE(h.Do(Cancel{h.As("alice"), "z", a, alice_acquire.id}).outcome.ok());
  EXPECT_TRUE(h.Do(Release{h.As("alice"), "x", a, held.token}).outcome.ok());
  EXPECT_TRUE(h.Do(RevokeLease{h.As("alice"), a}).outcome.ok());
}

TEST(Ownership, ACallerWithAdminMayRevokeOthersLeasesButNotLockWithThem) {
  Callers h;
  const LeaseId a = h.LeaseOf("alice");
  ASSERT_TRUE(h.AcquireAs("alice", "x", a).acquired);
  h.admin = true;
  EXPECT_EQ(h.AcquireAs("ops", "y", a).code, StatusCode::kPermissionDenied);
  const Outcome revoked = h.Do(RevokeLease{h.As("ops"), a}).outcome;
  ASSERT_TRUE(revoked.ok()) << revoked.message;
  EXPECT_EQ(revoked.released, std::vector<std::string>{"x"});
  EXPECT_FALSE(h.sm.GetLease(a).has_value());
}

TEST(Ownership, TheLeaseRecordsItsOwnerAndNoPrincipalChecksNothing) {
  Callers h;
  const LeaseId a = h.LeaseOf("alice");
  EXPECT_EQ(h.sm.GetLease(a)->owner, "alice");
  EXPECT_EQ(h.sm.OwnerOf(a), "alice");
  // Access control off on the proposer (no principal: members agree on the setting, so this is
  // a cluster that switched it off): nothing is checked.
  const Outcome anon = h.Do(Acquire{h.Header({5, 5}), "x", a, X, 0, 0, ""}).outcome;
  EXPECT_TRUE(anon.acquired) << anon.message;
  // A lease granted with access control off belongs to nobody: a named identity cannot use it.
  const LeaseId old = h.Lease();
  EXPECT_EQ(h.sm.GetLease(old)->owner, "");
  EXPECT_EQ(h.AcquireAs("alice", "y", old).code, StatusCode::kPermissionDenied);
}

TEST(Ownership, AClientIdUsedWithAccessControlOffIsClaimedByTheFirstIdentity) {
  Callers h;
  const ClientId client{3, 3};
  ASSERT_TRUE(h.Do(GrantLease{h.Header(client), 10'000, ""}).outcome.ok());  // access control off
  // Switched on: the process carries on under its identity, which now owns the client id.
  EXPECT_TRUE(h.Do(GrantLease{h.As("alice", client), 10'000, ""}).outcome.ok());
  EXPECT_EQ(h.Do(GrantLease{h.As("bob", client), 10'000, ""}).outcome.code,
            StatusCode::kPermissionDenied);
}

TEST(Ownership, ARequestIdReusedByAnotherIdentityIsADifferentCall) {
  Callers h;
  RequestHeader first = h.As("alice", {9, 9});
  const Outcome granted = h.Do(GrantLease{first, 10'000, ""}).outcome;
  ASSERT_TRUE(granted.ok());
  RequestHeader stolen = first;
  stolen.caller.principal = "bob";
  const Outcome replay = h.Do(GrantLease{stolen, 10'000, ""}).outcome;
  EXPECT_EQ(replay.code, StatusCode::kPermissionDenied);  // the client id is alice's
  EXPECT_EQ(replay.lease, LeaseId());                     // bob is not shown alice's lease id
  // Alice's own retry gets her first outcome.
  RequestHeader retry = first;
  retry.attempt = 2;
  EXPECT_EQ(h.Do(GrantLease{retry, 10'000, ""}).outcome.lease, granted.lease);
}

TEST(Ownership, AClientIdBelongsToTheIdentityThatFirstUsedIt) {
  Callers h;
  const ClientId alice_client{7, 7};
  RequestHeader first = h.As("alice", alice_client);
  const Outcome granted = h.Do(GrantLease{first, 10'000, ""}).outcome;
  ASSERT_TRUE(granted.ok());
  // Bob under alice's client id: a high watermark would refuse alice's next calls as late
  // duplicates, a cancel in advance would void her next Acquire. Neither runs or leaves a trace.
  RequestHeader bob = h.As("bob", alice_client);
  bob.watermark = bob.id.seq;  // would make alice's retry of `first` a late duplicate
  const Outcome refused = h.Do(GrantLease{bob, 10'000, ""}).outcome;
  EXPECT_EQ(refused.code, StatusCode::kPermissionDenied);
  EXPECT_NE(refused.message.find("another identity's"), std::string::npos) << refused.message;
  RequestId next_of_alice{alice_client, bob.id.seq + 2};  // after bob's Cancel below
  EXPECT_EQ(h.Do(Cancel{h.As("bob", alice_client), "x", LeaseId(), next_of_alice}).outcome.code,
            StatusCode::kPermissionDenied);
  EXPECT_EQ(h.sm.lease_count(), 1u);
  // Alice's calls go on as before: no watermark raised (her retry is answered as the first
  // attempt was), no Acquire cancelled.
  RequestHeader retry = first;
  retry.attempt = 2;
  EXPECT_EQ(h.Do(GrantLease{retry, 10'000, ""}).outcome.lease, granted.lease);
  RequestHeader next = h.As("alice", alice_client);
  ASSERT_EQ(next.id, next_of_alice);
  const Outcome acquired = h.Do(Acquire{next, "x", granted.lease, X, 0, 0, ""}).outcome;
  EXPECT_TRUE(acquired.acquired) << acquired.message;
  // And it survives a snapshot.
  auto back = LockStateMachine::Restore(h.sm.Snapshot(), {});
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == h.sm);
}

TEST(Quota, LeasesPerIdentityAreRefusedNamingTheQuotaAndOthersAreUnaffected) {
  Callers h;
  h.quota.max_leases = 2;
  h.LeaseOf("alice");
  const LeaseId second = h.LeaseOf("alice");
  const Outcome third = h.Do(GrantLease{h.As("alice"), 10'000, ""}).outcome;
  EXPECT_EQ(third.code, StatusCode::kResourceExhausted);
  EXPECT_NE(third.message.find("max_leases"), std::string::npos) << third.message;
  EXPECT_NE(third.message.find("'alice'"), std::string::npos) << third.message;
  // An Acquire that would grant its own lease counts the same.
  EXPECT_EQ(h.Do(Acquire{h.As("alice"), "x", LeaseId(), X, 0, 10'000, ""}).outcome.code,
            StatusCode::kResourceExhausted);
  EXPECT_EQ(h.sm.UsageOf("alice").leases, 2u);
  // Bob has his own count.
  h.LeaseOf("bob");
  h.LeaseOf("bob");
  // A lease that ends gives its room back.
  ASSERT_TRUE(h.Do(RevokeLease{h.As("alice"), second}).outcome.ok());
  EXPECT_TRUE(h.Do(GrantLease{h.As("alice"), 10'000, ""}).outcome.ok());
  ASSERT_TRUE(h.Do(ExpireLease{second}).outcome.ok());
}

TEST(Quota, NamesHeldPlusWaitedForPerIdentity) {
  Callers h;
  const LeaseId blocker = h.LeaseOf("bob");
  ASSERT_TRUE(h.AcquireAs("bob", "busy", blocker).acquired);
  h.quota.max_locks = 2;
  const LeaseId a = h.LeaseOf("alice"), a2 = h.LeaseOf("alice");
  ASSERT_TRUE(h.AcquireAs("alice", "x", a).acquired);
  EXPECT_TRUE(h.AcquireAs("alice", "busy", a2, 60'000).waiting);  // a wait counts
  EXPECT_EQ(h.sm.UsageOf("alice").locks, 2u);
  const Outcome over = h.AcquireAs("alice", "y", a);
  EXPECT_EQ(over.code, StatusCode::kResourceExhausted);
  EXPECT_NE(over.message.find("max_locks"), std::string::npos) << over.message;
  // A try-lock that would fail adds nothing, so it is answered, not refused.
  const Outcome tried = h.AcquireAs("alice", "busy", a);
  EXPECT_TRUE(tried.ok()) << tried.message;
  EXPECT_FALSE(tried.acquired);
  // Bob is unaffected by alice's quota (his commands carry his own).
  h.quota.max_locks = 0;
  EXPECT_TRUE(h.AcquireAs("bob", "y", blocker).acquired);
  // The handoff of "busy" to alice's waiter keeps her count; a release frees one.
  h.quota.max_locks = 2;
  const auto busy = h.sm.GetLock("busy");
  ASSERT_TRUE(h.Do(Release{h.As("bob"), "busy", blocker, busy->holders[0].token}).outcome.ok());
  EXPECT_EQ(h.sm.UsageOf("alice").locks, 2u);
  EXPECT_EQ(h.sm.GetLock("busy")->holders[0].lease, a2);
  const auto x = h.sm.GetLock("x");
  ASSERT_TRUE(h.Do(Release{h.As("alice"), "x", a, x->holders[0].token}).outcome.ok());
  EXPECT_TRUE(h.AcquireAs("alice", "y2", a).acquired);
  // Expiry frees what the lease held.
  ASSERT_TRUE(h.Do(ExpireLease{a}).outcome.ok());
  EXPECT_EQ(h.sm.UsageOf("alice").locks, 1u);
  EXPECT_EQ(h.sm.UsageOf("alice").leases, 1u);
}

TEST(Quota, UsageAndOwnersSurviveASnapshot) {
  Callers h;
  const LeaseId a = h.LeaseOf("alice");
  ASSERT_TRUE(h.AcquireAs("alice", "x", a).acquired);
  const LeaseId b = h.LeaseOf("bob");
  EXPECT_TRUE(h.AcquireAs("bob", "x", b, 60'000).waiting);
  auto back = LockStateMachine::Restore(h.sm.Snapshot(), {});
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == h.sm);
  back->CheckInvariants();
  EXPECT_EQ(back->UsageOf("alice"), (LockStateMachine::Usage{1, 1}));
  EXPECT_EQ(back->UsageOf("bob"), (LockStateMachine::Usage{1, 1}));
  EXPECT_EQ(back->GetLease(b)->owner, "bob");
}

}  // namespace
}  // namespace lockd::lock
