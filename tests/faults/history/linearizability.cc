#include "faults/history/linearizability.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_set>

namespace lockd::faults {

namespace {

constexpr BootNs kNever = std::numeric_limits<BootNs>::max();

struct ModelHolder {
  uint64_t lease = 0;
  LockMode mode = LockMode::kExclusive;
  uint64_t token = 0;  ///< 0: an indeterminate grant, token unknown
  bool droppable = false;
  auto operator<=>(const ModelHolder&) const = default;
};
using State = std::vector<ModelHolder>;  ///< sorted

struct LinOp {
  const Op* op = nullptr;
  /// ret: a definite op's completion; an indeterminate acquire's deadline, the last moment it
  /// can have taken effect (kNever: any time after its call).
  BootNs call = 0, ret = 0;
  bool required = true;    ///< must be linearized (it surely took effect)
  bool droppable = false;  ///< acquire: its hold may end without an op
  uint64_t token = 0;      ///< acquire: the token granted (0: unknown)
  bool seen = false;       ///< an indeterminate acquire the watcher saw granted (at ret)
};

bool Conflicts(LockMode a, LockMode b) {
  return a == LockMode::kExclusive || b == LockMode::kExclusive;
}

std::string Describe(const State& s) {
  if (s.empty()) return "free";
  std::string out;
  for (const ModelHolder& h : s) {
    if (!out.empty()) out += ", ";
    out += "lease " + std::to_string(h.lease) + " " + Name(h.mode) + " token " +
           (h.token ? std::to_string(h.token) : "?") + (h.droppable ? " (may have ended)" : "");
  }
  return "held by " + out;
}

/// The states `op` may lead to from `s` (none: it cannot go next).
std::vector<State> Step(const State& s, const LinOp& l) {
  const Op& op = *l.op;
  switch (op.kind) {
    case OpKind::kAcquire: {
      if (op.outcome == Outcome::kFail) {
        for (const Holder& h : op.holders) {
          if (std::none_of(s.begin(), s.end(),
                           [&](const ModelHolder& m) { return m.lease == h.lease; })) {
            return {};
          }
        }
        return {s};
      }
      State next;
      for (const ModelHolder& h : s) {
        if (h.lease == op.lease || Conflicts(h.mode, op.mode)) {
          if (!h.droppable) return {};
          continue;
        }
        next.push_back(h);
      }
      next.push_back({op.lease, op.mode, l.token, l.droppable});
      std::sort(next.begin(), next.end());
      return {std::move(next)};
    }
    case OpKind::kRelease: {
      State next = s;
      // A hold whose token the history does not know may be the one released.
      auto it = std::find_if(next.begin(), next.end(), [&](const ModelHolder& h) {
        return h.lease == op.lease && (h.token == op.token || h.token == 0);
      });
      if (it == next.end()) return {};
      next.erase(it);
      return {std::move(next)};
    }
    case OpKind::kInspect: {
      State next;
      std::vector<bool> matched(s.size(), false);
      for (const Holder& seen : op.holders) {
        bool found = false;
        for (size_t i = 0; i < s.size() && !found; ++i) {
          if (matched[i] || s[i].lease != seen.lease || s[i].mode != seen.mode ||
              (s[i].token != 0 && s[i].token != seen.token)) {
            continue;
          }
          matched[i] = found = true;
          ModelHolder h = s[i];
          h.token = seen.token;
          next.push_back(h);
        }
        if (!found) return {};
      }
      for (size_t i = 0; i < s.size(); ++i) {
        if (!matched[i] && !s[i].droppable) return {};
      }
      std::sort(next.begin(), next.end());
      return {std::move(next)};
    }
    default:
      return {s};
  }
}

/// Memo key: two independent 64-bit hashes of (linearized set, state).
struct Key {
  uint64_t a, b;
  bool operator==(const Key&) const = default;
};
struct KeyHash {
  size_t operator()(const Key& k) const { return k.a ^ (k.b * 0x9e3779b97f4a7c15ULL); }
};

void Mix(uint64_t& a, uint64_t& b, uint64_t v) {
  a = (a ^ v) * 0x100000001b3ULL;
  b = (b + v + 0x632be59bd9b4e019ULL) * 0xff51afd7ed558ccdULL;
  b ^= b >> 29;
}

std::string DescribeOp(const LinOp& l) {
  std::string s = l.op->Describe();
  if (l.seen) {
    s += " (the watcher saw it granted token " + std::to_string(l.token) + " at " +
         std::to_string(l.ret) + ")";
  } else if (!l.required && l.ret != kNever) {
    s += " (if it took effect, then by " + std::to_string(l.ret) + ", in a gap of the Watch)";
  }
  return s;
}

/// Whether `a` can do everything `b` can: it holds b's holders and more, each of them droppable.
/// (No state holds two holders of one lease, so matching holders is unambiguous.)
bool Dominates(const State& a, const State& b) {
  if (a.size() <= b.size()) return false;
  size_t j = 0;
  for (const ModelHolder& h : a) {
    if (j < b.size() && h == b[j]) {
      ++j;
    } else if (!h.droppable) {
      return false;
    }
  }
  return j == b.size();
}

/// The states not dominated by another.
std::vector<State> Prune(const std::set<State>& states) {
  std::vector<State> out;
  for (const State& b : states) {
    if (std::none_of(states.begin(), states.end(),
                     [&](const State& a) { return Dominates(a, b); })) {
      out.push_back(b);
    }
  }
  return out;
}

/// The search over one piece of a lock's history (no op in flight at either end), from every
/// state the lock may be in at its start, collecting the states it may be in at its end.
class Search {
 public:
  Search(std::vector<LinOp> ops, uint64_t budget) : ops_(std::move(ops)), budget_(budget) {
    done_.assign(ops_.size(), false);
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (ops_[i].required) by_ret_.push_back(i), ++required_;
    }
    std::sort(by_ret_.begin(), by_ret_.end(),
              [&](size_t x, size_t y) { return ops_[x].ret < ops_[y].ret; });
  }

