#include "faults/history/checkers.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <tuple>

namespace lockd::faults {

namespace {

bool IsWatch(const Op& op) {
  return op.kind == OpKind::kGrantSeen || op.kind == OpKind::kReleaseSeen;
}

std::string Ms(BootNs ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(ns) / 1e6);
  return buf;
}

Report Make(const char* name, std::string summary, std::vector<std::string> violations) {
  Report r;
  r.checker = name;
  r.summary = std::move(summary);
  r.violations = std::move(violations);
  r.verdict = r.violations.empty() ? Verdict::kPass : Verdict::kFail;
  return r;
}

/// The watcher's events in log order, one per position. A gap marker carries the position of the
/// last event seen before it (watcher.cc), so it sorts after the events at its position and is
/// never taken for a repeat of one.
std::vector<const Op*> WatchEvents(const std::vector<Op>& ops) {
  std::vector<const Op*> out;
  for (const Op& op : ops) {
    if (IsWatch(op) && op.index != 0) out.push_back(&op);
  }
  auto is_gap = [](const Op* o) { return o->event == "gap"; };
  std::stable_sort(out.begin(), out.end(), [&](const Op* a, const Op* b) {
    return std::make_tuple(a->index, a->event_no, is_gap(a)) <
           std::make_tuple(b->index, b->event_no, is_gap(b));
  });
  // A resumed watch may repeat nothing, but a watcher restarted from now after a gap can: keep
  // the first of each position among the grant and release events (gaps are all kept).
  out.erase(std::unique(out.begin(), out.end(),
                        [&](const Op* a, const Op* b) {
                          return !is_gap(a) && !is_gap(b) && a->index == b->index &&
                                 a->event_no == b->event_no;
                        }),
            out.end());
  return out;
}

}  // namespace

bool WatchCoverage::Covers(BootNs from, BootNs to) const {
  if (!present() || from < start || to > end) return false;
  return std::none_of(gaps.begin(), gaps.end(),
                      [&](const auto& gap) { return from <= gap.second && to >= gap.first; });
}

WatchCoverage CoverageOf(const std::vector<Op>& ops) {
  WatchCoverage c;
  c.start = std::numeric_limits<BootNs>::max();
  for (const Op& op : ops) {
    if (!IsWatch(op)) continue;
    if (op.event == "watch_start") c.start = std::min(c.start, op.complete_ns);
    if (op.event == "watch_end") c.end = std::max(c.end, op.invoke_ns);
    if (op.event == "gap") c.gaps.emplace_back(op.invoke_ns, op.complete_ns);
  }
  return c;
}

const char* Name(Verdict v) {
  switch (v) {
    case Verdict::kPass:
      return "PASS";
    case Verdict::kFail:
      return "FAIL";
    case Verdict::kUnknown:
      return "UNKNOWN";
  }
  return "?";
}

std::string Report::Format(size_t max_lines) const {
  std::string s = "[" + checker + "] " + Name(verdict) + ": " + summary + "\n";
  for (size_t i = 0; i < violations.size() && i < max_lines; ++i) {
    s += "    " + violations[i] + "\n";
  }
  if (violations.size() > max_lines) {
    s += "    … and " + std::to_string(violations.size() - max_lines) + " more\n";
  }
  for (const std::string& d : details) s += "    " + d + "\n";
  return s;
}

Report CheckFencing(const std::vector<ResourceRecord>& log) {
  // The resource logs in the order it decided, under its lock: replaying that order, an accepted
  // fence below one accepted earlier on the lock is a stale holder let in.
  std::map<std::string, const ResourceRecord*> largest;
  std::vector<std::string> violations;
  size_t accepted = 0, rejected = 0;
  for (const ResourceRecord& r : log) {
    const ResourceRecord*& top = largest[r.lock];
    if (!r.accepted) {
      ++rejected;
      if (!top || r.fence >= top->fence) {
        violations.push_back("rejected without a larger fence accepted before it: " + r.Describe());
      }
      continue;
    }
    ++accepted;
    if (top && r.fence < top->fence) {
      violations.push_back("fence " + std::to_string(r.fence) + " accepted below fence " +
                           std::to_string(top->fence) + " accepted before it: " + r.Describe() +
                           " after " + top->Describe());
      continue;
    }
    top = &r;
  }
  return Make("fencing",
              std::to_string(accepted) + " requests accepted, " + std::to_string(rejected) +
                  " rejected, on " + std::to_string(largest.size()) + " locks",
              std::move(violations));
}

