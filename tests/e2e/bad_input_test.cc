// The bad-input matrix (issue 7, "Tests"; design brief guarantee 9): every RPC with empty,
// over-long, NUL-containing and non-UTF-8 names, zero / "negative" (huge as unsigned) / huge
// TTLs, unknown leases, wrong tokens, unknown modes, malformed request headers and oversized
// requests. Each case gets the right code, through the leader and through a follower; afterwards
// the state is exactly what it was (leases, locks, token counter) and every node still serves.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include "e2e/cluster_harness.h"

namespace lockd::e2e {
namespace {

using ::testing::HasSubstr;
using Code = grpc::StatusCode;

constexpr uint64_t kLongTtl = 120'000;

struct BadName {
  const char* what;
  std::string name;
};

std::vector<BadName> BadNames() {
  return {
      {"empty", ""},
      {"513 bytes (limit 512)", std::string(513, 'a')},
      {"64 KiB - 1 KiB", std::string(63 * 1024, 'a')},
      {"NUL inside", std::string("a\0b", 3)},
      {"NUL at the end", std::string("ab\0", 3)},
      {"invalid UTF-8 bytes", "\xff\xfe"},
      {"overlong UTF-8 '/'", "a\xc0\xaf"},
      {"UTF-16 surrogate", "\xed\xa0\x80"},
      {"truncated UTF-8", "abc\xe2\x82"},
      {"above U+10FFFF", "\xf4\x90\x80\x80"},
  };
}

/// The state a refused request must leave alone.
struct Snapshot {
  std::vector<std::string> leases;  // id:label:ttl:held
  std::vector<std::string> locks;   // ToString(LockInfo) minus times
  uint64_t token_counter = 0;
  uint64_t lease_count = 0;
  bool operator==(const Snapshot&) const = default;
};

std::string Flat(const v1::LeaseInfo& l) {
  std::string s = std::to_string(l.lease_id()) + ":" + l.label() + ":" + std::to_string(l.ttl_ms());
  for (auto& h : l.held()) s += " held=" + h;
  for (auto& w : l.waiting()) s += " waiting=" + w;
  return s;
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    leader_ = cluster_.WaitForReady();
    ASSERT_GE(leader_, 0) << "no leader within 30 s\n" << cluster_.StatusSummary();
    follower_ = (leader_ + 1) % cluster_.size();
    lease_ = client_.MustGrantLease(kLongTtl, "victim");
    other_ = client_.MustGrantLease(kLongTtl, "other");
    v1::AcquireResponse a;
    ASSERT_TRUE(client_.Acquire("bi/held", lease_, v1::EXCLUSIVE, 0, &a).status.ok());
    ASSERT_TRUE(a.acquired());
    token_ = a.token();
    ASSERT_TRUE(client_.Acquire("bi/shared", other_, v1::SHARED, 0, &a).status.ok());
    before_ = Take();
  }

  void TearDown() override {
    if (leader_ < 0) return;
    EXPECT_EQ(Take(), before_) << "a refused request changed the state";
    for (int i = 0; i < cluster_.size(); ++i) {
      EXPECT_TRUE(cluster_.running(i)) << "node " << i + 1 << " died";
      v1::StatusResponse s;
      EXPECT_TRUE(cluster_.Status(i, &s).ok()) << "node " << i + 1 << " stopped answering";
    }
    // Still serving writes, through every node.
    for (int i = 0; i < cluster_.size(); ++i) {
      v1::AcquireResponse a;
      auto info =
          client_.Acquire("bi/after-" + std::to_string(i), lease_, v1::EXCLUSIVE, 0, &a, At(i));
      EXPECT_TRUE(info.status.ok() && a.acquired())
          << "node " << i + 1 << " no longer serves: " << Describe(info.status);
    }
  }

  Snapshot Take() {
    Snapshot s;
    std::vector<v1::LeaseInfo> leases;
    EXPECT_TRUE(client_.ListAllLeases(&leases).status.ok());
    for (auto& l : leases) s.leases.push_back(Flat(l));
    std::vector<v1::LockInfo> locks;
    EXPECT_TRUE(client_.ListAllLocks("", &locks).status.ok());
    for (auto& l : locks) s.locks.push_back(ToString(l));
    v1::StatusResponse st;
    EXPECT_TRUE(cluster_.Status(leader_, &st).ok());
    s.token_counter = st.token_counter();
    s.lease_count = leases.size();
    return s;
  }