  /// kPass with the end states in `ends` (only the first found when `first_only`), kFail when no
  /// start state leads to an end, kUnknown when the budget ran out.
  Verdict Run(const std::vector<State>& starts, bool first_only, std::set<State>* ends) {
    first_only_ = first_only;
    ends_ = ends;
    for (const State& start : starts) {
      required_left_ = required_;
      if (Dfs(start, 0, std::numeric_limits<BootNs>::min()) && first_only_) break;
      if (exhausted_) return Verdict::kUnknown;
    }
    return ends->empty() ? Verdict::kFail : Verdict::kPass;
  }
  uint64_t steps() const { return steps_; }
  size_t size() const { return ops_.size(); }

  /// Where the search got furthest: what was linearized, the state, what could not go next.
  std::string Explain() const {
    std::string s = "longest linearizable prefix: " + std::to_string(best_depth_) + " of " +
                    std::to_string(ops_.size()) + " ops, lock " + Describe(best_state_) +
                    "; none of these could be linearized next:";
    for (size_t i : best_candidates_) s += "\n      " + DescribeOp(ops_[i]);
    return s;
  }

 private:
  /// True when an end was reached and the search should stop (first_only). `latest_call`: the
  /// latest invocation among the ops linearized so far (a function of the linearized set, so
  /// the memo need not hold it).
  bool Dfs(const State& state, size_t depth, BootNs latest_call) {
    if (++steps_ > budget_) {
      exhausted_ = true;
      return false;
    }
    if (!memo_.insert(KeyOf(state)).second) return false;
    if (required_left_ == 0) {
      // Every required op placed: an end. Indeterminate ops not placed never took effect; those
      // still possible may also take effect now, each leading to another end.
      ends_->insert(state);
      if (first_only_) return true;
    }
    // An op may go next only if it was invoked before every pending op's completion.
    BootNs horizon = kNever;
    for (size_t i : by_ret_) {
      if (!done_[i]) {
        horizon = ops_[i].ret;
        break;
      }
    }
    // Definite ops first: an indeterminate one is tried only when they lead nowhere.
    std::vector<size_t> candidates;
    for (size_t i = 0; i < ops_.size() && ops_[i].call <= horizon; ++i) {
      if (!done_[i] && ops_[i].required) candidates.push_back(i);
    }
    const size_t definite = candidates.size();
    // An indeterminate op with a deadline cannot go after an op invoked past it.
    for (size_t i = 0; i < ops_.size() && ops_[i].call <= horizon; ++i) {
      if (!done_[i] && !ops_[i].required && latest_call <= ops_[i].ret) candidates.push_back(i);
    }
    for (size_t i : candidates) {
      for (State& next : Step(state, ops_[i])) {
        done_[i] = true;
        if (ops_[i].required) --required_left_;
        const bool stop = Dfs(next, depth + 1, std::max(latest_call, ops_[i].call));
        done_[i] = false;
        if (ops_[i].required) ++required_left_;
        if (stop) return true;
        if (exhausted_) return false;
      }
    }
    if (depth >= best_depth_) {
      best_depth_ = depth;
      best_state_ = state;
      best_candidates_.clear();
      for (size_t k = 0; k < definite && best_candidates_.size() < 8; ++k) {
        best_candidates_.push_back(candidates[k]);
      }
    }
    return false;
  }