Report CheckNoLostUpdate(const std::vector<ResourceRecord>& log, const std::vector<Op>& ops) {
  // Each accepted write is a read-modify-write of the holder: it must write one more than the
  // counter held when the resource accepted it, or an increment was overwritten (lost).
  std::map<std::string, int64_t> counter;
  std::map<std::tuple<std::string, uint64_t>, const ResourceRecord*> accepted_writes;
  std::vector<std::string> violations;
  size_t writes = 0;
  for (const ResourceRecord& r : log) {
    if (!r.write || !r.accepted) continue;
    ++writes;
    int64_t& c = counter[r.lock];
    if (r.value != c + 1) {
      violations.push_back("lost update on " + r.lock + ": counter was " + std::to_string(c) +
                           ", the write made it " + std::to_string(r.value) + ": " + r.Describe());
    }
    c = r.value;
    accepted_writes[{r.process, r.op}] = &r;
  }
  // An increment its worker saw acknowledged must be one the resource accepted.
  size_t acknowledged = 0;
  for (const Op& op : ops) {
    if (op.kind != OpKind::kIncrement || op.outcome != Outcome::kOk) continue;
    ++acknowledged;
    auto it = accepted_writes.find({op.process, op.id});
    if (it == accepted_writes.end()) {
      violations.push_back(
          "increment acknowledged to its worker but not accepted by the "
          "resource: " +
          op.Describe());
    } else if (it->second->value != op.value) {
      violations.push_back("increment acknowledged with value " + std::to_string(op.value) +
                           " but the resource accepted " + it->second->Describe() + ": " +
                           op.Describe());
    }
  }
  std::string finals;
  for (const auto& [lock, c] : counter) finals += " " + lock + "=" + std::to_string(c);
  return Make("no-lost-update",
              std::to_string(writes) + " accepted increments, " + std::to_string(acknowledged) +
                  " acknowledged to workers; counters:" + (finals.empty() ? " none" : finals),
              std::move(violations));
}

std::vector<Hold> Holds(const std::vector<Op>& ops) {
  std::map<std::tuple<std::string, std::string, uint64_t>, const Op*> releases;
  for (const Op& op : ops) {
    if (op.kind == OpKind::kRelease) releases[{op.process, op.lock, op.token}] = &op;
  }
  std::vector<Hold> out;
  for (const Op& op : ops) {
    if (op.kind != OpKind::kAcquire || op.outcome != Outcome::kOk) continue;
    Hold h;
    h.acquire = &op;
    h.start = op.complete_ns;
    auto it = releases.find({op.process, op.lock, op.token});
    if (it != releases.end()) {
      h.release = it->second;
      h.end = h.release->invoke_ns;
      if (h.release->valid_until_ns) h.end = std::min(h.end, h.release->valid_until_ns);
    } else {
      // Never released (the worker died): it held the lock at most until valid_until as it was
      // at the grant; renewals may have moved it later, which only shortens what we check.
      h.end = op.valid_until_ns;
    }
    if (h.end > h.start) out.push_back(h);
  }
  return out;
}

Report CheckLeaseSafety(const std::vector<Op>& ops) {
  std::map<std::string, std::vector<Hold>> by_lock;
  size_t n = 0;
  for (const Hold& h : Holds(ops)) {
    by_lock[h.acquire->lock].push_back(h);
    ++n;
  }
  std::vector<std::string> violations;
  for (auto& [lock, holds] : by_lock) {
    std::sort(holds.begin(), holds.end(),
              [](const Hold& a, const Hold& b) { return a.start < b.start; });
    for (size_t i = 0; i < holds.size(); ++i) {
      for (size_t j = i + 1; j < holds.size() && holds[j].start < holds[i].end; ++j) {
        const Hold& a = holds[i];
        const Hold& b = holds[j];
        if (a.acquire->lease == b.acquire->lease) continue;
        if (a.acquire->mode == LockMode::kShared && b.acquire->mode == LockMode::kShared) continue;
        violations.push_back("overlapping holds of " + lock + " for " +
                             Ms(std::min(a.end, b.end) - b.start) + ": " + a.acquire->Describe() +
                             " held until " + Ms(a.end - a.start) + " after its grant" +
                             (a.release ? " (released by " + a.release->Describe() + ")" : "") +
                             "; " + b.acquire->Describe());
      }
    }
  }
  return Make("lease-safety",
              std::to_string(n) + " acknowledged grants on " + std::to_string(by_lock.size()) +
                  " locks, intervals [grant acknowledged, min(release, valid_until)]",
              std::move(violations));
}