  static CallOptions At(int i) {
    CallOptions o;
    o.node = i;
    o.rotate = false;
    o.deadline = 15s;
    return o;
  }

  /// Runs `call` through the leader and through a follower, expecting `code` both times.
  void Expect(const std::string& what, Code code,
              const std::function<CallInfo(Client&, CallOptions)>& call,
              const std::string& message_part = "") {
    for (int node : {leader_, follower_}) {
      auto info = call(client_, At(node));
      EXPECT_EQ(info.status.error_code(), code)
          << what << " via node " << node + 1 << (node == leader_ ? " (leader)" : " (follower)")
          << ": got " << Describe(info.status);
      if (info.status.error_code() == code && code != Code::OK) {
        EXPECT_FALSE(info.status.error_message().empty())
            << what << ": an error needs a message a person can act on";
        if (!message_part.empty()) {
          EXPECT_THAT(info.status.error_message(), HasSubstr(message_part)) << what;
        }
      }
    }
  }

  Cluster cluster_;
  Client client_{cluster_};
  int leader_ = -1, follower_ = -1;
  uint64_t lease_ = 0, other_ = 0, token_ = 0;
  Snapshot before_;
};

// ---------------------------------------------------------------------------------------------

TEST_F(BadInput, GrantLeaseWithATtlOutsideTheRangeIsInvalidArgumentNamingTheRange) {
  for (uint64_t ttl : {uint64_t{0}, uint64_t{1}, uint64_t{1999}, uint64_t{3'600'001},
                       uint64_t{1} << 40, ~uint64_t{0} /* -1 */, ~uint64_t{0} - 999 /* -1000 */}) {
    Expect("GrantLease ttl " + std::to_string(ttl), Code::INVALID_ARGUMENT,
           [&](Client& c, CallOptions o) {
             v1::GrantLeaseResponse r;
             return c.GrantLease(ttl, &r, "", o);
           });
    // The message names the range.
    v1::GrantLeaseResponse r;
    auto info = client_.GrantLease(ttl, &r, "", At(follower_));
    EXPECT_THAT(info.status.error_message(), HasSubstr("2000")) << "ttl " << ttl;
    EXPECT_THAT(info.status.error_message(), HasSubstr("3600000")) << "ttl " << ttl;
  }
}

TEST_F(BadInput, GrantLeaseWithABadLabelIsInvalidArgument) {
  for (const auto& [what, label] : std::vector<std::pair<std::string, std::string>>{
           {"129-byte label", std::string(129, 'l')}, {"non-UTF-8 label", "\xff\xfe"}}) {
    Expect(what, Code::INVALID_ARGUMENT, [&](Client& c, CallOptions o) {
      v1::GrantLeaseResponse r;
      return c.GrantLease(kLongTtl, &r, label, o);
    });
  }
}

TEST_F(BadInput, MutatingCallsWithAMalformedRequestHeaderAreInvalidArgument) {
  struct HeaderCase {
    std::string what;
    std::function<void(v1::RequestHeader*)> edit;
  };
  const std::vector<HeaderCase> headers = {
      {"no header at all", [](v1::RequestHeader* h) { h->Clear(); }},
      {"client id zero",
       [](v1::RequestHeader* h) {
         h->mutable_id()->set_client_hi(0);
         h->mutable_id()->set_client_lo(0);
       }},
      {"seq 0",
       [](v1::RequestHeader* h) {
         h->mutable_id()->set_seq(0);
         h->set_watermark(0);
       }},
      {"attempt 0", [](v1::RequestHeader* h) { h->set_attempt(0); }},
      {"watermark above its own seq",
       [](v1::RequestHeader* h) { h->set_watermark(h->id().seq() + 1); }},
  };
  // The raw stub (not Client::Call, which fills in headers and counts attempts).
  auto send = [&](int node, auto method, auto req, auto* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    grpc::Status s = (cluster_.lock(node).*method)(&ctx, req, resp);
    for (int i = 0; i < 100 && s.error_code() == Code::UNAVAILABLE; ++i) {
      std::this_thread::sleep_for(100ms);
      grpc::ClientContext again;
      again.set_deadline(std::chrono::system_clock::now() + 10s);
      s = (cluster_.lock(node).*method)(&again, req, resp);
    }
    return s;
  };
  for (const auto& hc : headers) {
    for (int node : {leader_, follower_}) {
      SCOPED_TRACE(hc.what + " via node " + std::to_string(node + 1));
      auto header = [&] {
        auto h = client_.Begin();
        client_.End(h.id().seq());
        hc.edit(&h);
        return h;
      };
      {
        v1::GrantLeaseRequest r;
        *r.mutable_header() = header();
        if (hc.what == "no header at all") r.clear_header();
        r.set_ttl_ms(kLongTtl);
        v1::GrantLeaseResponse resp;
        auto s = send(node, &v1::LockService::Stub::GrantLease, r, &resp);
        EXPECT_EQ(s.error_code(), Code::INVALID_ARGUMENT) << "GrantLease: " << Describe(s);
      }
      {
        v1::AcquireRequest r;
        *r.mutable_header() = header();
        if (hc.what == "no header at all") r.clear_header();
        r.set_name("bi/hdr");
        r.set_lease_id(other_);
        r.set_mode(v1::EXCLUSIVE);
        v1::AcquireResponse resp;
        auto s = send(node, &v1::LockService::Stub::Acquire, r, &resp);
        EXPECT_EQ(s.error_code(), Code::INVALID_ARGUMENT) << "Acquire: " << Describe(s);
      }
      {
        v1::ReleaseRequest r;
        *r.mutable_header() = header();
        if (hc.what == "no header at all") r.clear_header();
        r.set_name("bi/held");
        r.set_lease_id(lease_);
        r.set_token(token_);
        v1::ReleaseResponse resp;
        auto s = send(node, &v1::LockService::Stub::Release, r, &resp);
        EXPECT_EQ(s.error_code(), Code::INVALID_ARGUMENT) << "Release: " << Describe(s);
      }
      {
        v1::CancelRequest r;
        *r.mutable_header() = header();
        if (hc.what == "no header at all") r.clear_header();
        r.set_name("bi/held");
        r.set_lease_id(lease_);
        *r.mutable_acquire_id() = client_.FreshId();
        v1::CancelResponse resp;
        auto s = send(node, &v1::LockService::Stub::Cancel, r, &resp);
        EXPECT_EQ(s.error_code(), Code::INVALID_ARGUMENT) << "Cancel: " << Describe(s);
      }
      {
        v1::RevokeLeaseRequest r;
        *r.mutable_header() = header();
        if (hc.what == "no header at all") r.clear_header();
        r.set_lease_id(other_);
        v1::RevokeLeaseResponse resp;
        auto s = send(node, &v1::LockService::Stub::RevokeLease, r, &resp);
        EXPECT_EQ(s.error_code(), Code::INVALID_ARGUMENT) << "RevokeLease: " << Describe(s);
      }
    }
  }
}

TEST_F(BadInput, AcquireWithABadNameIsInvalidArgumentInEveryMode) {
  for (const auto& bad : BadNames()) {
    for (auto mode : {v1::EXCLUSIVE, v1::SHARED}) {
      for (uint64_t wait : {uint64_t{0}, uint64_t{5000}}) {
        Expect(std::string("Acquire name ") + bad.what + " " + v1::LockMode_Name(mode) + " wait " +
                   std::to_string(wait),
               Code::INVALID_ARGUMENT, [&](Client& c, CallOptions o) {
                 v1::AcquireResponse r;
                 return c.Acquire(bad.name, other_, mode, wait, &r, o);
               });
      }
    }
    // A one-lock lease Acquire with a bad name grants no lease.
    Expect(std::string("one-lock Acquire name ") + bad.what, Code::INVALID_ARGUMENT,
           [&](Client& c, CallOptions o) {
             v1::AcquireRequest req;
             req.set_name(bad.name);
             req.set_mode(v1::EXCLUSIVE);
             req.set_ttl_ms(kLongTtl);
             v1::AcquireResponse r;
             return c.Call(&v1::LockService::Stub::Acquire, req, &r, o);
           });
  }
}

TEST_F(BadInput, NamesAtTheLimitsAreAccepted) {
  // Boundaries: the good side of each rule must work (then released, so the state is unchanged).
  for (const std::string& name :
       {std::string(512, 'n'), std::string("\xc3\xbc\xe9\x94\x81/\xf0\x9f\x94\x92"),
        std::string("x")}) {
    v1::AcquireResponse a;
    auto info = client_.Acquire(name, other_, v1::EXCLUSIVE, 0, &a);
    ASSERT_TRUE(info.status.ok()) << name.size() << "-byte name: " << Describe(info.status);
    EXPECT_TRUE(a.acquired());
    v1::GetLockResponse g;
    ASSERT_TRUE(client_.GetLock(name, &g).status.ok());
    EXPECT_EQ(g.lock().name(), name);
    ASSERT_TRUE(client_.Release(name, other_, a.token()).status.ok());
  }
  // The token counter moved; the rest did not.
  before_.token_counter = Take().token_counter;
}

TEST_F(BadInput, AcquireWithAnUnknownModeIsInvalidArgument) {
  for (int mode : {0, 3, 7, 1000, -1}) {
    Expect("Acquire mode " + std::to_string(mode), Code::INVALID_ARGUMENT,
           [&](Client& c, CallOptions o) {
             v1::AcquireResponse r;
             return c.Acquire("bi/mode", other_, static_cast<v1::LockMode>(mode), 0, &r, o);
           });
  }
}

TEST_F(BadInput, AcquireWithBadLeaseTtlOrWaitArgumentsIsRefused) {
  auto acquire = [&](uint64_t lease, uint64_t ttl, uint64_t wait, const std::string& label = "") {
    return [=](Client& c, CallOptions o) {
      v1::AcquireRequest req;
      req.set_name("bi/args");
      req.set_lease_id(lease);
      req.set_mode(v1::EXCLUSIVE);
      req.set_ttl_ms(ttl);
      req.set_wait_ms(wait);
      req.set_lease_label(label);
      v1::AcquireResponse r;
      return c.Call(&v1::LockService::Stub::Acquire, req, &r, o);
    };
  };
  Expect("unknown lease", Code::NOT_FOUND, acquire(999'999, 0, 0));
  Expect("unknown lease, waiting", Code::NOT_FOUND, acquire(999'999, 0, 5000));
  Expect("no lease and no ttl", Code::INVALID_ARGUMENT, acquire(0, 0, 0));
  Expect("no lease, ttl below the range", Code::INVALID_ARGUMENT, acquire(0, 1999, 0));
  Expect("no lease, ttl -1", Code::INVALID_ARGUMENT, acquire(0, ~uint64_t{0}, 0));
  Expect("no lease, ttl above the range", Code::INVALID_ARGUMENT, acquire(0, 3'600'001, 0));
  Expect("no lease, label too long", Code::INVALID_ARGUMENT,
         acquire(0, kLongTtl, 0, std::string(129, 'l')));
  Expect("a lease and a ttl", Code::INVALID_ARGUMENT, acquire(other_, kLongTtl, 0));
  Expect("wait_ms above the limit", Code::INVALID_ARGUMENT, acquire(other_, 0, 600'001));
  Expect("wait_ms -1", Code::INVALID_ARGUMENT, acquire(other_, 0, ~uint64_t{0}));
}

TEST_F(BadInput, RenewAndRevokeOfAnUnknownLeaseAreNotFound) {
  for (uint64_t lease : {uint64_t{999'999}, ~uint64_t{0}, lease_ + 1'000}) {
    Expect("Renew lease " + std::to_string(lease), Code::NOT_FOUND, [&](Client& c, CallOptions o) {
      v1::RenewResponse r;
      return c.Renew(lease, 1, &r, o);
    });
    Expect("RevokeLease " + std::to_string(lease), Code::NOT_FOUND,
           [&](Client& c, CallOptions o) { return c.Revoke(lease, nullptr, o); });
    Expect("GetLease " + std::to_string(lease), Code::NOT_FOUND, [&](Client& c, CallOptions o) {
      v1::GetLeaseResponse r;
      return c.GetLease(lease, &r, o);
    });
  }
  // Lease id 0 names no lease: NOT_FOUND or INVALID_ARGUMENT, never OK.
  for (int node : {leader_, follower_}) {
    v1::RenewResponse r;
    auto s = client_.Renew(0, 1, &r, At(node)).status;
    EXPECT_TRUE(s.error_code() == Code::NOT_FOUND || s.error_code() == Code::INVALID_ARGUMENT)
        << "Renew(0): " << Describe(s);
    s = client_.Revoke(0, nullptr, At(node)).status;
    EXPECT_TRUE(s.error_code() == Code::NOT_FOUND || s.error_code() == Code::INVALID_ARGUMENT)
        << "RevokeLease(0): " << Describe(s);
  }
}

TEST_F(BadInput, ReleaseWithBadArgumentsIsRefused) {
  for (const auto& bad : BadNames()) {
    Expect(std::string("Release name ") + bad.what, Code::INVALID_ARGUMENT,
           [&](Client& c, CallOptions o) { return c.Release(bad.name, lease_, token_, o); });
  }
  Expect("Release by an unknown lease", Code::NOT_FOUND,
         [&](Client& c, CallOptions o) { return c.Release("bi/held", 999'999, token_, o); });
  Expect("Release with a wrong token", Code::FAILED_PRECONDITION,
         [&](Client& c, CallOptions o) { return c.Release("bi/held", lease_, token_ + 100, o); });
  Expect("Release with token -1", Code::FAILED_PRECONDITION,
         [&](Client& c, CallOptions o) { return c.Release("bi/held", lease_, ~uint64_t{0}, o); });
  Expect("Release by a lease that does not hold it", Code::FAILED_PRECONDITION,
         [&](Client& c, CallOptions o) { return c.Release("bi/held", other_, token_, o); });
  Expect("Release of a free name", Code::FAILED_PRECONDITION,
         [&](Client& c, CallOptions o) { return c.Release("bi/free", lease_, token_, o); });
}

TEST_F(BadInput, CancelWithBadArgumentsIsRefused) {
  for (const auto& bad : BadNames()) {
    Expect(std::string("Cancel name ") + bad.what, Code::INVALID_ARGUMENT,
           [&](Client& c, CallOptions o) {
             v1::CancelResponse r;
             return c.Cancel(bad.name, lease_, c.FreshId(), &r, o);
           });
  }
  Expect("Cancel for an unknown lease of an Acquire never seen", Code::NOT_FOUND,
         [&](Client& c, CallOptions o) {
           v1::CancelResponse r;
           return c.Cancel("bi/held", 999'999, c.FreshId(), &r, o);
         });
  Expect("Cancel naming itself", Code::INVALID_ARGUMENT, [&](Client& c, CallOptions o) {
    v1::CancelRequest req;
    *req.mutable_header() = c.Begin();
    req.set_name("bi/held");
    req.set_lease_id(lease_);
    *req.mutable_acquire_id() = req.header().id();
    v1::CancelResponse r;
    auto info = c.Call(&v1::LockService::Stub::Cancel, req, &r, o);
    c.End(req.header().id().seq());
    return info;
  });
}

TEST_F(BadInput, InspectionWithBadArgumentsIsRefused) {
  for (const auto& bad : BadNames()) {
    for (bool stale : {false, true}) {
      Expect(std::string("GetLock name ") + bad.what + (stale ? " (stale)" : ""),
             Code::INVALID_ARGUMENT, [&](Client& c, CallOptions o) {
               v1::GetLockRequest req;
               req.set_name(bad.name);
               req.set_stale(stale);
               v1::GetLockResponse r;
               return c.Call(&v1::LockService::Stub::GetLock, req, &r, o);
             });
    }
  }
  Expect("ListLeases with a garbage page token", Code::INVALID_ARGUMENT,
         [&](Client& c, CallOptions o) {
           v1::ListLeasesRequest req;
           req.set_page_token("not-a-page-token");
           v1::ListLeasesResponse r;
           return c.Call(&v1::LockService::Stub::ListLeases, req, &r, o);
         });
  Expect("ListLocks with a non-UTF-8 prefix", Code::INVALID_ARGUMENT,
         [&](Client& c, CallOptions o) {
           v1::ListLocksRequest req;
           req.set_prefix("\xff\xfe");
           v1::ListLocksResponse r;
           return c.Call(&v1::LockService::Stub::ListLocks, req, &r, o);
         });
  // A huge page size is capped or refused, never an unbounded answer or a crash.
  for (int node : {leader_, follower_}) {
    v1::ListLocksRequest req;
    req.set_page_size(~uint32_t{0});
    v1::ListLocksResponse r;
    auto info = client_.Call(&v1::LockService::Stub::ListLocks, req, &r, At(node));
    EXPECT_TRUE(info.status.ok() || info.status.error_code() == Code::INVALID_ARGUMENT)
        << Describe(info.status);
  }
}

TEST_F(BadInput, WatchWithABadTargetIsInvalidArgument) {
  for (int node : {leader_, follower_}) {
    for (const auto& bad : BadNames()) {
      if (std::string(bad.what) == "empty") continue;  // an empty prefix means "every lock"
      v1::WatchRequest req;
      req.set_name(bad.name);
      grpc::Status st;
      ReadWatch(cluster_, node, req, 1, 10s, &st);
      EXPECT_EQ(st.error_code(), Code::INVALID_ARGUMENT)
          << "Watch name " << bad.what << " via node " << node + 1 << ": " << Describe(st);
    }
    v1::WatchRequest none;  // neither name nor prefix
    grpc::Status st;
    ReadWatch(cluster_, node, none, 1, 10s, &st);
    EXPECT_EQ(st.error_code(), Code::INVALID_ARGUMENT)
        << "Watch without a target via node " << node + 1 << ": " << Describe(st);
  }
}

TEST_F(BadInput, OversizedRequestsAreResourceExhaustedOnEveryRpc) {
  const std::string huge(100 * 1024, 'h');   // above --max-request-bytes 65536
  const std::string enormous(8 << 20, 'e');  // above gRPC's 4 MiB default too
  for (const std::string* big : {&huge, &enormous}) {
    const std::string size = std::to_string(big->size()) + "-byte ";
    Expect(size + "Acquire name", Code::RESOURCE_EXHAUSTED, [&](Client& c, CallOptions o) {
      v1::AcquireResponse r;
      return c.Acquire(*big, other_, v1::EXCLUSIVE, 0, &r, o);
    });
    Expect(size + "one-lock Acquire label", Code::RESOURCE_EXHAUSTED,
           [&](Client& c, CallOptions o) {
             v1::AcquireRequest req;
             req.set_name("bi/big");
             req.set_mode(v1::EXCLUSIVE);
             req.set_ttl_ms(kLongTtl);
             req.set_lease_label(*big);
             v1::AcquireResponse r;
             return c.Call(&v1::LockService::Stub::Acquire, req, &r, o);
           });
    Expect(size + "GrantLease label", Code::RESOURCE_EXHAUSTED, [&](Client& c, CallOptions o) {
      v1::GrantLeaseResponse r;
      return c.GrantLease(kLongTtl, &r, *big, o);
    });
    Expect(size + "Release name", Code::RESOURCE_EXHAUSTED,
           [&](Client& c, CallOptions o) { return c.Release(*big, lease_, token_, o); });
    Expect(size + "Cancel name", Code::RESOURCE_EXHAUSTED, [&](Client& c, CallOptions o) {
      v1::CancelResponse r;
      return c.Cancel(*big, lease_, c.FreshId(), &r, o);
    });
    Expect(size + "GetLock name", Code::RESOURCE_EXHAUSTED, [&](Client& c, CallOptions o) {
      v1::GetLockResponse r;
      return c.GetLock(*big, &r, o);
    });
    Expect(size + "ListLocks prefix", Code::RESOURCE_EXHAUSTED, [&](Client& c, CallOptions o) {
      v1::ListLocksRequest req;
      req.set_prefix(*big);
      v1::ListLocksResponse r;
      return c.Call(&v1::LockService::Stub::ListLocks, req, &r, o);
    });
    for (int node : {leader_, follower_}) {
      v1::WatchRequest req;
      req.set_prefix(*big);
      grpc::Status st;
      ReadWatch(cluster_, node, req, 1, 10s, &st);
      EXPECT_EQ(st.error_code(), Code::RESOURCE_EXHAUSTED)
          << size << "Watch prefix via node " << node + 1 << ": " << Describe(st);
    }
  }
}

TEST_F(BadInput, AKeepAliveStreamWithBadRenewalsAnswersEachAndKeepsServing) {
  for (int node : {leader_, follower_}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    auto stream = cluster_.lock(node).KeepAlive(&ctx);
    const std::vector<uint64_t> leases = {0, 999'999, ~uint64_t{0}, lease_};
    for (size_t i = 0; i < leases.size(); ++i) {
      v1::RenewRequest req;
      req.set_lease_id(leases[i]);
      req.set_seq(i + 1);
      ASSERT_TRUE(stream->Write(req));
    }
    std::map<uint64_t, v1::RenewResponse> answers;
    v1::RenewResponse resp;
    while (answers.size() < leases.size() && stream->Read(&resp)) answers[resp.seq()] = resp;
    stream->WritesDone();
    while (stream->Read(&resp)) answers[resp.seq()] = resp;
    auto st = stream->Finish();
    EXPECT_TRUE(st.ok()) << "node " << node + 1 << ": " << Describe(st);
    ASSERT_EQ(answers.size(), leases.size()) << "node " << node + 1;
    for (uint64_t seq : {1u, 2u, 3u}) {
      EXPECT_NE(answers[seq].code(), 0) << "lease " << leases[seq - 1] << " renewed?";
    }
    EXPECT_EQ(answers[2].code(), static_cast<int>(Code::NOT_FOUND));
    EXPECT_EQ(answers[4].code(), 0) << "the good renewal after bad ones: " << answers[4].message();
  }
}

}  // namespace
}  // namespace lockd::e2e