  Key KeyOf(const State& state) const {
    uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
    uint64_t word = 0;
    for (size_t i = 0; i < done_.size(); ++i) {
      if (done_[i]) word |= 1ULL << (i % 64);
      if (i % 64 == 63) Mix(a, b, word), word = 0;
    }
    Mix(a, b, word);
    for (const ModelHolder& h : state) {
      Mix(a, b, h.lease);
      Mix(a, b, h.token);
      Mix(a, b, (h.mode == LockMode::kShared ? 2 : 0) | (h.droppable ? 1 : 0));
    }
    return {a, b};
  }

  std::vector<LinOp> ops_;  ///< by invocation
  uint64_t budget_;
  std::vector<size_t> by_ret_;
  std::vector<bool> done_;
  size_t required_ = 0, required_left_ = 0;
  bool first_only_ = false;
  std::set<State>* ends_ = nullptr;
  uint64_t steps_ = 0;
  bool exhausted_ = false;
  std::unordered_set<Key, KeyHash> memo_;
  size_t best_depth_ = 0;
  State best_state_;
  std::vector<size_t> best_candidates_;
};

/// Indeterminate acquires, resolved from the Watch history where it covers them (see the header).
struct Resolution {
  size_t seen = 0, never = 0, in_gaps = 0, ambiguous = 0, unresolved = 0;
};

/// The last moment an indeterminate acquire invoked at `call` can have taken effect unseen by
/// the watcher: the end of the latest stretch after `call` the Watch history does not cover (a
/// gap, or before the watch started); nullopt when there is none (it did not take effect); kNever
/// when the watcher stopped too early to tell (`last`: the lock's last completion).
std::optional<BootNs> UnseenUntil(BootNs call, BootNs last, const WatchCoverage& watch,
                                  BootNs tail) {
  if (!watch.present() || watch.end < std::max(last, call) + tail) return kNever;
  std::optional<BootNs> until;
  if (call < watch.start) until = watch.start;
  for (const auto& [from, to] : watch.gaps) {
    if (to >= call) until = std::max(until.value_or(to), to);
  }
  return until;
}

/// Fills in `lin` (one lock's ops, by invocation) the indeterminate acquires the watcher saw
/// granted, bounds those it may have missed by the gaps they could hide in, and removes those
/// it would have seen but did not.
void Resolve(std::vector<LinOp>& lin, const std::vector<const Op*>& grants,
             const WatchCoverage& watch,
             const std::set<std::tuple<std::string, std::string, uint64_t>>& released, BootNs tail,
             Resolution& tally) {
  // The tokens acknowledged acquires hold, and so need no explaining.
  std::set<std::pair<uint64_t, uint64_t>> explained;  // (lease, token)
  BootNs last = 0;
  for (const LinOp& l : lin) {
    if (l.op->kind == OpKind::kAcquire && l.op->outcome == Outcome::kOk) {
      explained.insert({l.op->lease, l.op->token});
    }
    if (l.required) last = std::max(last, l.ret);
  }
  auto indeterminate = [](const LinOp& l) {
    return l.op->kind == OpKind::kAcquire && l.op->outcome == Outcome::kInfo;
  };
  // Each unexplained grant, in the order the watcher saw them, goes to the earliest-invoked
  // unresolved indeterminate acquire of its lease and mode invoked before it was seen: the widest
  // window, so the choice narrows the search the least. When another candidate's window crosses
  // a gap, the grant may be that one's while the earliest one's was lost in the gap: none is
  // pinned then, and each may have taken effect until the grant was seen.
  std::map<size_t, BootNs> ambiguous;  // index in lin → the latest such grant's receipt
  for (const Op* g : grants) {
    if (explained.count({g->lease, g->token})) continue;
    std::vector<size_t> candidates;
    for (size_t i = 0; i < lin.size() && lin[i].call <= g->complete_ns; ++i) {
      const LinOp& l = lin[i];
      if (indeterminate(l) && !l.seen && l.op->lease == g->lease && l.op->mode == g->mode) {
        candidates.push_back(i);
      }
    }
    if (candidates.empty()) continue;
    const bool clear =
        candidates.size() == 1 || std::all_of(candidates.begin(), candidates.end(), [&](size_t c) {
          return watch.Covers(lin[c].call, g->complete_ns);
        });
    if (!clear) {
      for (size_t c : candidates) {
        BootNs& until = ambiguous[c];
        until = std::max(until, g->complete_ns);
      }
      continue;
    }
    LinOp& l = lin[candidates.front()];
    l.seen = true;
    l.ret = g->complete_ns;
    l.token = g->token;
    l.required = true;
    l.droppable = !released.count({l.op->process, l.op->lock, g->token});
    ambiguous.erase(candidates.front());
    ++tally.seen;
  }
  std::vector<LinOp> kept;
  kept.reserve(lin.size());
  for (size_t i = 0; i < lin.size(); ++i) {
    LinOp& l = lin[i];
    if (indeterminate(l) && !l.seen) {
      std::optional<BootNs> until = UnseenUntil(l.call, last, watch, tail);
      const auto a = ambiguous.find(i);
      if (a != ambiguous.end() && until != kNever) {
        until = std::max(until.value_or(a->second), a->second);
      }
      if (!until) {
        ++tally.never;
        continue;
      }
      l.ret = *until;
      ++(*until == kNever       ? tally.unresolved
         : a != ambiguous.end() ? tally.ambiguous
                                : tally.in_gaps);
    }
    kept.push_back(l);
  }
  lin = std::move(kept);
}

/// Where a lock's history may be cut: the starts of its pieces (by invocation; no op in flight).
std::vector<size_t> Cuts(const std::vector<LinOp>& lin) {
  std::vector<size_t> starts = {0};
  BootNs reach = std::numeric_limits<BootNs>::min();
  for (size_t i = 0; i < lin.size(); ++i) {
    if (i > 0 && lin[i].call > reach) starts.push_back(i);
    reach = std::max(reach, lin[i].ret);
  }
  return starts;
}

std::string DescribeStates(const std::vector<State>& states) {
  if (states.size() == 1) return "lock " + Describe(states[0]);
  std::string s = "any of " + std::to_string(states.size()) + " states: ";
  for (size_t i = 0; i < states.size() && i < 4; ++i) s += (i ? "; " : "") + Describe(states[i]);
  return s + (states.size() > 4 ? "; …" : "");
}

}  // namespace