Report CheckMutualExclusion(const std::vector<Op>& ops) {
  struct Held {
    const Op* grant;
  };
  std::map<std::string, std::vector<Held>> holders;
  std::vector<std::string> violations;
  size_t grants = 0, gaps = 0;
  for (const Op* e : WatchEvents(ops)) {
    if (e->event == "gap") {
      // Events were lost: what was held before is unknown, so judge only what is seen after.
      holders.clear();
      ++gaps;
      continue;
    }
    auto& hs = holders[e->lock];
    if (e->kind == OpKind::kGrantSeen) {
      ++grants;
      for (const Held& h : hs) {
        if (e->mode == LockMode::kShared && h.grant->mode == LockMode::kShared) continue;
        violations.push_back("grant while held: " + e->Describe() + " while " +
                             h.grant->Describe() + " still held");
      }
      hs.push_back({e});
    } else if (e->event == "released" || e->event == "expired") {
      std::erase_if(hs, [&](const Held& h) {
        return h.grant->lease == e->lease && (e->token == 0 || h.grant->token == e->token);
      });
    }
  }
  return Make(
      "mutual-exclusion",
      std::to_string(grants) + " grants in the Watch history, " + std::to_string(gaps) + " gaps",
      std::move(violations));
}

Report CheckLeaseKept(const std::vector<Op>& ops, BootNs slack_ns) {
  // Per (keeper, lease): its grant and renewals.
  std::map<std::pair<std::string, uint64_t>, std::vector<const Op*>> by_lease;
  for (const Op& op : ops) {
    if (op.kind == OpKind::kRenew && op.lease != 0) by_lease[{op.process, op.lease}].push_back(&op);
  }
  if (by_lease.empty()) return Make("lease-kept", "no keeper ran: nothing to check", {});
  std::vector<std::string> violations;
  size_t renewals = 0, refused = 0;
  for (const auto& [key, list] : by_lease) {
    for (const Op* r : list) {
      if (r->event == "grant") continue;
      ++renewals;
      if (r->outcome != Outcome::kFail) continue;
      ++refused;
      // The latest send among the acknowledged grant and renewals answered before r was sent.
      const Op* anchor = nullptr;
      for (const Op* a : list) {
        if (a->outcome == Outcome::kOk && a->complete_ns < r->invoke_ns &&
            (!anchor || a->invoke_ns > anchor->invoke_ns)) {
          anchor = a;
        }
      }
      if (!anchor) continue;
      const BootNs deadline = anchor->invoke_ns + r->value * 1'000'000;
      if (r->invoke_ns + slack_ns < deadline) {
        violations.push_back("lease " + std::to_string(key.second) + " of " + key.first +
                             " dropped while kept alive: " + r->Describe() + " was sent " +
                             Ms(deadline - r->invoke_ns) + " before the deadline of " +
                             anchor->Describe());
      }
    }
  }
  return Make("lease-kept",
              std::to_string(renewals) + " renewals of " + std::to_string(by_lease.size()) +
                  " keeper leases, " + std::to_string(refused) +
                  " refused NOT_FOUND; none may be refused more than " + Ms(slack_ns) +
                  " before its deadline",
              std::move(violations));
}

