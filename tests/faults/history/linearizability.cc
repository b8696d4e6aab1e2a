#include "faults/history/linearizability.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>
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
  BootNs call = 0, ret = 0;  ///< ret = kNever for an indeterminate op
  bool required = true;      ///< must be linearized (not indeterminate)
  bool droppable = false;    ///< acquire: its hold may end without an op
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
      const bool info = op.outcome == Outcome::kInfo;
      next.push_back({op.lease, op.mode, info ? 0 : op.token, info || l.droppable});
      std::sort(next.begin(), next.end());
      return {std::move(next)};
    }
    case OpKind::kRelease: {
      State next = s;
      auto it = std::find_if(next.begin(), next.end(), [&](const ModelHolder& h) {
        return h.lease == op.lease && h.token == op.token;
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

/// The search over one lock's operations.
class Search {
 public:
  Search(std::vector<LinOp> ops, uint64_t budget) : ops_(std::move(ops)), budget_(budget) {
    std::sort(ops_.begin(), ops_.end(),
              [](const LinOp& x, const LinOp& y) { return x.call < y.call; });
    done_.assign(ops_.size(), false);
    for (size_t i = 0; i < ops_.size(); ++i) {
      if (ops_[i].required) by_ret_.push_back(i), ++required_left_;
    }
    std::sort(by_ret_.begin(), by_ret_.end(),
              [&](size_t x, size_t y) { return ops_[x].ret < ops_[y].ret; });
  }

  Verdict Run() {
    if (Dfs(State{}, 0)) return Verdict::kPass;
    return exhausted_ ? Verdict::kUnknown : Verdict::kFail;
  }
  uint64_t steps() const { return steps_; }
  size_t size() const { return ops_.size(); }

  /// Where the search got furthest: what was linearized, the state, what could not go next.
  std::string Explain() const {
    std::string s = "longest linearizable prefix: " + std::to_string(best_depth_) + " of " +
                    std::to_string(ops_.size()) + " ops, lock " + Describe(best_state_) +
                    "; none of these could be linearized next:";
    for (size_t i : best_candidates_) s += "\n      " + ops_[i].op->Describe();
    return s;
  }

 private:
  bool Dfs(const State& state, size_t depth) {
    if (required_left_ == 0) return true;
    if (++steps_ > budget_) {
      exhausted_ = true;
      return false;
    }
    if (!memo_.insert(KeyOf(state)).second) return false;
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
    for (size_t i = 0; i < ops_.size() && ops_[i].call <= horizon; ++i) {
      if (!done_[i] && !ops_[i].required) candidates.push_back(i);
    }
    for (size_t i : candidates) {
      for (State& next : Step(state, ops_[i])) {
        done_[i] = true;
        if (ops_[i].required) --required_left_;
        const bool found = Dfs(next, depth + 1);
        done_[i] = false;
        if (ops_[i].required) ++required_left_;
        if (found) return true;
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

  std::vector<LinOp> ops_;
  uint64_t budget_;
  std::vector<size_t> by_ret_;
  std::vector<bool> done_;
  size_t required_left_ = 0;
  uint64_t steps_ = 0;
  bool exhausted_ = false;
  std::unordered_set<Key, KeyHash> memo_;
  size_t best_depth_ = 0;
  State best_state_;
  std::vector<size_t> best_candidates_;
};

}  // namespace

Report CheckLinearizability(const std::vector<Op>& ops, LinearizabilityOptions options) {
  // A hold is pinned only by an acknowledged release of the same process, lock and token.
  std::set<std::tuple<std::string, std::string, uint64_t>> released;
  for (const Op& op : ops) {
    if (op.kind == OpKind::kRelease && op.outcome == Outcome::kOk) {
      released.insert({op.process, op.lock, op.token});
    }
  }
  // An indeterminate grant matters only if something later saw its lease hold the lock; one
  // nobody saw may as well have ended at once, so leaving it out loses no linearization and
  // keeps the search from trying it at every point.
  std::set<std::pair<std::string, uint64_t>> seen_holding;
  for (const Op& op : ops) {
    if (op.kind != OpKind::kInspect && op.kind != OpKind::kAcquire) continue;
    for (const Holder& h : op.holders) seen_holding.insert({op.lock, h.lease});
  }
  std::map<std::string, std::vector<LinOp>> by_lock;
  for (const Op& op : ops) {
    const bool relevant =
        (op.kind == OpKind::kAcquire &&
         (op.outcome != Outcome::kInfo || seen_holding.count({op.lock, op.lease}))) ||
        ((op.kind == OpKind::kRelease || op.kind == OpKind::kInspect) &&
         op.outcome == Outcome::kOk);
    if (!relevant || op.lock.empty()) continue;
    LinOp l;
    l.op = &op;
    l.call = op.invoke_ns;
    l.required = op.outcome != Outcome::kInfo;
    l.ret = l.required ? op.complete_ns : kNever;
    l.droppable = !released.count({op.process, op.lock, op.token});
    by_lock[op.lock].push_back(l);
  }
  Report r;
  r.checker = "linearizability";
  uint64_t steps = 0;
  size_t n = 0, unknown = 0;
  for (auto& [lock, lin] : by_lock) {
    Search search(std::move(lin), options.budget);
    const Verdict v = search.Run();
    steps += search.steps();
    n += search.size();
    if (v == Verdict::kFail) {
      r.violations.push_back(lock + " is not linearizable: " + search.Explain());
    } else if (v == Verdict::kUnknown) {
      ++unknown;
      r.details.push_back(lock + ": unknown: search budget exhausted (" +
                          std::to_string(options.budget) + " states, " +
                          std::to_string(search.size()) + " ops)");
    }
  }
  r.verdict = !r.violations.empty() ? Verdict::kFail : unknown ? Verdict::kUnknown : Verdict::kPass;
  r.summary =
      std::to_string(n) + " ops on " + std::to_string(by_lock.size()) + " locks, " +
      std::to_string(steps) + " search steps" +
      (unknown ? ", " + std::to_string(unknown) + " locks unknown: search budget exhausted" : "");
  return r;
}

}  // namespace lockd::faults