Report CheckLinearizability(const std::vector<Op>& ops, LinearizabilityOptions options) {
  // A hold is pinned only by an acknowledged release of the same process, lock and token.
  std::set<std::tuple<std::string, std::string, uint64_t>> released;
  for (const Op& op : ops) {
    if (op.kind == OpKind::kRelease && op.outcome == Outcome::kOk) {
      released.insert({op.process, op.lock, op.token});
    }
  }
  const WatchCoverage watch = CoverageOf(ops);
  std::map<std::string, std::vector<const Op*>> grants;  // per lock, as the watcher saw them
  for (const Op& op : ops) {
    if (op.kind == OpKind::kGrantSeen) grants[op.lock].push_back(&op);
  }
  for (auto& [lock, seen] : grants) {
    // A watcher restarted after a gap may see a grant twice: keep its first receipt of each log
    // position (not of each token: two grants of one token are a violation to keep apart).
    std::stable_sort(seen.begin(), seen.end(), [](const Op* a, const Op* b) {
      return std::tie(a->index, a->event_no, a->complete_ns) <
             std::tie(b->index, b->event_no, b->complete_ns);
    });
    seen.erase(std::unique(seen.begin(), seen.end(),
                           [](const Op* a, const Op* b) {
                             // A record without a log position (index 0) is never a repeat.
                             return a->index != 0 && a->index == b->index &&
                                    a->event_no == b->event_no;
                           }),
               seen.end());
    std::stable_sort(seen.begin(), seen.end(),
                     [](const Op* a, const Op* b) { return a->complete_ns < b->complete_ns; });
  }
  // Where the Watch history cannot resolve an indeterminate grant, it matters only if something
  // later saw its lease hold the lock; one nobody saw may as well have ended at once, so leaving
  // it out loses no linearization and keeps the search from trying it at every point.
  std::set<std::pair<std::string, uint64_t>> seen_holding;
  for (const Op& op : ops) {
    // A release acknowledged is its lease seen holding the lock too.
    if (op.kind == OpKind::kRelease && op.outcome == Outcome::kOk) {
      seen_holding.insert({op.lock, op.lease});
    }
    if (op.kind != OpKind::kInspect && op.kind != OpKind::kAcquire) continue;
    for (const Holder& h : op.holders) seen_holding.insert({op.lock, h.lease});
  }
  std::map<std::string, std::vector<LinOp>> by_lock;
  for (const Op& op : ops) {
    const bool relevant = op.kind == OpKind::kAcquire ||
                          ((op.kind == OpKind::kRelease || op.kind == OpKind::kInspect) &&
                           op.outcome == Outcome::kOk);
    if (!relevant || op.lock.empty()) continue;
    const bool info = op.outcome == Outcome::kInfo;
    LinOp l;
    l.op = &op;
    l.call = op.invoke_ns;
    l.required = !info;
    l.ret = info ? kNever : op.complete_ns;
    l.token = info ? 0 : op.token;
    l.droppable = info || !released.count({op.process, op.lock, op.token});
    by_lock[op.lock].push_back(l);
  }
  Report r;
  r.checker = "linearizability";
  uint64_t steps = 0;
  size_t n = 0, unknown = 0, pieces = 0, widest = 0;
  Resolution tally;
  for (auto& [lock, lin] : by_lock) {
    std::stable_sort(lin.begin(), lin.end(),
                     [](const LinOp& x, const LinOp& y) { return x.call < y.call; });
    Resolve(lin, grants[lock], watch, released,
            static_cast<BootNs>(options.watch_tail.count()) * 1'000'000, tally);
    // What the Watch history left unresolved matters only if its lease was seen holding.
    std::erase_if(lin, [&](const LinOp& l) {
      return !l.required && !seen_holding.count({lock, l.op->lease});
    });
    n += lin.size();
    const std::vector<size_t> starts = Cuts(lin);
    pieces += starts.size();
    std::vector<State> frontier = {State{}};
    for (size_t p = 0; p < starts.size(); ++p) {
      const size_t from = starts[p], to = p + 1 < starts.size() ? starts[p + 1] : lin.size();
      const bool last = to == lin.size();
      Search search({lin.begin() + from, lin.begin() + to}, options.budget);
      std::set<State> ends;
      const Verdict v = search.Run(frontier, last, &ends);
      steps += search.steps();
      widest = std::max(widest, search.size());
      if (v == Verdict::kFail) {
        r.violations.push_back(lock + " is not linearizable: in the piece of its history from " +
                               DescribeOp(lin[from]) + ", starting from " +
                               DescribeStates(frontier) + ": " + search.Explain());
        break;
      }
      if (v == Verdict::kUnknown) {
        ++unknown;
        r.details.push_back(lock + ": unknown: search budget exhausted (" +
                            std::to_string(options.budget) + " states in a piece of " +
                            std::to_string(search.size()) + " ops from " + DescribeOp(lin[from]) +
                            ")");
        break;
      }
      frontier = Prune(ends);
      if (frontier.size() > options.max_frontier) {
        ++unknown;
        r.details.push_back(lock + ": unknown: " + std::to_string(frontier.size()) +
                            " states possible after " + DescribeOp(lin[to - 1]));
        break;
      }
    }
  }
  r.verdict = !r.violations.empty() ? Verdict::kFail : unknown ? Verdict::kUnknown : Verdict::kPass;
  r.summary = std::to_string(n) + " ops on " + std::to_string(by_lock.size()) + " locks in " +
              std::to_string(pieces) + " pieces (the largest " + std::to_string(widest) +
              " ops), " + std::to_string(steps) +
              " search steps; indeterminate acquires: " + std::to_string(tally.seen) +
              " seen granted by the watcher, " + std::to_string(tally.never) + " never granted, " +
              std::to_string(tally.in_gaps) + " possible only in Watch gaps, " +
              std::to_string(tally.ambiguous) + " sharing a grant with another (a gap), " +
              std::to_string(tally.unresolved) + " unresolved" +
              (unknown ? ", " + std::to_string(unknown) + " locks unknown" : "");
  return r;
}

}  // namespace lockd::faults