Report CheckCoverage(const std::vector<Op>& ops, const std::vector<ResourceRecord>& log,
                     const CoverageOptions& options) {
  std::map<std::string, int64_t> grants;  // per lock any worker op touched
  const WatchCoverage watch = CoverageOf(ops);
  const auto& gaps = watch.gaps;
  for (const Op& op : ops) {
    if (IsWatch(op) || op.lock.empty()) continue;
    auto& n = grants[op.lock];
    if (op.kind == OpKind::kAcquire && op.outcome == Outcome::kOk) ++n;
  }
  int64_t total = 0, covered = 0;
  for (const Op& op : ops) {
    if (op.kind != OpKind::kAcquire || op.outcome != Outcome::kOk) continue;
    ++total;
    covered += watch.Covers(op.invoke_ns, op.complete_ns);
  }
  const auto rejected =
      std::count_if(log.begin(), log.end(), [](const ResourceRecord& r) { return !r.accepted; });
  std::vector<std::string> violations;
  if (grants.empty()) violations.push_back("no worker touched any lock");
  for (const auto& [lock, n] : grants) {
    if (n < options.min_grants_per_lock) {
      violations.push_back(lock + ": " + std::to_string(n) + " acknowledged grants, fewer than " +
                           std::to_string(options.min_grants_per_lock));
    }
  }
  if (options.max_gaps >= 0 && static_cast<int64_t>(gaps.size()) > options.max_gaps) {
    violations.push_back(std::to_string(gaps.size()) + " gaps in the Watch history, more than " +
                         std::to_string(options.max_gaps));
  }
  if (total > 0 && covered * 10 < total * 9) {
    violations.push_back("only " + std::to_string(covered) + " of " + std::to_string(total) +
                         " acknowledged grants inside the watcher's coverage");
  }
  if (options.expect_fence_rejection && rejected == 0) {
    violations.push_back(
        "the resource never refused a fence, though a client was paused between "
        "its read and its write");
  }
  return Make("coverage",
              std::to_string(total) + " acknowledged grants on " + std::to_string(grants.size()) +
                  " locks, " + std::to_string(covered) + " inside the Watch coverage, " +
                  std::to_string(gaps.size()) + " gaps, " + std::to_string(rejected) +
                  " fence refusals at the resource",
              std::move(violations));
}

Report CheckNoLostAck(const std::vector<Op>& ops) {
  const WatchCoverage watch = CoverageOf(ops);
  std::map<std::tuple<std::string, uint64_t>, const Op*> seen;  // (lock, token)
  for (const Op& op : ops) {
    if (op.kind == OpKind::kGrantSeen) seen.emplace(std::make_tuple(op.lock, op.token), &op);
  }
  Report r;
  r.checker = "no-lost-ack";
  if (!watch.present()) {
    r.verdict = Verdict::kUnknown;
    r.summary = "no Watch history (no watch_start/watch_end): cannot tell";
    return r;
  }
  std::vector<std::string> violations;
  size_t checked = 0, outside = 0;
  std::map<std::tuple<std::string, uint64_t>, const Op*> by_token;
  for (const Op& op : ops) {
    if (op.kind != OpKind::kAcquire || op.outcome != Outcome::kOk) continue;
    auto [it, fresh] = by_token.emplace(std::make_tuple(op.lock, op.token), &op);
    if (!fresh) {
      violations.push_back("token " + std::to_string(op.token) + " granted twice on " + op.lock +
                           ": " + it->second->Describe() + " and " + op.Describe());
    }
    if (!watch.Covers(op.invoke_ns, op.complete_ns)) {
      ++outside;
      continue;
    }
    ++checked;
    auto s = seen.find({op.lock, op.token});
    if (s == seen.end() || s->second->lease != op.lease) {
      violations.push_back("acknowledged grant missing from the Watch history: " + op.Describe());
    }
  }
  // In log order every lock's tokens rise.
  std::map<std::string, const Op*> last;
  for (const Op* e : WatchEvents(ops)) {
    if (e->kind != OpKind::kGrantSeen) continue;
    const Op*& prev = last[e->lock];
    if (prev && e->token <= prev->token) {
      violations.push_back("token not increasing on " + e->lock + ": " + e->Describe() + " after " +
                           prev->Describe());
    }
    prev = e;
  }
  r = Make("no-lost-ack",
           std::to_string(checked) + " acknowledged grants found in the Watch history (" +
               std::to_string(outside) + " outside its coverage), " + std::to_string(seen.size()) +
               " grants seen",
           std::move(violations));
  return r;
}

