// Property test: long random command sequences — retries of old request ids, reused ids, moving
// watermarks, cancels before and after arrival (by lease and by lease zero), expiries, timeouts,
// retirement, one-lock leases, SHARED/EXCLUSIVE mixes, limits small enough to be hit — applied to
// the state machine and to the reference model (model.h). Every outcome, completion, event, wait
// and lease change, and the whole state (every lock, every lease, the exactly-once table, the
// counters) must agree after every step. Half the commands go through the byte codec; snapshots
// are round-tripped at random points and some continue from the restored copy.
//
// A failure prints its seed. LOCKD_LOCK_SEEDS sets how many sequences run, LOCKD_LOCK_STEPS their
// length; LOCKD_LOCK_SEED=N replays one, LOCKD_LOCK_TRACE=1 prints its commands.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "lock/state_machine.h"
#include "model.h"

namespace lockd::lock {

// Readable failures: gtest prints these instead of bytes.
void PrintTo(const Outcome& o, std::ostream* os) {
  *os << "{" << StatusCodeName(o.code) << " lease=" << o.lease << " ttl=" << o.ttl_ms
      << " acq=" << o.acquired << " wait=" << o.waiting << " why_not=" << int(o.why_not)
      << " tok=" << o.token << " fence=" << o.fence << " mode=" << int(o.mode)
      << " holders=" << o.holders.size() << " effect=" << int(o.effect)
      << " released=" << o.released.size() << " dropped=" << o.dropped.size() << " msg='"
      << o.message << "'}";
}
void PrintTo(const Completion& c, std::ostream* os) {
  *os << ToString(c.acquire) << ":";
  PrintTo(c.outcome, os);
}
void PrintTo(const Event& e, std::ostream* os) {
  *os << "{type=" << int(e.type) << " @" << e.index << "." << e.number << " '" << e.name
      << "' lease=" << e.lease << " tok=" << e.token << " fence=" << e.fence << " by "
      << ToString(e.request) << "}";
}

namespace {

using testing::Model;

Outcome Normalized(Outcome o) {
  o.message.clear();
  return o;
}

std::vector<Completion> Normalized(std::vector<Completion> cs) {
  for (auto& c : cs) c.outcome.message.clear();
  return cs;
}

std::vector<ExactlyOnce::ClientView> Normalized(std::vector<ExactlyOnce::ClientView> cs) {
  for (auto& c : cs) {
    for (auto& r : c.records) r.outcome.message.clear();
  }
  return cs;
}

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  uint64_t Pick(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  Command Next(const Model& m) {
    const uint64_t roll = Pick(100);
    // Retry an earlier command with the same request id (the same call, a later attempt).
    if (roll < 12 && !sent_.empty()) {
      Command c = sent_[Pick(sent_.size())];
      if (auto* h = MutableHeader(c)) {
        h->attempt += 1;
        h->watermark = std::min(Watermark(h->id.client), h->id.seq);
      }
      return c;
    }
    // Reuse an id for a different call.
    if (roll < 14 && !sent_.empty()) {
      Command c = sent_[Pick(sent_.size())];
      if (auto* a = std::get_if<Acquire>(&c)) {
        a->name = Name();
        return c;
      }
    }
    if (roll < 17) return ExpireLease{LeaseFrom(m)};
    if (roll < 21 && !acquires_.empty())
      return WaitTimeout{Name(), acquires_[Pick(acquires_.size())]};
    if (roll < 23) return RetireOutcomes{LogIndex(index_ > 8 ? index_ - Pick(8) : 0)};
    if (roll < 26) Finish();  // some pending calls complete: watermarks move
    const uint64_t kind = Pick(100);
    Command c;
    if (kind < 12) {
      c = GrantLease{Header(), Pick(5) == 0 ? uint64_t{500} : 5000, Pick(2) ? "a" : "b"};
    } else if (kind < 52) {
      Acquire a{Header(),
                Name(),
                LeaseFrom(m),
                Pick(3) == 0 ? Mode::kShared : Mode::kExclusive,
                Pick(2) ? 0u : 100u,
                0,
                ""};
      if (Pick(8) == 0) {  // a one-lock lease
        a.lease = LeaseId();
        a.ttl_ms = Pick(10) ? 5000 : 0;
        a.label = "one-lock";
      } else if (Pick(40) == 0) {
        a.label = "not-with-a-lease";
      }
      acquires_.push_back(a.header.id);
      c = a;
    } else if (kind < 72) {
      // Release a real grant (right token) or a plausible wrong one.
      std::string name = Name();
      LeaseId lease = LeaseFrom(m);
      FencingToken token(Pick(m.tokens + 2));
      if (!m.grants.empty() && Pick(3)) {
        const auto& g = m.grants[Pick(m.grants.size())];
        name = g.name;
        lease = LeaseId(g.lease);
        token = FencingToken(g.token);
      }
      c = Release{Header(), name, lease, token};
    } else if (kind < 88) {
      RequestId target =
          acquires_.empty() || Pick(4) == 0 ? FutureId() : acquires_[Pick(acquires_.size())];
      LeaseId lease = LeaseFrom(m);
      std::string name = Name();
      if (Pick(4)) {  // mostly the right lease and name, when the target holds or waits
        for (const auto& w : m.waits) {
          if (w.acquire == target) lease = LeaseId(w.lease), name = w.name;
        }
        for (const auto& g : m.grants) {
          if (g.by == target) lease = LeaseId(g.lease), name = g.name;
        }
      }
      if (Pick(6) == 0) lease = LeaseId();
      c = Cancel{Header(), name, lease, target};
    } else if (kind < 94) {
      c = RevokeLease{Header(), LeaseFrom(m)};
    } else {
      c = ForceRelease{Header(), Name(), Pick(2) ? LeaseId() : LeaseFrom(m), "test"};
    }
    sent_.push_back(c);
    return c;
  }

  void Applied(uint64_t index) { index_ = index; }

 private:
  std::string Name() {
    static const char* kNames[] = {"a", "b", "c", "d/1", "d/2"};
    return kNames[Pick(5)];
  }
  ClientId Client() { return ClientId{1, 1 + Pick(3)}; }
  RequestHeader Header() {
    const ClientId c = Client();
    const uint64_t seq = ++next_seq_[c];
    pending_[c].insert(seq);
    return RequestHeader{{c, seq}, 1, Watermark(c)};
  }
  /// An id its client has not used yet (for cancel-before-arrival); the client will use it next.
  RequestId FutureId() {
    const ClientId c = Client();
    return RequestId{c, next_seq_[c] + 1 + Pick(2)};
  }
  uint64_t Watermark(const ClientId& c) {
    auto& p = pending_[c];
    return p.empty() ? next_seq_[c] : *p.begin();
  }
  void Finish() {
    for (auto& [c, p] : pending_) {
      while (!p.empty() && Pick(2)) p.erase(p.begin());
    }
  }
  LeaseId LeaseFrom(const Model& m) {
    if (m.leases.empty() || Pick(8) == 0) return LeaseId(1 + Pick(m.lease_ids + 2));
    return LeaseId(m.leases[Pick(m.leases.size())].id);
  }
  static RequestHeader* MutableHeader(Command& c) {
    return std::visit(
        [](auto& x) -> RequestHeader* {
          if constexpr (requires { x.header; }) {
            return &x.header;
          } else {
            return nullptr;
          }
        },
        c);
  }

  std::mt19937_64 rng_;
  uint64_t index_ = 0;
  std::map<ClientId, uint64_t> next_seq_;
  std::map<ClientId, std::set<uint64_t>> pending_;
  std::vector<Command> sent_;
  std::vector<RequestId> acquires_;
};

/// The whole state of both must agree: every lock, every lease, the exactly-once table, the
/// counters; and the paged reads must tile the full listing.
void ExpectSameState(const LockStateMachine& sm, const Model& m, Generator& gen,
                     const std::string& where) {
  const auto locks = m.Locks();
  ASSERT_EQ(sm.ListLocks("", "", 1'000'000).items, locks) << where;
  ASSERT_EQ(sm.ListLeases(LeaseId(), 1'000'000).items, m.Leases()) << where;
  ASSERT_EQ(Normalized(sm.exactly_once().Clients()), Normalized(m.Clients())) << where;
  ASSERT_EQ(sm.token_counter().value(), m.tokens) << where;
  ASSERT_EQ(sm.lease_counter().value(), m.lease_ids) << where;
  if (gen.Pick(10) == 0) {  // pagination: pages of 1..3 tile the listing, by name and by prefix
    const size_t size = 1 + gen.Pick(3);
    const std::string prefix = gen.Pick(2) ? "" : "d/";
    std::vector<LockView> tiled;
    std::string after;
    do {
      auto page = sm.ListLocks(prefix, after, size);
      ASSERT_LE(page.items.size(), size);
      tiled.insert(tiled.end(), page.items.begin(), page.items.end());
      after = page.next;
    } while (!after.empty());
    std::vector<LockView> want;
    for (const auto& l : locks) {
      if (l.name.starts_with(prefix)) want.push_back(l);
    }
    ASSERT_EQ(tiled, want) << where;
    for (const auto& l : locks) ASSERT_EQ(sm.GetLock(l.name), l) << where;
  }
}

TEST(Property, StateMachineMatchesTheReferenceModel) {
  Limits limits;
  limits.max_leases = 8;
  limits.max_waiters_per_lock = 3;
  limits.max_locks = 4;
  limits.max_leases_per_label = 5;
  limits.min_ttl_ms = 1000;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  const uint64_t default_seeds = 150;
#else
  const uint64_t default_seeds = 1500;
#endif
  const uint64_t seeds = EnvOr("LOCKD_LOCK_SEEDS", default_seeds);
  const uint64_t steps = EnvOr("LOCKD_LOCK_STEPS", 400);
  const uint64_t one = EnvOr("LOCKD_LOCK_SEED", 0);
  const bool trace = EnvOr("LOCKD_LOCK_TRACE", 0) != 0;
  const uint64_t first = one ? one : 1;
  const uint64_t last = one ? one : seeds;
  uint64_t compared = 0, through_bytes = 0, snapshots = 0, retries = 0;
  for (uint64_t seed = first; seed <= last; ++seed) {
    LockStateMachine sm(limits);
    Model model(limits);
    Generator gen(seed);
    std::set<RequestId> seen;
    int64_t wall = 1'000'000;
    for (uint64_t step = 1; step <= steps; ++step) {
      const Command c = gen.Next(model);
      const RequestHeader* h = HeaderOf(c);
      if (h && !seen.insert(h->id).second) ++retries;
      if (trace) {
        std::printf("%llu %s %s", static_cast<unsigned long long>(step), KindName(c),
                    h ? ToString(h->id).c_str() : "-");
        if (auto* x = std::get_if<Cancel>(&c))
          std::printf(" acquire=%s lease=%llu", ToString(x->acquire).c_str(),
                      static_cast<unsigned long long>(x->lease.value()));
        if (h) std::printf(" wm=%llu", static_cast<unsigned long long>(h->watermark));
        std::printf("\n");
      }
      wall += static_cast<int64_t>(gen.Pick(3));
      ApplyResult got;
      if (gen.Pick(2)) {  // through the log's byte format
        auto r = sm.Apply(LogIndex(step), Encode(c, wall));
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        got = std::move(r).value();
        ++through_bytes;
      } else {
        got = sm.ApplyCommand(LogIndex(step), c, wall);
      }
      const ApplyResult want = model.Apply(step, c);
      gen.Applied(step);
      ++compared;
      const std::string where =
          "seed=" + std::to_string(seed) + " step=" + std::to_string(step) + " " + KindName(c) +
          " (replay: LOCKD_LOCK_SEED=" + std::to_string(seed) + " LOCKD_LOCK_TRACE=1)";
      ASSERT_TRUE(sm.CheckConsistency().ok()) << where << ": " << sm.CheckConsistency().message();
      ASSERT_EQ(Normalized(got.outcome), Normalized(want.outcome)) << where;
      ASSERT_EQ(Normalized(got.completions), Normalized(want.completions)) << where;
      ASSERT_EQ(got.events, want.events) << where;
      ASSERT_EQ(got.waits_started, want.waits_started) << where;
      ASSERT_EQ(got.leases_granted, want.leases_granted) << where;
      ASSERT_EQ(got.leases_ended, want.leases_ended) << where;
      ExpectSameState(sm, model, gen, where);
      if (::testing::Test::HasFailure()) return;
      if (gen.Pick(25) == 0) {
        const std::string snap = sm.Snapshot();
        auto back = LockStateMachine::Restore(snap, limits);
        ASSERT_TRUE(back.ok()) << where << ": " << back.status().ToString();
        ASSERT_TRUE(*back == sm) << where << ": snapshot round trip changed the state";
        ASSERT_EQ(back->Snapshot(), snap) << where << ": a snapshot is not canonical";
        if (gen.Pick(2)) sm = std::move(back).value();  // go on from the restored copy
        ++snapshots;
        if (gen.Pick(4) == 0) {  // guarantee 8 from any state
          const int64_t now = wall + static_cast<int64_t>(gen.Pick(5));
          auto fresh = LockStateMachine::RestoreAsNewCluster(snap, limits, now, 0);
          ASSERT_TRUE(fresh.ok()) << where;
          const uint64_t bump = (uint64_t{1} << 32) * static_cast<uint64_t>(1 + now - wall);
          ASSERT_EQ(fresh->token_counter().value(), sm.token_counter().value() + bump) << where;
          ASSERT_EQ(fresh->lease_counter().value(), sm.lease_counter().value() + bump) << where;
          ASSERT_EQ(fresh->lock_count() + fresh->lease_count(), 0u) << where;
          ASSERT_EQ(fresh->exactly_once().clients(), 0u) << where;
        }
      }
    }
  }
  std::printf(
      "compared %llu commands (%llu through the byte codec, %llu retries of an earlier request "
      "id) over %llu sequences of %llu; %llu snapshot round trips\n",
      static_cast<unsigned long long>(compared), static_cast<unsigned long long>(through_bytes),
      static_cast<unsigned long long>(retries), static_cast<unsigned long long>(last - first + 1),
      static_cast<unsigned long long>(steps), static_cast<unsigned long long>(snapshots));
}

}  // namespace
}  // namespace lockd::lock
