// The fuzz run's consistency check: each node's stale view (every page of ListLocks and
// ListLeases, read between two Status answers showing the same applied index, so the view is one
// state), the lock invariants on it, and the views of all nodes compared at one index.
#include <algorithm>
#include <map>
#include <sstream>
#include <thread>

#include "e2e/fuzz_gen.h"

namespace lockd::e2e::fuzz {

namespace {

struct View {
  int node = -1;
  uint64_t index = 0;
  uint64_t token_counter = 0;
  std::vector<v1::LockInfo> locks;
  std::vector<v1::LeaseInfo> leases;
};

template <typename Req, typename Resp, typename Item>
bool ReadAllPages(v1::LockService::Stub& stub,
                  grpc::Status (v1::LockService::Stub::*method)(grpc::ClientContext*, const Req&,
                                                                Resp*),
                  Req req, std::vector<Item>* out,
                  const google::protobuf::RepeatedPtrField<Item>& (Resp::*items)() const) {
  req.set_stale(true);
  req.set_page_size(1000);
  for (int pages = 0; pages < 10'000; ++pages) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    Resp resp;
    if (!(stub.*method)(&ctx, req, &resp).ok()) return false;
    for (const auto& i : (resp.*items)()) out->push_back(i);
    if (resp.next_page_token().empty()) return true;
    req.set_page_token(resp.next_page_token());
  }
  return false;
}

/// Node `node`'s applied state at one index, without the fields that depend on when it is read.
std::optional<View> StaleView(Cluster& cluster, int node) {
  View v;
  v.node = node;
  v1::StatusResponse before, after;
  if (!cluster.Status(node, &before).ok()) return std::nullopt;
  if (!ReadAllPages(cluster.lock(node), &v1::LockService::Stub::ListLocks, v1::ListLocksRequest(),
                    &v.locks, &v1::ListLocksResponse::locks) ||
      !ReadAllPages(cluster.lock(node), &v1::LockService::Stub::ListLeases, v1::ListLeasesRequest(),
                    &v.leases, &v1::ListLeasesResponse::leases)) {
    return std::nullopt;
  }
  if (!cluster.Status(node, &after).ok() || after.applied_index() != before.applied_index()) {
    return std::nullopt;
  }
  v.index = after.applied_index();
  v.token_counter = after.token_counter();
  for (auto& l : v.locks) {
    for (auto& h : *l.mutable_holders()) {
      h.clear_held_ms();
      h.clear_lease_remaining_ms();
    }
    for (auto& w : *l.mutable_waiters()) w.clear_waited_ms();
  }
  for (auto& l : v.leases) l.clear_remaining_ms();
  return v;
}

/// The lock invariants on one view.
void CheckInvariants(const View& v, std::vector<std::string>* problems) {
  const std::string at =
      "node " + std::to_string(v.node + 1) + " at index " + std::to_string(v.index) + ": ";
  auto fail = [&](const std::string& p) { problems->push_back(at + p); };
  std::map<uint64_t, const v1::LeaseInfo*> leases;
  for (size_t i = 0; i < v.leases.size(); ++i) {
    const auto& l = v.leases[i];
    if (i > 0 && v.leases[i - 1].lease_id() >= l.lease_id()) {
      fail("ListLeases is not in strictly increasing id order at lease " +
           std::to_string(l.lease_id()));
    }
    leases[l.lease_id()] = &l;
  }
  std::set<uint64_t> tokens;
  std::map<uint64_t, std::set<std::string>> held, waiting;  // by lease, from the locks
  for (size_t i = 0; i < v.locks.size(); ++i) {
    const auto& lock = v.locks[i];
    const std::string what = "lock '" + lock.name() + "' " + ToString(lock) + ": ";
    if (i > 0 && v.locks[i - 1].name() >= lock.name()) fail(what + "ListLocks is out of order");
    bool exclusive = false;
    uint64_t shared_fence = 0, min_shared_token = ~uint64_t{0};
    for (const auto& h : lock.holders()) {
      if (!leases.count(h.lease_id())) fail(what + "its holder's lease does not exist");
      if (h.token() == 0 || h.token() > v.token_counter) {
        fail(what + "token " + std::to_string(h.token()) + " is 0 or above the token counter " +
             std::to_string(v.token_counter));
      }
      if (!tokens.insert(h.token()).second) fail(what + "token granted twice");
      if (!held[h.lease_id()].insert(lock.name()).second) fail(what + "a lease holds it twice");
      if (h.mode() == v1::EXCLUSIVE) {
        exclusive = true;
        if (h.fence() != h.token()) fail(what + "an EXCLUSIVE holder's fence is not its token");
      } else if (h.mode() == v1::SHARED) {
        if (shared_fence != 0 && h.fence() != shared_fence) {
          fail(what + "SHARED holders present different fences");
        }
        shared_fence = h.fence();
        min_shared_token = std::min(min_shared_token, h.token());
      } else {
        fail(what + "a holder with mode " + std::to_string(h.mode()));
      }
    }
    if (exclusive && lock.holders_size() != 1) fail(what + "EXCLUSIVE with other holders");
    if (shared_fence != 0 && (shared_fence > min_shared_token)) {
      fail(what + "the SHARED fence is above a holder's token");
    }
    for (int w = 0; w < lock.waiters_size(); ++w) {
      const auto& wt = lock.waiters(w);
      if (!leases.count(wt.lease_id())) fail(what + "a waiter's lease does not exist");
      if (!waiting[wt.lease_id()].insert(lock.name()).second) {
        fail(what + "lease " + std::to_string(wt.lease_id()) + " waits twice");
      }
      if (held[wt.lease_id()].count(lock.name())) fail(what + "a lease holds and waits for it");
    }
    if (lock.waiters_size() > 0) {
      const bool first_exclusive = lock.waiters(0).mode() == v1::EXCLUSIVE;
      if (lock.holders_size() == 0 || (!exclusive && !first_exclusive)) {
        fail(what + "its first waiter could have been granted");
      }
    }
  }
  // Each lease's own lists agree with the locks.
  for (const auto& l : v.leases) {
    const std::set<std::string> h(l.held().begin(), l.held().end());
    const std::set<std::string> w(l.waiting().begin(), l.waiting().end());
    if (h != held[l.lease_id()] || w != waiting[l.lease_id()]) {
      fail("lease " + std::to_string(l.lease_id()) +
           "'s held/waiting names differ from the locks' holders/waiters: " + l.ShortDebugString());
    }
  }
}

std::string Flatten(const View& v) {
  std::ostringstream os;
  for (const auto& l : v.locks) os << l.ShortDebugString() << "\n";
  for (const auto& l : v.leases) os << l.ShortDebugString() << "\n";
  os << "tokens " << v.token_counter << "\n";
  return os.str();
}

std::string FirstDifference(const std::string& a, const std::string& b) {
  std::istringstream ia(a), ib(b);
  std::string la, lb;
  while (true) {
    const bool ga = static_cast<bool>(std::getline(ia, la));
    const bool gb = static_cast<bool>(std::getline(ib, lb));
    if (!ga && !gb) return "";
    if (la != lb || ga != gb) return "'" + Truncated(la, 300) + "' vs '" + Truncated(lb, 300) + "'";
  }
}

}  // namespace

ConsistencyReport CheckConsistency(Cluster& cluster, Ms timeout) {
  ConsistencyReport report;
  const auto deadline = Clock::now() + timeout;
  std::vector<View> views;
  while (Clock::now() < deadline) {
    // All nodes read at once: leases keep expiring, so the applied index moves, and views read
    // one after the other rarely share one.
    views.clear();
    std::vector<std::optional<View>> read(cluster.size());
    std::vector<std::thread> readers;
    for (int i = 0; i < cluster.size(); ++i) {
      readers.emplace_back([&, i] { read[i] = StaleView(cluster, i); });
    }
    for (auto& r : readers) r.join();
    for (auto& v : read) {
      if (v) views.push_back(std::move(*v));
    }
    ++report.attempts;
    const bool one_index = views.size() == static_cast<size_t>(cluster.size()) &&
                           std::all_of(views.begin(), views.end(),
                                       [&](const View& v) { return v.index == views[0].index; });
    if (!one_index) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    report.agreed = true;
    report.index = views[0].index;
    const std::string first = Flatten(views[0]);
    for (size_t i = 1; i < views.size(); ++i) {
      const std::string other = Flatten(views[i]);
      if (other != first) {
        report.agreed = false;
        report.disagreement = "node " + std::to_string(views[0].node + 1) + " and node " +
                              std::to_string(views[i].node + 1) + " at index " +
                              std::to_string(report.index) +
                              " differ: " + FirstDifference(first, other);
        report.problems.push_back(report.disagreement);
      }
    }
    break;
  }
  if (!report.agreed && report.disagreement.empty()) {
    report.disagreement = "no moment with every node at one applied index within " +
                          std::to_string(timeout.count()) + " ms";
  }
  for (const auto& v : views) CheckInvariants(v, &report.problems);
  if (!views.empty()) {
    report.locks = views[0].locks.size();
    report.leases = views[0].leases.size();
    for (const auto& l : views[0].locks) {
      report.holders += l.holders_size();
      report.waiters += l.waiters_size();
    }
  }
  return report;
}

}  // namespace lockd::e2e::fuzz