Report CheckCleanup(const std::vector<Op>& ops, const std::vector<FaultEvent>& faults,
                    BootNs bound_ns, const std::string& cleanup_process) {
  BootNs quiet = 0;
  for (const FaultEvent& f : faults) quiet = std::max(quiet, f.t_ns);
  std::set<std::string> locks;
  for (const Op& op : ops) {
    if (op.process == cleanup_process || IsWatch(op)) continue;
    quiet = std::max(quiet, op.complete_ns);
    if (!op.lock.empty()) locks.insert(op.lock);
  }
  std::vector<std::string> violations;
  BootNs slowest = 0;
  for (const std::string& lock : locks) {
    const Op* last = nullptr;
    const Op* free = nullptr;
    for (const Op& op : ops) {
      if (op.process != cleanup_process || op.kind != OpKind::kInspect || op.lock != lock ||
          op.outcome != Outcome::kOk || op.invoke_ns < quiet) {
        continue;
      }
      if (op.holders.empty() && (!free || op.complete_ns < free->complete_ns)) free = &op;
      if (!last || op.complete_ns > last->complete_ns) last = &op;
    }
    if (free && free->complete_ns - quiet <= bound_ns) {
      slowest = std::max(slowest, free->complete_ns - quiet);
      continue;
    }
    if (free) {
      violations.push_back(lock + " free only " + Ms(free->complete_ns - quiet) +
                           " after the faults and the workload stopped (bound " + Ms(bound_ns) +
                           "): " + free->Describe());
    } else if (last) {
      violations.push_back(lock + " still held " + Ms(last->complete_ns - quiet) +
                           " after the faults and the workload stopped (bound " + Ms(bound_ns) +
                           "): " + last->Describe());
    } else {
      violations.push_back(lock + ": no clean-up inspection after the workload stopped");
    }
  }
  return Make("clean-up",
              std::to_string(locks.size()) + " locks free within " + Ms(bound_ns) +
                  " of the faults and the workload stopping (slowest " + Ms(slowest) + ")",
              std::move(violations));
}

Report Availability(const std::vector<Op>& ops, const std::vector<FaultEvent>& faults,
                    const std::string& cleanup_process) {
  std::map<std::string, std::pair<size_t, size_t>> per_kind;  // attempted, answered
  std::vector<BootNs> answered;
  size_t attempted = 0, ok = 0;
  BootNs workload_end = 0;
  for (const Op& op : ops) {
    if (IsWatch(op) || op.process == cleanup_process) continue;
    workload_end = std::max(workload_end, op.invoke_ns);
    auto& k = per_kind[Name(op.kind)];
    ++k.first;
    ++attempted;
    if (op.outcome == Outcome::kOk) ++ok;
    if (op.outcome != Outcome::kInfo) ++k.second;
    // The cluster served it: done, or refused without an error (a held lock). An error answer
    // (NOT_FOUND for a lost lease, FAILED_PRECONDITION, ...) is not service.
    const bool served =
        op.outcome == Outcome::kOk || (op.outcome == Outcome::kFail && op.error.empty());
    if (served && (op.kind == OpKind::kAcquire || op.kind == OpKind::kRelease ||
                   op.kind == OpKind::kInspect)) {
      answered.push_back(op.complete_ns);
    }
  }
  std::sort(answered.begin(), answered.end());
  std::vector<FaultEvent> sorted = faults;
  std::sort(sorted.begin(), sorted.end(),
            [](const FaultEvent& a, const FaultEvent& b) { return a.t_ns < b.t_ns; });
  std::map<std::string, std::pair<BootNs, size_t>> longest;  // kind -> (window, count)
  for (size_t i = 0; i < sorted.size(); ++i) {
    const BootNs from = sorted[i].t_ns;
    const BootNs to =
        std::min(workload_end, i + 1 < sorted.size() ? sorted[i + 1].t_ns : workload_end);
    BootNs prev = from, worst = 0;
    for (auto it = std::upper_bound(answered.begin(), answered.end(), from);
         it != answered.end() && prev < to; ++it) {
      worst = std::max(worst, *it - prev);
      prev = *it;
    }
    // Nothing served from the last answer to the window's end (or at all after the fault): that
    // stretch counts too.
    if (prev < to) worst = std::max(worst, to - prev);
    auto& l = longest[sorted[i].kind];
    l.first = std::max(l.first, worst);
    ++l.second;
  }
  Report r;
  r.checker = "availability";
  r.summary = std::to_string(attempted) + " ops attempted, " + std::to_string(ok) + " ok, " +
              std::to_string(faults.size()) + " faults";
  for (const auto& [kind, n] : per_kind) {
    r.details.push_back(kind + ": " + std::to_string(n.first) + " attempted, " +
                        std::to_string(n.second) + " answered");
  }
  for (const auto& [kind, l] : longest) {
    r.details.push_back("after " + kind + " (" + std::to_string(l.second) +
                        "x): longest window without a served cluster op " + Ms(l.first));
  }
  return r;
}

}  // namespace lockd::faults
